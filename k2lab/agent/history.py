"""The conversation recorded events imply: what every face continues from (``k2lab run --resume``,
``%k2 --resume`` and follow-ups, the server's sessions after a restart) and what a fork starts from.

One replay of the event log, with the rules the live run followed, so a rebuilt conversation is the
one the model had:

- a run's prompt (with its attached ``context``, ``events.user_message``) is a user turn, each
  ``step.end`` an assistant message, each ``tool.result`` the answer to its call (after the edit
  note when a person edited it, ``events.tool_message``); a call with no result (stopped, or the
  log ends mid-run) is answered, so the history stays valid for the next request;
- a ``notice`` of kind ``compaction`` hides the tool outputs so far again, or summarises, as the
  loop did: a resumed run does not resend outputs the original run had hidden or summarised;
- a heavy run is one turn: its prompt, then the aggregated answer (``k2lab.driver.heavy_turn``);
  its lanes' own steps stay theirs (kept aside: a lane's conversation is the one the heavy run
  started from, then the lane's events as a plain run's, ``Replay.lane_before_step``);
- a verify round's check and its ask to correct are user turns of the run;
- a fork (``run.start`` with ``parent_run_id`` and ``forked_from_call``) continues from its
  parent's conversation as it was before the forked call's step (the branch's own replayed step
  follows), not from the end of the parent; a fork of a heavy lane's call (parent ``HEAVY.K``)
  continues from that lane's conversation before the call's step.

A log cut mid-run (the server stopped) is closed with ``interrupted_run_end``'s events, which name
the restart rather than a user's stop.

A summarising compaction's notice carries its summary and what it replaced (``Notice.summary``,
``summarised``, ``keep_steps``): the rebuild replaces the same older messages with it
(``k2lab.agent.summarise.replay_summary``); a failed summary changed nothing. Traces from before
those fields hold the summary as text only: their outputs stay hidden, not summarised.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.images import StepImages
from k2lab.agent.loop import STOPPED_BEFORE_RUN
from k2lab.events import RunEnd, ToolResult, tool_message, user_message

#: the event types a conversation is rebuilt from (the server reads only these from disk)
REPLAY_TYPES = frozenset(
    {
        "run.start",
        "step.end",
        "tool.proposed",
        "tool.decision",
        "tool.result",
        "notice",
        "run.end",
        "verify.start",
        "verify.end",
    }
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


class Replay:
    """Feeds events, one at a time, into a conversation (``feed``; ``close`` at the end)."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self._open: list[str] = []
        #: heavy runs seen (root run id -> prompt) whose aggregation has not ended in the log
        self._heavy: dict[str, str] = {}
        self._lane_root: dict[str, str] = {}
        #: lane -> the run id of its latest run.start; lane run id -> its events (a lane's
        #: conversation is rebuilt from these only when a fork of one of its calls asks)
        self._lane_run: dict[str, str] = {}
        self._lane_events: dict[str, list[dict[str, Any]]] = {}
        #: heavy root run id -> the messages the heavy run started from (each lane's start)
        self._heavy_before: dict[str, list[dict[str, Any]]] = {}
        self._run = ""
        #: (run, call) -> the step that proposed it; (run, step) -> messages before that step
        self.call_step: dict[tuple[str, str], int] = {}
        self._before_step: dict[tuple[str, int], int] = {}
        #: (run, call) -> the arguments a person edited it to
        self._edits: dict[tuple[str, str], str] = {}
        #: the images of this step's results the model saw (``tool.result.sent_to_model``)
        self._images: StepImages | None = None

    # -- closing what a run left open --------------------------------------------------------------
    def _close_heavy(self) -> None:  # every lane failed (or the log ends): no aggregation ran
        from k2lab.driver import heavy_turn

        for prompt in self._heavy.values():
            heavy_turn(self.conversation, prompt, "", "no lane finished")
        self._heavy.clear()

    def _close_open(self, text: str = STOPPED_BEFORE_RUN) -> None:
        for cid in self._open:  # as the loop does after a stop: the history stays valid
            self.conversation.add_tool_result(cid, text)
        self._open.clear()
        self._images = None  # a step cut short never sent its images

    def close(self) -> Conversation:
        """End of the log: a run still open was cut off by a restart."""
        self._close_open(RESTART_BEFORE_RUN)
        self._close_heavy()
        return self.conversation

    # -- one event ---------------------------------------------------------------------------------
    def feed(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        lane = str(ev.get("lane") or "")
        if lane:
            self._lane(ev, kind, lane)
            return
        conv = self.conversation
        if kind == "run.start":
            self._close_heavy()
            self._close_open()
            self._run = str(ev.get("run_id") or "")
            if ev.get("forked_from_call"):
                self._rewind(str(ev.get("parent_run_id") or ""), str(ev["forked_from_call"]))
            else:
                prompt = str(ev.get("prompt", ""))
                conv.add_user(user_message(prompt, ev.get("context"), ev.get("note")))
        elif kind == "step.end":
            self._before_step[(self._run, _int(ev.get("step"), 0))] = len(conv.messages)
            calls = list(ev.get("tool_calls") or [])
            conv.add_assistant(str(ev.get("content", "")), str(ev.get("reasoning", "")), calls)
            self._open[:] = [c["id"] for c in calls]
        elif kind == "tool.proposed":
            run = str(ev.get("run_id") or self._run)
            self.call_step[(run, str(ev.get("call_id")))] = _int(ev.get("step"), 0)
        elif kind == "tool.decision" and ev.get("decision") == "edit":
            run = str(ev.get("run_id") or self._run)
            self._edits[(run, str(ev.get("call_id")))] = str(ev.get("arguments") or "")
        elif kind == "tool.result":
            cid = ev.get("call_id")
            if cid in self._open:
                self._open.remove(cid)
                # ``edited``: the output is the tool's own, the model read the edit note first
                # (older traces hold the note in the output itself)
                run = str(ev.get("run_id") or self._run)
                edit = self._edits.get((run, str(cid))) if ev.get("edited") else None
                conv.add_tool_result(str(cid), tool_message(str(ev.get("output", "")), edit))
                self._saw_images(str(cid), ev)
                if not self._open:
                    self._send_images()
        elif kind == "verify.start":  # the verify pass's check is a user message of the run
            self._close_open()
            conv.add_user(str(ev.get("prompt", "")))
        elif kind == "verify.end" and ev.get("correction"):  # and so is its ask to correct
            self._close_open()
            conv.add_user(str(ev.get("correction")))
        elif kind == "notice" and ev.get("kind") == "compaction":
            self._compaction(ev)
        elif kind == "run.end":
            # a run the server's stop cut off says so, not that the user stopped it
            self._close_open(
                RESTART_BEFORE_RUN if ev.get("error") == INTERRUPTED else STOPPED_BEFORE_RUN
            )

    def _compaction(self, ev: dict[str, Any]) -> None:
        """As the loop compacted: a summary replaces the same older messages (its fields), a
        failed one changed nothing, anything else hid the tool outputs so far (older traces'
        summary notices too: their summary is text only, so the outputs stay hidden)."""
        from k2lab.agent.summarise import replay_summary

        how = ev.get("compaction")
        if how == "failed":
            return
        n, keep = _int(ev.get("summarised"), 0), _int(ev.get("keep_steps"), 0)
        summary = ev.get("summary")
        summarised = how == "summary" and isinstance(summary, str)
        if summarised and replay_summary(self.conversation, n, keep, str(summary)):
            return
        self.conversation.hide_tool_outputs()

    def _lane(self, ev: dict[str, Any], kind: Any, lane: str) -> None:
        """A heavy run's event: only its prompt and the aggregation's answer make the turn."""
        from k2lab.driver import heavy_turn

        if kind == "run.start":  # an event without run_id belongs to its lane's latest run.start
            run_id = str(ev.get("run_id") or "")
            self._lane_root[lane] = run_id.rpartition(".")[0]
            self._lane_run[lane] = run_id
            if lane != "aggregate":
                self._lane_events[run_id] = []
                self._heavy_before.setdefault(
                    self._lane_root[lane], list(self.conversation.messages)
                )
        root = self._lane_root.get(lane, "")
        own = self._lane_events.get(self._lane_run.get(lane, ""))
        if own is not None:
            own.append(ev)
        if kind == "run.start" and lane != "aggregate":
            self._heavy.setdefault(root, str(ev.get("prompt", "")))
        elif kind == "run.end" and lane == "aggregate" and root in self._heavy:
            why = str(ev.get("error") or ev.get("stop_reason") or "")
            heavy_turn(self.conversation, self._heavy.pop(root), str(ev.get("answer") or ""), why)

    def _saw_images(self, call_id: str, ev: dict[str, Any]) -> None:
        """A vision model's images of this result, again: the bundles it was sent, nothing more."""
        sent, display = ev.get("sent_to_model"), ev.get("display")
        if not sent or not isinstance(sent, list) or not isinstance(display, list):
            return
        if self._images is None:
            self._images = StepImages()
        self._images.offer(call_id, [b if i in sent else {} for i, b in enumerate(display)])

    def _send_images(self) -> None:
        """The step's images as the one user message after its tool messages, as the loop sent
        them (the events are scrubbed already)."""
        parts = self._images.message(str) if self._images is not None else None
        self._images = None
        if parts is not None:
            self.conversation.add_tool_images(parts)

    def before_step(self, run_id: str, step: int) -> int | None:
        """How many messages the conversation had before ``run_id``'s step ``step`` (None: that
        step was not replayed here)."""
        return self._before_step.get((run_id, step))

    def lane_before_step(self, run_id: str, step: int) -> Conversation | None:
        """Heavy lane ``run_id``'s conversation before its step ``step``, as the lane had it: the
        conversation the heavy run started from, then the lane's events as a plain run's (None:
        no such lane in what was fed)."""
        events = self._lane_events.get(run_id)
        before = self._heavy_before.get(run_id.rpartition(".")[0])
        if events is None or before is None:
            return None
        lane = Replay(rebuilt(self.conversation, before))
        for ev in events:
            if ev.get("type") == "step.end" and ev.get("step") == step:
                break
            lane.feed({k: v for k, v in ev.items() if k != "lane"})
        return lane.conversation

    def _rewind(self, parent: str, call_id: str) -> None:
        """A fork: back to the parent's conversation before the forked call's step (a lane's
        call: that lane's conversation). A parent not in this log (a branch replayed alone)
        keeps the conversation as it is."""
        if parent in self._lane_events:
            step = next(
                (
                    _int(e.get("step"), 0)
                    for e in self._lane_events[parent]
                    if e.get("type") == "tool.proposed" and e.get("call_id") == call_id
                ),
                None,
            )
            lane = self.lane_before_step(parent, step) if step is not None else None
            if lane is not None:
                self.conversation = lane
            return
        step = self.call_step.get((parent, call_id))
        n = self.before_step(parent, step) if step is not None else None
        if n is not None and n < len(self.conversation.messages):
            self.conversation = rebuilt(self.conversation, self.conversation.messages[:n])


def rebuilt(like: Conversation, messages: list[dict[str, Any]]) -> Conversation:
    """A conversation of ``like``'s class holding ``messages`` (hidden outputs stay hidden)."""
    conv = type(like).from_messages(messages)
    conv.compactions = like.compactions
    return conv


def conversation_from_events(
    runs: Iterable[Iterable[dict[str, Any]]],
    system: str,
    *,
    cls: type[Conversation] = Conversation,
) -> Conversation:
    """The conversation recorded runs left behind, for the next message: ``runs`` are event
    lists in order (the runs of a notebook, a trace file's run, a session's whole log as one).
    Every face continues from this (see the module's rules)."""
    return continued(cls(system), runs)


def conversation_before(runs: list[list[dict[str, Any]]], system: str) -> Conversation:
    """The conversation the last of ``runs`` started from (what a fork of it continues): the
    earlier runs, and for a run that was itself a fork, its parent's rewound to the call."""
    *earlier, last = runs
    head = last[:1] if last and last[0].get("forked_from_call") else []
    return conversation_from_events([*earlier, head], system)


def continued(conversation: Conversation, runs: Iterable[Iterable[dict[str, Any]]]) -> Conversation:
    """``conversation`` (a system prompt, or more) followed by what ``runs`` recorded; may be a
    new object (a fork in the log rewinds), so use the returned one."""
    replay = Replay(conversation)
    for events in runs:
        for ev in events:
            replay.feed(ev)
    return replay.close()


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
