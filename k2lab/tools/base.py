"""What a tool is: a name, a JSON schema from a typed params model, a description, an async call.

A tool never raises into the loop: ``call`` returns a ``ToolOutput`` with ``ok=False`` for every
failure it can foresee, and the registry turns anything unforeseen into one too.
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


def tool_schema(tool: Tool) -> dict[str, Any]:
    """The OpenAI ``tools`` entry for a tool."""
    schema = tool.params.model_json_schema()
    schema.pop("title", None)
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": schema},
    }
