"""Who decides which call: the session policy, with notebook edits and runs held for a person."""

from __future__ import annotations

import asyncio

import pytest

from k2lab.agent.decisions import Decision
from k2lab.events import ToolProposed
from k2lab.server.notebook_tools import NotebookBridge, notebook_tools
from k2lab.server.policy import SessionDecisions, always_ask_names
from k2lab.tools.python import PythonTool

#: the panel's own tools, as a session has them (the bridge is never used: nothing runs)
TOOLS = notebook_tools(NotebookBridge())
OUTSIDE = ["notebook_insert_cell", "notebook_replace_cell", "notebook_run_cell"]


def call(name: str, cid: str = "c1") -> ToolProposed:
    return ToolProposed(step=1, call_id=cid, name=name, arguments="{}")


async def decided_now(src: SessionDecisions, proposal: ToolProposed) -> Decision | None:
    """The decision if the source answers by itself; None if it waits for a person."""
    task = asyncio.ensure_future(src.decide(proposal))
    await asyncio.sleep(0.01)
    if task.done():
        return task.result()
    assert src.pending.pending == [proposal.call_id]
    task.cancel()
    return None


def test_the_notebook_tools_that_act_outside_the_sandbox_carry_the_flag():
    assert sorted(always_ask_names(TOOLS)) == OUTSIDE
    assert not always_ask_names([PythonTool(sandbox=None)])  # type: ignore[arg-type]


@pytest.mark.parametrize("tool", OUTSIDE)
async def test_notebook_changes_ask_unless_the_user_chose_auto(tool):
    assert await decided_now(SessionDecisions("auto", tools=TOOLS), call(tool)) is None
    d = await decided_now(SessionDecisions("auto", user_chose_auto=True, tools=TOOLS), call(tool))
    assert d is not None and (d.kind, d.by) == ("approve", "policy")
    d = await decided_now(SessionDecisions("never", user_chose_auto=True, tools=TOOLS), call(tool))
    assert d is not None and d.kind == "reject"


async def test_the_policy_reads_the_tools_flag_not_their_names():
    class Outside:  # any tool that says it acts outside the sandbox, whatever its name
        name = "my_tool"
        always_ask = True

    src = SessionDecisions("auto", tools=[Outside()])  # type: ignore[list-item]
    assert await decided_now(src, call("my_tool")) is None
    # the same names without the flag follow the policy
    d = await decided_now(SessionDecisions("auto"), call("notebook_run_cell"))
    assert d is not None and d.kind == "approve"


async def test_python_and_reading_follow_the_session_policy():
    for name in ("python", "notebook_read"):
        d = await decided_now(SessionDecisions("auto", tools=TOOLS), call(name))
        assert d is not None and d.kind == "approve"
        assert await decided_now(SessionDecisions("ask", tools=TOOLS), call(name)) is None
        d = await decided_now(SessionDecisions("never", tools=TOOLS), call(name))
        assert d is not None and d.kind == "reject" and d.feedback


async def test_approve_all_lasts_one_run():
    src = SessionDecisions("ask", tools=TOOLS)
    waiting = asyncio.ensure_future(src.decide(call("notebook_run_cell", "a")))
    await asyncio.sleep(0)
    src.pending.approve_all()
    assert (await waiting).kind == "approve"
    d = await decided_now(src, call("notebook_insert_cell", "b"))
    assert d is not None and d.kind == "approve"
    src.new_run()
    assert await decided_now(src, call("python", "c")) is None


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="sometimes"):
        SessionDecisions("sometimes")
