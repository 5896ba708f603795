"""The panel's "Run options & tools" in real JupyterLab + Chromium (issues 10, 12): turning the
verify pass on for a new session runs it (verify.start / verify.end reach the panel and the
server's log), data paths are checked by the server (a missing one is said in the panel), and
the session's tools are listed. The model is the offline demo model: it has no verdict line, so
the check ends "could not verify", which is still a verify pass that ran."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_panel import open_lab, open_panel

pytestmark = pytest.mark.browser


def new_session(panel: Any) -> None:
    panel.locator("button.k2lab-new-session").click()
    expect(panel.locator(".k2lab-opt-current")).to_have_text("")


def test_verify_turned_on_in_the_panel_runs_and_options_are_checked(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    (jupyterlab.root_dir / "sales.csv").write_text("x\n1\n")
    open_lab(page, jupyterlab)
    panel = open_panel(page)
    new_session(panel)
    panel.locator(".k2lab-run-options > summary").click()
    prompt = panel.locator(".k2lab-prompt-input")

    # a data path that is not on the server: the server's 400 reason, in the panel
    panel.locator(".k2lab-opt-data").fill("no-such-file.csv")
    prompt.fill("hello")
    panel.locator("button.k2lab-send").click()
    expect(panel).to_contain_text("no such file or folder")

    # verify on, with a data path that exists: the session runs the verify pass
    panel.locator(".k2lab-opt-data").fill("sales.csv")
    panel.locator(".k2lab-opt-verify").check()
    panel.locator(".k2lab-opt-verify-rounds").fill("1")
    panel.locator("button.k2lab-send").click()
    verify = panel.locator(".k2lab-verify")
    expect(verify.first).to_be_visible(timeout=60_000)
    expect(verify.first).to_contain_text(re.compile("could not verify", re.I), timeout=60_000)
    expect(panel.locator(".k2lab-opt-current")).to_contain_text("verify (1 round(s))")
    expect(panel.locator(".k2lab-opt-current")).to_contain_text("sales.csv")
    # the session's tools: python and the notebook tools, no MCP server configured here
    tools = panel.locator(".k2lab-tools")
    expect(tools.locator(".k2lab-tools-builtin")).to_contain_text("python")
    expect(tools).to_contain_text("No MCP servers configured")
    screenshot("panel-run-options", panel)

    sessions = jupyterlab.api("k2lab/api/sessions")["sessions"]
    mine = next(s for s in sessions if s["settings"].get("verify"))
    assert mine["settings"]["data"] == [str(jupyterlab.root_dir / "sales.csv")]
    stored = jupyterlab.api(f"k2lab/api/sessions/{mine['id']}")
    types = [e["event"]["type"] for e in stored["events"]]
    assert "verify.start" in types and "verify.end" in types, json.dumps(types)
    assert types[-1] == "run.end"
