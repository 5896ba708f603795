"""Collecting a kernel's iopub messages into a bounded text for the model and bundles for people.

Output is counted as it arrives and only a head and a tail are kept, so a 100 MB print costs
O(limit) memory here. The model reads text (plots become a one-line note); people get the rich
bundles (PNG, HTML) and, when the model's copy was cut, a larger copy of the text.
"""

from __future__ import annotations

import re
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TEXT_MIMES = ("text/plain", "text/markdown", "application/json", "text/latex")


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


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.0f} kB"
    return f"{n / 1024**2:.1f} MB"


def bundle_note(data: dict[str, Any]) -> str:
    """The model's view of a display bundle: its text if it has one, else a short note."""
    for mime in _TEXT_MIMES:
        if mime in data:
            value = data[mime]
            text = value if isinstance(value, str) else str(value)
            others = [m for m in data if m != mime and not m.startswith("text/plain")]
            rich = [m for m in others if m.startswith(("image/", "text/html", "application/vnd"))]
            if rich and mime == "text/plain":
                size = _size(len(str(data[rich[0]])))
                return f"{text}\n[{rich[0]} output, {size}, shown to the user]"
            return text
    if not data:
        return ""
    mime = next(iter(data))
    return f"[{mime} output, {_size(len(str(data[mime])))}, shown to the user]"


class OutputCollector:
    """Accumulates one execution's iopub messages."""

    def __init__(self, model_chars: int, display_bytes: int) -> None:
        self.model = HeadTail(model_chars)
        self.people = HeadTail(display_bytes)
        self.display: list[dict[str, Any]] = []
        self._display_size = 0
        self._display_cap = display_bytes
        self.dropped_displays = 0
        self.error: dict[str, Any] | None = None

    def _text(self, text: str) -> None:
        self.model.add(text)
        self.people.add(text)

    def handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        content = msg.get("content", {})
        if kind == "stream":
            self._text(content.get("text", ""))
        elif kind in ("display_data", "execute_result", "update_display_data"):
            data = content.get("data", {}) or {}
            note = bundle_note(data)
            if note:
                self._text(note if note.endswith("\n") else note + "\n")
            size = sum(len(str(v)) for v in data.values())
            if self._display_size + size <= self._display_cap:
                self._display_size += size
                self.display.append({"data": data, "metadata": content.get("metadata", {}) or {}})
            else:
                self.dropped_displays += 1
        elif kind == "error":
            self.error = content
            tb = content.get("traceback") or []
            text = "\n".join(strip_ansi(t) for t in tb) if tb else ""
            if not text:
                text = f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"
            self._text(text + "\n")

    @property
    def truncated(self) -> bool:
        return self.model.truncated

    def model_text(self) -> str:
        text = self.model.text()
        if self.dropped_displays:
            text += (
                f"\n[{self.dropped_displays} more rich output(s) were not kept: over the "
                f"{_size(self._display_cap)} display limit]"
            )
        return text

    def people_display(self) -> list[dict[str, Any]]:
        """Rich bundles, plus the longer text copy when the model's copy was cut."""
        out = list(self.display)
        if self.model.truncated:
            out.insert(
                0,
                {
                    "data": {"text/plain": self.people.text()},
                    "metadata": {"k2lab": {"full_text": True, "truncated": self.people.truncated}},
                },
            )
        return out
