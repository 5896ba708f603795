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


def test_fork_a_heavy_lanes_call_from_the_panel(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    """Heavy 2 with the demo model: once the heavy run ended, lane 2's first call offers Fork
    from here (the note says whose sandbox the branch runs in); the branch is a single run that
    names lane 2's run id as its parent, runs the edited code and completes."""
    from playwright.sync_api import expect

    from tests.browser.test_panel_scaling import start_heavy_pi

    panel, heavy = start_heavy_pi(page, jupyterlab)
    widen_panel(page)
    expect(heavy.locator('.k2lab-call[data-state="pending"]')).to_have_count(2, timeout=60_000)
    assert heavy.locator("button.k2lab-fork").count() == 0  # a going run offers no fork
    panel.locator("button.k2lab-approve-all").click()
    expect(heavy.locator(".k2lab-aggregate .k2lab-answer")).not_to_be_empty(timeout=120_000)
    panel.locator(".k2lab-run-options > summary").click()  # closed: the screenshots show runs
    sid = next(s["id"] for s in jupyterlab.api("k2lab/api/sessions")["sessions"]
               if s["settings"].get("heavy"))  # fmt: skip

    def events() -> list[dict[str, Any]]:
        return [e["event"] for e in jupyterlab.api(f"k2lab/api/sessions/{sid}")["events"]]

    root = next(e for e in events() if e["type"] == "run.start")["run_id"].rpartition(".")[0]
    tile = heavy.locator('.k2lab-lanes > .k2lab-lane[data-lane="2"]')
    if tile.get_attribute("aria-expanded") != "true":  # a lane whose call waited opened itself
        tile.click()
    expect(tile).to_have_attribute("aria-expanded", "true")
    card = heavy.locator(f'.k2lab-call[data-run-id="{root}.2"]').first
    fork = card.locator("button.k2lab-fork")
    expect(fork).to_be_enabled(timeout=30_000)  # once the whole heavy run is over
    assert (
        heavy.locator(f'.k2lab-call[data-run-id="{root}.aggregate"] button.k2lab-fork').count() == 0
    )
    fork.click()
    editor = card.locator(".k2lab-fork-editor textarea.k2lab-editor")
    code = editor.input_value()
    assert "n = 1000000" in code
    note = card.locator(".k2lab-fork-editor").inner_text()
    assert "single run on lane 2's conversation" in note and "not lane 2's" in note
    editor.fill(code.replace("n = 1000000", "n = 20000"))
    screenshot("panel-fork-lane-editor", card)
    card.locator("button.k2lab-fork-run").click()

    # the branch: a plain run block below the heavy one, its first card ran the edited code
    branch = panel.locator(".k2lab-run[data-run-id]:not(.k2lab-lane-body):not(.k2lab-aggregate)")
    expect(branch).to_have_count(1, timeout=30_000)
    first = branch.locator(".k2lab-call").nth(0)
    first.locator(".k2lab-result .k2lab-stdout").filter(has_text="n=20000").wait_for()
    assert first.get_attribute("data-state") == "edit"
    approve_waiting(branch.locator(".k2lab-call").nth(1))
    branch.locator(".k2lab-run-end").wait_for(timeout=60_000)
    assert branch.locator(".k2lab-run-end").inner_text().startswith("completed")
    branch.evaluate("el => el.scrollIntoView({block: 'start'})")
    assert screenshot("panel-fork-lane", panel).stat().st_size > 10_000

    start = next(e for e in events() if e["type"] == "run.start" and e.get("forked_from_call"))
    assert start["parent_run_id"] == f"{root}.2" and not start.get("lane")
    lane_call = next(
        e for e in events() if e["type"] == "tool.proposed" and e["run_id"] == f"{root}.2"
    )
    assert start["forked_from_call"] == lane_call["call_id"]
