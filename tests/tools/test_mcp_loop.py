"""MCP tools in the agent loop (real provider over HTTP, real MCP servers): arguments checked
before approval, per-server ``approve: auto``, a server's death as a notice in the run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from k2lab.agent.decisions import AutoApprove, Decision, DecisionSource, PendingDecisions, RejectAll
from k2lab.agent.loop import Agent
from k2lab.events import Event, ToolProposed
from k2lab.providers.openai_compat import OpenAICompatProvider
from k2lab.tools.mcp import MCPToolSet
from k2lab.tools.mcp_config import parse_mcp_config
from k2lab.tools.registry import ToolRegistry
from tests.agent.helpers import check_history, of_type, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.tools.conftest import stdio_spec


def agent_for(fake: FakeModel, ts: MCPToolSet, decisions: DecisionSource) -> Agent:
    provider = OpenAICompatProvider(base_url=fake.base_url, api_key="k", model="kimi-k2-thinking")
    agent = Agent(
        provider, ToolRegistry(list(ts.tools)), decisions, system_prompt="You are a test."
    )
    ts.attach(agent)
    return agent


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def test_schema_violations_never_reach_a_person_or_the_server(
    fake_model: FakeModel, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    cfg = parse_mcp_config({"mcpServers": {"s": stdio_spec(env={"NOTES_FILE": str(notes)})}})
    fake_model.script(
        [
            Turn(tool_calls=[Call("mcp__s__write_note", {"text": 5})]),
            Turn(tool_calls=[Call("mcp__s__write_note", {"text": "first"})]),
            Turn(tool_calls=[Call("mcp__s__write_note", {"text": "second"})]),
            Turn(content="done"),
        ]
    )
    pending = PendingDecisions()
    asked: list[str] = []

    async def on_event(ev: Event) -> None:
        if isinstance(ev, ToolProposed) and ev.problem is None:
            asked.append(ev.call_id)
            if len(asked) == 1:
                pending.resolve(ev.call_id, Decision("approve"))
            else:  # an edit that breaks the schema is refused like the model's own
                pending.resolve(ev.call_id, Decision("edit", arguments='{"text": ["x"]}'))

    async with MCPToolSet(cfg, timeout=30) as ts:
        agent = agent_for(fake_model, ts, pending)
        events = await run_all(agent, "take notes", on_event)
    first, second, third = of_type(events, "tool.proposed")
    assert first.problem and "invalid arguments" in first.problem and "text" in first.problem
    assert second.problem is None and third.problem is None
    # the bad call was never offered for a decision; the good ones were
    assert [d.call_id for d in of_type(events, "tool.decision")] == [second.call_id, third.call_id]
    assert asked == [second.call_id, third.call_id]
    results = of_type(events, "tool.result")
    assert [r.ok for r in results] == [False, True, False]
    assert "is not of type 'string'" in results[0].output
    assert "is not of type 'string'" in results[2].output
    # the server saw only the valid call
    assert notes.read_text() == "first\n"
    told = tool_messages(fake_model.requests[1])
    assert "invalid arguments" in told[0]
    check_history(fake_model.requests[-1]["messages"])


async def test_approve_auto_relaxes_ask_for_that_server_only(fake_model: FakeModel) -> None:
    cfg = parse_mcp_config(
        {"mcpServers": {"trusted": {**stdio_spec(), "approve": "auto"}, "other": stdio_spec()}}
    )
    fake_model.script(
        [
            Turn(
                tool_calls=[
                    Call("mcp__trusted__add", {"a": 1, "b": 2}),
                    Call("mcp__other__add", {"a": 3, "b": 4}),
                ]
            ),
            Turn(content="3 and 7"),
        ]
    )
    pending = PendingDecisions()
    waited: list[str] = []

    async def on_event(ev: Event) -> None:
        if isinstance(ev, ToolProposed) and ev.name == "mcp__other__add":
            for _ in range(500):  # the other server's call waits for a person
                if pending.pending:
                    break
                await asyncio.sleep(0.01)
            waited.extend(pending.pending)
            pending.resolve(ev.call_id, Decision("approve"))

    async with MCPToolSet(cfg, timeout=30) as ts:
        agent = agent_for(fake_model, ts, pending)
        events = await run_all(agent, "add", on_event)
    trusted, other = of_type(events, "tool.decision")
    assert (trusted.decision, trusted.by) == ("approve", "policy")
    assert (other.decision, other.by) == ("approve", "user")
    assert len(waited) == 1  # only the "ask" server's call waited
    assert [r.output for r in of_type(events, "tool.result")] == ["3", "7"]


async def test_never_still_rejects_an_auto_server(fake_model: FakeModel) -> None:
    cfg = parse_mcp_config({"mcpServers": {"trusted": {**stdio_spec(), "approve": "auto"}}})
    fake_model.script(
        [Turn(tool_calls=[Call("mcp__trusted__add", {"a": 1, "b": 2})]), Turn(content="no")]
    )
    async with MCPToolSet(cfg, timeout=30) as ts:
        events = await run_all(agent_for(fake_model, ts, RejectAll()), "add")
    (d,) = of_type(events, "tool.decision")
    assert d.decision == "reject"
    (r,) = of_type(events, "tool.result")
    assert not r.ok and r.output != "3"


async def test_a_server_dying_mid_run_is_a_notice_and_the_run_goes_on(
    fake_model: FakeModel,
) -> None:
    cfg = parse_mcp_config({"mcpServers": {"dies": stdio_spec(), "lives": stdio_spec()}})
    fake_model.script(
        [
            Turn(tool_calls=[Call("mcp__dies__crash", {})]),
            Turn(tool_calls=[Call("mcp__dies__add", {"a": 1, "b": 1})]),
            Turn(tool_calls=[Call("mcp__lives__add", {"a": 1, "b": 1})]),
            Turn(content="two"),
        ]
    )
    async with MCPToolSet(cfg, timeout=30) as ts:
        agent = agent_for(fake_model, ts, AutoApprove())
        agent.tools.notice("queued before the run", "mcp")  # e.g. a server that did not start
        events = await run_all(agent, "go")
    start = events[0]
    assert "mcp__dies__crash" in start.tools and "mcp__lives__add" in start.tools
    notices = of_type(events, "notice")
    assert [n.kind for n in notices] == ["mcp", "mcp"]
    assert notices[0].message == "queued before the run"
    assert "'dies' stopped" in notices[1].message
    types = [e.type for e in events]
    # the death notice follows the result of the call that found it
    crash_result = types.index("tool.result")
    assert types[crash_result + 1] == "notice"
    results = of_type(events, "tool.result")
    assert [r.ok for r in results] == [False, False, True]
    assert "not running" in results[1].output
    assert events[-1].stop_reason == "completed" and events[-1].answer == "two"
    # the model read each outcome
    assert json.dumps(tool_messages(fake_model.requests[3])).count("'dies'") == 2


async def test_a_servers_env_secret_is_out_of_events_and_the_models_view(
    fake_model: FakeModel,
) -> None:
    secret = "loop-secret-93c1f0aa"
    cfg = parse_mcp_config({"mcpServers": {"s": stdio_spec(env={"MCP_SECRET": secret})}})
    fake_model.script([Turn(tool_calls=[Call("mcp__s__whoami", {})]), Turn(content="ok")])
    async with MCPToolSet(cfg, timeout=30) as ts:
        events = await run_all(agent_for(fake_model, ts, AutoApprove()), "who?")
    (r,) = of_type(events, "tool.result")
    assert r.ok and r.output == "my secret is [redacted]"
    assert secret not in json.dumps([e.to_dict() for e in events])
    assert secret not in json.dumps(fake_model.requests)


async def test_stopping_a_run_during_an_mcp_call_leaves_the_server_usable(
    fake_model: FakeModel,
) -> None:
    cfg = parse_mcp_config({"mcpServers": {"s": stdio_spec()}})
    fake_model.script(
        [
            Turn(tool_calls=[Call("mcp__s__hang", {})]),
            Turn(tool_calls=[Call("mcp__s__add", {"a": 2, "b": 2})]),
            Turn(content="4"),
        ]
    )
    async with MCPToolSet(cfg, timeout=60) as ts:
        agent = agent_for(fake_model, ts, AutoApprove())

        async def stop_when_running(ev: Event) -> None:
            if ev.type == "tool.decision":
                await asyncio.sleep(0.5)  # the call is with the server now
                agent.stop()

        events = await run_all(agent, "hang", stop_when_running)
        assert events[-1].stop_reason == "stopped"
        (r,) = of_type(events, "tool.result")
        assert not r.ok and "interrupted" in r.output
        follow_up = await run_all(agent, "again")  # same conversation, same server
    assert follow_up[-1].stop_reason == "completed"
    assert [r.output for r in of_type(follow_up, "tool.result")] == ["4"]
