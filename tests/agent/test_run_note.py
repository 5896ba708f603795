"""``RunStart.note``: what k2lab tells the model before the prompt (a follow-up's ``--with``
copies, "earlier copies are gone") is a field of ``run.start``, not part of the prompt the views
show; the model reads it before the message, and a conversation rebuilt from the log has it too."""

from __future__ import annotations

from k2lab.agent.history import conversation_from_events
from tests.agent.helpers import make_agent, run_all
from tests.fixtures.fake_server import FakeModel, Turn

NOTE = "The user copied these variables into the python tool's namespace:\n- df: DataFrame"


async def test_the_note_goes_to_the_model_not_into_the_prompt(fake_model: FakeModel) -> None:
    fake_model.script([Turn(content="ok")])
    agent, _ = make_agent(fake_model)
    events = [e.to_dict() async for e in agent.run("sum it", note=NOTE)]
    start = events[0]
    assert start["prompt"] == "sum it" and start["note"] == NOTE
    assert fake_model.requests[0]["messages"][-1]["content"] == f"{NOTE}\n\nsum it"
    live = agent.conversation.to_list()
    assert conversation_from_events([events], live[0]["content"]).to_list() == live


async def test_a_run_without_a_note_serialises_as_before(fake_model: FakeModel) -> None:
    fake_model.script([Turn(content="ok")])
    agent, _ = make_agent(fake_model)
    (start, *_) = [e.to_dict() for e in await run_all(agent, "hi")]
    assert "note" not in start and fake_model.requests[0]["messages"][-1]["content"] == "hi"
