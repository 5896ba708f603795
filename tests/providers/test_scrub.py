"""k2lab.scrub: the one scrubber for provider-supplied strings and for every event."""

from __future__ import annotations

import json
import random

import pytest

from k2lab.events import (
    ContentDelta,
    Error,
    Notice,
    Retry,
    RunEnd,
    RunStart,
    StepEnd,
    ToolProposed,
    ToolResult,
)
from k2lab.providers.stream_state import StreamState
from k2lab.scrub import REDACTED, Scrubber, StreamScrub, clean_url

KEY = "sk-live-0123456789abcdefSECRET"


@pytest.mark.parametrize(
    "text, leaked",
    [
        (f"bad request: headers {{'Authorization': 'Bearer {KEY}'}}", KEY),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ('{"authorization": "Basic dXNlcjpwYXNzd29yZA=="}', "dXNlcjpwYXNzd29yZA"),
        ("x-api-key: 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
        ("upstream https://bob:hunter2@proxy.example/v1 refused", "hunter2"),
        ("see https://api.example/v1/chat?key=AbCdEf123456&x=1 for details", "AbCdEf123456"),
        ("token=zyxwvutsrq987 was rejected", "zyxwvutsrq987"),
        ("the key sk-or-v1-abcdef0123456789abcdef is invalid", "abcdef0123456789"),
        ("github ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abcdefghijkl"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "eyJhbGci"),
    ],
)
def test_text_removes_keys_a_provider_may_echo(text: str, leaked: str):
    out = Scrubber([KEY]).text(text)
    assert leaked not in out
    assert REDACTED in out


def test_text_keeps_ordinary_error_wording():
    msg = "HTTP 400: This model's maximum context length is 262144 tokens (max_tokens=32768)"
    assert Scrubber([KEY]).text(msg) == msg


def test_exact_replaces_the_configured_value_anywhere_and_only_it():
    s = Scrubber([KEY, "abc"])  # too short to be a key: never replaced (it would eat text)
    assert s.exact(f"a{KEY}b {KEY}") == f"a{REDACTED}b {REDACTED}"
    assert s.exact("abc sk-example-not-the-key") == "abc sk-example-not-the-key"
    assert KEY not in repr(s) and "1 secrets" in repr(s)


def test_stream_scrub_catches_a_key_split_anywhere_across_pieces():
    rng = random.Random(7)
    s = Scrubber([KEY, "other-secret-value"])
    for _ in range(300):
        text = "".join(
            rng.choice(["word ", "s", "sk-", "sk-live-01", KEY, "other-secret-value", "é🎉"])
            for _ in range(rng.randint(1, 12))
        )
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text), rng.randint(0, 6))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        scrub = StreamScrub(s)
        out = [scrub.feed(p) for p in pieces] + [scrub.flush()]
        joined = "".join(out)
        assert joined == s.exact(text)  # nothing lost, nothing reordered
        assert all(KEY not in o for o in out)


def test_stream_state_holds_back_a_split_key_and_flushes_the_rest():
    st = StreamState(step=1, scrubber=Scrubber([KEY]))
    events = []
    for piece in ["The key is ", KEY[:7], KEY[7:19], KEY[19:], " ok. s", "k"]:
        events += st.feed({"choices": [{"index": 0, "delta": {"reasoning_content": piece}}]})
    events += st.feed({"choices": [{"index": 0, "delta": {"content": "done"}}]})
    events += st.flush()
    st.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert all(KEY not in e.text for e in events)
    assert "".join(e.text for e in events if e.type == "reasoning.delta") == (
        f"The key is {REDACTED} ok. sk"
    )
    # the reasoning tail came out before the first content delta: order is kept
    assert [e.type for e in events][-1] == "content.delta"
    end = st.finish()
    assert end.reasoning == f"The key is {REDACTED} ok. sk" and end.content == "done"


def test_event_scrubs_every_field_that_may_carry_provider_text():
    s = Scrubber([KEY])
    evs = [
        RunStart(
            run_id="r",
            prompt=f"use {KEY}",
            model="m",
            model_label="m",
            base_url="https://u:pw@host.example:8443/v1?token=abc",
            policy="auto",
            isolation="none",
            max_steps=3,
        ),
        ContentDelta(step=1, text=KEY),
        StepEnd(
            step=1,
            content=KEY,
            reasoning=KEY,
            tool_calls=[{"id": KEY, "name": "python", "arguments": f'{{"code": "{KEY}"}}'}],
        ),
        ToolProposed(step=1, call_id="c", name="python", arguments=KEY),
        ToolResult(
            call_id="c",
            name="python",
            ok=True,
            output=KEY,
            display=[{"data": {"text/plain": KEY}, "metadata": {KEY: [KEY]}}],
        ),
        Retry(attempt=1, max_attempts=2, delay=0.1, reason="Authorization: Bearer zzzzzzzzzz"),
        Error(message=f"failed: {KEY}", kind="provider"),
        Notice(message="see https://h.example/?sig=deadbeef", kind="step_restart"),
        RunEnd(stop_reason="error", answer=KEY, steps=1, tool_calls=1, error=KEY),
    ]
    dump = json.dumps([s.event(e).to_dict() for e in evs])
    for leaked in (KEY, "pw@", "token=abc", "zzzzzzzzzz", "deadbeef"):
        assert leaked not in dump, leaked
    assert evs[0].base_url == "https://host.example:8443/v1"


def test_clean_url():
    assert clean_url("http://user:pass@127.0.0.1:9/v1?key=x#f") == "http://127.0.0.1:9/v1"
    assert clean_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
