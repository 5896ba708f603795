"""The run view's fold cost per event, early and late in a long run: it must stay flat.

Run: ``.venv/bin/python benchmarks/bench_runview.py [--steps 300] [--repeat 7]`` (a few seconds).

Setup. A synthetic 300-step run shaped like a long K2 trajectory: each step streams 330 reasoning
fragments of 3 characters and 6 content fragments, then ``usage``, ``step.end`` (the assembled
texts), one ``tool.proposed`` / ``tool.decision`` / ``tool.result`` (500-character output), and
every 25th step a ``retry`` and a ``step_restart`` notice. That is ~102,000 events.

Method. Time spent in ``RunView.apply`` (``perf_counter_ns`` around a loop of 1,000 events and
nothing else) for events 1-1,000 and for events 100,000-101,000 (the view first folds the 100,000
events before them, untimed). Each window is measured
``--repeat`` times on a fresh view; the median is printed, for event objects (the CLI, replay) and
for their dict form (JSONL, WebSocket, the widget). A fold whose cost grew with the run (joining
texts per fragment, scanning calls) would show the late window many times slower.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k2lab.events import (  # noqa: E402
    ContentDelta,
    Event,
    Notice,
    ReasoningDelta,
    Retry,
    RunEnd,
    RunStart,
    StepEnd,
    StepStart,
    ToolDecision,
    ToolProposed,
    ToolResult,
    Usage,
)
from k2lab.trace.view import RunView  # noqa: E402


def synthetic_run(steps: int) -> list[Event]:
    evs: list[Event] = [
        RunStart(
            run_id="bench",
            prompt="p",
            model="kimi-k2-thinking",
            model_label="Kimi K2 Thinking",
            base_url="",
            policy="auto",
            isolation="bwrap",
            max_steps=steps,
        )
    ]
    out = "x" * 500
    for n in range(1, steps + 1):
        evs.append(StepStart(step=n))
        if n % 25 == 0:
            evs += [ReasoningDelta(step=n, text="cut") for _ in range(20)]
            evs.append(Notice(kind="step_restart", message="stream cut"))
            evs.append(Retry(attempt=1, max_attempts=4, delay=0.5, reason="cut"))
        evs += [ReasoningDelta(step=n, text="abc") for _ in range(330)]
        evs += [ContentDelta(step=n, text="ok. ") for _ in range(6)]
        cid = f"functions.python:{n - 1}"
        args = '{"code": "print(' + str(n) + ')"}'
        evs.append(Usage(step=n, prompt_tokens=1000 + 600 * n, completion_tokens=340))
        evs.append(
            StepEnd(
                step=n,
                content="ok. " * 6,
                reasoning="abc" * 330,
                tool_calls=[{"id": cid, "name": "python", "arguments": args}],
                finish_reason="tool_calls",
                duration=1.0,
            )
        )
        evs.append(ToolProposed(step=n, call_id=cid, run_id="bench", name="python", arguments=args))
        evs.append(ToolDecision(call_id=cid, run_id="bench", decision="approve", by="policy"))
        evs.append(ToolResult(call_id=cid, run_id="bench", name="python", ok=True, output=out))
    evs.append(RunEnd(stop_reason="max_steps", answer="", steps=steps, tool_calls=steps))
    for i, ev in enumerate(evs):
        ev.seq = i
    return evs


def window_ns(events: list[Any], start: int, size: int = 1000) -> float:
    view = RunView()
    for ev in events[:start]:
        view.apply(ev)
    window = events[start : start + size]
    apply = view.apply
    t0 = time.perf_counter_ns()
    for ev in window:
        apply(ev)
    return (time.perf_counter_ns() - t0) / len(window)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=7)
    opts = ap.parse_args()
    objs = synthetic_run(opts.steps)
    dicts = [e.to_dict() for e in objs]
    late = 100_000
    if len(objs) < late + 1000:
        sys.exit(f"only {len(objs)} events: use --steps 300 or more")
    print(f"synthetic run: {opts.steps} steps, {len(objs):,} events")  # noqa: T201
    for label, evs in (("event objects", objs), ("dicts", dicts)):
        early = statistics.median(window_ns(evs, 0) for _ in range(opts.repeat))
        lat = statistics.median(window_ns(evs, late) for _ in range(opts.repeat))
        print(  # noqa: T201
            f"{label:14} events 1-1,000: {early / 1000:.2f} µs/event   "
            f"events 100,000-101,000: {lat / 1000:.2f} µs/event   ratio {lat / early:.2f}x"
        )
    view = RunView().extend(objs)
    run = view.run
    assert run is not None and len(run.steps) == opts.steps and len(run.calls) == opts.steps
    assert str(run.steps[25].reasoning) == "abc" * 330  # the cut stream was dropped


if __name__ == "__main__":
    main()
