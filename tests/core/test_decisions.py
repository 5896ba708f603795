"""Decision sources: policies and the person-resolved futures."""

import asyncio

import pytest

from k2lab.agent.decisions import (
    Decision,
    DecisionError,
    PendingDecisions,
    decision_source,
)
from k2lab.events import ToolProposed


def _proposal(cid: str) -> ToolProposed:
    return ToolProposed(step=1, call_id=cid, name="python", arguments="{}")


async def test_pending_resolves_once() -> None:
    pend = PendingDecisions()
    task = asyncio.ensure_future(pend.decide(_proposal("c1")))
    await asyncio.sleep(0)
    assert pend.pending == ["c1"]
    pend.resolve("c1", Decision("reject", feedback="no"))
    assert (await task).feedback == "no"
    with pytest.raises(DecisionError, match="already decided"):
        pend.resolve("c1", Decision("approve"))
    with pytest.raises(DecisionError, match="no tool call"):
        pend.resolve("zzz", Decision("approve"))


async def test_edit_needs_arguments() -> None:
    pend = PendingDecisions()
    task = asyncio.ensure_future(pend.decide(_proposal("c1")))
    await asyncio.sleep(0)
    with pytest.raises(DecisionError, match="needs the arguments"):
        pend.resolve("c1", Decision("edit"))
    pend.resolve("c1", Decision("edit", arguments='{"code": "2"}'))
    assert (await task).arguments == '{"code": "2"}'


async def test_approve_all_resolves_pending_and_future_calls() -> None:
    pend = PendingDecisions()
    task = asyncio.ensure_future(pend.decide(_proposal("c1")))
    await asyncio.sleep(0)
    pend.approve_all()
    assert (await task).kind == "approve"
    assert (await pend.decide(_proposal("c2"))).kind == "approve"


async def test_policies() -> None:
    assert (await decision_source("auto").decide(_proposal("a"))).kind == "approve"
    never = await decision_source("never").decide(_proposal("a"))
    assert never.kind == "reject" and never.feedback
    with pytest.raises(ValueError):
        decision_source("sometimes")


async def test_pending_keys_calls_by_run_and_call_id() -> None:
    """One source for a run and its heavy lanes: the same call id in two runs is two calls,
    each decided apart; without a run id an id that waits twice is a clear error."""
    pend = PendingDecisions()

    def prop(run: str) -> ToolProposed:
        return ToolProposed(step=1, call_id="functions.python:0", run_id=run, name="python",
                            arguments="{}")  # fmt: skip

    one = asyncio.ensure_future(pend.decide(prop("h.1")))
    two = asyncio.ensure_future(pend.decide(prop("h.2")))
    await asyncio.sleep(0)
    assert pend.waiting == [("h.1", "functions.python:0"), ("h.2", "functions.python:0")]
    with pytest.raises(DecisionError, match="several runs"):
        pend.resolve("functions.python:0", Decision("approve"))
    pend.resolve("functions.python:0", Decision("reject", feedback="no"), run_id="h.2")
    assert (await two).kind == "reject" and not one.done()
    pend.resolve("functions.python:0", Decision("approve"))  # the one left: no run id needed
    assert (await one).kind == "approve"
    with pytest.raises(DecisionError, match="already decided"):
        pend.resolve("functions.python:0", Decision("approve"), run_id="h.1")
    with pytest.raises(DecisionError, match="no tool call"):
        pend.resolve("functions.python:0", Decision("approve"), run_id="h.3")
