"""A pids cgroup per sandbox kernel, where this process may create one (root, or a delegated tree).

RLIMIT_NPROC is not enforced for root, and a fork storm can outlive its kernel when children
start their own sessions. A cgroup caps the number of tasks for every user and lets the parent
kill every process the kernel ever started. Where cgroups are not writable these functions do
nothing and the level's note says what is left (RLIMIT_NPROC, process-group kill).
"""

from __future__ import annotations

import os
import time

# os.path rather than pathlib here: the launcher joins the cgroup on every kernel start, and
# pathlib's import alone costs ~10 ms of it
_ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")


def _has_pids(root: str) -> bool:
    # v1 has its own pids hierarchy; v2 lists "pids" among the controllers children get
    if os.path.basename(root) == "pids":
        return os.path.exists(os.path.join(root, "tasks"))
    try:
        with open(os.path.join(root, "cgroup.subtree_control")) as f:
            return "pids" in f.read().split()
    except OSError:
        return False


def _base() -> str | None:
    for root in _ROOTS:
        if _has_pids(root) and os.access(root, os.W_OK):
            return root
    return None


def cgroup_path(name: str) -> str | None:
    base = _base()
    return None if base is None or not name else os.path.join(base, name)


def read(name: str, what: str) -> str:
    """The content of file ``what`` (e.g. "pids.current") of cgroup ``name``; "" if none."""
    path = cgroup_path(name)
    if path is None:
        return ""
    try:
        with open(os.path.join(path, what)) as f:
            return f.read()
    except OSError:
        return ""


def prune(prefix: str = "k2lab-", min_age: float = 120.0) -> None:
    """Remove empty sandbox cgroups left by engines that died (rmdir fails on busy ones)."""
    base = _base()
    if base is None:
        return
    now = time.time()
    try:
        entries = [e.path for e in os.scandir(base) if e.name.startswith(prefix)]
    except OSError:
        return
    for p in entries:
        try:
            if now - os.stat(p).st_mtime > min_age:
                os.rmdir(p)
        except OSError:
            pass


def join(name: str, max_pids: int) -> bool:
    """Create cgroup ``name`` with ``pids.max`` and move this process into it. Best effort."""
    base = _base()
    if base is None or not name:
        return False
    path = os.path.join(base, name)
    prune()
    try:
        os.makedirs(path, exist_ok=True)
        if max_pids > 0:
            with open(os.path.join(path, "pids.max"), "w") as f:
                f.write(str(max_pids))
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
        return True
    except OSError:
        return False


def kill_all(name: str, *, remove: bool = False) -> int:
    """SIGKILL every process in cgroup ``name`` (repeat until empty); optionally remove it."""
    import signal

    path = cgroup_path(name)
    if path is None or not os.path.exists(path):
        return 0
    killed = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
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
            os.rmdir(path)
        except OSError:
            pass
    return killed
