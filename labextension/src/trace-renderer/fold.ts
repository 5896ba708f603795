/**
 * The browser side of RunView's rules (k2lab/trace/view.py), as a pure fold with no DOM: what
 * `traceView.ts` shows for steps (the streamed text, dropped on `notice(kind="step_restart")`,
 * replaced by `step.end`'s whole message), retries ("attempt 2 of 4": the attempt a retry starts)
 * and the end of a run. Checked against the golden traces in tests/trace/data/ by
 * scripts/test.d/35-trace-golden-ts.sh, field for field with the `*.view.json` files.
 */
import type { IEventBase } from '../types';

export interface IFoldStep {
  index: number;
  reasoning: string;
  content: string;
  done: boolean;
  restarts: number;
}

export interface IFoldRetry {
  step: number | null;
  attempt: number;
  max_attempts: number;
  delay: number;
  reason: string;
}

export interface IFoldRun {
  run_id: string;
  lane: string;
  status: string;
  stop_reason: string | null;
  steps: IFoldStep[];
  retries: IFoldRetry[];
}

export class TraceFold {
  readonly runs: IFoldRun[] = [];
  private current = new Map<IFoldRun, number | null>();
  private byLane = new Map<string, IFoldRun>();
  private byId = new Map<string, IFoldRun>();

  add(ev: IEventBase): void {
    if (ev.type === 'run.start') {
      const run: IFoldRun = {
        run_id: str(ev.run_id),
        lane: str(ev.lane),
        status: 'running',
        stop_reason: null,
        steps: [],
        retries: []
      };
      this.runs.push(run);
      this.byId.set(run.run_id, run);
      if (run.lane) {
        this.byLane.set(run.lane, run);
      }
      this.current.set(run, null);
      return;
    }
    const run = this.runOf(ev);
    switch (ev.type) {
      case 'step.start':
        this.step(run, int(ev.step));
        this.current.set(run, int(ev.step));
        return;
      case 'reasoning.delta':
        this.step(run, int(ev.step)).reasoning += str(ev.text);
        return;
      case 'content.delta':
        this.step(run, int(ev.step)).content += str(ev.text);
        return;
      case 'step.end': {
        const s = this.step(run, int(ev.step));
        s.reasoning =
          typeof ev.reasoning === 'string' ? ev.reasoning : s.reasoning;
        s.content = typeof ev.content === 'string' ? ev.content : s.content;
        s.done = true;
        if (this.current.get(run) === s.index) {
          this.current.set(run, null);
        }
        return;
      }
      case 'notice': {
        const n = this.current.get(run);
        if (ev.kind === 'step_restart' && n !== null && n !== undefined) {
          const s = this.step(run, n);
          s.reasoning = '';
          s.content = '';
          s.restarts += 1;
        }
        return;
      }
      case 'retry':
        run.retries.push({
          step: this.current.get(run) ?? null,
          attempt: int(ev.attempt) + 1,
          max_attempts: int(ev.max_attempts),
          delay: Number(ev.delay) || 0,
          reason: str(ev.reason)
        });
        return;
      case 'run.end':
        run.status = 'ended';
        run.stop_reason = str(ev.stop_reason);
        return;
      default:
        return;
    }
  }

  private runOf(ev: IEventBase): IFoldRun {
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
      this.add({ type: 'run.start', seq: -1, ts: 0, run_id: str(ev.run_id) });
    }
    return this.runs[this.runs.length - 1];
  }

  private step(run: IFoldRun, n: number): IFoldStep {
    let s = run.steps.find(x => x.index === n);
    if (!s) {
      s = { index: n, reasoning: '', content: '', done: false, restarts: 0 };
      run.steps.push(s);
      run.steps.sort((a, b) => a.index - b.index);
    }
    return s;
  }
}

/** RunView's `retry_text`. */
export function retryText(r: IFoldRetry): string {
  return `attempt ${r.attempt} of ${r.max_attempts} in ${r.delay.toFixed(1)} s: ${r.reason}`;
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function int(v: unknown): number {
  return typeof v === 'number' ? Math.trunc(v) : 0;
}
