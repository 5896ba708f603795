"""Writes the golden traces in tests/trace/data/ from real runs of the engine (not by hand).

    .venv/bin/python -m tests.trace.golden            # rewrite the *.jsonl traces
    .venv/bin/python -m tests.trace.golden --draft    # also write *.view.draft.json to review
    .venv/bin/python -m tests.trace.golden heavy      # only the named traces

Heavy mode and the verify pass (issue 12): ``heavy`` is a real ``HeavyRun`` (3 lanes, one whose
sandbox does not start, then the aggregation, whose verify pass holds), ``verify_corrected`` a
single run whose verify pass finds a fault, corrects it and then holds, and ``heavy_demo`` what
``k2lab run --heavy 2 --verify --approve auto`` writes with the offline demo model (its streamed
fragments coalesced as the notebook saves them, to keep it small).

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
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import Decision
from k2lab.agent.heavy import HeavyRun, LaneSetup
from k2lab.agent.loop import Agent
from k2lab.agent.verify import VerifyPass
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


HEAVY_PROMPT = "What is 6 * 7?"


def _aggregation(body: dict[str, Any]) -> int | None:
    """The aggregation's requests (its first user message holds ``<task>``): which one, from 0."""
    msgs = [m for m in body.get("messages", []) if isinstance(m, dict)]
    users = [m for m in msgs if m.get("role") == "user"]
    if not users or "<task>" not in str(users[0].get("content", "")):
        return None
    return sum(1 for m in msgs if m.get("role") == "assistant")


def _lane_turns(answer: str) -> list[Turn]:
    return [
        Turn(
            reasoning="Compute it with the tool.",
            tool_calls=[Call("python", {"code": "print(6 * 7)"})],
            chunk=12,
            **u(60, 12),
        ),
        Turn(content=answer, chunk=12, **u(90, 6)),
    ]


#: the aggregation reconciles the lanes; its check (no tools in the aggregation: it re-derives)
#: holds. (The aggregation has 3 steps at most: a correction and a second check do not fit.)
AGGREGATE_TURNS = [
    Turn(
        reasoning="Lanes 1 and 2 ran the code and agree; lane 3 did not finish.",
        content="6 * 7 = 42. Lanes followed: 1 and 2 (both ran it); lane 3 failed.",
        chunk=16,
        **u(300, 20),
    ),
    Turn(
        reasoning="Cross-check: 7 * 6 and 42 / 7.",
        content="7 * 6 = 42 and 42 / 7 = 6.\nVERDICT: holds",
        chunk=16,
        **u(340, 12),
    ),
]


async def record_heavy(fake: FakeModel) -> list[dict[str, Any]]:
    """3 lanes (lane 3's sandbox does not start), aggregation verified after a correction."""
    answers = itertools.cycle(["6 * 7 = 42.", "42, as the tool printed."])
    fake.reset()
    fake.respond_with(lambda body, index: _heavy_turn(body, answers))

    async def make_lane(name: str) -> LaneSetup:
        agent, _ = make_agent(fake)

        async def no_sandbox() -> None:
            raise RuntimeError(f"no sandbox for lane {name}")

        return LaneSetup(agent=agent, start=no_sandbox if name == "3" else None)

    provider = make_agent(fake)[0].provider
    heavy = HeavyRun(
        3,
        make_lane,
        provider,
        run_id="heavy",
        aggregate_follow_up=VerifyPass(1),
    )
    out = [_dict(ev) async for ev in heavy.run(HEAVY_PROMPT)]
    for lane in ("1", "2", "3", "aggregate"):
        pin([d for d in out if d.get("lane") == lane], 1_800_000_000.0)
    return out


def _heavy_turn(body: dict[str, Any], answers: Iterator[str]) -> Turn:
    agg = _aggregation(body)
    if agg is not None:
        return AGGREGATE_TURNS[min(agg, len(AGGREGATE_TURNS) - 1)]
    msgs = [m for m in body.get("messages", []) if isinstance(m, dict)]
    if not any(m.get("role") == "assistant" for m in msgs):
        return _lane_turns("")[0]
    return Turn(content=next(answers), chunk=12, **u(90, 6))


async def record_verify_corrected(fake: FakeModel) -> list[dict[str, Any]]:
    """A single run with a verify pass: the check finds a fault, the correction holds."""
    fake.reset()
    fake.script(
        [
            Turn(reasoning="Easy.", content="6 * 7 = 41.", chunk=8, **u(40, 8)),
            Turn(
                reasoning="Re-compute.",
                tool_calls=[Call("python", {"code": "print(6 * 7)"})],
                chunk=8,
                **u(80, 10),
            ),
            Turn(content="The tool printed 42, not 41.\nVERDICT: fault", chunk=8, **u(110, 12)),
            Turn(content="6 * 7 = 42.", chunk=8, **u(130, 6)),
            Turn(tool_calls=[Call("python", {"code": "print(42 // 7)"})], chunk=8, **u(150, 8)),
            Turn(content="42 // 7 printed 6.\nVERDICT: holds", chunk=8, **u(170, 10)),
        ]
    )
    agent, _ = make_agent(fake)
    run = [
        _dict(ev)
        async for ev in agent.run(
            HEAVY_PROMPT, run_id="verify_corrected-1", follow_up=VerifyPass(2)
        )
    ]
    return pin(run, 1_800_000_000.0)


def record_heavy_demo() -> list[dict[str, Any]]:
    """What the CLI writes for a heavy run with --verify on the offline demo model (coalesced)."""
    import os
    import subprocess
    import tempfile

    from k2lab.trace.notebook import coalesce_events

    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "h.jsonl"
        env = {**os.environ, "K2LAB_DEMO_DELAY": "0"}
        for k in ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "K2LAB_BASE_URL", "OPENROUTER_API_KEY"):
            env.pop(k, None)
        subprocess.run(
            [str(Path(sys.executable).with_name("k2lab")), "run", "--heavy", "2", "--verify"]
            + ["--approve", "auto", "--trace", str(trace), "demo: estimate pi"],
            env=env,
            check=True,
            capture_output=True,
        )
        lines = trace.read_text(encoding="utf-8").splitlines()
    events = coalesce_events([json.loads(line) for line in lines[1:]])
    for lane in ("1", "2", "aggregate"):
        pin([d for d in events if d.get("lane") == lane], 1_800_000_000.0)
    for d in events:  # the heavy run's id is random: pin it
        if d.get("run_id"):
            d["run_id"] = "demoheavy." + d["run_id"].split(".", 1)[1]
    return events


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
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    special: dict[str, Callable[[], Any]] = {
        "heavy": lambda: record_heavy(fake),
        "verify_corrected": lambda: record_verify_corrected(fake),
    }
    try:
        for name in only or [*SCENARIOS, *special, "heavy_demo"]:
            if name == "heavy_demo":
                events = record_heavy_demo()
            elif name in special:
                events = await special[name]()
            else:
                events = await record(name, SCENARIOS[name], fake)
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
