"""Sandbox on a Jupyter gateway against the local sandbox: per-call round trip and start time.

Starts a real Enterprise Gateway 3.3.0 (.venv-gateway/, scripts/install.d/40-gateway.sh) on
127.0.0.1 with its local process proxy and the k2lab-sandbox kernelspec (tests/gateway/conftest.py)
and measures:

- round trip: ``print(1)`` through ``GatewaySandbox.execute`` (REST + WebSocket through the
  gateway to the kernel's ZMQ) against ``SandboxKernel.execute`` (local ZMQ), process isolation;
- start: ``GatewaySandbox.start()`` (POST /api/kernels until the kernel answers kernel_info on
  the WebSocket) against ``SandboxKernel.start()``; cold, a new kernel each time.

Run: ``.venv/bin/python benchmarks/bench_gateway.py [--n 100] [--starts 5]``; prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k2lab.sandbox.gateway import GatewaySandbox  # noqa: E402
from k2lab.sandbox.kernel import SandboxKernel  # noqa: E402
from tests.gateway.conftest import run_gateway  # noqa: E402


async def round_trips(sb: Any, n: int) -> list[float]:
    await sb.execute("print(0)", timeout=30)  # warm
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await sb.execute("print(1)", timeout=30)
        out.append(time.perf_counter() - t0)
        assert r.ok and "1" in r.text, r.text
    return out


async def starts(make: Any, k: int) -> list[float]:
    out = []
    for _ in range(k):
        sb = make()
        t0 = time.perf_counter()
        await sb.start()
        out.append(time.perf_counter() - t0)
        await sb.shutdown()
    return out


def row(name: str, xs: list[float]) -> str:
    q = sorted(xs)
    p90 = q[min(len(q) - 1, int(len(q) * 0.9))]
    return f"| {name} | {statistics.median(q) * 1000:.1f} | {p90 * 1000:.1f} | {len(q)} |"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--starts", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, run_gateway(Path(d)) as (url, token):
        remote = GatewaySandbox(url, token=token)
        local = SandboxKernel(isolation="process")
        await remote.start()
        await local.start()
        try:
            rt_remote = await round_trips(remote, a.n)
            rt_local = await round_trips(local, a.n)
        finally:
            await remote.shutdown()
            await local.shutdown()
        st_remote = await starts(lambda: GatewaySandbox(url, token=token), a.starts)
        st_local = await starts(lambda: SandboxKernel(isolation="process"), a.starts)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print("| measure | median ms | p90 ms | n |")
    print("|---|---|---|---|")
    print(row("round trip print(1), gateway (REST+WebSocket)", rt_remote))
    print(row("round trip print(1), local sandbox (ZMQ)", rt_local))
    print(row("start, gateway kernel (EG local proxy)", st_remote))
    print(row("start, local sandbox kernel (process)", st_local))


if __name__ == "__main__":
    asyncio.run(main())
