"""A long run through failing requests (429, 500, cut and dropped streams) finishes, and every
failure is a visible ``retry`` event: a 30-tool-call version of ``benchmarks/bench_long_run.py``,
with its fault plan, untimed."""

from __future__ import annotations

from benchmarks.bench_long_run import ANSWER, FAULT_KINDS, RETRY_REASON, FaultPlan
from k2lab.agent.loop import Budgets
from tests.agent.helpers import make_agent, of_type, run_all
from tests.fixtures.fake_server import FakeModel


async def test_a_long_run_through_failing_requests_finishes_and_shows_each_retry(
    fake_model: FakeModel,
) -> None:
    plan = FaultPlan(30, rate=0.1, seed=1)
    fake_model.respond_with(plan)
    agent, tool = make_agent(fake_model, budgets=Budgets(max_steps=40))

    events = await run_all(agent, "Run the analysis, step by step.")

    end = events[-1]
    assert end.type == "run.end"
    assert (end.stop_reason, end.tool_calls, end.answer) == ("completed", 30, ANSWER)
    assert len(tool.calls) == 30  # each call ran once: no step of a failed attempt ran its tool
    assert of_type(events, "error") == []
    # the plan served every kind of fault, and each became exactly one retry event, in order
    kinds = [kind for _, kind in plan.faults]
    assert set(kinds) == set(FAULT_KINDS)
    retries = of_type(events, "retry")
    assert len(retries) == len(kinds)
    for retry, kind in zip(retries, kinds, strict=True):
        assert retry.reason.startswith(RETRY_REASON[kind]), (kind, retry.reason)
    assert len(fake_model.requests) == 31 + len(kinds)  # 30 steps + the answer + the retries
