/**
 * A `%k2` run's trace survives a page reload.
 *
 * The kernel replaces a run's live view by its saved trace with an `update_display_data` message
 * for the view's display id. JupyterLab delivers such an update only to outputs whose display
 * this page saw being created; after a reload (the outputs restored from the saved notebook), the
 * update is dropped and the notebook would keep a widget view that needs the kernel ("model not
 * found" after a restart). Every k2lab display therefore writes its display id into its output
 * metadata (`{"k2lab": {"display_id": ...}}`, saved in the `.ipynb`); this plugin watches each
 * notebook's kernel IOPub channel and applies the updates JupyterLab did not apply itself to
 * the outputs that carry that id.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { KernelMessage } from '@jupyterlab/services';
import { JSONExt, JSONObject } from '@lumino/coreutils';

interface IK2Meta {
  display_id?: unknown;
}

/** What this needs of a code cell's output list (`IOutputAreaModel`). */
interface IOutputs {
  readonly length: number;
  get(index: number): { data: unknown; metadata: unknown };
  set(index: number, value: Record<string, unknown>): void;
}

/** The k2lab display id an output's metadata names, if any. */
function displayIdOf(metadata: unknown): string | null {
  const meta = (metadata as { k2lab?: IK2Meta } | null)?.k2lab;
  return meta && typeof meta.display_id === 'string' ? meta.display_id : null;
}

/** Apply one update to every output of `panel` saved with its display id; returns how many. */
export function applyUpdate(
  panel: NotebookPanel,
  displayId: string,
  data: JSONObject,
  metadata: JSONObject
): number {
  const cells = panel.content.model?.cells;
  if (!cells) {
    return 0;
  }
  let applied = 0;
  for (let c = 0; c < cells.length; c++) {
    const cell = cells.get(c);
    if (cell.type !== 'code') {
      continue;
    }
    const outputs = (cell as unknown as { outputs: IOutputs }).outputs;
    for (let i = 0; i < outputs.length; i++) {
      const out = outputs.get(i);
      if (displayIdOf(out.metadata) !== displayId) {
        continue;
      }
      if (
        JSONExt.deepEqual(out.data as JSONObject, data) &&
        JSONExt.deepEqual(out.metadata as JSONObject, metadata)
      ) {
        continue; // JupyterLab applied it already (this page displayed it)
      }
      outputs.set(i, { output_type: 'display_data', data, metadata });
      applied++;
    }
  }
  return applied;
}

function watch(panel: NotebookPanel): void {
  const onIOPub = (_: ISessionContext, msg: KernelMessage.IMessage): void => {
    if (
      msg.channel !== 'iopub' ||
      !KernelMessage.isUpdateDisplayDataMsg(msg as KernelMessage.IIOPubMessage)
    ) {
      return;
    }
    const content = (msg as KernelMessage.IUpdateDisplayDataMsg).content;
    const displayId = (
      content.transient as { display_id?: unknown } | undefined
    )?.display_id;
    const metadata = (content.metadata ?? {}) as JSONObject;
    // only k2lab's own displays: the update names the same id in its metadata
    if (typeof displayId !== 'string' || displayIdOf(metadata) !== displayId) {
      return;
    }
    applyUpdate(panel, displayId, content.data as JSONObject, metadata);
  };
  panel.sessionContext.iopubMessage.connect(onIOPub);
  panel.disposed.connect(() =>
    panel.sessionContext.iopubMessage.disconnect(onIOPub)
  );
}

export const liveTracePlugin: JupyterFrontEndPlugin<void> = {
  id: 'k2lab:live-trace',
  description:
    'Replaces a %k2 live view by its saved trace also after the page was reloaded.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker) => {
    tracker.forEach(watch);
    tracker.widgetAdded.connect((_, panel) => watch(panel));
  }
};
