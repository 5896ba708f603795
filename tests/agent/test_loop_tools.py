"""The agent loop with the real provider over HTTP: tool calls, bad calls, policies, decisions."""

from __future__ import annotations

import asyncio
import json

from k2lab.agent.decisions import NEVER_FEEDBACK, Decision, PendingDecisions, RejectAll
from k2lab.events import Event
from tests.agent.helpers import check_history, make_agent, of_type, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn


async def test_tool_call_then_answer_and_the_wire(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(reasoning="Let me compute.", tool_calls=[Call("python", {"code": "print(42)"})]),
            Turn(reasoning="It printed 42.", content="The answer is **42**."),
        ]
    )
    agent, tool = make_agent(fake_model)
    events = await run_all(agent, "What is 6*7?")
    assert tool.calls == ["print(42)"]
    types = [e.type for e in events]
    assert types[:2] == ["run.start", "step.start"]
    i = types.index("step.end")
    assert types[i + 1 : i + 4] == ["tool.proposed", "tool.decision", "tool.result"]
    end = events[-1]
    assert end.stop_reason == "completed" and end.answer == "The answer is **42**."
    assert (end.steps, end.tool_calls) == (2, 1)
    assert end.prompt_tokens > 0 and end.completion_tokens > 0
    second = fake_model.requests[1]["messages"]
    check_history(second)
    assistant, result = second[-2], second[-1]
    assert assistant["reasoning_content"] == "Let me compute."
    assert assistant["tool_calls"][0]["id"] == "functions.python:0"
    assert result == {
        "role": "tool",
        "tool_call_id": "functions.python:0",
        "content": "ran: print(42)",
    }


async def test_parallel_calls_answered_in_call_order(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(
                tool_calls=[Call("python", {"code": "a"}), Call("python", {"code": "b"})],
                chunk=1,
            ),
            Turn(content="done"),
        ]
    )
    agent, tool = make_agent(fake_model)
    await run_all(agent, "two at once")
    assert tool.calls == ["a", "b"]
    msgs = fake_model.requests[1]["messages"]
    check_history(msgs)
    assert msgs[-2:] == [
        {"role": "tool", "tool_call_id": "functions.python:0", "content": "ran: a"},
        {"role": "tool", "tool_call_id": "functions.python:1", "content": "ran: b"},
    ]
    # an empty reasoning still goes back, as ""
    assert msgs[-3]["reasoning_content"] == ""


async def test_malformed_arguments_become_an_error_the_model_reads(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", '{"code": "print(1)"')]),  # missing brace
            Turn(tool_calls=[Call("python", {"code": "print(1)"})]),
            Turn(content="fixed it"),
        ]
    )
    agent, tool = make_agent(fake_model)
    events = await run_all(agent, "go")
    proposed = of_type(events, "tool.proposed")
    assert proposed[0].problem and "not valid JSON" in proposed[0].problem
    assert proposed[1].problem is None
    results = of_type(events, "tool.result")
    assert not results[0].ok and results[1].ok
    assert tool.calls == ["print(1)"]  # the bad call never ran
    told = fake_model.requests[1]["messages"][-1]
    assert told["role"] == "tool" and "not valid JSON" in told["content"]
    assert events[-1].stop_reason == "completed"


async def test_unknown_tool_and_wrong_params(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(tool_calls=[Call("shell", {"cmd": "ls"}), Call("python", {"source": "x"})]),
            Turn(content="ok"),
        ]
    )
    agent, tool = make_agent(fake_model)
    events = await run_all(agent, "go")
    msgs = fake_model.requests[1]["messages"]
    check_history(msgs)
    assert "unknown tool 'shell'" in msgs[-2]["content"] and "python" in msgs[-2]["content"]
    assert "invalid arguments" in msgs[-1]["content"] and "code" in msgs[-1]["content"]
    assert tool.calls == [] and events[-1].stop_reason == "completed"
    # problems are not offered for a decision
    assert of_type(events, "tool.decision") == []


async def test_a_tool_that_raises_is_an_error_result(fake_model: FakeModel):
    fake_model.script(
        [Turn(tool_calls=[Call("python", {"code": "raise"})]), Turn(content="recovered")]
    )
    agent, _ = make_agent(fake_model)
    events = await run_all(agent, "go")
    res = of_type(events, "tool.result")[0]
    assert not res.ok and "RuntimeError: the tool blew up" in res.output
    assert fake_model.requests[1]["messages"][-1]["content"] == res.output
    assert events[-1].answer == "recovered"


async def test_policy_never_rejects_every_call_and_tells_the_model(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", {"code": "a"}), Call("python", {"code": "b"})]),
            Turn(content="I could not run anything."),
        ]
    )
    agent, tool = make_agent(fake_model, RejectAll())
    events = await run_all(agent, "go")
    assert tool.calls == []
    decisions = of_type(events, "tool.decision")
    assert [(d.decision, d.by) for d in decisions] == [("reject", "policy")] * 2
    msgs = fake_model.requests[1]["messages"]
    check_history(msgs)
    for m in msgs[-2:]:
        assert "rejected" in m["content"] and NEVER_FEEDBACK in m["content"]
    assert events[0].policy == "never"


async def _decide_when_proposed(
    decisions: PendingDecisions, ev: Event, decide: dict[str, Decision]
) -> None:
    if ev.type == "tool.proposed" and ev.problem is None:
        for _ in range(100):  # the loop parks the call right after emitting the proposal
            if ev.call_id in decisions.pending:
                break
            await asyncio.sleep(0)
        decisions.resolve(ev.call_id, decide[ev.call_id])


async def test_ask_approve_edit_and_reject_with_feedback(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(
                reasoning="three calls",
                tool_calls=[
                    Call("python", {"code": "approved()"}),
                    Call("python", {"code": "rm_everything()"}),
                    Call("python", {"code": "slow()"}),
                ],
            ),
            Turn(content="done"),
        ]
    )
    decisions = PendingDecisions()
    agent, tool = make_agent(fake_model, decisions)
    edited = json.dumps({"code": "safe()"})
    plan = {
        "functions.python:0": Decision("approve"),
        "functions.python:1": Decision("edit", arguments=edited),
        "functions.python:2": Decision("reject", feedback="Use the cached table instead."),
    }
    events = await run_all(agent, "go", lambda ev: _decide_when_proposed(decisions, ev, plan))
    assert tool.calls == ["approved()", "safe()"]
    d = of_type(events, "tool.decision")
    assert [(x.decision, x.by) for x in d] == [
        ("approve", "user"),
        ("edit", "user"),
        ("reject", "user"),
    ]
    assert d[1].arguments == edited and d[2].feedback == "Use the cached table instead."
    msgs = fake_model.requests[1]["messages"]
    check_history(msgs)
    assert msgs[-3]["content"] == "ran: approved()"
    # the model reads the same note as ever; the trace records the edit as a field
    note = f"[The user edited the arguments before running: {edited}]\n"
    assert msgs[-2]["content"] == note + "ran: safe()"
    res = of_type(events, "tool.result")
    assert [(r.output, r.edited) for r in res[:2]] == [
        ("ran: approved()", False),
        ("ran: safe()", True),
    ]
    assert (
        "rejected" in msgs[-1]["content"] and "Use the cached table instead." in msgs[-1]["content"]
    )
    # the assistant message keeps what the model proposed (the edit is in the tool result)
    assert json.loads(msgs[-4]["tool_calls"][1]["function"]["arguments"]) == {
        "code": "rm_everything()"
    }
    assert events[-1].stop_reason == "completed"


async def test_an_edit_with_bad_arguments_is_an_error_result(fake_model: FakeModel):
    fake_model.script([Turn(tool_calls=[Call("python", {"code": "x"})]), Turn(content="ok")])
    decisions = PendingDecisions()
    agent, tool = make_agent(fake_model, decisions)
    plan = {"functions.python:0": Decision("edit", arguments="{oops")}
    events = await run_all(agent, "go", lambda ev: _decide_when_proposed(decisions, ev, plan))
    assert tool.calls == []
    res = of_type(events, "tool.result")[0]
    assert not res.ok and "not valid JSON" in res.output


async def test_approve_all_turns_the_rest_into_auto(fake_model: FakeModel):
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", {"code": "1"})]),
            Turn(tool_calls=[Call("python", {"code": "2"})]),
            Turn(content="ok"),
        ]
    )
    decisions = PendingDecisions()
    agent, tool = make_agent(fake_model, decisions)

    async def on_event(ev: Event) -> None:
        if ev.type == "tool.proposed" and not decisions.auto:
            while ev.call_id not in decisions.pending:
                await asyncio.sleep(0)
            decisions.approve_all()

    events = await run_all(agent, "go", on_event)
    assert tool.calls == ["1", "2"]
    assert [(d.decision, d.by) for d in of_type(events, "tool.decision")] == [
        ("approve", "user"),
        ("approve", "policy"),
    ]
