"""Shared bits for agent-loop tests: a trivial in-process tool, an agent on the fake model."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from k2lab.agent.decisions import AutoApprove, DecisionSource
from k2lab.agent.loop import Agent, Budgets
from k2lab.events import Event
from k2lab.providers.openai_compat import OpenAICompatProvider
from k2lab.tools.base import ToolOutput, tool_ok
from k2lab.tools.registry import ToolRegistry
from tests.fixtures.fake_server import FakeModel


class CodeParams(BaseModel):
    code: str


class EchoTool:
    """A stand-in for the python tool: records each call; ``raise`` in the code makes it fail,
    ``sleep`` makes it wait (for stop tests)."""

    name = "python"
    description = "Run Python code (test stand-in)."
    params = CodeParams

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started = asyncio.Event()

    async def call(self, args: BaseModel) -> ToolOutput:
        assert isinstance(args, CodeParams)
        self.calls.append(args.code)
        self.started.set()
        if "raise" in args.code:
            raise RuntimeError("the tool blew up")
        if "sleep" in args.code:
            await asyncio.sleep(30)
        return tool_ok(f"ran: {args.code}")


def make_agent(
    fake: FakeModel,
    decisions: DecisionSource | None = None,
    *,
    tool: EchoTool | None = None,
    budgets: Budgets | None = None,
    max_attempts: int = 4,
    api_key: str = "test-key",
    **provider_options: Any,
) -> tuple[Agent, EchoTool]:
    tool = tool or EchoTool()
    provider = OpenAICompatProvider(
        base_url=fake.base_url,
        api_key=api_key,
        model="kimi-k2-thinking",
        max_attempts=max_attempts,
        **provider_options,
    )
    provider.retry_base, provider.retry_cap = 0.01, 0.05
    agent = Agent(
        provider,
        ToolRegistry([tool]),
        decisions or AutoApprove(),
        budgets=budgets,
        system_prompt="You are a test.",
    )
    return agent, tool


async def run_all(
    agent: Agent, prompt: str, on_event: Callable[[Event], Any] | None = None
) -> list[Event]:
    """Run to the end; ``on_event`` may be a coroutine function (to resolve decisions, stop...)."""
    events: list[Event] = []

    async def consume() -> None:
        async for ev in agent.run(prompt):
            events.append(ev)
            if on_event is not None:
                r = on_event(ev)
                if asyncio.iscoroutine(r):
                    await r

    await asyncio.wait_for(consume(), 20)  # a hung run fails the test instead of the suite
    check_run_shape(events)
    return events


def check_run_shape(events: list[Event]) -> None:
    """Invariants every run must keep (events.py's ordering rules)."""
    assert events[0].type == "run.start" and events[-1].type == "run.end"
    assert [e.type for e in events].count("run.end") == 1
    assert [e.seq for e in events] == list(range(len(events)))


def check_history(messages: list[dict[str, Any]]) -> None:
    """What an OpenAI-compatible server requires: every tool call answered, in call order, right
    after its assistant message; reasoning_content on every assistant message with tool calls."""
    i = 0
    while i < len(messages):
        m = messages[i]
        if m["role"] == "assistant" and m.get("tool_calls"):
            assert "reasoning_content" in m, m
            ids = [tc["id"] for tc in m["tool_calls"]]
            answers = [x.get("tool_call_id") for x in messages[i + 1 : i + 1 + len(ids)]]
            assert answers == ids, (ids, answers)
            i += len(ids)
        else:
            assert m["role"] != "tool", f"orphan tool message at {i}"
        i += 1


def of_type(events: list[Event], t: str) -> list[Any]:
    return [e for e in events if e.type == t]
