"""Replay: run a trace's tool calls again and say which outputs changed.

What runs is what ran: the arguments of the ``tool.decision`` when the call was edited, else the
model's. Which calls ran is the run view's answer (``k2lab.trace.view``: ``Call.executed``):
rejected calls, calls whose arguments (or edited arguments) were invalid and calls stopped while
they waited for a decision are skipped (they never executed). ``python`` calls are replayed in
the sandbox; an MCP call only when its tool is given (``tools``: the MCP servers of the face that
replays, started from the same config) and its server marks it read-only (``readOnlyHint``, the
tool's ``replayable``): running any other tool again could repeat its effects. Other calls are
reported as skipped. ``replay_all`` runs the calls in their original
order in one sandbox, so later calls see the state earlier ones built; ``replay_call`` runs one
call's code in the sandbox it is given (the caller decides whether the state it needs is there,
e.g. by ``replay_all(..., upto=call_id)``).

Comparison is of the tool's own output (the view's ``shown_output``: an edit is a field of the
result, never a note to cut here), after removing what cannot match between two runs of the same
code: trailing whitespace and object addresses (``0x7f...``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from k2lab.events import Event, ToolResult
from k2lab.sandbox.base import Sandbox
from k2lab.tools.base import Tool, ToolOutput, replayable
from k2lab.tools.registry import ToolRegistry
from k2lab.trace.view import Call, view_of

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


class ReplayError(Exception):
    """A call that cannot be replayed (unknown id, rejected, not a python call)."""


@dataclass(slots=True)
class ReplayResult:
    call_id: str
    code: str
    old_output: str
    new_output: str
    changed: bool
    old_ok: bool = True
    new_ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RecordedCall:
    """One tool call as the trace recorded it (read from the run view)."""

    call_id: str
    name: str
    arguments: str  # what actually ran (the edit, if edited)
    #: the view's vocabulary: approve | edit | reject | stop | not_run | None (never decided)
    decision: str | None
    result: ToolResult | None
    executed: bool = False
    run_id: str = ""
    #: the recorded output without the edit note the loop wrote for the model
    shown_output: str = ""
    #: why a call did not run (the view's ``Call.reason``: invalid, invalid_edit, stopped...)
    reason: str | None = None

    @property
    def code(self) -> str:
        try:
            args = json.loads(self.arguments)
        except json.JSONDecodeError as e:
            raise ReplayError(f"call {self.call_id}: arguments are not valid JSON") from e
        code = args.get("code") if isinstance(args, dict) else None
        if not isinstance(code, str):
            raise ReplayError(f"call {self.call_id}: no 'code' argument")
        return code


def _recorded(call: Call) -> RecordedCall:
    result = None
    if call.result is not None:
        r = call.result
        result = ToolResult(
            call_id=call.call_id,
            name=call.name,
            run_id=call.run_id,
            ok=r["ok"],
            output=r["output"],
            display=r["display"],
            duration=r["duration"],
            truncated=r["truncated"],
        )
    return RecordedCall(
        call.call_id,
        call.name,
        call.ran_arguments,
        call.decision,
        result,
        executed=call.executed,
        run_id=call.run_id,
        shown_output="" if call.result is None else call.result["shown_output"],
        reason=call.reason,
    )


def recorded_calls(events: Iterable[Event]) -> list[RecordedCall]:
    """Tool calls in trace order, from the run view. A call id seen in two runs of one file is kept
    twice (calls are keyed by ``(run_id, call_id)``); lookups by id take the latest."""
    return [_recorded(c) for c in view_of(events).all_calls()]


def normalize(text: str) -> str:
    text = _ADDRESS.sub("0x…", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _find(events: Iterable[Event], call_id: str) -> RecordedCall:
    found = [c for c in recorded_calls(events) if c.call_id == call_id]
    if not found:
        raise ReplayError(f"no tool call {call_id!r} in this trace")
    return found[-1]


def _replayable(rc: RecordedCall, tools: Mapping[str, Tool]) -> bool:
    tool = tools.get(rc.name)
    return rc.executed and (rc.name == "python" or (tool is not None and replayable(tool)))


async def _again(rc: RecordedCall, tools: Mapping[str, Tool], timeout: float) -> ToolOutput:
    """A recorded MCP call run again, if its tool is here and read-only."""
    tool = tools.get(rc.name)
    if tool is None:
        raise ReplayError(
            f"call {rc.call_id}: {rc.name!r} is not available here: only python calls, and MCP "
            "tools of a configured server that marks them read-only, can be replayed"
        )
    if not replayable(tool):
        raise ReplayError(
            f"call {rc.call_id}: {rc.name} is not marked read-only by its MCP server "
            "(readOnlyHint): running it again could repeat its effects"
        )
    reg = ToolRegistry([tool])
    checked = reg.check(rc.name, rc.arguments)
    if isinstance(checked, str):
        raise ReplayError(f"call {rc.call_id}: {checked}")
    try:
        return await asyncio.wait_for(reg.call(*checked), timeout)
    except asyncio.TimeoutError:
        raise ReplayError(f"call {rc.call_id}: no answer within {timeout:g} s") from None


async def _run(
    rc: RecordedCall, sandbox: Sandbox, timeout: float, tools: Mapping[str, Tool] | None = None
) -> ReplayResult:
    from k2lab.tools.python import PythonTool  # the same rendering the model read

    if not rc.executed or rc.result is None:
        why = "was rejected" if rc.decision == "reject" else "never ran"
        raise ReplayError(f"call {rc.call_id} {why}: nothing to replay")
    if rc.name != "python":
        code = rc.arguments
        out = await _again(rc, tools or {}, timeout)
    else:
        code = rc.code
        tool = PythonTool(sandbox, timeout=timeout)
        out = await tool.call(tool.params.model_validate({"code": code}))
    old = rc.shown_output
    changed = normalize(old) != normalize(out.output) or rc.result.ok != out.ok
    return ReplayResult(
        call_id=rc.call_id,
        code=code,
        old_output=old,
        new_output=out.output,
        changed=changed,
        old_ok=rc.result.ok,
        new_ok=out.ok,
    )


async def replay_call(
    events: list[Event],
    call_id: str,
    sandbox: Sandbox,
    timeout: float = 60.0,
    *,
    tools: Mapping[str, Tool] | None = None,
) -> ReplayResult:
    """Run one recorded call again (python in ``sandbox``; a read-only MCP tool of ``tools``)
    and compare the output."""
    return await _run(_find(events, call_id), sandbox, timeout, tools)


async def replay_all(
    events: list[Event],
    sandbox: Sandbox,
    timeout: float = 60.0,
    *,
    upto: str | None = None,
    tools: Mapping[str, Tool] | None = None,
) -> list[ReplayResult]:
    """Replay every executed python call, and read-only MCP call of ``tools``, in order
    (stopping after ``upto`` if given)."""
    calls = recorded_calls(events)
    if upto is not None and not any(c.call_id == upto for c in calls):
        raise ReplayError(f"no tool call {upto!r} in this trace")
    results: list[ReplayResult] = []
    for rc in calls:
        if _replayable(rc, tools or {}):
            results.append(await _run(rc, sandbox, timeout, tools))
        if rc.call_id == upto:
            break
    return results


def skipped_calls(
    events: list[Event], tools: Mapping[str, Tool] | None = None
) -> list[RecordedCall]:
    """Calls ``replay_all`` leaves out (rejected, invalid, stopped, or not a replayable tool)."""
    return [c for c in recorded_calls(events) if not _replayable(c, tools or {})]
