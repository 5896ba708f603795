/**
 * "Insert as cell" from k2lab's notebook widget: the widget cannot reach the notebook API, so it
 * dispatches a bubbling, cancelable `k2lab:insert-cell` DOM event (detail `{code, callId}`; see
 * k2lab/notebook/static/README.md). This plugin inserts a code cell with that code right below the
 * cell whose output holds the widget, through the shared model (so Undo removes it), makes it the
 * active cell, and calls `preventDefault()` so the widget says "inserted" instead of copying the
 * code to the clipboard.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';

import { setNotebookTracker } from './notebookLookup';

export const INSERT_CELL_EVENT = 'k2lab:insert-cell';

interface IInsertDetail {
  code: string;
  callId?: string;
  runId?: string;
}

/** Inserts the cell; false if the event did not come from a cell of an open notebook. */
export function insertBelow(tracker: INotebookTracker, ev: Event): boolean {
  const detail = (ev as CustomEvent<IInsertDetail>).detail;
  const target = ev.target;
  if (!detail || typeof detail.code !== 'string' || !(target instanceof Node)) {
    return false;
  }
  const panel = tracker.find(p => p.node.contains(target));
  const notebook = panel?.content;
  const model = notebook?.model;
  if (!panel || !notebook || !model) {
    return false;
  }
  const index = notebook.widgets.findIndex(c => c.node.contains(target));
  if (index < 0) {
    return false;
  }
  const runId =
    detail.runId ||
    (target instanceof Element
      ? target.closest('[data-k2lab-run-id]')?.getAttribute('data-k2lab-run-id')
      : null);
  // the same provenance `%k2 export` writes on the cells it makes
  const k2lab: { [key: string]: string } = {};
  if (runId) {
    k2lab.run_id = runId;
  }
  if (detail.callId) {
    k2lab.call_id = detail.callId;
  }
  model.sharedModel.insertCell(index + 1, {
    cell_type: 'code',
    source: detail.code,
    metadata: Object.keys(k2lab).length ? { k2lab } : {}
  });
  notebook.activeCellIndex = index + 1;
  notebook.deselectAll();
  void notebook.scrollToItem(index + 1, 'smart');
  return true;
}

export const insertCellPlugin: JupyterFrontEndPlugin<void> = {
  id: 'k2lab:insert-cell',
  description:
    "Inserts the code of a k2lab tool call as a new cell below the widget's cell.",
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) => {
    // the saved-trace renderer (a mime extension) finds its notebook's kernel through this
    setNotebookTracker(tracker);
    document.addEventListener(INSERT_CELL_EVENT, ev => {
      if (!ev.defaultPrevented && insertBelow(tracker, ev)) {
        ev.preventDefault(); // the widget reads this: "inserted", not the clipboard fallback
      }
    });
  }
};
