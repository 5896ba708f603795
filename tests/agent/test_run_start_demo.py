"""``run.start.demo`` says whether the offline demo model answers: a field, not a label regex."""

from __future__ import annotations

import pytest

from k2lab.agent.decisions import AutoApprove
from k2lab.agent.loop import Agent
from k2lab.config import resolve_settings
from k2lab.events import RunStart
from k2lab.runtime import open_provider
from k2lab.tools.registry import ToolRegistry
from tests.agent.helpers import EchoTool, make_agent
from tests.fixtures.fake_server import FakeModel, Turn


async def _first(agent: Agent) -> RunStart:
    gen = agent.run("hello")
    try:
        ev = await gen.__anext__()
    finally:
        await gen.aclose()  # the consumer goes away: the run is cancelled
    assert isinstance(ev, RunStart)
    return ev


async def test_demo_model_runs_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K2LAB_DEMO_DELAY", "0")
    provider = open_provider(resolve_settings(environ={}))
    try:
        agent = Agent(provider, ToolRegistry([EchoTool()]), AutoApprove(), system_prompt="t")
        assert (await _first(agent)).demo is True
    finally:
        await provider.aclose()


async def test_other_models_are_not_the_demo(fake_model: FakeModel) -> None:
    fake_model.script([Turn(content="hi")])
    agent, _ = make_agent(fake_model)
    agent.provider.model_label = "offline demo model (scripted)"  # the label alone decides nothing
    assert (await _first(agent)).demo is False
