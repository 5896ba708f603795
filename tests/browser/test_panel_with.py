"""The panel's "Copy into the sandbox" (``%k2 --with`` in the panel, issue 10): a DataFrame
defined in a real notebook kernel is named under *Variables*, copied by the server into the
session's sandbox, and ``demo: summarise my data`` describes it from real pandas output; a name
the kernel does not have is a clear error in the panel and no run starts."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from k2lab.providers.demo import DEMO_PROMPTS
from tests.browser.test_panel import copy_to_docs
from tests.browser.test_panel_variables import attach_variables, open_notebook, run_cell

pytestmark = pytest.mark.browser

DATA = """import pandas as pd

sales = pd.DataFrame({"units": [3, 5, 2, 8, 4], "price": [9.5, 4.25, 12.0, 1.75, 6.0]})
"""


def test_a_dataframe_copied_into_the_sandbox_is_summarised(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    panel = open_notebook(page, jupyterlab, "with.ipynb", [DATA])
    run_cell(page, 0)
    cells = page.locator(".jp-Notebook .jp-Cell")
    expect(cells.nth(0).locator(".jp-InputPrompt")).to_contain_text("[1]")
    attach_variables(panel, "1 variable of the kernel of with.ipynb")
    names = panel.locator(".k2lab-copy-names")
    expect(names).to_be_visible()

    # a name the kernel does not have: said in the panel, no run
    names.fill("sales, nope")
    panel.locator(".k2lab-prompt-input").fill(DEMO_PROMPTS["your_data"])
    panel.locator("button.k2lab-send").click()
    notice = panel.locator(".k2lab-panel-notice")
    expect(notice).to_contain_text("no variable 'nope' in the notebook's kernel")
    expect(notice).to_have_class("k2lab-panel-notice k2lab-error")
    expect(panel.locator(".k2lab-run")).to_have_count(0)

    names.fill("sales")
    panel.locator("button.k2lab-send").click()
    panel.locator(".k2lab-call[data-state=pending] button.k2lab-approve").click()
    panel.locator(".k2lab-run-end").wait_for(timeout=60_000)
    run = panel.locator(".k2lab-run").last
    expect(run).to_contain_text("copied into the sandbox (--with): sales (DataFrame, shape (5, 2)")
    expect(run.locator(".k2lab-call").first).to_contain_text("rows=5 columns=2")
    expect(run).to_contain_text("5 rows, 2 columns")
    expect(names).to_have_value("")  # the next message copies only what is named again
    # the prompt shown is what the user typed (the model's note on the copy is not in it)
    prompt = run.locator(".k2lab-prompt").first
    expect(prompt).to_contain_text(DEMO_PROMPTS["your_data"])
    expect(prompt).not_to_contain_text("The user copied these variables")
    # the notebook itself has no new output and no new execution count
    expect(cells.nth(0).locator(".jp-InputPrompt")).to_contain_text("[1]")
    copy_to_docs(screenshot("panel-with", panel), "panel-with.png")


def test_a_data_folder_set_in_the_panel_is_read_in_the_sandbox(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    """``--data`` in the panel (Run options' data paths): the folder is mounted read-only in the
    session's sandbox, the model is told where, and its CSV is read there by real pandas."""
    from tests.browser.test_panel import approve_until_end
    from tests.browser.test_panel_scaling import send_with_options

    shop = jupyterlab.root_dir / "shop"
    shop.mkdir(exist_ok=True)
    rows = [f"{d},{r},{10 * d + i}" for d in range(1, 8) for i, r in enumerate("NSEW")]
    (shop / "sales.csv").write_text("day,region,sales\n" + "\n".join(rows) + "\n")
    panel = send_with_options(page, jupyterlab, DEMO_PROMPTS["your_data"], data="shop")
    end = approve_until_end(page, panel)  # the server's policy is ask
    expect(end).to_contain_text("completed")
    run = panel.locator(".k2lab-run").last
    calls = run.locator(".k2lab-call")
    expect(calls.first).to_contain_text("sales.csv")  # the folder listed, from the sandbox
    expect(calls.last).to_contain_text("rows=28 columns=3")  # the CSV read there by pandas
    expect(run.locator(".k2lab-answer, .k2lab-content").last).to_contain_text("28 rows, 3 columns")
    screenshot("panel-data", panel)
