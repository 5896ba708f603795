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
  [key: string]: any;
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
}

export interface IToolProposed extends IEventBase {
  type: 'tool.proposed';
  step: number;
  call_id: string;
  name: string;
  arguments: string;
  problem?: string | null;
}

export interface IToolDecision extends IEventBase {
  type: 'tool.decision';
  call_id: string;
  decision: 'approve' | 'edit' | 'reject';
  by: 'policy' | 'user';
  arguments?: string | null;
  feedback?: string | null;
}

export interface IDisplayBundle {
  data?: { [mime: string]: any };
  metadata?: { [key: string]: any };
}

export interface IToolResult extends IEventBase {
  type: 'tool.result';
  call_id: string;
  name: string;
  ok: boolean;
  output: string;
  display?: IDisplayBundle[];
  duration?: number;
  truncated?: boolean;
}

export interface IRunEnd extends IEventBase {
  type: 'run.end';
  stop_reason: string;
  answer: string;
  steps: number;
  tool_calls: number;
  prompt_tokens?: number;
  completion_tokens?: number;
  elapsed?: number;
  error?: string | null;
}

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
