"""Replay: run a trace's tool calls again and say which outputs changed.

What runs is what ran: the arguments of the ``tool.decision`` when the call was edited, else the
model's. Which calls ran is the run view's answer (``k2lab.trace.view``: ``Call.executed``):
rejected calls, calls whose arguments (or edited arguments) were invalid and calls stopped while
they waited for a decision are skipped (they never executed). Only ``python`` calls can be
replayed; other tools are reported as skipped. ``replay_all`` runs the calls in their original
order in one sandbox, so later calls see the state earlier ones built; ``replay_call`` runs one
call's code in the sandbox it is given (the caller decides whether the state it needs is there,
e.g. by ``replay_all(..., upto=call_id)``).

Comparison is of the tool's own output (the view's ``shown_output``: an edit is a field of the
result, never a note to cut here), after removing what cannot match between two runs of the same
code: trailing whitespace and object addresses (``0x7f...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from k2lab.events import Event, ToolResult
from k2lab.sandbox.base import Sandbox
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


async def _run(rc: RecordedCall, sandbox: Sandbox, timeout: float) -> ReplayResult:
    from k2lab.tools.python import PythonTool  # the same rendering the model read

    if rc.name != "python":
        raise ReplayError(f"call {rc.call_id}: only python calls can be replayed, not {rc.name!r}")
    if not rc.executed or rc.result is None:
        why = "was rejected" if rc.decision == "reject" else "never ran"
        raise ReplayError(f"call {rc.call_id} {why}: nothing to replay")
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
    events: list[Event], call_id: str, sandbox: Sandbox, timeout: float = 60.0
) -> ReplayResult:
    """Run one recorded call's code again in ``sandbox`` and compare the output."""
    return await _run(_find(events, call_id), sandbox, timeout)


async def replay_all(
    events: list[Event], sandbox: Sandbox, timeout: float = 60.0, *, upto: str | None = None
) -> list[ReplayResult]:
    """Replay every executed python call in order (stopping after ``upto`` if given)."""
    calls = recorded_calls(events)
    if upto is not None and not any(c.call_id == upto for c in calls):
        raise ReplayError(f"no tool call {upto!r} in this trace")
    results: list[ReplayResult] = []
    for rc in calls:
        if rc.executed and rc.name == "python":
            results.append(await _run(rc, sandbox, timeout))
        if rc.call_id == upto:
            break
    return results


def skipped_calls(events: list[Event]) -> list[RecordedCall]:
    """Calls ``replay_all`` leaves out (rejected, invalid, stopped, or not python)."""
    return [c for c in recorded_calls(events) if not (c.executed and c.name == "python")]
