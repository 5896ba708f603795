"""A fork's chosen call is decided up front (``k2lab.agent.fork.ForkDecisions``), also where the
tool's own configuration would not ask (an MCP server with ``"approve": "auto"``)."""

from __future__ import annotations

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import Decision
from k2lab.agent.fork import plan_fork
from k2lab.events import ToolProposed
from tests.agent.helpers import EchoTool, make_agent, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn


class AutoTool(EchoTool):
    """A tool whose own config relaxes "ask" (as ``MCPTool`` for ``"approve": "auto"``)."""

    requires_approval = False


class NobodyAsked:
    """The ask policy with no person: nothing may wait for one."""

    policy = "ask"

    async def decide(self, proposal: ToolProposed) -> Decision:
        raise AssertionError(f"{proposal.call_id} asked a person")


async def test_a_fork_of_an_auto_approved_tools_call_runs_the_edited_arguments(
    fake_model: FakeModel,
) -> None:
    fake_model.script([Turn(tool_calls=[Call("python", {"code": "print(1)"})]), Turn("one")])
    parent, tool = make_agent(fake_model, NobodyAsked(), tool=AutoTool())
    events = [e.to_dict() for e in await run_all(parent, "go")]
    assert tool.calls == ["print(1)"]
    call_id = next(e["call_id"] for e in events if e["type"] == "tool.proposed")

    plan = plan_fork(Conversation(), events, events[0]["run_id"], call_id, '{"code": "print(2)"}')
    fake_model.script([Turn("two")])
    branch, tool = make_agent(fake_model, plan.decisions(NobodyAsked()), tool=AutoTool())
    branch.provider = plan.provider(branch.provider)
    plan.under(branch.conversation)
    branch.conversation = plan.conversation
    ran = await run_all(branch, plan.prompt)
    assert tool.calls == ["print(2)"]  # before: the recorded print(1), approved by the policy
    decision = next(e for e in ran if e.type == "tool.decision")
    assert (decision.decision, decision.by) == ("edit", "user")
