"""The view's state model, from synthetic events (pure: no kernel, no frontend)."""

from __future__ import annotations

import json
from typing import Any

from k2lab.events import (
    ContentDelta,
    ReasoningDelta,
    RunEnd,
    RunStart,
    StepEnd,
    StepStart,
    ToolDecision,
    ToolProposed,
    ToolResult,
    Usage,
)
from k2lab.widgets.state import TraceState, arguments_for, code_of, state_from_events


def run_events(*, decision: str = "approve", stop: bool = False) -> list[dict[str, Any]]:
    args = json.dumps({"code": "print(1)"})
    evs: list[Any] = [
        RunStart(
            run_id="r1",
            prompt="p",
            model="m",
            model_label="offline demo model (scripted)",
            base_url="http://x/v1",
            policy="ask",
            isolation="bwrap",
            max_steps=10,
        ),
        StepStart(step=1),
        ReasoningDelta(step=1, text="Let me "),
        ReasoningDelta(step=1, text="think."),
        Usage(step=1, prompt_tokens=100, completion_tokens=7, reasoning_tokens=5),
        StepEnd(
            step=1,
            content="",
            reasoning="Let me think.",
            tool_calls=[{"id": "c1", "name": "python", "arguments": args}],
        ),
        ToolProposed(step=1, call_id="c1", name="python", arguments=args),
    ]
    if stop:
        evs.append(RunEnd(stop_reason="stopped", answer="", steps=1, tool_calls=1))
    else:
        edited = json.dumps({"code": "print(2)"}) if decision == "edit" else None
        fb = "not that" if decision == "reject" else None
        evs.append(
            ToolDecision(call_id="c1", decision=decision, by="user", arguments=edited, feedback=fb)  # type: ignore[arg-type]
        )
        evs.append(ToolResult(call_id="c1", name="python", ok=True, output="2\n"))
        evs += [
            StepStart(step=2),
            ContentDelta(step=2, text="Done"),
            StepEnd(step=2, content="Done", reasoning=""),
            RunEnd(stop_reason="completed", answer="Done", steps=2, tool_calls=1),
        ]
    out = []
    for i, e in enumerate(evs):
        e.seq = i
        out.append(e.to_dict())
    return out


def test_folds_a_run() -> None:
    st = state_from_events(run_events())
    head = st.head
    assert head["status"] == "ended" and head["stop_reason"] == "completed"
    assert head["answer"] == "Done" and head["tool_calls"] == 1
    assert st.step_view(1)["reasoning"] == "Let me think."
    assert st.steps[1]["tokens"] == 5 and st.steps[1]["tokens_exact"]
    card = st.cards["c1"]
    assert card["status"] == "done" and card["code"] == "print(1)" and card["output"] == "2\n"
    assert st.steps[1]["calls"] == ["c1"]


def test_edit_and_reject_are_recorded_as_such() -> None:
    edited = state_from_events(run_events(decision="edit")).cards["c1"]
    assert edited["decision"] == "edit" and edited["edited_code"] == "print(2)"
    assert edited["code"] == "print(1)"  # what the model proposed stays visible
    rejected = state_from_events(run_events(decision="reject")).cards["c1"]
    assert rejected["status"] == "rejected" and rejected["feedback"] == "not that"


def test_stop_marks_undecided_calls_not_run() -> None:
    st = state_from_events(run_events(stop=True))
    assert st.cards["c1"]["status"] == "not_run" and st.head["stop_reason"] == "stopped"


def test_a_stop_that_answers_the_open_call_marks_it_not_run() -> None:
    evs = run_events(stop=True)
    end = evs.pop()
    evs.append(
        ToolResult(call_id="c1", name="python", ok=False, output="[not run: stopped]").to_dict()
    )
    evs.append(end)
    st = state_from_events(evs)
    assert st.cards["c1"]["status"] == "not_run"


def test_pending_calls() -> None:
    st = TraceState()
    for ev in run_events()[:7]:
        st.apply(ev)
    assert st.pending_calls() == ["c1"]


def test_patches_carry_only_appends() -> None:
    evs = run_events()
    st = TraceState()
    for ev in evs[:3]:  # run.start, step.start, first reasoning delta
        st.apply(ev)
    p1 = st.take_patch()
    assert p1 is not None and p1["head"] is not None
    assert p1["steps"][0]["reasoning_from"] == 0 and p1["steps"][0]["reasoning_add"] == "Let me "
    assert st.take_patch() is None  # nothing changed since
    st.apply(evs[3])
    p2 = st.take_patch()
    assert p2 is not None and p2["head"] is None  # the head did not change
    assert p2["steps"][0]["reasoning_from"] == 7 and p2["steps"][0]["reasoning_add"] == "think."
    # a snapshot is complete and resets the append bookkeeping
    for ev in evs[4:]:
        st.apply(ev)
    snap = st.snapshot()
    assert snap["kind"] == "snapshot" and snap["cards"][0]["call_id"] == "c1"
    assert st.take_patch() is None
    json.dumps(snap)  # JSON-able, as the widget sends it


def test_replayed_text_is_resent_whole_after_step_end() -> None:
    st = TraceState()
    evs = run_events()
    for ev in evs[:4]:
        st.apply(ev)
    st.take_patch()
    st.apply(evs[5])  # step.end replaces the streamed text with the assembled message
    p = st.take_patch()
    assert p is not None and p["steps"][0]["reasoning_from"] == 0
    assert p["steps"][0]["reasoning_add"] == "Let me think."


def test_code_and_arguments_round_trip() -> None:
    args = json.dumps({"code": "x = 'é'\nprint(x)"})
    assert code_of("python", args) == "x = 'é'\nprint(x)"
    assert json.loads(arguments_for("python", code_of("python", args))) == json.loads(args)
    assert code_of("python", "{not json") == "{not json"
    other = json.dumps({"path": "a.txt"})
    assert json.loads(code_of("read_file", other)) == {"path": "a.txt"}
    assert arguments_for("read_file", '{"path": "b"}') == '{"path": "b"}'


def test_edit_note_is_hidden_from_people() -> None:
    evs = run_events(decision="edit")
    res = next(e for e in evs if e["type"] == "tool.result")
    res["output"] = '[The user edited the arguments before running: {"code": "print(2)"}]\n2\n'
    st = state_from_events(evs)
    assert st.cards["c1"]["output"] == "2\n"


def test_text_since_returns_exactly_what_was_added() -> None:
    from k2lab.widgets.state import Text

    t = Text("ab")
    for piece in ("c", "de", "", "fgh"):
        t.append(piece)
    whole = "abcdefgh"
    assert str(t) == whole  # collapses the parts
    for k in range(len(whole) + 2):
        assert t.since(k) == whole[k:]
    t.append("ij")
    t.append("k")
    for k in range(len(whole) + 5):
        assert t.since(k) == (whole + "ijk")[k:]


# -- one vocabulary with RunView (issue 9) ------------------------------------------------------


def test_step_restart_is_not_shown_twice_in_the_widget() -> None:
    """The golden cut-stream trace: before step.end the widget shows the restarted stream once,
    as RunView does, and a patch after the restart starts the text again from 0."""
    from k2lab.trace.view import view_of
    from tests.trace.test_runview import events_of

    events = events_of("step_restart")
    end = next(i for i, e in enumerate(events) if e["type"] == "step.end")
    st = TraceState()
    cut = next(i for i, e in enumerate(events) if e.get("kind") == "step_restart")
    for ev in events[:cut]:
        st.apply(ev)
    assert st.take_patch()["steps"][0]["reasoning_add"] == "Let me "  # type: ignore[index]
    for ev in events[cut:end]:
        st.apply(ev)
    live = str(st.steps[1]["reasoning"])
    assert live == view_of(events[:end]).to_dict()["runs"][0]["steps"][0]["reasoning"]
    assert not live.startswith("Let me Let me")
    p = st.take_patch()
    assert p is not None and p["steps"][0]["reasoning_from"] == 0
    assert p["steps"][0]["reasoning_add"] == live


def test_retry_reads_attempt_of_max_as_runview() -> None:
    from k2lab.trace.view import retry_text, view_of
    from tests.trace.test_runview import events_of

    events = events_of("retries")
    st = state_from_events(events)
    texts = [m["text"] for m in st.head["messages"] if m["kind"] == "retry"]
    view = view_of(events).to_dict()["runs"][0]
    assert texts and texts == ["Retrying: " + retry_text(r) for r in view["retries"]]
    assert "attempt 2 of" in texts[0]
