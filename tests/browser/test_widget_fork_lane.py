"""The notebook widget's Fork from here on a heavy lane's card, in real Chromium (the widget's ES
module mounted as JupyterLab does): offered once the heavy run ended, the editor says whose
sandbox the branch runs in, and the fork message carries the lane's run id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_notebook_widget import _deliver, _mount, _widget_messages

pytestmark = pytest.mark.browser


def test_a_lanes_card_offers_fork_and_sends_the_lanes_run_id(page: Any, screenshot: Any) -> None:
    from tests.notebook.test_state import heavy_events

    events = heavy_events()
    ended = [
        i for i, e in enumerate(events) if e["type"] == "run.start" and e.get("lane") == "aggregate"
    ]
    _mount(page)
    w, _ = _widget_messages(events[: ended[0]])  # lanes over, the aggregation not begun
    _deliver(page, [w.snapshot()])
    page.locator('.k2lab-runlane[data-lane="1"] > summary').click()
    lane = page.locator('.k2lab-runlane[data-lane="1"]')
    expect(lane.locator(".k2lab-call")).to_contain_text("ran")
    assert lane.locator("button.k2lab-fork").count() == 0  # the heavy run still goes

    _mount(page)
    w, _ = _widget_messages(events)
    _deliver(page, [w.snapshot()])
    page.locator('.k2lab-runlane[data-lane="1"] > summary').click()
    lane.locator("button.k2lab-fork").click()
    editor = lane.locator("textarea.k2lab-editor")
    proposed = next(e for e in events if e["type"] == "tool.proposed" and e.get("run_id") == "h1.1")
    assert editor.input_value() == json.loads(proposed["arguments"])["code"]  # what lane 1 ran
    expect(lane).to_contain_text("not lane 1's (that one closed with the lane)")
    editor.fill("print(1 + 1)")
    screenshot("notebook-widget-fork-lane", lane)
    lane.locator("button.k2lab-fork-run").click()
    assert page.evaluate("window.sent.at(-1)") == {
        "action": "fork",
        "call_id": "functions.python:0",
        "run_id": "h1.1",
        "code": "print(1 + 1)",
    }
    expect(lane.locator("textarea.k2lab-editor")).to_have_count(0)  # closed after sending

    # the heavy run's own cards are the aggregation's verify calls: no fork there
    golden = Path(__file__).parents[1] / "trace" / "data" / "heavy_demo.jsonl"
    lines = golden.read_text(encoding="utf-8").splitlines()
    recorded = [e for e in map(json.loads, lines) if e.get("type")]  # past the trace header
    assert any(e["type"] == "tool.proposed" and e["lane"] == "aggregate" for e in recorded)
    _mount(page)
    w, _ = _widget_messages(recorded)
    _deliver(page, [w.snapshot()])
    own = page.locator(".k2lab-call:not(.k2lab-runlane .k2lab-call)")
    expect(own.first).to_be_visible()
    assert own.locator("button.k2lab-fork").count() == 0
