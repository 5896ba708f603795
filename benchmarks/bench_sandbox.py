"""Sandbox round trip and start time, beside a bare jupyter_client floor.

Round trip: ``print(1)`` through ``PythonTool`` on each isolation level, against a bare
``jupyter_client`` execute (send, read iopub until idle) on a plain ipykernel (the floor; the same
ipc transport, and tcp as jupyter's default).

Start (cold: a new kernel process each time; there is no pre-started spare):
``SandboxKernel.start()`` until the kernel has answered a request and its output channel is
connected, against ``AsyncKernelManager.start_kernel`` + ``wait_for_ready`` on a plain ipykernel
(note: ``wait_for_ready`` itself waits for 0.2 s of iopub silence after the kernel's answer, which
the sandbox's own handshake does not). Start figures swing with the machine's load, which the
output states: compare medians taken at similar load only.

Run: ``.venv/bin/python benchmarks/bench_sandbox.py [--n 200] [--starts 9]``; prints a markdown
table. ``--n 0`` measures start times only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from k2lab.sandbox.isolation import bwrap_status
from k2lab.sandbox.kernel import SandboxKernel
from k2lab.tools.python import PythonParams, PythonTool


async def bare_execute(kc: Any, code: str) -> None:
    msg_id = kc.execute(code)
    while True:
        msg = await kc.get_iopub_msg(timeout=10)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            break
    await kc.get_shell_msg(timeout=10)  # the reply, as a client that checks status would


async def timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    for _ in range(max(n // 10, 5)):  # warm up
        await fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t0)
    return out


async def plain_kernel(transport: str) -> tuple[AsyncKernelManager, Any, float]:
    d = tempfile.mkdtemp(prefix="k2b-")
    km = AsyncKernelManager(
        kernel_name="python3", transport=transport, connection_file=os.path.join(d, "k.json")
    )
    t0 = time.perf_counter()
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    await kc.wait_for_ready(timeout=60)
    return km, kc, time.perf_counter() - t0


def ms(xs: list[float]) -> str:
    if not xs:
        return "-"
    xs = sorted(xs)
    return f"{statistics.median(xs) * 1000:.1f} ms (p90 {xs[int(len(xs) * 0.9)] * 1000:.1f})"


def secs(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"{statistics.median(xs):.2f} s ({xs[0]:.2f}-{xs[-1]:.2f})"


async def main(n: int, starts: int) -> None:
    load0 = os.getloadavg()[0]
    rows: list[tuple[str, str, str, str]] = []
    floor = 0.0
    for transport in ("ipc", "tcp"):
        start_times = []
        for i in range(starts):
            km, kc, dt = await plain_kernel(transport)
            start_times.append(dt)
            if i < starts - 1:
                kc.stop_channels()
                await km.shutdown_kernel(now=True)
        times = await timed(lambda kc=kc: bare_execute(kc, "print(1)"), n) if n else []
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        med = statistics.median(times) if times else 0.0
        if transport == "ipc":
            floor = med or 1.0
        rows.append(
            (
                f"bare jupyter_client, plain ipykernel ({transport})",
                ms(times),
                f"{med / floor:.2f}x" if times else "-",
                secs(start_times),
            )
        )
    levels = ["bwrap", "process"] if bwrap_status()[0] else ["process"]
    for level in levels:
        start_times = []
        for i in range(starts):
            sk = SandboxKernel(isolation=level)
            t0 = time.perf_counter()
            await sk.start()
            start_times.append(time.perf_counter() - t0)
            if i < starts - 1:
                await sk.shutdown()
        tool = PythonTool(sk, timeout=30)
        params = PythonParams(code="print(1)")

        async def call(tool: PythonTool = tool, params: PythonParams = params) -> None:
            out = await tool.call(params)
            assert out.ok and out.output.strip() == "1", out.output

        times = await timed(call, n) if n else []
        await sk.shutdown()
        rows.append(
            (
                f"PythonTool, sandbox level {level}",
                ms(times),
                f"{statistics.median(times) / floor:.2f}x" if times else "-",
                secs(start_times),
            )
        )
    print(
        f"`print(1)` round trip, n={n} after warm-up; cold start: median (min-max) of {starts}; "
        f"{os.cpu_count()} cores, 1-min load {load0:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| path | round trip, median | vs floor (ipc) | cold start |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--starts", type=int, default=9)
    a = ap.parse_args()
    asyncio.run(main(a.n, a.starts))
