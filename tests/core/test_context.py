"""The conversation: K2's wire rules and the batched rewrites."""

import json

from k2lab.agent.context import HIDDEN_OUTPUT, Conversation


def _wire(conv: Conversation) -> list[dict]:
    return json.loads(conv.messages_json())


def test_tool_call_messages_always_carry_reasoning_content() -> None:
    conv = Conversation("sys")
    conv.add_user("hi")
    conv.add_assistant("", "", [{"id": "functions.python:0", "name": "python", "arguments": "{}"}])
    msg = _wire(conv)[-1]
    assert msg["reasoning_content"] == ""
    assert msg["tool_calls"][0]["id"] == "functions.python:0"
    assert msg["tool_calls"][0]["function"]["arguments"] == "{}"


def test_older_turns_lose_reasoning_current_turn_keeps_it() -> None:
    conv = Conversation("sys")
    conv.add_user("one")
    conv.add_assistant("", "think 1", [{"id": "a", "name": "python", "arguments": "{}"}])
    conv.add_tool_result("a", "out")
    conv.add_assistant("answer", "think 2")
    conv.add_user("two")
    conv.add_assistant("", "think 3", [{"id": "b", "name": "python", "arguments": "{}"}])
    wire = _wire(conv)
    reasonings = [m.get("reasoning_content") for m in wire if m["role"] == "assistant"]
    assert reasonings == ["", "", "think 3"]


def test_hide_tool_outputs_is_one_batch_and_idempotent() -> None:
    conv = Conversation()
    conv.add_user("u")
    for i in range(5):
        conv.add_assistant("", "", [{"id": str(i), "name": "python", "arguments": "{}"}])
        conv.add_tool_result(str(i), f"output {i}")
    assert conv.hide_tool_outputs() == 5
    assert conv.hide_tool_outputs() == 0
    assert all(m["content"] == HIDDEN_OUTPUT for m in _wire(conv) if m["role"] == "tool")
    conv.add_tool_result("x", "fresh")
    assert _wire(conv)[-1]["content"] == "fresh"
    assert conv.compactions == 1


def test_messages_json_matches_messages() -> None:
    conv = Conversation("sys")
    conv.add_user("ünïcode")
    conv.add_assistant("a", "")
    assert _wire(conv) == conv.to_list()
