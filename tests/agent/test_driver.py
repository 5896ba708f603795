"""The one run driver (k2lab.driver) over real HTTP (fake model) and real sandbox kernels."""

from __future__ import annotations

import asyncio

import pytest

from k2lab.config import Settings
from k2lab.driver import RunDriver, RunSpec, heavy_problem
from k2lab.events import Event
from k2lab.sandbox.base import Sandbox
from k2lab.sandbox.kernel import SandboxKernel
from tests.fixtures.fake_server import Call, FakeModel, Turn

KEY = "sk-driver-test-secret-0123456789"


def settings(fake: FakeModel, **kw: object) -> Settings:
    base = {
        "base_url": fake.base_url,
        "api_key": KEY,
        "approve": "auto",
        "isolation": "process",
        "tool_timeout": 20.0,
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def script(fake: FakeModel, code: str = "print(6 * 7)") -> None:
    fake.script(
        [
            Turn(reasoning="compute", tool_calls=[Call("python", {"code": code})]),
            Turn(content="42"),
        ]
    )


async def test_runs_and_closes_only_what_it_opened(fake_model: FakeModel) -> None:
    script(fake_model)
    seen: list[Event] = []
    driver = RunDriver(RunSpec(settings(fake_model), "6*7?"), [seen.append])
    result = await asyncio.wait_for(driver.run(), 60)
    assert result.stop_reason == "completed" and result.answer == "42"
    assert seen[0].type == "run.start" and seen[-1].type == "run.end"
    assert [e.type for e in seen].count("tool.result") == 1
    # the driver opened the sandbox: it is shut down
    assert isinstance(driver.sandbox, SandboxKernel) and not driver.sandbox.started

    # a sandbox the face passes in (a session's) stays open, and serves a follow-up
    kept = SandboxKernel(isolation="process")
    await kept.start()
    try:
        script(fake_model, "x = 41\nprint(x + 1)")
        first = RunDriver(RunSpec(settings(fake_model), "set x", sandbox=kept))
        await asyncio.wait_for(first.run(), 60)
        assert kept.started
        assert first.agent is not None
        script(fake_model, "print(x)")
        follow = RunDriver(
            RunSpec(
                settings(fake_model),
                "and x?",
                sandbox=kept,
                conversation=first.agent.conversation,
            )
        )
        out: list[Event] = []
        follow.sinks.append(out.append)
        await asyncio.wait_for(follow.run(), 60)
        assert kept.started
        results = [str(getattr(e, "output", "")) for e in out if e.type == "tool.result"]
        assert results and "41" in results[0]  # the same kernel: x is still there
        # the follow-up's request carries the first run's messages
        assert any("set x" in str(m.get("content")) for m in fake_model.requests[-1]["messages"])
    finally:
        await kept.shutdown()


async def test_failed_start_is_events_and_scrubbed(fake_model: FakeModel) -> None:
    async def broken() -> Sandbox:
        raise RuntimeError(f"no kernel (token {KEY})")

    seen: list[Event] = []
    driver = RunDriver(
        RunSpec(settings(fake_model), "hi", sandbox_factory=broken, run_id="R1"), [seen.append]
    )
    result = await asyncio.wait_for(driver.run(), 30)
    assert [e.type for e in seen] == ["run.start", "error", "run.end"]
    assert [e.seq for e in seen] == [0, 1, 2]
    assert all(getattr(e, "run_id", "R1") == "R1" for e in seen)
    assert result.failed == "sandbox" and "the sandbox did not start" in result.failure
    assert seen[-1].stop_reason == "error"  # type: ignore[attr-defined]
    text = " ".join(str(e.to_dict()) for e in seen)
    assert KEY not in text and "[redacted]" in text
    assert not fake_model.requests  # the model was never asked


async def test_stop_before_start_ends_stopped_without_asking_the_model(
    fake_model: FakeModel,
) -> None:
    gate = asyncio.Event()
    kept = SandboxKernel(isolation="process")

    async def slow() -> Sandbox:
        await gate.wait()
        await kept.start()
        return kept

    seen: list[Event] = []
    driver = RunDriver(RunSpec(settings(fake_model), "hi", sandbox_factory=slow), [seen.append])
    task = asyncio.ensure_future(driver.run())
    await asyncio.sleep(0.2)
    driver.stop()
    gate.set()
    try:
        result = await asyncio.wait_for(task, 60)
        assert result.failed == "stopped"
        assert [e.type for e in seen] == ["run.start", "run.end"]
        assert seen[-1].stop_reason == "stopped"  # type: ignore[attr-defined]
        assert not fake_model.requests
        assert kept.started  # the face's sandbox, not the driver's: kept
    finally:
        await kept.shutdown()


async def test_a_run_that_raises_still_ends_with_run_end(fake_model: FakeModel) -> None:
    script(fake_model)
    seen: list[Event] = []

    def broken_sink(ev: Event) -> None:
        if ev.type == "tool.proposed":
            raise RuntimeError("boom")

    driver = RunDriver(RunSpec(settings(fake_model), "6*7?"), [broken_sink, seen.append])
    result = await asyncio.wait_for(driver.run(), 60)
    assert seen[-1].type == "run.end" and result.stop_reason == "error"
    assert any(e.type == "error" and "boom" in e.message for e in seen)  # type: ignore[attr-defined]
    assert isinstance(driver.sandbox, SandboxKernel) and not driver.sandbox.started


@pytest.mark.parametrize(
    ("approve", "decided", "want"),
    [("ask", False, "needs --approve"), ("auto", False, None), ("ask", True, None)],
)
def test_heavy_problem(approve: str, decided: bool, want: str | None) -> None:
    from k2lab.agent.decisions import decision_source

    s = Settings(approve=approve)
    spec = RunSpec(s, "p", heavy=2, decisions=decision_source("auto") if decided else None)
    got = heavy_problem(spec)
    assert (got is None) if want is None else (got is not None and want in got)


async def test_running_ends_with_the_run_even_when_every_lane_failed(
    fake_model: FakeModel,
) -> None:
    fake_model.script([Turn(status=500, error="down")] * 8)
    s = settings(fake_model, max_steps=2)
    driver = RunDriver(RunSpec(s, "hi", heavy=2))
    assert not driver.running
    result = await asyncio.wait_for(driver.run(), 90)
    assert result.heavy is not None and result.heavy.stop_reason == "error"
    assert result.end is None  # no aggregation ran
    assert not driver.running


async def test_the_demo_verifies_a_heavy_runs_aggregated_answer_in_a_sandbox_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end with the offline demo model (as `k2lab run --heavy 2 --verify "demo: ..."`):
    the aggregation's verify round re-runs the followed lane's evidence in its own sandbox."""
    monkeypatch.setenv("K2LAB_DEMO_DELAY", "0")
    s = Settings(approve="auto", isolation="process", tool_timeout=60.0)
    assert s.uses_demo_model
    seen: list[Event] = []
    prompt = "demo: estimate pi with a Monte Carlo simulation and check it against math.pi"
    driver = RunDriver(RunSpec(s, prompt, heavy=2, verify_rounds=1), [seen.append])
    result = await asyncio.wait_for(driver.run(), 180)
    assert result.verify is not None and result.verify.outcome == "verified", result.verify
    agg = [e for e in seen if e.lane == "aggregate"]
    calls = [e for e in agg if e.type == "tool.result"]
    assert len(calls) == 1 and "pi_hat=3.141936" in str(getattr(calls[0], "output", ""))
    assert "lane 1's evidence" in result.verify.summary, result.verify.summary
