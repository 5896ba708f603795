"""A pids cgroup per sandbox kernel, where this process may create one (root, or a delegated tree).

RLIMIT_NPROC is not enforced for root, and a fork storm can outlive its kernel when children
start their own sessions. A cgroup caps the number of tasks for every user and lets the parent
kill every process the kernel ever started. Where cgroups are not writable these functions do
nothing and the level's note says what is left (RLIMIT_NPROC, process-group kill).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


def _has_pids(root: Path) -> bool:
    # v1 has its own pids hierarchy; v2 lists "pids" among the controllers children get
    if root.name == "pids":
        return (root / "tasks").exists()
    try:
        return "pids" in (root / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False


def _base() -> Path | None:
    for root in _ROOTS:
        if _has_pids(root) and os.access(root, os.W_OK):
            return root
    return None


def cgroup_path(name: str) -> Path | None:
    base = _base()
    return None if base is None or not name else base / name


def prune(prefix: str = "k2lab-", min_age: float = 120.0) -> None:
    """Remove empty sandbox cgroups left by engines that died (rmdir fails on busy ones)."""
    base = _base()
    if base is None:
        return
    now = time.time()
    try:
        entries = [p for p in base.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for p in entries:
        try:
            if now - p.stat().st_mtime > min_age:
                p.rmdir()
        except OSError:
            pass


def join(name: str, max_pids: int) -> bool:
    """Create cgroup ``name`` with ``pids.max`` and move this process into it. Best effort."""
    path = cgroup_path(name)
    if path is None:
        return False
    prune()
    try:
        path.mkdir(exist_ok=True)
        if max_pids > 0:
            (path / "pids.max").write_text(str(max_pids))
        (path / "cgroup.procs").write_text(str(os.getpid()))
        return True
    except OSError:
        return False


def kill_all(name: str, *, remove: bool = False) -> int:
    """SIGKILL every process in cgroup ``name`` (repeat until empty); optionally remove it."""
    path = cgroup_path(name)
    if path is None or not path.exists():
        return 0
    killed = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            break
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.02)
    if remove:
        try:
            path.rmdir()
        except OSError:
            pass
    return killed
