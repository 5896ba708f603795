"""Sessions on disk: one append-only JSONL file per side-panel session.

Format (version 1): the first line is a header that is also a valid trace header
(``{"k2lab_trace": 1, "k2lab_session": 1, "session_id", "title", "created", "settings", ...}``),
then one event dict per line (``Event.to_dict()``). An event's session-wide index is its line number
minus one, so nothing but the events themselves is stored, and ``k2lab.trace`` readers can open
a session file like any trace.

Every line is written with one ``write`` on an ``O_APPEND`` descriptor, so a crash can only cut the
last line. Opening a file drops such a cut line (and truncates it away, so the next append starts on
a clean line); a damaged line in the middle is skipped with a warning rather than losing the rest.
This module owns the bytes on disk only: what the events mean is ``sessions``' business.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SESSION_VERSION = 1
TRACE_VERSION = 1

log = logging.getLogger(__name__)


class SessionFileError(Exception):
    """A session file that cannot be read at all (no header, or a newer format)."""


@dataclass(slots=True)
class SessionHeader:
    session_id: str
    title: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    #: the per-session setting overrides chosen in the panel (never the key)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k2lab_trace": TRACE_VERSION,
            "k2lab_session": SESSION_VERSION,
            "created": self.created,
            "run_id": None,  # a session holds many runs; each run.start names its own
            "model_label": "",
            "session_id": self.session_id,
            "title": self.title,
            "settings": self.settings,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionHeader:
        version = d.get("k2lab_session")
        if not isinstance(version, int):
            raise SessionFileError("not a k2lab session file (no k2lab_session header)")
        if version > SESSION_VERSION:
            raise SessionFileError(
                f"session format {version} is newer than this k2lab understands "
                f"({SESSION_VERSION}); upgrade k2lab to open it"
            )
        return cls(
            session_id=str(d.get("session_id", "")),
            title=str(d.get("title", "")),
            created=str(d.get("created", "")),
            settings=dict(d.get("settings") or {}),
        )


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class SessionFile:
    """An open session file: append event dicts, one flushed line each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND)

    @classmethod
    def create(cls, path: Path, header: SessionHeader) -> SessionFile:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two sessions never share a file, even if ids collided
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _line(header.to_dict()))
        finally:
            os.close(fd)
        return cls(path)

    def append(self, event: dict[str, Any]) -> None:
        if self._fd is None:
            raise ValueError(f"session file {self.path} is closed")
        os.write(self._fd, _line(event))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_session(path: Path, *, repair: bool = True) -> tuple[SessionHeader, list[dict[str, Any]]]:
    """Read a session file: its header and its events (dicts). Drops a cut last line.

    With ``repair`` the cut line is also truncated away on disk, so appends stay line-aligned.
    """
    data = path.read_bytes()
    end = len(data)
    if data and not data.endswith(b"\n"):
        end = data.rfind(b"\n") + 1  # a crash mid-write: the partial line never happened
        log.warning("k2lab: %s ends with a cut line (%d bytes); dropped", path, len(data) - end)
        if repair:
            with open(path, "r+b") as f:
                f.truncate(end)
    lines = data[:end].split(b"\n")[:-1] if end else []
    if not lines:
        raise SessionFileError(f"{path}: empty or cut before the end of its header")
    try:
        header = SessionHeader.from_dict(json.loads(lines[0]))
    except (ValueError, AttributeError) as e:
        raise SessionFileError(f"{path}: unreadable header ({e})") from e
    events: list[dict[str, Any]] = []
    for n, raw in enumerate(lines[1:], start=2):
        try:
            ev = json.loads(raw)
        except ValueError:
            log.warning("k2lab: %s line %d is not JSON; skipped", path, n)
            continue
        if isinstance(ev, dict) and isinstance(ev.get("type"), str):
            events.append(ev)
        else:
            log.warning("k2lab: %s line %d is not an event; skipped", path, n)
    return header, events
