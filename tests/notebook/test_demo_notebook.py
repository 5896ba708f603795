"""examples/demo.ipynb executed headless by nbclient, then reopened with nbformat.

Once on the offline demo model (no key), once against the fake model server with a fake key; both
with ``K2LAB_APPROVE=auto`` (nobody clicks). The saved file must hold one trace bundle per run with
its HTML and Markdown fallbacks, and no key anywhere (outputs, metadata, traces).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from k2lab.trace.notebook import MIMETYPE, runs_from_notebook
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import FAKE_KEY

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

pytestmark = pytest.mark.timeout(240)


def execute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Any:
    for var in ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "K2LAB_BASE_URL", "K2LAB_MODEL"):
        monkeypatch.delenv(var, raising=False)
    for k, v in {"K2LAB_APPROVE": "auto", "K2LAB_DEMO_DELAY": "0", **env}.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(DEMO, as_version=4)
    client = NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    out = tmp_path / "executed.ipynb"
    nbformat.write(nb, out)
    return out


def check_saved(path: Path, n_runs: int) -> list[Any]:
    raw = path.read_text()
    assert FAKE_KEY not in raw
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    runs = runs_from_notebook(nb)
    assert len(runs) == n_runs
    for run in runs:
        cell = nb.cells[run.cell_index]
        assert "%k2" in cell.source
        data = next(o.data for o in cell.outputs if MIMETYPE in o.get("data", {}))
        assert data[MIMETYPE]["version"] == 1
        assert data["text/html"].startswith('<div class="k2lab-trace"')
        assert data["text/markdown"].startswith("**k2lab run**")
        # the live widget was replaced by the trace: nothing in the file needs the kernel
        assert not any(WIDGET_VIEW in o.get("data", {}) for o in cell.outputs)
        types = [e["type"] for e in run.events]
        assert types[0] == "run.start" and types[-1] == "run.end"
        # the saved log keeps every event but the streamed fragments (coalesce_events), in order
        seqs = [e["seq"] for e in run.events]
        assert seqs == sorted(set(seqs)) and seqs[0] == 0
        assert not any(t.endswith(".delta") for t in types)
    return runs


def test_demo_notebook_on_the_demo_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a key for another provider sits in the environment: it must not leak into the file
    out = execute(tmp_path, monkeypatch, {"OPENROUTER_API_KEY": FAKE_KEY})
    runs = check_saved(out, 2)
    first, second = (r.events for r in runs)
    assert first[0]["model_label"] == "offline demo model (scripted)"
    assert first[-1]["stop_reason"] == "completed" and "3.14" in first[-1]["answer"]
    assert second[-1]["stop_reason"] == "completed"
    assert any(e["type"] == "tool.result" and e.get("display") for e in second)  # the plot
    nb = nbformat.read(out, as_version=4)
    config_text = nb.cells[3].outputs[0].data["text/plain"]
    assert "offline demo model" in config_text


def test_demo_notebook_against_a_model_server_with_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_model: FakeModel
) -> None:
    probe = "import os\nprint(sorted(k for k in os.environ if 'KEY' in k), 6 * 7)"
    fake_model.script(
        [
            Turn(reasoning="Probe the sandbox.", tool_calls=[Call("python", {"code": probe})]),
            Turn(content="The answer is 42."),
            Turn(reasoning="Follow-up.", tool_calls=[Call("python", {"code": "print('again')"})]),
            Turn(content="Done again."),
        ]
    )
    env = {"K2LAB_API_KEY": FAKE_KEY, "K2LAB_BASE_URL": fake_model.base_url}
    out = execute(tmp_path, monkeypatch, env)
    runs = check_saved(out, 2)
    assert runs[0].events[-1]["answer"] == "The answer is 42."
    result = next(e for e in runs[0].events if e["type"] == "tool.result")
    assert "42" in result["output"] and "K2LAB_API_KEY" not in result["output"]
    # the key went to the model server as a header, and only there
    assert fake_model.headers[0]["authorization"] == f"Bearer {FAKE_KEY}"
    # the follow-up continued the conversation
    assert any(m["content"] == "The answer is 42." for m in fake_model.requests[2]["messages"])
