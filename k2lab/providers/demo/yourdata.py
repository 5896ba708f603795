"""Demo "summarise my data": the user's own data, reached the ways k2lab offers it.

What the demo looks at comes only from the request, as for a real model: the system prompt's notes
on ``--with`` variables ("The user copied these variables ...") and ``--data`` files ("The user
made these files available ..."), and the offered tools (an MCP server's tool that needs no
arguments). In that order: a copied DataFrame is described, else the first CSV of a mounted folder
is read, else an MCP tool is called; with none of them it says what to attach instead of inventing
data. Every figure in the answer is read from the tool output.
"""

from __future__ import annotations

import re

from k2lab.providers.demo.turn import Exchange, Reply, Turn, quote, values, why_not_run

_VARS_HEAD = "The user copied these variables"
_FILES_HEAD = "The user made these files available"
_ITEM = re.compile(r"^- (\S[^:]*): (.+)$")
_NAME = re.compile(r"[A-Za-z_]\w*")

DESCRIBE = """
value = {name}
print(f"name={name} type={{type(value).__name__}} rows={{len(value)}} columns={{value.shape[1]}}")
print(value.dtypes.to_string())
numbers = value.select_dtypes("number")
if numbers.shape[1]:
    print(numbers.describe().round(3).to_string())
    widest = (numbers.std() / numbers.mean().abs().clip(lower=1e-12)).idxmax()
    column = numbers[widest]
    print(f"most_varied={{widest}} mean={{column.mean():.3f}} std={{column.std():.3f}}")
missing = int(value.isna().sum().sum())
print(f"missing_values={{missing}}")
"""

LOOK = """
value = {name}
print(f"name={name} type={{type(value).__name__}}")
print(repr(value)[:800])
"""

LIST_FILES = """
import os

root = {path!r}
found = []
if os.path.isfile(root):
    found = [root]
else:
    for here, dirs, files in os.walk(root):
        dirs.sort()
        found += [os.path.join(here, f) for f in sorted(files)]
        if len(found) >= 50:
            break
for f in found[:50]:
    print(f"file={{f}} bytes={{os.path.getsize(f)}}")
print(f"files={{len(found)}}")
"""

READ_CSV = """
import pandas as pd

table = pd.read_csv({path!r})
print(f"rows={{len(table)}} columns={{table.shape[1]}}")
print(table.head().to_string())
numbers = table.select_dtypes("number")
if numbers.shape[1]:
    print(numbers.describe().round(3).to_string())
"""


def _listed(notes: str, head: str) -> list[tuple[str, str]]:
    """The ``- NAME: WHAT`` lines that follow ``head`` in the engine's notes."""
    at = notes.find(head)
    if at < 0:
        return []
    items = []
    for line in notes[at:].splitlines()[1:]:
        m = _ITEM.match(line.strip())
        if not m:
            break
        items.append((m.group(1).strip(), m.group(2).strip()))
    return items


def _no_argument_tool(t: Turn) -> str | None:
    """An offered tool other than python (an MCP tool, say) that needs no arguments."""
    for name in t.tool_names:
        if name == "python" or name.startswith("notebook_"):
            continue
        schema = t.tool_schemas.get(name) or {}
        if not schema.get("required"):
            return name
    return None


def play(t: Turn) -> Reply:
    variables = [(n, what) for n, what in _listed(t.notes, _VARS_HEAD) if _NAME.fullmatch(n)]
    if variables:
        return _variable(t, variables)
    files = _listed(t.notes, _FILES_HEAD)
    if files:
        return _files(t, files)
    tool = _no_argument_tool(t)
    if tool is not None:
        return _mcp(t, tool)
    return t.answer(
        "Nothing of the user's was attached to this run: no copied variables, no mounted files, "
        "no tool server. I won't make data up.",
        "I can't see any of your data in this run, so there is nothing to summarise. Attach it "
        "one of these ways and ask again:\n\n"
        "- `%k2 --with df PROMPT`: copies the notebook variable `df` into the sandbox;\n"
        "- `--data PATH` (`%k2`, `k2lab run`, the panel's Run options): a file or folder made "
        "visible read-only inside the sandbox;\n"
        "- `--mcp-config FILE`: the tools of your MCP servers.",
    )


def _not_run(ex: Exchange, t: Turn, what: str) -> Reply:
    if ex.status == "rejected":
        why = why_not_run(ex.feedback, t.never)
        return t.answer(
            f"The call was not executed: {why}. I have no figures, and I won't invent any.",
            f"I could not look at {what}: {why}, so nothing ran.",
        )
    return t.answer(
        f"The code did not run cleanly ({ex.status}); I'll report what came back.",
        f"Looking at {what} did not work:\n\n```\n{quote(ex.output)}\n```",
    )


def _variable(t: Turn, variables: list[tuple[str, str]]) -> Reply:
    frames = [n for n, what in variables if what.startswith("DataFrame")]
    name = frames[0] if frames else variables[0][0]
    ex = t.last("describe variable")
    if ex is None:
        listing = ", ".join(f"`{n}` ({what.split(',')[0]})" for n, what in variables)
        code = (DESCRIBE if frames else LOOK).format(name=name)
        return t.call(
            "describe variable",
            code,
            f"The user copied {listing} into my python tool. I'll describe `{name}`: its "
            "size, the column types, summary statistics of the numeric columns and how many "
            "values are missing, printed as key=value lines I can quote.",
        )
    if ex.status != "ok":
        return _not_run(ex, t, f"`{name}`")
    v = values(ex.output)
    if not frames:
        return t.answer(
            f"`{name}` is a {v.get('type', '?')}, not a table; I'll show what it holds.",
            f"`{name}` is a `{v.get('type', '?')}` (a copy in the sandbox):\n\n"
            f"```\n{quote(ex.output, 1200)}\n```",
        )
    varied = (
        f"- The most varied numeric column (std over mean) is **{v['most_varied']}**: mean "
        f"{v.get('mean', '?')}, std {v.get('std', '?')}.\n"
        if "most_varied" in v
        else "- It has no numeric columns.\n"
    )
    table = "\n".join(ln for ln in ex.output.splitlines() if "=" not in ln)
    return t.answer(
        f"`{name}` has rows={v.get('rows', '?')} and columns={v.get('columns', '?')}; I read "
        "the statistics from the output.",
        f"**`{name}`** (a copy in the sandbox; your original is unchanged):\n\n"
        f"- {v.get('rows', '?')} rows, {v.get('columns', '?')} columns; "
        f"{v.get('missing_values', '?')} missing values.\n"
        f"{varied}\n```\n{quote(table, 2500)}\n```",
    )


def _files(t: Turn, files: list[tuple[str, str]]) -> Reply:
    path = files[0][0]
    listed = t.last("list files")
    if listed is None:
        return t.call(
            "list files",
            LIST_FILES.format(path=path),
            f"The user mounted {path} ({files[0][1]}). First I'll list what is in it.",
        )
    if listed.status != "ok":
        return _not_run(listed, t, path)
    csvs = re.findall(r"^file=(\S+\.csv) ", listed.output, re.M)
    if not csvs:
        return t.answer(
            f"There is no CSV file under {path}; I'll report what is there.",
            f"{path} holds no CSV file I can read as a table. What it holds:\n\n"
            f"```\n{quote(listed.output, 1500)}\n```",
        )
    read = t.last("read csv")
    if read is None:
        return t.call(
            "read csv",
            READ_CSV.format(path=csvs[0]),
            f"{len(csvs)} CSV file(s); I'll read {csvs[0]} with pandas and summarise it.",
        )
    if read.status != "ok":
        return _not_run(read, t, csvs[0])
    v = values(read.output)
    table = "\n".join(ln for ln in read.output.splitlines() if "=" not in ln)
    return t.answer(
        f"{csvs[0]} has rows={v.get('rows', '?')}, columns={v.get('columns', '?')}.",
        f"**{csvs[0]}** (from `{path}`, which `--data` made visible): {v.get('rows', '?')} rows, "
        f"{v.get('columns', '?')} columns.\n\n```\n{quote(table, 2500)}\n```",
    )


def _mcp(t: Turn, tool: str) -> Reply:
    ex = t.exchange_of(tool)
    if ex is None:
        return t.tool(
            tool,
            {},
            f"No variables or files were attached, but the tool `{tool}` is offered (from an "
            "MCP server) and needs no arguments. I'll call it and report what it returns.",
        )
    if ex.status != "ok":
        return _not_run(ex, t, f"the tool `{tool}`")
    return t.answer(
        f"`{tool}` answered; I'll quote it rather than guess at its meaning.",
        f"The tool **`{tool}`** returned:\n\n```\n{quote(ex.output, 1500)}\n```",
    )
