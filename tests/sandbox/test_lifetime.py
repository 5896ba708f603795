"""A sandbox kernel never outlives the engine that started it, even one killed with SIGKILL; the
temporary directories a killed engine leaves are removed by the next engine that starts one.

The engine is a real subprocess that starts a real ``SandboxKernel``; the test kills it and
watches /proc. A zombie counts as gone: PID 1 in a container may never reap it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from k2lab.sandbox import leftovers
from tests.sandbox.conftest import skip_unavailable

ROOT = Path(__file__).resolve().parents[2]

ENGINE = """
import asyncio, sys
from pathlib import Path
from k2lab.sandbox.kernel import SandboxKernel
async def main():
    ws = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    sk = SandboxKernel(isolation=sys.argv[1], workspace=ws)
    await sk.start()
    print("READY", sk.workspace, flush=True)
    await asyncio.sleep(120)
asyncio.run(main())
"""


def _children() -> dict[int, int]:
    """pid -> parent pid of every live (non-zombie) process."""
    out = {}
    for e in os.scandir("/proc"):
        if not e.name.isdigit():
            continue
        try:
            with open(f"/proc/{e.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            out[int(e.name)] = int(fields[1])
    return out


def descendants(pid: int) -> set[int]:
    tree = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in tree.items() if p in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    live = _children()
    return {p for p in pids if p in live}


def matching(text: str) -> set[int]:
    """Live processes whose command line mentions ``text``."""
    out = set()
    for pid in _children():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.add(pid)
        except OSError:
            pass
    return out


def wait_gone(pids: set[int], marker: str, within: float = 5.0) -> set[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = alive(pids) | matching(marker)
        if not left:
            return set()
        time.sleep(0.05)
    return alive(pids) | matching(marker)


def engine(level: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", ENGINE, level, *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.parametrize("level", ["bwrap", "process"])
def test_sigkilled_engine_takes_its_kernel_along(level: str) -> None:
    skip_unavailable(level)
    p = engine(level)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith("READY"), line
        ws = Path(line.split(" ", 1)[1].strip())
        kernel = descendants(p.pid)
        assert kernel, "the kernel process was not found"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        left = wait_gone(kernel, str(ws))
        assert not left, f"kernel processes outlived the engine: {left}"
        # what SIGKILL leaves: the temporary workspace, marked with its (dead) owner ...
        assert ws.is_dir() and leftovers.owner_alive(ws) is False
        # ... which the next engine's sweep removes (min_age=0: it is only seconds old)
        assert str(ws) in leftovers.sweep(str(ws.parent), min_age=0)
        assert not ws.exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


@pytest.mark.parametrize("level", ["bwrap", "process"])
def test_engine_killed_while_the_kernel_starts(level: str, tmp_path: Path) -> None:
    """The engine dies before the launcher could tie itself to it: the launcher must notice that
    its parent is no longer the engine and not start a kernel (this orphaned kernels before)."""
    skip_unavailable(level)
    ws = tmp_path / "ws"
    p = engine(level, str(ws))
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            # the launcher, not the bwrap probe that may run before it
            seen = descendants(p.pid) & matching("k2lab.sandbox.launch")
            time.sleep(0.002)
        assert seen, "the engine never started a kernel"
        os.kill(p.pid, signal.SIGKILL)  # the launcher has just been forked
        p.wait(10)
        # long enough for an orphaned launcher to have execed into a kernel by now
        time.sleep(1.5)
        left = wait_gone(seen, str(ws))
        assert not left, f"kernel processes outlived the engine: {left}"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


async def test_shutdown_removes_its_temporary_dirs() -> None:
    from k2lab.sandbox.kernel import SandboxKernel

    sk = SandboxKernel(isolation="process")
    await sk.start()
    ws = sk.workspace
    assert leftovers.owner_alive(ws) is True  # marked, and we are alive: a sweep keeps it
    assert str(ws) not in leftovers.sweep(str(ws.parent), min_age=0)
    await sk.shutdown()
    assert not ws.exists()
