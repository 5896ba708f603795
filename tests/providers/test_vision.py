"""Images from tool results reach a vision model (issue 10, "Results the model can see").

Real provider over HTTP against the fake server, which records every request body: with the
model's ``vision`` flag on, a step's images follow its tool messages as one user message of
``image_url`` data-URL parts (bounded per step); with it off, the request is what it was.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import BaseModel

from k2lab.agent.context import HIDDEN_IMAGES, Conversation
from k2lab.agent.decisions import AutoApprove
from k2lab.agent.images import MAX_IMAGES_PER_STEP
from k2lab.agent.loop import Agent
from k2lab.config import resolve_settings
from k2lab.events import (
    RunStart,
    StepStart,
    ToolDecision,
    ToolProposed,
    ToolResult,
    event_from_dict,
)
from k2lab.notebook.widget import TraceWidget
from k2lab.providers.openai_compat import OpenAICompatProvider
from k2lab.providers.presets import model_sees_images
from k2lab.runtime import open_provider
from k2lab.tools.base import ToolOutput, people_text
from k2lab.tools.registry import ToolRegistry
from k2lab.trace.notebook import trace_bundle
from k2lab.trace.render import SENT_TAG
from tests.agent.helpers import check_history, of_type, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode()
SECRET = "sk-vision-test-secret-0123456789"


class CodeParams(BaseModel):
    code: str


class PlotTool:
    """Returns ``n`` PNG plots (``n`` from the code), like the python tool does for figures."""

    name = "python"
    description = "Run Python code (test stand-in)."
    params = CodeParams

    async def call(self, args: BaseModel) -> ToolOutput:
        assert isinstance(args, CodeParams)
        n = int(args.code)
        note = "<Figure size 640x480 with 1 Axes>\n[image/png output, 48 B, shown to the user]\n"
        display = [
            {
                "data": {"image/png": PNG if i else PNG + SECRET, "text/plain": "<Figure>"},
                "metadata": {"k2lab": {"model_note": note}},
            }
            for i in range(n)
        ]
        text = "mean 3.5\n" + note * n
        return ToolOutput(
            ok=True, output=text, display=display, people_output=people_text(text, display)
        )


def agent_for(fake: FakeModel, *, vision: bool) -> Agent:
    provider = OpenAICompatProvider(
        base_url=fake.base_url, api_key=SECRET, model="kimi-k2.5", vision=vision
    )
    return Agent(provider, ToolRegistry([PlotTool()]), AutoApprove(), system_prompt="Test.")


def image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    users = [m for m in body["messages"] if m["role"] == "user" and isinstance(m["content"], list)]
    return [p for m in users for p in m["content"] if p["type"] == "image_url"]


async def test_a_vision_model_gets_the_plot_as_an_image_part(fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(reasoning="plot", tool_calls=[Call("python", {"code": "1"})]),
            Turn(content="The bars rise."),
        ]
    )
    events = await run_all(agent_for(fake_model, vision=True), "plot it")
    body = fake_model.requests[1]
    msgs = body["messages"]
    check_history(msgs)
    tool = next(m for m in msgs if m["role"] == "tool")
    assert "[image/png output" in tool["content"]  # the tool message keeps the text
    after = msgs[msgs.index(tool) + 1]
    assert after["role"] == "user" and isinstance(after["content"], list)
    assert (
        after["content"][0]["type"] == "text"
        and "functions.python:0" in after["content"][0]["text"]
    )
    (part,) = image_parts(body)
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64," + PNG)
    assert SECRET not in fake_model.raw[1].decode()  # scrubbed as text is
    (res,) = of_type(events, "tool.result")
    assert res.sent_to_model == [0]
    # people see the plot, not the notes the model read about it
    assert res.people_output == "mean 3.5\n" and "<Figure" in res.output


async def test_flag_off_nothing_changes(fake_model: FakeModel) -> None:
    fake_model.script([Turn(tool_calls=[Call("python", {"code": "1"})]), Turn(content="done")])
    events = await run_all(agent_for(fake_model, vision=False), "plot it")
    body = fake_model.requests[1]
    assert image_parts(body) == []
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
    (res,) = of_type(events, "tool.result")
    assert res.sent_to_model == []


async def test_images_are_bounded_per_step(fake_model: FakeModel) -> None:
    n = MAX_IMAGES_PER_STEP + 2
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", {"code": str(n)}), Call("python", {"code": "1"})]),
            Turn(content="done"),
        ]
    )
    events = await run_all(agent_for(fake_model, vision=True), "plots")
    body = fake_model.requests[1]
    check_history(body["messages"])
    assert len(image_parts(body)) == MAX_IMAGES_PER_STEP
    note = body["messages"][-1]["content"][0]["text"]
    assert "3 more image(s) not sent" in note
    first, second = of_type(events, "tool.result")
    assert first.sent_to_model == list(range(MAX_IMAGES_PER_STEP)) and second.sent_to_model == []


def test_compaction_hides_images_too() -> None:
    conv = Conversation("s")
    conv.add_user("q")
    conv.add_tool_images([{"type": "image_url", "image_url": {"url": "data:image/png;base64,x"}}])
    assert conv.hide_tool_outputs() == 1
    assert conv.messages[-1] == {"role": "user", "content": HIDDEN_IMAGES}


def test_vision_flag_per_model_and_override() -> None:
    assert model_sees_images("kimi-k2.5") and model_sees_images("moonshotai/Kimi-K2.5")
    assert model_sees_images("kimi-latest")
    assert not model_sees_images("kimi-k2-thinking")
    assert not model_sees_images("moonshotai/Kimi-K2-Thinking")
    assert model_sees_images("my-finetune", "on") and not model_sees_images("kimi-k2.5", "off")


def test_settings_and_runtime_carry_the_flag() -> None:
    env = {"K2LAB_API_KEY": "k"}
    p = open_provider(
        resolve_settings({"base_url": "http://127.0.0.1:9/v1", "model": "kimi-k2.5"}, environ=env)
    )
    assert getattr(p, "vision", None) is True
    p = open_provider(resolve_settings({"base_url": "http://127.0.0.1:9/v1"}, environ=env))
    assert getattr(p, "vision", None) is False  # kimi-k2-thinking
    s = resolve_settings(
        {"base_url": "http://127.0.0.1:9/v1", "model": "mine"},
        environ={**env, "K2LAB_VISION": "on"},
    )
    assert s.vision == "on" and getattr(open_provider(s), "vision", None) is True
    demo = open_provider(resolve_settings({}, environ={}))
    assert getattr(demo, "demo", False) and getattr(demo, "vision", None) is False


def test_result_fields_round_trip_and_stay_absent_when_unused() -> None:
    plain = ToolResult(call_id="c", name="python", ok=True, output="x").to_dict()
    assert "people_output" not in plain and "sent_to_model" not in plain  # old traces unchanged
    ev = ToolResult(
        call_id="c", name="python", ok=True, output="x", people_output="", sent_to_model=[0]
    )
    back = event_from_dict(ev.to_dict())
    assert isinstance(back, ToolResult)
    assert back.people_output == "" and back.sent_to_model == [0]


def test_views_tag_the_sent_image_and_drop_the_notes() -> None:
    """The live widget's and the saved trace's html (state -> render): tag + people text."""
    events = [
        RunStart(
            run_id="r",
            prompt="p",
            model="kimi-k2.5",
            model_label="kimi-k2.5",
            base_url="http://x/v1",
            policy="auto",
            isolation="process",
            max_steps=3,
        ),
        StepStart(step=1),
        ToolProposed(step=1, call_id="c", name="python", arguments='{"code": "1"}', run_id="r"),
        ToolDecision(run_id="r", call_id="c", decision="approve", by="policy"),
        ToolResult(
            call_id="c",
            name="python",
            ok=True,
            output="mean 3.5\n<Figure size 640x480 with 1 Axes>\n"
            "[image/png output, 48 B, shown to the user]\n",
            display=[
                {"data": {"image/png": PNG}, "metadata": {}},
                {"data": {"image/png": PNG}, "metadata": {}},
            ],
            people_output="mean 3.5\n",
            sent_to_model=[1],
            run_id="r",
        ),
    ]
    dicts = [e.to_dict() for e in events]
    for i, d in enumerate(dicts):
        d["seq"] = i
    html = trace_bundle("r", dicts)["text/html"]
    assert html.count(SENT_TAG) == 1
    assert html.index(SENT_TAG) > html.index("<img", html.index("<img") + 1)  # the 2nd image
    assert "[image/png output" not in html and "Figure size" not in html
    assert "mean 3.5" in html
    assert "*[image/png output, sent to the model]*" in trace_bundle("r", dicts)["text/markdown"]

    # the live widget: what its view receives for the card
    widget = TraceWidget()
    for d in dicts:
        widget.feed(d)
    (card,) = widget.snapshot()["cards"]
    assert card["output"] == "mean 3.5\n"
    assert [SENT_TAG in piece for piece in card["display_html"]] == [False, True]


def test_a_bad_vision_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="vision setting 'yes'"):
        resolve_settings({}, environ={"K2LAB_VISION": "yes"})


def test_tool_result_event_has_the_fields() -> None:
    ev = ToolResult(call_id="c", name="python", ok=True, output="x")
    assert ev.people_output is None and ev.sent_to_model == []


def _real_png(w: int, h: int) -> str:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((w, h), 60).convert("RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_large_images_are_downscaled_to_fit() -> None:
    from k2lab.agent.images import MAX_SIDE, StepImages

    big = _real_png(2400, 1200)
    imgs = StepImages(max_images=4, max_bytes=len(big) // 3)
    assert imgs.offer("c", [{"data": {"image/png": big}}]) == [0]
    parts = imgs.message(lambda s: s)
    assert parts is not None
    assert "downscaled from 2400x1200" in parts[0]["text"]
    url = parts[1]["image_url"]["url"]
    assert len(url) < len(big) // 3 + 40

    from PIL import Image

    raw = base64.b64decode(url.split(",", 1)[1])
    with Image.open(__import__("io").BytesIO(raw)) as im:
        assert max(im.size) <= MAX_SIDE


def test_a_small_image_goes_as_is() -> None:
    from k2lab.agent.images import StepImages

    small = _real_png(64, 32)
    imgs = StepImages()
    imgs.offer("c", [{"data": {"image/png": small}}])
    parts = imgs.message(lambda s: s)
    assert parts is not None and parts[1]["image_url"]["url"] == f"data:image/png;base64,{small}"
    assert "downscaled" not in parts[0]["text"]
