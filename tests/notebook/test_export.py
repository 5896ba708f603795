"""``%k2 export``: the calls that ran, read from the run view (issue 9)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest

from k2lab.notebook import commands
from k2lab.trace.jsonl import read_trace

DATA = Path(__file__).parent.parent / "trace" / "data"


def _events(name: str) -> list[dict[str, Any]]:
    _, events = read_trace(DATA / name)
    return [e.to_dict() for e in events]


def _export(events: list[dict[str, Any]], out: Path) -> Any:
    rec = SimpleNamespace(run_id="r1", events=events, going=False)
    session = SimpleNamespace(runs=[rec])
    opts = SimpleNamespace(file=None, run=None, out=str(out), cell=False)
    commands.export(session, opts, "", None)
    return nbformat.read(out, as_version=4)


def test_a_call_stopped_while_waiting_is_not_exported(tmp_path: Path) -> None:
    nb = _export(_events("stopped_waiting.jsonl"), tmp_path / "x.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.metadata["k2lab"]["call_id"] for c in code] == ["functions.python:0"]
    assert [c.source for c in code] == ["print(1)"]


@pytest.mark.parametrize(
    "name", ["approved.jsonl", "edited.jsonl", "rejected.jsonl", "parallel.jsonl"]
)
def test_export_matches_the_view_of_each_golden_trace(name: str) -> None:
    """The exported calls are the executed python calls of the golden view, edits as edited."""
    view = json.loads((DATA / name.replace(".jsonl", ".view.json")).read_text())
    want = []
    for run in view["final"]["runs"]:
        for call in run["calls"]:
            if call["executed"] and call["name"] == "python":
                args = call["edited_arguments"] if call["decision"] == "edit" else call["arguments"]
                want.append((call["call_id"], json.loads(args)["code"]))
    assert commands.executed_code(_events(name)) == want


def test_a_heavy_run_exports_each_lane_apart_and_one_lane_alone(tmp_path: Path) -> None:
    """Lanes had their own sandboxes and repeat call ids: one section per lane, or ``--lane``."""
    events = _events("heavy.jsonl")
    nb = _export(events, tmp_path / "all.ipynb")
    heads = [c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("##")]
    code = [c.metadata["k2lab"] for c in nb.cells if c.cell_type == "code"]
    assert heads == ["## Lane 1", "## Lane 2"]  # lane 3 ran no code; the aggregation made none
    assert [(m["lane"], m["run_id"], m["call_id"]) for m in code] == [
        ("1", "heavy.1", "functions.python:0"),
        ("2", "heavy.2", "functions.python:0"),
    ]

    rec = SimpleNamespace(run_id="r1", events=events, going=False)
    opts = SimpleNamespace(
        file=None, run=None, out=str(tmp_path / "l2.ipynb"), cell=False, lane="2"
    )
    commands.export(SimpleNamespace(runs=[rec]), opts, "", None)
    one = nbformat.read(tmp_path / "l2.ipynb", as_version=4)
    assert [c.metadata["k2lab"]["lane"] for c in one.cells if c.cell_type == "code"] == ["2"]
    lane_end = [e for e in events if e["type"] == "run.end" and e.get("lane") == "2"][-1]
    # the answer is lane 2's own, not the aggregation's
    assert one.cells[-1].source == "**Answer:**\n\n" + lane_end["answer"]

    opts.lane = "9"
    with pytest.raises(commands.UsageError, match=r"no lane '9' in this run \(lanes: 1, 2, 3"):
        commands.export(SimpleNamespace(runs=[rec]), opts, "", None)
