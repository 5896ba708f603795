"""A full disk while a panel session runs (issue 8, item 14): the panel says that events could not
be saved, and says so again when they are written; the file then holds every event, in order.

The fault is real, not mocked: the server process gets a file-size limit (``RLIMIT_FSIZE``, soft
only, so it can be lifted again) at the session file's current size, so every append fails with
``EFBIG`` (Python ignores ``SIGXFSZ``), as a full disk makes writes fail.
"""

from __future__ import annotations

import json
import resource
from typing import Any

import pytest
from playwright.sync_api import expect

from k2lab.providers.demo.scripts import DEMO_PROMPTS
from tests.browser.test_panel import open_lab, open_panel

pytestmark = pytest.mark.browser


def test_the_panel_says_when_events_cannot_be_saved(jupyterlab: Any, page: Any) -> None:
    sid = jupyterlab.api("k2lab/api/sessions", "POST", {"title": "full disk"})["id"]
    path = jupyterlab.sessions_dir / f"{sid}.jsonl"
    open_lab(page, jupyterlab)
    panel = open_panel(page)
    panel.locator(".k2lab-session-select").select_option(sid)
    pid = jupyterlab.proc.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (path.stat().st_size, hard))
    try:
        panel.locator(".k2lab-prompt-input").fill(DEMO_PROMPTS["estimate_pi"])
        panel.locator("button.k2lab-send").click()
        # the stream says it, and so does the status notice, which stays
        line = panel.locator(".k2lab-error").filter(has_text="could not be saved")
        line.first.wait_for()
        notice = panel.locator(".k2lab-panel-notice")
        assert "could not be saved" in (notice.text_content() or "")
        assert "File too large" in (notice.text_content() or "")
        # the sandbox could not start either (its files hit the same limit): that run ends
        panel.locator(".k2lab-run-end").first.wait_for()
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))  # space comes back
    panel.locator(".k2lab-prompt-input").fill(DEMO_PROMPTS["estimate_pi"])
    panel.locator("button.k2lab-send").click()
    panel.locator(".k2lab-panel-notice").filter(has_text="are now written").wait_for()
    first = panel.locator(".k2lab-call").nth(0)
    first.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    panel.locator("button.k2lab-stop").click()
    expect(panel.locator(".k2lab-run-end")).to_have_count(2)
    # every event is in the file, in the order (and with the indices) the panel got them
    served = [e["event"] for e in jupyterlab.api(f"k2lab/api/sessions/{sid}")["events"]]
    on_disk = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert on_disk == served
    kinds = [(e["type"], e.get("kind")) for e in served]
    assert ("error", "storage") in kinds and ("notice", "storage") in kinds
    assert [e["type"] for e in served].count("run.start") == 2
