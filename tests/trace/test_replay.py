"""Replay of recorded tool calls in a real sandbox kernel (process level, for speed)."""

from __future__ import annotations

import json

import pytest

from k2lab.events import Event, ToolDecision, ToolProposed, ToolResult
from k2lab.sandbox.kernel import SandboxKernel
from k2lab.trace.replay import (
    ReplayError,
    normalize,
    recorded_calls,
    replay_all,
    replay_call,
    skipped_calls,
)


def _call(
    n: int, code: str, output: str, *, decision: str = "approve", edit: str | None = None
) -> list[Event]:
    cid = f"functions.python:{n}"
    evs: list[Event] = [
        ToolProposed(step=n + 1, call_id=cid, name="python", arguments=json.dumps({"code": code}))
    ]
    args = json.dumps({"code": edit}) if edit is not None else None
    evs.append(ToolDecision(call_id=cid, decision=decision, by="user", arguments=args))  # type: ignore[arg-type]
    if decision == "reject":
        output = "The user rejected this tool call; it was not executed."
    elif edit is not None:
        output = f"[The user edited the arguments before running: {args}]\n{output}"
    evs.append(ToolResult(call_id=cid, name="python", ok=decision != "reject", output=output))
    return evs


EVENTS: list[Event] = [
    *_call(0, "x = 21\nprint(x)", "21\n"),
    *_call(1, "print(x * 3)", "42\n", decision="edit", edit="print(x * 2)"),
    *_call(2, "print('never ran')", "", decision="reject"),
    *_call(3, "print(object())", "<object object at 0x7f3a5c2b1e40>\n"),
    *_call(4, "import random\nprint(random.random())", "0.123456789\n"),
]


def test_recorded_calls_use_what_actually_ran() -> None:
    calls = {c.call_id: c for c in recorded_calls(EVENTS)}
    assert calls["functions.python:1"].code == "print(x * 2)"  # the edit, not the proposal
    assert not calls["functions.python:2"].executed
    assert [c.call_id for c in skipped_calls(EVENTS)] == ["functions.python:2"]


def test_normalize_ignores_addresses_and_trailing_space() -> None:
    assert normalize("<x at 0x7f3a5c2b1e40>  \n") == normalize("<x at 0x55d0c0ffee00>")


def test_an_edit_recorded_as_a_field_compares_the_tools_own_output() -> None:
    """Today's traces: ``tool.result.edited`` and no note in the output (EVENTS above are the
    older form, the note inside the output): both give the same recorded output."""
    cid = "functions.python:1"
    args = json.dumps({"code": "print(x * 2)"})
    new = [
        ToolProposed(step=2, call_id=cid, name="python", arguments=json.dumps({"code": "p()"})),
        ToolDecision(call_id=cid, decision="edit", by="user", arguments=args),
        ToolResult(call_id=cid, name="python", ok=True, output="42\n", edited=True),
    ]
    (rc,) = recorded_calls(new)
    old = next(c for c in recorded_calls(EVENTS) if c.call_id == cid)
    assert rc.shown_output == old.shown_output == "42\n"
    assert rc.code == old.code == "print(x * 2)"


async def test_replay_in_a_real_sandbox() -> None:
    sandbox = SandboxKernel(isolation="process")
    await sandbox.start()
    try:
        results = await replay_all(EVENTS, sandbox, timeout=20)
        by_id = {r.call_id: r for r in results}
        assert list(by_id) == [f"functions.python:{n}" for n in (0, 1, 3, 4)]
        assert not by_id["functions.python:0"].changed
        assert not by_id["functions.python:1"].changed  # the edited code ran again: 42
        assert by_id["functions.python:1"].new_output.strip() == "42"
        assert not by_id["functions.python:3"].changed  # only the address differed
        assert by_id["functions.python:4"].changed  # a fresh random number

        with pytest.raises(ReplayError, match="rejected"):
            await replay_call(EVENTS, "functions.python:2", sandbox, timeout=20)
        with pytest.raises(ReplayError, match="no tool call"):
            await replay_call(EVENTS, "functions.python:9", sandbox, timeout=20)

        # one call alone runs in whatever state the sandbox has: after a restart x is gone
        await sandbox.restart()
        lone = await replay_call(EVENTS, "functions.python:1", sandbox, timeout=20)
        assert lone.changed and not lone.new_ok and "NameError" in lone.new_output
        # ...and replay_all(upto=...) rebuilds the state the call needs first
        await sandbox.restart()
        upto = await replay_all(EVENTS, sandbox, timeout=20, upto="functions.python:1")
        assert [r.call_id for r in upto] == ["functions.python:0", "functions.python:1"]
        assert not upto[-1].changed
    finally:
        await sandbox.shutdown()


STOPPED_AND_BAD_EDIT: list[Event] = [
    *_call(0, "y = 1", "", decision="approve"),
    # edited to arguments that are not JSON: the loop answers with the check's error, never runs it
    ToolProposed(step=2, call_id="functions.python:1", name="python", arguments='{"code": "1"}'),
    ToolDecision(call_id="functions.python:1", decision="edit", by="user", arguments="{oops"),
    ToolResult(call_id="functions.python:1", name="python", ok=False, output="Error: bad JSON"),
    # stopped while it waited for approval: no decision, the loop's closing result
    ToolProposed(step=3, call_id="functions.python:2", name="python", arguments='{"code": "2"}'),
    ToolResult(
        call_id="functions.python:2",
        name="python",
        ok=False,
        output="[not run: the user stopped the run before this tool call executed]",
    ),
]


async def test_calls_that_never_ran_are_skipped_not_fatal() -> None:
    calls = {c.call_id: c for c in recorded_calls(STOPPED_AND_BAD_EDIT)}
    assert calls["functions.python:0"].executed
    assert not calls["functions.python:1"].executed  # was: "executed", and replay_all raised
    assert not calls["functions.python:2"].executed
    assert calls["functions.python:2"].decision == "stop"
    skipped = [c.call_id for c in skipped_calls(STOPPED_AND_BAD_EDIT)]
    assert skipped == ["functions.python:1", "functions.python:2"]
    sandbox = SandboxKernel(isolation="process")
    await sandbox.start()
    try:
        results = await replay_all(STOPPED_AND_BAD_EDIT, sandbox, timeout=20)
        assert [r.call_id for r in results] == ["functions.python:0"]
    finally:
        await sandbox.shutdown()
