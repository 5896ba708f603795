"""The agent loop's control paths over real HTTP: stop, budgets, compaction, provider failures."""

from __future__ import annotations

import asyncio
import time

from k2lab.agent.context import HIDDEN_OUTPUT
from k2lab.agent.decisions import PendingDecisions
from k2lab.agent.loop import STOPPED_BEFORE_RUN, STOPPED_WHILE_RUNNING, Budgets
from k2lab.events import Event
from tests.agent.helpers import check_history, make_agent, of_type, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn


def tool_turn(code: str = "step()", **kw) -> Turn:
    return Turn(reasoning="more work", tool_calls=[Call("python", {"code": code})], **kw)


async def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_stop_mid_stream_keeps_the_trace_and_the_next_run_works(fake_model: FakeModel):
    fake_model.script([Turn(reasoning="x" * 400, chunk=4, stall_after=5)])
    agent, _ = make_agent(fake_model)

    def on_event(ev: Event) -> None:
        if ev.type == "reasoning.delta":
            agent.stop()

    events = await run_all(agent, "first", on_event)
    end = events[-1]
    assert end.stop_reason == "stopped" and end.steps == 1
    assert of_type(events, "reasoning.delta")  # the partial trace is kept
    assert not agent.running
    # the HTTP response was closed, so the server saw the client go away
    await wait_for(lambda: len(fake_model.server_time) == 1)

    fake_model.script([Turn(content="hello again")])
    events2 = await run_all(agent, "second")
    assert events2[-1].stop_reason == "completed" and events2[-1].answer == "hello again"
    msgs = fake_model.requests[-1]["messages"]
    check_history(msgs)
    assert [m["role"] for m in msgs] == ["system", "user", "user"]


async def test_stop_right_at_run_start_still_ends_the_run(fake_model: FakeModel):
    fake_model.script([Turn(content="never read")])
    agent, _ = make_agent(fake_model)

    def on_event(ev: Event) -> None:
        if ev.type == "run.start":
            agent.stop()

    events = await run_all(agent, "stop now", on_event)
    assert events[-1].stop_reason == "stopped"
    fake_model.script([Turn(content="ok")])
    assert (await run_all(agent, "again"))[-1].stop_reason == "completed"


async def test_stop_while_waiting_for_a_decision(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(
                reasoning="two",
                tool_calls=[Call("python", {"code": "a"}), Call("python", {"code": "b"})],
            )
        ]
    )
    decisions = PendingDecisions()
    agent, tool = make_agent(fake_model, decisions)

    async def on_event(ev: Event) -> None:
        if ev.type == "tool.proposed":
            await wait_for(lambda: ev.call_id in decisions.pending)
            agent.stop()

    events = await run_all(agent, "go", on_event)
    assert events[-1].stop_reason == "stopped"
    # the proposed card is closed by a tool.result; the never-proposed second call is not shown
    assert [e.type for e in events[-4:]] == ["step.end", "tool.proposed", "tool.result", "run.end"]
    assert events[-2].output == STOPPED_BEFORE_RUN
    assert tool.calls == [] and decisions.pending == []

    fake_model.script([Turn(content="fine")])
    events2 = await run_all(agent, "continue")
    assert events2[-1].stop_reason == "completed"
    msgs = fake_model.requests[-1]["messages"]
    check_history(msgs)
    assert [m["content"] for m in msgs if m["role"] == "tool"] == [STOPPED_BEFORE_RUN] * 2


async def test_stop_while_a_tool_runs(fake_model: FakeModel):
    fake_model.script([tool_turn("sleep()")])
    agent, tool = make_agent(fake_model)

    async def on_event(ev: Event) -> None:
        if ev.type == "tool.decision":
            await asyncio.wait_for(tool.started.wait(), 5)
            agent.stop()

    events = await run_all(agent, "go", on_event)
    assert events[-1].stop_reason == "stopped" and tool.calls == ["sleep()"]
    fake_model.script([Turn(content="ok")])
    await run_all(agent, "next")
    msgs = fake_model.requests[-1]["messages"]
    check_history(msgs)
    stopped = [m["content"] for m in msgs if m["role"] == "tool"]
    assert stopped == [STOPPED_WHILE_RUNNING]


async def test_max_steps(fake_model: FakeModel):
    fake_model.respond_with(lambda body, i: tool_turn(f"step{i}()"))
    agent, tool = make_agent(fake_model, budgets=Budgets(max_steps=3))
    events = await run_all(agent, "loop forever")
    end = events[-1]
    assert (end.stop_reason, end.steps, end.tool_calls) == ("max_steps", 3, 3)
    assert tool.calls == ["step0()", "step1()", "step2()"]
    assert len(fake_model.requests) == 3


async def test_token_budget(fake_model: FakeModel):
    fake_model.respond_with(lambda body, i: tool_turn(completion_tokens=600))
    agent, _ = make_agent(fake_model, budgets=Budgets(max_total_tokens=1000))
    end = (await run_all(agent, "go"))[-1]
    assert (end.stop_reason, end.steps, end.completion_tokens) == ("tokens", 2, 1200)


async def test_compaction_hides_old_tool_outputs_in_one_batch(fake_model: FakeModel):
    # prompt_tokens 100 per step until the third, which reports 600 of a 1000 window (> 0.5)
    fake_model.script(
        [
            tool_turn("one()", prompt_tokens=100),
            tool_turn("two()", prompt_tokens=100),
            tool_turn("three()", prompt_tokens=600),
            Turn(content="done", prompt_tokens=100),
        ]
    )
    agent, _ = make_agent(fake_model, budgets=Budgets(context_window=1000, compact_at=0.5))
    events = await run_all(agent, "go")
    notices = [n for n in of_type(events, "notice") if n.kind == "compaction"]
    assert len(notices) == 1 and "600" in notices[0].message
    assert events[-1].stop_reason == "completed"
    tool_contents = [
        m["content"] for m in fake_model.requests[3]["messages"] if m["role"] == "tool"
    ]
    # the outputs seen before compaction are hidden, the one produced after it is kept
    assert tool_contents == [HIDDEN_OUTPUT, HIDDEN_OUTPUT, "ran: three()"]
    check_history(fake_model.requests[3]["messages"])


async def test_context_overflow_hides_outputs_and_retries_the_step(fake_model: FakeModel):
    overflow = Turn(status=400, error="context length exceeded: 300000 > 262144 tokens")
    fake_model.script([tool_turn("big()"), overflow, Turn(content="fits now")])
    agent, _ = make_agent(fake_model)
    events = await run_all(agent, "go")
    assert events[-1].stop_reason == "completed" and events[-1].answer == "fits now"
    assert [n.kind for n in of_type(events, "notice")] == ["compaction"]
    retried = fake_model.requests[2]["messages"]
    assert [m["content"] for m in retried if m["role"] == "tool"] == [HIDDEN_OUTPUT]


async def test_context_overflow_with_nothing_to_hide_is_fatal(fake_model: FakeModel):
    fake_model.script([Turn(status=400, error="context length exceeded")])
    agent, _ = make_agent(fake_model)
    events = await run_all(agent, "a huge prompt")
    err = of_type(events, "error")
    assert len(err) == 1 and err[0].fatal and err[0].kind == "context_overflow"
    assert events[-1].stop_reason == "error" and "context" in events[-1].error


async def test_provider_failure_ends_the_run_and_the_next_run_works(fake_model: FakeModel):
    fake_model.script([tool_turn("a()"), Turn(status=500, error="down"), Turn(status=500)])
    agent, _ = make_agent(fake_model, max_attempts=2)
    events = await run_all(agent, "go")
    end = events[-1]
    assert end.stop_reason == "error" and "500" in end.error and "2 attempts" in end.error
    assert [e.type for e in events[-3:]] == ["retry", "error", "run.end"]
    fake_model.script([Turn(content="back")])
    events2 = await run_all(agent, "retry please")
    assert events2[-1].answer == "back"
    check_history(fake_model.requests[-1]["messages"])


async def test_a_cut_stream_mid_run_restarts_the_step(fake_model: FakeModel):
    fake_model.script(
        [
            tool_turn("a()", chunk=2, cut_after=6),
            tool_turn("a()"),
            Turn(content="ok"),
        ]
    )
    agent, tool = make_agent(fake_model)
    events = await run_all(agent, "go")
    assert tool.calls == ["a()"]
    types = [e.type for e in events]
    assert "notice" in types and types.index("retry") == types.index("notice") + 1
    assert len(of_type(events, "step.end")) == 2 and events[-1].answer == "ok"


async def test_a_reply_cut_at_max_tokens_is_flagged(fake_model: FakeModel):
    fake_model.script([Turn(reasoning="long thoughts", finish_reason="length")])
    agent, _ = make_agent(fake_model)
    events = await run_all(agent, "go")
    assert [n.kind for n in of_type(events, "notice")] == ["length"]
    assert events[-1].stop_reason == "completed" and events[-1].answer == ""
