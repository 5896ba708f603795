"""What the model reads for a call a stop cut off names who stopped the run: the user, a restart
or shutdown (``Agent.stop(why)``), or an internal error; never "the user" for the others."""

from __future__ import annotations

from k2lab.agent.decisions import Decision, PendingDecisions
from k2lab.agent.loop import ERROR_BEFORE_RUN, STOPPED_BEFORE_RUN, stopped_texts
from k2lab.events import Event, ToolProposed
from tests.agent.helpers import check_history, make_agent, run_all
from tests.agent.test_loop_control import wait_for
from tests.fixtures.fake_server import Call, FakeModel, Turn


def waiting_turn() -> Turn:
    return Turn(reasoning="one", tool_calls=[Call("python", {"code": "a"})])


async def test_a_stop_with_a_reason_says_that_reason_not_the_user(fake_model: FakeModel):
    fake_model.script([waiting_turn()])
    decisions = PendingDecisions()
    agent, _ = make_agent(fake_model, decisions)

    async def on_event(ev: Event) -> None:
        if ev.type == "tool.proposed":
            await wait_for(lambda: ev.call_id in decisions.pending)
            agent.stop("the kernel shut down")
            agent.stop()  # a later plain stop does not overwrite the first reason

    events = await run_all(agent, "go", on_event)
    closed = events[-2]
    assert closed.type == "tool.result"
    assert closed.output == stopped_texts("the kernel shut down")[1]
    assert "the kernel shut down" in closed.output and "user" not in closed.output

    # the next run starts clean: a plain stop is the user's again
    fake_model.script([waiting_turn()])

    async def on_event2(ev: Event) -> None:
        if ev.type == "tool.proposed":
            await wait_for(lambda: ev.call_id in decisions.pending)
            agent.stop()

    events2 = await run_all(agent, "again", on_event2)
    assert events2[-2].output == STOPPED_BEFORE_RUN
    check_history(fake_model.requests[-1]["messages"])


class ExplodingDecisions:
    """A decision source with a bug: the loop's own failure, not the user's stop."""

    policy = "ask"

    async def decide(self, proposal: ToolProposed) -> Decision:
        raise RuntimeError("decision source broke")


async def test_an_internal_error_does_not_blame_the_user(fake_model: FakeModel):
    fake_model.script([waiting_turn()])
    agent, tool = make_agent(fake_model, ExplodingDecisions())  # type: ignore[arg-type]
    events = await run_all(agent, "go")
    assert events[-1].stop_reason == "error" and "decision source broke" in events[-1].error
    closed = [e for e in events if e.type == "tool.result"]
    assert [e.output for e in closed] == [ERROR_BEFORE_RUN]
    assert tool.calls == []
    fake_model.script([Turn(content="fine")])
    assert (await run_all(agent, "next"))[-1].stop_reason == "completed"
    msgs = fake_model.requests[-1]["messages"]
    check_history(msgs)
    assert [m["content"] for m in msgs if m["role"] == "tool"] == [ERROR_BEFORE_RUN]
