"""The side panel and the trace renderer, driven the way a person uses them, in real Chromium.

JupyterLab runs with the real k2lab server extension and the offline demo model (no key in its
environment); nothing here talks to the server except through the browser, apart from read-only
checks of what the server stored.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from k2lab import events as ev
from k2lab.providers.demo.scripts import DEMO_PROMPTS
from k2lab.trace.notebook import trace_bundle

pytestmark = pytest.mark.browser

PANEL = ".k2lab-panel"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def copy_to_docs(shot: Path, name: str) -> None:
    """The README's screenshots come from these tests."""
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, DOCS_IMG / name)


def open_lab(page: Any, lab: Any, path: str = "") -> None:
    page.goto(lab.lab_url(path))
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)


def open_panel(page: Any) -> Any:
    """Open the panel with its keyboard shortcut (the command k2lab:open-panel)."""
    page.locator("#jp-main-dock-panel").click(position={"x": 300, "y": 300})
    page.keyboard.press("Control+Alt+k")
    panel = page.locator(PANEL)
    panel.locator(".k2lab-prompt-input").wait_for(state="visible")
    return panel


def approve_until_end(page: Any, panel: Any) -> Any:
    """Approve each call as it comes until the run ends (about 60 s at most): the run's end line."""
    end = panel.locator(".k2lab-run-end")
    for _ in range(600):
        if end.count():
            break
        waiting = panel.locator(".k2lab-call[data-state=pending] button.k2lab-approve")
        if waiting.count():
            waiting.first.click()
        page.wait_for_timeout(100)
    end.wait_for()
    return end


def widen_panel(page: Any, pixels: int = 260) -> None:
    """Drag the right sidebar's splitter left, so screenshots show a roomy panel."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle:not(.lm-mod-hidden)").last
    box = handle.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - pixels, y, steps=5)
    page.mouse.up()


def new_notebook(cells: list[Any]) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    return nb


def test_panel_demo_run_edit_approve_reject_and_reload(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    before = {s["id"] for s in jupyterlab.api("k2lab/api/sessions")["sessions"]}
    open_lab(page, jupyterlab)
    panel = open_panel(page)
    widen_panel(page)
    if before:  # the panel reopens the latest session; this test wants a fresh one
        panel.locator("button.k2lab-new-session").click()
    # no key on the server: the demo model is named as such and the panel says how to set a key
    status = panel.locator(".k2lab-status-model")
    status.filter(has_text="offline demo model").wait_for()
    help_text = panel.locator(".k2lab-key-help").text_content() or ""
    assert "K2LAB_API_KEY" in help_text and "c.K2Lab.api_key" in help_text
    assert panel.locator("input[type=password]").count() == 0  # never an input for the key

    # the demo's prompts are offered as suggestions; one click fills the prompt box
    suggestions = panel.locator("button.k2lab-demo-prompt")
    assert suggestions.count() == len(DEMO_PROMPTS)
    suggestions.filter(has_text=DEMO_PROMPTS["estimate_pi"]).click()
    assert panel.locator(".k2lab-prompt-input").input_value() == DEMO_PROMPTS["estimate_pi"]
    panel.locator("button.k2lab-send").click()

    # reasoning streams in before the first tool call is proposed
    page.wait_for_function(
        """() => {
            const r = document.querySelector('.k2lab-panel .k2lab-reasoning-text');
            const card = document.querySelector('.k2lab-panel .k2lab-call');
            return r && r.textContent.length > 0 && !card;
        }""",
        polling="raf",
    )
    assert panel.locator(".k2lab-status-run").inner_text() == "running"

    # first call: edit the code (fewer points), then Edit & run
    first = panel.locator(".k2lab-call").nth(0)
    first.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    # the reasoning behind the waiting call stays open next to it
    step1 = panel.locator(".k2lab-step").nth(0)
    assert step1.locator("details.k2lab-reasoning").get_attribute("open") is not None
    assert "Monte Carlo" in step1.locator(".k2lab-reasoning-text").inner_text()
    assert panel.locator("button.k2lab-approve-all").is_visible()
    editor = first.locator("textarea.k2lab-editor")
    code = editor.input_value()
    assert "n = 1000000" in code
    assert first.locator("button.k2lab-run-edited").is_disabled()
    editor.fill(code.replace("n = 1000000", "n = 20000"))
    assert first.locator("button.k2lab-approve").is_disabled()  # approving would drop the edit
    copy_to_docs(screenshot("panel-edit", panel), "panel.png")
    first.locator("button.k2lab-run-edited").click()
    first.locator(".k2lab-result .k2lab-stdout").filter(has_text="n=20000").wait_for()
    # the engine's note to the model about the edit is not repeated under the edited code
    assert "edited the arguments" not in first.locator(".k2lab-stdout").inner_text()
    assert first.get_attribute("data-state") == "edit"
    assert "n = 20000" in first.locator(".k2lab-code").first.inner_text()

    # second call (the check against math.pi): reject it with feedback
    second = panel.locator(".k2lab-call").nth(1)
    second.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    second.locator("button.k2lab-reject").click()
    second.locator(".k2lab-feedback-input").fill("no need to check, the estimate is enough")
    second.locator("button.k2lab-send-reject").click()
    second.locator(".k2lab-feedback").filter(has_text="the estimate is enough").wait_for()
    assert second.get_attribute("data-state") == "reject"

    # the model reads the feedback and answers; the run ends
    end = panel.locator(".k2lab-run-end")
    end.wait_for()
    assert end.inner_text().startswith("completed")
    answer = panel.locator(".k2lab-answer")
    # (the Markdown renders asynchronously: expect() waits for it)
    expect(answer).to_contain_text("Not verified")
    expect(answer).to_contain_text("the estimate is enough")
    expect(answer.locator("strong").first).to_be_visible()  # Markdown rendered, not shown raw
    assert panel.locator("button.k2lab-send").is_enabled()
    assert panel.locator("button.k2lab-stop").is_disabled()
    # replay: the edited code runs again in the sandbox (seeded, so the same output)
    assert second.locator("button.k2lab-replay-btn").count() == 0  # it never ran
    first.locator("button.k2lab-replay-btn").click()
    replayed = first.locator(".k2lab-replay-result")
    replayed.filter(has_text="Replay: same output").wait_for()
    assert "n=20000" in replayed.inner_text()
    copy_to_docs(screenshot("panel-done", panel), "panel-done.png")
    # the header: the run's demo flag (a field of run.start, not the label), its budgets
    expect(panel.locator(".k2lab-status-model.k2lab-demo")).to_be_visible()
    expect(panel.locator(".k2lab-status-tokens")).to_contain_text("/request")
    expect(panel.locator(".k2lab-status-context")).to_contain_text("of 262k")

    sessions = [
        s for s in jupyterlab.api("k2lab/api/sessions")["sessions"] if s["id"] not in before
    ]
    assert len(sessions) == 1 and not sessions[0]["running"]
    sid = sessions[0]["id"]

    # reload: the same session comes back with its whole history
    page.reload()
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    if not page.locator(PANEL).is_visible():
        panel = open_panel(page)
    panel.locator(".k2lab-run-end").wait_for()
    assert panel.locator(".k2lab-session-select").input_value() == sid
    assert panel.locator(".k2lab-call").count() == 2
    assert panel.locator(".k2lab-call").nth(0).get_attribute("data-state") == "edit"
    assert "n=20000" in panel.locator(".k2lab-call").nth(0).locator(".k2lab-stdout").inner_text()
    assert "the estimate is enough" in panel.locator(".k2lab-call").nth(1).inner_text()
    expect(panel.locator(".k2lab-answer")).to_contain_text("Not verified")
    # decided calls offer no approval controls (Fork from here keeps its editor folded until asked)
    assert panel.locator(".k2lab-editor:visible").count() == 0
    assert panel.locator("button.k2lab-approve").count() == 0

    # a second session: Stop while a call waits; the trace so far is kept
    panel.locator("button.k2lab-new-session").click()
    assert panel.locator(".k2lab-call").count() == 0
    panel.locator(".k2lab-prompt-input").fill(DEMO_PROMPTS["estimate_pi"])
    panel.locator(".k2lab-prompt-input").press("Control+Enter")
    waiting = panel.locator(".k2lab-call").nth(0)
    waiting.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    # a reload while the call waits: the pending approval lives on the server and comes back
    page.reload()
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    if not page.locator(PANEL).is_visible():
        panel = open_panel(page)
    waiting = panel.locator(".k2lab-call").nth(0)
    waiting.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    assert waiting.locator("textarea.k2lab-editor").is_visible()
    assert panel.locator(".k2lab-status-run").inner_text() == "running"
    panel.locator("button.k2lab-stop").click()
    panel.locator(".k2lab-run-end").filter(has_text="stopped").wait_for()
    assert waiting.get_attribute("data-state") == "expired"
    assert waiting.locator(".k2lab-call-state").inner_text().startswith("not run")
    assert waiting.locator("button.k2lab-replay-btn").count() == 0
    assert waiting.locator("textarea").count() == 0
    assert len(jupyterlab.api("k2lab/api/sessions")["sessions"]) == len(before) + 2


def _png(width: int = 8, height: int = 8) -> str:
    """A small red PNG, base64 (built here so the test needs no image library)."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode()


def _saved_run() -> list[dict[str, Any]]:
    code = json.dumps({"code": "import math\nprint(round(math.pi, 4))"})
    evs: list[ev.Event] = [
        ev.RunStart(
            run_id="r-saved",
            prompt="What is pi to four places?",
            model="kimi-k2-thinking",
            model_label="offline demo model (scripted)",
            base_url="",
            policy="ask",
            isolation="bwrap",
            max_steps=300,
        ),
        ev.StepStart(step=1),
        ev.ReasoningDelta(step=1, text="I will compute it with math.pi."),
        ev.StepEnd(step=1, content="", reasoning="I will compute it with math.pi."),
        ev.ToolProposed(step=1, call_id="functions.python:0", name="python", arguments=code),
        ev.ToolDecision(call_id="functions.python:0", decision="approve", by="user"),
        ev.ToolResult(
            call_id="functions.python:0",
            name="python",
            ok=True,
            output="3.1416\n",
            display=[{"data": {"image/png": _png(), "text/plain": "<plot>"}, "metadata": {}}],
        ),
        ev.Usage(step=1, prompt_tokens=1200, completion_tokens=80),
        ev.StepStart(step=2),
        ev.ReasoningDelta(step=2, text="The tool printed 3.1416."),
        ev.ContentDelta(step=2, text="Pi is **3.1416** to four places."),
        ev.StepEnd(
            step=2, content="Pi is **3.1416** to four places.", reasoning="The tool printed 3.1416."
        ),
        ev.RunEnd(
            stop_reason="completed",
            answer="Pi is **3.1416** to four places.",
            steps=2,
            tool_calls=1,
            prompt_tokens=2500,
            completion_tokens=120,
        ),
    ]
    for i, e in enumerate(evs):
        e.seq = i
    return [e.to_dict() for e in evs]


def test_trace_renderer_shows_a_saved_run_in_a_notebook(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    bundle = trace_bundle("r-saved", _saved_run())
    cell = nbformat.v4.new_code_cell("%k2 What is pi to four places?")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nb = new_notebook([cell])
    nbformat.write(nb, Path(jupyterlab.root_dir) / "saved_trace.ipynb")

    open_lab(page, jupyterlab, "saved_trace.ipynb")
    out = page.locator(".k2lab-trace-output")
    out.wait_for(timeout=60_000)
    # the renderer (not the html/markdown fallback) shows the run
    assert out.locator(".k2lab-prompt").inner_text() == "What is pi to four places?"
    assert "offline demo model" in out.locator(".k2lab-model").inner_text()
    assert "bwrap" in out.locator(".k2lab-isolation").inner_text()
    reasoning = out.locator("details.k2lab-reasoning").first
    assert reasoning.get_attribute("open") is None  # folded in a saved trace
    reasoning.locator("summary").click()
    assert "math.pi" in reasoning.locator(".k2lab-reasoning-text").inner_text()
    call = out.locator(".k2lab-call")
    assert call.count() == 1
    assert "print(round(math.pi, 4))" in call.locator(".k2lab-code").inner_text()
    assert "3.1416" in call.locator(".k2lab-stdout").inner_text()
    assert call.locator("img.k2lab-image").count() == 1
    # read-only: no approve / edit / reject (Replay comes with a kernel: test_notebook_extras.py)
    assert call.locator("button:not(.k2lab-replay-btn)").count() == 0
    assert out.locator(".k2lab-answer strong").inner_text() == "3.1416"
    end = out.locator(".k2lab-run-end").inner_text()
    assert "completed" in end and "2 steps" in end and "1 tool call" in end and "2.5k in" in end
    screenshot("trace-renderer", out)


def test_context_chip_shows_what_is_attached_and_its_bound(jupyterlab: Any, page: Any) -> None:
    nb = new_notebook(
        [
            nbformat.v4.new_code_cell("x = 1"),
            nbformat.v4.new_code_cell("# long\n" + "y = 2\n" * 5000),
        ]
    )
    nbformat.write(nb, Path(jupyterlab.root_dir) / "context.ipynb")
    open_lab(page, jupyterlab, "context.ipynb")
    page.locator(".jp-Notebook .jp-Cell").nth(1).click()
    panel = open_panel(page)
    chip = panel.locator(".k2lab-context-chip")
    assert chip.is_hidden()  # nothing is attached unless chosen
    panel.locator(".k2lab-context-select").select_option("cell")
    assert "cell 2 of context.ipynb" in chip.inner_text()  # counted from 1
    assert "30k chars" in chip.inner_text()
    assert "only the first 20k chars are sent" in chip.inner_text()
    panel.locator(".k2lab-context-select").select_option("notebook")
    assert "context.ipynb (2 cells)" in chip.inner_text()
    chip.locator(".k2lab-chip-remove").click()
    assert chip.is_hidden()

    # send with the active cell attached: the model gets it (cut to the bound), the run shows it
    # folded under the question
    panel.locator(".k2lab-context-select").select_option("cell")
    if panel.locator(".k2lab-run").count():
        panel.locator("button.k2lab-new-session").click()
    panel.locator(".k2lab-prompt-input").fill("What does this cell do?")
    panel.locator("button.k2lab-send").click()
    expect(panel.locator(".k2lab-panel-notice")).to_contain_text("Context cut to 20000 of 30007")
    panel.locator(".k2lab-run-end").wait_for()
    prompt = panel.locator(".k2lab-prompt")
    assert prompt.locator("pre").first.inner_text() == "What does this cell do?"
    folded = prompt.locator("details.k2lab-prompt-context")
    assert "the current cell of context.ipynb" in folded.locator("summary").inner_text()
    assert "20k chars" in folded.locator("summary").inner_text()
    assert folded.get_attribute("open") is None


def test_notebook_tools_read_insert_and_run_cells_in_the_open_notebook(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    """A (fake) model reads the open notebook, inserts a cell and runs it; the panel does it."""
    from tests.fixtures.fake_server import Call, FakeModel, Turn

    model = FakeModel()
    model.script(
        [
            Turn(reasoning="First I read the notebook.", tool_calls=[Call("notebook_read", {})]),
            Turn(
                reasoning="I'll add a cell that multiplies.",
                tool_calls=[Call("notebook_insert_cell", {"index": -1, "source": "print(6 * 7)"})],
            ),
            Turn(reasoning="Now run it.", tool_calls=[Call("notebook_run_cell", {"index": 1})]),
            Turn(content="The new cell printed **42**."),
        ]
    )
    settings_url = "lab/api/settings/k2lab:plugin"
    raw = {"preset": "custom", "baseUrl": model.base_url, "model": "fake-k2", "approve": "ask"}
    jupyterlab.api(settings_url, "PUT", {"raw": json.dumps(raw)})
    try:
        nbformat.write(
            new_notebook([nbformat.v4.new_code_cell("x = 1")]),
            Path(jupyterlab.root_dir) / "tools.ipynb",
        )
        open_lab(page, jupyterlab, "tools.ipynb")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for()
        page.get_by_text("| Idle").wait_for(timeout=60_000)  # the notebook's kernel is up
        panel = open_panel(page)
        # the settings point the panel at a model of their own: no "the demo model answers"
        help_line = panel.locator(".k2lab-key-help summary")
        expect(help_line).to_contain_text("No API key")  # the server's info has come
        assert "demo model" not in help_line.inner_text(), help_line.inner_text()
        panel.locator("button.k2lab-new-session").click()
        panel.locator(".k2lab-prompt-input").fill("Add a cell that prints 6 * 7 and run it.")
        panel.locator("button.k2lab-send").click()
        end = approve_until_end(page, panel)
        assert end.inner_text().startswith("completed"), end.inner_text()
        cards = panel.locator(".k2lab-call")
        assert cards.count() == 3
        # the model read the notebook through the panel, and got its cell
        tool_msgs = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
        assert "x = 1" in tool_msgs[-1]["content"]
        # the inserted cell is in the notebook, ran in the notebook's kernel, and its output shows
        cells = page.locator(".jp-Notebook .jp-Cell")
        assert cells.count() == 2
        assert "print(6 * 7)" in cells.nth(1).locator(".jp-InputArea").inner_text()
        cells.nth(1).locator(".jp-OutputArea").get_by_text("42").wait_for()
        assert "42" in cards.nth(2).locator(".k2lab-stdout").inner_text()
        assert panel.locator("button.k2lab-replay-btn").count() == 0  # only python calls replay
        assert panel.locator(".k2lab-answer strong").inner_text() == "42"
        assert "fake-k2" in panel.locator(".k2lab-model").last.inner_text()
        screenshot("panel-notebook-tools", page)
    finally:
        jupyterlab.api(settings_url, "PUT", {"raw": "{}"})
        model.close()


def test_dropped_socket_reconnects_after_the_last_event(jupyterlab: Any, page: Any) -> None:
    """The events socket drops mid-run: the panel reconnects with ?after=<last index> and goes on
    without losing or repeating events."""
    sockets: list[Any] = []
    urls: list[str] = []

    def proxy(ws: Any) -> None:  # pass everything through, but keep a handle to cut it
        urls.append(ws.url)
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r".*/k2lab/api/sessions/[^/]+/events.*"), proxy)
    open_lab(page, jupyterlab)
    panel = open_panel(page)
    panel.locator("button.k2lab-new-session").click()
    panel.locator(".k2lab-prompt-input").fill(DEMO_PROMPTS["estimate_pi"])
    panel.locator("button.k2lab-send").click()
    first = panel.locator(".k2lab-call").nth(0)
    first.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    n_before = len(urls)
    reasoning_before = panel.locator(".k2lab-reasoning-text").first.text_content()

    sockets[-1].close()  # the connection drops
    for _ in range(100):
        if len(urls) > n_before:
            break
        page.wait_for_timeout(100)
    assert len(urls) > n_before, "the panel did not reconnect"
    after = int(re.search(r"after=(-?\d+)", urls[-1]).group(1))  # type: ignore[union-attr]
    assert after > 0  # it asked only for what it had not seen

    first.locator("button.k2lab-approve").click()  # the decision's events come over the new socket
    first.locator(".k2lab-result .k2lab-stdout").filter(has_text="pi_hat=").wait_for()
    assert panel.locator(".k2lab-call").count() in (1, 2)
    # nothing appended twice (text_content: older steps' reasoning is folded)
    assert panel.locator(".k2lab-reasoning-text").first.text_content() == reasoning_before
    steps = [s.get_attribute("data-step") for s in panel.locator(".k2lab-step").all()]
    assert len(steps) == len(set(steps))
    panel.locator("button.k2lab-stop").click()
    panel.locator(".k2lab-run-end").wait_for()

    # Delete (after a confirmation) removes the session on the server too
    sid = panel.locator(".k2lab-session-select").input_value()
    panel.locator("button.k2lab-delete-session").click()
    page.locator(".jp-Dialog").get_by_role("button", name="Delete").click()
    expect(panel.locator(".k2lab-session-select")).to_have_value("")
    assert sid not in {s["id"] for s in jupyterlab.api("k2lab/api/sessions")["sessions"]}
