/**
 * The k2lab event shapes as they arrive over the WebSocket and in trace bundles.
 *
 * Mirrors `k2lab/events.py` (the one place that defines them); fields unknown here are kept and
 * ignored, so a newer server does not break an older panel.
 */

export interface IEventBase {
  type: string;
  seq: number;
  ts: number;
  /** heavy mode: "1".."N" or "aggregate"; "" (or absent) for a single run */
  lane?: string;
  [key: string]: any;
}

export interface IDisplayBundle {
  data?: { [mime: string]: any };
  metadata?: { [key: string]: any };
}

export interface IRunStart extends IEventBase {
  type: 'run.start';
  run_id: string;
  prompt: string;
  model: string;
  model_label: string;
  base_url: string;
  policy: string;
  isolation: string;
  max_steps: number;
  tools?: string[];
  replayable?: string[] | null;
  parent_run_id?: string | null;
  forked_from_call?: string | null;
  demo?: boolean;
  /** the run's budgets (absent in older traces: unknown) */
  wall_time?: number | null;
  max_total_tokens?: number | null;
  max_tokens?: number | null;
  /** the model's context window in tokens (0 = unknown) */
  context_window?: number;
  /** USD per 1M tokens [input, cached input, output] where the preset knows them */
  prices?: number[] | null;
  /** what the user attached to the prompt (the panel's cell / selection / notebook /
   * variables); `prompt` is then what they typed. Absent in older traces (context in `prompt`). */
  context?: IRunContext | null;
  /** what k2lab told the model before the prompt (the --with copies on a follow-up), not the
   * user's words; the views show the prompt without it */
  note?: string | null;
}

export interface IRunContext {
  /** "the current cell of a.ipynb" */
  label: string;
  text: string;
}

export interface IStepStart extends IEventBase {
  type: 'step.start';
  step: number;
}

export interface IReasoningDelta extends IEventBase {
  type: 'reasoning.delta';
  step: number;
  text: string;
}

export interface IContentDelta extends IEventBase {
  type: 'content.delta';
  step: number;
  text: string;
}

export interface IStepEnd extends IEventBase {
  type: 'step.end';
  step: number;
  content: string;
  reasoning: string;
  tool_calls?: { [key: string]: string }[];
  finish_reason?: string | null;
  duration?: number;
}

export interface IToolProposed extends IEventBase {
  type: 'tool.proposed';
  step: number;
  call_id: string;
  run_id?: string;
  name: string;
  arguments: string;
  problem?: string | null;
}

export interface IToolDecision extends IEventBase {
  type: 'tool.decision';
  call_id: string;
  run_id?: string;
  decision: 'approve' | 'edit' | 'reject';
  by: 'policy' | 'user';
  arguments?: string | null;
  feedback?: string | null;
}

export interface IToolResult extends IEventBase {
  type: 'tool.result';
  call_id: string;
  name: string;
  run_id?: string;
  ok: boolean;
  output: string;
  display?: IDisplayBundle[];
  duration?: number;
  truncated?: boolean;
  /** The text for people when it differs from `output` (the model's notes dropped). */
  people_output?: string | null;
  /** Indices into `display` of the images that also went to the model. */
  sent_to_model?: number[];
  /** the call ran with a person's edited arguments: `output` is the tool's own output (older
   * traces: no field, the "[The user edited ...]" note inside `output`) */
  edited?: boolean;
}

export interface IUsage extends IEventBase {
  type: 'usage';
  step: number;
  prompt_tokens?: number;
  completion_tokens?: number;
  cached_tokens?: number;
  reasoning_tokens?: number;
}

export interface IRetry extends IEventBase {
  type: 'retry';
  attempt: number;
  max_attempts: number;
  delay: number;
  reason: string;
}

export interface IErrorEvent extends IEventBase {
  type: 'error';
  message: string;
  kind?: string;
  fatal?: boolean;
}

export interface INotice extends IEventBase {
  type: 'notice';
  message: string;
  kind?: string;
  /** the summarising compaction's (kind "compaction"): "summary" or "failed"; absent for
   * hiding tool outputs and for every other notice */
  compaction?: string;
  /** the summary that replaced `summarised` earlier messages, the last `keep_steps` kept */
  summary?: string;
  summarised?: number;
  keep_steps?: number;
}

export interface IVerifyStart extends IEventBase {
  type: 'verify.start';
  run_id?: string;
  round: number;
  max_rounds: number;
  prompt?: string;
}

export interface IVerifyEnd extends IEventBase {
  type: 'verify.end';
  run_id?: string;
  round: number;
  verdict: 'holds' | 'fault' | 'cannot_verify' | 'none';
  outcome: 'verified' | 'corrected' | 'unverified';
  summary?: string;
  reason?: string;
  checks?: { [key: string]: any }[];
  correction?: string | null;
}

export interface IRunEnd extends IEventBase {
  type: 'run.end';
  stop_reason: string; // StopReason; a newer server may name others
  answer: string;
  steps: number;
  tool_calls: number;
  prompt_tokens?: number;
  completion_tokens?: number;
  elapsed?: number;
  error?: string | null;
}

/** Every event type `k2lab/events.py` defines (checked by tests/trace/test_ts_types.py). */
export type K2Event =
  | IRunStart
  | IStepStart
  | IReasoningDelta
  | IContentDelta
  | IStepEnd
  | IToolProposed
  | IToolDecision
  | IToolResult
  | IUsage
  | IRetry
  | IErrorEvent
  | INotice
  | IVerifyStart
  | IVerifyEnd
  | IRunEnd;

/** The `application/vnd.k2lab.trace+json` value: one run. */
export interface ITraceBundle {
  version: number;
  run_id: string;
  events: IEventBase[];
}

/** One session as `GET sessions` lists it. */
export interface ISessionMeta {
  id: string;
  title: string;
  created: string | number;
  updated: string | number;
  running: boolean;
  n_events: number;
}

export interface ISessionDetail extends ISessionMeta {
  events: { index: number; event: IEventBase }[];
}

/** `GET info`. */
export interface IServerInfo {
  settings: { [key: string]: any };
  model_label: string;
  isolation: string;
  key_help: string;
  /** Prompts the offline demo model scripts (empty with a real model). */
  demo_prompts?: string[];
}

export interface IReplayResult {
  call_id: string;
  code: string;
  old_output: string;
  new_output: string;
  changed: boolean;
}
