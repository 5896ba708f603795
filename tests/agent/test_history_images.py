"""A conversation rebuilt from the log (fork, ``--resume``, a server session after a restart)
holds the images a vision model was sent, as the live run had them: one user message of
``image_url`` parts after the step's tool messages, only the bundles in ``sent_to_model``."""

from __future__ import annotations

from k2lab.agent.history import REPLAY_TYPES, conversation_from_events
from tests.agent.helpers import run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.providers.test_vision import agent_for


async def test_a_rebuilt_conversation_resends_the_images_the_model_saw(
    fake_model: FakeModel,
) -> None:
    fake_model.script(
        [
            # two plots, then one call with none and one with a plot in the same step
            Turn(tool_calls=[Call("python", {"code": "2"})]),
            Turn(tool_calls=[Call("python", {"code": "0"}), Call("python", {"code": "1"})]),
            Turn(content="Both rise."),
        ]
    )
    agent = agent_for(fake_model, vision=True)
    events = [e.to_dict() for e in await run_all(agent, "plots")]
    live = agent.conversation.to_list()
    assert sum(isinstance(m["content"], list) for m in live) == 2  # one image message per step
    system = live[0]["content"]
    conv = conversation_from_events([[e for e in events if e["type"] in REPLAY_TYPES]], system)
    assert conv.to_list() == live


async def test_no_images_are_rebuilt_for_a_model_that_was_not_sent_any(
    fake_model: FakeModel,
) -> None:
    fake_model.script([Turn(tool_calls=[Call("python", {"code": "2"})]), Turn(content="ok")])
    agent = agent_for(fake_model, vision=False)
    events = [e.to_dict() for e in await run_all(agent, "plots")]
    live = agent.conversation.to_list()
    conv = conversation_from_events([events], live[0]["content"])
    assert conv.to_list() == live
    assert not any(isinstance(m["content"], list) for m in live)
