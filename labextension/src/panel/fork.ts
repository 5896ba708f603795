/**
 * "Fork from here" on the panel's tool-call cards: a python call that ran, in a run that ended,
 * can be run again with the same or edited code as a new branch (the session's next run,
 * `POST sessions/{id}/fork`; the engine's fork, as the notebook widget's button). The sandbox is
 * not rewound, and the card says so. A heavy lane's call is forked by the lane's run id
 * (`HEAVY.K`): the branch is a single run on that lane's conversation, in the session's sandbox
 * (the lane's own one closed with the lane). The aggregation's verify calls are not offered.
 */
import { button, h } from '../dom';
import { editableArgs } from '../trace-renderer/toolArgs';
import { ToolCard } from '../trace-renderer/toolCard';
import { IEventBase } from '../types';

export const NOT_REWOUND =
  'The sandbox is not rewound: the branch runs in its current state, after everything that ran since.';

/** What a lane's card says instead: whose sandbox the branch runs in. */
export function laneNote(lane: string): string {
  return (
    `The branch is a single run on lane ${lane}'s conversation up to this call. It runs in ` +
    `the session's sandbox, not lane ${lane}'s (that one closed with the lane), as it is now: ` +
    'it is not rewound.'
  );
}

/** Starts a branch; resolves when the server accepted it (rejects with its message). */
export type ForkFn = (
  runId: string,
  callId: string,
  args: string | null
) => Promise<void>;

interface ICall {
  callId: string;
  /** the arguments the call ran with (an edit's, else the proposal's) */
  args: string;
  ran: boolean;
}

export class ForkOffers {
  /** run id -> its python calls, in order */
  private runs = new Map<string, ICall[]>();
  private run = '';
  /** lane -> its latest run id (a lane's events without run_id belong to it) */
  private laneRuns = new Map<string, string>();
  private rows: HTMLElement[] = [];
  private busy = false;

  constructor(
    private card: (callId: string, runId: string) => ToolCard | undefined,
    private fork: ForkFn
  ) {}

  clear(): void {
    this.runs.clear();
    this.run = '';
    this.laneRuns.clear();
    this.rows = [];
  }

  /** A run is going: a branch would wait for it (409), so the buttons wait too. */
  setRunning(running: boolean): void {
    this.busy = running;
    for (const row of this.rows) {
      for (const b of row.querySelectorAll('button')) {
        b.disabled = running;
      }
    }
  }

  onEvent(ev: IEventBase): void {
    const lane = ev.lane ? String(ev.lane) : '';
    if (lane === 'aggregate') {
      return; // its verify round had a sandbox and a conversation of its own: not forkable
    }
    if (lane && ev.type === 'run.start') {
      this.laneRuns.set(lane, String(ev.run_id || ''));
    }
    const runId = lane
      ? String(ev.run_id || this.laneRuns.get(lane) || '')
      : String(ev.run_id || this.run);
    const calls = this.runs.get(runId);
    switch (ev.type) {
      case 'run.start':
        if (!lane) {
          this.run = runId;
        }
        this.runs.set(runId, []);
        break;
      case 'tool.proposed':
        if (ev.name === 'python' && !ev.problem && calls) {
          calls.push({ callId: ev.call_id, args: ev.arguments, ran: false });
        }
        break;
      case 'tool.decision': {
        const c = calls?.find(x => x.callId === ev.call_id);
        if (c && ev.decision === 'edit' && typeof ev.arguments === 'string') {
          c.args = ev.arguments;
        }
        break;
      }
      case 'tool.result': {
        const c = calls?.find(x => x.callId === ev.call_id);
        const card = c && this.card(c.callId, runId);
        const state = card?.node.dataset.state;
        if (c && (state === 'approve' || state === 'edit')) {
          c.ran = true;
        }
        break;
      }
      case 'run.end':
        for (const c of calls ?? []) {
          if (c.ran) {
            this.offer(runId, c, lane);
          }
        }
        break;
    }
  }

  private offer(runId: string, call: ICall, lane: string): void {
    const card = this.card(call.callId, runId);
    if (!card || card.node.querySelector('.k2lab-fork-row')) {
      return;
    }
    const args = editableArgs(call.args);
    const panel = h('div', { class: 'k2lab-fork-editor', hidden: true });
    const editor = h('textarea', {
      class: 'k2lab-editor',
      spellcheck: 'false',
      'aria-label': `Code for a branch from call ${call.callId}`
    });
    editor.value = args.text;
    editor.rows = Math.min(18, Math.max(3, args.text.split('\n').length + 1)); // as the card's
    const message = h('div', { class: 'k2lab-message' });
    const open = button(
      'Fork from here',
      'k2lab-fork',
      () => {
        panel.hidden = !panel.hidden;
        if (!panel.hidden) {
          editor.focus();
        }
      },
      'Run this call again (edit the code first if you like) and let the model continue as a new branch'
    );
    const go = button('Fork with this code', 'k2lab-fork-run', async () => {
      let sent: string | null = null;
      try {
        sent =
          editor.value === args.text ? null : args.toArguments(editor.value);
      } catch (e) {
        message.textContent = `Not valid: ${(e as Error).message}`;
        return;
      }
      go.disabled = true;
      message.textContent = 'starting the branch…';
      try {
        await this.fork(runId, call.callId, sent);
        message.textContent = 'Branch started below.';
        panel.hidden = true;
      } catch (e) {
        message.textContent = `Could not fork: ${(e as Error).message}`;
      } finally {
        go.disabled = this.busy;
      }
    });
    const cancel = button('Cancel', 'k2lab-fork-cancel', () => {
      panel.hidden = true;
    });
    panel.append(
      editor,
      h('div', { class: 'k2lab-actions' }, go, cancel),
      h('div', { class: 'k2lab-note' }, lane ? laneNote(lane) : NOT_REWOUND)
    );
    const row = h('div', { class: 'k2lab-fork-row' }, open, panel, message);
    card.node.append(row);
    this.rows.push(row);
    open.disabled = this.busy;
  }
}
