"""``%k2 --notebook-tools`` in real JupyterLab + Chromium, against a scripted fake model.

The kernel's notebook tools go over a comm to the page (``labextension/src/kernelNotebookTools.ts``)
and act on the notebook whose kernel asked, not on whichever notebook is in focus.
"""

from __future__ import annotations

import time
from typing import Any

import nbformat
import pytest

from tests.browser.test_notebook_widget import _open
from tests.fixtures.fake_server import Call, FakeModel, Turn

pytestmark = pytest.mark.browser

MAGIC = "magic-tools.ipynb"
OTHER = "other-tools.ipynb"


def _notebook(root: Any, name: str, sources: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, root / name)


def _tab(page: Any, name: str) -> None:
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name).click()


def _visible_cells(page: Any) -> Any:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")


def test_k2_notebook_tools_read_and_insert_a_cell_after_approval(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    model = FakeModel()
    model.script(
        [
            # the model answers late, so the read happens while the other notebook is in focus
            Turn(
                reasoning="I read the notebook.", tool_calls=[Call("notebook_read", {})], latency=4
            ),
            Turn(
                reasoning="I add the cell.",
                tool_calls=[Call("notebook_insert_cell", {"index": -1, "source": "print(6 * 7)"})],
            ),
            Turn(content="I added a cell that prints 6 * 7."),
            # after a kernel restart, the same cell's run reads again
            Turn(tool_calls=[Call("notebook_read", {"outputs": False})]),
            Turn(content="Read again after the restart."),
        ]
    )
    try:
        root = jupyterlab.root_dir
        magic = f"%k2 --notebook-tools --approve auto --base-url {model.base_url} --model fake-k2"
        _notebook(root, MAGIC, ["%load_ext k2lab", f"{magic} Add a cell that prints 6 * 7."])
        _notebook(root, OTHER, ["other_notebook_cell = 1"])
        _open(page, jupyterlab, MAGIC)
        # the other notebook opens beside it (from the file browser) and takes the focus
        page.locator(".jp-DirListing-itemName", has_text=OTHER).dblclick()
        _visible_cells(page).filter(has_text="other_notebook_cell").wait_for()
        _tab(page, MAGIC)
        _visible_cells(page).first.click()
        page.keyboard.press("Shift+Enter")
        page.keyboard.press("Control+Enter")  # runs the %k2 cell without adding one below
        page.locator(".k2lab-live").wait_for(timeout=60_000)
        _tab(page, OTHER)  # in focus while the model reads
        deadline = time.monotonic() + 60
        while len(model.requests) < 2:
            assert time.monotonic() < deadline, "the model was never sent the read's result"
            time.sleep(0.2)
        read = [m for m in model.requests[1]["messages"] if m["role"] == "tool"][-1]["content"]
        assert f"Notebook {MAGIC} (2 cells" in read, read  # the notebook that asked
        assert "%load_ext k2lab" in read and "other_notebook_cell" not in read

        # the insert waits for a person even under --approve auto; the card shows its arguments
        _tab(page, MAGIC)
        live = page.locator(".k2lab-live")
        card = live.locator(".k2lab-call.k2lab-status-pending").first
        card.wait_for(timeout=60_000)
        assert "notebook_insert_cell" in card.inner_text()
        assert "print(6 * 7)" in card.inner_text()
        screenshot("notebook-tools-magic-waiting", live)
        # the ended read card offers Fork, but no Replay and no "Insert as cell": only python
        # and read-only MCP calls run again, and only python code makes a cell
        read_card = live.locator(".k2lab-call", has_text="notebook_read").first
        assert read_card.locator(".k2lab-fork").count() == 1
        assert read_card.locator(".k2lab-replay, .k2lab-insert").count() == 0
        card.locator(".k2lab-approve").click()

        cells = _visible_cells(page)
        cells.nth(2).wait_for(timeout=30_000)
        assert cells.count() == 3
        assert "print(6 * 7)" in cells.nth(2).locator(".jp-InputArea").inner_text()
        page.get_by_text("I added a cell that prints 6 * 7.").wait_for(timeout=60_000)
        shot = screenshot("notebook-tools-magic", page)
        assert shot.exists()
        _tab(page, OTHER)
        assert _visible_cells(page).count() == 1  # the notebook in focus earlier is untouched

        # a restarted kernel still reaches the page (the connection keeps its comm targets)
        _tab(page, MAGIC)
        page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").click()
        page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel…").click()
        page.locator(".jp-Dialog-button.jp-mod-accept").click()
        page.wait_for_selector("text=| Idle", timeout=60_000)
        _visible_cells(page).first.click()
        page.keyboard.press("Shift+Enter")
        page.keyboard.press("Control+Enter")
        page.get_by_text("Read again after the restart.").wait_for(timeout=60_000)
        last = model.requests[-1]["messages"]
        assert sum(m["role"] == "user" for m in last) == 1  # a new kernel: a new conversation
        again = [m for m in last if m["role"] == "tool"][-1]
        assert f"Notebook {MAGIC} (3 cells" in again["content"], again["content"]
    finally:
        model.close()
