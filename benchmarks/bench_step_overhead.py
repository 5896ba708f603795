"""The harness's own cost per agent step, at the start and the end of a 300-tool-call run.

Run: ``.venv/bin/python benchmarks/bench_step_overhead.py [--steps 300] [--no-sandbox]``
(~1 minute on 2 cores).

Setup. The fake OpenAI-compatible server (``tests/fixtures/fake_server.py``) runs in a *separate
process* and answers every request at once with one tool call of realistic size: ~300 tokens of
reasoning (1,200 characters, streamed in 8-character deltas, so ~190 SSE events per step), ~200
characters of code; the tool returns ~500 characters. The history therefore grows by ~2 KB per
step (~600 KB of JSON at step 300), which is what makes per-step costs grow in a naive loop.

Method. The figure is the *client process's CPU time* per step (``time.process_time`` between
consecutive ``step.start`` events), minus the tool's own time. Because the server is another
process, its work (parsing the request, producing the stream) is not counted, and because nothing
else runs in the client, that CPU time is exactly what the harness spends: building and posting the
request body, the HTTP client, SSE decoding, chunk parsing, events, the history, argument checking.
Wall time per step (which adds the server and localhost I/O) is shown beside it for context.
Each figure is the median over a window of 10 steps (steps 1-10 and the last 10).

Compared loops:

- ``k2lab``: ``Agent`` + ``OpenAICompatProvider`` (prebuilt body posted as bytes) + a trivial
  in-process tool returning the 500-character output.
- ``naive``: the common loop passing the growing ``messages`` list to
  ``client.chat.completions.create(..., stream=True)`` of the same ``openai.AsyncOpenAI`` client,
  reading ``reasoning_content`` from each chunk, same tool (the floor to beat: K2_PROTOCOL.md
  measured ~14 ms at step 10 and ~115 ms at step 300 with an older SDK).
  Its first 10 steps run from an empty history; its last 10 run on a history prefilled with 290
  steps of exactly the shape and size it appends itself (its cost depends only on that history,
  and a full naive run would take minutes at ~0.5-1 s per late step).
- ``k2lab + sandbox``: as ``k2lab`` but the tool is the real ``python`` tool over a
  ``SandboxKernel`` running ``print(1)``. The kernel runs in another process; the CPU figure
  includes jupyter_client's side of each round trip, the wall figure excludes the round trip
  (``tool.result.duration``).

Targets: k2lab's last-10 median <= 1.5x its first-10 median, and < 30 ms per step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from k2lab.agent.decisions import AutoApprove  # noqa: E402
from k2lab.agent.loop import Agent, Budgets  # noqa: E402
from k2lab.providers.openai_compat import OpenAICompatProvider  # noqa: E402
from k2lab.tools.base import ToolOutput, tool_ok  # noqa: E402
from k2lab.tools.registry import ToolRegistry  # noqa: E402

REASONING = ("I should look at the data again and check the edge cases carefully. " * 18)[:1200]
_LINES = (
    "import math\nvals = [math.sqrt(i) for i in range(100)]\nprint(sum(vals) / len(vals))\n" * 3
)
#: ~200 characters of code that runs (whole lines: the sandbox variant executes it)
CODE = _LINES[: _LINES.rfind("\n", 0, 200) + 1]
OUTPUT = ("0.123456789 " * 50)[:500]

# The fake server process: answers every request with the same realistic tool-call step.
SERVER = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from tests.fixtures.fake_server import Call, FakeModel, Turn
code = {CODE!r}
reasoning = {REASONING!r}
fake = FakeModel()
fake.respond_with(lambda body, i: Turn(
    reasoning=reasoning, tool_calls=[Call("python", {{"code": code}})], chunk=8,
    prompt_tokens=1000 + 600 * i, completion_tokens=350,
))
print(fake.base_url, flush=True)
sys.stdin.read()
"""


class CodeParams(BaseModel):
    code: str


class TrivialTool:
    name = "python"
    description = "Run Python code."
    params = CodeParams

    async def call(self, args: BaseModel) -> ToolOutput:
        return tool_ok(OUTPUT)


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def per_step(
    marks: list[tuple[float, float]], tool: list[float]
) -> tuple[list[float], list[float]]:
    """CPU ms and wall ms per step from (cpu, wall) marks at each step start (+ one at the end).

    ``tool`` is the tool's wall time per step: subtracted from wall time only. The tools here
    spend no CPU of their own in this process (the trivial one returns a constant; the sandbox
    runs in another process), so what remains of the CPU time is the harness's.
    """
    n = len(marks) - 1
    cpu = [(marks[i + 1][0] - marks[i][0]) * 1000 for i in range(n)]
    wall = [(marks[i + 1][1] - marks[i][1] - tool[i]) * 1000 for i in range(n)]
    return cpu, wall


async def run_k2lab(base_url: str, steps: int, tool: Any = None) -> dict[str, list[float]]:
    provider = OpenAICompatProvider(base_url=base_url, api_key="bench", model="kimi-k2-thinking")
    agent = Agent(
        provider,
        ToolRegistry([tool or TrivialTool()]),
        AutoApprove(),
        budgets=Budgets(max_steps=steps, context_window=10**9),
        system_prompt="You are a benchmark.",
    )
    marks: list[tuple[float, float]] = []
    tool_time: list[float] = []
    async for ev in agent.run("Run the analysis, step by step."):
        if ev.type == "step.start":
            marks.append((time.process_time(), time.perf_counter()))
            tool_time.append(0.0)
        elif ev.type == "tool.result":
            tool_time[-1] += ev.duration
        elif ev.type == "run.end":
            marks.append((time.process_time(), time.perf_counter()))
            assert ev.stop_reason == "max_steps", ev
    await provider.aclose()
    cpu, wall = per_step(marks, tool_time)
    return {"cpu": cpu, "wall": wall}


def synthetic_history(n: int) -> list[dict[str, Any]]:
    """What ``n`` steps of the naive loop append, byte for byte in shape and size."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        cid = f"functions.python:{i}"
        args = json.dumps({"code": CODE})
        fn = {"name": "python", "arguments": args}
        out.append(
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": REASONING,
                "tool_calls": [{"id": cid, "type": "function", "function": fn}],
            }
        )
        out.append({"role": "tool", "tool_call_id": cid, "content": OUTPUT})
    return out


async def run_naive(base_url: str, steps: int, first_step: int = 1) -> dict[str, list[float]]:
    """``steps`` steps of the naive loop, starting at ``first_step`` (earlier steps prefilled)."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "python",
                "description": "Run Python code.",
                "parameters": CodeParams.model_json_schema(),
            },
        }
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a benchmark."},
        {"role": "user", "content": "Run the analysis, step by step."},
        *synthetic_history(first_step - 1),
    ]
    marks: list[tuple[float, float]] = []
    tool = TrivialTool()
    for _ in range(steps):
        marks.append((time.process_time(), time.perf_counter()))
        stream = await client.chat.completions.create(
            model="kimi-k2-thinking",
            messages=messages,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            temperature=1.0,
            max_tokens=32768,
        )
        reasoning, content, calls = [], [], {}  # type: ignore[var-annotated]
        async for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            r = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
            if r:
                reasoning.append(r)
            if delta.content:
                content.append(delta.content)
            for tc in delta.tool_calls or []:
                c = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                c["id"] = c["id"] or tc.id or ""
                if tc.function and tc.function.name:
                    c["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    c["arguments"] += tc.function.arguments
        tool_calls = [calls[i] for i in sorted(calls)]
        messages.append(
            {
                "role": "assistant",
                "content": "".join(content),
                "reasoning_content": "".join(reasoning),
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in tool_calls
                ],
            }
        )
        for c in tool_calls:
            out = await tool.call(CodeParams(**json.loads(c["arguments"])))
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": out.output})
    marks.append((time.process_time(), time.perf_counter()))
    await client.close()
    cpu, wall = per_step(marks, [0.0] * steps)
    return {"cpu": cpu, "wall": wall}


async def run_sandbox(base_url: str, steps: int) -> dict[str, list[float]] | str:
    try:
        from k2lab.sandbox.kernel import SandboxKernel
        from k2lab.tools.python import PythonTool
    except ImportError as e:
        return f"skipped: the sandbox is not available ({e})"

    class PrintOne(PythonTool):
        """The real python tool, but every call runs ``print(1)`` (a trivial sandbox round trip)."""

        async def call(self, args: BaseModel) -> ToolOutput:
            return await super().call(self.params(code="print(1)"))

    sandbox = SandboxKernel()
    try:
        await sandbox.start()
    except Exception as e:
        return f"skipped: the sandbox did not start ({type(e).__name__}: {e})"
    try:
        return await run_k2lab(base_url, steps, PrintOne(sandbox))
    finally:
        await sandbox.shutdown()


def window(xs: list[float], first: bool) -> float:
    return statistics.median(xs[:10] if first else xs[-10:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--no-sandbox", action="store_true")
    args = ap.parse_args()
    proc, base_url = start_server()
    try:
        results: dict[str, dict[str, list[float]] | str] = {}
        t0 = time.perf_counter()
        results["k2lab"] = asyncio.run(run_k2lab(base_url, args.steps))
        # The naive loop's per-step cost depends only on the history it sends, and at ~1 s per
        # step near the end a full run takes minutes: measure its first 10 steps, then its last 10
        # with the 290 earlier steps prefilled (same shapes and sizes as it appends itself).
        first = asyncio.run(run_naive(base_url, 10))
        last = asyncio.run(run_naive(base_url, 10, first_step=args.steps - 9))
        results["naive loop (chat.completions.create)"] = {
            "cpu": first["cpu"] + last["cpu"],
            "wall": first["wall"] + last["wall"],
        }
        if not args.no_sandbox:
            results["k2lab + sandbox print(1)"] = asyncio.run(run_sandbox(base_url, args.steps))
        total = time.perf_counter() - t0
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)

    n = args.steps
    print(f"\nHarness CPU per step (ms, median of 10 steps), {n}-tool-call run; wall in brackets\n")
    head = f"{'loop':38} {'steps 1-10':>18} {f'steps {n - 9}-{n}':>18} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        if isinstance(r, str):
            print(f"{name:38} {r}")
            continue
        a, b = window(r["cpu"], True), window(r["cpu"], False)
        wa, wb = window(r["wall"], True), window(r["wall"], False)
        print(f"{name:38} {a:7.2f} [{wa:7.2f}] {b:8.2f} [{wb:7.2f}] {b / a:6.2f}")
    k = results["k2lab"]
    assert not isinstance(k, str)
    a, b = window(k["cpu"], True), window(k["cpu"], False)
    ok = b <= 1.5 * a and b < 30
    print(f"\ntargets (k2lab last <= 1.5x first, < 30 ms): {'MET' if ok else 'NOT MET'}")
    print(f"total benchmark time: {total:.0f} s")


if __name__ == "__main__":
    main()
