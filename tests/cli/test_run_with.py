"""``k2lab run --with NAME=FILE`` (issue 10): a pickle, CSV, Parquet or JSON file's bytes copied
into the real sandbox and read there as variable NAME (a pickle is unpickled only there), the model
told its name, type, shape and columns; bad input is a usage error before anything starts."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest

from k2lab.events import Notice, RunStart, ToolResult
from k2lab.providers.demo import DEMO_PROMPTS
from k2lab.sandbox.base import Limits
from k2lab.trace.jsonl import read_trace
from tests.cli.conftest import RunCli

PROMPT = DEMO_PROMPTS["your_data"]
FAST = ("--isolation", "process", "--approve", "auto")
FRAME = pd.DataFrame({"day": [1, 1, 2, 2, 3], "sales": [10.0, 11.5, 20.0, 23.0, 9.0]})


def _write(path: Path) -> Path:
    if path.suffix == ".csv":
        FRAME.to_csv(path, index=False)
    elif path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(FRAME))
    elif path.suffix == ".parquet":
        FRAME.to_parquet(path)
    return path


def _parquet() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("suffix", [".csv", ".pkl", ".parquet"])
def test_a_file_is_read_in_the_sandbox_and_summarised(
    run_cli: RunCli, tmp_path: Path, suffix: str
) -> None:
    if suffix == ".parquet" and not _parquet():
        pytest.skip("no Parquet engine (pyarrow) installed")
    data = _write(tmp_path / f"shop{suffix}")
    trace = tmp_path / "t.jsonl"
    r = run_cli("run", *FAST, "--with", f"sales={data}", "--trace", str(trace), PROMPT)
    assert r.returncode == 0, r.stderr
    _, events = read_trace(trace)
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert any(
        "copied into the sandbox (--with): sales (DataFrame, shape (5, 2), columns day (int64), "
        f"sales (float64), read from shop{suffix})" in n
        for n in notes
    ), notes
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    # real pandas in the sandbox described the value it read from the file
    assert result.ok and "name=sales type=DataFrame rows=5 columns=2" in result.output
    assert "5 rows, 2 columns" in r.stdout and "14.70" in result.output  # mean of sales


def test_a_json_file_and_two_names_and_the_models_note(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "cfg.json").write_text(json.dumps({"region": "N", "targets": [1, 2, 3]}))
    csv = _write(tmp_path / "s.csv")
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", *FAST, "--json", "--with", f"cfg={tmp_path / 'cfg.json'}",
        "--with", f"sales={csv}", "--trace", str(trace), PROMPT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    _, events = read_trace(trace)
    note = next(e.message for e in events if isinstance(e, Notice) and "--with" in e.message)
    assert "cfg (dict, length 2, read from cfg.json)" in note
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert "name=sales" in result.output  # the demo picks the DataFrame
    assert isinstance(events[0], RunStart)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("sales", "expected NAME=FILE"),
        ("1x={csv}", "'1x' is not a variable name"),
        ("sales={missing}", "No such file or directory"),
        ("sales={txt}", "--with takes .pkl, .pickle, .csv, .parquet, .json files"),
        ("sales={dir}", "is not a file"),
    ],
)
def test_bad_with_options_are_usage_errors(
    run_cli: RunCli, tmp_path: Path, spec: str, says: str
) -> None:
    csv = _write(tmp_path / "s.csv")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "folder.csv").mkdir()
    spec = spec.format(
        csv=csv, missing=tmp_path / "nope.csv", txt=tmp_path / "notes.txt",
        dir=tmp_path / "folder.csv",
    )  # fmt: skip
    r = run_cli("run", *FAST, "--with", spec, PROMPT)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert says in r.stderr, r.stderr
    assert r.stdout == ""


def test_heavy_and_a_file_over_the_limit_are_refused(run_cli: RunCli, tmp_path: Path) -> None:
    csv = _write(tmp_path / "s.csv")
    r = run_cli("run", *FAST, "--heavy", "2", "--with", f"s={csv}", PROMPT)
    assert r.returncode == 2 and "heavy mode does not copy" in r.stderr, r.stderr
    big = tmp_path / "big.pkl"
    with big.open("wb") as f:  # sparse: no 64 MB written
        f.truncate(Limits().transfer_bytes + 1)
    r = run_cli("run", *FAST, "--with", f"b={big}", PROMPT)
    assert r.returncode == 2, r.stderr
    assert f"the limit is {Limits().transfer_bytes:,} (Limits.transfer_bytes)" in r.stderr


def test_a_file_the_sandbox_cannot_read_fails_the_run_with_why(
    run_cli: RunCli, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.pkl"
    bad.write_bytes(b"not a pickle")
    r = run_cli("run", *FAST, "--with", f"b={bad}", PROMPT)
    assert r.returncode == 1, r.stderr
    assert "the sandbox could not read" in r.stderr and "UnpicklingError" in r.stderr
