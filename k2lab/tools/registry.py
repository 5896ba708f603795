"""The set of tools a run offers: schemas (built once), argument checking, and safe calls."""

from __future__ import annotations

import asyncio
import json
import traceback
from typing import Any

from pydantic import BaseModel, ValidationError

from k2lab.tools.base import Tool, ToolOutput, tool_error, tool_schema


class ToolRegistry:
    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        self._schemas: list[dict[str, Any]] | None = None
        for t in tools or []:
            self.add(t)

    def add(self, tool: Tool) -> None:
        self._tools[tool.name] = tool
        self._schemas = None

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def schemas(self) -> list[dict[str, Any]]:
        if self._schemas is None:
            self._schemas = [tool_schema(t) for t in self._tools.values()]
        return self._schemas

    def check(self, name: str, arguments: str) -> tuple[Tool, BaseModel] | str:
        """Parse a call; returns the tool and its params, or a problem the model should read."""
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return f"Error: unknown tool {name!r}. Available tools: {known}."
        try:
            raw = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            return (
                f"Error: the arguments for {name!r} are not valid JSON ({e.msg} at position "
                f"{e.pos}). Send a JSON object matching the tool's schema."
            )
        if not isinstance(raw, dict):
            return f"Error: the arguments for {name!r} must be a JSON object."
        try:
            return tool, tool.params.model_validate(raw)
        except ValidationError as e:
            errs = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in e.errors()
            )
            return f"Error: invalid arguments for {name!r}: {errs}."

    async def call(self, tool: Tool, params: BaseModel) -> ToolOutput:
        """Run a tool; anything it raises becomes an error result (the run goes on)."""
        try:
            return await tool.call(params)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a tool bug must not end the run
            tb = traceback.format_exception_only(type(e), e)[-1].strip()
            return tool_error(f"Error: the tool {tool.name!r} failed: {tb}")
