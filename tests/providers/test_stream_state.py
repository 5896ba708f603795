"""StreamState chunk by chunk: both dialects, tiny fragments, split characters, usage, cuts."""

from __future__ import annotations

import json
from typing import Any

from k2lab.events import ContentDelta, ReasoningDelta, Usage
from k2lab.providers.stream_state import StreamState


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    choice.update(extra)
    return {"id": "c", "object": "chat.completion.chunk", "choices": [choice]}


def tool_frag(index: int, *, id: str | None = None, name: str | None = None, args: str = ""):
    tc: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id is not None:
        tc["id"] = id
        tc["type"] = "function"
    if name is not None:
        tc["function"]["name"] = name
    return chunk({"tool_calls": [tc]})


def feed_all(state: StreamState, chunks: list[dict]) -> list:
    out = []
    for c in chunks:
        out.extend(state.feed(c))
    return out


def test_moonshot_reasoning_content_then_answer_with_usage_in_choice():
    s = StreamState(step=3)
    evs = feed_all(
        s,
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "Think"}),
            chunk({"reasoning_content": "ing."}),
            chunk({"content": "Hello"}),
            chunk({"content": " world"}),
            chunk(
                {},
                "stop",
                usage={
                    "prompt_tokens": 8,
                    "completion_tokens": 11,
                    "total_tokens": 19,
                    "cached_tokens": 8,
                },
            ),
        ],
    )
    assert [type(e) for e in evs] == [
        ReasoningDelta,
        ReasoningDelta,
        ContentDelta,
        ContentDelta,
        Usage,
    ]
    assert all(e.step == 3 for e in evs)
    u = evs[-1]
    assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens) == (8, 11, 8)
    assert s.completed and not s.done
    end = s.finish()
    assert (end.reasoning, end.content, end.tool_calls) == ("Thinking.", "Hello world", [])
    assert end.finish_reason == "stop"


def test_vllm_reasoning_field_and_trailing_usage_chunk():
    s = StreamState(step=1)
    evs = feed_all(
        s,
        [
            chunk({"reasoning": "hmm"}),
            chunk({"content": "ok"}),
            chunk({}, "stop"),
            {
                "choices": [],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": 2,
                    "prompt_tokens_details": {"cached_tokens": 3},
                    "completion_tokens_details": {"reasoning_tokens": 1},
                },
            },
        ],
    )
    assert s.feed_data("[DONE]") == []
    assert s.done
    usage = [e for e in evs if isinstance(e, Usage)]
    assert len(usage) == 1
    assert (usage[0].prompt_tokens, usage[0].cached_tokens, usage[0].reasoning_tokens) == (5, 3, 1)
    assert s.finish().reasoning == "hmm"


def test_empty_reasoning_content_is_not_absent():
    # reasoning_content present but "" must not fall through to a `reasoning` field
    s = StreamState(step=1)
    evs = s.feed(chunk({"reasoning_content": "", "reasoning": "SHOULD NOT APPEAR"}))
    assert evs == []
    assert s.feed(chunk({"reasoning_content": None, "reasoning": "fallback"}))[0].text == "fallback"
    assert s.reasoning == "fallback"


def test_null_usage_mid_stream_is_ignored_and_usage_counted_once():
    s = StreamState(step=1)
    evs = feed_all(
        s,
        [
            {**chunk({"content": "a"}), "usage": None},
            # a mid-stream (continuous) usage is partial: ignored
            {**chunk({"content": "b"}), "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
            chunk({}, "stop", usage={"prompt_tokens": 9, "completion_tokens": 2}),
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}},
        ],
    )
    usage = [e for e in evs if isinstance(e, Usage)]
    assert [u.prompt_tokens for u in usage] == [9]


def one_char_tool_stream(calls: list[tuple[str, str, str]]) -> list[dict]:
    """Interleave nothing: each call's id/name first, then its arguments one character at a time."""
    chunks = []
    for i, (cid, name, args) in enumerate(calls):
        chunks.append(tool_frag(i, id=cid, name=name))
        chunks.extend(tool_frag(i, args=ch) for ch in args)
    chunks.append(chunk({}, "tool_calls"))
    return chunks


def test_tool_call_one_char_fragments_non_ascii_and_ids_byte_for_byte():
    args = json.dumps({"code": "print('héllo 世界 🎉')"}, ensure_ascii=False)
    escaped = json.dumps({"code": "x = '\u00e9'"})  # ensure_ascii: a \\u00e9 escape split in 6
    s = StreamState(step=2)
    evs = feed_all(
        s,
        one_char_tool_stream(
            [("functions.python:0", "python", args), ("functions.python:1", "python", escaped)]
        ),
    )
    assert evs == []  # tool fragments produce no deltas
    calls = s.finish().tool_calls
    assert calls == [
        {"id": "functions.python:0", "name": "python", "arguments": args},
        {"id": "functions.python:1", "name": "python", "arguments": escaped},
    ]
    assert json.loads(calls[1]["arguments"])["code"] == "x = 'é'"


def test_parallel_calls_interleaved_by_index_come_out_in_index_order():
    s = StreamState(step=1)
    feed_all(
        s,
        [
            tool_frag(1, id="functions.b:1", name="b"),
            tool_frag(0, id="functions.a:0", name="a"),
            tool_frag(1, args='{"y"'),
            tool_frag(0, args='{"x"'),
            tool_frag(0, args=":1}"),
            tool_frag(1, args=":2}"),
            chunk({}, "tool_calls"),
        ],
    )
    assert s.finish().tool_calls == [
        {"id": "functions.a:0", "name": "a", "arguments": '{"x":1}'},
        {"id": "functions.b:1", "name": "b", "arguments": '{"y":2}'},
    ]


def test_reasoning_then_several_calls_in_one_chunk():
    s = StreamState(step=1)
    s.feed(chunk({"reasoning_content": "two calls"}))
    s.feed(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "functions.f:0",
                        "function": {"name": "f", "arguments": "{}"},
                    },
                    {
                        "index": 1,
                        "id": "functions.g:1",
                        "function": {"name": "g", "arguments": "{}"},
                    },
                ]
            }
        )
    )
    s.feed(chunk({}, "stop"))  # engines vary: decide by the calls, not by finish_reason
    end = s.finish()
    assert [c["name"] for c in end.tool_calls] == ["f", "g"]
    assert end.reasoning == "two calls"


def test_cut_stream_is_not_completed():
    s = StreamState(step=1)
    s.feed(chunk({"reasoning_content": "partial"}))
    s.feed(tool_frag(0, id="functions.python:0", name="python", args='{"co'))
    assert not s.completed
    assert s.deltas == 1
    # a finish_reason alone completes it; [DONE] alone does too
    s2 = StreamState(step=1)
    s2.feed_data("[DONE]")
    assert s2.completed


def test_empty_stream_has_no_chunks():
    s = StreamState(step=1)
    assert s.chunks == 0 and not s.completed


def test_feed_data_parses_json_and_reports_garbage_and_inline_errors():
    s = StreamState(step=1)
    assert s.feed_data(json.dumps(chunk({"content": "é"}), ensure_ascii=False))[0].text == "é"
    s.feed_data("{not json")
    assert s.error and "not JSON" in s.error
    s2 = StreamState(step=1)
    s2.feed_data(json.dumps({"error": {"message": "upstream overloaded", "code": 502}}))
    assert s2.error == "upstream overloaded"


def test_missing_index_and_missing_id_still_assemble():
    s = StreamState(step=7)
    feed_all(
        s,
        [
            chunk({"tool_calls": [{"function": {"name": "a", "arguments": '{"x"'}}]}),
            chunk({"tool_calls": [{"function": {"arguments": ":1}"}}]}),
            chunk({}, "tool_calls"),
        ],
    )
    assert s.finish().tool_calls == [{"id": "", "name": "a", "arguments": '{"x":1}'}]


def test_missing_index_with_the_id_repeated_on_every_fragment_is_one_call_per_id():
    s = StreamState(step=1)
    frag = lambda cid, args: chunk(  # noqa: E731
        {"tool_calls": [{"id": cid, "function": {"name": "python", "arguments": args}}]}
    )
    feed_all(
        s,
        [
            frag("a", '{"code"'),
            frag("a", ':"1"}'),
            frag("b", '{"code":'),
            frag("b", '"2"}'),
            chunk({}, "tool_calls"),
        ],
    )
    assert s.finish().tool_calls == [
        {"id": "a", "name": "python", "arguments": '{"code":"1"}'},
        {"id": "b", "name": "python", "arguments": '{"code":"2"}'},
    ]


def test_nothing_counts_after_done():
    s = StreamState(step=1)
    s.feed_data("[DONE]")
    assert s.feed(chunk({"content": "late"})) == []
    assert s.content == ""


def test_sse_decoder_byte_by_byte_with_multibyte_characters_and_comments():
    from k2lab.providers.stream_state import SSEDecoder

    body = (
        ": keep-alive comment\r\n\r\n"
        'data: {"content": "héllo 世界 🎉"}\r\n\r\n'
        "event: ignored\ndata: line one\ndata: line two\n\n"
        "data: [DONE]\n\n"
        'data: {"last": "no blank line"}'
    ).encode()
    whole = SSEDecoder()
    expected = whole.feed(body) + whole.finish()
    assert expected == [
        '{"content": "héllo 世界 🎉"}',
        "line one\nline two",
        "[DONE]",
        '{"last": "no blank line"}',
    ]
    one_byte = SSEDecoder()
    got = []
    for i in range(len(body)):
        got += one_byte.feed(body[i : i + 1])
    assert got + one_byte.finish() == expected


def test_a_moonshot_final_chunk_as_recorded_by_kimi_cli():
    # verbatim from K2_PROTOCOL.md (kimi-cli's test fixtures)
    last = (
        '{"id":"chatcmpl-6970b5d02fa474c1767e8767","object":"chat.completion.chunk",'
        '"created":1768994256,"model":"kimi-k2-turbo-preview","choices":[{"index":0,"delta":{},'
        '"finish_reason":"stop","usage":{"prompt_tokens":8,"completion_tokens":11,'
        '"total_tokens":19,"cached_tokens":8}}],"system_fingerprint":"fpv0_10a6da87"}'
    )
    s = StreamState(step=1)
    s.feed(chunk({"content": "Hi"}))
    (usage,) = s.feed_data(last)
    assert isinstance(usage, Usage)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (8, 11, 8)
    assert s.completed and s.finish().finish_reason == "stop"
