"""What a tool is: a name, a JSON schema from a typed params model, a description, an async call.

A tool never raises into the loop: ``call`` returns a ``ToolOutput`` with ``ok=False`` for every
failure it can foresee, and the registry turns anything unforeseen into one too.

Optional attributes a tool may set (read with ``getattr``, so existing tools need none):

- ``parameters``: a JSON schema for the arguments, offered to the model instead of the params
  model's schema and checked with ``jsonschema`` before the call is proposed (MCP tools).
- ``requires_approval`` (default True): False lets the call run without asking under the ``ask``
  policy (an MCP server configured with ``"approve": "auto"``); ``never`` still rejects it.
- ``replayable`` (default False): running the call again is safe (python in a fresh sandbox, a
  read-only MCP tool).
- ``always_ask`` (default False): the tool acts outside the sandbox (on the user's notebook or
  kernel), so a person decides each call even when the run's policy is ``auto``, unless that person
  chose ``auto`` themselves (``k2lab.server.policy``); ``never`` still rejects it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel


@dataclass(slots=True)
class ToolOutput:
    ok: bool
    #: Bounded text for the model (the tool message content).
    output: str
    #: Rich Jupyter mime bundles for people ({"data": {...}, "metadata": {...}}).
    display: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    #: The text for people when it differs from ``output`` (the model's notes about rich
    #: outputs dropped: people see the outputs themselves).
    people_output: str | None = None


def people_text(output: str, display: list[dict[str, Any]]) -> str | None:
    """``output`` without the notes written for the model about ``display``'s bundles.

    Each bundle that put a note in the model's text names it in ``metadata.k2lab.model_note``
    (exact text, not a pattern): the notes are cut in order, each at its first place after the
    previous one; a note the head/tail cut removed is skipped. None when nothing was cut."""
    out: list[str] = []
    pos = 0
    for bundle in display:
        meta = bundle.get("metadata") if isinstance(bundle, dict) else None
        k2 = meta.get("k2lab") if isinstance(meta, dict) else None
        note = k2.get("model_note") if isinstance(k2, dict) else None
        if not isinstance(note, str) or not note:
            continue
        at = output.find(note, pos)
        if at < 0:
            continue
        out.append(output[pos:at])
        pos = at + len(note)
    if not out:
        return None
    out.append(output[pos:])
    text = "".join(out)
    return text if text.strip() else ""


def tool_ok(output: str, **kw: Any) -> ToolOutput:
    return ToolOutput(ok=True, output=output, **kw)


def tool_error(output: str, **kw: Any) -> ToolOutput:
    return ToolOutput(ok=False, output=output, **kw)


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str
    params: type[BaseModel]

    async def call(self, args: BaseModel) -> ToolOutput: ...


def tool_parameters(tool: Tool) -> dict[str, Any]:
    """The JSON schema of a tool's arguments."""
    own = getattr(tool, "parameters", None)
    if isinstance(own, dict):
        return own
    schema = tool.params.model_json_schema()
    schema.pop("title", None)
    return schema


def requires_approval(tool: Tool) -> bool:
    return bool(getattr(tool, "requires_approval", True))


def replayable(tool: Tool) -> bool:
    return bool(getattr(tool, "replayable", False))


def always_ask(tool: Tool) -> bool:
    return bool(getattr(tool, "always_ask", False))


def tool_schema(tool: Tool) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for a tool."""
    schema = tool_parameters(tool)
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": schema},
    }
