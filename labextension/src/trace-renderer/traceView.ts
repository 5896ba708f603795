/**
 * Builds the DOM of a trace from k2lab events, one event at a time, so the same code renders a
 * saved trace bundle (all events at once) and the live panel (events as they stream).
 *
 * Per run: the prompt, a status line (model label, isolation, policy), per step a collapsible
 * reasoning block, the step's text (Markdown once the step ends) and its tool-call cards, notices
 * and errors, and a closing summary (stop reason, steps, tool calls, tokens, time).
 */
import { button, compact, h } from '../dom';
import {
  IEventBase,
  IRunEnd,
  IRunStart,
  IToolDecision,
  IToolProposed,
  IToolResult
} from '../types';
import { Sanitize } from './display';
import { ICardActions, ReplayFn, ToolCard } from './toolCard';

export interface ITraceViewOptions {
  sanitize: Sanitize;
  /** Renders Markdown into `host` (rendermime's Markdown renderer, sanitized). */
  renderMarkdown: (host: HTMLElement, source: string) => Promise<void>;
  /** Present in the live panel: cards get Approve / Edit & run / Reject / Replay. */
  actions?: ICardActions;
  /** Live view: reasoning stays open while it streams and folds when the step ends. */
  live?: boolean;
  /**
   * Where keyboard focus goes after a decision when no other call waits (the panel's prompt
   * box); focus moves on to the next call's Approve when one is proposed.
   */
  focusFallback?: () => HTMLElement | null;
}

/** What the panel's status bar shows about the latest run. */
export interface IRunState {
  runId: string;
  modelLabel: string;
  isolation: string;
  policy: string;
  step: number;
  maxSteps: number;
  promptTokens: number;
  completionTokens: number;
  toolCalls: number;
  running: boolean;
  stopReason: string;
}

interface IStepBlock {
  node: HTMLElement;
  reasoning: HTMLDetailsElement;
  reasoningText: Text;
  reasoningSize: HTMLElement;
  content: HTMLElement;
  contentText: string;
  ended?: boolean;
}

/** RunView's `retry_text`: the attempt a retry starts (retry.attempt + 1) of max_attempts. */
export function retryText(ev: IEventBase): string {
  const attempt = Number(ev.attempt) + 1;
  return `attempt ${attempt} of ${ev.max_attempts} in ${Number(ev.delay).toFixed(1)} s: ${ev.reason}`;
}

/** Prompts longer than this fold to a few lines with a "show all" toggle. */
const FOLD_CHARS = 1200;
const FOLD_LINES = 8;

/** The prompt's text; a long one folded under a "show all" toggle (nothing is cut). */
function promptText(text: string): HTMLElement {
  const pre = h('pre', {}, text);
  if (text.length <= FOLD_CHARS && text.split('\n').length <= FOLD_LINES) {
    return pre;
  }
  const box = h('div', { class: 'k2lab-prompt-text k2lab-prompt-folded' }, pre);
  const size = `${compact(text.length)} chars`;
  const toggle = button(`show all · ${size}`, 'k2lab-prompt-toggle', () => {
    const folded = box.classList.toggle('k2lab-prompt-folded');
    toggle.textContent = folded ? `show all · ${size}` : 'show less';
    toggle.setAttribute('aria-expanded', String(!folded));
  });
  toggle.setAttribute('aria-expanded', 'false');
  box.append(toggle);
  return box;
}

/**
 * The prompt of a run. Notebook context the panel attached (the server appends it as
 * "Context (...):" and a fenced block) is folded under a summary, so a 20k-character notebook
 * does not push the conversation off screen.
 */
function promptBlock(prompt: string): HTMLElement {
  const m = /\n\nContext \(([^\n]*)\):\n```\n([\s\S]*)\n```$/.exec(prompt);
  if (!m) {
    return h('div', { class: 'k2lab-prompt' }, promptText(prompt));
  }
  return h(
    'div',
    { class: 'k2lab-prompt' },
    promptText(prompt.slice(0, m.index)),
    h(
      'details',
      { class: 'k2lab-prompt-context' },
      h('summary', {}, `Context: ${m[1]} · ${compact(m[2].length)} chars`),
      h('pre', {}, m[2])
    )
  );
}

export class TraceView {
  readonly node: HTMLElement;
  state: IRunState | null = null;
  private runNode: HTMLElement | null = null;
  private steps = new Map<number, IStepBlock>();
  private cards = new Map<string, ToolCard>();
  private lastStep: IStepBlock | null = null;
  /** Where focus was parked after a decision (see ITraceViewOptions.focusFallback). */
  private parked: HTMLElement | null = null;

  constructor(private options: ITraceViewOptions) {
    this.node = h('div', { class: 'k2lab-trace' });
  }

  clear(): void {
    this.node.replaceChildren();
    this.state = null;
    this.runNode = null;
    this.steps.clear();
    this.cards.clear();
    this.lastStep = null;
  }

  /** Calls waiting for a person's decision. */
  pendingCount(): number {
    let n = 0;
    for (const card of this.cards.values()) {
      n += card.node.dataset.state === 'pending' ? 1 : 0;
    }
    return n;
  }

  /** Offer (or withdraw, with null) Replay on every python call that ran. */
  setReplay(replayFn: ReplayFn | null): void {
    for (const card of this.cards.values()) {
      card.offerReplay(replayFn);
    }
  }

  /** Python calls that ran (what Replay would be offered on). */
  replayableCount(): number {
    let n = 0;
    for (const card of this.cards.values()) {
      n += card.isReplayable ? 1 : 0;
    }
    return n;
  }

  card(callId: string): ToolCard | undefined {
    return this.cards.get(callId);
  }

  add(ev: IEventBase): void {
    switch (ev.type) {
      case 'run.start':
        return this.runStart(ev as IRunStart);
      case 'step.start':
        this.step(ev.step);
        if (this.state) {
          this.state.step = ev.step;
        }
        return;
      case 'reasoning.delta': {
        const s = this.step(ev.step);
        s.reasoningText.appendData(ev.text);
        s.reasoningSize.textContent = `${compact(s.reasoningText.length)} chars`;
        return;
      }
      case 'content.delta': {
        const s = this.step(ev.step);
        s.contentText += ev.text;
        s.content.textContent = s.contentText;
        return;
      }
      case 'step.end':
        return this.stepEnd(ev);
      case 'tool.proposed':
        return this.toolProposed(ev as IToolProposed);
      case 'tool.decision': {
        const card = this.cards.get(ev.call_id);
        const hadFocus = !!card?.holdsFocus();
        card?.setDecision(ev as IToolDecision);
        if (hadFocus) {
          this.moveFocus(card);
        }
        return;
      }
      case 'tool.result':
        this.cards.get(ev.call_id)?.setResult(ev as IToolResult);
        return;
      case 'usage':
        if (this.state) {
          this.state.promptTokens += ev.prompt_tokens || 0;
          this.state.completionTokens += ev.completion_tokens || 0;
        }
        return;
      case 'retry':
        return this.line('k2lab-warning', `Retrying: ${retryText(ev)}`);
      case 'error':
        return this.line(
          'k2lab-note k2lab-error',
          `${ev.fatal ? 'Fatal error' : 'Error'} (${ev.kind}): ${ev.message}`
        );
      case 'notice':
        if (ev.kind === 'step_restart') {
          this.restartStep();
        }
        return this.line('k2lab-info', ev.message);
      case 'run.end':
        return this.runEnd(ev as IRunEnd);
      default:
        return; // an event type from a newer server: nothing to show
    }
  }

  private run(): HTMLElement {
    if (!this.runNode) {
      // events before any run.start (a cut trace): give them a home
      this.runNode = h('div', { class: 'k2lab-run' });
      this.node.append(this.runNode);
    }
    return this.runNode;
  }

  private runStart(ev: IRunStart): void {
    this.steps.clear();
    this.lastStep = null;
    this.state = {
      runId: ev.run_id,
      modelLabel: ev.model_label || ev.model,
      isolation: ev.isolation,
      policy: ev.policy,
      step: 0,
      maxSteps: ev.max_steps,
      promptTokens: 0,
      completionTokens: 0,
      toolCalls: 0,
      running: true,
      stopReason: ''
    };
    const demo = /demo/i.test(ev.model_label || '');
    this.runNode = h(
      'div',
      { class: 'k2lab-run', 'data-run-id': ev.run_id },
      promptBlock(ev.prompt),
      h(
        'div',
        { class: 'k2lab-head' },
        h(
          'span',
          { class: `k2lab-badge k2lab-model${demo ? ' k2lab-demo' : ''}` },
          ev.model_label || ev.model
        ),
        h(
          'span',
          { class: 'k2lab-badge k2lab-isolation' },
          `sandbox: ${ev.isolation}`
        ),
        h(
          'span',
          { class: 'k2lab-badge k2lab-policy' },
          `approval: ${ev.policy}`
        )
      )
    );
    this.node.append(this.runNode);
  }

  private step(n: number): IStepBlock {
    let s = this.steps.get(n);
    if (s) {
      return s;
    }
    // live: the newest step's reasoning stays open (it explains the call waiting for approval);
    // older steps fold so a long run stays readable
    this.foldReasoning();
    const reasoningText = document.createTextNode('');
    const reasoningSize = h('span', { class: 'k2lab-reasoning-size' });
    const reasoning = h(
      'details',
      { class: 'k2lab-reasoning', open: this.options.live },
      h(
        'summary',
        {},
        h('span', { class: 'k2lab-reasoning-title' }, `Thinking · step ${n}`),
        reasoningSize
      ),
      h('pre', { class: 'k2lab-reasoning-text' }, reasoningText)
    );
    const content = h('div', { class: 'k2lab-content' });
    const node = h(
      'div',
      { class: 'k2lab-step', 'data-step': String(n) },
      reasoning,
      content
    );
    s = {
      node,
      reasoning,
      reasoningText,
      reasoningSize,
      content,
      contentText: ''
    };
    this.steps.set(n, s);
    this.lastStep = s;
    this.run().append(node);
    return s;
  }

  private foldReasoning(): void {
    for (const s of this.steps.values()) {
      s.reasoning.open = false;
    }
  }

  /**
   * RunView's rule for `notice(kind="step_restart")`: the unfinished step's streamed text is
   * dropped (the provider streams the step again), so a cut stream is never shown twice.
   */
  private restartStep(): void {
    const n = this.state?.step;
    const s = n === undefined ? undefined : this.steps.get(n);
    if (!s || s.ended) {
      return;
    }
    s.reasoningText.data = '';
    s.reasoningSize.textContent = '0 chars';
    s.contentText = '';
    s.content.textContent = '';
  }

  private stepEnd(ev: IEventBase): void {
    const s = this.step(ev.step);
    s.ended = true;
    // the step's whole message is authoritative (a reconnect may have missed deltas)
    if (
      typeof ev.reasoning === 'string' &&
      ev.reasoning !== s.reasoningText.data
    ) {
      s.reasoningText.data = ev.reasoning;
      s.reasoningSize.textContent = `${compact(ev.reasoning.length)} chars`;
    }
    if (!s.reasoningText.length) {
      s.reasoning.hidden = true;
    }
    s.contentText = typeof ev.content === 'string' ? ev.content : s.contentText;
    this.markdown(s.content, s.contentText);
  }

  private markdown(host: HTMLElement, text: string): void {
    host.replaceChildren();
    if (!text.trim()) {
      return;
    }
    host.classList.add('k2lab-markdown');
    this.options.renderMarkdown(host, text).catch(() => {
      host.textContent = text; // the text matters more than its formatting
    });
  }

  private toolProposed(ev: IToolProposed): void {
    const card = new ToolCard(ev, this.options.sanitize, this.options.actions);
    this.cards.set(ev.call_id, card);
    if (this.state) {
      this.state.toolCalls += 1;
    }
    const s = this.steps.get(ev.step);
    (s ? s.node : this.run()).append(card.node);
    // focus parked after the last decision (and not moved since) goes on to this call
    if (this.parked && document.activeElement === this.parked) {
      if (card.focusApprove()) {
        this.parked = null;
      }
    }
  }

  /**
   * A decided card held the keyboard focus (its buttons are gone): move it to the next call that
   * waits, else park it where the panel says (the prompt box) rather than drop it to <body>.
   */
  private moveFocus(from: ToolCard | undefined): void {
    const cards = [...this.cards.values()];
    const after = cards.slice(cards.indexOf(from as ToolCard) + 1);
    for (const card of [...after, ...cards]) {
      if (card !== from && card.focusApprove()) {
        this.parked = null;
        return;
      }
    }
    const fallback = this.options.focusFallback?.() ?? null;
    if (fallback) {
      fallback.focus();
      this.parked = fallback;
      const unpark = () => {
        this.parked = null;
      };
      fallback.addEventListener('input', unpark, { once: true });
      fallback.addEventListener('blur', unpark, { once: true });
    }
  }

  private line(cls: string, text: string): void {
    this.run().append(h('div', { class: `k2lab-note ${cls}` }, text));
  }

  private runEnd(ev: IRunEnd): void {
    if (this.state) {
      this.state.running = false;
      this.state.stopReason = ev.stop_reason;
      this.state.step = ev.steps;
      this.state.promptTokens = ev.prompt_tokens ?? this.state.promptTokens;
      this.state.completionTokens =
        ev.completion_tokens ?? this.state.completionTokens;
    }
    for (const card of this.cards.values()) {
      card.setInactive();
    }
    this.foldReasoning();
    const last = this.lastStep;
    if (ev.answer && ev.answer.trim() !== (last?.contentText ?? '').trim()) {
      const answer = h('div', { class: 'k2lab-answer' });
      this.run().append(answer);
      this.markdown(answer, ev.answer);
    } else if (last && ev.answer) {
      last.content.classList.add('k2lab-answer');
    }
    const parts = [
      ev.stop_reason,
      `${ev.steps} step${ev.steps === 1 ? '' : 's'}`,
      `${ev.tool_calls} tool call${ev.tool_calls === 1 ? '' : 's'}`,
      `${compact(ev.prompt_tokens || 0)} in / ${compact(ev.completion_tokens || 0)} out tokens`
    ];
    if (ev.elapsed) {
      parts.push(`${ev.elapsed.toFixed(1)} s`);
    }
    this.run().append(
      h(
        'div',
        { class: `k2lab-run-end k2lab-status k2lab-stop-${ev.stop_reason}` },
        parts.join(' · '),
        ev.error
          ? h('div', { class: 'k2lab-note k2lab-error' }, ev.error)
          : null
      )
    );
  }
}
