/**
 * The panel's "Run options & tools" section: the verify pass (on/off, rounds), heavy mode (lanes,
 * concurrency) and data paths (server-side files the sandbox may read) of NEW sessions, and the
 * current session's tools: built-in ones and each configured MCP server (started / failed and
 * why) with its tools (`GET sessions/{id}/tools`). The server validates every value (a bad one
 * is a 400 whose message the panel shows); no secret of an MCP server reaches this list.
 */
import { requestAPI } from '../api';
import { h } from '../dom';
import { IPanelSettings } from './settings';

export interface IToolInfo {
  name: string;
  description: string;
}

export interface IToolServer {
  name: string;
  transport?: string;
  approve?: string;
  status: 'started' | 'failed' | 'disabled';
  error?: string | null;
  in_session?: boolean;
  tools: IToolInfo[];
}

export interface IToolsListing {
  config?: string;
  error?: string | null;
  builtin: IToolInfo[];
  servers: IToolServer[];
}

function numberInput(
  cls: string,
  label: string,
  min: number,
  max: number,
  value: number
): HTMLInputElement {
  return h('input', {
    class: cls,
    type: 'number',
    min: String(min),
    max: String(max),
    step: '1',
    value: String(value),
    'aria-label': label
  });
}

function firstLine(text: string): string {
  return (text.split('\n')[0] || '').slice(0, 200);
}

export class RunOptions {
  readonly node: HTMLDetailsElement;
  readonly verify: HTMLInputElement;
  readonly verifyRounds: HTMLInputElement;
  readonly heavy: HTMLInputElement;
  readonly heavyConcurrency: HTMLInputElement;
  readonly data: HTMLTextAreaElement;
  private current: HTMLElement;
  private tools: HTMLElement;
  private asked = 0;
  /** what `show` was last given: opening the section reads the tools again */
  private shown: [string | null, { [key: string]: unknown } | undefined] = [
    null,
    undefined
  ];

  constructor(defaults: IPanelSettings) {
    this.verify = h('input', {
      class: 'k2lab-opt-verify',
      type: 'checkbox',
      'aria-label': 'verify the answer'
    });
    this.verify.checked = !!defaults.verify;
    this.verifyRounds = numberInput(
      'k2lab-opt-verify-rounds',
      'verify rounds',
      1,
      5,
      defaults.verifyRounds || 1
    );
    this.heavy = numberInput(
      'k2lab-opt-heavy',
      'heavy lanes',
      0,
      8,
      defaults.heavy || 0
    );
    this.heavyConcurrency = numberInput(
      'k2lab-opt-heavy-concurrency',
      'lanes at once',
      0,
      8,
      defaults.heavyConcurrency || 0
    );
    this.data = h('textarea', {
      class: 'k2lab-opt-data',
      rows: '2',
      placeholder: 'data/sales.csv (one server path a line)',
      'aria-label': 'data paths'
    });
    this.data.value = (defaults.dataPaths || []).join('\n');
    this.current = h('div', { class: 'k2lab-opt-current' });
    this.tools = h('div', { class: 'k2lab-tools' });
    this.node = h(
      'details',
      { class: 'k2lab-run-options' },
      h('summary', {}, 'Run options & tools'),
      h(
        'div',
        { class: 'k2lab-opt-note' },
        'For new sessions (a session keeps the options it was made with):'
      ),
      h(
        'label',
        { class: 'k2lab-opt-row' },
        this.verify,
        ' Verify the answer, rounds ',
        this.verifyRounds
      ),
      h(
        'label',
        { class: 'k2lab-opt-row' },
        'Heavy lanes (0 = off) ',
        this.heavy,
        ' at once (0 = all) ',
        this.heavyConcurrency
      ),
      h(
        'div',
        { class: 'k2lab-opt-note' },
        'Under the ask policy, each lane\u2019s calls get their own cards.'
      ),
      h(
        'label',
        { class: 'k2lab-opt-row k2lab-opt-data-row' },
        'Data the sandbox may read (/data/NAME):',
        this.data
      ),
      this.current,
      h('div', { class: 'k2lab-tools-title' }, 'Tools of this session'),
      this.tools
    ) as HTMLDetailsElement;
    this.tools.textContent = 'Start or pick a session to see its tools.';
    // a session's MCP servers start with its first run, after `show` ran for the new session:
    // read again on opening, so the list says which servers this session has started
    this.node.addEventListener('toggle', () => {
      if (this.node.open && this.shown[0]) {
        void this.show(...this.shown);
      }
    });
  }

  /** The run options of `POST sessions` (only what differs from the defaults of "off"). */
  settings(): { [key: string]: unknown } {
    const out: { [key: string]: unknown } = {};
    const int = (el: HTMLInputElement) => Math.floor(Number(el.value) || 0);
    if (this.verify.checked) {
      out.verify = true;
      out.verify_rounds = Math.max(1, int(this.verifyRounds));
    }
    if (int(this.heavy) > 0) {
      out.heavy = int(this.heavy);
      if (int(this.heavyConcurrency) > 0) {
        out.heavy_concurrency = int(this.heavyConcurrency);
      }
    }
    const paths = this.data.value
      .split('\n')
      .map(p => p.trim())
      .filter(p => p);
    if (paths.length) {
      out.data = paths;
    }
    return out;
  }

  /** Show the session's own options and its tools (null: no session yet). */
  async show(
    sessionId: string | null,
    settings?: { [key: string]: unknown }
  ): Promise<void> {
    const ask = ++this.asked;
    this.shown = [sessionId, settings];
    const s = settings || {};
    const parts: string[] = [];
    if (s.verify) {
      parts.push(`verify (${Number(s.verify_rounds || 1)} round(s))`);
    }
    if (s.heavy) {
      parts.push(`heavy ${Number(s.heavy)} lanes`);
    }
    if (Array.isArray(s.data) && s.data.length) {
      parts.push(`data: ${s.data.join(', ')}`);
    }
    this.current.textContent = sessionId
      ? `This session: ${parts.length ? parts.join(' · ') : 'one agent, no verify pass'}`
      : '';
    if (!sessionId) {
      this.tools.textContent = 'Start or pick a session to see its tools.';
      return;
    }
    this.tools.textContent = 'Reading the tools…';
    let listing: IToolsListing;
    try {
      listing = await requestAPI<IToolsListing>(
        `sessions/${encodeURIComponent(sessionId)}/tools`
      );
    } catch (e) {
      if (ask === this.asked) {
        this.tools.textContent = `Could not read the tools: ${(e as Error).message}`;
      }
      return;
    }
    if (ask === this.asked) {
      this.render(listing);
    }
  }

  private render(t: IToolsListing): void {
    const tool = (x: IToolInfo) =>
      h(
        'li',
        { class: 'k2lab-tool', title: x.description },
        h('code', {}, x.name),
        ' ',
        firstLine(x.description)
      );
    const servers = t.servers.map(s =>
      h(
        'li',
        { class: `k2lab-tool-server k2lab-tool-server-${s.status}` },
        h('strong', {}, s.name),
        ` (MCP, ${s.transport || '?'}${s.approve === 'auto' ? ', runs without asking' : ''}): ${s.status}${s.in_session ? ' in this session' : s.status === 'started' ? ' when tried' : ''}`,
        s.error ? h('div', { class: 'k2lab-tool-error' }, s.error) : null,
        s.tools.length ? h('ul', {}, ...s.tools.map(tool)) : null
      )
    );
    this.tools.replaceChildren(
      h('ul', { class: 'k2lab-tools-builtin' }, ...t.builtin.map(tool)),
      h('div', { class: 'k2lab-tool-error', hidden: !t.error }, t.error || ''),
      servers.length
        ? h('ul', { class: 'k2lab-tools-mcp' }, ...servers)
        : h(
            'div',
            { class: 'k2lab-opt-note' },
            'No MCP servers configured (c.K2Lab.mcp_config or $K2LAB_MCP_CONFIG).'
          )
    );
  }
}
