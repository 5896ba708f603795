/**
 * Carries out the model's notebook tools in the user's JupyterLab (requests arrive over the
 * session socket): read cells, insert or replace a cell through the notebook's shared model (so
 * the edit is undoable and collaborative), run a cell in the notebook's own kernel.
 * Shapes: see `k2lab/server/notebook_tools.py`.
 */
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';

import { INotebookRequest } from './connection';

export type Reply = { ok: boolean; result: unknown };

/** Rich output data is replaced by a placeholder in `read` (the model gets text only). */
const TEXT_MIMES = new Set(['text/plain', 'text/markdown', 'application/json']);

function fail(message: string): Reply {
  return { ok: false, result: message };
}

function joined(v: unknown): string {
  return Array.isArray(v) ? v.join('') : String(v ?? '');
}

function textOnly(outputs: any[]): any[] {
  return outputs.map(out => {
    if (!out || typeof out !== 'object' || !out.data) {
      return out;
    }
    const data: { [mime: string]: unknown } = {};
    for (const [mime, value] of Object.entries(out.data)) {
      data[mime] = TEXT_MIMES.has(mime) ? value : '(omitted)';
    }
    return { ...out, data };
  });
}

export class NotebookBridge {
  constructor(private tracker: INotebookTracker) {}

  /**
   * Carry out one request; `target` (a `%k2` run's own notebook, see `kernelNotebookTools.ts`)
   * stands for the notebook in focus when the request names no path.
   */
  async handle(req: INotebookRequest, target?: NotebookPanel): Promise<Reply> {
    const args = req.args || {};
    const panel = args.path ? this.find(args.path) : (target ?? this.find());
    if (!panel) {
      return fail(
        args.path
          ? `The notebook ${args.path} is not open in JupyterLab; ask the user to open it.`
          : 'No notebook is open in JupyterLab; ask the user to open one.'
      );
    }
    await panel.context.ready;
    switch (req.op) {
      case 'read':
        return this.read(panel, args);
      case 'insert_cell':
        return this.insert(panel, args);
      case 'replace_cell':
        return this.replace(panel, args);
      case 'run_cell':
        return this.run(panel, args);
      default:
        return fail(`unknown notebook operation ${JSON.stringify(req.op)}`);
    }
  }

  /** The notebook with this path, else the one in focus (the tracker's current widget). */
  private find(path?: string): NotebookPanel | null {
    if (path) {
      return this.tracker.find(p => p.context.path === path) ?? null;
    }
    return this.tracker.currentWidget;
  }

  private read(panel: NotebookPanel, args: any): Reply {
    const nb = panel.content.model!.sharedModel.toJSON();
    const start = Math.max(0, Number(args.start ?? 0));
    const end = args.end === undefined ? nb.cells.length : Number(args.end);
    const cells = nb.cells.slice(start, end).map((c: any, i: number) => ({
      index: start + i,
      id: c.id,
      cell_type: c.cell_type,
      source: joined(c.source),
      execution_count: c.execution_count ?? null,
      outputs: args.outputs === false ? [] : textOnly(c.outputs || [])
    }));
    return {
      ok: true,
      result: {
        path: panel.context.path,
        active_index: panel.content.activeCellIndex,
        n_cells: nb.cells.length,
        cells
      }
    };
  }

  private insert(panel: NotebookPanel, args: any): Reply {
    const shared = panel.content.model!.sharedModel;
    const n = shared.cells.length;
    const index =
      args.index === -1 || args.index === undefined ? n : Number(args.index);
    if (!(index >= 0 && index <= n)) {
      return fail(
        `index ${args.index} is out of range (the notebook has ${n} cells)`
      );
    }
    const cellType = args.cell_type === 'markdown' ? 'markdown' : 'code';
    const cell = shared.insertCell(index, {
      cell_type: cellType,
      source: String(args.source ?? '')
    });
    return {
      ok: true,
      result: { path: panel.context.path, index, id: cell.id }
    };
  }

  private replace(panel: NotebookPanel, args: any): Reply {
    const shared = panel.content.model!.sharedModel;
    const index = Number(args.index);
    if (!(index >= 0 && index < shared.cells.length)) {
      return fail(
        `no cell ${args.index} (the notebook has ${shared.cells.length} cells)`
      );
    }
    const cell = shared.getCell(index);
    cell.setSource(String(args.source ?? ''));
    return {
      ok: true,
      result: { path: panel.context.path, index, id: cell.id }
    };
  }

  private async run(panel: NotebookPanel, args: any): Promise<Reply> {
    const notebook = panel.content;
    const index = Number(args.index);
    if (!(index >= 0 && index < notebook.widgets.length)) {
      return fail(
        `no cell ${args.index} (the notebook has ${notebook.widgets.length} cells)`
      );
    }
    await panel.sessionContext.ready;
    if (!panel.sessionContext.session?.kernel) {
      return fail('The notebook has no kernel; ask the user to start one.');
    }
    notebook.deselectAll();
    notebook.activeCellIndex = index;
    const ok = await NotebookActions.run(notebook, panel.sessionContext);
    const cell = notebook.widgets[index].model.toJSON() as any;
    return {
      ok: true,
      result: {
        path: panel.context.path,
        index,
        execution_count: cell.execution_count ?? null,
        status: ok ? 'ok' : 'error',
        outputs: cell.outputs || []
      }
    };
  }
}
