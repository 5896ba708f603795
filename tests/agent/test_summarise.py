"""The summarising compaction (issue 12, "an optional summarising compaction for runs that pass
even that"): when the request right after hiding earlier tool outputs still passes the context
share, one tool-less request summarises the older messages and the next request carries the
summary instead of them. Off by default. All against the fake model server over HTTP."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from k2lab.agent.loop import Budgets
from k2lab.agent.summarise import SUMMARY_HEAD
from tests.agent.helpers import make_agent, of_type, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn

WINDOW = Budgets(context_window=1000, compact_at=0.6, summarise=True, summary_keep_steps=1)


def tool_turn(code: str, **kw: Any) -> Turn:
    return Turn(reasoning=f"work on {code}", tool_calls=[Call("python", {"code": code})], **kw)


def the_long_run(summary: Turn) -> list[Turn]:
    return [
        tool_turn("one()", prompt_tokens=100),
        tool_turn("two()", prompt_tokens=700),  # over 60%: earlier outputs hidden
        tool_turn("three()", prompt_tokens=700),  # still over after the hiding: summary due
        summary,
        Turn(content="done", prompt_tokens=200, completion_tokens=5),
    ]


def compactions(events: list[Any]) -> list[str]:
    return [n.message for n in of_type(events, "notice") if n.kind == "compaction"]


async def test_the_summary_replaces_the_older_messages_once(fake_model: FakeModel) -> None:
    summary = Turn(
        content="One and two ran; three is next.", prompt_tokens=300, completion_tokens=9
    )
    fake_model.script(the_long_run(summary))
    agent, tool = make_agent(fake_model, budgets=WINDOW)
    events = await run_all(agent, "go")
    end = of_type(events, "run.end")[0]
    assert end.stop_reason == "completed" and end.answer == "done"
    assert tool.calls == ["one()", "two()", "three()"]

    reqs = fake_model.requests
    assert len(reqs) == 5
    asked = [r for r in reqs if "tools" not in r]
    assert asked == [reqs[3]]  # one summary request, tool-less, with its own budget
    assert reqs[3]["max_tokens"] == 4096 and reqs[0]["max_tokens"] == 32_768
    text = reqs[3]["messages"][-1]["content"]
    assert "one()" in text and "two()" in text and "<task>\ngo\n</task>" in text
    assert "three()" not in text  # the last step is kept, not summarised

    after = reqs[4]["messages"]
    roles = [m["role"] for m in after]
    assert roles == ["system", "user", "user", "assistant", "tool"], roles
    assert after[1]["content"] == "go"
    assert after[2]["content"].startswith(SUMMARY_HEAD.format(n=4))
    assert after[2]["content"].endswith("One and two ran; three is next.")
    assert json.loads(after[3]["tool_calls"][0]["function"]["arguments"]) == {"code": "three()"}
    assert after[4]["tool_call_id"] == after[3]["tool_calls"][0]["id"]
    wire = json.dumps(after)
    assert "one()" not in wire and "two()" not in wire

    notes = compactions(events)
    assert len(notes) == 2  # the hiding, then the summary
    assert "hid 1 earlier tool outputs" in notes[0]
    assert "summarised 4 earlier messages into one summary of 31 characters" in notes[1]
    assert notes[1].endswith("Summary:\nOne and two ran; three is next.")
    # every face shows it: the notebook/saved-trace state and the CLI progress
    from k2lab.cli.progress import Progress
    from k2lab.trace.state import state_from_events

    st = state_from_events([e.to_dict() for e in events])
    shown = [m for m in st.head["messages"] if m["kind"] == "compaction"]
    assert len(shown) == 2 and "One and two ran" in str(shown[1])
    out = io.StringIO()
    p = Progress(out, enabled=True, color=False)
    for ev in events:
        p.show(ev)
    assert "summarised 4 earlier messages" in out.getvalue()
    # the summary request's tokens count toward the run's totals
    steps = sum(u.completion_tokens for u in of_type(events, "usage"))
    assert end.completion_tokens == steps + 9
    # the trace keeps every tool output in full
    outputs = [r.output for r in of_type(events, "tool.result")]
    assert outputs == ["ran: one()", "ran: two()", "ran: three()"]


async def test_a_failing_summary_is_a_notice_and_the_run_goes_on(fake_model: FakeModel) -> None:
    fake_model.script(the_long_run(Turn(status=400, error="no summaries today")))
    agent, _ = make_agent(fake_model, budgets=WINDOW, max_attempts=1)
    events = await run_all(agent, "go")
    end = of_type(events, "run.end")[0]
    assert end.stop_reason == "completed" and end.answer == "done"
    notes = compactions(events)
    assert len(notes) == 2 and "the summary request failed" in notes[1]
    assert "no summaries today" in notes[1] and "hidden only" in notes[1]
    after = fake_model.requests[4]["messages"]
    assert not any(SUMMARY_HEAD[:20] in str(m.get("content")) for m in after)
    assert len(after) == 8  # nothing replaced: system, go, three steps with their results
    assert not of_type(events, "error")


async def test_an_empty_summary_replaces_nothing(fake_model: FakeModel) -> None:
    fake_model.script(the_long_run(Turn(reasoning="hmm", content="", completion_tokens=4)))
    agent, _ = make_agent(fake_model, budgets=WINDOW)
    events = await run_all(agent, "go")
    assert of_type(events, "run.end")[0].answer == "done"
    notes = compactions(events)
    assert "the model returned no summary" in notes[1]
    assert len(fake_model.requests[4]["messages"]) == 8


async def test_off_by_default_means_no_summary_request(fake_model: FakeModel) -> None:
    turns = the_long_run(Turn(content="never"))
    fake_model.script([*turns[:3], turns[4]])
    agent, _ = make_agent(fake_model, budgets=Budgets(context_window=1000, compact_at=0.6))
    events = await run_all(agent, "go")
    assert of_type(events, "run.end")[0].answer == "done"
    assert all("tools" in r for r in fake_model.requests)
    assert len(fake_model.requests) == 4
    notes = compactions(events)
    assert len(notes) == 2 and all("hid 1 earlier tool outputs" in n for n in notes)  # hiding only
    assert not any("summar" in n for n in notes)


def test_the_setting_is_off_by_default_and_reaches_the_budgets() -> None:
    from k2lab.cli import _parser, _settings
    from k2lab.config import K2Lab, resolve_settings

    assert resolve_settings(environ={}).summarise_context is False
    assert resolve_settings(environ={"K2LAB_SUMMARISE_CONTEXT": "1"}).summarise_context is True
    s = resolve_settings(config=K2Lab(summarise_context=True), environ={})
    assert s.summarise_context is True
    assert Budgets().summarise is False
    args = _parser().parse_args(["run", "--summarise-context", "x"])
    assert args.summarise_context is True and _settings(args).summarise_context is True
    assert _parser().parse_args(["run", "x"]).summarise_context is None


def test_k2lab_run_summarise_context_reaches_the_engine(
    fake_model: FakeModel, tmp_path: Path
) -> None:
    """The CLI flag, through the settings and the runtime's budgets, in a real ``k2lab run``."""
    from tests.cli.conftest import _runner, json_events

    summary = Turn(content="Printed 0 and 1.", prompt_tokens=300, completion_tokens=6)
    turns = [
        Turn(tool_calls=[Call("python", {"code": f"print({i})"})], prompt_tokens=p)
        for i, p in enumerate((100, 700, 700))
    ]
    fake_model.script([*turns, summary, Turn(content="done")])
    run_cli = _runner(tmp_path)
    common = ("run", "--base-url", fake_model.base_url, "--isolation", "process")
    window = ("--approve", "auto", "--context-window", "1000", "--context-share", "0.6")
    r = run_cli(*common, *window, "--summarise-context", "--json", "go")
    assert r.returncode == 0, r.stderr
    notes = [e["message"] for e in json_events(r.stdout) if e["type"] == "notice"]
    assert any("summarised" in str(n) and "Printed 0 and 1." in str(n) for n in notes), notes
    assert [r for r in fake_model.requests if "tools" not in r] == [fake_model.requests[3]]
    assert "Printed 0 and 1." in json.dumps(fake_model.requests[4]["messages"])


def test_the_summary_budget_never_touches_the_shared_provider(fake_model: FakeModel) -> None:
    """Heavy lanes share one provider: the summary's max_tokens is a copy's; a fork's wrapper is
    looked through (no recursion through its ``__getattr__``, no replayed step)."""
    from k2lab.agent.fork import ForkProvider
    from k2lab.agent.summarise import provider_with_budget
    from k2lab.events import StepEnd
    from k2lab.providers.openai_compat import OpenAICompatProvider

    p = OpenAICompatProvider(base_url=fake_model.base_url, api_key="k", model="m")
    own = provider_with_budget(p, 4096)
    assert own is not p and own.max_tokens == 4096 and p.max_tokens == 32_768  # type: ignore[attr-defined]
    fork = ForkProvider(p, StepEnd(step=1, content="replayed", reasoning=""))
    via = provider_with_budget(fork, 4096)
    assert isinstance(via, OpenAICompatProvider) and via.max_tokens == 4096
    assert p.max_tokens == 32_768
