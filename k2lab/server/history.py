"""What a session's event log implies after a restart: the model's conversation, and whether the
last run was cut off.

The event log is the only state a session persists; the agent's ``Conversation`` is rebuilt from it
so a follow-up message after a server restart continues the same chat.
"""

from __future__ import annotations

import time
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.loop import STOPPED_BEFORE_RUN
from k2lab.events import RunEnd, ToolResult

#: the event types the conversation is rebuilt from
RESTORE_TYPES = frozenset(
    {"run.start", "step.end", "tool.result", "notice", "run.end", "verify.start", "verify.end"}
)

INTERRUPTED = (
    "The Jupyter server stopped while this run was in progress; the run ended there. "
    "Everything it streamed before is kept."
)
#: what a call that was still waiting (for a decision, or its turn) when the server stopped reads
RESTART_BEFORE_RUN = (
    "[not run: the Jupyter server stopped (or restarted) before this tool call executed; the run "
    "ended there]"
)
#: what a call that had been approved, with no result yet, when the server stopped reads
RESTART_WHILE_RUNNING = (
    "[interrupted: the Jupyter server stopped (or restarted) while this tool call was running; it "
    "may have had partial effects]"
)


def restore_conversation(conversation: Conversation, events: list[dict[str, Any]]) -> None:
    """Replay the log into ``conversation`` (which holds the system prompt already). A heavy
    run is one turn: its prompt, then the aggregated answer (``k2lab.driver.heavy_turn``, as
    the live session records it); its lanes' own steps stay theirs."""
    from k2lab.driver import heavy_turn

    open_calls: list[str] = []
    #: heavy runs seen (root run id -> prompt) whose aggregation has not ended in the log
    heavy: dict[str, str] = {}
    lane_root: dict[str, str] = {}

    def close_heavy() -> None:  # every lane failed (or the log ends): no aggregation ran
        for prompt in heavy.values():
            heavy_turn(conversation, prompt, "", "no lane finished")
        heavy.clear()

    def close_open(text: str = STOPPED_BEFORE_RUN) -> None:
        for cid in open_calls:  # as the loop does after a stop: the history stays valid
            conversation.add_tool_result(cid, text)
        open_calls.clear()

    for ev in events:
        kind = ev.get("type")
        lane = str(ev.get("lane") or "")
        if lane:  # an event without run_id belongs to its lane's latest run.start
            if kind == "run.start":
                lane_root[lane] = str(ev.get("run_id") or "").rpartition(".")[0]
            root = lane_root.get(lane, "")
            if kind == "run.start" and lane != "aggregate":
                heavy.setdefault(root, str(ev.get("prompt", "")))
            elif kind == "run.end" and lane == "aggregate" and root in heavy:
                why = str(ev.get("error") or ev.get("stop_reason") or "")
                heavy_turn(conversation, heavy.pop(root), str(ev.get("answer") or ""), why)
            continue
        if kind == "run.start":
            close_heavy()
            close_open()
            conversation.add_user(str(ev.get("prompt", "")))
        elif kind == "step.end":
            calls = list(ev.get("tool_calls") or [])
            conversation.add_assistant(
                str(ev.get("content", "")), str(ev.get("reasoning", "")), calls
            )
            open_calls[:] = [c["id"] for c in calls]
        elif kind == "tool.result":
            cid = ev.get("call_id")
            if cid in open_calls:
                open_calls.remove(cid)
                conversation.add_tool_result(str(cid), str(ev.get("output", "")))
        elif kind == "verify.start":  # the verify pass's check is a user message of the run
            close_open()
            conversation.add_user(str(ev.get("prompt", "")))
        elif kind == "verify.end" and ev.get("correction"):  # and so is its ask to correct
            close_open()
            conversation.add_user(str(ev.get("correction")))
        elif kind == "notice" and ev.get("kind") == "compaction":
            conversation.hide_tool_outputs()
        elif kind == "run.end":
            # a run the server's stop cut off says so, not that the user stopped it
            close_open(RESTART_BEFORE_RUN if ev.get("error") == INTERRUPTED else STOPPED_BEFORE_RUN)
    close_open(RESTART_BEFORE_RUN)
    close_heavy()


def _int(v: Any, default: int) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def interrupted_run_end(run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to append when a run never ended (the server stopped mid-run), given the events from
    its ``run.start`` on: a ``tool.result`` for each call left without one, saying the server's
    stop cut it off, then a ``run.end`` with the same reason. ``[]`` when the run did end."""
    if not run or run[0].get("type") != "run.start" or any(e.get("type") == "run.end" for e in run):
        return []
    run_id = str(run[0].get("run_id") or "")
    steps = max((_int(e.get("step"), 0) for e in run if e.get("type") == "step.start"), default=0)
    seq = max((_int(e.get("seq"), -1) for e in run), default=-1) + 1
    ts = run[0].get("ts")
    started = float(ts) if isinstance(ts, (int, float)) else time.time()
    names: dict[str, str] = {}
    approved: set[str] = set()
    for e in run:
        cid, kind = e.get("call_id"), e.get("type")
        if not isinstance(cid, str):
            continue
        if kind == "tool.proposed" and not e.get("problem"):
            names[cid] = str(e.get("name", ""))
        elif kind == "tool.decision" and e.get("decision") in ("approve", "edit"):
            approved.add(cid)
        elif kind == "tool.result":
            names.pop(cid, None)
    out: list[dict[str, Any]] = []
    for cid, name in names.items():
        text = RESTART_WHILE_RUNNING if cid in approved else RESTART_BEFORE_RUN
        out.append(
            ToolResult(
                seq=seq, call_id=cid, run_id=run_id, name=name, ok=False, output=text
            ).to_dict()
        )
        seq += 1
    end = RunEnd(
        seq=seq,
        stop_reason="error",
        answer="",
        steps=steps,
        tool_calls=sum(1 for e in run if e.get("type") == "tool.proposed"),
        elapsed=max(0.0, time.time() - started),
        error=INTERRUPTED,
    )
    out.append(end.to_dict())
    return out
