"""The panel's *Variables* context (issue 10): a summary of the notebook kernel's live variables
(names, types, shapes, DataFrame columns and dtypes, a few rows) attached to a message, bounded,
read without leaving a trace in the user's namespace, history or outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from tests.browser.test_panel import copy_to_docs, new_notebook, open_lab, open_panel
from tests.browser.test_panel_ui import fresh_session

pytestmark = pytest.mark.browser

DATA = """import numpy as np
import pandas as pd

sales = pd.DataFrame({"units": [3, 5, 2, 8], "price": [9.5, 4.25, 12.0, 1.75]})
grid = np.zeros((3, 4))
threshold = 0.25
label = "weekly"
_private = 1
def helper():
    return 1
"""


def run_cell(page: Any, index: int) -> None:
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


def attach_variables(panel: Any, chip_says: str) -> Any:
    """Pick *Variables*; the chip names what is attached; returns the chip."""
    panel.locator(".k2lab-context-select").select_option("variables")
    chip = panel.locator(".k2lab-context-chip")
    expect(chip).to_contain_text(chip_says)
    return chip


def send(panel: Any, text: str) -> Any:
    """Send ``text`` and wait for the run to end; returns the folded context of its prompt."""
    panel.locator(".k2lab-prompt-input").fill(text)
    panel.locator("button.k2lab-send").click()
    panel.locator(".k2lab-run-end").wait_for()
    return panel.locator("details.k2lab-prompt-context")


def open_notebook(page: Any, lab: Any, name: str, cells: list[str]) -> Any:
    nb = new_notebook([nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(nb, Path(lab.root_dir) / name)
    open_lab(page, lab, name)
    page.wait_for_selector("text=| Idle", timeout=60_000)
    panel = open_panel(page)
    fresh_session(panel)
    return panel


def test_variables_context_summarises_the_kernel_and_is_sent(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    panel = open_notebook(
        page,
        jupyterlab,
        "variables.ipynb",
        [DATA, "print(sorted(k for k in globals() if not k.startswith('_')))"],
    )
    run_cell(page, 0)
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells.nth(0).locator(".jp-InputPrompt")).to_contain_text("[1]")
    # sales, grid, threshold, label: modules, functions and _names are left out
    chip = attach_variables(panel, "4 variables of the kernel of variables.ipynb")
    context = send(panel, "What data do I have?")
    expect(context.locator("summary")).to_contain_text("the live variables in the kernel")
    context.locator("summary").click()
    copy_to_docs(screenshot("panel-variables", panel), "panel-variables.png")
    sent = context.locator("pre").text_content() or ""
    assert "sales: pandas.DataFrame, 4 rows x 2 columns" in sent, sent
    assert "columns: units (int64), price (float64)" in sent, sent
    assert "first rows:" in sent and "12.00" in sent  # a few rows of the frame
    assert "grid: numpy.ndarray, shape (3, 4), dtype float64" in sent, sent
    assert "threshold: float, 0.25" in sent and "label: str, 6 chars: 'weekly'" in sent
    for hidden in ("helper", "_private", "np:", "pd:", "In:", "get_ipython"):
        assert hidden not in sent, hidden
    # the read left no trace: no new name in the namespace, no execution count, no output
    run_cell(page, 1)
    out = cells.nth(1).locator(".jp-OutputArea-output")
    expect(out).to_contain_text("'sales', 'threshold'")
    names = out.text_content() or ""
    assert "'ns'" not in names and "'summary'" not in names, names
    expect(cells.nth(1).locator(".jp-InputPrompt")).to_contain_text("[2]")
    assert cells.nth(0).locator(".jp-OutputArea-output").count() == 0
    # a cell that defines a new variable: the chip follows
    run_cell(page, 1)  # re-run: no change, still 4
    expect(chip).to_contain_text("4 variables")
    page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("extra = [1, 2, 3]")
    page.keyboard.press("Shift+Enter")
    expect(chip).to_contain_text("5 variables")


def test_variables_context_is_bounded_and_says_when_the_kernel_is_busy(
    jupyterlab: Any, page: Any
) -> None:
    panel = open_notebook(
        page,
        jupyterlab,
        "many_variables.ipynb",
        ["globals().update({f'v{i:02d}': list(range(i)) for i in range(60)})", "import time"],
    )
    run_cell(page, 0)
    chip = attach_variables(panel, "60 variables of the kernel of many_variables.ipynb")
    sent = send(panel, "Summarise.").locator("pre").text_content() or ""
    assert sent.count("\nv") == 39 and sent.rstrip().endswith("... and 20 more variables"), sent
    assert "v00: list, length 0: []" in sent and "v39:" in sent and "v40:" not in sent
    # a busy kernel is not waited for: the chip says so and nothing is attached
    cell = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".cm-content")
    cell.click()
    page.keyboard.press("Control+a")
    page.keyboard.type("import time; time.sleep(12)")
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector("text=| Busy", timeout=10_000)
    panel.locator(".k2lab-context-select").select_option("none")
    panel.locator(".k2lab-context-select").select_option("variables")
    expect(chip).to_contain_text("reading the kernel")
    expect(chip).to_contain_text("the kernel is busy", timeout=10_000)
    expect(chip).to_contain_text("Nothing attached")
    page.wait_for_selector("text=| Idle", timeout=30_000)
    expect(chip).to_contain_text("60 variables", timeout=10_000)  # read again once it ran
