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
from k2lab.events import RunEnd

INTERRUPTED = (
    "The Jupyter server stopped while this run was in progress; the run ended there. "
    "Everything it streamed before is kept."
)


def restore_conversation(conversation: Conversation, events: list[dict[str, Any]]) -> None:
    """Replay the log into ``conversation`` (which holds the system prompt already)."""
    open_calls: list[str] = []

    def close_open() -> None:
        for cid in open_calls:  # as the loop does after a stop: the history stays valid
            conversation.add_tool_result(cid, STOPPED_BEFORE_RUN)
        open_calls.clear()

    for ev in events:
        kind = ev.get("type")
        if kind == "run.start":
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
        elif kind == "notice" and ev.get("kind") == "compaction":
            conversation.hide_tool_outputs()
        elif kind == "run.end":
            close_open()
    close_open()


def interrupted_run_end(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A ``run.end`` to append when the log's last run never ended (the server died mid-run)."""
    last_start = None
    for i in range(len(events) - 1, -1, -1):
        kind = events[i].get("type")
        if kind == "run.end":
            return None
        if kind == "run.start":
            last_start = i
            break
    if last_start is None:
        return None
    run = events[last_start:]
    steps = max((int(e.get("step", 0)) for e in run if e.get("type") == "step.start"), default=0)
    seq = max((int(e.get("seq", -1)) for e in run), default=-1) + 1
    ts = float(events[last_start].get("ts", time.time()))
    end = RunEnd(
        seq=seq,
        stop_reason="error",
        answer="",
        steps=steps,
        tool_calls=sum(1 for e in run if e.get("type") == "tool.proposed"),
        elapsed=max(0.0, time.time() - ts),
        error=INTERRUPTED,
    )
    return end.to_dict()
