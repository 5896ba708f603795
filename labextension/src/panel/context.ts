/**
 * "Use the current notebook": the context a message carries, chosen explicitly (nothing, the
 * active cell, the editor selection, the whole notebook, the kernel's variables), shown as a chip
 * with its size, and cut to a bound (with a visible notice) before it is sent. With *Variables*,
 * "Copy into the sandbox" names variables the server copies from the kernel into the sandbox.
 */
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { append, button, compact, h } from '../dom';
import {
  copyRequest,
  ICopyRequest,
  IVariables,
  readVariables
} from './variables';

export type ContextKind =
  'none' | 'cell' | 'selection' | 'notebook' | 'variables';

export interface IAttachedContext {
  kind: 'cell' | 'selection' | 'notebook' | 'variables';
  path: string;
  text: string;
  /** A one-line description for the chip. */
  label: string;
  /** Characters before truncation. */
  size: number;
  truncated: boolean;
}

type Cell = NonNullable<INotebookTracker['activeCell']>;

const LABELS: { [k in ContextKind]: string } = {
  none: 'No context',
  cell: 'Active cell',
  selection: 'Selection',
  notebook: 'Whole notebook',
  variables: 'Variables'
};

/** What the kernel's variables were when last read, for which notebook (or why not). */
interface IVariablesRead {
  path: string;
  vars: IVariables | null;
  error: string;
}

export class ContextPicker {
  readonly node: HTMLElement;
  private select: HTMLSelectElement;
  private chip: HTMLElement;
  /** "Copy into the sandbox: df, model" (shown with *Variables*; for the next message only) */
  private copyRow: HTMLElement;
  private copyNames: HTMLInputElement;
  private watched: Cell | null = null;
  private refreshQueued = false;
  private vars: IVariablesRead | null = null;
  private reading: Promise<void> | null = null;

  constructor(
    private tracker: INotebookTracker,
    private maxChars: () => number
  ) {
    this.select = h('select', {
      class: 'k2lab-context-select',
      title: 'Attach part of the current notebook to the message',
      'aria-label': 'context'
    });
    for (const kind of Object.keys(LABELS) as ContextKind[]) {
      const opt = h('option', { value: kind }, LABELS[kind]);
      this.select.append(opt);
    }
    this.select.addEventListener('change', () => {
      if (this.kind === 'variables') {
        void this.readVariables();
      }
      this.refresh();
    });
    this.chip = h('div', { class: 'k2lab-context-chip' });
    this.copyNames = h('input', {
      class: 'k2lab-copy-names',
      type: 'text',
      placeholder: 'df, model',
      'aria-label': 'variables to copy into the sandbox',
      title:
        'Names of the kernel\u2019s variables to copy (pickled) into the sandbox for the next ' +
        'message, as %k2 --with does; the model is told their types, shapes and columns'
    });
    this.copyRow = h(
      'label',
      { class: 'k2lab-copy-row' },
      'Copy into the sandbox: ',
      this.copyNames
    );
    this.node = h(
      'div',
      { class: 'k2lab-context' },
      this.select,
      this.chip,
      this.copyRow
    );
    const refresh = () => {
      this.watch();
      this.refresh();
    };
    tracker.currentChanged.connect(refresh);
    tracker.activeCellChanged.connect(refresh);
    tracker.selectionChanged.connect(refresh);
    tracker.currentChanged.connect(() => this.variablesChanged());
    // a cell ran: its variables may have changed
    NotebookActions.executed.connect(() => this.variablesChanged());
    refresh();
  }

  private variablesChanged(): void {
    if (this.kind === 'variables') {
      void this.readVariables();
    }
  }

  /** Read the current notebook's kernel variables (one read at a time), then redraw the chip. */
  readVariables(): Promise<void> {
    if (this.reading) {
      return this.reading.then(() => this.readVariables());
    }
    const panel = this.tracker.currentWidget;
    if (!panel) {
      this.vars = null;
      this.refresh();
      return Promise.resolve();
    }
    const path = panel.context.path;
    this.vars = { path, vars: null, error: '' }; // "reading" until it answers
    this.refresh();
    this.reading = readVariables(panel)
      .then(
        vars => {
          this.vars = { path, vars, error: '' };
        },
        e => {
          this.vars = { path, vars: null, error: (e as Error).message };
        }
      )
      .finally(() => {
        this.reading = null;
        this.refresh();
      });
    return this.reading;
  }

  /** The context to send, read fresh (the variables from the kernel, as they are now). */
  async fresh(): Promise<IAttachedContext | null> {
    if (this.kind === 'variables') {
      await this.readVariables();
    }
    this.refresh();
    return this.current();
  }

  /** The variables to copy with the next message (`options.with`), or null; throws why not. */
  copyRequest(): ICopyRequest | null {
    if (this.kind !== 'variables') {
      return null;
    }
    return copyRequest(this.tracker.currentWidget, this.copyNames.value);
  }

  /** The copy went with a message: the next message copies only what is named again. */
  copySent(): void {
    this.copyNames.value = '';
  }

  /**
   * Follow the active cell's text and editor selection, so the chip always says what Send would
   * attach (it went stale when only the selection inside a cell changed).
   */
  private watch(): void {
    const cell = this.tracker.activeCell;
    if (cell === this.watched) {
      return;
    }
    if (this.watched && !this.watched.isDisposed) {
      this.watched.model.selections.changed.disconnect(this.queue, this);
      this.watched.model.contentChanged.disconnect(this.queue, this);
    }
    this.watched = cell;
    if (cell) {
      cell.model.selections.changed.connect(this.queue, this);
      cell.model.contentChanged.connect(this.queue, this);
    }
  }

  /** At most one refresh per frame while someone types or drags a selection. */
  private queue(): void {
    if (this.kind === 'none' || this.refreshQueued) {
      return;
    }
    this.refreshQueued = true;
    requestAnimationFrame(() => {
      this.refreshQueued = false;
      this.refresh();
    });
  }

  get kind(): ContextKind {
    return this.select.value as ContextKind;
  }

  set kind(kind: ContextKind) {
    this.select.value = kind;
    this.refresh();
  }

  /** The context to send now (read fresh), or null. */
  current(): IAttachedContext | null {
    const kind = this.kind;
    const panel = this.tracker.currentWidget;
    if (kind === 'none' || !panel || !panel.content.model) {
      return null;
    }
    const path = panel.context.path;
    const notebook = panel.content;
    let text = '';
    let label = '';
    if (kind === 'variables') {
      const read = this.vars;
      if (!read || read.path !== path || !read.vars?.text) {
        return null;
      }
      text = read.vars.text;
      const n = read.vars.count;
      label = `${n} variable${n === 1 ? '' : 's'} of the kernel of ${path}`;
    } else if (kind === 'notebook') {
      text = notebook
        .model!.sharedModel.cells.map(
          (c, i) => `# --- cell ${i + 1} (${c.cell_type})\n${c.getSource()}`
        )
        .join('\n\n');
      label = `${path} (${notebook.widgets.length} cells)`;
    } else {
      const cell = notebook.activeCell;
      if (!cell) {
        return null;
      }
      const source = cell.model.sharedModel.getSource();
      // counted from 1, as JupyterLab's status bar does ("Cell 2 of 5")
      const index = notebook.activeCellIndex + 1;
      if (kind === 'cell') {
        text = source;
        label = `cell ${index} of ${path}`;
      } else {
        const editor = cell.editor;
        if (!editor) {
          return null;
        }
        const sel = editor.getSelection();
        const a = editor.getOffsetAt(sel.start);
        const b = editor.getOffsetAt(sel.end);
        text = source.slice(Math.min(a, b), Math.max(a, b));
        if (!text) {
          return null;
        }
        label = `selection in cell ${index} of ${path}`;
      }
    }
    const max = this.maxChars();
    const size = text.length;
    const truncated = size > max;
    return {
      kind,
      path,
      text: truncated ? text.slice(0, max) : text,
      label,
      size,
      truncated
    };
  }

  /** Why no variables are attached (still reading, the kernel said why, or there are none). */
  private variablesWhy(): string {
    const read = this.vars;
    const path = this.tracker.currentWidget?.context.path;
    if (!read || read.path !== path || (!read.vars && !read.error)) {
      return 'reading the kernel\u2019s variables\u2026';
    }
    return read.error || 'the kernel has no variables yet (run a cell)';
  }

  refresh(): void {
    const kind = this.kind;
    this.chip.replaceChildren();
    this.chip.dataset.kind = kind;
    this.copyRow.hidden = kind !== 'variables';
    if (kind === 'none') {
      this.chip.hidden = true;
      return;
    }
    this.chip.hidden = false;
    const ctx = this.current();
    if (!ctx) {
      const why = !this.tracker.currentWidget
        ? 'open a notebook'
        : kind === 'selection'
          ? 'select text in a cell'
          : kind === 'variables'
            ? this.variablesWhy()
            : 'no active cell';
      this.chip.append(
        h('span', { class: 'k2lab-chip-warning' }, `Nothing attached: ${why}`)
      );
      return;
    }
    append(
      this.chip,
      h('span', { class: 'k2lab-chip-label' }, `Attached: ${ctx.label}`),
      h('span', { class: 'k2lab-chip-size' }, ` · ${compact(ctx.size)} chars`),
      ctx.truncated
        ? h(
            'span',
            { class: 'k2lab-chip-warning' },
            ` · only the first ${compact(this.maxChars())} chars are sent`
          )
        : null,
      button('×', 'k2lab-chip-remove', () => (this.kind = 'none'), 'Detach')
    );
  }
}
