"""Sessions on disk: one append-only JSONL file per side-panel session.

Format (version 1): the first line is a header that is also a valid trace header
(``{"k2lab_trace": 1, "k2lab_session": 1, "session_id", "title", "created", "settings", ...}``),
then one event dict per line (``Event.to_dict()``). An event's session-wide index is its line number
minus one, so nothing but the events themselves is stored, and ``k2lab.trace`` readers can open
a session file like any trace.

Lines are strict JSON: a non-finite number (``NaN``, ``Infinity``, which sandbox code can put in
display metadata) is written as ``null``, and such numbers in files written before are read as
``null``, so every answer built from a session is valid JSON.

Every line is written with one ``write`` on an ``O_APPEND`` descriptor and its length checked. A
short or failed write (a full disk) is cut back to the last whole line at once, and that event and
every later one wait in memory, in order, until a write succeeds again: the file is always a prefix
of the session's events, whole line by whole line, so indices never shift. Opening a file drops a
cut last line (and truncates it away); a damaged line in the middle is skipped with a warning.

Memory: an ``EventLog`` keeps the offset and type of every event, and in memory only events up to
``CACHE_MAX`` bytes that are not stream fragments (the ``step.end`` that follows a step's
``reasoning.delta``/``content.delta`` carries the same text). Everything else is read back from
the file when asked for. The server lists sessions from their headers and a small summary file
written next to each log (``<id>.summary.json``), so it opens a session's events only when they
are asked for. This module owns the bytes on disk only: what the events mean is ``sessions``'.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from k2lab.trace.jsonl import dumps, loads

SESSION_VERSION = 1
TRACE_VERSION = 1

#: events up to this many bytes (one line) stay in memory once written or read
CACHE_MAX = 64 * 1024
#: stream fragments: never kept in memory (read back from the file when asked for)
FRAGMENTS = frozenset({"reasoning.delta", "content.delta"})
#: a summary scan parses lines up to this size; of longer lines it reads the type and time only
SCAN_PARSE_MAX = 1024 * 1024
_CHUNK = 1024 * 1024

log = logging.getLogger(__name__)

#: the one call that puts bytes into a session file (tests inject short writes here)
_write = os.write


class SessionFileError(Exception):
    """A session file that cannot be read at all (no header, or a newer format)."""


# -- the header ------------------------------------------------------------------------------------
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
        settings = d.get("settings")
        # a value that was not finite (read as None) was never a valid setting: it is dropped
        settings = {str(k): v for k, v in settings.items() if v is not None} if isinstance(
            settings, dict
        ) else {}  # fmt: skip
        return cls(
            session_id=str(d.get("session_id", "")),
            title=str(d.get("title", "")),
            created=str(d.get("created", "")),
            settings=settings,
        )


# -- reading lines without holding a huge one ----------------------------------------------------
def _lines(f: IO[bytes], start: int, keep: int) -> Iterator[tuple[int, int, bytes, bool]]:
    """``(offset, length, data, whole)`` for each ``\\n``-ended line from ``start``: ``data`` is
    the line without its newline when at most ``keep`` bytes (``whole``), else its first ``keep``
    bytes. A last line without a newline is reported with ``length`` -1 (a cut line)."""
    f.seek(start)
    cur = bytearray()
    cur_len = 0
    cur_start = start
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        i = 0
        while True:
            j = chunk.find(b"\n", i)
            end = len(chunk) if j < 0 else j
            room = keep + 1 - len(cur)
            if room > 0:
                cur += chunk[i : min(end, i + room)]
            cur_len += end - i
            if j < 0:
                break
            whole = cur_len <= keep
            yield cur_start, cur_len + 1, bytes(cur if whole else cur[:keep]), whole
            cur_start += cur_len + 1
            cur = bytearray()
            cur_len = 0
            i = j + 1
    if cur_len:
        yield cur_start, -1, bytes(cur[:keep]), False


_TYPE_RE = re.compile(rb'"type"\s*:\s*"([A-Za-z0-9._-]{1,64})"')
_TS_RE = re.compile(rb'"ts"\s*:\s*(-?[0-9][0-9.eE+-]{0,30})')


def _peek(prefix: bytes) -> dict[str, Any] | None:
    """The type and time of an event line too long to parse for a summary."""
    m = _TYPE_RE.search(prefix)
    if m is None:
        return None
    ev: dict[str, Any] = {"type": m.group(1).decode()}
    t = _TS_RE.search(prefix)
    if t is not None:
        try:
            ev["ts"] = float(t.group(1))
        except ValueError:
            pass
    return ev


def _read_header(f: IO[bytes], path: Path) -> tuple[SessionHeader, int]:
    first = next(_lines(f, 0, SCAN_PARSE_MAX), None)
    if first is None or first[1] < 0:
        raise SessionFileError(f"{path}: empty or cut before the end of its header")
    if not first[3]:
        raise SessionFileError(f"{path}: the header line is too long")
    try:
        d = loads(first[2])
        if not isinstance(d, dict):
            raise ValueError("not an object")
        return SessionHeader.from_dict(d), first[1]
    except (ValueError, AttributeError) as e:
        raise SessionFileError(f"{path}: unreadable header ({e})") from e


def _event(raw: bytes, path: Path, line: int) -> dict[str, Any] | None:
    try:
        ev = loads(raw)
    except ValueError:
        log.warning("k2lab: %s line %d is not JSON; skipped", path, line)
        return None
    if isinstance(ev, dict) and isinstance(ev.get("type"), str):
        return ev
    log.warning("k2lab: %s line %d is not an event; skipped", path, line)
    return None


def _cut_tail(path: Path, end: int, size: int, repair: bool) -> None:
    log.warning("k2lab: %s ends with a cut line (%d bytes); dropped", path, size - end)
    if repair:
        with open(path, "r+b") as f:
            f.truncate(end)


# -- summaries: what the session list needs, without the events --------------------------------
@dataclass(slots=True)
class Summary:
    #: bytes of whole lines the summary describes (it is stale when the file's size differs)
    size: int = 0
    n_events: int = 0
    updated: float | None = None
    first_prompt: str = ""
    #: the last run has a run.start and no run.end (the server stopped while it ran)
    open_run: bool = False

    def see(self, ev: dict[str, Any]) -> None:
        self.n_events += 1
        ts = ev.get("ts")
        if isinstance(ts, (int, float)) and not isinstance(ts, bool) and math.isfinite(ts):
            self.updated = float(ts)
        kind = ev.get("type")
        if kind == "run.start":
            self.open_run = True
            if not self.first_prompt:
                lines = str(ev.get("prompt", "")).strip().splitlines() or [""]
                self.first_prompt = lines[0][:200]
        elif kind == "run.end":
            self.open_run = False


def summary_path(path: Path) -> Path:
    return path.with_name(path.stem + ".summary.json")


def summarize(path: Path) -> tuple[SessionHeader, Summary]:
    """The header and summary of a session file: from its summary file when that is current,
    else by one pass over the file that parses only ``run.start`` lines (up to 1 MiB)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        header, start = _read_header(f, path)
        try:
            d = json.loads(summary_path(path).read_text())
            s = Summary(**{f.name: d[f.name] for f in fields(Summary)})
            if s.size == size and isinstance(s.n_events, int):
                return header, s
        except (OSError, ValueError, KeyError, TypeError):
            pass
        s = Summary()
        end = start
        for n, (off, length, data, whole) in enumerate(_lines(f, start, SCAN_PARSE_MAX), 2):
            if length < 0:
                break
            end = off + length
            ev = _peek(data[:512])  # the type and time are all a summary needs, but a title
            if ev is None or ev["type"] == "run.start":
                ev = _event(data, path, n) if whole else ev
            if ev is not None:
                s.see(ev)
        s.size = end
    if end == size:  # whole: the next start lists this session without a scan
        write_summary(path, s)
    return header, s


def write_summary(path: Path, summary: Summary) -> None:
    target = summary_path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(json.dumps(asdict(summary), allow_nan=False))
        os.replace(tmp, target)
    except (OSError, ValueError) as e:
        log.warning("k2lab: could not write %s: %s", target, e)
        tmp.unlink(missing_ok=True)


@dataclass
class _Scan:
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lengths: array[int] = field(default_factory=lambda: array("q"))
    types: list[str] = field(default_factory=list)
    cache: dict[int, dict[str, Any]] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)


#: the event types a session tracks when its log is opened (run ids, tool-call ids)
TRACKED = frozenset({"run.start", "tool.proposed", "tool.decision"})


def _scan(
    path: Path,
    visit: Callable[[dict[str, Any]], None] | None,
    *,
    repair: bool,
    want: frozenset[str] | None = None,
) -> tuple[SessionHeader, _Scan]:
    """One pass over a session file. ``visit`` sees every event (``want`` None) or only those
    of the types in ``want``; then events that are neither cached nor wanted are not parsed at
    all (their type and time come from the line's start) and long lines are never held whole."""
    size = path.stat().st_size
    out = _Scan()
    keep = 1 << 62 if want is None else CACHE_MAX
    with open(path, "rb") as f:
        header, start = _read_header(f, path)
        end = start
        for n, (off, length, data, whole) in enumerate(_lines(f, start, keep), 2):
            if length < 0:
                _cut_tail(path, end, size, repair)
                break
            end = off + length
            parsed = True
            if want is None:
                ev = _event(data, path, n)
            else:
                head = _peek(data[:512])
                kind = head["type"] if head is not None else None
                if kind is None or kind in want or (whole and kind not in FRAGMENTS):
                    if not whole:
                        data = os.pread(f.fileno(), length - 1, off)
                    ev = _event(data, path, n)
                else:
                    ev, parsed = head, False
            if ev is None:
                continue
            kind = str(ev["type"])
            i = len(out.offsets)
            out.offsets.append(off)
            out.lengths.append(length)
            out.types.append(kind)
            out.summary.see(ev)
            if visit is not None and (want is None or kind in want):
                visit(ev)
            if parsed and length <= CACHE_MAX and kind not in FRAGMENTS:
                out.cache[i] = ev
    out.summary.size = end
    return header, out


# -- the log ---------------------------------------------------------------------------------------
class EventLog:
    """A session's events, on disk one line each: append, count, read back (thread-safe reads)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_APPEND)
        self._size = size  # bytes of whole lines on disk
        self._offsets = array("q")
        self._lengths = array("q")
        self._types: list[str] = []
        self._cache: dict[int, dict[str, Any]] = {}
        #: lines not on disk yet (a write failed), in order, after the saved ones
        self._unsaved: deque[bytes] = deque()
        self._needs_cut = False
        self._lock = threading.Lock()
        self.summary = Summary(size=size)
        #: the reason of the last failed write ("" while everything is saved)
        self.error = ""

    # creating and opening
    @classmethod
    def create(cls, path: Path, header: SessionHeader) -> EventLog:
        path.parent.mkdir(parents=True, exist_ok=True)
        line, _ = dumps(header.to_dict())
        # O_EXCL: two sessions never share a file, even if ids collided
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if _write(fd, line) != len(line):
                raise OSError(f"{path}: short write of the session header")
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return cls(path, len(line))

    @classmethod
    def open(
        cls, path: Path, visit: Callable[[dict[str, Any]], None] | None = None
    ) -> tuple[SessionHeader, EventLog]:
        """Read a session file once: offsets and types of all events, the small ones kept.
        ``visit`` sees the ``TRACKED`` events. Drops (and truncates away) a cut last line."""
        header, scan = _scan(path, visit, repair=True, want=TRACKED)
        self = cls(path, scan.summary.size)
        self._offsets, self._lengths = scan.offsets, scan.lengths
        self._types, self._cache, self.summary = scan.types, scan.cache, scan.summary
        return header, self

    # reading
    def __len__(self) -> int:
        return len(self._types)  # one per event, saved or not (exact while a flush runs)

    @property
    def saved(self) -> int:
        """How many events are on disk (the rest wait for a write that succeeds)."""
        return len(self._offsets)

    @property
    def unsaved(self) -> int:
        return len(self._unsaved)

    def type_of(self, i: int) -> str:
        return self._types[i]

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += len(self)
        with self._lock:
            ev = self._cache.get(i)
            if ev is not None:
                return ev
            n = len(self._offsets)
            raw = b""
            if i >= n:
                raw = self._unsaved[i - n]
            elif self._fd is not None:  # closed: the session was deleted or the server stops
                try:
                    raw = os.pread(self._fd, self._lengths[i], self._offsets[i])
                except OSError as e:
                    log.warning("k2lab: reading event %d of %s: %s", i, self.path, e)
        try:
            got = loads(raw)
        except ValueError:
            got = None
        if not isinstance(got, dict):  # the file changed under us: say so, do not invent
            msg = f"event {i} could not be read back from {self.path.name}"
            return {"type": "error", "seq": -1, "ts": 0.0, "message": msg, "kind": "storage",
                    "fatal": False}  # fmt: skip
        return got

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))

    def slice(self, start: int, stop: int | None = None) -> list[dict[str, Any]]:
        stop = len(self) if stop is None else min(stop, len(self))
        return [self[i] for i in range(max(start, 0), stop)]

    def select(self, types: Iterable[str], start: int = 0) -> list[dict[str, Any]]:
        """The events of the given types (in order), without reading the others."""
        wanted = frozenset(types)
        return [self[i] for i in range(start, len(self)) if self._types[i] in wanted]

    def last_index_of(self, kind: str) -> int:
        for i in range(len(self) - 1, -1, -1):
            if self._types[i] == kind:
                return i
        return -1

    # writing
    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Write one event (after any still unsaved ones); returns the event as stored (strict
        JSON). A failed write keeps it in memory, in order; ``unsaved`` says how many wait."""
        line, stored = dumps(event)
        clean: dict[str, Any] = stored
        kind = str(clean.get("type", ""))
        with self._lock:
            i = len(self)
            self._types.append(kind)
            if len(line) <= CACHE_MAX and kind not in FRAGMENTS:
                self._cache[i] = clean
            self._unsaved.append(line)
            self._flush()
        self.summary.see(clean)
        return clean

    def retry(self) -> bool:
        """Try the unsaved lines again; True when everything is on disk."""
        with self._lock:
            self._flush()
            return not self._unsaved

    def _flush(self) -> None:
        if self._fd is None:
            self.error = "the session file is closed"
            return
        if self._needs_cut and not self._cut_back():  # never write after a half line
            return
        while self._unsaved:
            line = self._unsaved[0]
            try:
                n = _write(self._fd, line)
                err = "" if n == len(line) else f"short write: {n} of {len(line)} bytes"
            except OSError as e:
                err = f"{e.strerror or e}"
            if err:
                self.error = err
                self._cut_back()
                return
            self._offsets.append(self._size)
            self._lengths.append(n)
            self._size += n
            self._unsaved.popleft()
        self.error = ""

    def _cut_back(self) -> bool:
        """Truncate to the last whole line, so the next write starts a clean line."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as e:
            log.error("k2lab: could not cut %s back to %d bytes: %s", self.path, self._size, e)
            self._needs_cut = True
            self.error = self.error or f"could not cut the file back: {e.strerror or e}"
            return False
        self._needs_cut = False
        return True

    def save_summary(self) -> None:
        """Write ``<id>.summary.json`` (what the session list needs) when all events are saved."""
        if self._unsaved:
            return
        self.summary.size = self._size
        write_summary(self.path, self.summary)

    def close(self) -> None:
        if self._fd is not None:
            self.save_summary()
            os.close(self._fd)
            self._fd = None


def read_session(path: Path, *, repair: bool = True) -> tuple[SessionHeader, list[dict[str, Any]]]:
    """Read a session file: its header and its events (dicts). Drops a cut last line.

    With ``repair`` the cut line is also truncated away on disk, so appends stay line-aligned.
    """
    events: list[dict[str, Any]] = []
    header, _ = _scan(path, events.append, repair=repair)
    return header, events
