"""A `%%k2` run's trace survives a page reload in real JupyterLab + Chromium (issue 8, item 15).

- Save and reload while the run waits for approval: the view comes back; when the run ends it is
  replaced by the saved trace (the labextension applies the update the reloaded page would drop);
  saved again, the ``.ipynb`` holds the trace bundle, and after a kernel restart and a reload the
  cell renders the trace, not "Error displaying widget: model not found".
- Reload without saving: the view is gone; running the cell again stops the run nobody can see
  (a notice says why) and its trace lands in that cell, above the new run.

The offline demo model answers (no key), with ``K2LAB_APPROVE=ask`` from the harness.
"""

from __future__ import annotations

from typing import Any

import nbformat
import pytest

from k2lab.providers.demo.scripts import DEMO_PROMPTS
from k2lab.trace.notebook import MIMETYPE, runs_from_notebook
from tests.browser.test_notebook_widget import SAVED_TRACE, _open

pytestmark = pytest.mark.browser

WIDGET = "application/vnd.jupyter.widget-view+json"


def _write(root: Any, name: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext k2lab"),
        nbformat.v4.new_code_cell("%%k2\n" + DEMO_PROMPTS["estimate_pi"]),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, root / name)


def _run_both(page: Any) -> Any:
    page.locator(".jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    live = page.locator(".k2lab-live")
    live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    return live


def _save(page: Any) -> None:
    page.locator(".jp-Notebook").first.click()
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=20_000)


def _restart_kernel(lab: Any, name: str) -> None:
    (sess,) = [s for s in lab.api("api/sessions") if s["path"] == name]
    lab.api(f"api/kernels/{sess['kernel']['id']}/restart", "POST", {})


def test_save_reload_during_a_run_keeps_its_trace(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    name = "reload-saved.ipynb"
    _write(jupyterlab.root_dir, name)
    _open(page, jupyterlab, name)
    live = _run_both(page)
    run_id = live.get_attribute("data-k2lab-run-id")
    _save(page)
    saved = nbformat.read(jupyterlab.root_dir / name, as_version=4)
    assert WIDGET in saved.cells[1].outputs[0]["data"]  # the view, as the issue saw it

    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    back = page.locator(f'.k2lab-live[data-k2lab-run-id="{run_id}"]')
    back.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    shot_back = screenshot("notebook-reload-view-back")
    back.locator(".k2lab-approve-all").click()

    # the run ends: its view becomes the saved trace although this page never displayed it
    back.wait_for(state="detached", timeout=60_000)
    cell = page.locator(".jp-Cell").nth(1)
    cell.locator(SAVED_TRACE).first.wait_for(timeout=30_000)
    _save(page)
    nb = nbformat.read(jupyterlab.root_dir / name, as_version=4)
    outs = nb.cells[1].outputs
    assert not [o for o in outs if WIDGET in o.get("data", {})]
    (run,) = runs_from_notebook(nb)
    assert run.run_id == run_id and run.cell_index == 1
    assert run.events[-1]["type"] == "run.end" and run.events[-1]["stop_reason"] == "completed"
    bundle = next(o for o in outs if MIMETYPE in o["data"])["data"]
    assert {"text/html", "text/markdown", "text/plain"} <= set(bundle)

    # a new kernel and a fresh page: the cell shows the trace, not "model not found"
    _restart_kernel(jupyterlab, name)
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.locator(".jp-Cell").nth(1).locator(SAVED_TRACE).first.wait_for(timeout=60_000)
    page.wait_for_selector("text=| Idle", timeout=60_000)
    assert page.locator("text=model not found").count() == 0
    assert page.locator(".k2lab-live").count() == 0
    shot_after = screenshot("notebook-reload-after-restart")
    for shot in (shot_back, shot_after):
        assert shot.stat().st_size > 5_000


def test_reload_without_saving_then_rerun_keeps_both_traces(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    name = "reload-unsaved.ipynb"
    _write(jupyterlab.root_dir, name)
    _open(page, jupyterlab, name)
    page.on("dialog", lambda d: d.accept())  # "leave the page with unsaved changes?"
    first = _run_both(page).get_attribute("data-k2lab-run-id")

    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector("text=| Idle", timeout=60_000)
    assert page.locator(".k2lab-live").count() == 0  # the view is gone with the unsaved output

    # run the cell again: the run nobody can see is stopped, its trace shown in this cell
    page.locator(".jp-Cell").nth(1).click()
    page.keyboard.press("Shift+Enter")
    live = page.locator(".k2lab-live")
    live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=90_000)
    cell = page.locator(".jp-Cell").nth(1)
    old = cell.locator(SAVED_TRACE).filter(has_text="no view of it was open")
    old.first.wait_for(timeout=60_000)
    second = live.get_attribute("data-k2lab-run-id")
    assert second != first
    live.locator(".k2lab-approve-all").click()
    live.wait_for(state="detached", timeout=60_000)
    shot = screenshot("notebook-reload-unsaved-rerun")
    _save(page)

    nb = nbformat.read(jupyterlab.root_dir / name, as_version=4)
    runs = runs_from_notebook(nb)
    assert [r.run_id for r in runs] == [first, second]
    assert all(r.cell_index == 1 for r in runs)
    stopped, done = runs
    assert stopped.events[-1]["stop_reason"] == "stopped"
    assert any(e["type"] == "notice" and e["kind"] == "stopped" for e in stopped.events)
    assert done.events[-1]["stop_reason"] == "completed"
    assert shot.stat().st_size > 5_000


def test_a_kernel_restart_during_a_run_leaves_its_trace(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    name = "restart-during-run.ipynb"
    _write(jupyterlab.root_dir, name)
    _open(page, jupyterlab, name)
    live = _run_both(page)
    run_id = live.get_attribute("data-k2lab-run-id")
    _restart_kernel(jupyterlab, name)
    # the run was stopped before the kernel went: its trace replaced the view
    cell = page.locator(".jp-Cell").nth(1)
    cell.locator(SAVED_TRACE).filter(has_text="kernel was shut down or restarted").first.wait_for(
        timeout=60_000
    )
    assert page.locator(".k2lab-live").count() == 0
    page.wait_for_selector("text=| Idle", timeout=60_000)
    shot = screenshot("notebook-restart-during-run")
    _save(page)
    (run,) = runs_from_notebook(nbformat.read(jupyterlab.root_dir / name, as_version=4))
    assert run.run_id == run_id and run.events[-1]["stop_reason"] == "stopped"
    assert shot.stat().st_size > 5_000
