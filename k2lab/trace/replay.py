"""Replay: run a trace's tool calls again and say which outputs changed.

What runs is what ran: the arguments of the ``tool.decision`` when the call was edited, else the
model's. Rejected calls, calls whose arguments were invalid and calls stopped before running are
skipped (they never executed). Only ``python`` calls can be replayed; other tools are reported as
skipped. ``replay_all`` runs the calls in their original order in one sandbox, so later calls see
the state earlier ones built; ``replay_call`` runs one call's code in the sandbox it is given (the
caller decides whether the state it needs is there, e.g. by ``replay_all(..., upto=call_id)``).

Comparison is of the text the model read, after removing what cannot match between two runs of the
same code: the "[The user edited ...]" marker the loop adds, trailing whitespace, and object
addresses (``0x7f...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from k2lab.events import Event, ToolDecision, ToolProposed, ToolResult
from k2lab.sandbox.base import Sandbox

_EDIT_MARK = re.compile(r"^\[The user edited the arguments before running: .*?\]\n", re.S)
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
    """One tool call as the trace recorded it."""

    call_id: str
    name: str
    arguments: str  # what actually ran (the edit, if edited)
    decision: str | None  # approve | edit | reject | None (invalid or never decided)
    result: ToolResult | None

    @property
    def executed(self) -> bool:
        return self.decision in ("approve", "edit") and self.result is not None

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


def recorded_calls(events: Iterable[Event]) -> list[RecordedCall]:
    """Tool calls in trace order. A call id seen twice (two conversations in one file) is kept
    twice; lookups by id take the latest."""
    calls: list[RecordedCall] = []
    open_: dict[str, RecordedCall] = {}
    for ev in events:
        if isinstance(ev, ToolProposed):
            rc = RecordedCall(ev.call_id, ev.name, ev.arguments, None, None)
            calls.append(rc)
            open_[ev.call_id] = rc
        elif isinstance(ev, ToolDecision) and ev.call_id in open_:
            rc = open_[ev.call_id]
            rc.decision = ev.decision
            if ev.decision == "edit" and ev.arguments is not None:
                rc.arguments = ev.arguments
        elif isinstance(ev, ToolResult) and ev.call_id in open_:
            open_.pop(ev.call_id).result = ev
    return calls


def normalize(text: str) -> str:
    text = _EDIT_MARK.sub("", text, count=1)
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
    old = rc.result.output
    changed = normalize(old) != normalize(out.output) or rc.result.ok != out.ok
    return ReplayResult(
        call_id=rc.call_id,
        code=code,
        old_output=_EDIT_MARK.sub("", old, count=1),
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
