/**
 * `%k2 --notebook-tools`: the kernel asks this page to carry out the model's notebook tools.
 *
 * Every notebook's kernel gets the comm target `k2lab.notebook` (again whenever the notebook's
 * kernel changes; a restart keeps the connection and its targets). A request opens a comm whose
 * open data is `{id, op, args}`; the page acknowledges at once (the kernel tells "no frontend"
 * from "still working" by that ack), carries it out with the panel's own code
 * (`panel/notebookTools.ts`) on THE notebook whose kernel sent it, and sends the response.
 * Wire and reasons: `k2lab/notebook/notebook_tools.py`.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';

import { NotebookBridge, Reply } from './panel/notebookTools';

export const COMM_TARGET = 'k2lab.notebook';

/** Answer one request on `comm` for `panel`; never awaited by the kernel connection. */
async function answer(
  bridge: NotebookBridge,
  panel: NotebookPanel,
  comm: Kernel.IComm,
  msg: KernelMessage.ICommOpenMsg
): Promise<void> {
  const data = (msg.content.data ?? {}) as any;
  const id = String(data.id ?? '');
  comm.send({ kind: 'ack', id });
  let reply: Reply;
  try {
    reply = await bridge.handle(
      {
        kind: 'notebook.request',
        id,
        op: String(data.op ?? ''),
        args: data.args ?? {}
      },
      panel
    );
  } catch (e) {
    reply = { ok: false, result: String((e as Error)?.message ?? e) };
  }
  if (!comm.isDisposed) {
    comm.send({
      kind: 'response',
      id,
      ok: reply.ok,
      result: reply.result as any
    });
  }
}

function watch(bridge: NotebookBridge, panel: NotebookPanel): void {
  const register = () => {
    const kernel = panel.sessionContext.session?.kernel;
    // the connection pauses its message handling on a returned promise: a cell the tool runs
    // needs that handling, so the answer goes on without being awaited here
    kernel?.registerCommTarget(COMM_TARGET, (comm, msg) => {
      void answer(bridge, panel, comm, msg);
    });
  };
  panel.sessionContext.kernelChanged.connect(register);
  panel.disposed.connect(() =>
    panel.sessionContext.kernelChanged.disconnect(register)
  );
  register();
}

export const kernelNotebookToolsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'k2lab:kernel-notebook-tools',
  description:
    'Carries out the notebook tools of %k2 --notebook-tools runs in their own notebook.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker) => {
    const bridge = new NotebookBridge(tracker);
    tracker.forEach(panel => watch(bridge, panel));
    tracker.widgetAdded.connect((_, panel) => watch(bridge, panel));
  }
};
