"""The %k2 live view in real JupyterLab + Chromium: stream, edit a call and run it, save, reload.

The server has no key, so the offline demo model answers, with ``K2LAB_APPROVE=ask`` (set by the
harness): every call waits for a click.
"""

from __future__ import annotations

import shutil
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from k2lab.providers.demo.scripts import DEMO_PROMPTS
from k2lab.trace.notebook import MIMETYPE, runs_from_notebook
from tests.browser.conftest import ROOT

pytestmark = pytest.mark.browser

EDITED_MARK = "edited in the browser"
FORK_MARK = "forked in the browser"
#: the saved trace as JupyterLab shows it: the labextension's renderer, else the HTML fallback
SAVED_TRACE = ".k2lab-trace-output, .jp-RenderedHTMLCommon .k2lab-trace"


def _write_notebook(root: Any, name: str, setup: str = "", magic: str = "%%k2") -> None:
    """``%load_ext k2lab`` (+ ``setup``), then ``magic`` with the estimate-pi demo prompt."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext k2lab" + ("\n" + setup if setup else "")),
        nbformat.v4.new_code_cell(magic + "\n" + DEMO_PROMPTS["estimate_pi"]),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, root / name)


def _open(page: Any, lab: Any, name: str) -> None:
    page.goto(lab.lab_url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # the toolbar can say idle before the kernel is connected: wait for the status bar
    page.wait_for_selector("text=| Idle", timeout=60_000)


def live_view(page: Any, run_id: str | None) -> Any:
    return page.locator(f'.k2lab-live[data-k2lab-run-id="{run_id}"]')


def test_edit_run_save_reload(jupyterlab: Any, page: Any, screenshot: Any) -> None:
    name = "widget.ipynb"
    _write_notebook(jupyterlab.root_dir, name)
    _open(page, jupyterlab, name)

    # run both cells
    page.locator(".jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")

    live = page.locator(".k2lab-live")
    live.wait_for(timeout=60_000)
    # the reasoning streams into the first step's block
    page.wait_for_function(
        "() => { const p = document.querySelector('.k2lab-live .k2lab-reasoning pre');"
        " return p && p.textContent.length > 40; }",
        timeout=60_000,
    )
    card = live.locator(".k2lab-call.k2lab-status-pending").first
    card.wait_for(timeout=60_000)
    assert "offline demo model" in live.locator(".k2lab-head").inner_text()
    # the badge comes from run.start's demo field (not from the label)
    expect(live.locator(".k2lab-head .k2lab-badge.k2lab-demo")).to_be_visible()

    # Edit & run: change the code, run the edit
    card.locator(".k2lab-edit").click()
    editor = live.locator(".k2lab-editor").first
    original = editor.input_value()
    assert "default_rng" in original
    editor.fill(original + f'\nprint("{EDITED_MARK}")')
    shot_edit = screenshot("notebook-widget-editing", live)
    live.locator(".k2lab-run-edited").click()

    # the result of the edited code shows on the card, recorded as an edit
    done = live.locator(".k2lab-call.k2lab-status-done").first
    done.wait_for(timeout=60_000)
    assert EDITED_MARK in done.locator(".k2lab-result").inner_text()
    assert "edited by the user" in done.inner_text()

    # the next call waits: instead, fork from the first call with other code
    live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    shot_live = screenshot("notebook-widget-live", live)
    shot_page = screenshot("notebook-widget-page")
    parent_id = live.get_attribute("data-k2lab-run-id")
    done.locator(".k2lab-fork").click()
    fork_editor = done.locator(".k2lab-editor")
    fork_editor.fill(fork_editor.input_value() + f'\nprint("{FORK_MARK}")')
    done.locator(".k2lab-fork-run").click()

    # the parent stops and becomes its saved trace (the labextension's renderer of the trace
    # mimetype, or the text/html fallback); the branch runs live below it, in the same cell
    live_view(page, parent_id).wait_for(state="detached", timeout=60_000)
    saved = page.locator(SAVED_TRACE).filter(has_text=EDITED_MARK)
    saved.first.wait_for(timeout=30_000)
    assert "3.14" in saved.first.inner_text()  # the edited call's output is there
    branch = page.locator(".k2lab-live")
    branch.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    assert FORK_MARK in branch.locator(".k2lab-call").first.inner_text()
    assert "branch of" in branch.locator(".k2lab-head").inner_text()
    shot_branch = screenshot("notebook-widget-branch")
    branch_id = branch.get_attribute("data-k2lab-run-id")
    branch.locator(".k2lab-approve-all").click()
    live_view(page, branch_id).wait_for(state="detached", timeout=60_000)
    forked = page.locator(SAVED_TRACE).filter(has_text=FORK_MARK)
    forked.first.wait_for(timeout=30_000)
    shot_saved = screenshot("notebook-widget-saved")

    # save, then reload the page: both traces are still rendered from the notebook file
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=20_000)
    nb = nbformat.read(jupyterlab.root_dir / name, as_version=4)
    runs = runs_from_notebook(nb)
    assert len(runs) == 2
    parent, child = runs
    assert parent.events[-1]["stop_reason"] == "stopped"
    decisions = [e for e in parent.events if e["type"] == "tool.decision"]
    assert decisions[0]["decision"] == "edit" and EDITED_MARK in decisions[0]["arguments"]
    assert child.events[0]["parent_run_id"] == parent.run_id
    assert child.events[0]["forked_from_call"] == "functions.python:0"
    assert child.events[-1]["stop_reason"] == "completed"
    fork_decision = next(e for e in child.events if e["type"] == "tool.decision")
    assert fork_decision["decision"] == "edit" and FORK_MARK in fork_decision["arguments"]
    assert all(MIMETYPE in o.get("data", {}) for o in nb.cells[1].outputs)

    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    again = page.locator(SAVED_TRACE)
    again.filter(has_text=FORK_MARK).first.wait_for(timeout=60_000)
    assert again.count() == 2
    assert EDITED_MARK in again.first.inner_text()
    shot_reload = screenshot("notebook-widget-reloaded")

    for shot in (shot_edit, shot_live, shot_branch, shot_saved, shot_reload):
        assert shot.stat().st_size > 5_000
    docs = ROOT / "docs" / "img"
    docs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot_page, docs / "notebook-widget.png")


def test_run_all_on_the_demo_notebook(jupyterlab: Any, page: Any, screenshot: Any) -> None:
    """Run All: the follow-up queues behind the first run, and the buttons keep working while the
    `await k2lab.wait()` cell blocks (JupyterLab sends widget messages over a kernel subshell)."""
    shutil.copyfile(ROOT / "examples" / "demo.ipynb", jupyterlab.root_dir / "demo.ipynb")
    _open(page, jupyterlab, "demo.ipynb")
    page.locator(".jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    lives = page.locator(".k2lab-live")
    lives.nth(1).wait_for(timeout=60_000)  # both %k2 cells ran and returned at once
    assert "queued" in lives.nth(1).locator(".k2lab-head").inner_text() or (
        lives.nth(1).locator(".k2lab-reasoning").count() == 0
    )
    for _ in range(2):  # the first run, then the follow-up once it starts
        first = page.locator(".k2lab-live").first
        first.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
        run_id = first.get_attribute("data-k2lab-run-id")
        first.locator(".k2lab-approve-all").click()
        live_view(page, run_id).wait_for(state="detached", timeout=60_000)

    # the wait cell returned, then `%k2 runs` listed both runs as completed
    last = page.locator(".jp-Cell").last.locator(".jp-OutputArea-output")
    listing = last.filter(has_text="completed").first
    listing.wait_for(timeout=60_000)
    # text_content: the notebook hides off-screen cells (content-visibility), inner_text is ""
    assert (listing.text_content() or "").count("completed") == 2
    traces = page.locator(SAVED_TRACE)
    assert traces.count() == 2
    assert traces.nth(1).locator("img").count() >= 1  # the follow-up's plot
    screenshot("notebook-demo-run-all")


# -- the view module alone in Chromium, fed the widget's own messages ----------------------------
# (no JupyterLab: trace_view.js renders into a plain page with a model that records what it sends)


def _mount(page: Any, dark: bool = False) -> None:
    from k2lab.notebook.widget import _STATIC
    from k2lab.trace.render import CSS_PATH

    js = (_STATIC / "trace_view.js").read_text(encoding="utf-8")
    css = CSS_PATH.read_text(encoding="utf-8")
    theme = (
        ":root{--jp-layout-color0:#111;--jp-layout-color1:#1e1e1e;--jp-layout-color2:#2a2a2a;"
        "--jp-layout-color3:#3a3a3a;--jp-ui-font-color0:#fff;--jp-ui-font-color1:#e0e0e0;"
        "--jp-ui-font-color2:#bdbdbd;--jp-border-color1:#555;--jp-border-color2:#444}"
        "body{background:#111}"
        if dark
        else ""
    )
    page.set_content(f"<style>{css}{theme}</style><div id='out'></div>")
    page.evaluate(
        """async (src) => {
          const mod = await import(URL.createObjectURL(new Blob([src], {type: "text/javascript"})));
          window.sent = [];
          const model = {send: (m) => window.sent.push(m), on: (n, f) => (window.deliver = f),
                         off: () => {}};
          mod.default.render({model, el: document.getElementById("out")});
        }""",
        js,
    )


def _deliver(page: Any, msgs: list[dict[str, Any]]) -> None:
    for m in msgs:
        page.evaluate("(m) => window.deliver(m)", m)


def _widget_messages(events: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    from k2lab.notebook.widget import TraceWidget

    w = TraceWidget(None)
    sent: list[dict[str, Any]] = []
    w.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    for ev in events:
        w.feed(ev)
    return w, sent


def test_lanes_and_the_verify_outcome_are_drawn(page: Any, screenshot: Any) -> None:
    from tests.notebook.test_state import heavy_events

    events = heavy_events(verify_outcome="unverified")
    _mount(page, dark=True)
    w, _ = _widget_messages(events)
    _deliver(page, [w.snapshot()])
    lanes = page.locator(".k2lab-runlane")
    expect(lanes).to_have_count(2)
    expect(page.locator('.k2lab-runlane[data-lane="1"] .k2lab-runlane-head')).to_contain_text(
        "finished"
    )
    expect(page.locator('.k2lab-runlane[data-lane="2"] .k2lab-runlane-head')).to_contain_text(
        "stopped"
    )
    expect(page.locator('.k2lab-runlane[data-lane="1"] .k2lab-runlane-head')).to_contain_text(
        "step 1 · 1 tool call · 110 tokens"
    )
    # a lane opens to its steps and calls
    page.locator('.k2lab-runlane[data-lane="1"] > summary').click()
    expect(page.locator('.k2lab-runlane[data-lane="1"] .k2lab-call')).to_contain_text("ran")
    expect(page.locator('.k2lab-runlane[data-lane="1"] pre.k2lab-code')).to_contain_text("0.785")
    # the aggregation's answer, which lanes finished, and the verify outcome next to it
    expect(page.locator(".k2lab-answer")).to_contain_text("pi ~ 3.14 (lane 1)")
    expect(page.locator(".k2lab-runlanes-note")).to_contain_text(
        "finished: 1 · did not finish: 2 (stopped)"
    )
    verify = page.locator(".k2lab-verify")
    expect(verify).to_have_attribute("data-outcome", "unverified")
    expect(verify).to_contain_text("could not verify")
    expect(verify).to_contain_text("1 check run")
    expect(page.locator(".k2lab-aggregation-label")).to_be_visible()
    screenshot("notebook-widget-lanes-dark", page.locator(".k2lab-live"))


def test_keyboard_focus_and_the_reasoning_beside_a_waiting_call(page: Any) -> None:
    from tests.notebook.test_state import run_events

    evs = run_events()
    _mount(page)
    w, _ = _widget_messages(evs[:7])  # the call waits for a decision
    _deliver(page, [w.snapshot()])
    reasoning = page.locator(".k2lab-step .k2lab-reasoning")
    # the step is done, but its call waits: the reasoning stays open beside it (as the panel)
    assert reasoning.evaluate("d => d.open") is True
    page.locator(".k2lab-reject").click()
    assert page.evaluate("document.activeElement.className") == "k2lab-feedback-input"
    page.locator(".k2lab-cancel").click()
    page.locator(".k2lab-edit").click()
    assert page.evaluate("document.activeElement.className") == "k2lab-editor"
    page.locator(".k2lab-cancel").click()
    page.locator(".k2lab-approve").focus()
    page.keyboard.press("Enter")
    assert page.evaluate("window.sent.at(-1).action") == "approve"
    assert page.evaluate("document.activeElement !== document.body")
    # the run answers the decision: the card is rebuilt, the focus stays in the view
    sent: list[dict[str, Any]] = []
    w.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    for ev in evs[7:9]:
        w.feed(ev)
    w.flush()
    _deliver(page, sent)
    expect(page.locator(".k2lab-call")).to_contain_text("ran")
    assert page.evaluate("document.activeElement.closest('.k2lab-live') !== null")
    # decided: the finished reasoning folds
    assert reasoning.evaluate("d => d.open") is False


def test_a_queued_view_shows_no_empty_prompt_or_unknown_parts(page: Any) -> None:
    from k2lab.notebook.widget import TraceWidget

    _mount(page)
    _deliver(page, [TraceWidget(None).snapshot()])
    expect(page.locator(".k2lab-status")).to_have_text("queued: starts when the run before it ends")
    expect(page.locator(".k2lab-prompt")).to_be_hidden()


def test_lanes_streamed_as_patches_end_as_the_snapshot_draws_them(page: Any) -> None:
    """Lane patches carry only the steps that changed; merged, they draw what a snapshot does."""
    from k2lab.notebook.widget import TraceWidget
    from tests.notebook.test_state import heavy_events

    _mount(page)
    w = TraceWidget(None)
    sent: list[dict[str, Any]] = []
    w.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    _deliver(page, [w.snapshot()])
    events = heavy_events()
    extra = [  # lane 1 goes on to a second step after its first was sent
        {"type": "step.start", "lane": "1", "step": 2},
        {"type": "reasoning.delta", "lane": "1", "step": 2, "text": "second step"},
    ]
    for ev in events[:14] + extra + events[14:]:
        w.feed(ev)
    assert any(ln["partial"] for p in sent for ln in p.get("lanes") or [])
    _deliver(page, sent)
    lane = page.locator('.k2lab-runlane[data-lane="1"]')
    page.locator('.k2lab-runlane[data-lane="1"] > summary').click()
    expect(lane.locator(".k2lab-runlane-step")).to_have_count(2)
    expect(lane).to_contain_text("Step 1 · reasoning")
    expect(lane).to_contain_text("Step 2 · reasoning")
    expect(lane.locator(".k2lab-call")).to_contain_text("ran")


def test_stop_lane_shows_on_a_going_lane_and_sends_its_lane(page: Any, screenshot: Any) -> None:
    """A heavy run whose lanes are going, on a session that can stop one lane (RunRecord has
    ``stop_lane``): each lane shows "Stop lane"; a click sends that lane; once the lane ended
    its button is gone, the other lane's stays."""
    from k2lab.notebook.widget import TraceWidget
    from tests.notebook.test_state import heavy_events

    class Controls:
        def stop_lane(self, lane: str) -> None: ...

    going = [e for e in heavy_events() if e["type"] in ("run.start", "step.start")]
    w = TraceWidget(Controls())  # type: ignore[arg-type]
    w.send = lambda content, buffers=None: None  # type: ignore[method-assign]
    for ev in going:
        w.feed(ev)
    _mount(page)
    _deliver(page, [w.snapshot()])
    buttons = page.locator("button.k2lab-stop-lane")
    expect(buttons).to_have_count(2)
    screenshot("notebook-widget-stop-lane", page.locator(".k2lab-live"))
    page.locator('.k2lab-runlane[data-lane="2"] button.k2lab-stop-lane').click()
    assert page.evaluate("window.sent.at(-1)") == {"action": "stop_lane", "lane": "2"}
    w.feed({"type": "run.end", "lane": "2", "stop_reason": "stopped", "answer": "", "ts": 101.0})
    _deliver(page, [w.snapshot()])
    expect(page.locator('.k2lab-runlane[data-lane="2"] .k2lab-runlane-head')).to_contain_text(
        "stopped"
    )
    expect(page.locator('.k2lab-runlane[data-lane="2"] button.k2lab-stop-lane')).to_have_count(0)
    expect(page.locator('.k2lab-runlane[data-lane="1"] button.k2lab-stop-lane')).to_have_count(1)


def test_heavy_under_ask_each_lanes_call_has_its_own_buttons(page: Any, screenshot: Any) -> None:
    """``%k2 --heavy 2 --approve ask``: both lanes wait on a call with the same id; each lane
    opens with Approve / Reject on its call, and a click names that lane's run id (the kernel
    side, routing by (run_id, call_id), is tests/notebook/test_kernel_verify_heavy.py)."""
    import json

    evs: list[dict[str, Any]] = []
    for lane in ("1", "2"):
        evs += [
            {
                "type": "run.start",
                "lane": lane,
                "run_id": f"h1.{lane}",
                "prompt": "estimate pi",
                "model": "m",
                "model_label": "demo",
                "policy": "ask",
                "isolation": "bwrap",
                "max_steps": 10,
                "ts": 100.0,
            },
            {"type": "step.start", "lane": lane, "step": 1, "ts": 100.1},
            {
                "type": "tool.proposed",
                "lane": lane,
                "run_id": f"h1.{lane}",
                "step": 1,
                "call_id": "functions.python:0",
                "name": "python",
                "arguments": json.dumps({"code": f"print({lane} * 21)"}),
            },
        ]
    w, _ = _widget_messages(evs)
    _mount(page)
    _deliver(page, [w.snapshot()])
    for lane in ("1", "2"):
        box = page.locator(f'.k2lab-runlane[data-lane="{lane}"]')
        expect(box.locator(".k2lab-runlane-head")).to_contain_text("waiting for you")
        expect(box.locator(".k2lab-lane-decide button.k2lab-approve")).to_be_visible()
    expect(page.locator("button.k2lab-approve-all")).to_be_visible()
    screenshot("notebook-widget-lanes-ask", page.locator(".k2lab-live"))
    page.locator('.k2lab-runlane[data-lane="1"] .k2lab-lane-decide button.k2lab-approve').click()
    assert page.evaluate("window.sent.at(-1)") == {
        "action": "approve",
        "call_id": "functions.python:0",
        "run_id": "h1.1",
    }
    page.locator('.k2lab-runlane[data-lane="2"] .k2lab-lane-decide button.k2lab-reject').click()
    assert page.evaluate("window.sent.at(-1)") == {
        "action": "reject",
        "call_id": "functions.python:0",
        "run_id": "h1.2",
    }
    # once decided, a lane's call has no buttons left
    w.feed(
        {
            "type": "tool.decision",
            "lane": "1",
            "run_id": "h1.1",
            "call_id": "functions.python:0",
            "decision": "approve",
            "by": "user",
        }
    )
    _deliver(page, [w.snapshot()])
    expect(page.locator('.k2lab-runlane[data-lane="1"] .k2lab-lane-decide')).to_have_count(0)
    expect(page.locator('.k2lab-runlane[data-lane="2"] .k2lab-lane-decide')).to_have_count(1)
