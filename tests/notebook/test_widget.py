"""The widget's Python side without a frontend: coalescing, snapshots, button dispatch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from k2lab.notebook.widget import FLUSH_INTERVAL, TraceWidget
from tests.notebook.test_state import run_events


class Recorder:
    """RunControls that records what the buttons asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def decide(self, call_id: str, kind: str, *, code: str | None, feedback: str | None) -> None:
        self.calls.append(("decide", call_id, kind, code, feedback))

    def approve_all(self) -> None:
        self.calls.append(("approve_all",))

    def stop(self) -> None:
        self.calls.append(("stop",))

    def stop_previous(self) -> None:
        self.calls.append(("stop_previous",))

    async def replay(self, call_id: str) -> dict[str, Any]:
        return {"call_id": call_id, "changed": True, "new_output": "<b>3</b>"}

    def fork(self, call_id: str, code: str | None, run_id: str | None = None) -> str:
        self.calls.append(
            ("fork", call_id, code) if run_id is None else ("fork", call_id, code, run_id)
        )
        return "forked"

    def insert_cell(self, call_id: str) -> str:
        return "use %k2 export"


def make(controls: Any = None) -> tuple[TraceWidget, list[dict[str, Any]]]:
    w = TraceWidget(controls)
    sent: list[dict[str, Any]] = []
    w.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    return w, sent


async def test_a_fast_stream_is_coalesced() -> None:
    """2,000 deltas in about a second reach the frontend as a few tens of patches."""
    w, sent = make()
    events = run_events()
    w.feed(events[0])
    w.feed(events[1])
    n, t0 = 2000, time.monotonic()
    for i in range(n):
        w.feed({"type": "reasoning.delta", "step": 1, "text": "tok ", "seq": i + 2})
        if i % 20 == 0:
            await asyncio.sleep(0.01)  # the model's stream arrives in bursts
    await asyncio.sleep(FLUSH_INTERVAL * 2)
    elapsed = time.monotonic() - t0
    per_second = len(sent) / elapsed
    assert per_second <= 1 / FLUSH_INTERVAL + 2, (len(sent), elapsed)
    # nothing is lost: the appends add up to the whole text
    text = "".join(
        p["steps"][0]["reasoning_add"] for p in sent if p["kind"] == "patch" and p["steps"]
    )
    assert text == "tok " * n


async def test_tool_proposals_are_sent_at_once() -> None:
    w, sent = make()
    for ev in run_events()[:6]:
        w.feed(ev)
    before = len(sent)
    w.feed(run_events()[6])  # tool.proposed: a person is waiting for it
    assert len(sent) == before + 1
    card = sent[-1]["cards"][0]
    assert card["status"] == "pending" and "print" in card["code_html"]


def test_snapshot_is_safe_html() -> None:
    w, sent = make()
    evs = run_events()
    evs[-1]["answer"] = "**bold** <script>alert(1)</script>"
    res = next(e for e in evs if e["type"] == "tool.result")
    res["display"] = [{"data": {"text/html": "<img src=x onerror=alert(1)>"}, "metadata": {}}]
    for ev in evs:
        w.feed(ev)
    w.handle_action("hello", {})
    snap = sent[-1]
    assert snap["kind"] == "snapshot"
    assert "<strong>bold</strong>" in snap["head"]["answer_html"]
    assert "<script>" not in snap["head"]["answer_html"]
    html = snap["cards"][0]["display_html"][0]
    assert html.startswith('<iframe class="k2lab-html" sandbox=""') and "<img" not in html


def test_buttons_reach_the_controls() -> None:
    rec = Recorder()
    w, sent = make(rec)
    for ev in run_events()[:7]:
        w.feed(ev)
    w._act({"action": "edit", "call_id": "c1", "code": "print(3)"})
    w._act({"action": "reject", "call_id": "c1", "feedback": "no"})
    w._act({"action": "approve_all"})
    w._act({"action": "stop"})
    w._act({"action": "fork", "call_id": "c1", "code": "x"})
    assert rec.calls == [
        ("decide", "c1", "edit", "print(3)", None),
        ("decide", "c1", "reject", None, "no"),
        ("approve_all",),
        ("stop",),
        ("fork", "c1", "x"),
    ]
    assert w.state.head["approve_all"]
    w._act({"action": "explode"})
    assert sent[-1] == {"kind": "error", "message": "explode: unknown action 'explode'"}


def test_without_controls_a_click_says_why() -> None:
    w, sent = make(None)
    w._act({"action": "stop"})
    assert sent[-1]["kind"] == "error" and "no longer attached" in sent[-1]["message"]


@pytest.mark.parametrize("changed", [True])
async def test_replay_result_lands_on_the_card(changed: bool) -> None:
    w, sent = make(Recorder())
    for ev in run_events():
        w.feed(ev)
    w._act({"action": "replay", "call_id": "c1"})
    await asyncio.sleep(0.05)
    replay = w.state.cards["c1"]["replay"]
    assert replay["changed"] is changed
    assert "&lt;b&gt;3&lt;/b&gt;" in replay["new_output_html"]  # escaped


async def test_the_clock_runs_while_a_call_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """No event comes while a call waits for a decision: the status line still ticks (issue 11)."""
    import k2lab.notebook.widget as tw

    monkeypatch.setattr(tw, "TICK_INTERVAL", 0.1)
    w, sent = make()
    for ev in run_events()[:7]:  # up to the proposed call, which now waits
        w.feed({**ev, "ts": time.time()} if ev["type"] == "run.start" else ev)
    await asyncio.sleep(0.05)
    before = len(sent)
    await asyncio.sleep(0.35)
    heads = [p["head"] for p in sent[before:] if p.get("head")]
    assert len(heads) >= 2, "the clock stopped while the call waited"
    assert heads[-1]["elapsed"] > heads[0]["elapsed"]
    w.feed({"type": "run.end", "stop_reason": "stopped", "answer": ""})
    await asyncio.sleep(0.05)
    after = len(sent)
    await asyncio.sleep(0.3)
    assert len(sent) == after, "an ended run keeps ticking"


def test_stop_lane_reaches_the_controls_or_says_why() -> None:
    w, sent = make(Recorder())
    w.handle_action("hello", {})
    assert sent[-1]["head"]["can_stop_lane"] is False
    w._act({"action": "stop_lane", "lane": "2"})
    assert "cannot stop one lane" in sent[-1]["message"]

    class LaneRecorder(Recorder):
        def stop_lane(self, lane: str) -> None:
            self.calls.append(("stop_lane", lane))

    rec = LaneRecorder()
    w, sent = make(rec)
    w.handle_action("hello", {})
    assert sent[-1]["head"]["can_stop_lane"] is True
    w.handle_action("stop_lane", {"lane": "2"})
    assert rec.calls == [("stop_lane", "2")]
