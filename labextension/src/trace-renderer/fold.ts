/**
 * The browser side of RunView's rules (k2lab/trace/view.py), as a pure fold with no DOM: what
 * `traceView.ts` shows for runs and heavy-mode lanes (identity: `run_id`, else the latest run of
 * the event's `lane`, else the latest run), steps (the streamed text, dropped on
 * `notice(kind="step_restart")`, replaced by `step.end`'s whole message), calls keyed by
 * (run_id, call_id) with one state vocabulary, retries ("attempt 2 of 4": the attempt a retry
 * starts), errors, tokens, the answer (the one under check stands during a verify pass until a
 * correction replaces it), the verify pass (rounds, outcome, phase) and the end of a run.
 * Checked against the golden traces in tests/trace/data/ by scripts/test.d/35-trace-golden-ts.sh,
 * field for field with the `*.view.json` files.
 */
import type { IEventBase } from '../types';

export interface IFoldUsage {
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  reasoning_tokens: number;
}

export interface IFoldStep {
  index: number;
  reasoning: string;
  content: string;
  done: boolean;
  restarts: number;
  usage: IFoldUsage | null;
  calls: string[];
}

export interface IFoldRetry {
  step: number | null;
  attempt: number;
  max_attempts: number;
  delay: number;
  reason: string;
}

export interface IFoldError {
  step: number | null;
  kind: string;
  message: string;
  fatal: boolean;
}

export interface IFoldCall {
  run_id: string;
  call_id: string;
  step: number;
  name: string;
  /** null while the call waits; approve / edit / reject / stop / not_run */
  decision: string | null;
  /** pending / running / done / error / rejected / not_run */
  status: string;
  executed: boolean;
  reason: string | null;
}

export interface IFoldCheck {
  call_id: string;
  name: string;
  arguments: string;
  output: string;
}

export interface IFoldRound {
  round: number;
  max_rounds: number;
  prompt: string;
  status: string;
  verdict: string | null;
  outcome: string | null;
  summary: string;
  reason: string;
  checks: IFoldCheck[];
  correction: string | null;
}

export interface IFoldVerify {
  /** the last verify.end's: verified / corrected / unverified; null while the first round runs */
  outcome: string | null;
  /** checking / correcting / answered */
  phase: string;
  rounds: IFoldRound[];
}

export interface IFoldTotals {
  steps: number;
  calls: number;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  reasoning_tokens: number;
  duration: number | null;
}

/** RunView's ``budgets``: from run.start; null / 0 = unlimited or unknown (older traces). */
export interface IFoldBudgets {
  wall_time: number | null;
  max_total_tokens: number | null;
  max_tokens: number | null;
  context_window: number;
  /** USD per 1M tokens [input, cached input, output] where the preset knows them */
  prices: number[] | null;
}

export interface IFoldRun {
  run_id: string;
  lane: string;
  prompt: string;
  model_label: string;
  /** run.start's flag: the offline demo model answered (a field, never read from the label) */
  demo: boolean;
  isolation: string;
  policy: string;
  max_steps: number;
  status: string;
  stop_reason: string | null;
  error: string | null;
  answer: string;
  steps: IFoldStep[];
  calls: IFoldCall[];
  retries: IFoldRetry[];
  errors: IFoldError[];
  totals: IFoldTotals;
  budgets: IFoldBudgets;
  /** the latest request's prompt tokens (the context gauge) */
  last_prompt_tokens: number;
  /** run.start's `context`: what the user attached to the prompt (null: none, or an older
   * trace whose prompt holds it) */
  context: { label: string; text: string } | null;
  /** run.start's `replayable`: the tools whose calls can run again (python, read-only MCP
   * tools; an older trace: python) */
  replayable: string[];
  /** the step streaming now */
  current: number | null;
  /** present only for runs with a verify pass */
  verify?: IFoldVerify;
}

const USAGE_KEYS = [
  'prompt_tokens',
  'completion_tokens',
  'cached_tokens',
  'reasoning_tokens'
] as const;

export class TraceFold {
  readonly runs: IFoldRun[] = [];
  private byLane = new Map<string, IFoldRun>();
  private byId = new Map<string, IFoldRun>();
  private callsOf = new Map<IFoldRun, Map<string, IFoldCall>>();
  private editedArgs = new Map<IFoldCall, string | null>();
  private answered = new Set<IFoldCall>();

  /** A run's call by id (the latest with that id in the run). */
  call(run: IFoldRun, callId: string): IFoldCall | undefined {
    return this.callsOf.get(run)?.get(callId);
  }

  /** The latest run of each lane, in order of first appearance ("" for a single run). */
  lanes(): IFoldRun[] {
    return [...this.byLane.values()];
  }

  /** The run an event belongs to (RunView's identity rule); creates an implicit one if none. */
  runOf(ev: IEventBase): IFoldRun {
    const byId =
      typeof ev.run_id === 'string' && ev.run_id
        ? this.byId.get(ev.run_id)
        : undefined;
    if (byId) {
      return byId;
    }
    const byLane =
      typeof ev.lane === 'string' && ev.lane
        ? this.byLane.get(ev.lane)
        : undefined;
    if (byLane) {
      return byLane;
    }
    if (!this.runs.length) {
      this.addRun(newRun(str(ev.run_id), ''));
    }
    return this.runs[this.runs.length - 1];
  }

  add(ev: IEventBase): IFoldRun {
    if (ev.type === 'run.start') {
      const run = newRun(str(ev.run_id), str(ev.lane));
      run.prompt = str(ev.prompt);
      run.model_label = str(ev.model_label) || str(ev.model);
      run.demo = ev.demo === true;
      run.isolation = str(ev.isolation);
      run.policy = str(ev.policy);
      run.max_steps = int(ev.max_steps);
      run.budgets = budgetsOf(ev);
      run.context = contextOf(ev.context);
      if (Array.isArray(ev.replayable)) {
        run.replayable = ev.replayable.filter(
          (t: unknown): t is string => typeof t === 'string'
        );
      }
      this.addRun(run);
      return run;
    }
    const run = this.runOf(ev);
    switch (ev.type) {
      case 'step.start': {
        const n = int(ev.step);
        this.step(run, n);
        run.current = n;
        run.totals.steps = Math.max(run.totals.steps, run.steps.length);
        break;
      }
      case 'reasoning.delta':
        this.step(run, int(ev.step)).reasoning += str(ev.text);
        break;
      case 'content.delta':
        this.step(run, int(ev.step)).content += str(ev.text);
        break;
      case 'step.end':
        this.stepEnd(run, ev);
        break;
      case 'usage': {
        const s = this.step(run, int(ev.step));
        if (!s.usage) {
          s.usage = {
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            reasoning_tokens: 0
          };
        }
        for (const k of USAGE_KEYS) {
          s.usage[k] += int(ev[k]);
          run.totals[k] += int(ev[k]);
        }
        if (int(ev.prompt_tokens) > 0) {
          run.last_prompt_tokens = int(ev.prompt_tokens);
        }
        break;
      }
      case 'tool.proposed':
        this.proposed(run, ev);
        break;
      case 'tool.decision':
        this.decision(run, ev);
        break;
      case 'tool.result':
        this.result(run, ev);
        break;
      case 'notice': {
        const n = run.current;
        if (ev.kind === 'step_restart' && n !== null) {
          const s = this.step(run, n);
          s.reasoning = '';
          s.content = '';
          s.restarts += 1;
        }
        break;
      }
      case 'retry':
        run.retries.push({
          step: run.current,
          attempt: int(ev.attempt) + 1,
          max_attempts: int(ev.max_attempts),
          delay: num(ev.delay),
          reason: str(ev.reason)
        });
        break;
      case 'error':
        run.errors.push({
          step: run.current,
          kind: strOr(ev.kind, 'error'),
          message: str(ev.message),
          fatal: ev.fatal === true
        });
        break;
      case 'verify.start':
        this.verifyStart(run, ev);
        break;
      case 'verify.end':
        this.verifyEnd(run, ev);
        break;
      case 'run.end':
        this.runEnd(run, ev);
        break;
      default:
        break; // an event type from a newer writer
    }
    return run;
  }

  private addRun(run: IFoldRun): void {
    this.runs.push(run);
    this.byId.set(run.run_id, run);
    this.callsOf.set(run, new Map());
    if (run.lane) {
      this.byLane.set(run.lane, run);
    }
  }

  private step(run: IFoldRun, n: number): IFoldStep {
    let s = run.steps.find(x => x.index === n);
    if (!s) {
      s = {
        index: n,
        reasoning: '',
        content: '',
        done: false,
        restarts: 0,
        usage: null,
        calls: []
      };
      run.steps.push(s);
      run.steps.sort((a, b) => a.index - b.index);
    }
    return s;
  }

  private stepEnd(run: IFoldRun, ev: IEventBase): void {
    const s = this.step(run, int(ev.step));
    s.reasoning = typeof ev.reasoning === 'string' ? ev.reasoning : s.reasoning;
    s.content = typeof ev.content === 'string' ? ev.content : s.content;
    s.done = true;
    const calls = Array.isArray(ev.tool_calls)
      ? ev.tool_calls.filter(
          (c: unknown) => !!c && typeof c === 'object' && !Array.isArray(c)
        )
      : [];
    const v = run.verify;
    if (!v) {
      if (!calls.length || s.content) {
        run.answer = s.content;
      }
    } else if (v.phase === 'correcting' && !calls.length) {
      // during a verify pass only the corrected answer replaces the one that stands
      run.answer = s.content;
      v.phase = 'answered';
    }
    if (run.current === s.index) {
      run.current = null;
    }
  }

  private proposed(run: IFoldRun, ev: IEventBase): void {
    const cid = str(ev.call_id);
    const step = int(ev.step);
    const call: IFoldCall = {
      run_id: run.run_id,
      call_id: cid,
      step,
      name: str(ev.name),
      decision: null,
      status: 'pending',
      executed: false,
      reason: null
    };
    if (typeof ev.problem === 'string' && ev.problem) {
      call.decision = 'not_run';
      call.reason = 'invalid';
      call.status = 'not_run';
    }
    const calls = this.callsOf.get(run) as Map<string, IFoldCall>;
    const old = calls.get(cid);
    if (old) {
      // the same id twice in one run: the latest wins (and goes last, as RunView's dict does)
      calls.delete(cid);
      run.calls.splice(run.calls.indexOf(old), 1);
    }
    calls.set(cid, call);
    run.calls.push(call);
    this.step(run, step).calls.push(cid);
    run.totals.calls += 1;
  }

  /** The call an event names, in the event's run. */
  callOf(ev: IEventBase): IFoldCall | undefined {
    return this.callsOf.get(this.runOf(ev))?.get(str(ev.call_id));
  }

  private decision(run: IFoldRun, ev: IEventBase): void {
    const call = this.callsOf.get(run)?.get(str(ev.call_id));
    if (!call || call.status !== 'pending') {
      return;
    }
    if (ev.decision === 'reject') {
      call.decision = 'reject';
      call.status = 'rejected';
    } else if (ev.decision === 'edit') {
      call.decision = 'edit';
      call.status = 'running';
      this.editedArgs.set(
        call,
        typeof ev.arguments === 'string' ? ev.arguments : null
      );
    } else if (ev.decision === 'approve') {
      call.decision = 'approve';
      call.status = 'running';
    }
  }

  private result(run: IFoldRun, ev: IEventBase): void {
    const call = this.callsOf.get(run)?.get(str(ev.call_id));
    if (!call || this.answered.has(call)) {
      return; // answered already: the first answer is the one the model read
    }
    this.answered.add(call);
    if (call.status === 'pending') {
      call.decision = 'stop'; // answered without a decision: the run stopped
      call.status = 'not_run';
    } else if (call.status === 'running') {
      const edited = this.editedArgs.get(call);
      if (
        call.decision === 'edit' &&
        typeof edited === 'string' &&
        !jsonObject(edited)
      ) {
        call.reason = 'invalid_edit';
        call.status = 'not_run';
      } else {
        call.executed = true;
        call.status = ev.ok === true ? 'done' : 'error';
      }
    }
  }

  private verifyStart(run: IFoldRun, ev: IEventBase): void {
    if (!run.verify) {
      run.verify = { outcome: null, phase: 'checking', rounds: [] };
    }
    run.verify.phase = 'checking';
    run.verify.rounds.push({
      round: int(ev.round),
      max_rounds: int(ev.max_rounds),
      prompt: str(ev.prompt),
      status: 'checking',
      verdict: null,
      outcome: null,
      summary: '',
      reason: '',
      checks: [],
      correction: null
    });
  }

  private verifyEnd(run: IFoldRun, ev: IEventBase): void {
    if (!run.verify || !run.verify.rounds.length) {
      this.verifyStart(run, ev); // a trace cut before its start: still show the verdict
    }
    const v = run.verify as IFoldVerify;
    const r = v.rounds[v.rounds.length - 1];
    const checks = Array.isArray(ev.checks) ? ev.checks : [];
    r.status = 'done';
    r.verdict = strOr(ev.verdict, 'none');
    r.outcome = strOr(ev.outcome, 'unverified');
    r.summary = str(ev.summary);
    r.reason = str(ev.reason);
    r.checks = checks
      .filter((c: unknown) => !!c && typeof c === 'object' && !Array.isArray(c))
      .map((c: { [k: string]: unknown }) => ({
        call_id: str(c.call_id),
        name: str(c.name),
        arguments: str(c.arguments),
        output: str(c.output)
      }));
    r.correction = typeof ev.correction === 'string' ? ev.correction : null;
    v.outcome = r.outcome;
    v.phase = r.correction !== null ? 'correcting' : 'answered';
  }

  private runEnd(run: IFoldRun, ev: IEventBase): void {
    const reason = strOr(ev.stop_reason, 'error');
    run.status = 'ended';
    run.stop_reason = reason;
    run.error = typeof ev.error === 'string' ? ev.error : null;
    if (typeof ev.answer === 'string') {
      run.answer = ev.answer;
    }
    for (const call of run.calls) {
      if (call.status === 'pending') {
        call.decision = 'stop';
        call.status = 'not_run';
      } else if (call.status === 'running') {
        call.reason = 'no_result';
        call.status = 'not_run';
      }
      if (call.decision === 'stop' && call.reason === null) {
        call.reason = reason;
      }
    }
    const t = run.totals;
    t.steps = Math.max(t.steps, int(ev.steps));
    t.calls = Math.max(t.calls, int(ev.tool_calls));
    for (const k of ['prompt_tokens', 'completion_tokens'] as const) {
      if (int(ev[k])) {
        t[k] = int(ev[k]);
      }
    }
    t.duration = typeof ev.elapsed === 'number' ? ev.elapsed : null;
    run.current = null;
  }
}

function newRun(runId: string, lane: string): IFoldRun {
  return {
    run_id: runId,
    lane,
    prompt: '',
    model_label: '',
    demo: false,
    isolation: '',
    policy: '',
    max_steps: 0,
    replayable: ['python'],
    status: 'running',
    stop_reason: null,
    error: null,
    answer: '',
    steps: [],
    calls: [],
    retries: [],
    errors: [],
    totals: {
      steps: 0,
      calls: 0,
      prompt_tokens: 0,
      completion_tokens: 0,
      cached_tokens: 0,
      reasoning_tokens: 0,
      duration: null
    },
    budgets: {
      wall_time: null,
      max_total_tokens: null,
      max_tokens: null,
      context_window: 0,
      prices: null
    },
    last_prompt_tokens: 0,
    context: null,
    current: null
  };
}

/** RunView's `context_of`: run.start's `{label, text}`, or null when absent or not that shape. */
export function contextOf(v: unknown): { label: string; text: string } | null {
  if (!v || typeof v !== 'object' || Array.isArray(v)) {
    return null;
  }
  const c = v as { label?: unknown; text?: unknown };
  if (typeof c.text !== 'string') {
    return null;
  }
  return { label: typeof c.label === 'string' ? c.label : '', text: c.text };
}

function positive(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v > 0;
}

/** RunView's `budgets_of`: a missing or bad value is unknown (null / 0). */
export function budgetsOf(ev: IEventBase): IFoldBudgets {
  const e = ev as { [k: string]: unknown };
  const whole = (v: unknown): number | null =>
    positive(v) && Number.isInteger(v) ? (v as number) : null;
  return {
    wall_time: positive(e.wall_time) ? (e.wall_time as number) : null,
    max_total_tokens: whole(e.max_total_tokens),
    max_tokens: whole(e.max_tokens),
    context_window: Math.max(0, int(e.context_window)),
    prices:
      Array.isArray(e.prices) &&
      e.prices.length === 3 &&
      e.prices.every(p => typeof p === 'number' && Number.isFinite(p) && p >= 0)
        ? (e.prices as number[])
        : null
  };
}

/** RunView's `cost_text`: "≈ $0.0123" at the preset's prices; "" where none is known. */
export function costText(t: IFoldTotals, prices: number[] | null): string {
  const usd = costUsd(t, prices);
  return usd === null ? '' : usdText(usd);
}

/** USD for these tokens at the preset's prices (null: the preset knows none). */
export function costUsd(
  t: IFoldTotals,
  prices: number[] | null
): number | null {
  if (!prices) {
    return null;
  }
  const cached = t.cached_tokens;
  const fresh = Math.max(0, t.prompt_tokens - cached);
  return (
    (fresh * prices[0] + cached * prices[1] + t.completion_tokens * prices[2]) /
    1e6
  );
}

export function usdText(usd: number): string {
  return `≈ $${usd < 1 ? usd.toFixed(4) : usd.toFixed(2)}`;
}

/** RunView's `short_count`: 262144 -> "262k". */
export function shortCount(n: number): string {
  if (n >= 1e6) {
    return `${(n / 1e6).toFixed(1)}M`.replace('.0M', 'M');
  }
  if (n >= 1e4) {
    return `${Math.round(n / 1e3)}k`;
  }
  if (n >= 1e3) {
    return `${(n / 1e3).toFixed(1)}k`.replace('.0k', 'k');
  }
  return String(n);
}

/** RunView's `context_gauge`: "ctx 41% of 262k", "" when unknown. */
export function contextGauge(lastPrompt: number, window: number): string {
  if (window <= 0 || lastPrompt <= 0) {
    return '';
  }
  return `ctx ${Math.round((100 * lastPrompt) / window)}% of ${shortCount(window)}`;
}

/** RunView's `budget_stop_text`: "budget: wall time 60 s"; other reasons as they are. */
export function budgetStopText(
  reason: string | null,
  b: IFoldBudgets,
  maxSteps: number
): string {
  if (reason === 'wall_time') {
    return b.wall_time
      ? `budget: wall time ${b.wall_time} s`
      : 'budget: wall time';
  }
  if (reason === 'tokens') {
    return b.max_total_tokens
      ? `budget: ${b.max_total_tokens} completion tokens`
      : 'budget: completion tokens';
  }
  if (reason === 'max_steps') {
    return maxSteps ? `budget: ${maxSteps} steps` : 'budget: steps';
  }
  return reason ?? '';
}

const NOT_RUN_WHY: { [reason: string]: string } = {
  invalid: 'invalid call',
  invalid_edit: 'invalid edit',
  no_result: 'no result',
  stopped: 'stopped',
  wall_time: 'wall time',
  tokens: 'token budget',
  max_steps: 'step budget',
  error: 'run failed'
};

/**
 * RunView's `call_label`: a call's state in words, the one wording of every face (the golden
 * traces' `label` pins both).
 */
export function callLabel(c: IFoldCall): string {
  const did = c.decision === 'edit' ? 'edited' : 'approved';
  switch (c.status) {
    case 'pending':
      return 'waiting for you';
    case 'running':
      return `${did}, running`;
    case 'done':
      return `${did}, ran`;
    case 'error':
      return `${did}, ran with an error`;
    case 'rejected':
      return 'rejected';
  }
  const reason = c.reason ?? '';
  const why = NOT_RUN_WHY[reason] ?? reason;
  return why ? `not run (${why})` : 'not run';
}

/**
 * RunView's `step_tokens`: a step's reasoning tokens, else its completion tokens, from the usage;
 * null before a usage came (a count of streamed pieces or characters is not a token count).
 */
export function stepTokens(st: IFoldStep): number | null {
  if (!st.usage) {
    return null;
  }
  return st.usage.reasoning_tokens || st.usage.completion_tokens || 0;
}

/** RunView's `retry_text`. */
export function retryText(r: IFoldRetry): string {
  return `attempt ${r.attempt} of ${r.max_attempts} in ${r.delay.toFixed(1)} s: ${r.reason}`;
}

/** The verify outcome in words, as the CLI says it (`k2lab.agent.verify.OUTCOME_WORDS`). */
export const OUTCOME_WORDS: { [outcome: string]: string } = {
  verified: 'verified',
  corrected: 'corrected',
  unverified: 'could not verify'
};

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** RunView's `_str(v, default)`: a string as it is (even empty), else the default. */
function strOr(v: unknown, fallback: string): string {
  return typeof v === 'string' ? v : fallback;
}

function int(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? Math.trunc(v) : 0;
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function jsonObject(text: string): boolean {
  try {
    const v = JSON.parse(text);
    return !!v && typeof v === 'object' && !Array.isArray(v);
  } catch {
    return false;
  }
}
