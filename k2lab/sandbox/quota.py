"""The workspace quota: bytes and files the sandbox keeps on the host, counted off the event loop.

``scan`` walks the sandbox's writable host directories through directory fds (``O_NOFOLLOW``
at every step, so a link or a folder swapped for one while it runs leads nowhere outside), counts
every entry (files, folders, links, sockets) with a fixed overhead on top of its blocks (400,000
empty files are not free), and stops once past what it was asked to check, or its time is up.

``QuotaGuard`` runs ``scan`` in a thread while the kernel lives, between calls too: a background
process or thread that keeps writing after its call returned is caught by the next scan, a few
tenths of a second later (plus a cheap ``statvfs`` look every ``TICK`` seconds that brings the
next scan forward when the disk fills fast). What it allows ratchets: once the workspace went
over its limit and the kernel was stopped, the files it left stay allowed (the model must be able
to run code that deletes them) but no more; as files go, the allowance comes back down to the
limit. RLIMIT_FSIZE caps each single file on top (``Limits.file_size``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Bytes every entry costs on top of its blocks: an inode and a directory entry.
ENTRY_BYTES = 1024
#: Deeper folders are not walked into (each level holds a file descriptor); finding one is
#: reported as a breach, since no ordinary program nests folders this deep.
MAX_DEPTH = 256
#: Seconds one scan may take; a scan cut short reports what it counted so far.
SCAN_TIME = 5.0
#: Seconds between scans at least, and how many times a scan's own duration (a workspace of
#: 100,000 files takes ~0.2 s to scan: one scan every 4 s, ~5% of a core, while the kernel lives).
MIN_INTERVAL = 0.5
INTERVAL_FACTOR = 20.0
#: Seconds between the cheap free-space looks that can bring a scan forward.
TICK = 0.1

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Usage:
    """What one scan counted."""

    bytes: int = 0
    #: entries of every kind (files, folders, links, ...), the roots not included
    files: int = 0
    #: False when the scan stopped early: past its stop values, or out of time (``timed_out``)
    complete: bool = True
    timed_out: bool = False
    #: a folder nested deeper than ``MAX_DEPTH`` was found (and not walked into)
    too_deep: bool = False
    seconds: float = 0.0

    def describe(self) -> str:
        mb = self.bytes / 1024**2
        more = "" if self.complete else " or more"
        return f"{mb:,.1f} MB in {self.files:,} files{more}"


class _Scan:
    def __init__(self, stop_bytes: int, stop_files: int, deadline: float) -> None:
        self.stop_bytes = stop_bytes if stop_bytes > 0 else -1
        self.stop_files = stop_files if stop_files > 0 else -1
        self.deadline = deadline
        self.bytes = 0
        self.files = 0
        self.stopped = False
        self.timed_out = False
        self.too_deep = False
        self._uid = os.geteuid()

    def _past(self) -> bool:
        if (0 <= self.stop_bytes < self.bytes) or (0 <= self.stop_files < self.files):
            self.stopped = True
        elif not self.files & 1023 and time.monotonic() > self.deadline:
            self.stopped = self.timed_out = True
        return self.stopped

    def _open_dir(self, name: str, parent: int) -> int | None:
        """``name`` in ``parent`` as a directory fd, never through a link. A folder the sandbox
        made unreadable to its owner (us, or the user bwrap maps its uid to) is given back
        ``u+rwx`` first, so its content is counted."""
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except PermissionError:
            pass
        except OSError:
            return None  # gone, or no longer a folder (a link or file put in its place)
        try:
            pfd = os.open(name, _PATH_FLAGS, dir_fd=parent)
        except OSError:
            return None
        try:
            st = os.fstat(pfd)
            if st.st_uid == self._uid:
                # the inode itself, through the O_PATH fd: a link put in its place is not followed
                os.chmod(f"/proc/self/fd/{pfd}", stat.S_IMODE(st.st_mode) | 0o700)
        except OSError:
            pass
        finally:
            os.close(pfd)
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError:
            return None

    def walk(self, fd: int, depth: int) -> None:
        """Count what is under the folder ``fd`` (closed by the caller)."""
        if self._uid != 0:
            with contextlib.suppress(OSError):
                st = os.fstat(fd)
                if st.st_uid == self._uid and st.st_mode & 0o700 != 0o700:
                    os.chmod(fd, stat.S_IMODE(st.st_mode) | 0o700)  # searchable, to stat entries
        subdirs: list[str] = []
        try:
            with os.scandir(fd) as it:
                for e in it:
                    self.files += 1
                    self.bytes += ENTRY_BYTES
                    try:
                        if e.is_dir(follow_symlinks=False):
                            subdirs.append(e.name)
                        else:
                            self.bytes += e.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass
                    if self._past():
                        return
        except OSError:
            return
        for name in subdirs:
            if depth >= MAX_DEPTH:
                self.too_deep = True
                return
            sub = self._open_dir(name, fd)
            if sub is None:
                continue
            try:
                with contextlib.suppress(OSError):
                    self.bytes += os.fstat(sub).st_blocks * 512
                self.walk(sub, depth + 1)
            finally:
                os.close(sub)
            if self.stopped:
                return


def scan(
    paths: Sequence[str | os.PathLike[str]],
    *,
    stop_bytes: int = 0,
    stop_files: int = 0,
    time_limit: float = SCAN_TIME,
) -> Usage:
    """Bytes and entries under ``paths`` (blocking: run it in a thread). Stops once past
    ``stop_bytes`` or ``stop_files`` (0: no stop) or after ``time_limit`` seconds."""
    t0 = time.monotonic()
    s = _Scan(stop_bytes, stop_files, t0 + time_limit)
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            s.walk(fd, 0)
        finally:
            os.close(fd)
        if s.stopped:
            break
    return Usage(
        bytes=s.bytes,
        files=s.files,
        complete=not s.stopped,
        timed_out=s.timed_out,
        too_deep=s.too_deep,
        seconds=time.monotonic() - t0,
    )


def _free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class QuotaGuard:
    """Keeps the sandbox's writable directories within ``max_bytes`` and ``max_files``.

    ``run(on_breach)`` scans until cancelled and awaits ``on_breach(usage)`` when a scan finds
    more than is allowed; ``breach`` holds that usage until ``settle`` is called (a running
    call polls it).
    """

    def __init__(
        self, dirs: Callable[[], Sequence[Path]], *, max_bytes: int, max_files: int
    ) -> None:
        self.dirs = dirs
        self.max_bytes = max(max_bytes, 0)
        self.max_files = max(max_files, 0)
        self.allowed_bytes = self.max_bytes
        self.allowed_files = self.max_files
        self.last: Usage | None = None
        self.breach: Usage | None = None
        self._kick = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.max_bytes or self.max_files)

    # -- what is allowed ---------------------------------------------------------------------
    def _grace(self) -> tuple[int, int]:
        return max(self.max_bytes // 50, 1024**2), max(self.max_files // 100, 100)

    def exceeded(self, u: Usage) -> bool:
        return (
            u.too_deep
            or (self.max_bytes > 0 and u.bytes > self.allowed_bytes)
            or (self.max_files > 0 and u.files > self.allowed_files)
        )

    def over_limit(self, u: Usage | None = None) -> bool:
        """Over the limits themselves (maybe still within the allowance after a breach)."""
        u = u or self.last
        if u is None:
            return False
        return (self.max_bytes > 0 and u.bytes > self.max_bytes) or (
            self.max_files > 0 and u.files > self.max_files
        )

    def _ratchet(self, u: Usage) -> None:
        """As files go, the allowance comes back down to the limits (never below them)."""
        if not u.complete:
            return
        gb, gf = self._grace()
        self.allowed_bytes = max(self.max_bytes, min(self.allowed_bytes, u.bytes + gb))
        self.allowed_files = max(self.max_files, min(self.allowed_files, u.files + gf))

    def settle(self, u: Usage) -> None:
        """The breach was dealt with (the writer stopped): what is there now stays allowed, with a
        little room, so code can still run and delete files; growing further is a new breach."""
        gb, gf = self._grace()
        self.allowed_bytes = max(self.max_bytes, u.bytes + gb)
        self.allowed_files = max(self.max_files, u.files + gf)
        self.breach = None

    def limit_text(self) -> str:
        parts = []
        if self.max_bytes:
            parts.append(f"{self.max_bytes / 1024**2:,.0f} MB")
        if self.max_files:
            parts.append(f"{self.max_files:,} files")
        return " and ".join(parts)

    # -- scanning ----------------------------------------------------------------------------
    async def measure(self, *, whole: bool = False) -> Usage:
        """One scan, in a thread (never on the event loop), stopped a little past the allowance
        (``whole``: only by its time limit, to learn what to allow after a breach)."""
        gb, gf = self._grace()
        stop_b = self.allowed_bytes + gb if self.max_bytes and not whole else 0
        stop_f = self.allowed_files + gf if self.max_files and not whole else 0
        dirs = [str(d) for d in self.dirs()]
        u = await asyncio.to_thread(scan, dirs, stop_bytes=stop_b, stop_files=stop_f)
        self.last = u
        if u.timed_out:
            log.warning("workspace quota scan cut short after %.1f s: %s", u.seconds, u.describe())
        self._ratchet(u)
        return u

    def kick(self) -> None:
        """Scan again now (e.g. when a call starts)."""
        self._kick.set()

    async def _pause(self, seconds: float, free_at_scan: int | None, root: Path | None) -> None:
        """Sleep ``seconds``, or less if kicked or if the disk's free space fell by more than
        half the room left under the allowance (something is writing fast; the scans then take
        at most a third of the time)."""
        start = time.monotonic()
        end = start + seconds
        soonest = start + 2 * (self.last.seconds if self.last else 0.0)
        room = None
        if self.max_bytes and self.last is not None:
            room = max(self.allowed_bytes - self.last.bytes, 0) // 2
        while (left := end - time.monotonic()) > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), min(left, TICK))
            if self._kick.is_set():
                self._kick.clear()
                return
            if room is not None and free_at_scan is not None and root is not None:
                free = _free_bytes(root)
                if free is not None and free_at_scan - free > room and time.monotonic() >= soonest:
                    return

    async def run(self, on_breach: Callable[[Usage], Awaitable[None]]) -> None:
        while True:
            dirs = list(self.dirs())
            root = dirs[0] if dirs else None
            free = _free_bytes(root) if root is not None else None
            try:
                u = await self.measure()
            except Exception:  # a scan must never end the guard
                log.exception("workspace quota scan failed")
                u = None
            if u is not None and self.exceeded(u):
                self.breach = u
                try:
                    await on_breach(u)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("enforcing the workspace quota failed")
            wait = max(MIN_INTERVAL, INTERVAL_FACTOR * (u.seconds if u else SCAN_TIME))
            await self._pause(wait, free, root)
