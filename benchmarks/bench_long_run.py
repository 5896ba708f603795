"""A 300-tool-call run with ~10% of model requests failing: it finishes, shows every retry, and
keeps per-step overhead flat and memory bounded.

Run: ``.venv/bin/python benchmarks/bench_long_run.py [--tool-calls 300] [--no-sandbox]``
(~1-2 minutes on 2 cores).

Setup. The fake OpenAI-compatible server (``tests/fixtures/fake_server.py``) runs in a *separate
process* and answers each request with the realistic tool-call step of
``bench_step_overhead.py`` (~300 tokens of reasoning in ~190 SSE events, ~200 characters of code),
until the conversation holds ``--tool-calls`` tool results; then it answers in text and the run
ends (``completed``). A seeded ``FaultPlan`` makes ~10% of requests fail (never more than 2 in a
row, so the provider's 4 attempts always suffice), in turn: HTTP 429 with ``Retry-After: 0``,
HTTP 500, a stream that ends cleanly mid-way (no finish_reason, no ``[DONE]``), a socket closed
mid-body. The engine is the real one: ``Agent`` + ``OpenAICompatProvider`` (the real ``openai``
client over HTTP) with its retry backoff shrunk to 10-50 ms, and by default the real ``python``
tool over a ``SandboxKernel`` at the process level running the model's code (``--no-sandbox``:
the trivial in-process tool of ``bench_step_overhead.py``). The code is that benchmark's, cut at
its last whole line (~180 characters, two prints), so every call runs and succeeds.

Printed: whether the run finished (stop reason, steps, tool calls), each ``retry`` event (and
checks there is exactly one per injected failure), the harness's CPU per step at the start and
the end (measured as ``bench_step_overhead.py`` does: client-process CPU between consecutive
``step.start`` events, median of 10 steps), and the engine process's peak RSS after 50, 150 and
300 tool calls.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_step_overhead import (  # noqa: E402
    CODE,
    REASONING,
    TrivialTool,
    per_step,
    window,
)
from k2lab.agent.decisions import AutoApprove  # noqa: E402
from k2lab.agent.loop import Agent, Budgets  # noqa: E402
from k2lab.events import Retry, RunEnd  # noqa: E402
from k2lab.providers.openai_compat import OpenAICompatProvider  # noqa: E402
from k2lab.tools.registry import ToolRegistry  # noqa: E402
from tests.fixtures.fake_server import Call, FakeModel, Turn  # noqa: E402

ANSWER = "All the checks ran; the mean is 6.62."
#: bench_step_overhead's ~200 characters of code (whole lines: the sandbox runs it)
RUN_CODE = CODE
FAULT_KINDS = ("429", "500", "cut", "drop")
#: what the provider's retry reason says for each kind of fault
RETRY_REASON = {
    "429": "HTTP 429",
    "500": "HTTP 500",
    "cut": "the stream was cut",
    "drop": "the stream broke",
}


class FaultPlan:
    """The fake server's responder: realistic tool-call steps until the conversation holds
    ``tool_calls`` tool results, then an answer; ~``rate`` of requests fail (seeded; at most
    ``max_streak`` in a row), cycling through ``FAULT_KINDS``. ``faults`` lists
    ``(request index, kind)`` of every failure served."""

    def __init__(
        self,
        tool_calls: int,
        *,
        rate: float = 0.1,
        seed: int = 4,
        max_streak: int = 2,
        fake: FakeModel | None = None,
    ) -> None:
        self.tool_calls = tool_calls
        self.rate = rate
        self.max_streak = max_streak
        self.rng = random.Random(seed)
        self.faults: list[tuple[int, str]] = []
        self._streak = 0
        #: when given, its recorded request bodies are dropped as they arrive (a long run would
        #: keep ~100 MB of them in the server process)
        self.fake = fake

    def __call__(self, body: dict[str, Any], index: int) -> Turn:
        if self.fake is not None:  # called under the server's lock, after it recorded the body
            self.fake.requests.clear()
            self.fake.raw.clear()
            self.fake.headers.clear()
        if self._streak < self.max_streak and self.rng.random() < self.rate:
            self._streak += 1
            kind = FAULT_KINDS[len(self.faults) % len(FAULT_KINDS)]
            self.faults.append((index, kind))
            if kind == "429":
                return Turn(status=429, error="Rate limit reached, retry shortly", retry_after=0)
            if kind == "500":
                return Turn(status=500, error="internal server error")
            # mid-way through the ~190 events of a step (reasoning, then the call's arguments)
            at = self.rng.randint(5, 170)
            return self._step(cut_after=at) if kind == "cut" else self._step(drop_after=at)
        self._streak = 0
        done = sum(1 for m in body.get("messages", ()) if m.get("role") == "tool")
        if done >= self.tool_calls:
            return Turn(reasoning="Every check is done.", content=ANSWER)
        return self._step(prompt_tokens=1000 + 600 * done)

    @staticmethod
    def _step(**options: Any) -> Turn:
        # usage as in bench_step_overhead (so the server does not re-measure the whole history)
        options.setdefault("prompt_tokens", 1000)
        return Turn(
            reasoning=REASONING,
            tool_calls=[Call("python", {"code": RUN_CODE})],
            chunk=8,
            completion_tokens=350,
            **options,
        )


# The fake server process; on stdin's end it prints what it served and exits.
SERVER = """
import json, sys
sys.path.insert(0, {root!r})
from benchmarks.bench_long_run import FaultPlan
from tests.fixtures.fake_server import FakeModel
fake = FakeModel()
plan = FaultPlan({tool_calls}, rate={rate}, seed={seed}, fake=fake)
fake.respond_with(plan)
print(fake.base_url, flush=True)
sys.stdin.read()
print(json.dumps({{"requests": len(fake.server_time), "faults": plan.faults}}), flush=True)
"""


def start_server(tool_calls: int, rate: float, seed: int) -> tuple[subprocess.Popen[str], str]:
    code = SERVER.format(root=str(ROOT), tool_calls=tool_calls, rate=rate, seed=seed)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def stop_server(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=30)  # closes its stdin: it prints what it served
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def run_long(
    base_url: str, tool_calls: int, tool: Any, checkpoints: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Run the engine to the end; per-step CPU/wall (ms), retries, notices, RSS at checkpoints."""
    provider = OpenAICompatProvider(base_url=base_url, api_key="bench", model="kimi-k2-thinking")
    provider.retry_base, provider.retry_cap = 0.01, 0.05
    agent = Agent(
        provider,
        ToolRegistry([tool]),
        AutoApprove(),
        budgets=Budgets(max_steps=tool_calls + 10),
        system_prompt="You are a benchmark.",
    )
    marks: list[tuple[float, float]] = []
    tool_time: list[float] = []
    retries: list[tuple[int, Retry]] = []
    notices: list[str] = []
    errors: list[str] = []
    failed_tools = 0
    rss: dict[int, float] = {0: peak_rss_mb()}
    heap: dict[int, tuple[float, float]] = {}  # with --trace-memory: live and peak Python heap
    done_calls = 0
    step = 0
    end: RunEnd | None = None
    async for ev in agent.run("Run the analysis, step by step."):
        if ev.type == "step.start":
            marks.append((time.process_time(), time.perf_counter()))
            tool_time.append(0.0)
            step = ev.step
        elif ev.type == "tool.result":
            tool_time[-1] += ev.duration
            failed_tools += not ev.ok
            done_calls += 1
            if done_calls in checkpoints:
                rss[done_calls] = peak_rss_mb()
                if tracemalloc.is_tracing():
                    gc.collect()  # live = reachable: what the run holds on to
                    live, peak = tracemalloc.get_traced_memory()
                    heap[done_calls] = (live / 2**20, peak / 2**20)
        elif isinstance(ev, Retry):
            retries.append((step, ev))
        elif ev.type == "notice":
            notices.append(ev.message)
        elif ev.type == "error":
            errors.append(ev.message)
        elif isinstance(ev, RunEnd):
            marks.append((time.process_time(), time.perf_counter()))
            end = ev
    await provider.aclose()
    cpu, wall = per_step(marks, tool_time)
    return {
        "end": end,
        "cpu": cpu,
        "wall": wall,
        "retries": retries,
        "notices": notices,
        "errors": errors,
        "failed_tools": failed_tools,
        "rss": rss,
        "heap": heap,
    }


async def run_with_tool(base_url: str, tool_calls: int, sandbox: bool) -> dict[str, Any]:
    checkpoints = tuple(n for n in (50, 150, 300) if n <= tool_calls) or (tool_calls,)
    if not sandbox:
        return await run_long(base_url, tool_calls, TrivialTool(), checkpoints)
    from k2lab.sandbox.kernel import SandboxKernel
    from k2lab.tools.python import PythonTool

    kernel = SandboxKernel(isolation="process")
    await kernel.start()
    try:
        return await run_long(base_url, tool_calls, PythonTool(kernel), checkpoints)
    finally:
        await kernel.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool-calls", type=int, default=300)
    ap.add_argument("--fault-rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--no-sandbox", action="store_true")
    ap.add_argument(
        "--trace-memory",
        action="store_true",
        help="also print the live (after gc) and peak Python heap (tracemalloc; slows every step)",
    )
    args = ap.parse_args()
    if args.trace_memory:
        tracemalloc.start()
    n = args.tool_calls
    proc, base_url = start_server(n, args.fault_rate, args.seed)
    t0 = time.perf_counter()
    try:
        r = asyncio.run(run_with_tool(base_url, n, not args.no_sandbox))
    finally:
        served = stop_server(proc)
    total = time.perf_counter() - t0

    end: RunEnd | None = r["end"]
    faults = [(int(i), str(k)) for i, k in served["faults"]]
    tool = "trivial in-process tool" if args.no_sandbox else "python tool, process-level sandbox"
    print(f"\nLong run: {n} tool calls ({tool}), {args.fault_rate:.0%} of requests set to fail\n")
    assert end is not None, "no run.end"
    print(
        f"run.end: stop_reason={end.stop_reason}, steps={end.steps}, tool_calls={end.tool_calls}, "
        f"answer={end.answer[:60]!r}, {end.elapsed:.1f} s"
    )
    by_kind = {k: sum(1 for _, x in faults if x == k) for k in FAULT_KINDS}
    kinds = ", ".join(f"{v} x {k}" for k, v in by_kind.items())
    share = len(faults) / max(1, served["requests"])
    print(
        f"requests served: {served['requests']}, "
        f"failed on purpose: {len(faults)} ({share:.1%}: {kinds})"
    )

    print(f"\nretry events: {len(r['retries'])}")
    for (step, ev), (index, kind) in zip(r["retries"], faults, strict=False):
        mark = "" if ev.reason.startswith(RETRY_REASON[kind]) else "   <-- reason does not match"
        print(
            f"  step {step:3d}  attempt {ev.attempt}/{ev.max_attempts}  delay {ev.delay:.3f} s  "
            f"[request {index + 1}, {kind}] {ev.reason[:70]}{mark}"
        )
    matched = len(r["retries"]) == len(faults) and all(
        ev.reason.startswith(RETRY_REASON[kind])
        for (_, ev), (_, kind) in zip(r["retries"], faults, strict=True)
    )
    restarts = sum(1 for m in r["notices"] if "partial step is discarded" in m)
    print(f"  one retry event per injected failure, reasons matching: {'yes' if matched else 'NO'}")
    print(f"  'partial step discarded' notices (streams cut after output): {restarts}")
    if r["errors"]:
        print(f"  error events: {r['errors']}")
    if r["failed_tools"]:
        print(f"  failed tool calls: {r['failed_tools']}")

    cpu, wall = r["cpu"][:n], r["wall"][:n]  # the n tool-call steps (the answer step is last)
    a, b = window(cpu, True), window(cpu, False)
    wa, wb = window(wall, True), window(wall, False)
    print("\nharness CPU per step (ms, median of 10 steps; wall without the tool in brackets)")
    print(f"  steps 1-10: {a:6.2f} [{wa:6.2f}]   steps {n - 9}-{n}: {b:6.2f} [{wb:6.2f}]")
    print(f"  growth: {b / a:.2f}x")
    span = max(10, n // 10)  # the whole run, as medians of consecutive windows (less noisy)
    profile = " ".join(
        f"{statistics.median(cpu[i : i + span]):.1f}" for i in range(0, n - span + 1, span)
    )
    print(f"  whole run, median CPU per {span} steps: {profile}")

    rss = r["rss"]
    base = rss.pop(0)
    points = "   ".join(f"after {k}: {v:.1f} MB" for k, v in sorted(rss.items()))
    print(f"\nengine process peak RSS: at start {base:.1f} MB   {points}")
    ks = sorted(rss)
    if len(ks) >= 2:
        print(f"  growth from {ks[-2]} to {ks[-1]} tool calls: {rss[ks[-1]] - rss[ks[-2]]:+.1f} MB")

    for k, (live, peak) in sorted(r["heap"].items()):
        print(
            f"  Python heap after {k}: {live:.1f} MB live, {peak:.1f} MB peak so far (tracemalloc)"
        )

    finished = end.stop_reason == "completed" and end.tool_calls == n
    flat = b <= 1.5 * a
    ok = finished and matched and flat and not r["failed_tools"] and not r["errors"]
    print(
        f"\nfinished: {'yes' if finished else 'NO'};  every failure a retry: "
        f"{'yes' if matched else 'NO'};  overhead flat (<= 1.5x): {'yes' if flat else 'NO'}"
        f"  => {'MET' if ok else 'NOT MET'}"
    )
    print(f"total benchmark time: {total:.0f} s")


if __name__ == "__main__":
    main()
