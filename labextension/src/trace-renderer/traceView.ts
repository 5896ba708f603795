/**
 * Builds the DOM of a trace from k2lab events, one event at a time, so the same code renders a
 * saved trace bundle (all events at once) and the live panel (events as they stream).
 *
 * Every event goes through the fold of `fold.ts` (RunView's rules) first: it says which run the
 * event belongs to (heavy-mode lanes interleave) and holds the state the lane tiles and the verify
 * outcome read. Per run: the prompt, a status line (model label, isolation, policy), per step a
 * collapsible reasoning block, the step's text (Markdown once the step ends) and its tool-call
 * cards, notices and errors, the answer with the verify outcome next to it (verified / corrected /
 * could not verify, and what was checked), and a closing summary (stop reason, steps, tool calls,
 * tokens, time).
 *
 * Heavy mode (`lane` "1".."N", then "aggregate"): one block per heavy run with the task, the
 * lanes side by side as tiles (status, step, tokens; a click opens the lane's steps and cards
 * below), then the aggregation (its reasoning and answer, which lanes finished and which did not)
 * and its verify outcome. Cards are keyed by (run_id, call_id): Kimi's ids repeat across lanes.
 */
import { append, button, compact, h } from '../dom';
import {
  IEventBase,
  IRunEnd,
  IRunStart,
  IToolDecision,
  IToolProposed,
  IToolResult
} from '../types';
import { Sanitize } from './display';
import {
  budgetStopText,
  callLabel,
  contextGauge,
  contextOf,
  costText,
  costUsd,
  usdText,
  IFoldBudgets,
  IFoldRun,
  OUTCOME_WORDS,
  retryText,
  stepTokens,
  TraceFold
} from './fold';
import { codePre } from './highlight';
import { editableArgs } from './toolArgs';
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
  /** Present in the live panel: a going heavy lane gets a "Stop lane" button. */
  stopLane?: (lane: string) => Promise<void>;
  /**
   * The live panel: Replay is offered on every call whose tool the run lists as replayable
   * (python, read-only MCP tools: the server has the session's MCP servers). Without it only
   * python calls (a saved trace replays in the notebook kernel's sandbox, with no MCP servers).
   */
  replayRecorded?: boolean;
}

/** What the panel's status bar shows about the latest run (a heavy run: all its lanes). */
export interface IRunState {
  runId: string;
  modelLabel: string;
  /** the offline demo model answered (run.start's demo flag) */
  demo: boolean;
  isolation: string;
  policy: string;
  step: number;
  maxSteps: number;
  promptTokens: number;
  completionTokens: number;
  toolCalls: number;
  running: boolean;
  stopReason: string;
  /** heavy mode: how many lanes (0 for a single run) */
  lanes?: number;
  /** the run's budgets (run.start; unknown in older traces) */
  budgets?: IFoldBudgets;
  /** "ctx 41% of 262k" of a single run's latest request; "" when unknown or heavy */
  context?: string;
  /** how the run ended, a budget named ("budget: wall time 60 s"); "" while it runs */
  stopText?: string;
  /** "≈ $0.0123" at the preset's published prices; "" where none is known */
  cost?: string;
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

/** One run's DOM: where its steps, cards, notes and end go. */
interface IRunBlock {
  run: IFoldRun;
  node: HTMLElement;
  steps: Map<number, IStepBlock>;
  lastStep: IStepBlock | null;
  verify: HTMLElement | null;
  /** heavy mode: the group the run belongs to */
  group: IHeavyGroup | null;
}

/** One heavy run: its lanes' tiles and bodies, the aggregation. */
interface IHeavyGroup {
  id: string;
  node: HTMLElement;
  tiles: HTMLElement;
  bodies: HTMLElement;
  aggregate: HTMLElement;
  lanes: Map<string, ILane>;
  runs: IFoldRun[];
}

interface ILane {
  run: IFoldRun;
  tile: HTMLButtonElement;
  status: HTMLElement;
  step: HTMLElement;
  tokens: HTMLElement;
  answer: HTMLElement;
  body: HTMLElement;
  stop: HTMLButtonElement | null;
}

/** Prompts longer than this fold to a few lines with a "show all" toggle. */
const FOLD_CHARS = 1200;
const FOLD_LINES = 8;
const AGGREGATE = 'aggregate';

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
 * The prompt of a run: what the user typed, and the notebook context the panel attached
 * (run.start's `context` field) folded under a summary, so a 20k-character notebook does not push
 * the conversation off screen. Older traces have no field: the server appended the context to
 * the prompt as "Context (...):" and a fenced block, read back here (their one legacy read).
 */
function promptBlock(ev: IRunStart): HTMLElement {
  let prompt = ev.prompt;
  let ctx = contextOf(ev.context);
  if (!ctx) {
    const m = /\n\nContext \(([^\n]*)\):\n```\n([\s\S]*)\n```$/.exec(prompt);
    if (m) {
      prompt = prompt.slice(0, m.index);
      ctx = { label: m[1], text: m[2] };
    }
  }
  if (!ctx) {
    return h('div', { class: 'k2lab-prompt' }, promptText(prompt));
  }
  return h(
    'div',
    { class: 'k2lab-prompt' },
    promptText(prompt),
    h(
      'details',
      { class: 'k2lab-prompt-context' },
      h(
        'summary',
        {},
        `Context: ${ctx.label} · ${compact(ctx.text.length)} chars`
      ),
      h('pre', {}, ctx.text)
    )
  );
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A lane's state in one word: running, waiting for you, answered, failed, stopped, ... */
export function laneStatus(run: IFoldRun): string {
  if (run.status !== 'ended') {
    return run.calls.some(c => c.status === 'pending') ? 'waiting' : 'running';
  }
  switch (run.stop_reason) {
    case 'completed':
      return run.answer.trim() ? 'answered' : 'no answer';
    case 'error':
      return 'failed';
    case 'stopped':
      return 'stopped';
    default:
      return (run.stop_reason || 'ended').replace(/_/g, ' ');
  }
}

/** The heavy run a lane's run id belongs to ("HEAVYID.K" -> "HEAVYID"). */
function groupId(runId: string, lane: string): string {
  const tail = `.${lane}`;
  return runId.endsWith(tail) ? runId.slice(0, -tail.length) : runId;
}

export class TraceView {
  readonly node: HTMLElement;
  state: IRunState | null = null;
  private fold = new TraceFold();
  private blocks = new Map<IFoldRun, IRunBlock>();
  private groups = new Map<string, IHeavyGroup>();
  private latest: IRunBlock | null = null;
  /** by `${run_id}\n${call_id}` */
  private cards = new Map<string, ToolCard>();
  /** Where focus was parked after a decision (see ITraceViewOptions.focusFallback). */
  private parked: HTMLElement | null = null;

  constructor(private options: ITraceViewOptions) {
    this.node = h('div', { class: 'k2lab-trace' });
  }

  clear(): void {
    this.node.replaceChildren();
    this.state = null;
    this.fold = new TraceFold();
    this.blocks.clear();
    this.groups.clear();
    this.latest = null;
    this.cards.clear();
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

  /** The card of a call: of the run given, else the latest call with this id. */
  card(callId: string, runId?: string): ToolCard | undefined {
    if (runId !== undefined) {
      return this.cards.get(`${runId}\n${callId}`);
    }
    let found: ToolCard | undefined;
    for (const card of this.cards.values()) {
      found = card.callId === callId ? card : found;
    }
    return found;
  }

  add(ev: IEventBase): void {
    const run = this.fold.add(ev);
    const block =
      ev.type === 'run.start'
        ? this.runStart(ev as IRunStart, run)
        : this.blockOf(run);
    switch (ev.type) {
      case 'run.start':
        break;
      case 'step.start':
        this.step(block, ev.step);
        break;
      case 'reasoning.delta': {
        const s = this.step(block, ev.step);
        s.reasoningText.appendData(ev.text);
        return; // nothing else changes: no size, tile or status update per fragment
      }
      case 'content.delta': {
        const s = this.step(block, ev.step);
        s.contentText += ev.text;
        s.content.textContent = s.contentText;
        return;
      }
      case 'step.end':
        this.stepEnd(block, ev);
        break;
      case 'tool.proposed':
        this.toolProposed(block, ev as IToolProposed);
        break;
      case 'tool.decision': {
        const card = this.cards.get(`${run.run_id}\n${ev.call_id}`);
        const hadFocus = !!card?.holdsFocus();
        card?.setDecision(ev as IToolDecision);
        this.label(run, ev.call_id);
        if (hadFocus) {
          this.moveFocus(card);
        }
        break;
      }
      case 'tool.result':
        this.cards
          .get(`${run.run_id}\n${ev.call_id}`)
          ?.setResult(ev as IToolResult);
        this.label(run, ev.call_id);
        break;
      case 'usage':
        this.stepSize(run, this.step(block, ev.step), ev.step);
        break;
      case 'retry':
        // the fold's entry (the attempt it starts, of max_attempts), in RunView's words
        this.line(
          block,
          'k2lab-warning',
          `Retrying: ${retryText(run.retries[run.retries.length - 1])}`
        );
        break;
      case 'error':
        this.line(
          block,
          'k2lab-note k2lab-error',
          `${ev.fatal ? 'Fatal error' : 'Error'} (${ev.kind}): ${ev.message}`
        );
        break;
      case 'notice':
        if (ev.kind === 'step_restart') {
          this.restartStep(block);
        }
        this.line(block, 'k2lab-info', ev.message);
        break;
      case 'verify.start':
      case 'verify.end':
        this.showVerify(block);
        break;
      case 'run.end':
        this.runEnd(block, ev as IRunEnd);
        break;
      default:
        return; // an event type from a newer server: nothing to show
    }
    this.updateState(block);
    if (block.group) {
      this.updateGroup(block.group, block);
    }
  }

  private blockOf(run: IFoldRun): IRunBlock {
    let block = this.blocks.get(run);
    if (!block) {
      // events before any run.start (a cut trace): give them a home
      block = this.newBlock(run, h('div', { class: 'k2lab-run' }), null);
      this.node.append(block.node);
    }
    return block;
  }

  private newBlock(
    run: IFoldRun,
    node: HTMLElement,
    group: IHeavyGroup | null
  ): IRunBlock {
    const block: IRunBlock = {
      run,
      node,
      steps: new Map(),
      lastStep: null,
      verify: null,
      group
    };
    this.blocks.set(run, block);
    this.latest = block;
    return block;
  }

  private head(ev: IRunStart): HTMLElement {
    const demo =
      ev.demo === true ||
      (ev.demo === undefined && /demo/i.test(ev.model_label || ''));
    return h(
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
      h('span', { class: 'k2lab-badge k2lab-policy' }, `approval: ${ev.policy}`)
    );
  }

  private runStart(ev: IRunStart, run: IFoldRun): IRunBlock {
    const lane = run.lane;
    if (!lane) {
      const node = h(
        'div',
        { class: 'k2lab-run', 'data-run-id': ev.run_id },
        promptBlock(ev),
        this.head(ev)
      );
      this.node.append(node);
      return this.newBlock(run, node, null);
    }
    const group = this.group(ev, run);
    group.runs.push(run);
    if (lane === AGGREGATE) {
      const prompt = h(
        'details',
        { class: 'k2lab-aggregate-prompt' },
        h(
          'summary',
          {},
          `What the aggregation read · ${compact(ev.prompt.length)} chars`
        ),
        h('pre', {}, ev.prompt)
      );
      const node = h(
        'div',
        {
          class: 'k2lab-run k2lab-aggregate',
          'data-run-id': ev.run_id,
          'data-lane': lane
        },
        h('div', { class: 'k2lab-label' }, 'Aggregation'),
        prompt
      );
      group.aggregate.replaceChildren(node);
      group.aggregate.hidden = false;
      return this.newBlock(run, node, group);
    }
    const body = h('div', {
      class: 'k2lab-run k2lab-lane-body',
      'data-run-id': ev.run_id,
      'data-lane': lane,
      role: 'region',
      'aria-label': `Lane ${lane}`,
      hidden: true
    });
    body.append(h('div', { class: 'k2lab-label' }, `Lane ${lane}`));
    const stopLane = this.options.stopLane;
    let stop: HTMLButtonElement | null = null;
    if (stopLane && this.options.live) {
      const button = h(
        'button',
        {
          class: 'k2lab-stop-lane',
          type: 'button',
          title: `Stop lane ${lane} only (the others go on)`
        },
        'Stop lane'
      );
      button.addEventListener('click', () => {
        button.disabled = true;
        void stopLane(lane).catch(() => {
          button.disabled = false;
        });
      });
      body.append(button);
      stop = button;
    }
    const status = h('span', { class: 'k2lab-badge k2lab-lane-status' });
    const step = h('span', { class: 'k2lab-lane-step' });
    const tokens = h('span', { class: 'k2lab-lane-tokens' });
    const answer = h('span', { class: 'k2lab-lane-answer' });
    const tile = h(
      'button',
      {
        class: 'k2lab-lane',
        type: 'button',
        'data-lane': lane,
        'aria-expanded': 'false',
        title: `Lane ${lane}: show its steps and calls`
      },
      h(
        'span',
        { class: 'k2lab-lane-head' },
        h('span', { class: 'k2lab-lane-name' }, `Lane ${lane}`),
        status
      ),
      step,
      tokens,
      answer
    );
    tile.addEventListener('click', () =>
      this.expandLane(group.lanes.get(lane), body.hidden)
    );
    const old = group.lanes.get(lane);
    old?.tile.remove();
    old?.body.remove();
    group.lanes.set(lane, {
      run,
      tile,
      status,
      step,
      tokens,
      answer,
      body,
      stop
    });
    group.tiles.append(tile);
    group.bodies.append(body);
    return this.newBlock(run, body, group);
  }

  private expandLane(lane: ILane | undefined, open: boolean): void {
    if (!lane) {
      return;
    }
    lane.body.hidden = !open;
    lane.tile.setAttribute('aria-expanded', String(open));
    lane.tile.classList.toggle('k2lab-lane-open', open);
  }

  /** The heavy run a lane's run.start belongs to (created at its first lane). */
  private group(ev: IRunStart, run: IFoldRun): IHeavyGroup {
    const id = groupId(run.run_id, run.lane);
    const known = this.groups.get(id);
    if (known) {
      return known;
    }
    const tiles = h('div', {
      class: 'k2lab-lanes',
      role: 'group',
      'aria-label': 'Lanes'
    });
    const bodies = h('div', { class: 'k2lab-lane-bodies' });
    const aggregate = h('div', { class: 'k2lab-aggregate-slot', hidden: true });
    const summary = h('div', { class: 'k2lab-heavy-summary' });
    const node = h(
      'div',
      { class: 'k2lab-run k2lab-heavy', 'data-heavy-id': id },
      promptBlock(ev),
      this.head(ev),
      summary,
      tiles,
      bodies,
      aggregate
    );
    this.node.append(node);
    const group: IHeavyGroup = {
      id,
      node,
      tiles,
      bodies,
      aggregate,
      lanes: new Map(),
      runs: []
    };
    this.groups.set(id, group);
    return group;
  }

  /** Tiles and the heavy summary follow the fold (not per streamed fragment). */
  private updateGroup(group: IHeavyGroup, block: IRunBlock): void {
    const run = block.run;
    const lane = group.lanes.get(run.lane);
    if (lane && lane.run === run) {
      const st = laneStatus(run);
      lane.status.textContent = st === 'waiting' ? 'waiting for you' : st;
      lane.tile.dataset.status = st.replace(/ /g, '_');
      if (lane.stop) {
        lane.stop.hidden = st !== 'running' && st !== 'waiting';
      }
      const max = run.max_steps ? `/${run.max_steps}` : '';
      lane.step.textContent = `step ${run.steps.length}${max} · ${plural(run.totals.calls, 'call')}`;
      const laneCost = costText(run.totals, run.budgets.prices);
      lane.tokens.textContent =
        `${compact(run.totals.prompt_tokens)} in / ${compact(run.totals.completion_tokens)} out tokens` +
        (laneCost ? ` · ${laneCost}` : '');
      const why =
        st === 'failed' ? run.error || run.errors[0]?.message || '' : '';
      lane.answer.textContent = why || firstLine(run.answer);
      lane.answer.classList.toggle('k2lab-error', !!why);
      if (st === 'waiting' && this.options.actions) {
        this.expandLane(lane, true); // its call waits: show the card
      }
    }
    const lanes = group.runs.filter(r => r.lane !== AGGREGATE);
    const ended = lanes.filter(r => r.status === 'ended');
    const ok = ended.filter(r => laneStatus(r) === 'answered');
    const tokensIn = group.runs.reduce((n, r) => n + r.totals.prompt_tokens, 0);
    const tokensOut = group.runs.reduce(
      (n, r) => n + r.totals.completion_tokens,
      0
    );
    // every lane's and the aggregation's cost at their presets' prices, where known
    const costs = group.runs
      .map(r => costUsd(r.totals, r.budgets.prices))
      .filter((c): c is number => c !== null);
    const cost = costs.length
      ? ` · ${usdText(costs.reduce((a, b) => a + b, 0))} in all`
      : '';
    const summary = group.node.querySelector('.k2lab-heavy-summary');
    if (summary) {
      summary.textContent =
        `Heavy: ${plural(lanes.length, 'lane')} · ${ok.length} answered` +
        (ended.length - ok.length ? ` · ${ended.length - ok.length} not` : '') +
        (lanes.length - ended.length
          ? ` · ${lanes.length - ended.length} running`
          : '') +
        ` · ${compact(tokensIn)} in / ${compact(tokensOut)} out tokens in all` +
        cost;
    }
  }

  /** The panel's status line: the latest run, or all lanes of the latest heavy run. */
  private updateState(block: IRunBlock): void {
    if (block !== this.latest && block.group !== this.latest?.group) {
      return;
    }
    const runs = block.group ? block.group.runs : [block.run];
    const first = runs[0];
    const running = runs.some(r => r.status !== 'ended');
    this.state = {
      runId: block.group?.id ?? first.run_id,
      modelLabel: first.model_label,
      demo: first.demo,
      isolation: first.isolation,
      policy: first.policy,
      step: Math.max(0, ...runs.map(r => r.current ?? r.totals.steps)),
      maxSteps: first.max_steps,
      promptTokens: runs.reduce((n, r) => n + r.totals.prompt_tokens, 0),
      completionTokens: runs.reduce(
        (n, r) => n + r.totals.completion_tokens,
        0
      ),
      toolCalls: runs.reduce((n, r) => n + r.totals.calls, 0),
      running,
      stopReason: running ? '' : runs[runs.length - 1].stop_reason || '',
      lanes: block.group
        ? runs.filter(r => r.lane !== AGGREGATE).length
        : undefined,
      budgets: first.budgets,
      context: block.group
        ? ''
        : contextGauge(first.last_prompt_tokens, first.budgets.context_window),
      cost: block.group ? '' : costText(first.totals, first.budgets.prices),
      stopText: running
        ? ''
        : budgetStopText(
            runs[runs.length - 1].stop_reason,
            runs[runs.length - 1].budgets,
            runs[runs.length - 1].max_steps
          )
    };
  }

  private step(block: IRunBlock, n: number): IStepBlock {
    let s = block.steps.get(n);
    if (s) {
      return s;
    }
    // live: the newest step's reasoning stays open (it explains the call waiting for approval);
    // older steps fold so a long run stays readable
    this.foldReasoning(block);
    const reasoningText = document.createTextNode('');
    const reasoningSize = h('span', { class: 'k2lab-reasoning-size' });
    const v = block.run.verify;
    const title =
      v && v.phase === 'checking'
        ? `Checking · round ${v.rounds[v.rounds.length - 1]?.round ?? 1} · step ${n}`
        : `Thinking · step ${n}`;
    const reasoning = h(
      'details',
      { class: 'k2lab-reasoning', open: this.options.live },
      h(
        'summary',
        {},
        h('span', { class: 'k2lab-reasoning-title' }, title),
        reasoningSize
      ),
      h('pre', { class: 'k2lab-reasoning-text' }, reasoningText)
    );
    const content = h('div', { class: 'k2lab-content' });
    const node = h(
      'div',
      {
        class: `k2lab-step${v && v.phase === 'checking' ? ' k2lab-verify-step' : ''}`,
        'data-step': String(n)
      },
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
    block.steps.set(n, s);
    block.lastStep = s;
    block.node.append(node);
    return s;
  }

  private foldReasoning(block: IRunBlock): void {
    for (const s of block.steps.values()) {
      s.reasoning.open = false;
    }
  }

  /**
   * RunView's rule for `notice(kind="step_restart")`: the unfinished step's streamed text is
   * dropped (the provider streams the step again), so a cut stream is never shown twice.
   */
  private restartStep(block: IRunBlock): void {
    const n = block.run.current;
    const s = n === null ? undefined : block.steps.get(n);
    if (!s || s.ended) {
      return;
    }
    s.reasoningText.data = '';
    s.reasoningSize.textContent = '';
    s.contentText = '';
    s.content.textContent = '';
  }

  /** A step's size in tokens, from its usage (RunView's `step_tokens`), as the live widget says. */
  private stepSize(run: IFoldRun, s: IStepBlock, n: number): void {
    let tokens: number | null = null;
    for (let i = run.steps.length - 1; i >= 0; i--) {
      if (run.steps[i].index === n) {
        tokens = stepTokens(run.steps[i]); // the latest steps are the ones that change
        break;
      }
    }
    s.reasoningSize.textContent =
      tokens === null ? '' : `${compact(tokens)} tokens`;
  }

  private stepEnd(block: IRunBlock, ev: IEventBase): void {
    const s = this.step(block, ev.step);
    s.ended = true;
    // the step's whole message is authoritative (a reconnect may have missed deltas)
    if (
      typeof ev.reasoning === 'string' &&
      ev.reasoning !== s.reasoningText.data
    ) {
      s.reasoningText.data = ev.reasoning;
    }
    this.stepSize(block.run, s, ev.step);
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

  /** A card's words from the fold's state of its call (RunView's `call_label`). */
  private label(run: IFoldRun, callId: string): void {
    const call = this.fold.call(run, callId);
    if (call) {
      this.cards
        .get(`${run.run_id}\n${callId}`)
        ?.setLabel(callLabel(call), call.status);
    }
  }

  private toolProposed(block: IRunBlock, ev: IToolProposed): void {
    const runId = block.run.run_id;
    const actions = this.options.actions;
    // decisions name the run too: Kimi's ids (functions.python:0) repeat across lanes
    const cardActions: ICardActions | undefined = actions && {
      decide: (callId, decision, extra) =>
        actions.decide(callId, decision, extra, runId),
      replay: callId => actions.replay(callId, runId)
    };
    const canReplay = this.options.replayRecorded
      ? block.run.replayable.includes(ev.name)
      : ev.name === 'python';
    const card = new ToolCard(
      ev,
      this.options.sanitize,
      cardActions,
      canReplay
    );
    card.node.dataset.runId = runId;
    this.cards.set(`${runId}\n${ev.call_id}`, card);
    this.label(block.run, ev.call_id);
    const s = block.steps.get(ev.step);
    (s ? s.node : block.node).append(card.node);
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

  private line(block: IRunBlock, cls: string, text: string): void {
    block.node.append(h('div', { class: `k2lab-note ${cls}` }, text));
  }

  /** The verify pass's state: checking while a round runs, then the outcome and what was checked. */
  private showVerify(block: IRunBlock): void {
    const v = block.run.verify;
    if (!v) {
      return;
    }
    if (!block.verify) {
      block.verify = h('div', { class: 'k2lab-verify', role: 'status' });
      block.node.append(block.verify);
    }
    const node = block.verify;
    const last = v.rounds[v.rounds.length - 1];
    const done = v.phase !== 'checking' && v.outcome !== null;
    const outcome = done ? (v.outcome as string) : 'checking';
    node.className = `k2lab-verify k2lab-verify-${outcome}`;
    node.dataset.outcome = outcome;
    const title =
      v.phase === 'checking'
        ? `Checking the answer · round ${last.round} of ${last.max_rounds}`
        : v.phase === 'correcting'
          ? `Check found a fault · correcting (round ${last.round} of ${last.max_rounds})`
          : `${cap(OUTCOME_WORDS[outcome] ?? outcome)}`;
    const checks = v.rounds.reduce((n, r) => n + r.checks.length, 0);
    const facts =
      done || v.phase === 'correcting'
        ? ` · ${plural(v.rounds.length, 'round')}, ${plural(checks, 'tool call')} in the check`
        : '';
    const rounds = v.rounds
      .filter(r => r.status === 'done')
      .map(r =>
        h(
          'div',
          { class: 'k2lab-verify-round' },
          h(
            'div',
            {},
            h('strong', {}, `Round ${r.round}: `),
            `${(r.verdict || 'none').replace(/_/g, ' ')}`,
            r.reason ? ` · ${r.reason}` : ''
          ),
          r.summary
            ? h('div', { class: 'k2lab-verify-summary' }, r.summary)
            : null,
          ...r.checks.map(c =>
            h(
              'div',
              { class: 'k2lab-verify-check' },
              h('span', { class: 'k2lab-tool-name' }, `${c.name} ${c.call_id}`),
              codePre(editableArgs(c.arguments).text, true),
              c.output ? h('pre', { class: 'k2lab-stdout' }, c.output) : null
            )
          )
        )
      );
    const summary = done ? v.rounds[v.rounds.length - 1].summary : '';
    node.replaceChildren();
    append(
      node,
      h(
        'div',
        { class: 'k2lab-verify-head' },
        h('span', { class: 'k2lab-badge k2lab-verify-badge' }, title),
        facts
      ),
      summary ? h('div', { class: 'k2lab-verify-summary' }, summary) : null,
      rounds.length
        ? h(
            'details',
            { class: 'k2lab-verify-rounds' },
            h('summary', {}, 'What was checked'),
            ...rounds
          )
        : null
    );
  }

  private runEnd(block: IRunBlock, ev: IRunEnd): void {
    const runId = block.run.run_id;
    for (const card of this.cards.values()) {
      if (card.node.dataset.runId === runId) {
        card.setInactive();
        this.label(block.run, card.callId);
      }
    }
    this.foldReasoning(block);
    const last = block.lastStep;
    const verify = block.run.verify;
    if (
      ev.answer &&
      (verify || ev.answer.trim() !== (last?.contentText ?? '').trim())
    ) {
      const answer = h('div', { class: 'k2lab-answer' });
      block.node.append(answer);
      this.markdown(answer, ev.answer);
    } else if (last && ev.answer) {
      last.content.classList.add('k2lab-answer');
    }
    if (block.verify) {
      block.node.append(block.verify); // next to the answer
    }
    const parts = [
      budgetStopText(ev.stop_reason, block.run.budgets, block.run.max_steps),
      plural(ev.steps, 'step'),
      plural(ev.tool_calls, 'tool call'),
      `${compact(ev.prompt_tokens || 0)} in / ${compact(ev.completion_tokens || 0)} out tokens`
    ];
    const ctx = contextGauge(
      block.run.last_prompt_tokens,
      block.run.budgets.context_window
    );
    if (ctx) {
      parts.push(`last request ${ctx}`);
    }
    const cost = costText(block.run.totals, block.run.budgets.prices);
    if (cost) {
      parts.push(cost);
    }
    if (ev.elapsed) {
      parts.push(`${ev.elapsed.toFixed(1)} s`);
    }
    if (block.run.lane === AGGREGATE && block.group) {
      block.node.append(this.lanesUsed(block.group));
    }
    block.node.append(
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

  /** Which lanes the aggregation had answers from, and which did not finish and why. */
  private lanesUsed(group: IHeavyGroup): HTMLElement {
    const lanes = group.runs.filter(r => r.lane !== AGGREGATE);
    const ok = lanes.filter(r => laneStatus(r) === 'answered');
    const not = lanes.filter(r => laneStatus(r) !== 'answered');
    return h(
      'div',
      { class: 'k2lab-lanes-used' },
      `Aggregated the answers of ${ok.length ? ok.map(r => `lane ${r.lane}`).join(', ') : 'no lane'}`,
      not.length
        ? `; did not finish: ${not
            .map(r => {
              const why = r.error || r.errors[0]?.message || laneStatus(r);
              return `lane ${r.lane} (${why})`;
            })
            .join(', ')}`
        : '',
      '.'
    );
  }
}

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function firstLine(text: string): string {
  const line = text.trim().split('\n')[0] || '';
  return line.length > 120 ? `${line.slice(0, 119)}…` : line;
}
