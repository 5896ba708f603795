"""Every fault the issue lists, on every isolation level: a clear error result within the timeout
plus a small margin, a restart (and the model told so) where needed, and a working next call."""

from __future__ import annotations

import resource
import time

import pytest

from k2lab.sandbox.kernel import SandboxKernel
from tests.sandbox.conftest import MARGIN

pytestmark = pytest.mark.asyncio(loop_scope="module")

TIMEOUT = 2.0


async def run_fault(sk: SandboxKernel, code: str, timeout: float = TIMEOUT):  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    r = await sk.execute(code, timeout=timeout)
    elapsed = time.monotonic() - t0
    assert elapsed < timeout + MARGIN, f"took {elapsed:.1f}s for a {timeout}s timeout: {r.text}"
    assert not r.ok
    nxt = await sk.execute("print('next call works')", timeout=10)
    assert nxt.ok and "next call works" in nxt.text, nxt.text
    return r


async def test_infinite_loop_is_interrupted_and_state_kept(shared: SandboxKernel) -> None:
    await shared.execute("kept = 'yes'", timeout=10)
    r = await run_fault(shared, "while True:\n    pass")
    assert r.timed_out and not r.restarted
    assert f"Timed out after {TIMEOUT:g} s" in r.text and "variables are kept" in r.text
    assert "KeyboardInterrupt" in r.text
    assert "yes" in (await shared.execute("kept", timeout=10)).text


async def test_uninterruptible_loop_restarts(shared: SandboxKernel) -> None:
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    r = await run_fault(shared, code)
    assert r.timed_out and r.restarted
    assert "kernel was restarted; all variables were lost" in r.text


async def test_memory_bomb(shared: SandboxKernel) -> None:
    r = await run_fault(shared, "hog = []\nwhile True:\n    hog.append(bytearray(64 * 2**20))")
    assert "MemoryError" in r.text
    await shared.execute("del hog", timeout=10)


async def test_os_exit(shared: SandboxKernel) -> None:
    await shared.execute("kept = 1", timeout=10)
    r = await run_fault(shared, "import os\nos._exit(7)")
    assert r.restarted and "The kernel died (exit code 7)" in r.text
    assert "all variables were lost" in r.text
    assert "NameError" in (await shared.execute("kept", timeout=10)).text


async def test_segfault(shared: SandboxKernel) -> None:
    r = await run_fault(shared, "import ctypes\nctypes.string_at(0)")
    assert r.restarted and "SIGSEGV" in r.text, r.text


async def test_fork_storm(shared: SandboxKernel) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    r = await run_fault(shared, code)
    assert r.timed_out and r.restarted, r.text
    assert "all variables were lost" in r.text
    # nothing of the storm is left behind
    n = shared._process_count()
    assert n <= 4, f"{n} processes left in the sandbox"


async def test_process_limit(shared: SandboxKernel) -> None:
    code = (
        "import os, time\nn = 0\nwhile True:\n    if os.fork() == 0:\n"
        "        time.sleep(20)\n        os._exit(0)\n    n += 1"
    )
    r = await run_fault(shared, code)
    assert r.restarted and "filled the sandbox's limit of 64" in r.text, r.text
    assert "Resource temporarily unavailable" in r.text


async def test_disk_filling_single_file(shared: SandboxKernel) -> None:
    code = "with open('fill.bin', 'wb') as f:\n    while True:\n        f.write(b'0' * 2**20)"
    r = await run_fault(shared, code)
    assert "File too large" in r.text, r.text
    assert (shared.workspace / "fill.bin").stat().st_size <= 64 * 1024**2
    (shared.workspace / "fill.bin").unlink()


async def test_disk_filling_many_files(shared: SandboxKernel) -> None:
    code = (
        "i = 0\nwhile True:\n    with open(f'fill{i}.bin', 'wb') as f:\n"
        "        f.write(b'0' * 16 * 2**20)\n    i += 1"
    )
    r = await run_fault(shared, code, timeout=20)
    assert "workspace grew past its 160 MB limit" in r.text, r.text
    assert not r.timed_out
    for p in shared.workspace.glob("fill*.bin"):
        p.unlink()


async def test_huge_print(shared: SandboxKernel) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    r = await shared.execute("print('x' * 100_000_000)\nprint('the end')", timeout=30)
    assert time.monotonic() - t0 < 30
    assert r.truncated and "characters omitted" in r.text and "the end" in r.text
    assert len(r.text) < shared.limits.model_chars + 200
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < 800, f"the test process grew by {grown:.0f} MB"
    full = r.display[0]["data"]["text/plain"]
    assert r.display[0]["metadata"]["k2lab"]["full_text"]
    assert shared.limits.model_chars < len(full) <= shared.limits.display_bytes + 200


async def test_many_prints(shared: SandboxKernel) -> None:
    r = await shared.execute("for i in range(100_000):\n    print(i)", timeout=30)
    assert r.ok and r.truncated
    assert r.text.startswith("0\n1\n2\n") and r.text.rstrip().endswith("99999")


async def test_cancel_interrupts(shared: SandboxKernel) -> None:
    import asyncio

    task = asyncio.ensure_future(shared.execute("import time\ntime.sleep(30)", timeout=60))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    t0 = time.monotonic()
    r = await shared.execute("print('after cancel')", timeout=10)
    assert r.ok and "after cancel" in r.text and time.monotonic() - t0 < 3


async def test_cancel_of_an_uninterruptible_call(shared: SandboxKernel) -> None:
    import asyncio

    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    task = asyncio.ensure_future(shared.execute(code, timeout=60))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    t0 = time.monotonic()
    r = await shared.execute("print('after')", timeout=10)
    assert time.monotonic() - t0 < shared.limits.interrupt_grace + MARGIN
    assert r.ok and r.restarted and "cancelled earlier call" in r.text and "after" in r.text
