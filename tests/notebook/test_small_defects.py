"""Small defects a new user met (issue 11): the replay output's mime order, plurals, the help
text's reStructuredText leftovers, and ``%k2 export`` with no RUN while a run still waits."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import nbformat
import pytest

from k2lab.notebook.commands import replay_bundle
from k2lab.notebook.magics import K2Magics
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import Kernel

pytestmark = pytest.mark.timeout(180)


def result(call_id: str, changed: bool) -> dict[str, Any]:
    return {"call_id": call_id, "changed": changed, "new_output": "1\n", "old_output": "1\n"}


def test_replay_output_shows_the_table_not_a_json_tree() -> None:
    bundle = replay_bundle("r1", [result("functions.python:0", False)], 0)
    # JupyterLab renders the first mime type it ranks highest; its JSON tree outranks text/html
    assert list(bundle)[0] == "text/html"
    assert "application/json" not in bundle
    assert bundle["application/vnd.k2lab.replay+json"]["results"][0]["call_id"] == (
        "functions.python:0"
    )
    assert "replayed run r1: 1 call, 0 changed outputs" in bundle["text/plain"]
    two = replay_bundle("r1", [result("a", True), result("b", False)], 1)
    assert "2 calls, 1 changed output, 1 skipped" in two["text/plain"]


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    # what `%k2 --help` prints (K2Magics._help; the IPython shell is test_magics.py's business)
    K2Magics._help(SimpleNamespace(k2=K2Magics.k2))  # type: ignore[arg-type]
    text = capsys.readouterr().out
    assert "%k2 export" in text and "--new" in text
    assert "::" not in text and "``" not in text
    assert text.lstrip().startswith("%k2 [--model")


def test_export_takes_the_latest_ended_run_and_counts_say_one_call(
    kernel: Kernel, fake_model: FakeModel, tmp_path: Any
) -> None:
    fake_model.script(
        [
            Turn(reasoning="Print.", tool_calls=[Call("python", {"code": "print(1)"})]),
            Turn(content="Printed 1."),
            Turn(reasoning="Again.", tool_calls=[Call("python", {"code": "print(2)"})]),
        ]
    )
    res = kernel.run(f"%k2 --new --base-url {fake_model.base_url} --approve auto print one")
    assert res["error"] is None
    kernel.wait_ended(0)
    ended = kernel.value("_k2s().runs[0].run_id")
    res = kernel.run(f"%k2 --new --base-url {fake_model.base_url} --approve ask print two")
    assert res["error"] is None
    kernel.wait_pending(1, "functions.python:0")

    # the latest run waits for a decision: export without RUN takes the one that ended
    out = tmp_path / "exported.ipynb"
    res = kernel.run(f"%k2 export --out {out}")
    assert res["error"] is None, res["error"]
    assert f"wrote {out} (1 code cell)" in res["stdout"]
    cells = nbformat.read(out, as_version=4).cells
    code = [c for c in cells if c.cell_type == "code"]
    assert [c.source for c in code] == ["print(1)"]
    assert code[0].metadata["k2lab"]["run_id"] == ended

    trace = kernel.value("_k2s().runs[0].final['text/plain']")
    assert trace.endswith("2 steps, 1 tool call"), trace
    listing = kernel.run("%k2 runs")["stdout"]
    first = next(line for line in listing.splitlines() if line.startswith(ended))
    assert "  1 call " in first, first

    res = kernel.run("%k2 stop")
    assert "stopped 1 run:" in res["stdout"]
    kernel.wait_ended(1)
