"""The model's notebook tools (read cells, insert, replace, run), whatever carries them out.

Two faces offer these tools with the same names, schemas and result texts: the side panel, whose
requests go over its session's WebSocket (``k2lab.server.notebook_tools``), and ``%k2
--notebook-tools``, whose requests go over a Jupyter comm from the kernel to the JupyterLab page
(``k2lab.notebook.notebook_tools``). Both pages answer with ``labextension/src/panel/
notebookTools.ts``. A transport is anything with ``request(op, args, timeout=...)`` answering
``(ok, result)``; what an ``ok`` result holds per op is in ``k2lab.server.notebook_tools``.

The tools that change the notebook or run its cells are flagged ``always_ask``
(``k2lab.tools.base``): they act outside the sandbox, so a person decides each call.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from k2lab.sandbox.output import head_tail
from k2lab.tools.base import Tool, ToolOutput, tool_error, tool_ok

MODEL_CHARS = 12_000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookTransport(Protocol):
    """Carries one request to the page and back: ``(True, result)`` or ``(False, why)``."""

    async def request(
        self, op: str, args: dict[str, Any], *, timeout: float
    ) -> tuple[bool, Any]: ...


# -- formatting results for the model ---------------------------------------------------------
def _bounded(text: str, limit: int = MODEL_CHARS) -> tuple[str, bool]:
    return head_tail(text, limit)  # cut as every tool output is cut (k2lab.sandbox.output)


def _joined(v: Any) -> str:
    return "".join(v) if isinstance(v, list) else str(v)


def outputs_text(outputs: list[Any]) -> str:
    """nbformat outputs as the text a model reads (images noted, not inlined)."""
    parts: list[str] = []
    for out in outputs:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(_joined(out.get("text", "")))
        elif kind == "error":
            tb = "\n".join(_joined(x) for x in out.get("traceback") or [])
            parts.append(_ANSI.sub("", tb) or f"{out.get('ename')}: {out.get('evalue')}")
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") or {}
            if "text/plain" in data:
                parts.append(_joined(data["text/plain"]))
            others = [m for m in data if m != "text/plain"]
            if others:
                parts.append(f"[rich output: {', '.join(others)}]")
    return "\n".join(p.rstrip("\n") for p in parts)


def _format_cells(result: dict[str, Any], with_outputs: bool) -> str:
    head = f"Notebook {result.get('path', '(open notebook)')}"
    facts = []
    if isinstance(result.get("n_cells"), int):
        facts.append(f"{result['n_cells']} cells")
    if isinstance(result.get("active_index"), int) and result["active_index"] >= 0:
        facts.append(f"the user's cursor is in cell {result['active_index']}")
    lines = [f"{head} ({'; '.join(facts)}):" if facts else f"{head}:"]
    for cell in result.get("cells") or []:
        if not isinstance(cell, dict):
            continue
        count = cell.get("execution_count")
        tag = f" [{count}]" if count is not None else ""
        lines.append(f"--- cell {cell.get('index')} ({cell.get('cell_type', 'code')}){tag}")
        lines.append(_joined(cell.get("source", "")))
        if with_outputs and cell.get("outputs"):
            lines.append("--- output")
            lines.append(outputs_text(cell["outputs"]))
    if len(lines) == 1:
        lines.append("(no cells)")
    return "\n".join(lines)


def _display(outputs: list[Any]) -> list[dict[str, Any]]:
    return [
        {"data": o.get("data", {}), "metadata": o.get("metadata", {})}
        for o in outputs
        if isinstance(o, dict) and o.get("output_type") in ("execute_result", "display_data")
    ]


# -- the tools ---------------------------------------------------------------------------------
_PATH = Field(
    default=None,
    description="Notebook path relative to the server root; omit for the notebook the user has "
    "open.",
)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = _PATH


class ReadParams(_Params):
    start: int = Field(0, ge=0, description="First cell index (0-based).")
    end: int | None = Field(None, ge=0, description="Stop before this cell index (omit: to end).")
    outputs: bool = Field(True, description="Include the cells' outputs.")


class InsertParams(_Params):
    index: int = Field(..., ge=-1, description="Insert before this cell index; -1 = at the end.")
    source: str = Field(..., description="The new cell's source.")
    cell_type: Literal["code", "markdown"] = "code"


class ReplaceParams(_Params):
    index: int = Field(..., ge=0, description="Index of the cell to replace.")
    source: str = Field(..., description="The cell's new source.")


class RunParams(_Params):
    index: int = Field(..., ge=0, description="Index of the cell to run.")


class _NotebookTool:
    name: str
    description: str
    params: type[BaseModel]
    op: str

    def __init__(self, bridge: NotebookTransport, *, timeout: float) -> None:
        self.bridge = bridge
        self.timeout = timeout

    async def call(self, args: BaseModel) -> ToolOutput:
        sent = args.model_dump(exclude_none=True)
        ok, result = await self.bridge.request(self.op, sent, timeout=self.timeout)
        if not ok:
            return tool_error(f"Error: {result if isinstance(result, str) else json.dumps(result)}")
        if isinstance(result, str):
            text, cut = _bounded(result)
            return tool_ok(text, truncated=cut)
        if not isinstance(result, dict):
            result = {"result": result}
        return self.format(args, result)

    def format(self, args: BaseModel, result: dict[str, Any]) -> ToolOutput:
        text, cut = _bounded(json.dumps(result, ensure_ascii=False))
        return tool_ok(text, truncated=cut)


class NotebookRead(_NotebookTool):
    name = "notebook_read"
    op = "read"
    params: type[BaseModel] = ReadParams
    description = (
        "Read the cells (source and, by default, outputs) of the notebook the user has open in "
        "JupyterLab, with their indices. Use it before editing or running cells."
    )

    def format(self, args: BaseModel, result: dict[str, Any]) -> ToolOutput:
        assert isinstance(args, ReadParams)
        text, cut = _bounded(_format_cells(result, args.outputs))
        return tool_ok(text, truncated=cut)


class NotebookInsertCell(_NotebookTool):
    name = "notebook_insert_cell"
    always_ask = True  # the user's own notebook and kernel: no sandbox
    op = "insert_cell"
    params: type[BaseModel] = InsertParams
    description = (
        "Insert a new code or markdown cell into the user's open notebook (the user approves it "
        "first; it can be undone). Does not run it."
    )

    def format(self, args: BaseModel, result: dict[str, Any]) -> ToolOutput:
        return tool_ok(f"Inserted a cell at index {result.get('index')}.")


class NotebookReplaceCell(_NotebookTool):
    name = "notebook_replace_cell"
    always_ask = True  # the user's own notebook and kernel: no sandbox
    op = "replace_cell"
    params: type[BaseModel] = ReplaceParams
    description = (
        "Replace the source of one cell of the user's open notebook (the user approves it first; "
        "it can be undone). Does not run it."
    )

    def format(self, args: BaseModel, result: dict[str, Any]) -> ToolOutput:
        return tool_ok(f"Replaced the source of cell {result.get('index')}.")


class NotebookRunCell(_NotebookTool):
    name = "notebook_run_cell"
    always_ask = True  # the user's own notebook and kernel: no sandbox
    op = "run_cell"
    params: type[BaseModel] = RunParams
    description = (
        "Run one cell of the user's open notebook in the notebook's own kernel (not the sandbox; "
        "the user approves it first) and return its outputs."
    )

    def format(self, args: BaseModel, result: dict[str, Any]) -> ToolOutput:
        outputs = result.get("outputs") or []
        outputs = outputs if isinstance(outputs, list) else []
        status = result.get("status", "ok")
        text = outputs_text(outputs) or "(no output)"
        body, cut = _bounded(f"[cell {result.get('index')} ran: {status}]\n{text}")
        return ToolOutput(
            ok=status != "error", output=body, display=_display(outputs), truncated=cut
        )


def notebook_tools(
    bridge: NotebookTransport, *, timeout: float = 30.0, run_timeout: float = 600.0
) -> list[Tool]:
    return [
        NotebookRead(bridge, timeout=timeout),
        NotebookInsertCell(bridge, timeout=timeout),
        NotebookReplaceCell(bridge, timeout=timeout),
        NotebookRunCell(bridge, timeout=run_timeout),
    ]
