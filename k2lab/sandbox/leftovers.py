"""Temporary sandbox directories whose engine died without shutting its sandbox down.

``SandboxKernel.shutdown()`` removes the temporary workspace (``k2ws-*``) and the private kernel
directory (``k2c-*``: connection file, log, ipc sockets) it made. An engine killed with SIGKILL
cannot: its kernel dies with it (see ``k2lab.sandbox.launch``) but the directories stay. Each
such directory carries an owner mark (the engine's pid and that process's start time, so a reused
pid is not taken for the owner); the next engine that starts a sandbox removes the marked
directories whose owner is gone.
Directories without a mark (a caller's own workspace, older versions) are never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

OWNER_FILE = ".k2lab/owner"
PREFIXES = ("k2ws-", "k2c-")
_swept = False
_lock = threading.Lock()


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is dead; nobody may have reaped it yet
        return None
    return fields[19]  # field 22 of man proc; fields[0] is field 3


def mark(directory: Path) -> None:
    """Record this process as the owner of ``directory`` (a temporary dir it made)."""
    me = os.getpid()
    try:
        (directory / OWNER_FILE).parent.mkdir(parents=True, exist_ok=True)
        (directory / OWNER_FILE).write_text(f"{me} {_start_time(me) or ''}\n")
    except OSError:
        pass


def owner_alive(directory: Path) -> bool | None:
    """Whether the engine that marked ``directory`` still runs (None: no mark, not ours)."""
    try:
        pid_s, _, started = (directory / OWNER_FILE).read_text().strip().partition(" ")
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    now = _start_time(pid)
    return now is not None and (not started or now == started)


def sweep(root: str | None = None, min_age: float = 10.0) -> list[str]:
    """Remove marked sandbox directories in ``root`` (the temp dir) whose owner is gone."""
    base = Path(root or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = [p for p in base.iterdir() if p.name.startswith(PREFIXES)]
    except OSError:
        return removed
    for p in entries:
        try:
            if time.time() - p.stat().st_mtime < min_age:
                continue  # being set up right now (the mark comes a moment after mkdtemp)
        except OSError:
            continue
        if owner_alive(p) is False:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(str(p))
    return removed


def sweep_once_in_background() -> None:
    """``sweep()`` once per process, off the event loop (a dead engine's workspace may be big)."""
    global _swept
    with _lock:
        if _swept:
            return
        _swept = True
    threading.Thread(target=sweep, name="k2lab-sweep", daemon=True).start()
