"""The panel's "Fork from here" in real Chromium against a real JupyterLab and the offline demo
model: a python call of an ended run is run again with edited code, and the branch runs as the
session's next run (``POST sessions/{id}/fork``), its cards live below the parent's."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.test_panel import widen_panel
from tests.browser.test_panel_ui import start_demo

pytestmark = pytest.mark.browser


def approve_waiting(card: Any) -> None:
    card.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    card.locator("button.k2lab-approve").click()


def test_fork_a_call_with_edited_code_from_the_panel(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    before = {s["id"] for s in jupyterlab.api("k2lab/api/sessions")["sessions"]}
    panel = start_demo(page, jupyterlab)  # a fresh session running the pi demo
    widen_panel(page)
    first = panel.locator(".k2lab-call").nth(0)
    # a going run offers no fork (the branch would have to wait for it)
    approve_waiting(first)
    assert first.locator("button.k2lab-fork").count() == 0
    approve_waiting(panel.locator(".k2lab-call").nth(1))
    panel.locator(".k2lab-run-end").first.wait_for()
    first.locator(".k2lab-result .k2lab-stdout").filter(has_text="n=1000000").wait_for()

    # the ended run's python calls offer Fork from here; the editor holds the code that ran
    fork = first.locator("button.k2lab-fork")
    fork.wait_for()
    assert panel.locator("button.k2lab-fork").count() == 2
    fork.click()
    editor = first.locator(".k2lab-fork-editor textarea.k2lab-editor")
    code = editor.input_value()
    assert "n = 1000000" in code
    assert "not rewound" in first.locator(".k2lab-fork-editor").inner_text()
    editor.fill(code.replace("n = 1000000", "n = 20000"))
    screenshot("panel-fork-editor", first)
    first.locator("button.k2lab-fork-run").click()

    # the branch runs as the next run: its first card ran the edited code, without a question
    runs = panel.locator(".k2lab-run[data-run-id]")
    runs.nth(1).wait_for()
    branch = runs.nth(1)
    b_first = branch.locator(".k2lab-call").nth(0)
    b_first.locator(".k2lab-result .k2lab-stdout").filter(has_text="n=20000").wait_for()
    assert b_first.get_attribute("data-state") == "edit"
    approve_waiting(branch.locator(".k2lab-call").nth(1))  # later calls are decided as usual
    branch.locator(".k2lab-run-end").wait_for()
    assert branch.locator(".k2lab-run-end").inner_text().startswith("completed")
    # the parent's cards are as they were; the branch's ended cards can be forked in turn
    assert "n=1000000" in first.locator(".k2lab-result .k2lab-stdout").inner_text()
    branch.locator("button.k2lab-fork").first.wait_for()
    branch.evaluate("el => el.scrollIntoView({block: 'start'})")
    shot = screenshot("panel-fork", panel)
    assert shot.stat().st_size > 10_000

    # what the server stored: the branch names its parent run and the call
    sid = next(s["id"] for s in jupyterlab.api("k2lab/api/sessions")["sessions"]
               if s["id"] not in before)  # fmt: skip
    evs = [e["event"] for e in jupyterlab.api(f"k2lab/api/sessions/{sid}")["events"]]
    starts = [e for e in evs if e["type"] == "run.start"]
    assert len(starts) == 2
    assert starts[1]["parent_run_id"] == starts[0]["run_id"]
    first_call = next(e for e in evs if e["type"] == "tool.proposed")
    assert starts[1]["forked_from_call"] == first_call["call_id"]
