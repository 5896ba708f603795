"""Turn OpenAI-compatible ``chat.completion.chunk`` dicts into k2lab events: a pure state machine.

No I/O and no clock: feed it chunks (or raw SSE ``data`` strings) one at a time and it returns the
events each one produces; ``finish()`` builds the step's ``StepEnd``. The HTTP layer
(``openai_compat``) owns requests, retries and timing. What this module gets right, per
K2_PROTOCOL.md:

- reasoning arrives as ``reasoning_content`` (Moonshot, SGLang) or ``reasoning`` (vLLM,
  OpenRouter); ``reasoning_content`` wins when the key is present, even as ``""`` (an empty delta is
  not an absent one, so it does not fall through to ``reasoning``);
- tool calls are assembled by ``index`` from fragments of any size; arguments are text, so a
  fragment boundary inside a ``\\u`` escape or a multi-byte character just concatenates; IDs such as
  ``functions.python:0`` are kept byte-for-byte; several calls per message;
- usage comes either inside the last choice (Moonshot, with ``cached_tokens``) or in a trailing
  chunk with empty ``choices`` and top-level ``usage`` (vLLM / OpenAI with ``include_usage``);
  one ``Usage`` event per step, from the first final usage seen;
- a stream that ends with no ``finish_reason`` and no ``[DONE]`` was cut: ``completed`` is False
  and the caller must retry (the openai SDK ends such streams silently).

``SSEDecoder`` turns the raw response bytes into ``data`` payloads. It splits on bytes and decodes
whole lines only, so a multi-byte character split across network reads comes out whole.
"""

from __future__ import annotations

import json
from typing import Any

from k2lab.events import ContentDelta, Event, ReasoningDelta, StepEnd, Usage


class SSEDecoder:
    """Raw SSE bytes in, ``data`` payloads out, one per event (comments, other fields dropped)."""

    __slots__ = ("_buf", "_data")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        lines = (self._buf + chunk).split(b"\n") if self._buf else chunk.split(b"\n")
        self._buf = lines.pop()  # an incomplete last line waits for the next read
        out: list[str] = []
        for line in lines:
            self._line(line, out)
        return out

    def finish(self) -> list[str]:
        """The end of the body: flush a last event that had no closing blank line."""
        out: list[str] = []
        if self._buf:
            self._line(self._buf, out)
            self._buf = b""
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[str]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:  # a blank line ends an event
            if self._data:
                out.append("\n".join(self._data))
                self._data = []
        elif line.startswith(b"data:"):
            value = line[6:] if line.startswith(b"data: ") else line[5:]
            self._data.append(value.decode("utf-8", errors="replace"))


class _CallParts:
    __slots__ = ("id", "name", "args")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.args: list[str] = []


class StreamState:
    """The assembled state of one streamed assistant message (one step)."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, _CallParts] = {}
        self._last_index: int | None = None
        self.finish_reason: str | None = None
        #: ``data: [DONE]`` was received
        self.done = False
        #: chunks fed so far (0 at the end = an empty stream)
        self.chunks = 0
        #: reasoning/content deltas returned so far (a retry after these discards a partial step)
        self.deltas = 0
        self.usage: Usage | None = None
        #: an error object the server sent inside the stream (OpenRouter does this with HTTP 200)
        self.error: str | None = None

    # -- input ---------------------------------------------------------------------------------
    @property
    def completed(self) -> bool:
        """True when the stream ended properly (a finish_reason or ``[DONE]`` arrived)."""
        return self.finish_reason is not None or self.done

    def feed_data(self, data: str) -> list[Event]:
        """Feed one SSE ``data:`` payload (JSON text or ``[DONE]``)."""
        if data.startswith("[DONE]"):
            self.done = True
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            self.error = f"the provider sent a stream line that is not JSON: {data[:200]!r}"
            return []
        if not isinstance(chunk, dict):
            return []
        return self.feed(chunk)

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Feed one parsed chunk; returns the events it produces (possibly none)."""
        self.chunks += 1
        if self.done:  # nothing after [DONE] counts
            return []
        err = chunk.get("error")
        if err:
            msg = err.get("message") if isinstance(err, dict) else None
            self.error = str(msg or err)
            return []
        out: list[Event] = []
        choices = chunk.get("choices") or []
        for choice in choices:
            if choice.get("index", 0) != 0:  # n > 1 is never requested; ignore extra choices
                continue
            delta = choice.get("delta") or {}
            if delta:
                self._delta(delta, out)
            fr = choice.get("finish_reason")
            if fr:
                self.finish_reason = fr
            if choice.get("usage"):
                self._usage(choice["usage"], out)  # Moonshot: usage inside the last choice
        top = chunk.get("usage")
        if top and (not choices or self.finish_reason is not None):
            # vLLM/OpenAI: a trailing chunk with empty choices; some servers put it on the final
            # choice chunk instead. Mid-stream (continuous) usage is ignored: it is partial.
            self._usage(top, out)
        return out

    def _delta(self, delta: dict[str, Any], out: list[Event]) -> None:
        r = delta.get("reasoning_content")
        if r is None:
            r = delta.get("reasoning")
        if r and isinstance(r, str):
            self._reasoning.append(r)
            self.deltas += 1
            out.append(ReasoningDelta(step=self.step, text=r))
        c = delta.get("content")
        if c and isinstance(c, str):
            self._content.append(c)
            self.deltas += 1
            out.append(ContentDelta(step=self.step, text=c))
        tcs = delta.get("tool_calls")
        if tcs:
            for tc in tcs:
                self._tool_fragment(tc)

    def _tool_fragment(self, tc: dict[str, Any]) -> None:
        index = tc.get("index")
        if not isinstance(index, int):
            # Some engines omit the index: a fragment with a *new* id starts a new call, anything
            # else (no id, or the id repeated on every fragment) continues the last one.
            last = self._last_index
            cid = tc.get("id")
            if last is None or (cid and cid != self._calls[last].id):
                index = len(self._calls)
            else:
                index = last
        parts = self._calls.get(index)
        if parts is None:
            parts = self._calls[index] = _CallParts()
        self._last_index = index
        cid = tc.get("id")
        if cid and not parts.id:
            parts.id = cid
        fn = tc.get("function") or {}
        name = fn.get("name")
        if name and name != parts.name:
            # normally sent once; some engines stream the name in pieces
            parts.name = parts.name + name if parts.name else name
        args = fn.get("arguments")
        if args is not None:
            if not isinstance(args, str):  # a few servers send an object, not text
                args = json.dumps(args, ensure_ascii=False)
            if args:
                parts.args.append(args)

    def _usage(self, u: Any, out: list[Event]) -> None:
        if not isinstance(u, dict) or self.usage is not None:
            return
        cached = u.get("cached_tokens")
        if cached is None:
            cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens")
        reasoning = (u.get("completion_tokens_details") or {}).get("reasoning_tokens")
        self.usage = Usage(
            step=self.step,
            prompt_tokens=int(u.get("prompt_tokens") or 0),
            completion_tokens=int(u.get("completion_tokens") or 0),
            cached_tokens=int(cached or 0),
            reasoning_tokens=int(reasoning or 0),
        )
        out.append(self.usage)

    # -- output --------------------------------------------------------------------------------
    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def tool_calls(self) -> list[dict[str, str]]:
        calls = []
        for index in sorted(self._calls):
            p = self._calls[index]
            # An engine that sends no id still needs one for the tool message; this one cannot
            # collide with Kimi's "functions.NAME:N" style.
            cid = p.id or f"call_{self.step}_{index}"
            calls.append({"id": cid, "name": p.name, "arguments": "".join(p.args)})
        return calls

    def finish(self) -> StepEnd:
        """The whole assistant message; check ``completed`` first (a cut stream must be retried)."""
        return StepEnd(
            step=self.step,
            content=self.content,
            reasoning=self.reasoning,
            tool_calls=self.tool_calls(),
            finish_reason=self.finish_reason,
        )
