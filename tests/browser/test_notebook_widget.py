"""The %k2 live view in real JupyterLab + Chromium: stream, edit a call and run it, save, reload.

The server has no key, so the offline demo model answers, with ``K2LAB_APPROVE=ask`` (set by the
harness): every call waits for a click.
"""

from __future__ import annotations

import shutil
from typing import Any

import nbformat
import pytest

from k2lab.providers.demo.scripts import DEMO_PROMPTS
from k2lab.trace.notebook import MIMETYPE, runs_from_notebook
from tests.browser.conftest import ROOT

pytestmark = pytest.mark.browser

EDITED_MARK = "edited in the browser"
#: the saved trace as JupyterLab shows it: the labextension's renderer, else the HTML fallback
SAVED_TRACE = ".k2lab-trace-output, .jp-RenderedHTMLCommon .k2lab-trace"


def _write_notebook(root: Any, name: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext k2lab"),
        nbformat.v4.new_code_cell("%%k2\n" + DEMO_PROMPTS["estimate_pi"]),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, root / name)


def _open(page: Any, lab: Any, name: str) -> None:
    page.goto(lab.lab_url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # the toolbar can say idle before the kernel is connected: wait for the status bar
    page.wait_for_selector("text=| Idle", timeout=60_000)


def test_edit_run_save_reload(jupyterlab: Any, page: Any, screenshot: Any) -> None:
    name = "widget.ipynb"
    _write_notebook(jupyterlab.root_dir, name)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    _open(page, jupyterlab, name)

    # run both cells
    page.locator(".jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")

    live = page.locator(".k2lab-live")
    live.wait_for(timeout=60_000)
    # the reasoning streams into the first step's block
    page.wait_for_function(
        "() => { const p = document.querySelector('.k2lab-live .k2lab-reasoning pre');"
        " return p && p.textContent.length > 40; }",
        timeout=60_000,
    )
    card = live.locator(".k2lab-call.k2lab-status-pending").first
    card.wait_for(timeout=60_000)
    assert "offline demo model" in live.locator(".k2lab-head").inner_text()

    # Edit & run: change the code, run the edit
    card.locator(".k2lab-edit").click()
    editor = live.locator(".k2lab-editor").first
    original = editor.input_value()
    assert "default_rng" in original
    editor.fill(original + f'\nprint("{EDITED_MARK}")')
    shot_edit = screenshot("notebook-widget-editing", live)
    live.locator(".k2lab-run-edited").click()

    # the result of the edited code shows on the card, recorded as an edit
    done = live.locator(".k2lab-call.k2lab-status-done").first
    try:
        done.wait_for(timeout=20_000)
    except Exception:
        print("\n".join(console[-40:]))
        print("NOTE", live.locator(".k2lab-note").inner_text())
        raise
    assert EDITED_MARK in done.locator(".k2lab-result").inner_text()
    assert "edited by the user" in done.inner_text()

    # the next call waits; approve the rest of the run
    live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    shot_live = screenshot("notebook-widget-live", live)
    shot_page = screenshot("notebook-widget-page")
    live.locator(".k2lab-approve-all").click()

    # at the end the live view becomes the saved trace: the labextension's renderer of the trace
    # mimetype (or, without it, the text/html fallback)
    live.wait_for(state="detached", timeout=60_000)
    saved = page.locator(SAVED_TRACE).filter(has_text=EDITED_MARK)
    saved.first.wait_for(timeout=30_000)
    assert "3.14" in saved.first.inner_text()  # the answer is there
    shot_saved = screenshot("notebook-widget-saved", saved.first)

    # save, then reload the page: the trace is still rendered from the notebook file
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=20_000)
    nb = nbformat.read(jupyterlab.root_dir / name, as_version=4)
    runs = runs_from_notebook(nb)
    assert len(runs) == 1
    decisions = [e for e in runs[0].events if e["type"] == "tool.decision"]
    assert decisions[0]["decision"] == "edit" and EDITED_MARK in decisions[0]["arguments"]
    outputs = nb.cells[1].outputs
    assert any(MIMETYPE in o.get("data", {}) for o in outputs)

    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    again = page.locator(SAVED_TRACE).filter(has_text=EDITED_MARK)
    again.first.wait_for(timeout=60_000)
    assert "3.14" in again.first.inner_text()
    shot_reload = screenshot("notebook-widget-reloaded", again.first)

    for shot in (shot_edit, shot_live, shot_saved, shot_reload):
        assert shot.stat().st_size > 5_000
    docs = ROOT / "docs" / "img"
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot_page, docs / "notebook-widget.png")


def test_run_all_on_the_demo_notebook(jupyterlab: Any, page: Any, screenshot: Any) -> None:
    """Run All: the follow-up queues behind the first run, and the buttons keep working while the
    `await k2lab.wait()` cell blocks (JupyterLab sends widget messages over a kernel subshell)."""
    shutil.copyfile(ROOT / "examples" / "demo.ipynb", jupyterlab.root_dir / "demo.ipynb")
    _open(page, jupyterlab, "demo.ipynb")
    page.locator(".jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    lives = page.locator(".k2lab-live")
    lives.nth(1).wait_for(timeout=60_000)  # both %k2 cells ran and returned at once
    assert "queued" in lives.nth(1).locator(".k2lab-head").inner_text() or (
        lives.nth(1).locator(".k2lab-reasoning").count() == 0
    )
    for _ in range(2):  # the first run, then the follow-up once it starts
        first = page.locator(".k2lab-live").first
        first.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
        run_id = first.get_attribute("data-k2lab-run-id")
        first.locator(".k2lab-approve-all").click()
        page.locator(f'.k2lab-live[data-k2lab-run-id="{run_id}"]').wait_for(
            state="detached", timeout=60_000
        )

    # the wait cell returned, then `%k2 runs` listed both runs as completed
    last = page.locator(".jp-Cell").last.locator(".jp-OutputArea-output")
    listing = last.filter(has_text="completed").first
    listing.wait_for(timeout=60_000)
    # text_content: the notebook hides off-screen cells (content-visibility), inner_text is ""
    assert (listing.text_content() or "").count("completed") == 2
    traces = page.locator(SAVED_TRACE)
    assert traces.count() == 2
    assert traces.nth(1).locator("img").count() >= 1  # the follow-up's plot
    screenshot("notebook-demo-run-all")
