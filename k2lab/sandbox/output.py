"""Collecting a kernel's iopub messages into a bounded text for the model and bundles for people.

Output is counted as it arrives and only a head and a tail are kept, so a 100 MB print costs
O(limit) memory here. The model reads text (plots become a one-line note); people get the rich
bundles (PNG, HTML) and, when the model's copy was cut, a larger copy of the text. Each kept
bundle names the note the model read for it (``metadata.k2lab.model_note``), so the views can
leave that note out of the text people see above the plot (``tools.base.people_text``); with a
vision model the loop also sends the images themselves (``k2lab.agent.images``).

Everything here comes from sandbox code (a hostile kernel can send any JSON): a rich output is
measured whole (data, metadata and transient, as serialized JSON, counting stops once past the
budget) against the call's display budget, and one that does not fit is replaced by a notice;
the number of outputs per call is capped too. Parts of the wrong type are dropped.
"""

from __future__ import annotations

import re
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TEXT_MIMES = ("text/plain", "text/markdown", "application/json", "text/latex")
Bundle = dict[str, Any]
#: Rich outputs kept per call (notices of dropped ones included).
MAX_OUTPUTS = 500


def json_size(value: Any, stop_at: int) -> int:
    """The size of ``value`` serialized as JSON (UTF-8 bytes), counted without serializing it and
    without recursion; stops once past ``stop_at`` (the result is then just some number above
    it), so a 200 MB bundle costs O(stop_at) here."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            n = len(v)
            # a character is 1 to 6 bytes (an escape): count exactly only what can still fit
            total += n + 2 if n > stop_at - total else len(v.encode("utf-8", "replace")) + 2
        elif isinstance(v, dict):
            total += 2 + 2 * max(len(v) - 1, 0)
            for k, item in v.items():
                total += 2
                stack.append(k if isinstance(k, str) else str(k))
                stack.append(item)
                if total > stop_at:
                    break
        elif isinstance(v, list | tuple):
            total += 2 + 2 * max(len(v) - 1, 0)
            if total <= stop_at:
                stack.extend(v[: stop_at - total + 1])
        elif v is None or isinstance(v, bool):
            total += 5
        elif isinstance(v, int | float):
            total += len(repr(v)) if abs(v) < 1e300 else 24
        else:
            total += 16  # not JSON (the in-kernel sandbox's own objects): some small size
        if total > stop_at:
            return total
    return total


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class HeadTail:
    """Keeps the first ``limit/2`` and last ``limit/2`` characters of a growing text."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self._head_max = self.limit // 2
        self._tail_max = self.limit - self._head_max
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self.total = 0

    def add(self, text: str) -> None:
        if not text:
            return
        self.total += len(text)
        if self._head_len < self._head_max:
            take = text[: self._head_max - self._head_len]
            self._head.append(take)
            self._head_len += len(take)
            text = text[len(take) :]
            if not text:
                return
        if self._tail_max:
            self._tail = (self._tail + text[-self._tail_max :])[-self._tail_max :]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        head = "".join(self._head)
        if not self.truncated:
            return head + self._tail
        omitted = self.total - len(head) - len(self._tail)
        return f"{head}\n[... {omitted:,} characters omitted ...]\n{self._tail}"


def head_tail(text: str, limit: int) -> tuple[str, bool]:
    """``text`` within ``limit`` characters, the middle marked as the sandbox marks it: the one
    format the model sees for any cut tool output (python, MCP, notebook tools)."""
    kept = HeadTail(limit)
    kept.add(text)
    return kept.text(), kept.truncated


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.0f} kB"
    return f"{n / 1024**2:.1f} MB"


def _value_size(value: Any) -> str:
    n = len(value) if isinstance(value, str) else json_size(value, 64 * 1024**2)
    return _size(n) if n <= 64 * 1024**2 else "over 64 MB"


def bundle_note(data: dict[str, Any], text_cap: int = 4 * 1024**2) -> str:
    """The model's view of a display bundle: its text if it has one, else a short note."""
    for mime in _TEXT_MIMES:
        if mime in data:
            value = data[mime]
            if isinstance(value, str):
                text = value
            elif json_size(value, text_cap) <= text_cap:
                text = str(value)
            else:
                text = f"[{mime} output, over {_size(text_cap)}]"
            others = [m for m in data if m != mime and not m.startswith("text/plain")]
            rich = [m for m in others if m.startswith(("image/", "text/html", "application/vnd"))]
            if rich and mime == "text/plain":
                size = _value_size(data[rich[0]])
                return f"{text}\n[{rich[0]} output, {size}, shown to the user]"
            return text
    if not data:
        return ""
    mime = next(iter(data))
    return f"[{mime} output, {_value_size(data[mime])}, shown to the user]"


class OutputCollector:
    """Accumulates one execution's iopub messages."""

    def __init__(
        self, model_chars: int, display_bytes: int, max_outputs: int = MAX_OUTPUTS
    ) -> None:
        self.model = HeadTail(model_chars)
        self.people = HeadTail(display_bytes)
        self.display: list[dict[str, Any]] = []
        self._display_size = 0
        self._display_cap = display_bytes
        self._max_outputs = max(max_outputs, 1)
        #: rich outputs not kept (over the byte budget, or past ``max_outputs``)
        self.dropped_displays = 0
        #: of those, the ones past ``max_outputs`` (one notice at the end stands for them all)
        self._overflow = 0
        #: [index in ``display``, count] of the notice for the current run of dropped outputs
        self._notice: list[int] | None = None
        self.error: dict[str, Any] | None = None

    def _text(self, text: str) -> None:
        self.model.add(text)
        self.people.add(text)

    def handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        content = msg.get("content", {})
        if not isinstance(content, dict):
            return
        if kind == "stream":
            text = content.get("text", "")
            self._text(text if isinstance(text, str) else "")
        elif kind in ("display_data", "execute_result", "update_display_data"):
            self._rich(str(kind), content)
        elif kind == "error":
            self.error = content
            tb = content.get("traceback")
            tb = tb if isinstance(tb, list) else []
            lines = [strip_ansi(t) for t in tb if isinstance(t, str)]
            text = "\n".join(lines)
            if not text:
                ename, evalue = content.get("ename"), content.get("evalue")
                ename = ename if isinstance(ename, str) else "Error"
                text = f"{ename}: {evalue if isinstance(evalue, str) else ''}"
            self._text(text + "\n")

    def _rich(self, kind: str, content: dict[str, Any]) -> None:
        """Keep a rich output if the whole of it fits the call's display budget, else a notice."""
        data = content.get("data")
        metadata = content.get("metadata")
        data = data if isinstance(data, dict) else {}
        metadata = metadata if isinstance(metadata, dict) else {}
        note = bundle_note(data, max(self.model.limit * 4, 4096))
        if note:
            note = note if note.endswith("\n") else note + "\n"
            self._text(note)
        # ``metadata.k2lab`` is ours (never the sandbox's): the note the model read in place of
        # this bundle, so views can leave it out of the text above the bundle itself
        metadata = {k: v for k, v in metadata.items() if k != "k2lab"}
        if note:
            metadata["k2lab"] = {"model_note": note}
        if len(self.display) >= self._max_outputs:
            self.dropped_displays += 1
            self._overflow += 1
            return
        left = self._display_cap - self._display_size
        whole = {"data": data, "metadata": metadata, "transient": content.get("transient")}
        size = json_size(whole, max(left, 0))
        if size <= left:
            self._display_size += size
            self.display.append({"data": data, "metadata": metadata})
            self._notice = None
            return
        self.dropped_displays += 1
        if self._notice is not None:  # a run of dropped outputs: one notice for them all
            self._notice[1] += 1
            self.display[self._notice[0]] = self._notice_bundle(self._notice[1])
            return
        self._notice = [len(self.display), 1]
        self.display.append(self._notice_bundle(1, kind, size, left))

    def _notice_bundle(self, count: int, kind: str = "", size: int = 0, left: int = 0) -> Bundle:
        return {
            "data": {"text/plain": self._notice_text(count, kind, size, left)},
            "metadata": {"k2lab": {"dropped": count}},
        }

    def _notice_text(self, count: int, kind: str = "", size: int = 0, left: int = 0) -> str:
        cap = _size(self._display_cap)
        if count == 1 and kind:
            what = f"over {_size(left)}" if size > left else _size(size)
            return (
                f"[A rich output ({kind}, {what} with its metadata) was not kept: over the "
                f"{cap} display limit of this call.]"
            )
        return f"[{count} rich outputs were not kept: over the {cap} display limit of this call.]"

    @property
    def truncated(self) -> bool:
        return self.model.truncated

    def model_text(self) -> str:
        text = self.model.text()
        if self.dropped_displays:
            text += (
                f"\n[{self.dropped_displays} rich output(s) were not kept: over the "
                f"{_size(self._display_cap)} display limit or the {self._max_outputs} outputs "
                "of a call; the user sees a notice instead]"
            )
        return text

    def people_display(self) -> list[dict[str, Any]]:
        """Rich bundles, plus the longer text copy when the model's copy was cut."""
        out = list(self.display)
        if self._overflow:
            out.append(
                {
                    "data": {
                        "text/plain": f"[{self._overflow} more rich outputs were not kept: "
                        f"a call keeps at most {self._max_outputs}.]"
                    },
                    "metadata": {"k2lab": {"dropped": self._overflow}},
                }
            )
        if self.model.truncated:
            out.insert(
                0,
                {
                    "data": {"text/plain": self.people.text()},
                    "metadata": {"k2lab": {"full_text": True, "truncated": self.people.truncated}},
                },
            )
        return out
