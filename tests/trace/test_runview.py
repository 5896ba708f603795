"""The one run view (k2lab.trace.view): golden traces folded and compared, plus its rules.

The golden traces (``data/*.jsonl``) are real engine runs (``tests/trace/golden.py``); their
``*.view.json`` are the expected states, checked by hand. The same files are meant for the
TypeScript renderers' unit test.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from k2lab.events import (
    EVENT_TYPES,
    ContentDelta,
    Notice,
    ReasoningDelta,
    Retry,
    RunEnd,
    RunStart,
    StepStart,
    ToolDecision,
    ToolProposed,
    ToolResult,
    tool_message,
    user_message,
)
from k2lab.trace.jsonl import load_trace
from k2lab.trace.view import _HANDLERS, RunView, retry_text, view_of

DATA = Path(__file__).parent / "data"
GOLDEN = sorted(p.name[: -len(".view.json")] for p in DATA.glob("*.view.json"))


def events_of(name: str) -> list[dict[str, Any]]:
    lines = (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[1:]]  # the first line is the trace header


def expected(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.view.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_golden_set_is_complete() -> None:
    assert set(GOLDEN) >= {
        "approved",
        "edited",
        "rejected",
        "stopped_waiting",
        "step_restart",
        "retries",
        "parallel",
        "repeated_ids",
        "heavy",
        "heavy_demo",
        "verify_corrected",
    }


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_fold_of_dicts(name: str) -> None:
    exp = expected(name)
    events = events_of(name)
    assert view_of(events).to_dict() == exp["final"]
    for part in exp.get("partial", []):
        assert view_of(events[: part["events"]]).to_dict() == part["view"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_fold_of_event_objects(name: str) -> None:
    """Events read back by the trace layer fold to the same state as their dicts."""
    trace = load_trace(DATA / f"{name}.jsonl")
    assert view_of(trace.events).to_dict() == expected(name)["final"]


def test_every_event_type_is_handled() -> None:
    assert set(_HANDLERS) == set(EVENT_TYPES)
    view = RunView()
    for name, cls in EVENT_TYPES.items():  # the least each type can be: defaults everywhere
        required = {
            f.name: ("" if f.type in ("str", "DecisionKind", "StopReason") else 0)
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        if name == "tool.decision":
            required.update(decision="approve", by="user")
        if name == "run.end":
            required["stop_reason"] = "completed"
        view.apply(cls(**required))
        view.apply(cls(**required).to_dict())
    assert view.run is not None and view.run.status == "ended"


def test_stopped_while_waiting_was_not_run() -> None:
    view = view_of(events_of("stopped_waiting"))
    first = view.call("stopped_waiting-1", "functions.python:0")
    second = view.call("stopped_waiting-1", "functions.python:1")
    assert first is not None and first.executed and first.status == "done"
    assert second is not None and not second.executed
    assert (second.decision, second.status, second.reason) == ("stop", "not_run", "stopped")


def test_step_restart_drops_the_cut_stream() -> None:
    events = events_of("step_restart")
    end = next(i for i, e in enumerate(events) if e["type"] == "step.end")
    truth = events[end]["reasoning"]
    view = view_of(events[:end])  # live, before step.end replaces the text
    step = view.runs[0].steps[1]
    assert str(step.reasoning) == truth  # not "Let me Let me think ..."
    assert step.restarts == 1
    # without the notice the streamed fragments would show the cut stream twice
    no_notice = view_of(e for e in events[:end] if e.get("kind") != "step_restart")
    assert str(no_notice.runs[0].steps[1].reasoning) != truth


def test_retries_number_attempts_of_max() -> None:
    events = events_of("retries")
    raw = [e for e in events if e["type"] == "retry"]
    view = view_of(events)
    assert [r["attempt"] for r in view.runs[0].retries] == [e["attempt"] + 1 for e in raw]
    assert retry_text(view.runs[0].retries[0]).startswith(
        f"attempt 2 of {raw[0]['max_attempts']} in "
    )


def test_calls_are_keyed_by_run_and_call() -> None:
    view = view_of(events_of("repeated_ids"))
    a = view.call("repeated_ids-1", "functions.python:0")
    b = view.call("repeated_ids-2", "functions.python:0")
    assert a is not None and b is not None and a is not b
    assert json.loads(a.arguments) == {"code": "x = 1"}
    assert json.loads(b.arguments) == {"code": "print(x)"}
    assert a.model_id == b.model_id == "call_0"  # the model's own id, kept as a field
    assert view.find_call("functions.python:0") is b  # by id alone: the latest
    assert len(view.all_calls()) == 3


def test_edit_is_a_field_and_the_note_is_cut_by_it() -> None:
    call = view_of(events_of("edited")).all_calls()[0]
    assert call.decision == "edit" and call.executed
    assert json.loads(call.arguments) == {"code": "print('helo')"}  # the model's original
    assert call.ran_arguments == call.edited_arguments
    assert call.result is not None
    assert call.result["output"].startswith("[The user edited")  # what the model read
    assert call.result["shown_output"] == "ran: print('hello')"


def test_demo_flag_is_a_field() -> None:
    view = view_of(
        [
            RunStart(
                run_id="r",
                prompt="p",
                model="m",
                model_label="anything",
                base_url="",
                policy="auto",
                isolation="none",
                max_steps=1,
                demo=True,
            )
        ]
    )
    assert view.run is not None and view.run.demo
    # no field (older traces): not the demo, whatever the label says
    old = view_of([{"type": "run.start", "model_label": "offline demo model (scripted)"}])
    assert old.run is not None and not old.run.demo


def test_old_trace_without_run_ids_on_tool_events() -> None:
    view = view_of(load_trace(DATA / "pi_v1.jsonl").events)
    run = view.runs[0]
    assert run.run_id == "fe161755b0f2" and run.calls
    for call in run.calls.values():
        assert view.call("fe161755b0f2", call.call_id) is call


def test_invalid_edit_is_not_run() -> None:
    ev = [
        ToolProposed(step=1, call_id="c", name="python", arguments='{"code": "1"}'),
        ToolDecision(call_id="c", decision="edit", by="user", arguments="not json"),
        ToolResult(call_id="c", name="python", ok=False, output="Error: invalid JSON"),
    ]
    call = view_of(ev).all_calls()[0]
    assert (call.status, call.reason, call.executed) == ("not_run", "invalid_edit", False)


def test_run_end_closes_what_no_result_answered() -> None:
    ev = [
        RunStart(
            run_id="r",
            prompt="",
            model="",
            model_label="",
            base_url="",
            policy="ask",
            isolation="none",
            max_steps=3,
        ),
        StepStart(step=1),
        ToolProposed(step=1, call_id="a", name="python", arguments="{}", run_id="r"),
        ToolDecision(call_id="a", decision="approve", by="user", run_id="r"),
        ToolProposed(step=1, call_id="b", name="python", arguments="{}", run_id="r"),
        RunEnd(stop_reason="wall_time", answer="", steps=1, tool_calls=2),
    ]
    view = view_of(ev)
    a, b = view.all_calls()
    assert (a.status, a.reason, a.executed) == ("not_run", "no_result", False)
    assert (b.decision, b.status, b.reason) == ("stop", "not_run", "wall_time")


def test_hostile_input_never_raises() -> None:
    view = RunView()
    for d in [
        {"type": "nope"},
        {"type": ["run.start"]},
        {"type": "tool.proposed", "call_id": ["x"], "step": None, "problem": 3},
        {},
        {"type": "reasoning.delta", "step": "x", "text": 5},
        {"type": "step.end", "tool_calls": "zz", "duration": "slow"},
        {"type": "tool.decision", "call_id": None},
        {"type": "tool.result", "call_id": 3, "display": "x"},
        {"type": "usage", "prompt_tokens": "many"},
        {"type": "retry", "attempt": None},
        {"type": "notice", "kind": "step_restart"},
        {"type": "run.end", "stop_reason": 1, "elapsed": "x"},
    ]:
        view.apply(d)
    assert view.run is not None and view.run.status == "ended"


def test_fragments_are_joined_lazily() -> None:
    view = RunView()
    view.apply(StepStart(step=1))
    for _ in range(1000):
        view.apply(ReasoningDelta(step=1, text="abc"))
        view.apply(ContentDelta(step=1, text="d"))
    st = view.runs[0].steps[1]
    assert st.reasoning.length == 3000 and len(str(st.reasoning)) == 3000
    assert str(st.content) == "d" * 1000
    view.apply(Notice(kind="step_restart", message="cut"))
    view.apply(Retry(attempt=1, max_attempts=4, delay=0.1, reason="cut"))
    assert str(st.reasoning) == "" and view.runs[0].retries[0]["step"] == 1


def test_heavy_lanes_fold_apart_and_keep_their_calls() -> None:
    """Heavy mode (issue 12): lanes interleave in one trace; each is its own run, and Kimi's ids
    (functions.python:0) repeat across lanes without colliding."""
    events = events_of("heavy")
    lanes = {e["lane"] for e in events}
    assert lanes == {"1", "2", "3", "aggregate"}
    # the trace interleaves lanes: a lane's events are not one block
    order = [e["lane"] for e in events if e["lane"] != "aggregate"]
    assert order != sorted(order)
    view = view_of(events)
    assert [(r.lane, r.status, r.stop_reason) for r in view.runs] == [
        ("1", "ended", "completed"),
        ("2", "ended", "completed"),
        ("3", "ended", "error"),
        ("aggregate", "ended", "completed"),
    ]
    one = view.call("heavy.1", "functions.python:0")
    two = view.call("heavy.2", "functions.python:0")
    assert one is not None and two is not None and one is not two
    assert one.executed and two.executed
    assert view.runs[2].errors[0]["kind"] == "sandbox"
    agg = view.runs[3]
    assert agg.verify is not None and agg.verify["outcome"] == "verified"
    assert "Lanes followed" in agg.answer


def test_verify_pass_keeps_the_checked_answer_until_the_correction() -> None:
    events = events_of("verify_corrected")
    fault = next(i for i, e in enumerate(events) if e["type"] == "verify.end")
    live = view_of(events[: fault + 1]).runs[0]
    assert live.answer == "6 * 7 = 41." and live.verify is not None
    assert live.verify["phase"] == "correcting"
    # the check's own text ("... VERDICT: fault") never stands as the answer
    assert "VERDICT" not in live.answer
    end = view_of(events).runs[0]
    assert end.answer == "6 * 7 = 42." and end.verify is not None
    assert end.verify["outcome"] == "corrected"
    assert [r["verdict"] for r in end.verify["rounds"]] == ["fault", "holds"]
    assert [c["name"] for r in end.verify["rounds"] for c in r["checks"]] == ["python", "python"]


def test_an_edit_is_a_field_and_old_traces_with_the_note_read_the_same() -> None:
    """``tool.result.edited``: the output is the tool's own, the model's text is built from the
    field (``events.tool_message``); a trace written before the field holds the note inside the
    output, and folds to the same call."""
    events = events_of("edited")
    res = next(e for e in events if e["type"] == "tool.result")
    assert res["edited"] is True and not res["output"].startswith("[The user edited")
    new = view_of(events).call("edited-1", "functions.python:0")
    old = view_of(events_of("edited_legacy")).call("edited-1", "functions.python:0")
    assert new is not None and old is not None and new.result is not None
    assert new.to_dict() == old.to_dict()
    dec = next(e for e in events if e["type"] == "tool.decision")
    assert new.result["output"] == tool_message(res["output"], dec["arguments"])
    assert new.result["shown_output"] == res["output"]


def test_attached_context_is_a_field_of_run_start() -> None:
    ctx = {"label": "the current cell of a.ipynb", "text": "x = 1"}
    base = {"run_id": "r", "model": "m", "model_label": "m", "base_url": "", "policy": "ask"}
    start = RunStart(**base, prompt="explain", isolation="none", max_steps=1, context=ctx)
    assert start.to_dict()["context"] == ctx
    plain = RunStart(**base, prompt="p", isolation="none", max_steps=1)
    assert "context" not in plain.to_dict()  # older readers see the same line as before
    view = view_of([start.to_dict()])
    assert view.runs[0].prompt == "explain" and view.runs[0].context == ctx
    assert user_message("explain", ctx) == (
        "explain\n\nContext (the current cell of a.ipynb):\n```\nx = 1\n```"
    )
    assert user_message("explain", None) == "explain"
    assert user_message("explain", {"label": "x", "text": "  "}) == "explain"
    assert view_of([{**start.to_dict(), "context": "junk"}]).runs[0].context is None
