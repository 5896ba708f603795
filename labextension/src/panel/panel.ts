/**
 * The k2lab side panel: one session at a time, its events streamed into a TraceView with live
 * tool-call cards, a prompt box with notebook context, Send / Stop, and the session header.
 * All agent logic is on the server; this widget sends requests and draws events.
 */
import { showDialog, Dialog } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry, renderMarkdown } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { APIError, postJSON, requestAPI } from '../api';
import { append, button, h } from '../dom';
import { TraceView } from '../trace-renderer/traceView';
import { IEventBase, IReplayResult, IServerInfo, ISessionMeta } from '../types';
import { SessionConnection } from './connection';
import { Composer } from './composer';
import { ForkOffers } from './fork';
import { PanelHeader } from './header';
import { NotebookBridge } from './notebookTools';
import { armRemoteContent, guardSanitizer } from '../safeContent';
import { IPanelSettings, sessionSettings } from './settings';
import { RunOptions } from './tools';

const STORAGE_KEY = 'k2lab:current-session';
const FALLBACK_KEY_HELP =
  'Using the offline demo model. To use Kimi K2 Thinking set K2LAB_API_KEY in the server\u2019s ' +
  'environment or c.K2Lab.api_key in jupyter_server_config.py.';

export interface IK2PanelOptions {
  tracker: INotebookTracker;
  rendermime: IRenderMimeRegistry;
  settings: () => IPanelSettings;
}

export class K2Panel extends Widget {
  private header: PanelHeader;
  private view: TraceView;
  private stream: HTMLElement;
  private empty: HTMLElement;
  private composer: Composer;
  private runOptions: RunOptions;
  private forks: ForkOffers;
  private bridge: NotebookBridge;
  private info: IServerInfo | null = null;
  private sessions: ISessionMeta[] = [];
  private sessionId: string | null = null;
  private connection: SessionConnection | null = null;
  private connectionText = '';
  private loaded = false;
  private scrollPending = false;
  private followStream = true;

  constructor(private options: IK2PanelOptions) {
    super();
    this.id = 'k2lab-panel';
    this.addClass('k2lab-panel');
    this.title.caption = 'k2lab: a thinking model with approvable tool calls';
    this.bridge = new NotebookBridge(options.tracker);
    this.header = new PanelHeader({
      select: id => this.selectSession(id),
      create: () => this.selectSession(null),
      remove: () => void this.deleteSession()
    });
    const rm = options.rendermime;
    this.view = new TraceView({
      live: true,
      replayRecorded: true, // the server replays read-only MCP calls with the session's servers
      focusFallback: () => this.composer.prompt,
      sanitize: html => rm.sanitizer.sanitize(html),
      renderMarkdown: (host, source) =>
        renderMarkdown({
          host,
          source,
          trusted: false,
          sanitizer: guardSanitizer(rm.sanitizer), // remote images wait for a click
          resolver: rm.resolver,
          linkHandler: rm.linkHandler,
          latexTypesetter: rm.latexTypesetter,
          markdownParser: rm.markdownParser,
          shouldTypeset: true
        }),
      actions: {
        // the run id too: a heavy run's lanes (RUN.K) repeat Kimi's call ids
        decide: async (callId, decision, extra, runId) => {
          await postJSON(this.route('decisions'), {
            call_id: callId,
            decision,
            ...extra,
            ...(runId ? { run_id: runId } : {})
          });
        },
        replay: (callId, runId) =>
          postJSON<IReplayResult>(this.route('replay'), {
            call_id: callId,
            ...(runId ? { run_id: runId } : {})
          })
      },
      // heavy mode: stop one lane (the others go on, the aggregation names it)
      stopLane: async lane => {
        try {
          await postJSON(this.route('stop'), { lane });
        } catch (e) {
          this.say(
            `Could not stop lane ${lane}: ${(e as Error).message}`,
            true
          );
          throw e;
        }
      }
    });
    // "Fork from here" on the python calls of ended runs: the branch is the session's next run
    this.forks = new ForkOffers(
      (callId, runId) => this.view.card(callId, runId),
      async (runId, callId, args) => {
        await postJSON(this.route('fork'), {
          run_id: runId,
          call_id: callId,
          ...(args !== null ? { arguments: args } : {})
        });
      }
    );
    this.empty = h('div', { class: 'k2lab-empty' });
    this.stream = h(
      'div',
      { class: 'k2lab-stream' },
      this.empty,
      this.view.node
    );
    this.stream.addEventListener('scroll', () => {
      const s = this.stream;
      this.followStream = s.scrollHeight - s.scrollTop - s.clientHeight < 60;
    });
    this.composer = new Composer(
      options.tracker,
      () => options.settings().contextMaxChars,
      {
        send: () => void this.send(),
        stop: () => void this.stop(),
        approveAll: () => void this.approveAll()
      }
    );
    this.runOptions = new RunOptions(options.settings());
    this.node.append(
      this.header.node,
      this.runOptions.node,
      this.stream,
      this.composer.node
    );
    armRemoteContent(this.node);
    this.updateControls();
  }

  dispose(): void {
    this.connection?.dispose();
    super.dispose();
  }

  /** Focus the prompt box (the open-panel command does this). */
  focusPrompt(): void {
    this.composer.prompt.focus();
  }

  protected onAfterAttach(): void {
    if (!this.loaded) {
      this.loaded = true;
      void this.load();
    }
  }

  private route(what: string): string {
    return `sessions/${encodeURIComponent(this.sessionId ?? '')}/${what}`;
  }

  private async load(): Promise<void> {
    try {
      this.info = await requestAPI<IServerInfo>('info');
    } catch (e) {
      this.say(
        `The k2lab server extension did not answer: ${(e as Error).message}`,
        true
      );
      return;
    }
    const demo = this.demoAnswers;
    this.header.setKeyHelp(
      demo
        ? 'No API key: the offline demo model answers · how to use Kimi K2 Thinking'
        : 'No API key is set on the server · how to set one',
      this.info.settings?.api_key_set
        ? null
        : this.info.key_help || FALLBACK_KEY_HELP
    );
    this.renderEmpty(demo);
    await this.refreshSessions();
    const stored = window.localStorage.getItem(STORAGE_KEY);
    const pick = this.sessions.find(s => s.id === stored) ?? this.latest();
    this.selectSession(pick?.id ?? null);
  }

  /**
   * The offline demo model answers new sessions: the server has neither a key nor an endpoint,
   * and the panel's settings choose none (a preset or a custom base URL is that endpoint).
   */
  private get demoAnswers(): boolean {
    const chosen = sessionSettings(this.options.settings());
    return (
      !!this.info?.settings?.uses_demo_model &&
      !chosen.base_url &&
      !chosen.preset
    );
  }

  private latest(): ISessionMeta | undefined {
    const t = (s: ISessionMeta) =>
      Number(s.updated || s.created || 0) ||
      Date.parse(String(s.updated || s.created)) ||
      0;
    return [...this.sessions].sort((a, b) => t(b) - t(a))[0];
  }

  private async refreshSessions(): Promise<void> {
    try {
      this.sessions = (
        await requestAPI<{ sessions: ISessionMeta[] }>('sessions')
      ).sessions;
    } catch (e) {
      this.say(`Could not list sessions: ${(e as Error).message}`, true);
    }
    this.header.setSessions(this.sessions, this.sessionId);
  }

  private selectSession(id: string | null): void {
    this.connection?.dispose();
    this.connection = null;
    this.view.clear();
    this.forks.clear();
    this.followStream = true;
    this.sessionId = id;
    this.connectionText = '';
    if (id) {
      window.localStorage.setItem(STORAGE_KEY, id);
      this.connection = new SessionConnection(id, {
        onEvent: (index, ev) => this.onEvent(ev),
        onRequest: req => this.bridge.handle(req),
        onStatus: (connected, message) => {
          this.connectionText = connected ? '' : message;
          if (message.startsWith('server:')) {
            this.say(message, true);
          }
          this.updateControls();
        }
      });
    } else {
      window.localStorage.removeItem(STORAGE_KEY);
    }
    this.header.setSessions(this.sessions, id);
    const meta = this.sessions.find(s => s.id === id) as
      { settings?: { [key: string]: unknown } } | undefined;
    void this.runOptions.show(id, meta?.settings);
    this.updateControls();
  }

  private onEvent(ev: IEventBase): void {
    this.view.add(ev);
    this.forks.onEvent(ev); // after the view: the card knows its decision and result
    if (ev.kind === 'storage') {
      // the server could not save events (a full disk): keep saying so until it can again
      if (ev.type === 'error') {
        this.say(String(ev.message), true);
      } else if (ev.type === 'notice') {
        this.say(String(ev.message), false);
      }
    }
    if (ev.type === 'run.start' || ev.type === 'run.end') {
      void this.refreshSessions();
      if (ev.type === 'run.end') {
        this.composer.clearNotice('Stopping');
      }
    }
    if (ev.type !== 'reasoning.delta' && ev.type !== 'content.delta') {
      this.updateControls(); // deltas change nothing in the status line
    }
    // follow the stream while the user is at the bottom; at most one layout read per frame
    if (this.followStream && !this.scrollPending) {
      this.scrollPending = true;
      requestAnimationFrame(() => {
        this.scrollPending = false;
        this.stream.scrollTop = this.stream.scrollHeight;
      });
    }
  }

  private get running(): boolean {
    return !!this.view.state?.running;
  }

  private updateControls(): void {
    const info = this.info;
    this.header.setStatus({
      modelLabel: info?.model_label ?? '…',
      demo: this.demoAnswers,
      isolation: info?.isolation ?? '?',
      maxSteps: Number(info?.settings?.max_steps ?? 0),
      run: this.view.state,
      connection: this.connectionText
    });
    this.composer.update(this.running, this.view.pendingCount());
    this.forks.setRunning(this.running);
    if (!this.running) {
      this.composer.clearNotice('Stopping'); // the run ended, whatever order the answers came in
    }
    this.empty.hidden = !!this.view.state;
  }

  private renderEmpty(demo: boolean): void {
    const list = this.info?.demo_prompts ?? [];
    this.empty.replaceChildren();
    append(
      this.empty,
      h(
        'p',
        {},
        'Ask a question or give a task. The model thinks out loud (collapsible per step) and ' +
          'proposes Python tool calls that run in a sandboxed kernel after you approve them.'
      ),
      demo && list.length
        ? h(
            'div',
            { class: 'k2lab-demo-prompts' },
            h('div', {}, 'Try a scripted demo:'),
            ...list.map(p =>
              button(String(p), 'k2lab-demo-prompt', () => {
                this.composer.prompt.value = String(p);
                this.composer.prompt.focus();
              })
            )
          )
        : null
    );
  }

  private async send(): Promise<void> {
    const text = this.composer.prompt.value.trim();
    if (!text || this.running) {
      return;
    }
    this.composer.update(false, 0, true);
    this.say('', false);
    try {
      // read fresh (the variables from the kernel now): the chip shows exactly what is sent
      const ctx = await this.composer.context.fresh();
      const copy = this.composer.context.copyRequest(); // before a session is made for it
      if (!this.sessionId) {
        const created = await postJSON<ISessionMeta>('sessions', {
          title: text.length > 60 ? text.slice(0, 57) + '…' : text,
          settings: {
            ...sessionSettings(this.options.settings()),
            ...this.runOptions.settings()
          }
        });
        this.sessions.unshift(created);
        this.selectSession(created.id);
      }
      const body: { [k: string]: unknown } = { text };
      if (ctx) {
        body.context = { kind: ctx.kind, path: ctx.path, text: ctx.text };
        if (ctx.truncated) {
          this.say(
            `Context cut to ${ctx.text.length} of ${ctx.size} characters.`,
            false
          );
        }
      }
      if (copy) {
        body.options = { with: copy };
      }
      await postJSON(this.route('messages'), body);
      this.composer.prompt.value = '';
      this.composer.context.copySent();
    } catch (e) {
      const busy = e instanceof APIError && e.status === 409;
      this.say(
        busy
          ? 'A run is in progress: wait for it or Stop it.'
          : `Could not send: ${(e as Error).message}`,
        true
      );
    } finally {
      this.updateControls();
    }
  }

  private async approveAll(): Promise<void> {
    try {
      await postJSON(this.route('approve-all'), {});
    } catch (e) {
      this.say(`Could not approve: ${(e as Error).message}`, true);
    }
  }

  private async stop(): Promise<void> {
    if (!this.sessionId) {
      return;
    }
    try {
      await postJSON(this.route('stop'), {});
      if (this.running) {
        this.say('Stopping…', false); // run.end may already have come over the socket
      }
    } catch (e) {
      this.say(`Could not stop: ${(e as Error).message}`, true);
    }
  }

  private async deleteSession(): Promise<void> {
    const id = this.sessionId;
    if (!id) {
      return;
    }
    const answer = await showDialog({
      title: 'Delete this k2lab session?',
      body: 'Its history (trace) is deleted from the server.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await requestAPI(`sessions/${encodeURIComponent(id)}`, {
        method: 'DELETE'
      });
    } catch (e) {
      this.say(`Could not delete: ${(e as Error).message}`, true);
      return;
    }
    this.sessions = this.sessions.filter(s => s.id !== id);
    this.selectSession(null);
  }

  private say(text: string, isError: boolean): void {
    this.composer.say(text, isError);
  }
}
