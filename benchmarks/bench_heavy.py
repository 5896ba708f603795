"""Heavy mode: N lanes in parallel vs one lane vs N sequential runs (issue 12).

Setup: the fake OpenAI-compatible server (tests/fixtures/fake_server.py, in a thread of this
process) answers every request after ``--latency`` seconds (default 1 s); each lane makes two
requests (a python call in its own real sandbox kernel, then the answer); the aggregation one.
Lanes are built by ``k2lab.runtime.lane_factory`` (what ``k2lab run --heavy`` uses), so sandbox
starts overlap the first model request (each launched just after its lane's first request
went out). Prints:

- lanes' wall time for N lanes vs one lane (target <= 1.3x) and vs N sequential one-lane runs;
- peak RSS of the engine process plus every kernel (sampled every 50 ms, in one more N-lane run
  that is not timed);
- sandbox start seconds per lane (median, max) while N start at once;
- when the N lanes' first requests had all reached the server.

Each figure is the median (min-max) of ``--repeat`` runs; every sandbox starts cold (no spare).

    .venv/bin/python benchmarks/bench_heavy.py [--n 8] [--latency 1.0] [--isolation process]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k2lab.agent.decisions import AutoApprove  # noqa: E402
from k2lab.agent.heavy import HeavyRun  # noqa: E402
from k2lab.config import Settings  # noqa: E402
from k2lab.providers.openai_compat import OpenAICompatProvider  # noqa: E402
from k2lab.runtime import lane_factory  # noqa: E402
from tests.fixtures.fake_server import Call, FakeModel, Turn  # noqa: E402


def responder(latency: float) -> Any:
    def fn(body: dict[str, Any], index: int) -> Turn:
        msgs = body.get("messages", [])
        last = str(msgs[-1].get("content", "")) if msgs else ""
        if "<task>" in last:
            return Turn(content="All lanes: 42.", latency=latency)
        if msgs and msgs[-1].get("role") == "tool":
            return Turn(content="42", latency=latency)
        return Turn(
            reasoning="compute",
            tool_calls=[Call("python", {"code": "print(6*7)"})],
            latency=latency,
        )

    return fn


class RssSampler:
    def __init__(self) -> None:
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> int:
        me = psutil.Process()
        total = me.memory_info().rss
        for c in me.children(recursive=True):
            try:
                total += c.memory_info().rss
            except psutil.Error:
                pass
        return total

    async def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, self.sample())
            await asyncio.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.ensure_future(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def heavy_once(fake: FakeModel, settings: Settings, n: int) -> tuple[float, float, HeavyRun]:
    p = OpenAICompatProvider(base_url=fake.base_url, api_key="bench", model="kimi-k2-thinking")
    heavy = HeavyRun(n, lane_factory(settings, p, AutoApprove()), p)
    t0 = time.time()
    async for _ev in heavy.run("What is 6 * 7?"):
        pass
    total = time.time() - t0
    assert heavy.outcome is not None and heavy.outcome.stop_reason == "completed", heavy.outcome
    assert heavy.lanes_ended is not None
    await p.aclose()
    return heavy.lanes_ended - t0, total, heavy


def spread(xs: list[float]) -> str:
    """median (min-max)"""
    return f"{statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f})"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--isolation", default="process")
    ap.add_argument("--repeat", type=int, default=3, help="runs of one lane and of N lanes")
    a = ap.parse_args()
    fake = FakeModel()
    fake.respond_with(responder(a.latency))
    settings = Settings(isolation=a.isolation, approve="auto")
    load = os.getloadavg()[0]
    await heavy_once(fake, settings, 1)  # warm imports
    one = [(await heavy_once(fake, settings, 1))[:2] for _ in range(a.repeat)]
    many: list[tuple[float, float]] = []
    starts: list[float] = []
    sent: list[float] = []  # when each lane's first request reached the server, after the start
    for _ in range(a.repeat):
        first = len(fake.spans)
        t0 = time.time()
        lanes, total, heavy = await heavy_once(fake, settings, a.n)
        many.append((lanes, total))
        starts += [ln.sandbox_seconds for ln in heavy.lanes if ln.sandbox_seconds is not None]
        sent.append(max(s for s, _ in fake.spans[first : first + a.n]) - t0)
    # peak memory in a run of its own: the sampler walks /proc every 50 ms on the engine's
    # loop (~2-3 ms a time with 8 kernels, more under bwrap), which slowed the timed runs' boots
    with RssSampler() as rss:
        base = rss.sample()
        await heavy_once(fake, settings, a.n)
    seq = 0.0
    for _ in range(a.n):
        lanes, _tot, _h = await heavy_once(fake, settings, 1)
        seq += lanes
    one_lanes = statistics.median(x for x, _ in one)
    n_lanes = statistics.median(x for x, _ in many)
    print(
        f"heavy N={a.n}, latency {a.latency:g} s/response, isolation {a.isolation}, "
        f"{a.repeat} runs each, cold sandboxes (no spare), 1-min load {load:.1f} on "
        f"{os.cpu_count()} cores"
    )
    for label, runs in (("one lane:", one), ("N lanes: ", many)):
        lanes_s, totals = spread([x for x, _ in runs]), spread([y for _, y in runs])
        print(f"  {label} lanes {lanes_s} (with aggregation {totals})")
    print(f"  ratio N lanes / one lane (medians): {n_lanes / one_lanes:.2f}x (target <= 1.3x)")
    print(f"  {a.n} sequential one-lane runs: {seq:.2f} s ({seq / n_lanes:.1f}x the heavy lanes)")
    print(
        f"  peak RSS engine + kernels: {rss.peak / 2**20:.0f} MiB "
        f"(before: {base / 2**20:.0f} MiB; {(rss.peak - base) / 2**20 / a.n:.0f} MiB per lane)"
    )
    print(
        f"  sandbox start, {a.n} lanes at once ({len(starts)} starts): "
        f"median {statistics.median(starts):.2f} s, max {max(starts):.2f} s"
    )
    print(f"  the N lanes' first requests all at the server by: {spread(sent)} after the start")
    fake.close()


if __name__ == "__main__":
    asyncio.run(main())
