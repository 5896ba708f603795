"""An MCP server's tools in the panel (issue 10), in real Chromium: a JupyterLab of its own
started with ``$K2LAB_MCP_CONFIG`` naming the real stdio server
``tests/fixtures/mcp_servers/tools_server.py`` (as ``calc``), and a scripted fake model over
HTTP proposing its tools under the ``ask`` policy.

The panel lists the server and its tools; each call's card names the tool (``mcp__calc__<tool>``)
and holds its arguments as editable JSON; Approve and Edit & run reach the server; an ``isError``
result shows as an error; Replay is offered on the read-only ``add`` only; a call whose arguments
break the tool's schema reaches neither the server nor the person (the model reads the problem).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import JupyterLab, launch_lab
from tests.browser.test_panel import open_lab, open_panel, widen_panel
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.tools.conftest import stdio_spec

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def mcp_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[JupyterLab, Path]]:
    """(a lab whose panel sessions get the ``calc`` MCP server, that server's notes file)."""
    base = tmp_path_factory.mktemp("mcp-lab")
    notes = base / "notes.txt"
    cfg = base / "mcp.json"
    cfg.write_text(json.dumps({"mcpServers": {"calc": stdio_spec(env={"NOTES_FILE": str(notes)})}}))
    with launch_lab(base, env={"K2LAB_MCP_CONFIG": str(cfg)}) as lab:
        yield lab, notes


def wait_pending(panel: Any, n: int) -> Any:
    """The n-th card (0-based), once it waits for a decision."""
    card = panel.locator(".k2lab-call").nth(n)
    card.locator("button.k2lab-approve").wait_for()
    assert card.get_attribute("data-state") == "pending"
    return card


def test_mcp_tools_listed_approved_edited_failed_replayed_and_schema_checked(
    mcp_lab: tuple[JupyterLab, Path], page: Any, screenshot: Any
) -> None:
    lab, notes = mcp_lab
    model = FakeModel()
    model.script(
        [
            Turn(reasoning="Add first.", tool_calls=[Call("mcp__calc__add", {"a": 40, "b": 2})]),
            Turn(
                reasoning="Note it.",
                tool_calls=[Call("mcp__calc__write_note", {"text": "draft"})],
            ),
            Turn(
                reasoning="Try the failing one.", tool_calls=[Call("mcp__calc__fail", {"why": "x"})]
            ),
            # a string where the schema wants an integer, and no b: jsonschema stops it
            Turn(reasoning="Add badly.", tool_calls=[Call("mcp__calc__add", {"a": "forty"})]),
            Turn(content="Added, noted, failed once."),
        ]
    )
    raw = {"preset": "custom", "baseUrl": model.base_url, "model": "fake-k2", "approve": "ask"}
    lab.api("lab/api/settings/k2lab:plugin", "PUT", {"raw": json.dumps(raw)})
    try:
        open_lab(page, lab)
        panel = open_panel(page)
        widen_panel(page, 420)
        panel.locator("button.k2lab-new-session").click()

        panel.locator(".k2lab-prompt-input").fill("Add 40 and 2, note it, try fail.")
        panel.locator("button.k2lab-send").click()
        add = wait_pending(panel, 0)
        # the model was offered the server's tools under their MCP names
        tools_offered = {t["function"]["name"] for t in model.requests[0]["tools"]}
        assert {"mcp__calc__add", "mcp__calc__write_note"} <= tools_offered

        # the panel lists the configured server and its tools (the session's own)
        options = panel.locator(".k2lab-run-options > summary")
        options.click()
        server = panel.locator(".k2lab-tool-server").filter(has_text="calc")
        server.locator(".k2lab-tool code").first.wait_for(timeout=60_000)
        # read on opening: the session's run has started it (not the probe's "when tried")
        assert "(MCP, stdio): started in this session" in server.inner_text()
        listed = server.locator(".k2lab-tool code").all_inner_texts()
        assert {"mcp__calc__add", "mcp__calc__write_note", "mcp__calc__fail"} <= set(listed)
        server.scroll_into_view_if_needed()
        screenshot("panel-mcp-tools", panel.locator(".k2lab-run-options"))
        options.click()  # fold it again for the cards

        # 1. add: the card names server and tool, holds the arguments as JSON; Approve runs it
        assert add.locator(".k2lab-tool-name").inner_text() == "mcp__calc__add"
        assert json.loads(add.locator("textarea.k2lab-editor").input_value()) == {"a": 40, "b": 2}
        add.locator("button.k2lab-approve").click()
        add.locator(".k2lab-result.k2lab-ok .k2lab-stdout").filter(has_text="42").wait_for()

        # 2. write_note: edited as JSON, the edited arguments are what reach the server
        note = wait_pending(panel, 1)
        editor = note.locator("textarea.k2lab-editor")
        assert json.loads(editor.input_value()) == {"text": "draft"}
        editor.fill(json.dumps({"text": "final"}))
        note.locator("button.k2lab-run-edited").click()
        note.locator(".k2lab-result .k2lab-stdout").filter(has_text="noted: final").wait_for()
        assert note.get_attribute("data-state") == "edit"
        assert notes.read_text() == "final\n"

        # 3. fail: an isError result shows as an error
        fail = wait_pending(panel, 2)
        fail.locator("button.k2lab-approve").click()
        err = fail.locator(".k2lab-result.k2lab-failed")
        err.wait_for()
        assert err.locator(".k2lab-result-head").inner_text().startswith("error")
        assert "failed on purpose: x" in err.inner_text()

        # 4. arguments against the schema: no approval card, the model gets the problem
        panel.locator(".k2lab-run-end").wait_for()
        assert panel.locator(".k2lab-run-end").inner_text().startswith("completed")
        cards = panel.locator(".k2lab-call")
        assert cards.count() == 4
        bad = cards.nth(3)
        assert bad.get_attribute("data-state") == "problem"
        assert bad.locator("button.k2lab-approve").count() == 0
        assert bad.locator(".k2lab-call-state").inner_text() == "not run (invalid call)"
        problem = bad.locator(".k2lab-problem").inner_text()
        for why in ("'b' is a required property", "'forty' is not of type 'integer'"):
            assert why in problem, problem
        told = [m for m in model.requests[4]["messages"] if m["role"] == "tool"][-1]["content"]
        assert "'forty' is not of type 'integer'" in told and "was not made" in told, told
        assert notes.read_text() == "final\n"  # nothing else reached the server's side effects

        # Replay: on the read-only add (same output), not on write_note or fail
        assert add.locator("button.k2lab-replay-btn").count() == 1
        assert note.locator("button.k2lab-replay-btn").count() == 0
        assert fail.locator("button.k2lab-replay-btn").count() == 0
        assert bad.locator("button.k2lab-replay-btn").count() == 0
        add.locator("button.k2lab-replay-btn").click()
        add.locator(".k2lab-replay-result .k2lab-info").filter(has_text="same output").wait_for()
        assert add.locator(".k2lab-replay-result .k2lab-stdout").inner_text() == "42"
        assert notes.read_text() == "final\n"

        page.set_viewport_size({"width": 1400, "height": 1150})  # every MCP card in the shot
        add.scroll_into_view_if_needed()
        shot = screenshot("panel-mcp", page)
        assert shot.stat().st_size > 10_000
    finally:
        model.close()
