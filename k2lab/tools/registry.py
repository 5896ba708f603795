"""The set of tools a run offers: schemas (built once), argument checking, and safe calls.

Arguments are checked before a call is proposed: JSON that parses to an object, then the tool's
JSON schema (``jsonschema``, for tools with ``parameters``), then its params model. Any failure is
a message the model reads as the result; the call reaches neither a person nor the tool.

Tools whose state changes under the run (an MCP server that died) report it with ``notice``; the
loop emits what ``take_notices`` returns as ``notice`` events.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from k2lab.tools.base import Tool, ToolOutput, replayable, tool_error, tool_schema

if TYPE_CHECKING:  # jsonschema takes ~1 s to import: only when a tool brings a JSON schema
    from jsonschema import ValidationError as SchemaViolation
    from jsonschema.protocols import Validator

#: violations listed in one message, and the length of each
MAX_VIOLATIONS = 5
MAX_VIOLATION_CHARS = 300


class ToolRegistry:
    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        self._schemas: list[dict[str, Any]] | None = None
        self._validators: dict[str, Validator] = {}
        self._notices: list[tuple[str, str]] = []
        for t in tools or []:
            self.add(t)

    def add(self, tool: Tool) -> None:
        self._tools[tool.name] = tool
        self._schemas = None
        own = getattr(tool, "parameters", None)
        if isinstance(own, dict):
            from jsonschema.validators import Draft202012Validator, validator_for

            cls = validator_for(own, default=Draft202012Validator)
            self._validators[tool.name] = cls(own)
        else:
            self._validators.pop(tool.name, None)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    @property
    def replayable_names(self) -> list[str]:
        """The tools whose calls can run again without harm (``Tool.replayable``)."""
        return [name for name, tool in self._tools.items() if replayable(tool)]

    def notice(self, message: str, kind: str = "tool") -> None:
        """Queue a notice for the run (thread-unsafe; call from the loop's thread)."""
        self._notices.append((message, kind))

    def take_notices(self) -> list[tuple[str, str]]:
        out, self._notices = self._notices, []
        return out

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
        validator = self._validators.get(name)
        if validator is not None:
            problem = _violations(name, validator, raw)
            if problem is not None:
                return problem
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


def _violations(name: str, validator: Validator, raw: dict[str, Any]) -> str | None:
    errors: list[SchemaViolation] = []
    try:
        for e in validator.iter_errors(raw):
            errors.append(e)
            if len(errors) >= MAX_VIOLATIONS + 1:
                break
    except Exception as exc:  # an unresolvable $ref, a schema the validator chokes on
        return f"Error: the arguments for {name!r} cannot be checked against its schema: {exc}."
    if not errors:
        return None
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    lines = []
    for e in errors[:MAX_VIOLATIONS]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        msg = (
            e.message
            if len(e.message) <= MAX_VIOLATION_CHARS
            else e.message[:MAX_VIOLATION_CHARS] + "..."
        )
        lines.append(f"{where.lstrip('.') or '(root)'}: {msg}")
    more = "; and more" if len(errors) > MAX_VIOLATIONS else ""
    return (
        f"Error: invalid arguments for {name!r} (they do not match the tool's JSON schema): "
        + "; ".join(lines)
        + more
        + ". The call was not made; send arguments that match the schema."
    )
