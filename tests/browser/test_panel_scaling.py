"""The panel's "Run options & tools" in real JupyterLab + Chromium (issues 10, 12): turning the
verify pass on for a new session runs it (verify.start / verify.end reach the panel and the
server's log), data paths are checked by the server (a missing one is said in the panel), and
the session's tools are listed. The model is the offline demo model: it has no verdict line, so
the check ends "could not verify", which is still a verify pass that ran."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_panel import open_lab, open_panel

pytestmark = pytest.mark.browser


def send_with_options(page: Any, jupyterlab: Any, prompt: str, **options: str) -> Any:
    """A new panel session whose first message is ``prompt`` with these Run options filled
    (``heavy="2"`` fills ``.k2lab-opt-heavy``, ``data="shop"`` ``.k2lab-opt-data``): the panel."""
    open_lab(page, jupyterlab)
    panel = open_panel(page)
    new_session(panel)
    panel.locator(".k2lab-run-options > summary").click()
    for name, value in options.items():
        panel.locator(f".k2lab-opt-{name}").fill(value)
    panel.locator(".k2lab-prompt-input").fill(prompt)
    panel.locator("button.k2lab-send").click()
    return panel


def start_heavy_pi(page: Any, jupyterlab: Any) -> tuple[Any, Any]:
    """A new panel session whose first message runs the demo's pi prompt in 2 heavy lanes:
    (the panel, its heavy run's block)."""
    from k2lab.providers.demo.scripts import DEMO_PROMPTS

    panel = send_with_options(page, jupyterlab, DEMO_PROMPTS["estimate_pi"], heavy="2")
    return panel, panel.locator(".k2lab-heavy")


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


def test_heavy_turned_on_in_the_panel_runs_lanes_whose_cards_are_decided_apart(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    """Heavy 2 under ``ask`` with a scripted model: both lanes propose a call with the same id
    (as Kimi's ``functions.python:0``); each card is approved in the panel, and the server gets
    each decision for its own lane (run id ``RUN.K``), then the aggregation answers."""
    from tests.fixtures.fake_server import Call, ConversationRouter, FakeModel, Turn

    def lane(k: int) -> list[Turn]:
        return [
            Turn(tool_calls=[Call("python", {"code": f"print({k} * 21)"}, id="same")]),
            Turn(content=f"lane {k} says {k * 21}"),
        ]

    def aggregation(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="The lanes were aggregated.")
        return None

    model = FakeModel()
    model.respond_with(ConversationRouter([lane(1), lane(2)], aggregation))
    settings_url = "lab/api/settings/k2lab:plugin"
    raw = {"preset": "custom", "baseUrl": model.base_url, "model": "fake-k2", "approve": "ask"}
    jupyterlab.api(settings_url, "PUT", {"raw": json.dumps(raw)})
    try:
        open_lab(page, jupyterlab)
        panel = open_panel(page)
        new_session(panel)
        panel.locator(".k2lab-run-options > summary").click()
        panel.locator(".k2lab-opt-heavy").fill("2")
        panel.locator(".k2lab-prompt-input").fill("what is 21 times k?")
        panel.locator("button.k2lab-send").click()
        pending = panel.locator(".k2lab-call[data-state=pending] button.k2lab-approve")
        expect(pending).to_have_count(2, timeout=90_000)  # one card per lane
        for _ in range(2):
            pending.first.click()
            page.wait_for_timeout(200)
        expect(panel).to_contain_text("The lanes were aggregated.", timeout=90_000)
        expect(panel.locator(".k2lab-opt-current")).to_contain_text("heavy 2 lanes")
        screenshot("panel-heavy-lanes", panel)
        sessions = jupyterlab.api("k2lab/api/sessions")["sessions"]
        mine = next(s for s in sessions if s["settings"].get("heavy") == 2)
        stored = [e["event"] for e in jupyterlab.api(f"k2lab/api/sessions/{mine['id']}")["events"]]
        decided = {e["run_id"]: e["decision"] for e in stored if e["type"] == "tool.decision"}
        start = next(e for e in stored if e["type"] == "run.start")["run_id"].split(".")[0]
        assert decided == {f"{start}.1": "approve", f"{start}.2": "approve"}
        outputs = sorted(e["output"].strip() for e in stored if e["type"] == "tool.result")
        assert outputs == ["21", "42"]
    finally:
        jupyterlab.api(settings_url, "PUT", {"raw": "{}"})
        model.close()


def test_heavy_under_ask_in_the_panel_decides_each_lanes_card_apart(
    jupyterlab: Any, page: Any
) -> None:
    """Heavy mode (2 lanes) with the demo model under the server's ``ask`` policy, the run options
    left open: the lane whose call waits opens by itself; approving the card of the lane that
    proposed first decides that lane's call (the panel sends the lane's run id; without it the
    server's fallback picks the latest lane), the other lane's card still waits, and "Approve all"
    (in view: the open run options scroll on their own) covers it and the aggregation runs."""
    panel, heavy = start_heavy_pi(page, jupyterlab)
    tiles = heavy.locator(".k2lab-lanes > .k2lab-lane")
    expect(tiles).to_have_count(2, timeout=60_000)
    waiting = heavy.locator('.k2lab-call[data-state="pending"]')
    expect(waiting).to_have_count(2, timeout=60_000)

    sessions = jupyterlab.api("k2lab/api/sessions")["sessions"]
    sid = next(s for s in sessions if s["settings"].get("heavy"))["id"]

    def events() -> list[dict[str, Any]]:
        stored = jupyterlab.api(f"k2lab/api/sessions/{sid}")
        return [e["event"] for e in stored["events"]]

    proposed = [e for e in events() if e["type"] == "tool.proposed"]
    assert len(proposed) == 2 and proposed[0]["call_id"] == proposed[1]["call_id"], proposed
    first = proposed[0]["run_id"]  # the server's fallback (no run id) would pick the other lane
    lane = int(first.rsplit(".", 1)[1])
    expect(tiles.nth(lane - 1)).to_have_attribute("aria-expanded", "true")  # its call waits
    card = heavy.locator(f'.k2lab-call[data-run-id="{first}"]')
    card.locator("button.k2lab-approve").click()
    expect(waiting).to_have_count(1)
    for _ in range(100):  # the decision reaches the server's log
        decided = [e for e in events() if e["type"] == "tool.decision"]
        if decided:
            break
        time.sleep(0.1)
    assert [(e["run_id"], e["decision"]) for e in decided] == [(first, "approve")]

    approve_all = panel.locator("button.k2lab-approve-all")
    expect(approve_all).to_be_in_viewport()  # the open run options do not push it away
    approve_all.click()
    expect(heavy.locator(".k2lab-aggregate .k2lab-answer")).not_to_be_empty(timeout=90_000)
    evs = events()
    lanes = {e["run_id"] for e in evs if e["type"] == "tool.decision"}
    assert {first, proposed[1]["run_id"]} <= lanes
    assert any(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in evs)


def test_stop_lane_in_the_panel_stops_that_lane_and_the_other_goes_on(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    """Heavy mode (2 lanes, demo model, ``ask``): both lanes wait for their cards; "Stop lane"
    in lane 1 posts ``stop`` with ``{"lane": "1"}``: lane 1 ends stopped (its button goes), lane
    2's card still waits, "Approve all" lets it finish and the aggregation names lane 1."""
    panel, heavy = start_heavy_pi(page, jupyterlab)
    waiting = heavy.locator('.k2lab-call[data-state="pending"]')
    expect(waiting).to_have_count(2, timeout=60_000)
    stop1 = heavy.locator('.k2lab-lane-body[data-lane="1"] button.k2lab-stop-lane')
    stop2 = heavy.locator('.k2lab-lane-body[data-lane="2"] button.k2lab-stop-lane')
    expect(stop1).to_be_visible()
    expect(stop2).to_be_visible()
    stop1.click()
    tile1 = heavy.locator('.k2lab-lanes > .k2lab-lane[data-lane="1"]')
    expect(tile1).to_have_attribute("data-status", "stopped", timeout=30_000)
    expect(stop1).to_be_hidden()
    expect(stop2).to_be_visible()  # lane 2 goes on
    expect(waiting).to_have_count(1)
    panel.locator(".k2lab-run-options > summary").click()  # fold the options away
    stop2.scroll_into_view_if_needed()
    screenshot("panel-heavy-stop-lane", panel)

    panel.locator("button.k2lab-approve-all").click()
    expect(heavy.locator(".k2lab-aggregate .k2lab-answer")).not_to_be_empty(timeout=90_000)
    expect(stop2).to_be_hidden()
    sessions = jupyterlab.api("k2lab/api/sessions")["sessions"]
    sid = next(s for s in sessions if s["settings"].get("heavy"))["id"]
    evs = [e["event"] for e in jupyterlab.api(f"k2lab/api/sessions/{sid}")["events"]]
    ends = {e.get("lane"): e["stop_reason"] for e in evs if e["type"] == "run.end"}
    assert ends == {"1": "stopped", "2": "completed", "aggregate": "completed"}, ends
