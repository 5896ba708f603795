/**
 * The *Variables* context: a text summary of the notebook kernel's live variables (names, types,
 * shapes, DataFrame columns and dtypes, a few rows), read by a silent execute request in that
 * kernel. Nothing is defined in the user's namespace, nothing goes to the history or the
 * notebook's outputs; a busy kernel is not waited for past a few seconds.
 */
import { NotebookPanel } from '@jupyterlab/notebook';

/** Most variables listed, rows shown per DataFrame / Series (the picker bounds the characters). */
const MAX_VARS = 40;
const MAX_ROWS = 3;
const TIMEOUT_MS = 4000;

/** Runs inside the user's kernel, in its own globals (the user's namespace is `ns`). */
const SUMMARY = `
def summary(ns, max_vars, max_rows):
    import sys
    skip = {"In", "Out", "exit", "quit", "get_ipython", "open"}
    pd, np = sys.modules.get("pandas"), sys.modules.get("numpy")
    lines, n = [], 0

    def short(r, k=80):
        return r if len(r) <= k else r[: k - 3] + "..."

    def indent(text):
        return "\\n".join("    " + r for r in text.splitlines())

    for name, v in list(ns.items()):
        t = type(v)
        if name.startswith("_") or name in skip or t.__name__ == "module":
            continue
        if callable(v) and not hasattr(v, "shape"):
            continue  # functions and classes: code, not data
        n += 1
        if n > max_vars:
            continue
        mod = t.__module__.split(".")[0]
        kind = t.__name__ if mod == "builtins" else mod + "." + t.__name__
        try:
            if pd is not None and isinstance(v, pd.DataFrame):
                cols = ", ".join(f"{c} ({d})" for c, d in list(v.dtypes.items())[:30])
                more = f", ... {v.shape[1] - 30} more" if v.shape[1] > 30 else ""
                rows = v.head(max_rows).to_string(max_cols=12, max_colwidth=24)
                body = f"{v.shape[0]} rows x {v.shape[1]} columns\\n  columns: {cols}{more}"
                body += "\\n  first rows:\\n" + indent(rows)
            elif pd is not None and isinstance(v, pd.Series):
                rows = v.head(max_rows).to_string()
                body = f"length {len(v)}, dtype {v.dtype}, name {v.name!r}"
                body += "\\n  first values:\\n" + indent(rows)
            elif np is not None and isinstance(v, np.ndarray):
                body = f"shape {v.shape}, dtype {v.dtype}"
            elif isinstance(v, (bool, int, float, complex)):
                body = repr(v)
            elif isinstance(v, str):
                body = f"{len(v)} chars: " + short(repr(v), 64)
            elif isinstance(v, (list, tuple, set, frozenset, dict)):
                body = f"length {len(v)}: " + short(repr(v))
            else:
                shape = getattr(v, "shape", None)
                body = (f"shape {tuple(shape)}, " if isinstance(shape, tuple) else "")
                body += short(repr(v))
        except Exception as e:
            body = f"(not summarised: {type(e).__name__})"
        lines.append(f"{name}: {kind}, {body}")
    if n > max_vars:
        lines.append(f"... and {n - max_vars} more variables")
    return "\\n".join(lines)

print(summary(ns, ${MAX_VARS}, ${MAX_ROWS}), end="")
`;

export interface IVariables {
  /** The summary text ('' when the kernel has no variables). */
  text: string;
  /** How many variables it lists. */
  count: number;
}

/** The code sent: `exec` in a fresh dict, so no helper name lands in the user's namespace. */
export const VARIABLES_CODE = `exec(compile(${JSON.stringify(SUMMARY)}, "<k2lab variables>", "exec"), {"ns": globals()})`;

/** Read the variables of `panel`'s kernel; throws with a sentence a user can act on. */
export async function readVariables(panel: NotebookPanel): Promise<IVariables> {
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel) {
    throw new Error('the notebook has no kernel');
  }
  const future = kernel.requestExecute(
    {
      code: VARIABLES_CODE,
      silent: true,
      store_history: false,
      allow_stdin: false,
      stop_on_error: false
    },
    true
  );
  let text = '';
  let error = '';
  future.onIOPub = msg => {
    const content = msg.content as any;
    if (msg.header.msg_type === 'stream' && content.name === 'stdout') {
      text += String(content.text ?? '');
    } else if (msg.header.msg_type === 'error') {
      error = `${content.ename}: ${content.evalue}`;
    }
  };
  let timer = 0;
  const late = new Promise<'late'>(resolve => {
    timer = window.setTimeout(() => resolve('late'), TIMEOUT_MS);
  });
  try {
    if ((await Promise.race([future.done, late])) === 'late') {
      throw new Error('the kernel is busy (try again when it is idle)');
    }
  } finally {
    window.clearTimeout(timer);
  }
  if (error) {
    throw new Error(`the kernel could not list its variables (${error})`);
  }
  const listed = text.split('\n').filter(l => /^[A-Za-z]\w*: /.test(l));
  const more = /^\.\.\. and (\d+) more variables$/m.exec(text);
  return { text, count: listed.length + (more ? Number(more[1]) : 0) };
}

/** `options.with` of a message: copy these variables of the notebook's kernel into the sandbox. */
export interface ICopyRequest {
  kernel_id: string;
  names: string[];
}

/**
 * What "Copy into the sandbox: df, model" asks for: the names (split on commas and spaces, each
 * once) and the id of `panel`'s kernel, which the server reads them from; null when no name is
 * given. Throws with a sentence a user can act on (no kernel, a word that is not a name).
 */
export function copyRequest(
  panel: NotebookPanel | null,
  text: string
): ICopyRequest | null {
  const names = [...new Set(text.split(/[\s,]+/).filter(n => n))];
  if (names.length === 0) {
    return null;
  }
  const bad = names.find(n => !/^[A-Za-z_]\w*$/.test(n));
  if (bad !== undefined) {
    throw new Error(`"${bad}" is not a variable name`);
  }
  const kernel = panel?.sessionContext.session?.kernel;
  if (!kernel) {
    throw new Error('the notebook has no kernel to copy the variables from');
  }
  return { kernel_id: kernel.id, names };
}
