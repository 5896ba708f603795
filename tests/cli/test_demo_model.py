"""The offline demo model server: Moonshot's SSE dialect, and a script driven by the history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from k2lab.agent.context import Conversation
from k2lab.config import resolve_settings
from k2lab.events import StepEnd
from k2lab.providers.demo import DEMO_MODEL_LABEL, DEMO_PROMPTS, DemoServer, start_demo_server
from k2lab.providers.demo.scripts import match_demo
from k2lab.providers.openai_compat import OpenAICompatProvider

TOOLS = [{"type": "function", "function": {"name": "python", "parameters": {}}}]


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    server = start_demo_server(delay=0)
    yield server
    server.close()


def _sse(server: DemoServer, messages: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
    body = {"model": "kimi-k2-thinking", "messages": messages, "tools": TOOLS, "stream": True}
    r = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    out: list[dict[str, Any] | str] = []
    for line in r.text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def _assemble(chunks: list[dict[str, Any] | str]) -> dict[str, Any]:
    reasoning, content, args, ids = "", "", "", []
    for c in chunks:
        if isinstance(c, str):
            continue
        delta = c["choices"][0]["delta"]
        reasoning += delta.get("reasoning_content", "")
        content += delta.get("content") or ""
        for tc in delta.get("tool_calls", []):
            if "id" in tc:
                ids.append(tc["id"])
            args += tc["function"].get("arguments", "")
    return {"reasoning": reasoning, "content": content, "arguments": args, "ids": ids}


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]


def _after_call(prompt: str, reply: dict[str, Any], tool_output: str) -> list[dict[str, Any]]:
    """The history after the model's call ran and printed ``tool_output``."""
    call = {"id": reply["ids"][0], "type": "function",
            "function": {"name": "python", "arguments": reply["arguments"]}}  # fmt: skip
    return [
        *_user(prompt),
        {"role": "assistant", "content": "", "reasoning_content": reply["reasoning"],
         "tool_calls": [call]},
        {"role": "tool", "tool_call_id": reply["ids"][0], "content": tool_output},
    ]  # fmt: skip


def test_moonshot_sse_dialect(demo: DemoServer) -> None:
    chunks = _sse(demo, _user(DEMO_PROMPTS["estimate_pi"]))
    assert chunks[-1] == "[DONE]"
    objs = [c for c in chunks if isinstance(c, dict)]
    assert all(c["object"] == "chat.completion.chunk" for c in objs)
    deltas = [c["choices"][0]["delta"] for c in objs]
    assert sum("reasoning_content" in d for d in deltas) > 5  # reasoning streams in pieces
    fragments = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert len(fragments) > 10  # arguments in small fragments
    assert fragments[0]["id"] == "functions.python:0" and fragments[0]["type"] == "function"
    assert all("id" not in f for f in fragments[1:])
    last = objs[-1]["choices"][0]
    assert last["finish_reason"] == "tool_calls"
    assert last["usage"]["completion_tokens"] > 0 and "cached_tokens" in last["usage"]
    code = json.loads(_assemble(chunks)["arguments"])["code"]
    compile(code, "<demo>", "exec")  # the demo proposes valid Python


def test_models_route_and_whole_message(demo: DemoServer) -> None:
    models = httpx.get(f"{demo.base_url}/models", timeout=5).json()
    assert models["data"][0]["id"]
    body = {"model": "m", "messages": _user("hello"), "stream": False}
    r = httpx.post(f"{demo.base_url}/chat/completions", json=body, timeout=5).json()
    msg = r["choices"][0]["message"]
    assert DEMO_MODEL_LABEL in msg["content"] and msg["reasoning_content"]
    bad = httpx.post(f"{demo.base_url}/chat/completions", content=b"{nope", timeout=5)
    assert bad.status_code == 400 and "invalid request" in bad.json()["error"]["message"]


def test_it_reads_the_tool_output_it_is_given(demo: DemoServer) -> None:
    """Not pre-baked: feed a made-up output and the next step quotes exactly those numbers."""
    prompt = DEMO_PROMPTS["estimate_pi"]
    first = _assemble(_sse(demo, _user(prompt)))
    history = _after_call(prompt, first, "inside=777 n=1000 pi_hat=3.108000\n")
    second = _assemble(_sse(demo, history))
    assert "3.108000" in second["reasoning"] and "777" in second["reasoning"]
    assert second["ids"] == ["functions.python:1"]  # ids count across the conversation


def test_a_traceback_changes_the_plan(demo: DemoServer) -> None:
    prompt = DEMO_PROMPTS["fix_bug"]
    first = _assemble(_sse(demo, _user(prompt)))
    tb = "Traceback (most recent call last):\n  ...\nKeyError: 'customer_id'\n"
    second = _assemble(_sse(demo, _after_call(prompt, first, tb)))
    assert "KeyError: 'customer_id'" in second["reasoning"]
    assert "sorted(orders[0])" in json.loads(second["arguments"])["code"]
    # a different error yields a different quote: it is read, not assumed
    tb2 = tb.replace("'customer_id'", "'cust'")
    third = _assemble(_sse(demo, _after_call(prompt, first, tb2)))
    assert "KeyError: 'cust'" in third["reasoning"]


def test_rejection_feedback_is_followed(demo: DemoServer) -> None:
    prompt = DEMO_PROMPTS["estimate_pi"]
    first = _assemble(_sse(demo, _user(prompt)))
    rejected = (
        "The user rejected this tool call; it was not executed. "
        "Feedback from the user: use 5000 points please"
    )
    second = _assemble(_sse(demo, _after_call(prompt, first, rejected)))
    assert "use 5000 points please" in second["reasoning"]
    assert "n = 5000\n" in json.loads(second["arguments"])["code"]
    # without a usable instruction it stops and says why, with no made-up number
    plain = "The user rejected this tool call; it was not executed. Feedback from the user: no"
    third = _assemble(_sse(demo, _after_call(prompt, first, plain)))
    assert not third["ids"] and "not run" in third["content"]
    assert "3.14" not in third["content"]


@pytest.mark.parametrize(
    "prompt, name",
    [
        (DEMO_PROMPTS["estimate_pi"], "estimate_pi"),
        ("demo: estimate pi", "estimate_pi"),
        ("DEMO: Estimate PI", "estimate_pi"),
        ("estimate pi please", "estimate_pi"),
        ("demo: analyze a dataset", "analyze_dataset"),
        ("demo - fix a bug", "fix_bug"),
        ("fix_bug", "fix_bug"),
        ("demo: something else", None),
        ("how do I fix my code?", None),
        ("what is pi?", None),
    ],
)
def test_forgiving_matching(prompt: str, name: str | None) -> None:
    assert match_demo(prompt) == name


async def test_runtime_reuses_one_demo_server_and_labels_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from k2lab.runtime import open_provider

    monkeypatch.setenv("K2LAB_DEMO_DELAY", "0")  # read per request by the shared server
    demo_settings = resolve_settings(environ={})
    assert demo_settings.uses_demo_model
    p1, p2 = open_provider(demo_settings), open_provider(demo_settings)
    try:
        assert p1.base_url == p2.base_url and p1.base_url.startswith("http://127.0.0.1:")
        assert p1.model_label == DEMO_MODEL_LABEL
        # the real provider speaks to it over HTTP and assembles the K2-style call
        assert isinstance(p1, OpenAICompatProvider)
        conv = Conversation("sys")
        conv.add_user(DEMO_PROMPTS["analyze_dataset"])
        ends = [e async for e in p1.stream(conv, TOOLS, step=1) if isinstance(e, StepEnd)]
        (end,) = ends
        assert end.tool_calls[0]["id"] == "functions.python:0"
        assert "pandas" in json.loads(end.tool_calls[0]["arguments"])["code"]
    finally:
        await p1.aclose()
        await p2.aclose()
    real = open_provider(resolve_settings(environ={"K2LAB_API_KEY": "sk-test"}))
    try:
        assert real.base_url == "https://api.moonshot.ai/v1"
        assert real.model_label != DEMO_MODEL_LABEL
    finally:
        await real.aclose()


def test_an_edited_call_is_recognised_and_its_output_used(demo: DemoServer) -> None:
    prompt = DEMO_PROMPTS["estimate_pi"]
    first = _assemble(_sse(demo, _user(prompt)))
    edited_args = json.dumps({"code": "# step: sample\nprint([1])\n"})
    output = (
        f"[The user edited the arguments before running: {edited_args}]\n"
        "[1]\ninside=3 n=4 pi_hat=3.000000\n"
    )
    second = _assemble(_sse(demo, _after_call(prompt, first, output)))
    assert (
        "edited my code" in second["reasoning"]
        and "pi_hat = 4 * 3 / 4 = 3.000000" in (second["reasoning"])
    )
