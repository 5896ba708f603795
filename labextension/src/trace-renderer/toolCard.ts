/**
 * One tool call as a card: the proposed arguments, the decision, the result, and (in the live
 * panel only) the controls Approve / Edit & run / Reject with feedback. Replay is offered by the
 * panel, and by the saved-trace renderer while its notebook has a kernel (`offerReplay`).
 */
import {
  IReplayResult,
  IToolDecision,
  IToolProposed,
  IToolResult
} from '../types';
import { button, h } from '../dom';
import { renderDisplay, Sanitize } from './display';
import { codePre } from './highlight';
import { editableArgs, IEditableArgs } from './toolArgs';

export type DecisionKind = 'approve' | 'edit' | 'reject';

/**
 * What the live panel lets a person do with a card; absent in the read-only renderer. `runId` is
 * the call's run (heavy-mode lanes repeat Kimi's call ids): decisions are keyed by (run, call).
 */
export interface ICardActions {
  decide(
    callId: string,
    decision: DecisionKind,
    extra: { arguments?: string; feedback?: string },
    runId?: string
  ): Promise<void>;
  replay(callId: string, runId?: string): Promise<IReplayResult>;
}

/** Re-runs one call and compares outputs (the panel's session, or a notebook's kernel). */
export type ReplayFn = (callId: string) => Promise<IReplayResult>;

const DECISION_LABEL: { [k in DecisionKind]: string } = {
  approve: 'approved',
  edit: 'edited & run',
  reject: 'rejected'
};

const LOOK: { [state: string]: string } = {
  pending: 'pending',
  reject: 'rejected',
  problem: 'problem',
  expired: 'not_run'
};

export class ToolCard {
  readonly node: HTMLElement;
  private args: IEditableArgs;
  private state: HTMLElement;
  private body: HTMLElement;
  private actionsEl: HTMLElement | null = null;
  private message: HTMLElement;
  private decided = false;
  private editedArgs: string | null = null;
  /** " (policy)" when the policy, not a person, decided */
  private byPolicy = '';
  /** A python call that ran: replay makes sense for it. */
  private replayable = false;
  private replayRow: HTMLElement | null = null;
  /** A decision was sent from this card by a person whose focus was in it. */
  private focusHeld = false;

  constructor(
    readonly proposal: IToolProposed,
    private sanitize: Sanitize,
    private actions?: ICardActions,
    /** replay makes sense for this call's tool (python; read-only MCP tools in the panel) */
    private canReplay = proposal.name === 'python'
  ) {
    this.args = editableArgs(proposal.arguments);
    this.state = h(
      'span',
      { class: 'k2lab-badge k2lab-call-state' },
      'proposed'
    );
    this.message = h('div', { class: 'k2lab-message' });
    this.body = h('div', { class: 'k2lab-call-body' });
    this.node = h(
      'div',
      { class: 'k2lab-call', 'data-call-id': proposal.call_id },
      h(
        'div',
        { class: 'k2lab-call-head' },
        h('span', { class: 'k2lab-tool-name' }, proposal.name),
        h('span', { class: 'k2lab-call-id' }, proposal.call_id),
        this.state
      ),
      this.body,
      this.message
    );
    if (proposal.problem) {
      this.setState('problem', 'not run');
      this.body.append(
        h('pre', { class: 'k2lab-code' }, proposal.arguments),
        h('div', { class: 'k2lab-problem' }, proposal.problem)
      );
      this.decided = true;
    } else if (actions) {
      this.setState('pending', 'waiting for you');
      this.renderEditor(actions);
    } else {
      this.setState('pending', 'proposed');
      this.body.append(this.codeBlock(this.args.text));
    }
  }

  get callId(): string {
    return this.proposal.call_id;
  }

  get isReplayable(): boolean {
    return this.replayable;
  }

  /** Whether keyboard focus is (or was, when the decision was sent) inside this card. */
  holdsFocus(): boolean {
    return this.focusHeld || this.node.contains(document.activeElement);
  }

  /** Focus this card's Approve button if the call waits; false if there is none. */
  focusApprove(): boolean {
    const approve =
      this.actionsEl?.querySelector<HTMLButtonElement>('.k2lab-approve');
    if (!approve || approve.disabled || !approve.isConnected) {
      return false;
    }
    approve.focus();
    return true;
  }

  setDecision(ev: IToolDecision): void {
    this.decided = true;
    this.removeActions();
    this.body.replaceChildren();
    this.byPolicy = ev.by === 'policy' ? ' (policy)' : '';
    this.setState(ev.decision, DECISION_LABEL[ev.decision] + this.byPolicy);
    if (ev.decision === 'edit' && ev.arguments) {
      this.editedArgs = ev.arguments;
      this.body.append(
        this.codeBlock(editableArgs(ev.arguments).text),
        h(
          'details',
          { class: 'k2lab-original' },
          h('summary', {}, "model's original"),
          this.codeBlock(this.args.text)
        )
      );
    } else {
      this.body.append(this.codeBlock(this.args.text));
    }
    if (ev.decision === 'reject') {
      this.body.append(
        h(
          'div',
          { class: 'k2lab-feedback' },
          h('strong', {}, 'Feedback: '),
          ev.feedback || '(none)'
        )
      );
    }
  }

  setResult(ev: IToolResult): void {
    if (this.node.dataset.state === 'pending') {
      // a result with no decision: the call never ran (the run was stopped while it waited)
      this.removeActions();
      this.body.replaceChildren(this.codeBlock(this.args.text));
      this.setState('expired', 'not run');
    }
    this.decided = true;
    this.removeActions();
    const ran = ['approve', 'edit'].includes(this.node.dataset.state || '');
    const look = ev.ok ? 'k2lab-ok' : ran ? 'k2lab-failed' : 'k2lab-told';
    // people see the plots themselves, not the notes the model read about them
    const shown =
      typeof ev.people_output === 'string'
        ? ev.people_output
        : this.shownOutput(ev);
    const result = h(
      'div',
      { class: `k2lab-result ${look}` },
      h(
        'div',
        { class: 'k2lab-result-head' },
        ev.ok ? 'result' : ran ? 'error' : 'the model was told',
        ev.duration ? ` · ${ev.duration.toFixed(2)} s` : '',
        ev.truncated ? ' · truncated for the model' : ''
      ),
      shown ? h('pre', { class: 'k2lab-stdout' }, shown) : null
    );
    const sent = ev.sent_to_model || [];
    (ev.display || []).forEach((bundle, i) => {
      const el = renderDisplay(bundle, this.sanitize, sent.includes(i));
      if (el) {
        result.append(el);
      }
    });
    this.body.append(result);
    if (ran) {
      this.look(ev.ok ? 'done' : 'error');
      // replay re-runs sandbox code and read-only tools; tools that act are never run again
      this.replayable = this.canReplay;
      const actions = this.actions;
      if (actions) {
        this.offerReplay(id => actions.replay(id));
      }
    }
  }

  /**
   * The tool's own output: a result with `edited` holds it (the note for the model is a field);
   * older traces hold the note the engine prepended for the model after an edit ("[The user
   * edited the arguments before running: {...}]"), cut here: the card shows the edited code.
   */
  private shownOutput(ev: IToolResult): string {
    const output = ev.output || '';
    if (ev.edited === true) {
      return output;
    }
    const note = this.editedArgs
      ? `[The user edited the arguments before running: ${this.editedArgs}]\n`
      : '';
    return note && output.startsWith(note) ? output.slice(note.length) : output;
  }

  /**
   * The fold's words and status for the call (RunView's `call_label` and `status`: the live
   * widget and the HTML/Markdown fallbacks say and colour the same); a policy's decision says so.
   */
  setLabel(label: string, status: string): void {
    this.state.textContent = label + this.byPolicy;
    this.node.dataset.status = status; // RunView's status: pending running done error ...
    this.look(status); // the colour the notebook widget gives that status (k2lab-status-*)
  }

  /** The run ended while this call waited: it can no longer be decided. */
  setInactive(): void {
    if (!this.decided) {
      this.removeActions();
      this.body.replaceChildren(this.codeBlock(this.args.text));
      this.setState('expired', 'not run (run ended)');
    }
  }

  private setState(state: string, label: string): void {
    this.node.dataset.state = state;
    this.state.textContent = label;
    this.look(LOOK[state] ?? 'running');
  }

  /** The card's colour class, shared with the notebook widget's CSS (k2lab-status-*). */
  private look(name: string): void {
    for (const cls of [...this.node.classList]) {
      if (cls.startsWith('k2lab-status-')) {
        this.node.classList.remove(cls);
      }
    }
    this.node.classList.add(`k2lab-status-${name}`);
  }

  private codeBlock(text: string): HTMLElement {
    // highlighted as the live widget and the HTML fallback do (pygments, Python, every card)
    return codePre(text, true, `k2lab-code k2lab-lang-${this.args.kind}`);
  }

  private removeActions(): void {
    this.actionsEl?.remove();
    this.actionsEl = null;
  }

  private renderEditor(actions: ICardActions): void {
    const editor = h('textarea', {
      class: 'k2lab-editor',
      spellcheck: 'false',
      'aria-label': 'tool call arguments'
    });
    editor.value = this.args.text;
    editor.rows = Math.min(
      18,
      Math.max(3, this.args.text.split('\n').length + 1)
    );
    const approve = button('Approve', 'k2lab-approve', () =>
      this.send(actions, 'approve', {})
    );
    const editRun = button('Edit & run', 'k2lab-run-edited', () => {
      let args: string;
      try {
        args = this.args.toArguments(editor.value);
      } catch (e) {
        this.showMessage(`Not valid JSON: ${(e as Error).message}`, true);
        return;
      }
      void this.send(actions, 'edit', { arguments: args });
    });
    editRun.disabled = true;
    editor.addEventListener('input', () => {
      const edited = editor.value !== this.args.text;
      editRun.disabled = !edited;
      approve.disabled = edited; // approving would silently drop the edit
    });
    const feedback = h('input', {
      class: 'k2lab-feedback-input',
      type: 'text',
      placeholder: 'Why? The model reads this as the tool result.'
    });
    const sendReject = button('Send rejection', 'k2lab-send-reject', () =>
      this.send(actions, 'reject', { feedback: feedback.value })
    );
    feedback.addEventListener('keydown', ev => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        sendReject.click();
      }
    });
    const rejectRow = h(
      'div',
      { class: 'k2lab-reject-row', hidden: true },
      feedback,
      sendReject
    );
    const reject = button('Reject…', 'k2lab-reject', () => {
      rejectRow.hidden = !rejectRow.hidden;
      if (!rejectRow.hidden) {
        feedback.focus();
      }
    });
    this.actionsEl = h(
      'div',
      { class: 'k2lab-call-actions' },
      h('div', { class: 'k2lab-actions' }, approve, editRun, reject),
      rejectRow
    );
    this.body.append(editor, this.actionsEl);
  }

  private async send(
    actions: ICardActions,
    decision: DecisionKind,
    extra: { arguments?: string; feedback?: string }
  ): Promise<void> {
    const buttons = this.actionsEl?.querySelectorAll('button') ?? [];
    this.focusHeld = this.node.contains(document.activeElement);
    buttons.forEach(b => (b.disabled = true));
    this.showMessage('sending…', false);
    try {
      await actions.decide(this.callId, decision, extra);
      this.showMessage('', false);
    } catch (e) {
      this.showMessage(
        `Could not send the decision: ${(e as Error).message}`,
        true
      );
      buttons.forEach(b => (b.disabled = false));
      this.focusHeld = false;
    }
  }

  /**
   * Show (a function) or remove (null) the Replay button; only python calls that ran get one.
   * The saved-trace renderer offers it while its notebook has a kernel.
   */
  offerReplay(replayFn: ReplayFn | null): void {
    if (!replayFn) {
      this.replayRow?.remove();
      this.replayRow = null;
      return;
    }
    if (!this.replayable || this.replayRow) {
      return;
    }
    const out = h('div', { class: 'k2lab-replay-result' });
    const replay = button(
      'Replay',
      'k2lab-replay-btn',
      async () => {
        replay.disabled = true;
        out.replaceChildren(h('span', {}, 'replaying in the sandbox…'));
        try {
          const r = await replayFn(this.callId);
          out.replaceChildren(
            h(
              'div',
              { class: r.changed ? 'k2lab-warning' : 'k2lab-info' },
              r.changed ? 'Replay: output changed' : 'Replay: same output'
            ),
            h('pre', { class: 'k2lab-stdout' }, r.new_output)
          );
        } catch (e) {
          out.replaceChildren(
            h(
              'div',
              { class: 'k2lab-error' },
              `Replay failed: ${(e as Error).message}`
            )
          );
        } finally {
          replay.disabled = false;
        }
      },
      'Run the same code again in the sandbox and compare the output'
    );
    this.replayRow = h('div', { class: 'k2lab-replay' }, replay, out);
    this.body.append(this.replayRow);
  }

  private showMessage(text: string, isError: boolean): void {
    this.message.textContent = text;
    this.message.classList.toggle('k2lab-error', isError);
  }
}
