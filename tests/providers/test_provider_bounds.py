"""What a hostile provider cannot do to the provider layer: echo keys, send unbounded data, stall.

Real HTTP against the fake server (tests/fixtures/fake_server.py), the real openai client.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from k2lab.agent.context import Conversation
from k2lab.events import Event, ReasoningDelta, Retry, StepEnd
from k2lab.providers.base import ProviderError
from k2lab.providers.openai_compat import OpenAICompatProvider
from k2lab.providers.stream_state import SSEDecoder, StreamTooLarge
from tests.fixtures.fake_server import FakeModel, Turn

KEY = "sk-test-ECHOED-0123456789abcdef"


def make_provider(fake: FakeModel, **kw: Any) -> OpenAICompatProvider:
    p = OpenAICompatProvider(base_url=fake.base_url, api_key=KEY, model="kimi-k2-thinking", **kw)
    p.retry_base, p.retry_cap = 0.01, 0.05
    return p


def conversation() -> Conversation:
    c = Conversation("You are a test.")
    c.add_user("hi")
    return c


async def run(p: OpenAICompatProvider) -> tuple[list[Event], ProviderError | None]:
    events: list[Event] = []
    try:
        async with asyncio.timeout(60):  # a hang fails the test, not the suite
            async for ev in p.stream(conversation(), [], step=1):
                events.append(ev)
    except ProviderError as e:
        return events, e
    finally:
        await p.aclose()
    return events, None


async def test_an_error_inside_a_200_stream_quoting_the_authorization_header(fake_model):
    fake_model.script([Turn(stream_error="upstream failed", echo_auth=True)] * 2)
    events, err = await run(make_provider(fake_model, max_attempts=2))
    assert fake_model.headers[0]["authorization"] == f"Bearer {KEY}"  # the echo is real
    assert err is not None and "upstream failed" in str(err)
    retries = [e for e in events if isinstance(e, Retry)]
    assert retries and "upstream failed" in retries[0].reason
    text = json.dumps([e.to_dict() for e in events]) + str(err)
    assert KEY not in text and "Bearer sk-" not in text


async def test_an_http_error_body_quoting_the_authorization_header(fake_model):
    fake_model.script([Turn(status=400, error="bad request", echo_auth=True)])
    _, err = await run(make_provider(fake_model))
    assert err is not None and "bad request" in str(err) and KEY not in str(err)


async def test_a_base_url_password_never_reaches_a_message(fake_model):
    fake_model.script([Turn(status=400, error="bad: https://bob:pw-0123456789@x/ rejected")])
    url = fake_model.base_url.replace("http://", "http://bob:pw-0123456789@")
    p = OpenAICompatProvider(base_url=url, api_key="", model="m")
    _, err = await run(p)
    assert err is not None and "pw-0123456789" not in str(err)


async def test_a_line_longer_than_the_cap_is_a_clear_error_and_not_retried(fake_model):
    big = "x" * 300_000
    fake_model.script([Turn(reasoning=big, chunk=len(big))] * 3)
    events, err = await run(make_provider(fake_model, max_line_bytes=100_000))
    assert err is not None and err.kind == "too_large"
    assert "stream line" in str(err) and "100,000 bytes" in str(err)
    assert len(fake_model.requests) == 1
    assert not any(isinstance(e, ReasoningDelta) for e in events)


async def test_a_step_larger_than_the_cap_is_a_clear_error_and_not_retried(fake_model):
    fake_model.script([Turn(reasoning="y" * 50_000, chunk=1000)] * 3)
    events, err = await run(make_provider(fake_model, max_step_chars=20_000))
    assert err is not None and err.kind == "too_large" and "20,000 characters" in str(err)
    assert len(fake_model.requests) == 1
    shown = sum(len(e.text) for e in events if isinstance(e, ReasoningDelta))
    assert shown <= 20_000  # what came before the cap is kept, nothing after


async def test_a_step_within_the_caps_passes_whole(fake_model):
    text = "z" * 1_000_000
    fake_model.script([Turn(reasoning=text, chunk=len(text))])
    events, err = await run(make_provider(fake_model))  # the default caps
    assert err is None
    end = events[-1]
    assert isinstance(end, StepEnd) and end.reasoning == text


async def test_keep_alive_comments_only_end_the_attempt_at_the_idle_timeout(fake_model):
    fake_model.script([Turn(content="never", stall_after=0)] * 2)
    events, err = await run(make_provider(fake_model, idle_timeout=0.5, max_attempts=2))
    assert err is not None and "idle timeout" in str(err)
    assert len(fake_model.requests) == 2
    assert [e.type for e in events] == ["retry"]


async def test_a_stall_after_output_restarts_the_step_then_succeeds(fake_model):
    fake_model.script([Turn(content="abcdef", chunk=1, stall_after=3), Turn(content="whole")])
    events, err = await run(make_provider(fake_model, idle_timeout=0.5))
    assert err is None
    assert [e.type for e in events if e.type in ("notice", "retry")] == ["notice", "retry"]
    assert events[-1].content == "whole"


def test_sse_decoder_long_line_in_many_reads_and_its_cap():
    payload = b'{"choices":[{"index":0,"delta":{"content":"' + b"a" * 1_000_000 + b'"}}]}'
    body = b": ping\n\ndata: " + payload + b"\n\ndata: [DONE]\n\n"
    d = SSEDecoder()
    out: list[str] = []
    for i in range(0, len(body), 4096):
        out += d.feed(body[i : i + 4096])
    assert out == [payload.decode(), "[DONE]"]
    small = SSEDecoder(max_line=10_000)
    with pytest.raises(StreamTooLarge):
        for i in range(0, len(body), 4096):
            small.feed(body[i : i + 4096])
    many = SSEDecoder(max_line=10_000)  # many data lines in one event count together
    with pytest.raises(StreamTooLarge):
        many.feed(b"data: " + b"b" * 5000 + b"\n" + b"data: " + b"c" * 6000 + b"\n")
