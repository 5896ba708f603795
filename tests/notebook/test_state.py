"""The view's state model, from synthetic events (pure: no kernel, no frontend)."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
from k2lab.trace.state import TraceState, arguments_for, code_of, state_from_events
from tests.trace.test_runview import GOLDEN


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
    assert st.steps[1]["tokens"] == 5  # the usage's reasoning tokens
    card = st.cards["c1"]
    assert card["status"] == "done" and card["code"] == "print(1)" and card["output"] == "2\n"
    assert (card["decision"], card["label"]) == ("approve", "approved, ran")
    assert st.steps[1]["calls"] == ["c1"]


def test_edit_and_reject_are_recorded_as_such() -> None:
    edited = state_from_events(run_events(decision="edit")).cards["c1"]
    assert edited["decision"] == "edit" and edited["edited_code"] == "print(2)"
    assert edited["code"] == "print(1)"  # what the model proposed stays visible
    assert edited["label"] == "edited, ran"
    rejected = state_from_events(run_events(decision="reject")).cards["c1"]
    assert rejected["status"] == "rejected" and rejected["feedback"] == "not that"
    assert rejected["label"] == "rejected"


def test_stop_marks_undecided_calls_not_run() -> None:
    st = state_from_events(run_events(stop=True))
    assert st.cards["c1"]["status"] == "not_run" and st.head["stop_reason"] == "stopped"
    assert (st.cards["c1"]["decision"], st.cards["c1"]["label"]) == ("stop", "not run (stopped)")


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
    """Today's traces: the edit is ``tool.result.edited`` and the output the tool's own; older
    traces hold the note inside the output (RunView's one legacy read cuts it)."""
    evs = run_events(decision="edit")
    res = next(e for e in evs if e["type"] == "tool.result")
    res["edited"] = True
    assert state_from_events(evs).cards["c1"]["output"] == "2\n"
    del res["edited"]
    res["output"] = '[The user edited the arguments before running: {"code": "print(2)"}]\n2\n'
    assert state_from_events(evs).cards["c1"]["output"] == "2\n"


def test_text_since_returns_exactly_what_was_added() -> None:
    from k2lab.trace.state import Text

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


# -- heavy lanes and the verify pass (issue 12), read from the one fold ------------------------


def heavy_events(*, verify_outcome: str = "verified") -> list[dict[str, Any]]:
    """Two lanes interleaved, each proposing the same call id (Kimi's ids repeat), lane 2
    stopped; then the aggregation, checked by a verify round that ran one call."""
    args = json.dumps({"code": "print(4 * 0.785)"})
    evs: list[dict[str, Any]] = []
    for lane in ("1", "2"):
        evs.append(
            {
                "type": "run.start",
                "lane": lane,
                "run_id": f"h1.{lane}",
                "prompt": "estimate pi",
                "model": "m",
                "model_label": "demo",
                "policy": "auto",
                "isolation": "bwrap",
                "max_steps": 10,
                "ts": 100.0,
            }
        )
    for lane in ("1", "2"):
        evs += [
            {"type": "step.start", "lane": lane, "step": 1, "ts": 100.1},
            {"type": "reasoning.delta", "lane": lane, "step": 1, "text": f"lane {lane} thinks"},
            {
                "type": "usage",
                "lane": lane,
                "step": 1,
                "prompt_tokens": 100,
                "completion_tokens": 10,
            },
            {
                "type": "step.end",
                "lane": lane,
                "step": 1,
                "reasoning": f"lane {lane} thinks",
                "content": "",
                "tool_calls": [{"id": "functions.python:0"}],
            },
            {
                "type": "tool.proposed",
                "lane": lane,
                "run_id": f"h1.{lane}",
                "step": 1,
                "call_id": "functions.python:0",
                "name": "python",
                "arguments": args,
            },
        ]
    evs += [
        {
            "type": "tool.decision",
            "lane": "1",
            "run_id": "h1.1",
            "call_id": "functions.python:0",
            "decision": "approve",
            "by": "policy",
        },
        {
            "type": "tool.result",
            "lane": "1",
            "run_id": "h1.1",
            "call_id": "functions.python:0",
            "ok": True,
            "output": "3.14\n",
        },
        {
            "type": "run.end",
            "lane": "1",
            "stop_reason": "completed",
            "answer": "pi ~ 3.14",
            "steps": 1,
            "tool_calls": 1,
            "prompt_tokens": 100,
            "completion_tokens": 10,
        },
        {
            "type": "run.end",
            "lane": "2",
            "stop_reason": "stopped",
            "answer": "",
            "steps": 1,
            "tool_calls": 1,
        },
        {
            "type": "run.start",
            "lane": "aggregate",
            "run_id": "h1.aggregate",
            "prompt": "Task given to 2 independent lanes",
            "model": "m",
            "policy": "auto",
            "isolation": "none",
            "max_steps": 3,
            "ts": 101.0,
        },
        {"type": "step.start", "lane": "aggregate", "step": 1},
        {"type": "reasoning.delta", "lane": "aggregate", "step": 1, "text": "Lane 1 finished."},
        {"type": "content.delta", "lane": "aggregate", "step": 1, "text": "pi ~ 3.14 (lane 1)"},
        {
            "type": "usage",
            "lane": "aggregate",
            "step": 1,
            "prompt_tokens": 50,
            "completion_tokens": 5,
        },
        {
            "type": "step.end",
            "lane": "aggregate",
            "step": 1,
            "reasoning": "Lane 1 finished.",
            "content": "pi ~ 3.14 (lane 1)",
            "tool_calls": [],
        },
        {
            "type": "verify.start",
            "lane": "aggregate",
            "run_id": "h1.aggregate",
            "round": 1,
            "max_rounds": 1,
            "prompt": "check it",
        },
        {
            "type": "verify.end",
            "lane": "aggregate",
            "run_id": "h1.aggregate",
            "round": 1,
            "verdict": "holds",
            "outcome": verify_outcome,
            "summary": "math.pi agrees",
            "reason": "",
            "checks": [
                {
                    "call_id": "c9",
                    "name": "python",
                    "arguments": json.dumps({"code": "import math"}),
                    "output": "3.14159",
                }
            ],
        },
        {
            "type": "run.end",
            "lane": "aggregate",
            "stop_reason": "completed",
            "answer": "pi ~ 3.14 (lane 1)",
            "steps": 1,
            "tool_calls": 0,
            "prompt_tokens": 50,
            "completion_tokens": 5,
            "elapsed": 0.1,
            "ts": 103.0,
        },
    ]
    return evs


def test_lanes_are_folded_apart_and_summed_into_the_head() -> None:
    st = state_from_events(heavy_events())
    snap = st.snapshot()
    head = snap["head"]
    assert head["heavy"] and head["run_id"] == "h1" and head["prompt"] == "estimate pi"
    assert head["status"] == "ended" and head["answer"] == "pi ~ 3.14 (lane 1)"
    # the same call id in two lanes is two calls, each in its lane, none among the main cards
    lanes = {ln["lane"]: ln for ln in snap["lanes"]}
    assert set(lanes) == {"1", "2"} and snap["cards"] == []
    one, two = lanes["1"]["steps"][0]["calls"][0], lanes["2"]["steps"][0]["calls"][0]
    assert one["status"] == "done" and one["output"] == "3.14\n" and "4 * 0.785" in one["code"]
    assert two["status"] == "not_run" and lanes["2"]["stop_reason"] == "stopped"
    assert lanes["1"]["steps"][0]["reasoning"] == "lane 1 thinks"
    # the head's tokens are every lane's plus the aggregation's, its clock the whole run's
    assert head["prompt_tokens"] == 250 and head["completion_tokens"] == 25
    assert head["tool_calls"] == 2 and head["elapsed"] == 3.0
    assert head["lanes_note"] == "2 lanes · finished: 1 · did not finish: 2 (stopped)"
    # the aggregation is the main step (its prompt is k2lab's, not shown as the person's)
    assert [s["reasoning"] for s in snap["steps"]] == ["Lane 1 finished."]


def test_lane_patches_carry_only_the_lanes_that_changed() -> None:
    evs = heavy_events()
    st = TraceState()
    for ev in evs[:7]:  # both run.starts, lane 1's first step
        st.apply(ev)
    st.take_patch()
    st.apply(evs[7])  # lane 2's step.start
    p = st.take_patch()
    assert p is not None and [ln["lane"] for ln in p["lanes"]] == ["2"]


def test_verify_outcome_and_checks_reach_the_view_and_fallbacks() -> None:
    from k2lab.trace.render import render_html, render_markdown

    for outcome, words in (("verified", "verified"), ("unverified", "could not verify")):
        snap = state_from_events(heavy_events(verify_outcome=outcome)).snapshot()
        v = snap["head"]["verify"]
        assert v["outcome"] == outcome and v["text"] == words
        assert v["rounds"][0]["checks"] == [
            {"name": "python", "code": "import math", "output": "3.14159"}
        ]
        md = render_markdown(snap)
        assert f"**Verify: {words} (1 round, 1 check run)**" in md
        assert "**Lane 2 · stopped · step 1 · 1 tool call · 110 tokens**" in md
        page = render_html(snap)
        assert f'data-outcome="{outcome}"' in page and 'data-lane="1"' in page


def test_a_run_without_verify_or_lanes_has_neither() -> None:
    snap = state_from_events(run_events()).snapshot()
    assert snap["head"]["verify"] is None and snap["lanes"] == [] and not snap["head"]["heavy"]


def test_a_lane_patch_sends_only_its_changed_steps() -> None:
    """A patch's cost is what changed: a long lane's earlier steps are not sent again."""
    evs = heavy_events()
    st = TraceState()
    for ev in evs[:7]:
        st.apply(ev)
    st.take_patch()
    st.apply({"type": "step.start", "lane": "1", "step": 2})
    st.apply({"type": "reasoning.delta", "lane": "1", "step": 2, "text": "next"})
    p = st.take_patch()
    assert p is not None
    (lane,) = p["lanes"]
    assert lane["partial"] and [s["step"] for s in lane["steps"]] == [2]
    assert lane["steps"][0]["reasoning"] == "next" and lane["n_steps"] == 2
    # the snapshot (a view that just opened) has every recent step
    assert [s["step"] for s in st.snapshot()["lanes"][0]["steps"]] == [1, 2]


def test_a_forks_replayed_first_step_has_no_negative_time_or_zero_tokens() -> None:
    """A fork's first step is the parent's recorded message, replayed: no request, no usage, no
    deltas, a step.end stamped before its step.start (issue 11: it read "~0 tokens · -11 ms")."""
    from k2lab.trace.render import render_html

    evs = [e for e in run_events() if e["type"] not in ("reasoning.delta", "usage")]
    start = next(e for e in evs if e["type"] == "step.start" and e["step"] == 1)
    end = next(e for e in evs if e["type"] == "step.end" and e["step"] == 1)
    start["ts"], end["ts"], end["duration"] = 100.0, 99.989, 0.0
    st = state_from_events(evs)
    assert st.steps[1]["duration"] == 0.0 and st.steps[1]["tokens"] is None
    html = render_html(st.snapshot())
    assert "Step 1 · reasoning · 0 ms" in html
    assert "None" not in html and "~0 tokens" not in html and "-11 ms" not in html


def test_the_demo_flag_is_run_starts_field_not_the_label() -> None:
    evs = run_events()
    assert state_from_events(evs).head["demo"] is False  # label says demo, field does not
    evs[0]["demo"] = True
    assert state_from_events(evs).head["demo"] is True


def test_head_patches_leave_out_an_unchanged_prompt() -> None:
    """The prompt goes once (snapshot or first patch), not with every later head patch: a
    21,000-character %%k2 prompt went with every tick and streamed piece."""
    evs = run_events()
    evs[0]["prompt"] = "p" * 21_000
    st = TraceState()
    st.apply(evs[0])
    first = st.take_patch()
    assert first is not None and first["head"]["prompt"] == "p" * 21_000
    for e in evs[1:4]:
        st.apply(e)
    later = st.take_patch()
    assert later is not None and later["head"] is not None and "prompt" not in later["head"]
    st.snapshot()
    st.apply(evs[4])
    after_snapshot = st.take_patch()
    assert after_snapshot is not None
    assert after_snapshot["head"] is None or "prompt" not in after_snapshot["head"]


# -- a thin layer over RunView: the same facts, the same words (issue 9) ------------------------


@pytest.mark.parametrize("name", GOLDEN)
def test_the_widget_shows_runviews_facts_for_every_golden_trace(name: str) -> None:
    """Each card and step of the widget's state is the fold's: status, decision, reason, the
    one label (``call_label``), what ran, the output people read; steps' texts, tokens (the
    usage's, never counted pieces), restarts; the head's answer and totals."""
    from k2lab.trace.view import call_label, step_tokens, view_of
    from tests.trace.test_runview import events_of

    events = events_of(name)
    st = state_from_events(events)
    view = view_of(events)
    main = [r for r in view.runs if r.lane in ("", "aggregate")]
    if not main:
        return
    run = main[-1]
    cards = st.cards
    assert list(cards) == list(run.calls)
    for cid, c in run.calls.items():
        card = cards[cid]
        assert (card["status"], card["decision"], card["reason"]) == (
            c.status,
            c.decision,
            c.reason,
        )
        assert card["label"] == call_label(c) and card["executed"] == c.executed
        if c.result is not None:
            want = c.result["people_output"] or c.result["shown_output"]
            assert card["output"] == want
    for n, step in run.steps.items():
        mine = st.step_view(n)
        assert (mine["reasoning"], mine["content"]) == (str(step.reasoning), str(step.content))
        assert mine["tokens"] == step_tokens(step) and mine["restarts"] == step.restarts
    assert st.head["answer"] == run.answer
    assert st.head["prompt_tokens"] == sum(r.totals["prompt_tokens"] for r in view.runs)


def test_call_labels_are_one_vocabulary() -> None:
    """What the old faces disagreed on ("approved"/"approved, running", "not run (stopped)"/
    "not run (run ended)", "edited, then run"/"edited & run"/"edited, running"): one wording
    from the fold's state (the TS ``callLabel`` is checked against the same golden labels)."""
    from k2lab.trace.view import call_label, view_of
    from tests.trace.test_runview import events_of

    labels = {
        (name, c.call_id): call_label(c)
        for name in GOLDEN
        for c in view_of(events_of(name)).all_calls()
    }
    assert labels[("approved", "functions.python:0")] == "approved, ran"
    assert labels[("edited", "functions.python:0")] == "edited, ran"
    assert labels[("rejected", "functions.python:0")] == "rejected"
    assert labels[("stopped_waiting", "functions.python:1")] == "not run (stopped)"
    assert set(labels.values()) <= {
        "waiting for you",
        "approved, running",
        "edited, running",
        "approved, ran",
        "edited, ran",
        "approved, ran with an error",
        "edited, ran with an error",
        "rejected",
        "not run (invalid call)",
        "not run (invalid edit)",
        "not run (no result)",
        "not run (stopped)",
        "not run (wall time)",
    }


def test_the_fallbacks_say_the_cards_label() -> None:
    from k2lab.trace.render import render_html, render_markdown

    snap = state_from_events(run_events(decision="edit")).snapshot()
    assert "edited, ran by user" in render_html(snap)
    assert "**Tool call** `python` (edited, ran)" in render_markdown(snap)
    snap = state_from_events(run_events(stop=True)).snapshot()
    assert "not run (stopped)" in render_html(snap)


def _with_tool(name: str, replayable: list[str] | None) -> list[dict[str, Any]]:
    """``run_events`` whose one call is of tool ``name``; run.start lists ``replayable``."""
    evs = run_events()
    for e in evs:
        if e["type"] == "run.start":
            if replayable is None:
                e.pop("replayable", None)
            else:
                e["replayable"] = replayable
        if e["type"] in ("tool.proposed", "tool.result"):
            e["name"] = name
        if e["type"] == "step.end" and e["tool_calls"]:
            e["tool_calls"][0]["name"] = name
    return evs


@pytest.mark.parametrize(
    ("name", "replayable", "want"),
    [
        ("python", None, True),  # an older trace: python calls replay, as before
        ("mcp__db__query", None, False),
        ("mcp__db__query", ["python", "mcp__db__query"], True),  # read-only MCP tool
        ("notebook_insert_cell", ["python"], False),  # acts on the notebook: never again
    ],
)
def test_a_card_is_replayable_only_when_its_tool_is(
    name: str, replayable: list[str] | None, want: bool
) -> None:
    card = state_from_events(_with_tool(name, replayable)).cards["c1"]
    assert card["replayable"] is want


def test_run_start_lists_the_tools_that_can_be_replayed() -> None:
    """The registry names the tools flagged ``replayable``: python, not the notebook tools."""
    from k2lab.tools.notebook import notebook_tools
    from k2lab.tools.python import PythonTool
    from k2lab.tools.registry import ToolRegistry

    reg = ToolRegistry([PythonTool(None), *notebook_tools(None)])  # type: ignore[arg-type]
    assert "notebook_insert_cell" in reg.names
    assert reg.replayable_names == ["python"]


def test_each_lane_shows_its_cost_where_the_preset_knows_prices() -> None:
    """Issue 12: tokens and, where known, cost per lane (and in total, the head's status line)."""
    from k2lab.trace.view import cost_text

    evs = heavy_events()
    assert all(ln["cost"] == "" for ln in state_from_events(evs).snapshot()["lanes"])  # no prices
    for e in evs:
        if e["type"] == "run.start":
            e["prices"] = [0.6, 0.15, 2.5]
    snap = state_from_events(evs).snapshot()
    for ln in snap["lanes"]:
        want = cost_text(
            {"prompt_tokens": ln["prompt_tokens"], "completion_tokens": ln["completion_tokens"]},
            [0.6, 0.15, 2.5],
        )
        assert ln["cost"] == want and want.startswith("≈ $"), ln
