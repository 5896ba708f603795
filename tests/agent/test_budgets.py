"""Budgets you can see (issue 12): run.start carries the budgets and the context window, the one
fold (k2lab.trace.view) keeps them and the latest request's prompt tokens, and the faces say
"step n/max", "out/max_total_tokens", "elapsed of wall time", "ctx 41% of 262k" and, when a budget
ends the run, which one ("budget: wall time 60 s")."""

from __future__ import annotations

import io
from typing import Any

from k2lab.agent.loop import Budgets
from k2lab.cli.progress import Progress
from k2lab.trace.render import status_line
from k2lab.trace.state import state_from_events
from k2lab.trace.view import budget_stop_text, budgets_of, context_gauge, short_count, view_of
from tests.agent.helpers import make_agent, of_type, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn


def tool_turn(code: str, **kw: Any) -> Turn:
    return Turn(reasoning="work", tool_calls=[Call("python", {"code": code})], **kw)


def test_the_wording_of_budgets_and_the_gauge() -> None:
    assert short_count(262_144) == "262k" and short_count(1_500_000) == "1.5M"
    assert short_count(950) == "950" and short_count(2000) == "2k"
    assert context_gauge(107_479, 262_144) == "ctx 41% of 262k"
    assert context_gauge(0, 262_144) == "" and context_gauge(10, 0) == ""
    b = budgets_of({"wall_time": 60, "max_total_tokens": 5000, "context_window": 262_144})
    assert budget_stop_text("wall_time", b) == "budget: wall time 60 s"
    assert budget_stop_text("tokens", b) == "budget: 5000 completion tokens"
    assert budget_stop_text("max_steps", b, 300) == "budget: 300 steps"
    assert budget_stop_text("completed", b) == "completed"


def test_an_old_trace_without_budgets_reads_as_unknown() -> None:
    b = budgets_of({"type": "run.start", "run_id": "r"})
    assert b == {
        "wall_time": None,
        "max_total_tokens": None,
        "max_tokens": None,
        "context_window": 0,
        "prices": None,
    }
    bad = budgets_of({"wall_time": "soon", "max_tokens": 1.5, "context_window": -3})
    assert bad == b
    head = {"step": 2, "max_steps": 300, "model": "m", "prompt_tokens": 10, "completion_tokens": 5}
    line = status_line(head, 2)
    assert "ctx" not in line and "10 in / 5 out tokens" in line and " of " not in line


async def test_run_start_carries_budgets_and_every_face_shows_them(fake_model: FakeModel) -> None:
    fake_model.script(
        [
            tool_turn("one()", prompt_tokens=50_000, completion_tokens=40),
            Turn(content="done", prompt_tokens=107_479, completion_tokens=30),
        ]
    )
    budgets = Budgets(max_steps=20, wall_time=60.0, max_total_tokens=5000, context_window=262_144)
    agent, _ = make_agent(fake_model, budgets=budgets)
    events = await run_all(agent, "go")
    start = of_type(events, "run.start")[0]
    assert (start.wall_time, start.max_total_tokens, start.context_window) == (60.0, 5000, 262_144)
    assert start.max_tokens == 32_768  # the provider's per-request max_tokens (default)
    dicts = [e.to_dict() for e in events]

    run = view_of(dicts).runs[0]
    assert run.budgets["wall_time"] == 60.0 and run.last_prompt_tokens == 107_479

    # the widget / saved-trace status line
    st = state_from_events(dicts)
    line = status_line(st.head, len(st.steps))
    assert "step 2/20" in line
    assert "/5000 out tokens" in line and f"(max {start.max_tokens}/request)" in line
    assert "ctx 41% of 262k" in line
    assert " of 1 min" in line or " of 60" in line, line

    # the CLI progress
    out = io.StringIO()
    p = Progress(out, enabled=True, color=False)
    for ev in events:
        p.show(ev)
    text = out.getvalue()
    assert "ctx 41% of 262k" in text and "wall time 60 s" in text and "5000" in text, text


async def test_a_budget_stop_names_the_budget(fake_model: FakeModel) -> None:
    fake_model.script([tool_turn("one()", completion_tokens=600), Turn(content="never")])
    agent, _ = make_agent(fake_model, budgets=Budgets(max_total_tokens=500))
    events = await run_all(agent, "go")
    end = of_type(events, "run.end")[0]
    assert end.stop_reason == "tokens"
    dicts = [e.to_dict() for e in events]
    st = state_from_events(dicts)
    line = status_line(st.head, len(st.steps))
    assert line.startswith("ended: budget: 500 completion tokens"), line
    out = io.StringIO()
    p = Progress(out, enabled=True, color=False)
    for ev in events:
        p.show(ev)
    assert "budget: 500 completion tokens" in out.getvalue(), out.getvalue()


def test_the_context_share_is_configurable_and_checked() -> None:
    from k2lab.config import K2Lab, resolve_settings

    assert resolve_settings(environ={}).context_share == 0.85
    assert resolve_settings(environ={"K2LAB_CONTEXT_SHARE": "0.5"}).context_share == 0.5
    cfg = K2Lab(context_share=0.6, context_window=128_000)
    s = resolve_settings(config=cfg, environ={})
    assert (s.context_share, s.context_window) == (0.6, 128_000)
    for bad in ("0", "1.5"):
        try:
            resolve_settings(environ={"K2LAB_CONTEXT_SHARE": bad})
        except ValueError as e:
            assert "context_share" in str(e)
        else:
            raise AssertionError(f"{bad} was accepted")


async def test_a_compaction_is_an_event_every_face_shows(fake_model: FakeModel) -> None:
    fake_model.script(
        [
            tool_turn("one()", prompt_tokens=100),
            tool_turn("two()", prompt_tokens=700),
            Turn(content="done", prompt_tokens=100),
        ]
    )
    agent, _ = make_agent(fake_model, budgets=Budgets(context_window=1000, compact_at=0.6))
    events = await run_all(agent, "go")
    notes = [n for n in of_type(events, "notice") if n.kind == "compaction"]
    assert len(notes) == 1
    assert "70% of the 1000-token window, over the 60% share" in notes[0].message
    dicts = [e.to_dict() for e in events]
    st = state_from_events(dicts)
    assert any(m["kind"] == "compaction" for m in st.head["messages"])
    out = io.StringIO()
    p = Progress(out, enabled=True, color=False)
    for ev in events:
        p.show(ev)
    assert "note: Context at 700 tokens (70%" in out.getvalue()


def test_cost_at_moonshots_published_prices_and_none_where_unknown() -> None:
    from k2lab.providers.presets import prices_for
    from k2lab.trace.view import cost_text

    assert prices_for("https://api.moonshot.ai/v1", "kimi-k2-thinking") == (0.60, 0.15, 2.50)
    assert prices_for("", "kimi-k2-thinking-turbo") == (1.15, 0.15, 8.00)
    assert prices_for("https://api.moonshot.cn/v1", "kimi-k2-thinking") is None  # CNY there
    assert prices_for("http://localhost:8000/v1", "moonshotai/Kimi-K2-Thinking") is None
    totals = {"prompt_tokens": 1_000_000, "cached_tokens": 400_000, "completion_tokens": 100_000}
    assert cost_text(totals, [0.6, 0.15, 2.5]) == "≈ $0.6700"
    assert cost_text(totals, None) == ""
    b = budgets_of({"prices": [0.6, 0.15, 2.5]})
    head = {"step": 1, "max_steps": 9, "model": "m", "budgets": b, **totals}
    assert "≈ $0.6700" in status_line(head, 1)
    assert "$" not in status_line({**head, "budgets": budgets_of({})}, 1)
    assert budgets_of({"prices": [1, "x", 2]})["prices"] is None


async def test_the_fake_server_has_no_price(fake_model: FakeModel) -> None:
    fake_model.script([Turn(content="done")])
    agent, _ = make_agent(fake_model)
    events = await run_all(agent, "go")
    assert of_type(events, "run.start")[0].prices is None
    st = state_from_events([e.to_dict() for e in events])
    assert "$" not in status_line(st.head, len(st.steps))
