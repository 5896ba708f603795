"""How the scripted demo model reads a request: the current turn's tool calls and their results.

The demo server is stateless, like a real model endpoint: everything it knows comes from the
``messages`` of the request. This module turns them into a ``Turn`` (the prompt, and one
``Exchange`` per tool call of the current turn with the status the tool message reveals), and
gives the demo scripts small helpers to answer: ``Turn.call`` (a ``python`` tool call whose id
counts calls across the whole conversation, K2 style) and ``Turn.answer``.

Each scripted call starts with a ``# step: <tag>`` comment, so the script recognises its own
earlier steps in the history even when a person edited the code before it ran.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "error", "rejected", "invalid", "stopped", "missing"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TAG = re.compile(r"^#\s*step:\s*(.+?)\s*$", re.MULTILINE)
_EXC = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b:?\s*(.*)$", re.M)
# the arguments are JSON on one line (newlines escaped), so the first "]\n" ends the marker
_EDITED = re.compile(r"^\[The user edited the arguments before running: (.*?)\]\n", re.S)
_FEEDBACK = "Feedback from the user: "
_ENGINE_NOTES = ("The user copied these variables", "Note from k2lab: ")


@dataclass(slots=True)
class Exchange:
    """One tool call of the current turn and what came back."""

    call_id: str
    name: str
    tag: str  # the "# step:" tag of the code as the model proposed it ("" if none)
    code: str  # the code as proposed
    status: Status
    output: str  # the tool message text (edit marker removed), "" if missing
    feedback: str | None = None  # the person's words when the call was rejected
    edited: bool = False
    error_name: str | None = None  # e.g. "KeyError" when the code raised
    error_value: str | None = None  # e.g. "'customer_id'"

    @property
    def never_policy(self) -> bool:
        """True when the rejection came from an ``--approve never`` policy, not a person."""
        return self.status == "rejected" and "approval policy is 'never'" in (self.feedback or "")


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Reply:
    """One assistant message the demo model will stream."""

    reasoning: str
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)


def classify(text: str) -> tuple[Status, str, str | None, bool]:
    """(status, output without the edit marker, feedback, edited) for a tool message's text."""
    text = _ANSI.sub("", text)
    edited = False
    m = _EDITED.match(text)
    if m:
        edited, text = True, text[m.end() :]
    if text.startswith("The user rejected this tool call"):
        fb = text.split(_FEEDBACK, 1)[1].strip() if _FEEDBACK in text else None
        return "rejected", text, fb, edited
    if text.startswith("[not run:"):
        return "stopped", text, None, edited
    if text.startswith(("Error: unknown tool", "Error: the arguments", "Error: invalid arguments")):
        return "invalid", text, None, edited
    if "Traceback" in text or _EXC.search(text) or text.lower().startswith("error"):
        return "error", text, None, edited
    return "ok", text, None, edited


def last_exception(text: str) -> tuple[str | None, str | None]:
    """The last ``SomeError: value`` line of a traceback, if any."""
    found = _EXC.findall(_ANSI.sub("", text))
    if not found:
        return None, None
    name, value = found[-1]
    return name.rsplit(".", 1)[-1], value.strip() or None


def code_of(arguments: str) -> str:
    try:
        args = json.loads(arguments)
    except (json.JSONDecodeError, TypeError):
        return ""
    code = args.get("code") if isinstance(args, dict) else None
    return code if isinstance(code, str) else ""


class Turn:
    """The current user turn as the model sees it in the request."""

    def __init__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> None:
        self.tool_names = [
            str(t.get("function", {}).get("name", "")) for t in tools if isinstance(t, dict)
        ]
        start = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        self.prompt = _text(messages[start].get("content")) if start >= 0 else ""
        # the engine's notes on --with copies come before a follow-up's message (k2lab.driver,
        # the notebook session): not the user's words
        while self.prompt.startswith(_ENGINE_NOTES) and "\n\n" in self.prompt:
            self.prompt = self.prompt.split("\n\n", 1)[1]
        #: what the engine told the model about this run (the system prompt's notes on the user's
        #: --with variables and --data files; on a follow-up they come with the user message)
        self.notes = "\n".join(
            _text(m.get("content"))
            for i, m in enumerate(messages)
            if m.get("role") == "system" or i == start
        )
        #: the offered tools' JSON schemas by name (MCP tools included)
        self.tool_schemas: dict[str, dict[str, Any]] = {
            t["function"]["name"]: t["function"].get("parameters") or {}
            for t in tools
            if isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
        }
        # K2 numbers tool calls across the whole conversation: functions.python:N
        self.next_index = sum(len(m.get("tool_calls") or []) for m in messages)
        results = {
            m.get("tool_call_id"): _text(m.get("content"))
            for m in messages[start + 1 :]
            if m.get("role") == "tool"
        }
        self.exchanges: list[Exchange] = []
        for m in messages[start + 1 :]:
            calls = (m.get("tool_calls") or []) if m.get("role") == "assistant" else []
            for c in calls:
                fn = c.get("function") or {}
                code = code_of(fn.get("arguments", ""))
                tag = _TAG.search(code)
                raw = results.get(c.get("id"))
                if raw is None:
                    status: Status = "missing"
                    out, fb, edited = "", None, False
                else:
                    status, out, fb, edited = classify(raw)
                ename, evalue = last_exception(out) if status == "error" else (None, None)
                self.exchanges.append(
                    Exchange(
                        call_id=c.get("id", ""),
                        name=fn.get("name", ""),
                        tag=tag.group(1) if tag else "",
                        code=code,
                        status=status,
                        output=out,
                        feedback=fb,
                        edited=edited,
                        error_name=ename,
                        error_value=evalue,
                    )
                )

    # -- reading the history -------------------------------------------------------------------
    @property
    def has_python(self) -> bool:
        return "python" in self.tool_names

    def last(self, tag: str) -> Exchange | None:
        for ex in reversed(self.exchanges):
            if ex.tag == tag:
                return ex
        return None

    def count(self, tag: str) -> int:
        return sum(1 for ex in self.exchanges if ex.tag == tag)

    @property
    def never(self) -> bool:
        """Has the approval policy rejected a call of this turn (so no call will ever run)?"""
        return any(ex.never_policy for ex in self.exchanges)

    # -- answering -----------------------------------------------------------------------------
    def call(self, tag: str, code: str, reasoning: str) -> Reply:
        code = f"# step: {tag}\n{code.strip()}\n"
        call = ToolCall(
            id=f"functions.python:{self.next_index}",
            name="python",
            arguments=json.dumps({"code": code}, ensure_ascii=False),
        )
        return Reply(reasoning=reasoning, tool_calls=[call])

    def tool(self, name: str, arguments: dict[str, Any], reasoning: str) -> Reply:
        """A call of another offered tool (an MCP server's, say) with these arguments."""
        call = ToolCall(
            id=f"functions.{name}:{self.next_index}",
            name=name,
            arguments=json.dumps(arguments, ensure_ascii=False),
        )
        return Reply(reasoning=reasoning, tool_calls=[call])

    def exchange_of(self, name: str) -> Exchange | None:
        """The last call of the tool ``name`` in this turn."""
        return next((ex for ex in reversed(self.exchanges) if ex.name == name), None)

    @staticmethod
    def answer(reasoning: str, content: str) -> Reply:
        return Reply(reasoning=reasoning, content=content)


def _text(content: Any) -> str:
    """Message content as text (OpenAI allows a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def values(text: str) -> dict[str, str]:
    """``key=value`` pairs printed by the demo code (the script reads numbers from real output)."""
    return dict(re.findall(r"\b([A-Za-z_]\w*)=([^\s,;]+)", text))


def why_not_run(feedback: str | None, never: bool) -> str:
    """Why a call did not run, in the words the demo answers with."""
    if never:
        return "the approval policy is 'never'"
    return "the user rejected the call" + (f' ("{feedback}")' if feedback else "")


def quote(text: str, limit: int = 400) -> str:
    """A short quote of tool output for reasoning and answers."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 20].rstrip() + " ... [cut]"
