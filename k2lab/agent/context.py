"""The conversation sent to the model: append-only history, cached serialisation, compaction.

Flat per-step cost is the point of this module. Each message is serialised to JSON once, when it is
appended, and the request body is built by joining the cached fragments; nothing walks the whole
history per step (the openai SDK's request transform does, which is why the provider posts the
prebuilt body). Two rewrites touch old messages, each once, in a batch:

- when a new user turn starts, the previous turns' reasoning is blanked (K2's chat template renders
  older turns with empty thinking anyway, so this only saves tokens);
- when the prompt nears the context window, all tool outputs so far are hidden at once (Moonshot's
  own strategy for long agentic runs), so the provider's prompt cache survives between batches;
- when even that is not enough (and the user turned it on), the older messages are replaced by one
  summary message (``replace_with_summary``, ``k2lab.agent.summarise``): the prefix is rewritten
  once.

Tool-call ids are the conversation's, not the model's: ``assign_call_ids`` gives each new call
``functions.NAME:IDX`` (the K2 Vendor Verifier's advice, and what Moonshot's API does), IDX counting
the tool calls of the whole conversation, so ids are never missing and never repeat (a model that
repeats an id, within a message or across runs, or an engine that sends none, would otherwise
make two calls share one answer, or one decision).
"""

from __future__ import annotations

import json
import re
from typing import Any

HIDDEN_OUTPUT = "[output hidden to save context; re-run the code if you need it again]"
HIDDEN_IMAGES = "[images of earlier tool results hidden to save context]"
#: a tool name that may appear in an id as is (others become "unknown")
_ID_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _dumps(obj: Any) -> bytes:
    """A message as it goes on the wire: compact JSON, UTF-8, encoded once."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class Conversation:
    def __init__(self, system: str | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self._json: list[bytes] = []
        #: index of the first message of the current user turn
        self._turn_start = 0
        #: how many messages' tool outputs are already hidden (compaction watermark)
        self._hidden_upto = 0
        self.compactions = 0
        #: tool calls in the history, and their ids (new ids never repeat one)
        self._calls_total = 0
        self._call_ids: set[str] = set()
        if system:
            self._append({"role": "system", "content": system})

    # -- appending -----------------------------------------------------------------------------
    def _append(self, msg: dict[str, Any]) -> None:
        self.messages.append(msg)
        self._json.append(_dumps(msg))
        calls = msg.get("tool_calls") if msg.get("role") == "assistant" else None
        if calls:
            self._calls_total += len(calls)
            self._call_ids.update(str(c.get("id", "")) for c in calls if isinstance(c, dict))

    def assign_call_ids(self, calls: list[dict[str, str]]) -> list[dict[str, str]]:
        """``calls`` with ids ``functions.NAME:IDX`` unique in this conversation.

        IDX counts tool calls across the conversation (bumped past an id the history already
        holds). A call whose id changed keeps the model's as ``model_id`` (``""`` if it sent none).
        Does not append anything: ``add_assistant`` does.
        """
        out: list[dict[str, str]] = []
        taken: set[str] = set()
        idx = self._calls_total
        for c in calls:
            name = c.get("name", "")
            label = name if _ID_NAME.fullmatch(name) else "unknown"
            while True:
                cid = f"functions.{label}:{idx}"
                idx += 1
                if cid not in self._call_ids and cid not in taken:
                    break
            taken.add(cid)
            call = {"id": cid, "name": name, "arguments": c.get("arguments", "")}
            model_id = c.get("id", "")
            if model_id != cid:
                call["model_id"] = model_id
            out.append(call)
        return out

    def add_user(self, text: str) -> None:
        self._blank_old_reasoning()
        self._turn_start = len(self.messages)
        self._append({"role": "user", "content": text})

    def add_assistant(
        self, content: str, reasoning: str, tool_calls: list[dict[str, str]] | None = None
    ) -> None:
        msg: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            # K2 protocol: an assistant message with tool calls must carry reasoning_content,
            # an empty string if the model produced none.
            msg["reasoning_content"] = reasoning or ""
            msg["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in tool_calls
            ]
        elif reasoning:
            msg["reasoning_content"] = reasoning
        self._append(msg)

    def add_tool_result(self, call_id: str, content: str) -> None:
        self._append({"role": "tool", "tool_call_id": call_id, "content": content})

    def add_tool_images(self, parts: list[dict[str, Any]]) -> None:
        """Images of the tool results just added, as a user message (``k2lab.agent.images``):
        not a new turn (the reasoning of this turn stays)."""
        self._append({"role": "user", "content": parts})

    # -- rewriting (batched, rare) -------------------------------------------------------------
    def _rewrite(self, i: int, msg: dict[str, Any]) -> None:
        self.messages[i] = msg
        self._json[i] = _dumps(msg)

    def _blank_old_reasoning(self) -> None:
        for i in range(self._turn_start, len(self.messages)):
            m = self.messages[i]
            if m["role"] == "assistant" and m.get("reasoning_content"):
                self._rewrite(i, {**m, "reasoning_content": ""})

    def hide_tool_outputs(self) -> int:
        """Hide every tool output so far (one batch). Returns how many were hidden."""
        n = 0
        for i in range(self._hidden_upto, len(self.messages)):
            m = self.messages[i]
            if m["role"] == "tool" and m["content"] != HIDDEN_OUTPUT:
                self._rewrite(i, {**m, "content": HIDDEN_OUTPUT})
                n += 1
            elif m["role"] == "user" and isinstance(m["content"], list):  # tool images
                self._rewrite(i, {**m, "content": HIDDEN_IMAGES})
                n += 1
        self._hidden_upto = len(self.messages)
        if n:
            self.compactions += 1
        return n

    def summary_span(self, keep_steps: int) -> tuple[list[int], int]:
        """What a summarising compaction replaces: the indices of the older messages (all but the
        system prompt, the current turn's user message and the last ``keep_steps`` steps) and
        where the kept tail starts (an assistant message, so tool results keep their calls).
        Walks the history: call it only when the compaction happens."""
        n = len(self.messages)
        tail = n
        seen = 0
        if keep_steps > 0:
            for i in range(n - 1, self._turn_start, -1):
                if self.messages[i]["role"] == "assistant":
                    tail, seen = i, seen + 1
                    if seen == keep_steps:
                        break
        first = 1 if n and self.messages[0]["role"] == "system" else 0
        return [i for i in range(first, tail) if i != self._turn_start], tail

    def replace_with_summary(self, indices: list[int], tail: int, text: str) -> None:
        """Replace the messages at ``indices`` (from ``summary_span``) by one user message holding
        ``text``, after the current turn's user message: [system, task, summary, tail...]. Call
        ids stay unique (the counters are kept)."""
        drop = set(indices)
        keep = [i for i in range(tail) if i not in drop]
        msgs: list[dict[str, Any]] = []
        frags: list[bytes] = []
        turn_start = 0
        for i in keep:
            if i == self._turn_start:
                turn_start = len(msgs)
            msgs.append(self.messages[i])
            frags.append(self._json[i])
        summary = {"role": "user", "content": text}
        msgs.append(summary)
        frags.append(_dumps(summary))
        new_tail = len(msgs)
        hidden = new_tail + max(0, self._hidden_upto - tail)
        msgs.extend(self.messages[tail:])
        frags.extend(self._json[tail:])
        self.messages, self._json = msgs, frags
        self._turn_start = turn_start
        self._hidden_upto = hidden
        self.compactions += 1

    # -- reading -------------------------------------------------------------------------------
    def messages_json(self) -> bytes:
        """The ``messages`` array as UTF-8 JSON, joined from the cached fragments."""
        return b"".join((b"[", b",".join(self._json), b"]"))

    def __len__(self) -> int:
        return len(self.messages)

    def to_list(self) -> list[dict[str, Any]]:
        return list(self.messages)

    @classmethod
    def from_messages(cls, messages: list[dict[str, Any]]) -> Conversation:
        conv = cls()
        for m in messages:
            if m["role"] == "user":
                conv.add_user(m["content"])
            else:
                conv._append(m)
        return conv
