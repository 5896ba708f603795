"""OpenAICompatProvider over real HTTP against the fake server: the wire, retries, errors."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from k2lab.agent.context import Conversation
from k2lab.events import Event, Notice, ReasoningDelta, Retry, StepEnd, Usage
from k2lab.providers.base import ChatProvider, ProviderError
from k2lab.providers.openai_compat import OpenAICompatProvider
from tests.fixtures.fake_server import Call, FakeModel, Turn

KEY = "sk-test-SECRET-1234567890"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "python",
            "description": "run code",
            "parameters": {"type": "object", "properties": {"code": {"type": "string"}}},
        },
    }
]


def make_provider(fake: FakeModel, **kw: Any) -> OpenAICompatProvider:
    p = OpenAICompatProvider(base_url=fake.base_url, api_key=KEY, model="kimi-k2-thinking", **kw)
    p.retry_base, p.retry_cap = 0.01, 0.05  # keep retry tests fast
    return p


def conversation() -> Conversation:
    c = Conversation("You are a test.")
    c.add_user("Compute 6*7 in Python.")
    return c


async def collect(p: OpenAICompatProvider, conv: Conversation, tools=TOOLS, step=1) -> list[Event]:
    return [ev async for ev in p.stream(conv, tools, step=step)]


async def test_protocol_and_wire_format(fake_model: FakeModel):
    fake_model.script(
        [Turn(reasoning="I will run it.", tool_calls=[Call("python", {"code": "print(6*7)"})])]
    )
    p = make_provider(fake_model, temperature=0.6, max_tokens=1234)
    assert isinstance(p, ChatProvider)
    events = await collect(p, conversation())
    await p.aclose()
    end = events[-1]
    assert isinstance(end, StepEnd)
    assert end.reasoning == "I will run it."
    assert end.tool_calls == [
        {"id": "functions.python:0", "name": "python", "arguments": '{"code": "print(6*7)"}'}
    ]
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "I will run it."
    assert sum(isinstance(e, Usage) for e in events) == 1
    body, headers = fake_model.requests[0], fake_model.headers[0]
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == f"Bearer {KEY}"
    assert body["model"] == "kimi-k2-thinking"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.6 and body["max_tokens"] == 1234
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]


async def test_reasoning_content_and_ids_go_back_on_the_wire(fake_model: FakeModel):
    fake_model.script([Turn(content="42")])
    conv = conversation()
    calls = [
        {"id": "functions.python:0", "name": "python", "arguments": '{"code":"a"}'},
        {"id": "functions.python:1", "name": "python", "arguments": '{"code":"b"}'},
    ]
    conv.add_assistant("", "thinking about é", calls)
    conv.add_tool_result("functions.python:0", "out a")
    conv.add_tool_result("functions.python:1", "out b")
    p = make_provider(fake_model)
    await collect(p, conv)
    msgs = fake_model.requests[0]["messages"]
    assert msgs[2]["reasoning_content"] == "thinking about é"
    assert [tc["id"] for tc in msgs[2]["tool_calls"]] == [
        "functions.python:0",
        "functions.python:1",
    ]
    assert [(m["role"], m["tool_call_id"]) for m in msgs[3:]] == [
        ("tool", "functions.python:0"),
        ("tool", "functions.python:1"),
    ]
    # the body is posted verbatim: it is exactly what request_body() built, not re-serialised
    assert fake_model.raw[0] == p.request_body(conv, TOOLS)


async def test_vllm_dialect_one_char_fragments_bytes_split_mid_utf8(fake_model: FakeModel):
    code = "print('héllo 世界 🎉')"
    fake_model.script(
        [
            Turn(
                reasoning="réflexion ✓",
                content="",
                tool_calls=[Call("python", {"code": code}), Call("python", {"code": "1"})],
                dialect="vllm",
                chunk=1,
                byte_split=1,
            )
        ]
    )
    events = await collect(make_provider(fake_model), conversation())
    end = events[-1]
    assert isinstance(end, StepEnd)
    assert end.reasoning == "réflexion ✓"
    assert [json.loads(c["arguments"])["code"] for c in end.tool_calls] == [code, "1"]
    assert [c["id"] for c in end.tool_calls] == ["functions.python:0", "functions.python:1"]
    usage = [e for e in events if isinstance(e, Usage)]
    assert len(usage) == 1 and usage[0].prompt_tokens > 0


async def test_429_retry_after_is_honoured_and_retry_comes_before_the_sleep(
    fake_model: FakeModel,
):
    fake_model.script(
        [Turn(status=429, error="rate limited, slow down", retry_after=0.4), Turn(content="ok")]
    )
    p = make_provider(fake_model)
    seen_requests_at_retry = []
    t0 = time.monotonic()
    events = []
    async for ev in p.stream(conversation(), TOOLS, step=1):
        if isinstance(ev, Retry):
            seen_requests_at_retry.append(len(fake_model.requests))
            retry_at = time.monotonic()
        events.append(ev)
    elapsed = time.monotonic() - t0
    retries = [e for e in events if isinstance(e, Retry)]
    assert len(retries) == 1
    r = retries[0]
    assert (r.attempt, r.max_attempts) == (1, 4)
    assert r.delay >= 0.4 and "429" in r.reason and "rate limited" in r.reason
    assert seen_requests_at_retry == [1]  # the event arrived before the retry was sent
    assert time.monotonic() - retry_at >= 0.35 and elapsed >= 0.4
    assert isinstance(events[-1], StepEnd) and events[-1].content == "ok"
    assert len(fake_model.requests) == 2


async def test_500_then_success(fake_model: FakeModel):
    fake_model.script([Turn(status=500, error="boom"), Turn(status=502), Turn(content="fine")])
    events = await collect(make_provider(fake_model), conversation())
    assert [e.attempt for e in events if isinstance(e, Retry)] == [1, 2]
    assert events[-1].content == "fine"


@pytest.mark.parametrize("fault", ["cut_after", "drop_after"])
async def test_cut_stream_restarts_the_step_with_a_notice(fake_model: FakeModel, fault: str):
    broken = Turn(reasoning="partial reasoning that gets cut", chunk=4, **{fault: 4})
    fake_model.script([broken, Turn(reasoning="full", content="done")])
    events = await collect(make_provider(fake_model), conversation())
    kinds = [e.type for e in events]
    notice = kinds.index("notice")
    retry = kinds.index("retry")
    assert kinds[:notice] == ["reasoning.delta"] * 3  # partial output before the cut
    assert retry == notice + 1
    assert isinstance(events[notice], Notice) and events[notice].kind == "step_restart"
    end = events[-1]
    assert isinstance(end, StepEnd) and (end.reasoning, end.content) == ("full", "done")
    assert "cut" in events[retry].reason or "broke" in events[retry].reason


async def test_empty_stream_is_retried_without_a_notice(fake_model: FakeModel):
    fake_model.script([Turn(content="x", cut_after=0), Turn(content="ok")])
    events = await collect(make_provider(fake_model), conversation())
    assert [e.type for e in events if e.type in ("notice", "retry")] == ["retry"]
    assert "empty" in next(e for e in events if isinstance(e, Retry)).reason
    assert events[-1].content == "ok"


async def test_final_failure_is_one_clear_line_without_the_key(fake_model: FakeModel):
    fake_model.script([Turn(status=503, error=f"overloaded (key {KEY})")] * 4)
    p = make_provider(fake_model, model_label="Kimi test")
    events: list[Event] = []
    with pytest.raises(ProviderError) as info:
        async for ev in p.stream(conversation(), TOOLS, step=1):
            events.append(ev)
    msg = str(info.value)
    assert len([e for e in events if isinstance(e, Retry)]) == 3
    assert len(fake_model.requests) == 4
    assert "\n" not in msg and KEY not in msg
    assert "503" in msg and "overloaded" in msg and "4 attempts" in msg and "Kimi test" in msg
    assert info.value.status == 503 and info.value.kind == "provider"


async def test_cut_every_time_gives_up_as_cut_stream(fake_model: FakeModel):
    fake_model.script([Turn(content="abcdefgh", chunk=1, cut_after=3)] * 2)
    with pytest.raises(ProviderError) as info:
        await collect(make_provider(fake_model, max_attempts=2), conversation())
    assert info.value.kind == "cut_stream" and "cut" in str(info.value)


async def test_auth_error_is_not_retried_and_hints_at_the_key_variable(fake_model: FakeModel):
    fake_model.script([Turn(status=401, error="Invalid Authentication")])
    with pytest.raises(ProviderError) as info:
        await collect(make_provider(fake_model), conversation())
    assert info.value.kind == "auth" and info.value.status == 401
    assert "K2LAB_API_KEY" in str(info.value) and "Invalid Authentication" in str(info.value)
    assert len(fake_model.requests) == 1


@pytest.mark.parametrize(
    "message",
    [
        "Invalid request: Your request exceeded model token limit: 262144",  # Moonshot
        "This model's maximum context length is 262144 tokens. However, you requested 300000.",
        "The input (300000 tokens) is longer than the model's context length (262144 tokens).",
    ],
)
async def test_context_overflow_kind(fake_model: FakeModel, message: str):
    fake_model.script([Turn(status=400, error=message)])
    with pytest.raises(ProviderError) as info:
        await collect(make_provider(fake_model), conversation())
    assert info.value.kind == "context_overflow" and info.value.status == 400
    assert message[:40] in str(info.value)
    assert len(fake_model.requests) == 1


async def test_other_400_is_a_plain_provider_error(fake_model: FakeModel):
    msg = "thinking is enabled but reasoning_content is missing in assistant tool call message"
    fake_model.script([Turn(status=400, error=msg)])
    with pytest.raises(ProviderError) as info:
        await collect(make_provider(fake_model), conversation())
    assert info.value.kind == "provider" and "reasoning_content is missing" in str(info.value)


async def test_quota_429_is_not_retried(fake_model: FakeModel):
    fake_model.script(
        [Turn(status=429, error="Your account has insufficient quota", retry_after=9)]
    )
    with pytest.raises(ProviderError) as info:
        await collect(make_provider(fake_model), conversation())
    assert info.value.kind == "quota" and len(fake_model.requests) == 1


async def test_overloaded_429_is_retried_but_bounded(fake_model: FakeModel):
    fake_model.script([Turn(status=429, error="The engine is currently overloaded")] * 3)
    with pytest.raises(ProviderError) as info:
        await collect(make_provider(fake_model, max_attempts=3), conversation())
    assert len(fake_model.requests) == 3 and "overloaded" in str(info.value)


async def test_error_inside_a_200_stream_is_retried(fake_model: FakeModel):
    # OpenRouter reports upstream failures as an SSE error object after a 200.
    fake_model.script([Turn(stream_error="upstream provider overloaded"), Turn(content="ok")])
    events = await collect(make_provider(fake_model), conversation())
    retry = next(e for e in events if isinstance(e, Retry))
    assert "upstream provider overloaded" in retry.reason
    assert events[-1].content == "ok"


async def test_connection_refused_is_retried_then_fails_clearly():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = OpenAICompatProvider(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, model="m", max_attempts=2
    )
    p.retry_base = 0.01
    events: list[Event] = []
    with pytest.raises(ProviderError) as info:
        async for ev in p.stream(conversation(), [], step=1):
            events.append(ev)
    assert [e.type for e in events] == ["retry"]
    assert "connection" in str(info.value).lower() and f"127.0.0.1:{port}" in str(info.value)


async def test_tools_json_is_cached_per_list(fake_model: FakeModel):
    p = make_provider(fake_model)
    conv = conversation()
    b1 = p.request_body(conv, TOOLS)
    assert p._tools_json and p.request_body(conv, TOOLS) == b1
    assert b'"tools"' not in p.request_body(conv, [])


async def test_a_stalled_stream_times_out_and_is_retried(fake_model: FakeModel):
    # 1 s between events against a 0.3 s read timeout, then a prompt answer
    fake_model.script([Turn(content="slow", chunk=1, delay=1.0), Turn(content="fast")])
    p = make_provider(fake_model, request_timeout=0.3)
    events = await collect(p, conversation())
    retry = next(e for e in events if isinstance(e, Retry))
    assert "timed out" in retry.reason or "Timeout" in retry.reason
    assert events[-1].content == "fast"


async def test_a_drop_after_the_finish_reason_keeps_the_whole_message(fake_model: FakeModel):
    # events: role, "ok", finish+usage, [DONE]: the socket drops before [DONE]
    fake_model.script([Turn(content="ok", drop_after=3)])
    events = await collect(make_provider(fake_model), conversation())
    assert [e.type for e in events] == ["content.delta", "usage", "step.end"]
    assert len(fake_model.requests) == 1
