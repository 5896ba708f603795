"""The notebook face meets the labextension, in real JupyterLab + Chromium.

- **Insert as cell**: the live widget's ``k2lab:insert-cell`` DOM event is handled by the
  labextension, which inserts the call's code as a new cell right below the ``%%k2`` cell.
- **Replay in the saved-trace renderer**: a notebook holding a saved trace (made by a real
  ``k2lab run`` on the offline demo model) shows Replay on its python calls while the notebook has
  a kernel; replay runs in a k2lab sandbox started by that kernel and says whether the output
  changed. One recorded output is altered on purpose, so "output changed" must show for it and
  "same output" for the untouched call; with the kernel shut down the buttons go away.
- **Panel approval default**: with the setting unset, a new panel session carries no ``approve``
  (the server's policy applies); chosen, it is sent.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from k2lab.providers.demo.scripts import DEMO_PROMPTS
from k2lab.trace.notebook import trace_bundle
from tests.browser.conftest import ROOT
from tests.browser.test_notebook_widget import _open, _write_notebook

pytestmark = pytest.mark.browser

SAVED = ".k2lab-trace-output"
#: what the altered recorded output of the second call says (the replay cannot print it)
ALTERED = "pi_hat=2.000000 (altered in the saved trace)"


def test_insert_as_cell_from_the_widget(jupyterlab: Any, page: Any, screenshot: Any) -> None:
    name = "insert.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext k2lab"),
        nbformat.v4.new_code_cell("%%k2\n" + DEMO_PROMPTS["estimate_pi"]),
        nbformat.v4.new_markdown_cell("the last cell"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, jupyterlab.root_dir / name)
    _open(page, jupyterlab, name)

    page.locator(".jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    live = page.locator(".k2lab-live")
    live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    live.locator(".k2lab-approve").first.click()  # policy ask (the harness): approve one call
    done = live.locator('.k2lab-call.k2lab-status-done[data-call-id="functions.python:0"]')
    done.wait_for(timeout=60_000)
    code = done.locator("pre.k2lab-code").inner_text()
    assert "default_rng" in code
    cells_before = page.locator(".jp-Notebook .jp-Cell").count()

    done.locator(".k2lab-insert").click()

    # the widget heard back (preventDefault), so it did not fall back to the clipboard
    live.locator(".k2lab-note", has_text="Inserted as a cell below").wait_for(timeout=10_000)
    cells = page.locator(".jp-Notebook .jp-Cell")
    assert cells.count() == cells_before + 1
    new = cells.nth(2)  # right below the %%k2 cell, above "the last cell"
    assert "jp-CodeCell" in (new.get_attribute("class") or "")
    assert "jp-mod-active" in (new.get_attribute("class") or "")
    assert "default_rng" in new.locator(".jp-InputArea-editor").inner_text()
    shot = screenshot("notebook-insert-as-cell")
    # it went through the notebook's shared model: Undo (Z in command mode) takes it back, Redo
    # (Shift+Z) puts it back
    new.locator(".jp-InputPrompt").click()  # focus the notebook (command mode) at the new cell
    page.keyboard.press("z")
    expect(cells).to_have_count(cells_before)
    page.keyboard.press("Shift+Z")
    expect(cells).to_have_count(cells_before + 1)
    assert "default_rng" in cells.nth(2).locator(".jp-InputArea-editor").inner_text()

    # stop the run, save: the file has the cell, with the call's provenance, in that place
    live.locator(".k2lab-stop").click()
    page.locator(".k2lab-live").wait_for(state="detached", timeout=60_000)
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=20_000)
    saved = nbformat.read(jupyterlab.root_dir / name, as_version=4)
    assert [c.cell_type for c in saved.cells] == ["code", "code", "code", "markdown"]
    inserted = saved.cells[2]
    assert inserted.source.strip() == code.strip()
    assert inserted.metadata["k2lab"]["call_id"] == "functions.python:0"
    assert inserted.metadata["k2lab"]["run_id"]
    assert shot.stat().st_size > 5_000


def _demo_trace(tmp: Path) -> tuple[str, list[dict[str, Any]]]:
    """A real run on the offline demo model (auto approval), recorded by ``k2lab run --trace``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "K2LAB_BASE_URL", "K2LAB_PRESET")
    }
    env["K2LAB_DEMO_DELAY"] = "0"
    trace = tmp / "demo.jsonl"
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "k2lab"), "run", "--approve", "auto", "--trace", str(trace)]
        + ["-"],
        input=DEMO_PROMPTS["estimate_pi"],
        text=True,
        env=env,
        cwd=tmp,
        check=True,
        capture_output=True,
        timeout=60,
    )
    lines = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    header, events = lines[0], lines[1:]
    return str(header["run_id"]), events


def test_replay_in_the_saved_trace_renderer(
    jupyterlab: Any, page: Any, screenshot: Any, tmp_path: Path
) -> None:
    run_id, events = _demo_trace(tmp_path)
    results = [e for e in events if e["type"] == "tool.result"]
    assert [r["call_id"] for r in results] == ["functions.python:0", "functions.python:1"]
    assert "pi_hat=" in results[1]["output"]
    results[1]["output"] = ALTERED + "\n"  # the recorded output no longer matches what runs

    name = "saved-trace.ipynb"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%k2\n" + DEMO_PROMPTS["estimate_pi"])
    cell.outputs = [nbformat.v4.new_output("display_data", data=trace_bundle(run_id, events))]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, jupyterlab.root_dir / name)
    _open(page, jupyterlab, name)  # the kernel starts with the notebook

    trace = page.locator(SAVED)
    trace.wait_for(timeout=30_000)
    first = trace.locator('.k2lab-call[data-call-id="functions.python:0"]')
    second = trace.locator('.k2lab-call[data-call-id="functions.python:1"]')
    second.locator(".k2lab-replay-btn").wait_for(timeout=20_000)
    assert trace.locator(".k2lab-replay-btn").count() == 2  # python calls that ran, nothing else
    assert ALTERED in second.locator(".k2lab-result").inner_text()

    # the second call uses the first's variables: the replay rebuilds them, then differs
    second.locator(".k2lab-replay-btn").click()
    changed = second.locator(".k2lab-replay-result .k2lab-warning")
    changed.wait_for(timeout=40_000)
    assert changed.inner_text() == "Replay: output changed"
    new_output = second.locator(".k2lab-replay-result pre").inner_text()
    assert "pi_hat=3.14" in new_output and "altered" not in new_output
    # the seeded first call gives the same output again
    first.locator(".k2lab-replay-btn").click()
    same = first.locator(".k2lab-replay-result .k2lab-info")
    same.wait_for(timeout=40_000)
    assert same.inner_text() == "Replay: same output"
    assert trace.locator(".k2lab-replay-result .k2lab-error").count() == 0
    shot = screenshot("saved-trace-replay", trace)

    # no kernel, no Replay: shut the kernel down, the buttons go and a hint says why
    page.get_by_role("menuitem", name="Kernel", exact=True).click()
    page.get_by_role("menuitem", name="Shut Down Kernel", exact=True).click()
    trace.locator(".k2lab-replay-hint").wait_for(timeout=20_000)
    assert trace.locator(".k2lab-replay-btn").count() == 0
    screenshot("saved-trace-no-kernel", trace)
    assert shot.stat().st_size > 5_000


def _panel_session(page: Any, lab: Any, prompt: str) -> tuple[Any, dict[str, Any]]:
    """Open the panel, start a new session with ``prompt``; the panel and the session's meta."""
    from tests.browser.test_panel import open_lab, open_panel

    before = {s["id"] for s in lab.api("k2lab/api/sessions")["sessions"]}
    open_lab(page, lab)
    panel = open_panel(page)
    if before:
        panel.locator("button.k2lab-new-session").click()
    panel.locator(".k2lab-prompt-input").fill(prompt)
    panel.locator("button.k2lab-send").click()
    panel.locator(".k2lab-call").first.wait_for(timeout=30_000)
    new = [s for s in lab.api("k2lab/api/sessions")["sessions"] if s["id"] not in before]
    assert len(new) == 1
    return panel, new[0]


def test_panel_leaves_the_approval_policy_to_the_server(jupyterlab: Any, page: Any) -> None:
    """Unset, the panel sends no ``approve``: the server's policy (here $K2LAB_APPROVE=ask)
    decides. Chosen in the settings, it is sent with the new session."""
    settings_url = "lab/api/settings/k2lab:plugin"
    jupyterlab.api(settings_url, "PUT", {"raw": "{}"})
    try:
        panel, meta = _panel_session(page, jupyterlab, DEMO_PROMPTS["estimate_pi"])
        assert meta["settings"] == {}  # nothing the user did not choose
        # the server's default applied: the call waits for a person
        panel.locator(".k2lab-call[data-state=pending] button.k2lab-approve").wait_for()
        panel.locator("button.k2lab-stop").click()
        panel.locator(".k2lab-run-end").wait_for(timeout=30_000)

        jupyterlab.api(settings_url, "PUT", {"raw": json.dumps({"approve": "never"})})
        panel, meta = _panel_session(page, jupyterlab, DEMO_PROMPTS["estimate_pi"])
        assert meta["settings"] == {"approve": "never"}
        panel.locator(".k2lab-call[data-state=reject]").first.wait_for(timeout=30_000)
        assert panel.locator(".k2lab-call[data-state=pending]").count() == 0
        panel.locator(".k2lab-run-end").wait_for(timeout=60_000)
    finally:
        jupyterlab.api(settings_url, "PUT", {"raw": "{}"})


def test_heavy_verify_run_shows_lanes_and_the_verify_pass_live(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    """``%%k2 --heavy 2 --verify`` in real JupyterLab: while it runs, both lanes side by side with
    their step, calls and tokens, then the aggregation and the verify pass checking its answer
    (the demo model streams slowly here so the live view can be looked at before it is saved)."""
    name = "heavy.ipynb"
    _write_notebook(
        jupyterlab.root_dir,
        name,
        setup="import os\nos.environ['K2LAB_DEMO_DELAY'] = '0.05'",
        magic="%%k2 --heavy 2 --verify --approve auto",
    )
    _open(page, jupyterlab, name)
    page.locator(".jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    live = page.locator(".k2lab-live")
    live.wait_for(timeout=60_000)
    expect(live.locator(".k2lab-runlane")).to_have_count(2, timeout=30_000)
    expect(live.locator(".k2lab-status")).to_contain_text("heavy: 2 lanes")
    for lane in ("1", "2"):
        head = live.locator(f'.k2lab-runlane[data-lane="{lane}"] .k2lab-runlane-head')
        expect(head).to_contain_text("running")
        expect(head).to_contain_text("1 tool call", timeout=30_000)
    live.locator('.k2lab-runlane[data-lane="1"] > summary').click()
    expect(live.locator('.k2lab-runlane[data-lane="1"] .k2lab-call').first).to_contain_text(
        "ran", timeout=30_000
    )
    screenshot("notebook-widget-heavy-lanes", live)
    # the aggregation, then the verify pass checking its answer, beside it
    expect(live.locator(".k2lab-aggregation-label")).to_be_visible(timeout=60_000)
    expect(live.locator(".k2lab-runlanes-note")).to_contain_text("finished: 1, 2")
    expect(live.locator(".k2lab-verify")).to_contain_text("checking the answer", timeout=60_000)
    screenshot("notebook-widget-heavy-verify", live)
