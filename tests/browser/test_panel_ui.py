"""Defects seen in the browser (issue 11): the panel, the saved-trace renderer and the live view's
CSS, in light and dark themes, at the default panel width and in an 800 px window, plus an
automated accessibility check (axe-core, loaded from labextension/node_modules) of all three.

Screenshots go to tests/browser/screenshots/ui-*.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from k2lab import events as ev
from k2lab.providers.demo.scripts import DEMO_PROMPTS
from k2lab.trace.notebook import trace_bundle
from tests.browser.conftest import ROOT
from tests.browser.test_panel import PANEL, copy_to_docs, new_notebook, open_lab, open_panel

pytestmark = pytest.mark.browser

AXE = ROOT / "labextension" / "node_modules" / "axe-core" / "axe.min.js"
THEMES = "lab/api/settings/@jupyterlab/apputils-extension:themes"
LONG_PROMPT = ("Please read this long brief carefully. " * 1400)[:54_000]


# -- helpers ---------------------------------------------------------------------------------------


def set_theme(lab: Any, dark: bool) -> None:
    """The theme as a user setting (the page reads it at load)."""
    raw = json.dumps({"theme": "JupyterLab Dark"}) if dark else "{}"
    lab.api(THEMES, "PUT", {"raw": raw})


@pytest.fixture
def theme(jupyterlab: Any) -> Iterator[Any]:
    """``theme(dark)`` sets the theme; the light default comes back after the test."""
    yield lambda dark: set_theme(jupyterlab, dark)
    set_theme(jupyterlab, False)


def wait_theme(page: Any, dark: bool) -> None:
    page.wait_for_selector(
        f'body[data-jp-theme-light="{"false" if dark else "true"}"]', state="attached"
    )
    page.wait_for_timeout(300)  # the theme's stylesheet applies


def axe_violations(page: Any, selector: str) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations inside ``selector`` (one line each, readable)."""
    assert AXE.exists(), "axe-core missing: scripts/install.d/30-labextension.sh installs it"
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async (sel) => {
            const r = await axe.run({ include: [sel] }, { resultTypes: ['violations'] });
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' +
                    (n.failureSummary || '').replace(/\\s+/g, ' ').slice(0, 200))
            }));
        }""",
        selector,
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


CONTRAST_JS = """(container) => {
    const rgba = s => { const m = (s.match(/[\\d.]+/g) || []).map(Number);
        const k = s.startsWith('color(') ? 255 : 1;  // color-mix() computes to color(srgb r g b)
        return [(m[0] || 0) * k, (m[1] || 0) * k, (m[2] || 0) * k, m.length > 3 ? m[3] : 1]; };
    const over = (top, under) => { const a = top[3];
        return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]); };
    const lum = c => { const f = v => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
    const background = el => { const layers = [];
        for (let e = el; e; e = e.parentElement) {
            const c = rgba(getComputedStyle(e).backgroundColor);
            if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
        let bg = [255, 255, 255, 1];
        for (const c of layers.reverse()) bg = over(c, bg);
        return bg; };
    const bad = [];
    for (const el of document.querySelector(container).querySelectorAll('*')) {
        const text = [...el.childNodes].filter(n => n.nodeType === 3)
            .map(n => n.data).join('').trim();
        if (!text || !el.getClientRects().length || el.closest('button:disabled')) continue;
        const cs = getComputedStyle(el);
        if (cs.visibility === 'hidden') continue;
        const bg = background(el);
        const fg = over(rgba(cs.color), bg);
        const L1 = lum(fg), L2 = lum(bg);
        const ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
        const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
        const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
        if (ratio < need) bad.push(`${el.className || el.tagName} "${text.slice(0, 30)}": `
            + `${ratio.toFixed(2)} < ${need} (${cs.color} on `
            + `rgb(${bg.slice(0, 3).map(Math.round)}))`);
    }
    return bad;
}"""


def low_contrast(page: Any, container: str) -> list[str]:
    """Text in ``container`` whose colour is below WCAG AA contrast against what is behind it
    (axe-core leaves many of these "incomplete" inside JupyterLab's layered layout)."""
    return sorted(set(page.evaluate(CONTRAST_JS, container)))


def fresh_session(panel: Any) -> None:
    if panel.locator(".k2lab-run").count() or panel.locator(".k2lab-session-select").input_value():
        panel.locator("button.k2lab-new-session").click()
    expect(panel.locator(".k2lab-run")).to_have_count(0)


def start_demo(page: Any, lab: Any) -> Any:
    """Open the panel at its default width and start the demo run; returns the first card."""
    open_lab(page, lab)
    panel = open_panel(page)
    fresh_session(panel)
    panel.locator(".k2lab-prompt-input").fill(DEMO_PROMPTS["estimate_pi"])
    panel.locator("button.k2lab-send").click()
    card = panel.locator(".k2lab-call").nth(0)
    card.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    return panel


def overflowing(page: Any, container: str, inner: str) -> list[str]:
    """Elements matching ``inner`` in ``container`` that are clipped or run past its right edge."""
    return page.evaluate(
        """([container, inner]) => {
            const box = document.querySelector(container).getBoundingClientRect();
            const bad = [];
            for (const el of document.querySelectorAll(container + ' ' + inner)) {
                if (!el.offsetParent) continue;
                const r = el.getBoundingClientRect();
                if (el.scrollWidth > el.clientWidth + 1 || r.right > box.right + 0.5)
                    bad.push(`${el.textContent} (right ${r.right.toFixed(0)} > `
                        + `${box.right.toFixed(0)}`
                        + `, scroll ${el.scrollWidth} > ${el.clientWidth})`);
            }
            return bad;
        }""",
        [container, inner],
    )


def saved_notebook(lab: Any, name: str, prompt: str) -> None:
    code = json.dumps({"code": "# the mean of a few numbers\nprint(sum([1, 2, 3]) / 3)"})
    evs: list[ev.Event] = [
        ev.RunStart(
            run_id="r-ui",
            prompt=prompt,
            model="kimi-k2-thinking",
            model_label="offline demo model (scripted)",
            base_url="",
            policy="ask",
            isolation="bwrap",
            max_steps=300,
        ),
        ev.StepStart(step=1),
        ev.ReasoningDelta(step=1, text="A mean, then the answer."),
        ev.StepEnd(step=1, content="", reasoning="A mean, then the answer."),
        ev.ToolProposed(step=1, call_id="functions.python:0", name="python", arguments=code),
        ev.ToolDecision(call_id="functions.python:0", decision="approve", by="user"),
        ev.ToolResult(call_id="functions.python:0", name="python", ok=True, output="2.0\n"),
        ev.StepStart(step=2),
        ev.ContentDelta(step=2, text="The mean is **2.0**."),
        ev.StepEnd(step=2, content="The mean is **2.0**.", reasoning=""),
        ev.RunEnd(
            stop_reason="completed",
            answer="The mean is **2.0**.",
            steps=2,
            tool_calls=1,
            prompt_tokens=900,
            completion_tokens=60,
        ),
    ]
    for i, e in enumerate(evs):
        e.seq = i
    cell = nbformat.v4.new_code_cell("%k2 mean")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data=trace_bundle("r-ui", [e.to_dict() for e in evs])
        )
    ]
    nbformat.write(new_notebook([cell]), Path(lab.root_dir) / name)


# -- the side panel --------------------------------------------------------------------------------


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_panel_accessibility_and_badges_fit(
    jupyterlab: Any, page: Any, screenshot: Any, theme: Any, dark: bool
) -> None:
    theme(dark)
    panel = start_demo(page, jupyterlab)
    wait_theme(page, dark)
    mode = "dark" if dark else "light"
    screenshot(f"ui-panel-{mode}-default", panel)
    # at the default width no badge is clipped or runs past the panel
    assert overflowing(page, PANEL, ".k2lab-badge, .k2lab-status > span") == []
    assert axe_violations(page, PANEL) == []
    assert (bad := low_contrast(page, PANEL)) == [], "\n".join(bad)
    # approve the first call; at an 800 px window the "approved" badge stays inside the panel
    panel.locator(".k2lab-call").nth(0).locator("button.k2lab-approve").click()
    panel.locator(".k2lab-call").nth(0).locator(".k2lab-call-state").filter(
        has_text="approved"
    ).wait_for()
    page.set_viewport_size({"width": 800, "height": 900})
    page.wait_for_timeout(500)
    screenshot(f"ui-panel-{mode}-800")
    assert overflowing(page, PANEL, ".k2lab-badge, .k2lab-status > span") == []
    assert axe_violations(page, PANEL) == []
    panel.locator("button.k2lab-stop").click()
    panel.locator(".k2lab-run-end").wait_for()


def test_stop_notice_clears_when_the_stop_answer_comes_after_run_end(
    jupyterlab: Any, page: Any
) -> None:
    panel = start_demo(page, jupyterlab)
    held: list[tuple[Any, Any]] = []

    def hold(route: Any) -> None:  # the stop request reaches the server; its answer waits
        held.append((route, route.fetch()))

    page.route(re.compile(r".*/k2lab/api/sessions/[^/?]+/stop(\?.*)?$"), hold)
    panel.locator("button.k2lab-stop").click()
    panel.locator(".k2lab-run-end").filter(has_text="stopped").wait_for()
    assert held
    route, response = held[0]
    route.fulfill(response=response)
    page.wait_for_timeout(500)
    assert "Stopping" not in (panel.locator(".k2lab-panel-notice").text_content() or "")
    assert panel.locator("button.k2lab-send").is_enabled()


def test_selection_chip_follows_the_editor_and_counts_cells_from_1(
    jupyterlab: Any, page: Any
) -> None:
    source = "total = sum(values)  # add every value, then divide by count."
    assert len(source) == 61
    nb = new_notebook([nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(source)])
    nbformat.write(nb, Path(jupyterlab.root_dir) / "selection.ipynb")
    open_lab(page, jupyterlab, "selection.ipynb")
    page.locator(".jp-Notebook .jp-Cell").nth(1).wait_for()
    panel = open_panel(page)
    fresh_session(panel)
    panel.locator(".k2lab-prompt-input").fill("What does this do?")
    panel.locator(".k2lab-context-select").select_option("selection")
    chip = panel.locator(".k2lab-context-chip")
    # the whole second cell selected in its editor: the chip follows at once
    page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    expect(chip).to_contain_text("61 chars")
    # the second cell is "cell 2", as JupyterLab counts cells (status bar, "Go to cell")
    expect(chip).to_contain_text("selection in cell 2 of selection.ipynb")
    # a smaller selection: 4 characters
    page.keyboard.press("Control+Home")
    for _ in range(4):
        page.keyboard.press("Shift+ArrowRight")
    expect(chip).to_contain_text("· 4 chars")
    # Send by mouse (the prompt box is not focused again): the 4 characters are sent
    panel.locator("button.k2lab-send").click()
    panel.locator(".k2lab-run-end").wait_for()
    summary = panel.locator("details.k2lab-prompt-context summary")
    expect(summary).to_contain_text("· 4 chars")
    panel.locator(".k2lab-context-select").select_option("cell")
    expect(chip).to_contain_text("cell 2 of selection.ipynb")


def test_keyboard_focus_ring_and_focus_after_approve_and_reject(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    panel = start_demo(page, jupyterlab)
    first = panel.locator(".k2lab-call").nth(0)
    first.locator("textarea.k2lab-editor").focus()
    page.keyboard.press("Tab")
    expect(first.locator("button.k2lab-approve")).to_be_focused()
    ring = page.evaluate(
        """() => {
            const el = document.activeElement;
            const cs = getComputedStyle(el);
            const rgb = s => { const m = (s.match(/[\\d.]+/g) || []).map(Number);
                return s.startsWith('color(') ? m.map((v, i) => (i < 3 ? v * 255 : v)) : m; };
            const lum = ([r, g, b]) => {
                const f = c => { c /= 255;
                    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
                return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
            };
            let bg = el.parentElement;
            while (bg && rgb(getComputedStyle(bg).backgroundColor)[3] === 0) bg = bg.parentElement;
            const around = rgb(getComputedStyle(bg || document.body).backgroundColor);
            const ratio = (a, b) =>
                (Math.max(lum(a), lum(b)) + 0.05) / (Math.min(lum(a), lum(b)) + 0.05);
            return { style: cs.outlineStyle, width: parseFloat(cs.outlineWidth),
                     offset: parseFloat(cs.outlineOffset),
                     contrast: ratio(rgb(cs.outlineColor), around),
                     vsButton: ratio(rgb(cs.outlineColor), rgb(cs.backgroundColor)) };
        }"""
    )
    screenshot("ui-panel-focus-ring", first)
    # a visible ring: solid, at least 2 px, 3:1 against the card (WCAG 1.4.11), and set off from
    # the blue button (an offset, or a colour unlike the button's)
    assert ring["style"] not in ("none", "auto") and ring["width"] >= 2, ring
    assert ring["contrast"] >= 3, ring
    assert ring["offset"] >= 1 or ring["vsButton"] >= 3, ring
    page.keyboard.press("Enter")  # approve
    first.locator(".k2lab-call-state").filter(has_text="approved").wait_for()
    # focus is not dropped to <body>: it waits in the prompt box, then moves to the next Approve
    second = panel.locator(".k2lab-call").nth(1)
    second.locator(".k2lab-call-state").filter(has_text="waiting for you").wait_for()
    expect(second.locator("button.k2lab-approve")).to_be_focused()
    # Reject by keyboard: the feedback box gets the focus, Enter sends, focus is not lost
    reject = second.locator("button.k2lab-reject")
    for _ in range(3):  # past Edit & run (disabled until the code is edited)
        page.keyboard.press("Tab")
        if reject.evaluate("b => b === document.activeElement"):
            break
    expect(reject).to_be_focused()
    page.keyboard.press("Enter")
    expect(second.locator(".k2lab-feedback-input")).to_be_focused()
    page.keyboard.type("not needed")
    page.keyboard.press("Enter")
    second.locator(".k2lab-call-state").filter(has_text="rejected").wait_for()
    panel.locator(".k2lab-run-end").wait_for()
    active = page.evaluate(
        "() => document.activeElement.tagName + '.' + document.activeElement.className"
    )
    assert "k2lab-prompt-input" in active, active


def test_long_prompt_folds_with_show_all_in_the_panel(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    open_lab(page, jupyterlab)
    panel = open_panel(page)
    fresh_session(panel)
    panel.locator(".k2lab-prompt-input").fill(LONG_PROMPT)
    panel.locator("button.k2lab-send").click()
    panel.locator(".k2lab-run-end").wait_for()
    prompt = panel.locator(".k2lab-prompt").first
    height = prompt.bounding_box()["height"]
    assert height < 500, height
    toggle = prompt.locator("button.k2lab-prompt-toggle")
    expect(toggle).to_contain_text("show all")
    expect(toggle).to_contain_text("54k chars")
    screenshot("ui-panel-long-prompt", panel)
    toggle.click()
    assert prompt.bounding_box()["height"] > 3 * height
    assert prompt.inner_text().count("Please read") > 1000  # all of it, nothing lost
    expect(toggle).to_contain_text("show less")
    toggle.click()
    assert prompt.bounding_box()["height"] < 500


# -- the saved-trace renderer ----------------------------------------------------------------------


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_saved_trace_accessibility_and_long_prompt_fold(
    jupyterlab: Any, page: Any, screenshot: Any, theme: Any, dark: bool
) -> None:
    theme(dark)
    name = f"ui_saved_{'dark' if dark else 'light'}.ipynb"
    saved_notebook(jupyterlab, name, LONG_PROMPT)
    open_lab(page, jupyterlab, name)
    out = page.locator(".k2lab-trace-output")
    out.wait_for(timeout=60_000)
    wait_theme(page, dark)
    prompt = out.locator(".k2lab-prompt")
    assert prompt.bounding_box()["height"] < 500
    expect(prompt.locator("button.k2lab-prompt-toggle")).to_contain_text("show all")
    end = out.locator(".k2lab-run-end").inner_text()
    assert "1 tool call ·" in end and "2 steps" in end
    shot = screenshot(f"ui-saved-{'dark' if dark else 'light'}", out)
    if dark:
        copy_to_docs(shot, "saved-trace-dark.png")
    assert axe_violations(page, ".k2lab-trace-output") == []
    assert (bad := low_contrast(page, ".k2lab-trace-output")) == [], "\n".join(bad)


# -- the live view (%%k2 in a notebook) ------------------------------------------------------------


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_live_view_accessibility_badges_and_comments(
    jupyterlab: Any, page: Any, screenshot: Any, theme: Any, dark: bool
) -> None:
    theme(dark)
    name = f"ui_live_{'dark' if dark else 'light'}.ipynb"
    nb = new_notebook(
        [
            nbformat.v4.new_code_cell("%load_ext k2lab"),
            nbformat.v4.new_code_cell("%%k2\n" + DEMO_PROMPTS["estimate_pi"]),
        ]
    )
    nbformat.write(nb, Path(jupyterlab.root_dir) / name)
    page.goto(jupyterlab.lab_url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector("text=| Idle", timeout=60_000)
    wait_theme(page, dark)
    page.locator(".jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    live = page.locator(".k2lab-live")
    live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    expect(live.locator(".k2lab-head")).to_contain_text("waiting for you")
    assert live.locator(".k2lab-hl .c1, .k2lab-hl .c").count() >= 1  # a code comment is shown
    # one run, no lanes: the heavy-mode parts stay out of sight (a class's display once won)
    for part in (".k2lab-aggregation-label", ".k2lab-runlanes", ".k2lab-verify"):
        expect(live.locator(part)).to_be_hidden()
    shot = screenshot(f"ui-live-{'dark' if dark else 'light'}", live)
    if dark:
        copy_to_docs(shot, "live-view-dark.png")
    assert axe_violations(page, ".k2lab-live") == []
    # the header badges ("offline demo model", "waiting for you") and the code comments
    assert (bad := low_contrast(page, ".k2lab-live")) == [], "\n".join(bad)
    live.locator(".k2lab-stop").first.click()


def test_a_long_cell_prompt_is_a_bounded_scrolling_block_in_the_live_view(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    """A 21,000-character ``%%k2`` prompt once made a 7,400 px output: the live view's prompt
    is a bounded block that scrolls, and holds every character (looked at while a call waits:
    once the run ends the saved trace takes the output's place)."""
    filler = ("Explain each step, one by one, slowly. " * 600)[: 21_000 - 100]
    prompt = DEMO_PROMPTS["estimate_pi"] + "\n" + filler
    nb = new_notebook(
        [
            nbformat.v4.new_code_cell("%load_ext k2lab"),
            nbformat.v4.new_code_cell("%%k2 --approve ask\n" + prompt),
        ]
    )
    nbformat.write(nb, Path(jupyterlab.root_dir) / "ui_long_cell_prompt.ipynb")
    page.goto(jupyterlab.lab_url("ui_long_cell_prompt.ipynb"))
    page.wait_for_selector("text=| Idle", timeout=60_000)
    page.locator(".jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    live = page.locator(".k2lab-live")
    block = live.locator(".k2lab-prompt pre")
    live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
    screenshot("ui-live-long-prompt", live)
    assert block.bounding_box()["height"] < 400
    sizes = block.evaluate("p => [p.scrollHeight, p.clientHeight, p.textContent.length]")
    assert sizes[0] > 3 * sizes[1] and sizes[2] >= 20_900  # all of it, scrolled not cut
    live.locator(".k2lab-stop").first.click()
