"""The loop against a hostile or broken provider: echoed keys, stalls, caps, bad tool-call ids."""

from __future__ import annotations

import asyncio
import json

from k2lab.agent.decisions import Decision, PendingDecisions
from k2lab.agent.loop import WALL_TIME_BEFORE_RUN, WALL_TIME_WHILE_RUNNING, Budgets
from k2lab.events import Event
from tests.agent.helpers import check_history, make_agent, of_type, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn

KEY = "sk-agent-SECRET-0123456789abcdef"


def dump(events: list[Event]) -> str:
    return json.dumps([e.to_dict() for e in events], ensure_ascii=False)


# -- keys (item 8) -------------------------------------------------------------------------------
async def test_a_key_echoed_in_a_200_stream_error_reaches_no_event(fake_model: FakeModel):
    fake_model.script([Turn(stream_error="proxy failure", echo_auth=True)] * 2)
    agent, _ = make_agent(fake_model, api_key=KEY, max_attempts=2)
    events = await run_all(agent, "hi")
    assert events[-1].stop_reason == "error"
    assert "proxy failure" in events[-1].error
    assert of_type(events, "retry") and of_type(events, "error")
    assert KEY not in dump(events)


async def test_a_key_the_model_echoes_split_across_deltas_reaches_no_event_or_history(
    fake_model: FakeModel,
):
    fake_model.script(
        [
            Turn(
                reasoning=f"the key is {KEY}, noted",
                content=f"I saw {KEY}.",
                tool_calls=[Call("python", {"code": f"print('{KEY}')"})],
                chunk=3,  # the key arrives in 3-character pieces
            ),
            Turn(content=f"done {KEY}", chunk=5),
        ]
    )
    agent, tool = make_agent(fake_model, api_key=KEY)
    events = await run_all(agent, "hi")
    assert events[-1].stop_reason == "completed"
    assert KEY not in dump(events)
    text = "".join(e.text for e in of_type(events, "reasoning.delta"))
    assert text == "the key is [redacted], noted"  # nothing else lost
    assert KEY not in json.dumps(agent.conversation.messages)
    assert KEY not in tool.calls[0]
    assert KEY not in fake_model.raw[1].decode()  # nor sent back to the model


# -- stalls (item 10) ----------------------------------------------------------------------------
async def test_wall_time_ends_a_stream_of_keep_alives(fake_model: FakeModel):
    fake_model.script([Turn(content="never", stall_after=0)])
    agent, _ = make_agent(fake_model, budgets=Budgets(wall_time=1.0))
    events = await run_all(agent, "hi")  # run_all fails the test after 20 s
    end = events[-1]
    assert end.stop_reason == "wall_time"
    assert end.elapsed < 15


async def test_wall_time_ends_a_tool_call_and_a_waiting_decision(fake_model: FakeModel):
    fake_model.script(
        [Turn(tool_calls=[Call("python", {"code": "sleep()"}), Call("python", {"code": "b"})])]
    )
    agent, _ = make_agent(fake_model, budgets=Budgets(wall_time=1.0))
    events = await run_all(agent, "hi")
    assert events[-1].stop_reason == "wall_time"
    assert [r.output for r in of_type(events, "tool.result")] == [WALL_TIME_WHILE_RUNNING]
    msgs = agent.conversation.messages
    check_history(msgs)
    assert [m["content"] for m in msgs if m["role"] == "tool"] == [
        WALL_TIME_WHILE_RUNNING,
        WALL_TIME_BEFORE_RUN,
    ]

    fake_model.script([Turn(tool_calls=[Call("python", {"code": "c"})])])
    decisions = PendingDecisions()
    agent.decisions = decisions
    events = await run_all(agent, "again")  # nobody decides: the budget ends the wait
    assert events[-1].stop_reason == "wall_time" and decisions.pending == []


async def test_an_oversized_step_ends_the_run_with_a_clear_error(fake_model: FakeModel):
    fake_model.script([Turn(reasoning="r" * 30_000, chunk=500)] * 2)
    agent, _ = make_agent(fake_model, max_step_chars=10_000)
    events = await run_all(agent, "hi")
    (err,) = of_type(events, "error")
    assert err.kind == "too_large" and err.fatal and "10,000 characters" in err.message
    assert events[-1].stop_reason == "error" and len(fake_model.requests) == 1


# -- tool-call ids (item 11) ---------------------------------------------------------------------
def ids(events: list[Event], t: str = "tool.proposed") -> list[str]:
    return [e.call_id for e in of_type(events, t)]


async def test_an_id_repeated_within_one_message_gives_two_calls_each_answered(
    fake_model: FakeModel,
):
    same = "functions.python:0"
    fake_model.script(
        [
            Turn(
                tool_calls=[
                    Call("python", {"code": "a"}, id=same),
                    Call("python", {"code": "b"}, id=same),
                ]
            ),
            Turn(content="ok"),
        ]
    )
    decisions = PendingDecisions()
    agent, tool = make_agent(fake_model, decisions)

    async def on_event(ev: Event) -> None:
        if ev.type == "tool.proposed":
            while ev.call_id not in decisions.pending:
                await asyncio.sleep(0.01)
            decisions.resolve(ev.call_id, Decision("approve"))

    events = await run_all(agent, "go", on_event)
    assert events[-1].stop_reason == "completed"
    assert ids(events) == ["functions.python:0", "functions.python:1"]
    assert ids(events, "tool.result") == ids(events)
    assert tool.calls == ["a", "b"]
    step_end = of_type(events, "step.end")[0]
    assert [c.get("model_id") for c in step_end.tool_calls] == [None, same]
    msgs = fake_model.requests[1]["messages"]
    check_history(msgs)
    sent = [tc["id"] for m in msgs for tc in m.get("tool_calls") or []]
    assert sent == ["functions.python:0", "functions.python:1"]


async def test_ids_repeated_across_runs_stay_unique_in_the_conversation(fake_model: FakeModel):
    same = "functions.python:0"
    agent, _ = make_agent(fake_model)
    seen: list[str] = []
    for prompt in ("one", "two"):
        fake_model.script(
            [Turn(tool_calls=[Call("python", {"code": "x"}, id=same)]), Turn(content="ok")]
        )
        events = await run_all(agent, prompt)
        assert events[-1].stop_reason == "completed"
        run_id = events[0].run_id
        for t in ("tool.proposed", "tool.decision", "tool.result"):
            assert [e.run_id for e in of_type(events, t)] == [run_id]
        seen += ids(events)
    assert seen == ["functions.python:0", "functions.python:1"]
    check_history(fake_model.requests[-1]["messages"])


async def test_missing_ids_get_normalised_ids(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(
                tool_calls=[
                    Call("python", {"code": "a"}, id=""),
                    Call("python", {"code": "b"}, id=""),
                ]
            ),
            Turn(content="ok"),
        ]
    )
    agent, tool = make_agent(fake_model)
    events = await run_all(agent, "go")
    assert events[-1].stop_reason == "completed" and tool.calls == ["a", "b"]
    assert ids(events) == ["functions.python:0", "functions.python:1"]
    assert [c["model_id"] for c in of_type(events, "step.end")[0].tool_calls] == ["", ""]
    check_history(fake_model.requests[1]["messages"])


async def test_an_odd_tool_name_does_not_shape_the_id(fake_model: FakeModel):
    fake_model.script([Turn(tool_calls=[Call("py thon\n:0", {"code": "a"})]), Turn(content="ok")])
    agent, _ = make_agent(fake_model)
    events = await run_all(agent, "go")
    assert ids(events) == ["functions.unknown:0"]
    assert of_type(events, "tool.proposed")[0].problem  # unknown tool: told, not run
