"""The JSONL trace: an append-only event log with a versioned header.

Format (version 1)::

    {"k2lab_trace": 1, "created": "2026-11-29T08:30:00+00:00", "run_id": "...",
     "model_label": "..."}                     (on one line)
    {"seq": 0, "type": "run.start", ...}        one ``Event.to_dict()`` per line
    ...

Several runs may follow one header (a side-panel session appends its runs; each starts with
``run.start``). Writing flushes every line, so a crash loses at most the line being written; the
reader skips such a cut last line with a warning. A header with a newer major version than this
code knows is refused with a clear error (old versions stay readable: each known version has its
own reader). Event types added later, and unknown fields, are skipped, not fatal.

The trace never holds secrets: events carry no key, and ``run.start`` has the base URL only.

This is the one JSONL layer: its strict-JSON line codec (``dumps``/``loads``: a non-finite number
is ``null``, a too deeply nested value is cut) is also what the server's session files
(``k2lab.server.store``) write and read, and both skip a cut last line and name a damaged one.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TypedDict, cast

from k2lab.events import Event, RunStart, event_from_dict

TRACE_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

log = logging.getLogger("k2lab.trace")


# -- strict JSON lines: the one codec of every k2lab JSONL file (traces, the server's sessions) --
#: what a too deeply nested value inside an event becomes
TOO_DEEP = "[k2lab: nested too deeply to keep]"
_MAX_DEPTH = 200


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (only finite numbers are accepted)")


def _null_constant(name: str) -> None:
    return None


def loads(raw: str | bytes, *, strict: bool = False) -> Any:
    """Parse JSON. ``NaN``/``Infinity`` become ``None`` (``strict``: a ``ValueError``); a value
    nested too deeply for the parser is a ``ValueError`` too, never a ``RecursionError``."""
    try:
        return json.loads(raw, parse_constant=_no_constant if strict else _null_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def finite(obj: Any, depth: int = 0) -> Any:
    """``obj`` with non-finite floats as ``None`` and containers deeper than 200 levels cut."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (dict, list, tuple)) and depth >= _MAX_DEPTH:
        return TOO_DEEP
    if isinstance(obj, dict):
        return {str(k): finite(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v, depth + 1) for v in obj]
    return obj


def _text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(obj: Any) -> tuple[bytes, Any]:
    """One strict JSON line (``\\n``-terminated bytes) and the object it encodes, which differs
    from ``obj`` only where a number was not finite or a value nested too deeply."""
    try:
        text = _text(obj)
    except (ValueError, RecursionError, TypeError):
        obj = finite(obj)
        text = _text(obj)
    # a lone surrogate (undecodable bytes from the sandbox) stays a JSON escape, not bad UTF-8
    return (text + "\n").encode("utf-8", "backslashreplace"), obj


def dumps_text(obj: Any) -> str:
    """``json.dumps`` for HTTP answers: strict, and safe for values that are not."""
    return dumps(obj)[0].decode("utf-8")[:-1]


class TraceHeader(TypedDict, total=False):
    k2lab_trace: int
    created: str
    run_id: str
    model_label: str


class TraceError(Exception):
    """A file that is not a k2lab trace, is corrupt, or has a version this code cannot read."""


@dataclass
class Trace:
    header: TraceHeader
    events: list[Event]
    #: what the reader skipped (a cut last line, unknown event types), for faces to show
    warnings: list[str] = field(default_factory=list)


class TraceWriter:
    """Appends events to a JSONL trace, one flushed line each.

    ``mode="a"`` (default) continues an existing trace: the header is written only if the file is
    empty, and a cut last line left by a crash is removed first so the file stays readable.
    ``mode="w"`` starts a new file. The header's ``run_id`` / ``model_label`` come from the
    arguments, else from the first ``run.start`` written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "a",
        run_id: str | None = None,
        model_label: str | None = None,
    ) -> None:
        if mode not in ("a", "w"):
            raise ValueError("mode must be 'a' or 'w'")
        self.path = Path(path)
        self._run_id = run_id
        self._model_label = model_label
        if mode == "a" and self.path.exists():
            _drop_cut_tail(self.path)
        self._file: IO[str] | None = self.path.open(mode, encoding="utf-8")
        self._header_written = self.path.stat().st_size > 0

    def write(self, event: Event) -> None:
        self.write_dict(event.to_dict(), event)

    def write_dict(self, d: dict[str, Any], event: Event | None = None) -> None:
        if self._file is None:
            raise ValueError(f"trace {self.path} is closed")
        if not self._header_written:
            if isinstance(event, RunStart):
                self._run_id = self._run_id or event.run_id
                self._model_label = self._model_label or event.model_label
            self._line(
                {
                    "k2lab_trace": TRACE_VERSION,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "run_id": self._run_id or "",
                    "model_label": self._model_label or "",
                }
            )
            self._header_written = True
        self._line(d)

    def _line(self, obj: dict[str, Any]) -> None:
        assert self._file is not None
        # strict JSON (a NaN from sandbox output is null), as the server's session files
        self._file.write(dumps(obj)[0].decode("utf-8"))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_cut_tail(path: Path) -> None:
    """Remove a last line without its newline (a write cut by a crash) before appending."""
    with path.open("rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return
        # find the last newline; everything after it is the cut line
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            block = f.read(step)
            i = block.rfind(b"\n")
            if i >= 0:
                f.truncate(pos - step + i + 1)
                log.warning("trace %s: removed a cut last line before appending", path)
                return
            pos -= step
        f.truncate(0)  # the whole file was one cut line (not even a full header)


def load_trace(path: str | os.PathLike[str]) -> Trace:
    """Read a trace; raises ``TraceError`` for a file that is not one or is too new."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise TraceError(f"cannot read trace {p}: {e.strerror or e}") from e
    lines = raw.decode("utf-8", errors="replace").split("\n")
    cut_tail = not raw.endswith(b"\n")  # the last line never got its newline: a cut write
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise TraceError(f"{p} is empty: not a k2lab trace")
    warnings: list[str] = []
    try:
        header = loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or "k2lab_trace" not in header:
        raise TraceError(f"{p} is not a k2lab trace (its first line has no k2lab_trace header)")
    version = header["k2lab_trace"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise TraceError(f"{p}: invalid trace version {version!r}")
    if version not in SUPPORTED_VERSIONS:
        newest = max(SUPPORTED_VERSIONS)
        if version > newest:
            raise TraceError(
                f"{p} is a version {version} trace; this k2lab reads up to version {newest}. "
                "Upgrade k2lab to read it."
            )
        raise TraceError(f"{p}: unsupported trace version {version}")
    events = _READERS[version](p, lines[1:], cut_tail, warnings)
    for w in warnings:
        log.warning("%s", w)
    return Trace(header=cast(TraceHeader, header), events=events, warnings=warnings)


def _read_v1(p: Path, lines: list[str], cut_tail: bool, warnings: list[str]) -> list[Event]:
    events: list[Event] = []
    last = len(lines) - 1
    for i, line in enumerate(lines):
        lineno = i + 2  # 1-based, after the header
        if not line.strip():
            continue
        try:
            d = loads(line)
        except ValueError as e:
            if i == last and cut_tail:
                warnings.append(f"{p}: skipped a cut last line {lineno} (the writer was stopped)")
                continue
            # as the server's session files: a damaged line is skipped, said, and the rest read
            warnings.append(f"{p}: skipped line {lineno}: not valid JSON ({e})")
            continue
        if not isinstance(d, dict):
            warnings.append(f"{p}: skipped line {lineno}: not an event object")
            continue
        try:
            events.append(event_from_dict(d))
        except ValueError:
            warnings.append(f"{p}: skipped line {lineno}: unknown event type {d.get('type')!r}")
        except TypeError as e:  # a known type missing a required field
            raise TraceError(f"{p}: line {lineno}: malformed {d.get('type')} event ({e})") from e
    return events


_READERS = {1: _read_v1}


def read_trace(path: str | os.PathLike[str]) -> tuple[TraceHeader, list[Event]]:
    """``(header, events)`` of a trace (warnings go to the ``k2lab.trace`` logger)."""
    t = load_trace(path)
    return t.header, t.events
