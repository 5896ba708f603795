"""The notes the model reads about rich outputs stay out of what people see above the output.

``OutputCollector`` writes a note for each bundle in the model's text ("<Figure size ...>" plus
"[image/png output, N kB, shown to the user]") and names it in the bundle's own
``metadata.k2lab.model_note``; ``people_text`` cuts exactly those notes (the sandbox cannot set
that metadata itself), and the python tool hands the result over as ``people_output``.
"""

from __future__ import annotations

import base64

import pytest

from k2lab.sandbox.kernel import SandboxKernel
from k2lab.sandbox.output import OutputCollector
from k2lab.tools.base import people_text
from k2lab.tools.python import PythonParams, PythonTool

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 100).decode()


def collect(*msgs: dict) -> OutputCollector:  # type: ignore[type-arg]
    out = OutputCollector(model_chars=10_000, display_bytes=1024**2)
    for m in msgs:
        out.handle(m)
    return out


def figure(meta: dict | None = None) -> dict:  # type: ignore[type-arg]
    data = {"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"}
    return {"msg_type": "display_data", "content": {"data": data, "metadata": meta or {}}}


def test_figure_note_is_for_the_model_only() -> None:
    out = collect(
        {"msg_type": "stream", "content": {"text": "before\n"}},
        figure(),
        {"msg_type": "stream", "content": {"text": "after\n"}},
    )
    text, display = out.model_text(), out.people_display()
    assert "<Figure size 640x480 with 1 Axes>\n[image/png output" in text
    assert display[0]["metadata"]["k2lab"]["model_note"].startswith("<Figure size")
    assert people_text(text, display) == "before\nafter\n"


def test_only_a_figure_leaves_nothing_above_it() -> None:
    out = collect(figure())
    assert people_text(out.model_text(), out.people_display()) == ""


def test_sandbox_cannot_hide_text_from_people() -> None:
    """Sandbox code setting ``metadata.k2lab`` itself: overwritten, so it cannot cut its own
    printed lines out of the person's view."""
    out = collect(
        {"msg_type": "stream", "content": {"text": "rm -rf done\n"}},
        figure({"k2lab": {"model_note": "rm -rf done\n"}, "isolated": True}),
    )
    display = out.people_display()
    assert display[0]["metadata"]["isolated"] is True
    assert display[0]["metadata"]["k2lab"]["model_note"].startswith("<Figure")
    assert people_text(out.model_text(), display) == "rm -rf done\n"


def test_dropped_bundle_keeps_its_note_for_people() -> None:
    out = OutputCollector(model_chars=10_000, display_bytes=50)
    out.handle(figure())
    text, display = out.model_text(), out.people_display()
    assert display[0]["metadata"]["k2lab"] == {"dropped": 1}
    assert people_text(text, display) is None  # nothing cut: the plot is not shown


def test_text_without_rich_output_is_unchanged() -> None:
    out = collect({"msg_type": "stream", "content": {"text": "hello\n"}})
    assert people_text(out.model_text(), out.people_display()) is None


@pytest.mark.parametrize("level", ["process"])
async def test_python_tool_plot_people_output(level: str) -> None:
    sk = SandboxKernel(isolation=level)
    await sk.start()
    try:
        tool = PythonTool(sk, timeout=30)
        code = (
            "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
            "print('mean', 3.5)\nplt.plot([1, 2]); plt.show()"
        )
        out = await tool.call(PythonParams(code=code))
        assert out.ok, out.output
        assert "<Figure size" in out.output and "[image/png output" in out.output
        assert out.people_output == "mean 3.5\n"
        assert "image/png" in out.display[0]["data"]
    finally:
        await sk.shutdown()


async def test_a_real_plot_reaches_a_vision_model(fake_model) -> None:  # type: ignore[no-untyped-def]
    """End to end: python tool in a real sandbox kernel, the agent over HTTP, vision on: the
    fake server's recorded request has the plot as an image part; the result says it went."""
    from k2lab.agent.decisions import AutoApprove
    from k2lab.agent.loop import Agent
    from k2lab.providers.openai_compat import OpenAICompatProvider
    from k2lab.tools.registry import ToolRegistry
    from tests.agent.helpers import of_type, run_all
    from tests.fixtures.fake_server import Call, Turn

    code = (
        "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.bar([1, 2], [3, 5]); plt.show()"
    )
    fake_model.script([Turn(tool_calls=[Call("python", {"code": code})]), Turn(content="ok")])
    sk = SandboxKernel(isolation="process")
    await sk.start()
    try:
        provider = OpenAICompatProvider(
            base_url=fake_model.base_url, api_key="k", model="kimi-k2.5", vision=True
        )
        agent = Agent(provider, ToolRegistry([PythonTool(sk, timeout=30)]), AutoApprove())
        events = await run_all(agent, "plot")
    finally:
        await sk.shutdown()
    (res,) = of_type(events, "tool.result")
    assert res.ok and res.sent_to_model == [0] and res.people_output == ""
    last = fake_model.requests[1]["messages"][-1]
    assert last["role"] == "user"
    url = last["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,iVBOR")
    assert url.endswith(res.display[0]["data"]["image/png"].strip()[-40:])
