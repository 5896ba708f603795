/**
 * Which notebook holds a DOM node. The trace renderer is a mime extension: rendermime creates it
 * with no access to JupyterLab's plugins, so the main plugin hands the notebook tracker over here
 * at activation. The tracker is kept on `window` under a registered symbol (not only in module
 * state) so the `extension` and `mimeExtension` entries find it even if the build ever loads this
 * module twice.
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

const KEY = Symbol.for('k2lab.notebookTracker');

type Holder = { [KEY]?: INotebookTracker };

export function setNotebookTracker(tracker: INotebookTracker): void {
  (window as unknown as Holder)[KEY] = tracker;
}

export function notebookTracker(): INotebookTracker | null {
  return (window as unknown as Holder)[KEY] ?? null;
}

/** The open notebook whose DOM contains `node`, if any. */
export function panelContaining(node: Node): NotebookPanel | null {
  return notebookTracker()?.find(p => p.node.contains(node)) ?? null;
}
