"""A saved trace of a vision-model run, reopened in real JupyterLab + Chromium (issue 10,
"Results the model can see"): the plot carries a "sent to the model" tag (from the result's
``sent_to_model`` field), and the notes the model read about it ("<Figure size ...>",
"[image/png output ...]") are not shown above it; the html fallback tags it the same way.

The events come from a real run: the agent over HTTP against the fake model (vision on), a tool
returning a real matplotlib PNG. Screenshot: tests/browser/screenshots/trace-image-sent.png.
"""

from __future__ import annotations

import asyncio
import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from k2lab.agent.decisions import AutoApprove
from k2lab.agent.loop import Agent
from k2lab.providers.openai_compat import OpenAICompatProvider
from k2lab.tools.base import ToolOutput, people_text
from k2lab.tools.registry import ToolRegistry
from k2lab.trace.notebook import trace_bundle
from tests.browser.test_panel import new_notebook, open_lab
from tests.fixtures.fake_server import Call, Turn, start_fake_model
from tests.providers.test_vision import CodeParams

pytestmark = pytest.mark.browser
OUT = ".k2lab-trace-output"


def _png() -> str:
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4, 2.5))
    plt.bar(["a", "b", "c"], [3, 5, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


class Plot:
    name = "python"
    description = "Run Python code (test stand-in)."
    params = CodeParams

    async def call(self, args: Any) -> ToolOutput:
        note = "<Figure size 400x250 with 1 Axes>\n[image/png output, 9 kB, shown to the user]\n"
        display = [
            {
                "data": {"image/png": _png(), "text/plain": "<Figure size 400x250 with 1 Axes>"},
                "metadata": {"k2lab": {"model_note": note}},
            }
        ]
        text = "totals: a=3 b=5 c=2\n" + note
        return ToolOutput(True, text, display, people_output=people_text(text, display))


def _events() -> list[dict[str, Any]]:
    fake = start_fake_model()
    try:
        fake.script(
            [
                Turn(reasoning="Plot it.", tool_calls=[Call("python", {"code": "plot()"})]),
                Turn(content="b is the largest bar."),
            ]
        )
        provider = OpenAICompatProvider(
            base_url=fake.base_url, api_key="k", model="kimi-k2.5", vision=True
        )
        agent = Agent(provider, ToolRegistry([Plot()]), AutoApprove(), system_prompt="Test.")

        async def run() -> list[dict[str, Any]]:
            return [ev.to_dict() async for ev in agent.run("Plot the totals", run_id="vis")]

        # Playwright's sync API holds this thread's event loop: run the agent in another thread
        with ThreadPoolExecutor(1) as pool:
            events = pool.submit(asyncio.run, run()).result(timeout=60)
        assert any(
            p.get("type") == "image_url"
            for m in fake.requests[1]["messages"]
            if isinstance(m.get("content"), list)
            for p in m["content"]
        )
        return events
    finally:
        fake.close()


def test_saved_trace_tags_the_image_the_model_saw(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    events = _events()
    bundle = trace_bundle("vis", events)
    assert "k2lab-sent-tag" in bundle["text/html"]  # the fallback tags it too
    cell = nbformat.v4.new_code_cell("%%k2\nPlot the totals")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nbformat.write(new_notebook([cell]), Path(jupyterlab.root_dir) / "vision.ipynb")
    open_lab(page, jupyterlab, "vision.ipynb")
    out = page.locator(OUT)
    expect(out).to_have_count(1, timeout=60_000)
    result = out.locator(".k2lab-result")
    expect(result.locator("img.k2lab-image")).to_have_count(1)
    tag = result.locator(".k2lab-sent-tag")
    expect(tag).to_have_text("sent to the model")
    expect(result.locator(".k2lab-stdout")).to_have_text("totals: a=3 b=5 c=2")
    expect(result).not_to_contain_text("[image/png output")
    expect(result).not_to_contain_text("<Figure size")
    screenshot("trace-image-sent", out)
