"""``k2lab run --heavy N`` as a subprocess against the fake K2 server (real HTTP and sandboxes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k2lab.trace.jsonl import read_trace
from tests.cli.conftest import RunCli
from tests.fixtures.fake_server import Call, ConversationRouter, FakeModel, Turn

FAST = ("--isolation", "process")


def script(k: int, latency: float = 0.0) -> list[Turn]:
    return [
        Turn(
            reasoning=f"lane {k}",
            tool_calls=[Call("python", {"code": f"print({k} * 0 + 42)"})],
            latency=latency,
        ),
        Turn(content=f"42 (lane {k})"),
    ]


def aggregation(body: dict[str, Any]) -> Turn | None:
    msgs = body.get("messages", [])
    if msgs and "<task>" in str(msgs[-1].get("content", "")):
        return Turn(content="The lanes agree: 42.")
    return None


def test_heavy_answers_with_the_aggregation_and_traces_every_lane(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_model.respond_with(ConversationRouter([script(k, 0.3) for k in (1, 2, 3)], aggregation))
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST,
        "--heavy", "3", "--heavy-concurrency", "2", "--trace", str(trace), "what is 6*7?",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "The lanes agree: 42."
    _, evs = read_trace(trace)
    events = [e.to_dict() for e in evs]
    lanes = {e.get("lane") for e in events}
    assert lanes == {"1", "2", "3", "aggregate"}
    ends = [e for e in events if e["type"] == "run.end"]
    assert len(ends) == 4 and all(e["stop_reason"] == "completed" for e in ends)
    starts = [e for e in events if e["type"] == "run.start"]
    heavy_id = starts[0]["run_id"].split(".")[0]
    assert {e["run_id"] for e in starts} == {f"{heavy_id}.{k}" for k in lanes}
    agg = fake_model.requests[-1]["messages"][-1]["content"]
    assert all(f"42 (lane {k})" in agg for k in (1, 2, 3))


def test_heavy_with_one_failed_lane_names_it_and_all_failed_exits_1(
    fake_model: FakeModel, run_cli: RunCli
) -> None:
    bad = [Turn(status=500, error="upstream down")] * 6
    fake_model.respond_with(ConversationRouter([script(1), bad], aggregation))
    base = ("run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST)
    r = run_cli(*base, "--heavy", "2", "q?")
    assert r.returncode == 0, r.stderr
    assert "lanes that did not finish:" in r.stderr
    fake_model.respond_with(ConversationRouter([bad, bad], aggregation))
    r = run_cli(*base, "--heavy", "2", "q?")
    assert r.returncode == 1
    assert "all 2 lanes failed" in r.stderr


def test_heavy_usage_errors(run_cli: RunCli) -> None:
    assert run_cli("run", "--heavy", "0", "q").returncode == 2
    assert run_cli("run", "--heavy-concurrency", "2", "q").returncode == 2


def test_heavy_verify_checks_the_aggregated_answer(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    def aside(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if not any("<task>" in str(m.get("content", "")) for m in msgs if m["role"] == "user"):
            return None
        if any(m["role"] == "assistant" for m in msgs):
            return Turn(content="Checked the lanes' evidence.\nVERDICT: holds")
        return Turn(content="The lanes agree: 42.")

    fake_model.respond_with(ConversationRouter([script(1), script(2)], aside))
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST,
        "--heavy", "2", "--verify", "--trace", str(trace), "q?",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "The lanes agree: 42."
    assert "k2lab: verified" in r.stderr
    _, evs = read_trace(trace)
    checks = [e for e in evs if e.type in ("verify.start", "verify.end")]
    assert checks and all(e.lane == "aggregate" for e in checks)
