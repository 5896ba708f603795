"""Writes the golden traces in tests/trace/data/ from real runs of the engine (not by hand).

    .venv/bin/python -m tests.trace.golden            # rewrite the *.jsonl traces
    .venv/bin/python -m tests.trace.golden --draft    # also write *.view.draft.json to review

Each trace is a real ``Agent`` run against the fake model over HTTP, with scripted decisions; only
what cannot repeat between two runs is pinned afterwards (``ts``, durations, retry delays, the fake
server's port). The expected ``*.view.json`` files are NOT written here: they are checked by hand
(a draft from ``--draft`` is a starting point, to be read line by line against the trace).

The format of ``NAME.view.json``: ``{"trace": "NAME.jsonl", "final": VIEW, "partial": [{"events":
N, "view": VIEW}]}`` where VIEW is ``RunView.to_dict()`` after folding all events (``final``) or
the first N events after the header line (``partial``: live states, e.g. before ``step.end``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import Decision
from k2lab.agent.loop import Agent
from k2lab.events import Event, ToolProposed
from tests.agent.helpers import make_agent
from tests.fixtures.fake_server import Call, FakeModel, Turn

DATA = Path(__file__).parent / "data"


class Scripted:
    """``ask`` decisions from a list; ``None`` waits until the run is stopped."""

    policy = "ask"

    def __init__(self, decisions: list[Decision | None], on_wait: Callable[[], None]) -> None:
        self.decisions = list(decisions)
        self.on_wait = on_wait

    async def decide(self, proposal: ToolProposed) -> Decision:
        d = self.decisions.pop(0)
        if d is None:
            self.on_wait()
            await asyncio.Future()  # never: the run is stopped while this call waits
        assert d is not None
        return d


def code(c: str) -> str:
    return json.dumps({"code": c})


def u(p: int, c: int) -> dict[str, int]:
    return {"prompt_tokens": p, "completion_tokens": c}


SCENARIOS: dict[str, dict[str, Any]] = {
    "approved": {
        "prompt": "What is 6 * 7?",
        "turns": [
            Turn(
                reasoning="I will compute it.",
                tool_calls=[Call("python", {"code": "print(6 * 7)"})],
                chunk=5,
                **u(100, 20),
            ),
            Turn(reasoning="It printed 42.", content="6 * 7 = 42.", chunk=5, **u(140, 12)),
        ],
        "decisions": [Decision("approve", by="user")],
    },
    "edited": {
        "prompt": "Print a greeting.",
        "turns": [
            Turn(
                reasoning="A print call.",
                tool_calls=[Call("python", {"code": "print('helo')"})],
                chunk=4,
                **u(90, 15),
            ),
            Turn(content="Printed hello.", chunk=4, **u(130, 6)),
        ],
        "decisions": [Decision("edit", arguments=code("print('hello')"), by="user")],
    },
    "rejected": {
        "prompt": "Clean up the disk.",
        "turns": [
            Turn(
                reasoning="Delete the temp files.",
                tool_calls=[Call("python", {"code": "import shutil; shutil.rmtree('/tmp/x')"})],
                chunk=6,
                **u(80, 18),
            ),
            Turn(content="I did not delete anything.", chunk=6, **u(120, 9)),
        ],
        "decisions": [Decision("reject", feedback="do not delete files", by="user")],
    },
    "stopped_waiting": {
        "prompt": "Two things, please.",
        "turns": [
            Turn(
                reasoning="Two calls.",
                content="Starting.",
                tool_calls=[
                    Call("python", {"code": "print(1)"}),
                    Call("python", {"code": "print(2)"}),
                ],
                chunk=4,
                **u(70, 16),
            ),
        ],
        "decisions": [Decision("approve", by="user"), None],
    },
    "step_restart": {
        "prompt": "Think about it.",
        "turns": [
            Turn(reasoning="Let me think about this carefully.", chunk=4, cut_after=3),
            Turn(
                reasoning="Let me think about this carefully.",
                content="Thought about it.",
                chunk=4,
                **u(50, 14),
            ),
        ],
        "decisions": [],
    },
    "retries": {
        "prompt": "Hello?",
        "turns": [
            Turn(status=503, error="overloaded"),
            Turn(status=429, error="slow down"),
            Turn(content="Hello!", chunk=3, **u(40, 3)),
        ],
        "decisions": [],
    },
    "parallel": {
        "prompt": "Three calls at once.",
        "turns": [
            Turn(
                reasoning="Three at once.",
                tool_calls=[
                    Call("python", {"code": "a = 1"}),
                    Call("python", {"code": "b = 2"}),
                    Call("python", {"code": "c = 3"}),
                    Call("nope", {"x": 1}),  # an unknown tool: a problem, never decided
                ],
                chunk=5,
                **u(60, 30),
            ),
            Turn(content="Two ran, one was refused, one was invalid.", chunk=5, **u(150, 8)),
        ],
        "decisions": [
            Decision("approve", by="policy"),
            Decision("reject", by="user"),
            Decision("edit", arguments=code("c = 30"), by="user"),
        ],
    },
    "repeated_ids": {
        "prompt": "Once more.",
        "turns": [
            Turn(
                tool_calls=[Call("python", {"code": "x = 1"}, id="call_0")],
                chunk=8,
                **u(30, 5),
            ),
            Turn(
                tool_calls=[Call("python", {"code": "x += 1"}, id="call_0")],
                chunk=8,
                **u(40, 5),
            ),
            Turn(content="x is 2.", chunk=8, **u(50, 4)),
            # the follow-up run, in a reset conversation: the engine's ids start again at 0
            Turn(tool_calls=[Call("python", {"code": "print(x)"}, id="call_0")], **u(60, 5)),
            Turn(content="It printed 2.", **u(70, 4)),
        ],
        "decisions": [Decision("approve", by="policy")] * 3,
        "follow_up": "And print it.",
        "reset": True,
    },
}


def pin(events: list[dict[str, Any]], t0: float) -> list[dict[str, Any]]:
    """Make a run repeatable: clock, durations, delays, the fake server's port."""
    for d in events:
        d["ts"] = round(t0 + d["seq"] * 0.25, 2)
        if d["type"] == "run.start":
            d["base_url"] = "http://127.0.0.1:8000/v1"
        elif d["type"] == "step.end":
            d["duration"] = 1.5
        elif d["type"] == "tool.result":
            d["duration"] = 0.25 if d["duration"] else 0.0
        elif d["type"] == "retry":
            d["delay"] = 0.5 * d["attempt"]
        elif d["type"] == "run.end":
            d["elapsed"] = round(events[-1]["seq"] * 0.25, 2)
    return events


async def record(name: str, spec: dict[str, Any], fake: FakeModel) -> list[dict[str, Any]]:
    fake.reset()
    fake.script(spec["turns"])
    holder: dict[str, Agent] = {}
    decisions = Scripted(spec["decisions"], on_wait=lambda: holder["agent"].stop())
    agent, _ = make_agent(fake, decisions)  # type: ignore[arg-type]
    holder["agent"] = agent
    out: list[dict[str, Any]] = []
    prompts = [spec["prompt"], *([spec["follow_up"]] if "follow_up" in spec else [])]
    for i, prompt in enumerate(prompts):
        if i and spec.get("reset"):
            agent.conversation = Conversation("You are a test.")
        run: list[dict[str, Any]] = []
        async for ev in agent.run(prompt, run_id=f"{name}-{i + 1}"):
            run.append(_dict(ev))
        out += pin(run, 1_800_000_000.0 + 1000 * i)
    return out


def _dict(ev: Event) -> dict[str, Any]:
    return json.loads(json.dumps(ev.to_dict()))  # type: ignore[no-any-return]


def write(name: str, events: list[dict[str, Any]]) -> Path:
    header = {
        "k2lab_trace": 1,
        "created": "2027-01-15T08:00:00+00:00",
        "run_id": events[0]["run_id"],
    }
    path = DATA / f"{name}.jsonl"
    lines = [json.dumps(header), *(json.dumps(d, ensure_ascii=False) for d in events)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def main(draft: bool) -> None:
    from k2lab.trace.view import view_of

    fake = FakeModel()
    try:
        for name, spec in SCENARIOS.items():
            events = await record(name, spec, fake)
            print(write(name, events))  # noqa: T201
            if draft:
                view = {"trace": f"{name}.jsonl", "final": view_of(events).to_dict()}
                (DATA / f"{name}.view.draft.json").write_text(
                    json.dumps(view, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
                )
    finally:
        fake.close()


if __name__ == "__main__":
    asyncio.run(main("--draft" in sys.argv))
