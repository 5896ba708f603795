"""Every examples/*.ipynb executed headless by nbclient on the offline demo model (no key).

With ``K2LAB_APPROVE=auto`` nobody clicks. Each notebook must run without an error output, every
run it starts must end ``completed`` with its trace saved in its cell, and what each example
promises (a plot, a table, a self-correction, a replay table, a fork, an export) must be in the
saved file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from k2lab.trace.notebook import MIMETYPE, runs_from_notebook

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.ipynb"))

pytestmark = pytest.mark.timeout(300)


def execute(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for var in (
        "K2LAB_API_KEY",
        "MOONSHOT_API_KEY",
        "OPENROUTER_API_KEY",
        "K2LAB_BASE_URL",
        "K2LAB_MODEL",
        "K2LAB_PRESET",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("K2LAB_APPROVE", "auto")
    monkeypatch.setenv("K2LAB_DEMO_DELAY", "0")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    out = tmp_path / path.name
    nbformat.write(nb, out)
    return nbformat.read(out, as_version=4)


def text_of(cell: Any) -> str:
    """Everything a code cell showed as text (streams, text/plain, text/html)."""
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        for mime in ("text/plain", "text/html"):
            parts.append(str(o.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def cell_with(nb: Any, source: str) -> Any:
    found = [c for c in nb.cells if c.cell_type == "code" and source in c.source]
    assert found, f"no code cell with {source!r}"
    return found[0]


def check_quickstart(nb: Any, runs: list[Any], tmp_path: Path) -> None:
    assert len(runs) == 2
    data, bug = (r.events for r in runs)
    assert data[0]["model_label"] == "offline demo model (scripted)"
    # the plot: an image/png display output of a tool call
    shown = [d for e in data if e["type"] == "tool.result" for d in e.get("display") or []]
    assert any("image/png" in d.get("data", {}) for d in shown)
    # the table: per-region figures read from the tool output
    answer = data[-1]["answer"]
    assert "mean" in answer and all(r in answer for r in ("North", "South", "East", "West"))
    # self-correction: a call failed with a KeyError, later ones ran, the answer is a table
    results = [e for e in bug if e["type"] == "tool.result"]
    assert not results[0]["ok"] and "KeyError" in results[0]["output"]
    assert all(r["ok"] for r in results[1:]) and len(results) >= 3
    assert "| customer | orders | average |" in bug[-1]["answer"]
    assert "matches: True" in results[-1]["output"]
    assert "offline demo model" in text_of(cell_with(nb, "%k2 config"))
    listing = text_of(cell_with(nb, "%k2 runs"))
    assert all(r.run_id in listing for r in runs)
    switch = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for word in ("Moonshot", "OpenRouter", "vLLM", "SGLang", "K2LAB_API_KEY", "K2LAB_BASE_URL"):
        assert word in switch


def check_replay_fork_export(nb: Any, runs: list[Any], tmp_path: Path) -> None:
    assert len(runs) == 2
    parent, branch = runs
    replay = next(
        o
        for o in cell_with(nb, "%k2 replay").outputs
        if "replayed run" in str(o.get("data", {}).get("text/plain", ""))
    )
    n_ran = sum(1 for e in parent.events if e["type"] == "tool.result")
    summary = f"replayed run {parent.run_id}: {n_ran} calls, 0 changed outputs"
    assert summary in replay.data["text/plain"]
    # the saved file sorts mime keys; what matters to JupyterLab is that no JSON tree outranks the
    # table (its application/json renderer ranks above text/html)
    assert "k2lab-replay" in replay.data["text/html"] and "application/json" not in replay.data
    # the branch starts at the fix with the cell's code, and rounds to one decimal
    start = branch.events[0]
    assert start["parent_run_id"] == parent.run_id
    assert start["forked_from_call"] == "functions.python:2"
    first = next(e for e in branch.events if e["type"] == "tool.result")
    assert first["ok"] and "avg=52.4" in first["output"]
    assert branch.events[-1]["stop_reason"] == "completed"
    # the model's cross-check follows the branch's rounding (one decimal), and agrees
    checks = [e for e in branch.events if e["type"] == "tool.result"][1:]
    assert checks
    assert "matches: True" in checks[-1]["output"], checks[-1]["output"]
    # export: the latest ended run as a notebook, one code cell per call that ran
    said = text_of(cell_with(nb, "%k2 export"))
    assert "wrote exported-run.ipynb (" in said
    exported = nbformat.read(tmp_path / "exported-run.ipynb", as_version=4)
    code = [c for c in exported.cells if c.cell_type == "code"]
    assert [c.metadata["k2lab"]["run_id"] for c in code] == [branch.run_id] * len(code)
    assert "round(sum(v) / len(v), 1)" in code[0].source
    assert f"k2lab run `{branch.run_id}`" in text_of(cell_with(nb, "exported.cells"))


def check_panel(nb: Any, runs: list[Any], tmp_path: Path) -> None:
    assert runs == []  # the panel's runs live on the server, not in this notebook
    table = text_of(cell_with(nb, "sales.head()"))
    assert "<table" in table and "revenue" in table
    assert "North" in text_of(cell_with(nb, "per_region ="))
    assert "offline demo model" in text_of(cell_with(nb, "%k2 config"))
    words = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for word in ("Ctrl+Alt+K", "Active cell", "Selection", "Whole notebook", "Variables",
                 "Approve", "Reject", "Moonshot", "OpenRouter", "vLLM", "SGLang",
                 "K2LAB_API_KEY"):  # fmt: skip
        assert word in words, word


def check_demo(nb: Any, runs: list[Any], tmp_path: Path) -> None:
    assert len(runs) == 2 and "3.14" in runs[0].events[-1]["answer"]


def _switching_words(nb: Any) -> None:
    switch = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for word in ("Moonshot", "OpenRouter", "vLLM", "SGLang", "K2LAB_API_KEY", "K2LAB_BASE_URL"):
        assert word in switch, word


def check_heavy_verify(nb: Any, runs: list[Any], tmp_path: Path) -> None:
    assert len(runs) == 2
    heavy, verified = (r.events for r in runs)
    # three lanes, each with its own runs' events, and the aggregation that names them
    assert {e.get("lane") for e in heavy if e.get("lane")} == {"1", "2", "3", "aggregate"}
    lane_ends = [e for e in heavy if e["type"] == "run.end" and e.get("lane") in ("1", "2", "3")]
    assert len(lane_ends) == 3 and all(e["stop_reason"] == "completed" for e in lane_ends)
    assert "Lanes followed: 1, 2, 3" in heavy[-1]["answer"] and "pi ~ 3.14" in heavy[-1]["answer"]
    # the verify pass re-ran the answer's code in the sandbox and the answer held
    (end,) = [e for e in verified if e["type"] == "verify.end"]
    assert end["outcome"] == "verified", end
    assert "| customer | orders | average |" in verified[-1]["answer"]
    listing = text_of(cell_with(nb, "%k2 runs"))
    assert all(r.run_id in listing for r in runs)
    _switching_words(nb)


def check_your_data(nb: Any, runs: list[Any], tmp_path: Path) -> None:
    assert len(runs) == 3
    copied, mounted, mcp = (r.events for r in runs)
    # --with: the copy is said in the view (a data notice) and described from real output
    assert any(e["type"] == "notice" and "orders" in e["message"] for e in copied)
    assert "200 rows, 3 columns" in copied[-1]["answer"]
    # --data: the CSV written by the notebook, read inside the sandbox
    results = [e for e in mounted if e["type"] == "tool.result"]
    assert "orders.csv" in results[0]["output"] and "rows=200 columns=3" in results[1]["output"]
    assert "200 rows, 3 columns" in mounted[-1]["answer"]
    # --mcp-config: the notebook's own MCP server answered a tool call
    (result,) = [e for e in mcp if e["type"] == "tool.result"]
    assert result["name"] == "mcp__shop__sales_targets" and "target_East=150.0" in result["output"]
    _switching_words(nb)


CHECKS: dict[str, Callable[[Any, list[Any], Path], None]] = {
    "heavy_verify.ipynb": check_heavy_verify,
    "your_data.ipynb": check_your_data,
    "quickstart.ipynb": check_quickstart,
    "replay_fork_export.ipynb": check_replay_fork_export,
    "demo.ipynb": check_demo,
    "panel.ipynb": check_panel,
}


def test_every_example_has_its_checks() -> None:
    assert {
        "quickstart.ipynb",
        "replay_fork_export.ipynb",
        "panel.ipynb",
        "heavy_verify.ipynb",
        "your_data.ipynb",
    } <= {p.name for p in EXAMPLES}
    assert {p.name for p in EXAMPLES} <= set(CHECKS)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_on_the_demo_model(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = execute(path, tmp_path, monkeypatch)
    nbformat.validate(nb)
    errors = [
        f"{o.ename}: {o.evalue}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert errors == []
    stderr = [o.text for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not any("Traceback" in t or "Error" in t for t in stderr), stderr
    runs = runs_from_notebook(nb)
    for run in runs:
        cell = nb.cells[run.cell_index]
        assert "%k2" in cell.source
        assert any(MIMETYPE in o.get("data", {}) for o in cell.outputs)
        assert run.events[-1]["type"] == "run.end"
        assert run.events[-1]["stop_reason"] == "completed", run.events[-1]
    CHECKS[path.name](nb, runs, tmp_path)
