"""``k2lab replay`` on a heavy trace: each lane replays in a sandbox of its own, or one lane alone.

Lanes had separate sandboxes and their call ids repeat (``functions.python:0`` in every lane), so
replaying all calls in one sandbox, or asking for a call id without its lane, would be wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import RunCli, json_events


@pytest.fixture(scope="module")
def heavy_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.cli.conftest import _runner

    d = tmp_path_factory.mktemp("heavy")
    trace = d / "heavy.jsonl"
    r = _runner(d)(
        "run", "--approve", "auto", "--isolation", "process", "--heavy", "2",
        "--trace", str(trace), "demo: estimate pi",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return trace


def test_every_lane_replays_in_its_own_sandbox(heavy_trace: Path, run_cli: RunCli) -> None:
    r = run_cli("replay", "--isolation", "process", str(heavy_trace))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.count("in a fresh sandbox") == 2, r.stderr  # one per lane, none for the rest
    lines = r.stdout.splitlines()
    assert "same     functions.python:0 (lane 1)" in lines
    assert "same     functions.python:0 (lane 2)" in lines
    assert "in 2 lane(s)" in lines[-1], lines[-1]  # the aggregation made no call
    assert "0 changed" in lines[-1]


def test_one_lane_and_a_call_id_that_repeats_across_lanes(
    heavy_trace: Path, run_cli: RunCli
) -> None:
    one = run_cli("replay", "--isolation", "process", "--json", "--lane", "2", str(heavy_trace))
    assert one.returncode == 0, one.stdout + one.stderr
    rows = json_events(one.stdout)
    assert rows and {row["lane"] for row in rows} == {"2"}
    assert one.stderr.count("in a fresh sandbox") == 1

    ambiguous = run_cli("replay", "--call", "functions.python:0", str(heavy_trace))
    assert ambiguous.returncode == 2
    assert "is in lanes 1, 2: say --lane" in ambiguous.stderr

    unknown = run_cli("replay", "--lane", "9", str(heavy_trace))
    assert unknown.returncode == 2
    assert "no lane '9' in this run (lanes: 1, 2" in unknown.stderr
