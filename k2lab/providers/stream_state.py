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
whole lines only, so a multi-byte character split across network reads comes out whole. It is
linear in the bytes it gets: only each new read is searched for a newline, and a long line's
pieces are joined once, when it ends (the old ``buffer + read`` rescanned the whole buffer per
read: 26.7 s of CPU for one 40 MB line). A line (or one event's ``data``) longer than
``max_line`` bytes raises ``StreamTooLarge``.

Bounds (a provider is hostile until proven otherwise): ``StreamState(max_chars=...)`` raises
``StreamTooLarge`` when a step's reasoning + content + tool-call ids, names and arguments pass
``max_chars`` characters. With a ``Scrubber``, known secret values are removed from every delta
(``StreamScrub``: a key split across deltas is still caught) and from the assembled message; call
``flush()`` for the held-back tail before ``finish()``.
"""

from __future__ import annotations

import json
from typing import Any

from k2lab.events import ContentDelta, Event, ReasoningDelta, StepEnd, Usage
from k2lab.scrub import Scrubber, StreamScrub

#: One SSE line (or one event's data) at most: real providers send deltas of a few hundred bytes;
#: a whole step's cap (below), JSON-escaped, fits with room to spare.
MAX_LINE_BYTES = 8 * 1024 * 1024
#: Reasoning + content + tool-call text of one step at most. K2 Thinking's longest documented
#: steps are 24k-48k tokens (~200 KB); max_tokens=262144 is ~1 MB. 4 Mi characters is 4x that.
MAX_STEP_CHARS = 4 * 1024 * 1024


class StreamTooLarge(Exception):
    """The provider sent more than a cap allows (not retried: it would send it again)."""


class SSEDecoder:
    """Raw SSE bytes in, ``data`` payloads out, one per event (comments, other fields dropped)."""

    __slots__ = ("_parts", "_size", "_data", "_data_size", "max_line")

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._parts: list[bytes] = []  # the pieces of an incomplete last line
        self._size = 0
        self._data: list[str] = []
        self._data_size = 0
        self.max_line = max_line

    def feed(self, chunk: bytes) -> list[str]:
        out: list[str] = []
        nl = chunk.find(b"\n")
        if nl < 0:  # no line ends in this read: keep the piece, search nothing old again
            self._hold(chunk)
            return out
        if self._parts:
            self._parts.append(chunk[:nl])
            first = b"".join(self._parts)
            self._parts, self._size = [], 0
        else:
            first = chunk[:nl]
        self._line(first, out)
        lines = chunk[nl + 1 :].split(b"\n")
        tail = lines.pop()  # an incomplete last line waits for the next read
        for line in lines:
            self._line(line, out)
        if tail:
            self._hold(tail)
        return out

    def finish(self) -> list[str]:
        """The end of the body: flush a last event that had no closing blank line."""
        out: list[str] = []
        if self._parts:
            line = b"".join(self._parts)
            self._parts, self._size = [], 0
            self._line(line, out)
        self._line(b"", out)
        return out

    def _hold(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self.max_line:
            self._too_long(self._size)
        self._parts.append(piece)

    def _too_long(self, size: int) -> None:
        self._parts, self._size, self._data, self._data_size = [], 0, [], 0
        raise StreamTooLarge(
            f"the provider sent a stream line of more than {self.max_line:,} bytes "
            f"({size:,} so far); no model delta is that long"
        )

    def _line(self, line: bytes, out: list[str]) -> None:
        if len(line) > self.max_line:
            self._too_long(len(line))
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:  # a blank line ends an event
            if self._data:
                out.append("\n".join(self._data) if len(self._data) > 1 else self._data[0])
                self._data, self._data_size = [], 0
        elif line.startswith(b"data:"):
            value = line[6:] if line.startswith(b"data: ") else line[5:]
            self._data_size += len(value)
            if self._data_size > self.max_line:
                self._too_long(self._data_size)
            self._data.append(value.decode("utf-8", errors="replace"))


class _CallParts:
    __slots__ = ("id", "name", "args")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.args: list[str] = []


class StreamState:
    """The assembled state of one streamed assistant message (one step)."""

    def __init__(
        self, step: int, *, max_chars: int = MAX_STEP_CHARS, scrubber: Scrubber | None = None
    ) -> None:
        self.step = step
        self.max_chars = max_chars
        #: characters of reasoning, content and tool-call fragments received (raw, for the cap)
        self.chars = 0
        self._scrubber = scrubber if scrubber else None
        self._held: tuple[StreamScrub, StreamScrub] | None = (
            (StreamScrub(scrubber), StreamScrub(scrubber)) if scrubber else None
        )
        self._held_kind = -1  # the channel whose tail is held back (0 reasoning, 1 content)
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
        try:
            return self.feed(chunk)
        except (AttributeError, TypeError, ValueError) as e:  # a field of the wrong type
            self.error = f"the provider sent a malformed chunk ({type(e).__name__}: {e})"
            return []

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
            self._text(0, r, out)
        c = delta.get("content")
        if c and isinstance(c, str):
            self._text(1, c, out)
        tcs = delta.get("tool_calls")
        if tcs:
            for tc in tcs:
                self._tool_fragment(tc)

    def _count(self, n: int) -> None:
        self.chars += n
        if self.chars > self.max_chars:
            raise StreamTooLarge(
                f"the provider sent more than {self.max_chars:,} characters of reasoning, answer "
                f"and tool calls in step {self.step} (a step is capped at that size; K2's longest "
                "steps are about 200,000)"
            )

    def _text(self, kind: int, text: str, out: list[Event]) -> None:
        self._count(len(text))
        if self._held is not None:
            if self._held_kind != kind and self._held_kind >= 0:
                self._release(self._held_kind, self._held[self._held_kind].flush(), out)
            self._held_kind = kind
            text = self._held[kind].feed(text)
        self._release(kind, text, out)

    def _release(self, kind: int, text: str, out: list[Event]) -> None:
        if not text:
            return
        self.deltas += 1
        if kind == 0:
            self._reasoning.append(text)
            out.append(ReasoningDelta(step=self.step, text=text))
        else:
            self._content.append(text)
            out.append(ContentDelta(step=self.step, text=text))

    def flush(self) -> list[Event]:
        """Deltas held back by the scrubber (a possible start of a key); call before ``finish``."""
        out: list[Event] = []
        if self._held is not None:
            for kind in (0, 1):
                self._release(kind, self._held[kind].flush(), out)
            self._held_kind = -1
        return out

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
            parts.id = str(cid)
            self._count(len(parts.id))
        fn = tc.get("function") or {}
        name = fn.get("name")
        if name and name != parts.name:
            name = str(name)
            self._count(len(name))
            # normally sent once; some engines stream the name in pieces
            parts.name = parts.name + name if parts.name else name
        args = fn.get("arguments")
        if args is not None:
            if not isinstance(args, str):  # a few servers send an object, not text
                args = json.dumps(args, ensure_ascii=False)
            if args:
                self._count(len(args))
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
            # "" when the engine sent no id: the loop gives every call its own id anyway
            # (Conversation.assign_call_ids), whatever the model sent.
            call = {"id": p.id, "name": p.name, "arguments": "".join(p.args)}
            if self._scrubber is not None:
                call = {k: self._scrubber.exact(v) for k, v in call.items()}
            calls.append(call)
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
