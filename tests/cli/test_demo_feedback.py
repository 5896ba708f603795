"""The demo model follows a person's rejection feedback (issue 11): ``fix_bug``'s corrected
grouping rejected with "round the averages to 1 decimal place" is proposed again with that rounding
and ends with 1-decimal averages; feedback it cannot act on ends the run honestly, with no numbers.

The history is real: each proposed call runs (``exec`` in one namespace, like the kernel) and its
printed output goes back to the demo server over HTTP, as the agent loop sends it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import traceback
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from k2lab.providers.demo import DEMO_PROMPTS, DemoServer, start_demo_server

TOOLS = [{"type": "function", "function": {"name": "python", "parameters": {}}}]
REJECTED = "The user rejected this tool call; it was not executed. Feedback from the user: "


@pytest.fixture
def demo() -> Iterator[DemoServer]:
    server = start_demo_server(delay=0)
    yield server
    server.close()


def reply(server: DemoServer, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message the demo model streams for ``messages`` (assembled from SSE)."""
    body = {"model": "kimi-k2-thinking", "messages": messages, "tools": TOOLS, "stream": True}
    r = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10)
    r.raise_for_status()
    msg: dict[str, Any] = {"reasoning": "", "content": "", "arguments": "", "id": None}
    for line in r.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        delta = json.loads(line[6:])["choices"][0]["delta"]
        msg["reasoning"] += delta.get("reasoning_content", "")
        msg["content"] += delta.get("content") or ""
        for tc in delta.get("tool_calls", []):
            msg["id"] = tc.get("id", msg["id"])
            msg["arguments"] += tc["function"].get("arguments", "")
    return msg


def run_code(code: str, ns: dict[str, Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(code, "<call>", "exec"), ns)
        except Exception:
            traceback.print_exc(file=out)
    return out.getvalue()


class Conversation:
    def __init__(self, server: DemoServer, prompt: str) -> None:
        self.server = server
        self.messages: list[dict[str, Any]] = [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": prompt},
        ]
        self.ns: dict[str, Any] = {}

    def next(self) -> dict[str, Any]:
        return reply(self.server, self.messages)

    def answer(self, msg: dict[str, Any], tool_output: str) -> None:
        call = {"id": msg["id"], "type": "function",
                "function": {"name": "python", "arguments": msg["arguments"]}}  # fmt: skip
        self.messages += [
            {"role": "assistant", "content": "", "reasoning_content": msg["reasoning"],
             "tool_calls": [call]},
            {"role": "tool", "tool_call_id": msg["id"], "content": tool_output},
        ]  # fmt: skip

    def approve(self, msg: dict[str, Any]) -> str:
        out = run_code(json.loads(msg["arguments"])["code"], self.ns)
        self.answer(msg, out)
        return out

    def reject(self, msg: dict[str, Any], feedback: str) -> None:
        self.answer(msg, REJECTED + feedback)


def up_to_the_fix(demo: DemoServer) -> tuple[Conversation, dict[str, Any]]:
    c = Conversation(demo, DEMO_PROMPTS["fix_bug"])
    assert "KeyError" in c.approve(c.next())  # the deliberate schema guess
    c.approve(c.next())  # inspect the records
    fix = c.next()
    assert "# step: fix" in json.loads(fix["arguments"])["code"]
    return c, fix


def test_fix_bug_follows_round_to_1_decimal_place(demo: DemoServer) -> None:
    c, fix = up_to_the_fix(demo)
    c.reject(fix, "round the averages to 1 decimal place")
    again = c.next()
    code = json.loads(again["arguments"])["code"]
    assert again["id"] and "# step: fix" in code, again["content"]
    assert "round the averages to 1 decimal place" in again["reasoning"]
    assert "round(sum(v) / len(v), 1)" in code
    out = c.approve(again)
    averages = re.findall(r"avg=([\d.]+)", out)
    assert averages and all(re.fullmatch(r"\d+\.\d", a) for a in averages), out
    verify = c.next()
    assert ".round(1)" in json.loads(verify["arguments"])["code"]
    assert "matches: True" in c.approve(verify)
    final = c.next()
    assert final["id"] is None and "did not run cleanly" not in final["content"]
    table = re.findall(r"^\| (\w+) \| (\d+) \| ([\d.]+) \|$", final["content"], re.M)
    assert [a for _, _, a in table] == averages
    assert "agree" in final["content"]


def test_fix_bug_feedback_it_cannot_follow_ends_honestly(demo: DemoServer) -> None:
    c, fix = up_to_the_fix(demo)
    c.reject(fix, "not like this")
    final = c.next()
    assert final["id"] is None
    assert "not like this" in final["content"]
    assert "the corrected code did not run" in final["content"]
    assert "did not run cleanly" not in final["content"] and "avg" not in final["content"]


def test_analyze_dataset_summary_rejected_does_not_claim_nothing_ran(demo: DemoServer) -> None:
    c = Conversation(demo, DEMO_PROMPTS["analyze_dataset"])
    assert "rows=" in c.approve(c.next())  # the table was made in the kernel
    c.reject(c.next(), "skip the summary")
    final = c.next()
    assert final["id"] is None
    assert "no code ran" not in final["content"] and "not run" in final["content"]
    assert "skip the summary" in final["content"] and "made the synthetic table" in final["content"]
