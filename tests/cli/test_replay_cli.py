"""``k2lab replay FILE`` on a trace saved by ``k2lab run --trace``: same vs tampered outputs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli.conftest import RunCli, json_events


def _tamper(src: Path, dst: Path, call_id: str) -> None:
    """A copy of a trace with one recorded tool output changed."""
    lines = src.read_text().splitlines()
    out = []
    for line in lines:
        d = json.loads(line)
        if d.get("type") == "tool.result" and d.get("call_id") == call_id:
            d["output"] = d["output"].replace("pi_hat=3.", "pi_hat=2.")
            assert "pi_hat=2." in d["output"]
        out.append(json.dumps(d))
    dst.write_text("\n".join(out) + "\n")


def test_replay_same_then_tampered(
    pi_run: tuple[subprocess.CompletedProcess[str], Path], run_cli: RunCli, tmp_path: Path
) -> None:
    r0, trace = pi_run
    assert r0.returncode == 0, r0.stderr

    same = run_cli("replay", str(trace))
    assert same.returncode == 0, same.stdout + same.stderr
    lines = same.stdout.splitlines()
    assert lines[0].split() == ["same", "functions.python:0"]
    assert lines[1].split() == ["same", "functions.python:1"]
    assert "2 same, 0 changed" in lines[-1]

    tampered = tmp_path / "tampered.jsonl"
    _tamper(trace, tampered, "functions.python:0")
    diff = run_cli("replay", "--json", str(tampered))
    assert diff.returncode == 1, diff.stdout + diff.stderr
    by_id = {e["call_id"]: e for e in json_events(diff.stdout)}
    assert by_id["functions.python:0"]["status"] == "changed"
    assert "pi_hat=2." in by_id["functions.python:0"]["old_output"]
    assert "pi_hat=3." in by_id["functions.python:0"]["new_output"]
    # the second call printed pi_hat as the sandbox computes it, so it is unchanged
    assert by_id["functions.python:1"]["status"] == "same"


def test_replay_reports_rejected_calls_as_skipped(run_cli: RunCli, tmp_path: Path) -> None:
    trace = tmp_path / "never.jsonl"
    r = run_cli(
        "run", "--approve", "never", "--isolation", "process", "--trace", str(trace),
        "demo: estimate pi",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "not run" in r.stdout  # the demo model read the rejection and said so
    rep = run_cli("replay", "--isolation", "process", str(trace))
    assert rep.returncode == 0
    assert rep.stdout.splitlines()[0].startswith("skipped  functions.python:0 (rejected")


def test_replay_unreadable_trace(run_cli: RunCli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hello": 1}\n')
    r = run_cli("replay", str(bad))
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert "not a k2lab trace" in line
    future = tmp_path / "future.jsonl"
    future.write_text('{"k2lab_trace": 7, "created": "2030-01-01T00:00:00+00:00"}\n')
    r = run_cli("replay", str(future))
    assert r.returncode == 2 and "version 7" in r.stderr and "Upgrade k2lab" in r.stderr


def test_replay_says_why_a_call_never_ran(run_cli: RunCli) -> None:
    """A call stopped while it waited for approval: skipped, and the reason names the stop."""
    trace = Path(__file__).parents[1] / "trace" / "data" / "stopped_waiting.jsonl"
    rep = run_cli("replay", "--json", "--isolation", "process", str(trace))
    by_id = {e["call_id"]: e for e in json_events(rep.stdout)}
    assert by_id["functions.python:0"]["status"] in ("same", "changed")  # it ran: replayed
    skipped = by_id["functions.python:1"]
    assert skipped["status"] == "skipped"
    assert skipped["reason"] == "the run stopped while it waited for approval: it never ran"
