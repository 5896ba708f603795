"""What a workspace quota scan costs, and what it costs the event loop.

Makes a workspace of N empty files (in folders of 1,000), then times ``quota.scan`` three ways
while an asyncio ticker (``sleep(0.002)`` in a loop) records the longest gap of the event loop:

- ``on loop``: the scan called on the loop itself, as the quota check did before (issue 8 item 4);
- ``thread``: through ``QuotaGuard.measure`` (``asyncio.to_thread``), as now, the whole tree;
- ``thread, stopped``: the same with the default stop values (``Limits.workspace_files`` plus
  its grace), which is what a guard actually scans in a workspace that big: it stops once over.

Run: ``.venv/bin/python benchmarks/bench_quota_scan.py [--files 400000]``; prints a markdown
table. Figures swing with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from k2lab.sandbox.base import Limits
from k2lab.sandbox.quota import QuotaGuard, Usage, scan


def make(root: Path, n: int) -> None:
    for d in range((n + 999) // 1000):
        sub = root / f"d{d}"
        sub.mkdir()
        for i in range(min(1000, n - d * 1000)):
            os.close(os.open(sub / str(i), os.O_CREAT | os.O_WRONLY, 0o600))


async def with_ticker(fn: Callable[[], Awaitable[Usage]]) -> tuple[Usage, float, float]:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.002)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    t = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    u = await fn()
    wall = time.monotonic() - t0
    await asyncio.sleep(0.05)
    stop.set()
    await t
    return u, wall, max(gaps)


async def main(files: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="k2bench-quota-"))
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(make, root, files)
        made = time.monotonic() - t0
        limits = Limits()
        whole = QuotaGuard(lambda: [root], max_bytes=0, max_files=10**9)
        default = QuotaGuard(
            lambda: [root], max_bytes=limits.workspace_size, max_files=limits.workspace_files
        )

        async def on_loop() -> Usage:
            return scan([root], stop_files=10**9, time_limit=600)

        rows = [
            ("on loop", await with_ticker(on_loop)),
            ("thread", await with_ticker(lambda: whole.measure(whole=True))),
            ("thread, stopped", await with_ticker(default.measure)),
        ]
        print(
            f"{files:,} empty files made in {made:.1f} s; cpus: {os.cpu_count()}, "
            f"load: {os.getloadavg()[0]:.1f}\n"
        )
        print("| scan | entries counted | MB counted | scan s | longest loop gap s |")
        print("|---|---:|---:|---:|---:|")
        for name, (u, wall, gap) in rows:
            print(f"| {name} | {u.files:,} | {u.bytes / 1024**2:,.0f} | {wall:.2f} | {gap:.3f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=400_000)
    asyncio.run(main(ap.parse_args().files))
