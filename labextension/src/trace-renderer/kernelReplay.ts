/**
 * Replay of one saved call in the kernel of the notebook that shows the trace: the renderer sends
 * the run's tool events and the call id to `k2lab.notebook.replay_api.replay_json` (a coroutine the
 * cell awaits, since ipykernel's loop is already running) and reads the one result line it prints.
 */
import { Kernel, KernelMessage } from '@jupyterlab/services';

import { IEventBase, IReplayResult } from '../types';

/** Must match `k2lab.notebook.replay_api.MARK`. */
const MARK = 'k2lab-replay-result:';

/**
 * Only the tool events matter for a replay (the prompt, reasoning and answers stay here), and of
 * the results only the text the model read: images and HTML would only make the request big.
 */
export function toolEvents(events: IEventBase[]): IEventBase[] {
  return events
    .filter(ev => ev.type.startsWith('tool.'))
    .map(ev => (ev.type === 'tool.result' ? { ...ev, display: [] } : ev));
}

/** Python source that replays `callId`; the payload travels as a JSON string literal. */
export function replayCode(
  runId: string,
  callId: string,
  events: IEventBase[]
): string {
  const payload = JSON.stringify({ run_id: runId, call_id: callId, events });
  // a JSON string literal is a valid Python str literal; __import__ leaves no name behind
  return (
    "await __import__('k2lab.notebook.replay_api', fromlist=['replay_json'])" +
    `.replay_json(${JSON.stringify(payload)})`
  );
}

export async function replayInKernel(
  kernel: Kernel.IKernelConnection,
  runId: string,
  callId: string,
  events: IEventBase[]
): Promise<IReplayResult> {
  const future = kernel.requestExecute({
    code: replayCode(runId, callId, toolEvents(events)),
    silent: false, // silent would drop the stream output we read
    store_history: false,
    allow_stdin: false
  });
  let text = '';
  let error = '';
  future.onIOPub = msg => {
    if (KernelMessage.isStreamMsg(msg) && msg.content.name === 'stdout') {
      text += msg.content.text;
    } else if (KernelMessage.isErrorMsg(msg)) {
      error = `${msg.content.ename}: ${msg.content.evalue}`;
    }
  };
  await future.done;
  if (error) {
    throw new Error(
      error.startsWith('ModuleNotFoundError')
        ? `k2lab is not installed in this kernel (${error})`
        : error
    );
  }
  const line = text.split('\n').find(l => l.startsWith(MARK));
  if (!line) {
    throw new Error('the kernel printed no replay result');
  }
  const result = JSON.parse(line.slice(MARK.length));
  if (result.error) {
    throw new Error(result.error);
  }
  return result as IReplayResult;
}
