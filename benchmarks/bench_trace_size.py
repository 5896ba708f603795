"""Saved-trace size (issue 9): a 20-step run with 80,000 reasoning characters streamed in
3-character fragments, saved in a notebook the way ``%k2`` saves it (``trace_bundle``: the
coalesced event log plus the HTML and Markdown fallbacks). Prints the notebook's size over the
text the run produced; the target is <= 4x.

    .venv/bin/python benchmarks/bench_trace_size.py
"""

from __future__ import annotations

import json
import sys
from typing import Any

import nbformat

from k2lab.events import (
    ContentDelta,
    ReasoningDelta,
    RunEnd,
    RunStart,
    StepEnd,
    StepStart,
    ToolDecision,
    ToolProposed,
    ToolResult,
    Usage,
)
from k2lab.trace.notebook import trace_bundle

STEPS, REASONING, FRAG = 20, 80_000, 3


def run_events() -> tuple[list[dict[str, Any]], int]:
    evs: list[Any] = [
        RunStart(
            run_id="r1",
            prompt="Compute things.",
            model="kimi-k2-thinking",
            model_label="kimi-k2-thinking",
            base_url="http://127.0.0.1:1/v1",
            policy="auto",
            isolation="none",
            max_steps=300,
            tools=["python"],
        )
    ]
    produced = len("Compute things.")
    per_step = REASONING // STEPS
    words = "the model considers the next computation carefully and checks it "
    for n in range(1, STEPS + 1):
        reasoning = (words * (per_step // len(words) + 1))[:per_step]
        last = n == STEPS
        content = "The answer is 42." if last else ""
        args = json.dumps({"code": f"x_{n} = {n} * 2\nprint(x_{n})"})
        evs.append(StepStart(step=n))
        for i in range(0, len(reasoning), FRAG):
            evs.append(ReasoningDelta(step=n, text=reasoning[i : i + FRAG]))
        for i in range(0, len(content), FRAG):
            evs.append(ContentDelta(step=n, text=content[i : i + FRAG]))
        calls = [] if last else [{"id": f"c{n}", "name": "python", "arguments": args}]
        evs.append(StepEnd(step=n, content=content, reasoning=reasoning, tool_calls=calls))
        evs.append(Usage(step=n, prompt_tokens=1000 * n, completion_tokens=per_step // 4))
        produced += len(reasoning) + len(content)
        if not last:
            out = f"{n * 2}\n"
            evs += [
                ToolProposed(step=n, call_id=f"c{n}", run_id="r1", name="python", arguments=args),
                ToolDecision(call_id=f"c{n}", run_id="r1", decision="approve", by="policy"),
                ToolResult(call_id=f"c{n}", run_id="r1", name="python", ok=True, output=out),
            ]
            produced += len(args) + len(out)
    evs.append(
        RunEnd(
            stop_reason="completed", answer="The answer is 42.", steps=STEPS, tool_calls=STEPS - 1
        )
    )
    for i, e in enumerate(evs):
        e.seq = i
    return [e.to_dict() for e in evs], produced


def main() -> int:
    events, produced = run_events()
    bundle = trace_bundle("r1", events)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%k2\nCompute things.")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nb.cells = [cell]
    size = len(nbformat.writes(nb).encode())
    full = len(json.dumps(events).encode())
    parts = {k: len(json.dumps(v).encode()) for k, v in bundle.items()}
    saved = len(bundle["application/vnd.k2lab.trace+json"]["events"])
    print(f"events: {len(events)} streamed, {saved} saved")
    print(f"full event log {full / 1e6:.2f} MB; saved parts (bytes): {parts}")
    ratio = size / produced
    kb = f"notebook {size / 1e3:.0f} kB / text produced {produced / 1e3:.0f} kB"
    print(f"{kb} = {ratio:.2f}x (target <= 4x)")
    return 0 if ratio <= 4 else 1


if __name__ == "__main__":
    sys.exit(main())
