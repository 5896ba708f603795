"""Fork from any recorded tool call: the engine's operation every face calls (the notebook's
"Fork from here" and ``%%k2 fork``, the panel's ``POST sessions/{id}/fork``).

A fork re-runs a run from one of its tool calls, with the same or edited arguments, and lets the
model continue as a new branch (a new run whose ``run.start`` names the parent run and the call).
It is built from the record, without the model re-generating anything before the call
(``plan_fork``):

- the conversation is the one the log implies (``k2lab.agent.history``: compaction, heavy runs,
  earlier forks included) up to the parent run's step that proposed the call;
- the fork's first step is the recorded assistant message of that step (``ForkProvider`` replays it
  instead of asking the model), keeping the calls from the chosen one on;
- the chosen call is decided up front (``ForkDecisions``): "edit" with the new arguments, or
  "approve" when they are unchanged; later calls of that step are decided as usual;
- the sandbox is NOT rewound: the call runs in the sandbox's current state (say so to users).

A heavy lane's call is forked by the lane's run id (``HEAVY.K``): the branch is a single run (not
heavy) whose conversation is lane K's up to that call's step (the conversation the heavy run
started from, then the lane's own events: ``k2lab.trace.lanes.lane_events``), in the face's
sandbox: the lane's own sandbox closed with the lane.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import Decision, DecisionSource
from k2lab.agent.heavy import AGGREGATE
from k2lab.agent.history import Replay
from k2lab.events import Event, StepEnd, ToolProposed
from k2lab.providers.base import ChatProvider
from k2lab.trace.lanes import lane_events, lanes_with_call


class ContinueConversation(Conversation):
    """A conversation whose next ``add_user`` is skipped once (a fork continues; nobody spoke)."""

    skip_next_user = False

    def add_user(self, text: str) -> None:
        if self.skip_next_user:
            self.skip_next_user = False
            return
        super().add_user(text)


class ForkError(ValueError):
    """A fork that cannot be made: ``status`` 404 (no such run or call), 409 (not forkable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Fork:
    """A planned branch: what it continues from and how its first step and call are decided."""

    parent_run_id: str
    call_id: str
    #: the chosen call's arguments (None: as recorded)
    arguments: str | None
    conversation: ContinueConversation
    #: the recorded step the branch replays first (from the chosen call on)
    first: StepEnd

    @property
    def prompt(self) -> str:
        """The branch's ``run.start`` prompt (not a user turn: nobody spoke)."""
        return f"[branch of run {self.parent_run_id} from call {self.call_id}]"

    def under(self, system: Conversation) -> None:
        """Put ``system``'s system message first (a plan made before the agent, and so its system
        prompt, existed: the server's, from ``Conversation()``)."""
        head = [m for m in system.messages[:1] if m.get("role") == "system"]
        rest = [m for m in self.conversation.messages if m.get("role") != "system"]
        conv = ContinueConversation.from_messages([*head, *rest])
        assert isinstance(conv, ContinueConversation)
        conv.skip_next_user = self.conversation.skip_next_user
        self.conversation = conv

    def provider(self, inner: ChatProvider) -> ForkProvider:
        return ForkProvider(inner, self.first)

    def decisions(self, inner: DecisionSource) -> ForkDecisions:
        return ForkDecisions(inner, self.call_id, self.arguments)


def _start(log: list[dict[str, Any]], run_id: str, lane: str = "") -> int | None:
    """Where run ``run_id``'s ``run.start`` is (a heavy lane's: with that ``lane``)."""
    return next(
        (
            i
            for i, e in enumerate(log)
            if e.get("type") == "run.start"
            and (e.get("lane") or "") == lane
            and e.get("run_id") == run_id
        ),
        None,
    )


def _next_start(
    log: list[dict[str, Any]], after: int, same: Callable[[dict[str, Any]], bool]
) -> int:
    """The first ``run.start`` after ``after`` that is not ``same`` run's (else the log's end)."""
    return next(
        (
            i
            for i in range(after + 1, len(log))
            if log[i].get("type") == "run.start" and not same(log[i])
        ),
        len(log),
    )


def _run_span(log: list[dict[str, Any]], run_id: str) -> tuple[int, int]:
    """Where run ``run_id`` is in ``log``: from its ``run.start`` to the next run's."""
    start = _start(log, run_id)
    if start is None:  # a notebook's run alone, or a trace from before run ids: the whole list
        if any(e.get("run_id") not in (None, "", run_id) for e in log if not e.get("lane")):
            raise ForkError(404, f"no run {run_id!r} here")
        return 0, len(log)
    return start, _next_start(log, start, lambda e: bool(e.get("lane")))


def _lane_run(log: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]] | None:
    """Heavy lane ``run_id``'s (``HEAVY.K``) events, or None when it is no lane's run id: lane K's
    events from its ``run.start`` to the next run's that is not of the same heavy run."""
    root, _, lane = run_id.rpartition(".")
    start = _start(log, run_id, lane) if root and lane else None
    if start is None:
        return None
    end = _next_start(log, start, lambda e: str(e.get("run_id") or "").rpartition(".")[0] == root)
    return lane_events(log[start:end], lane)


def plan_fork(
    before: Conversation,
    log: list[dict[str, Any]],
    run_id: str,
    call_id: str,
    arguments: str | None = None,
) -> Fork:
    """A branch of run ``run_id`` from its call ``call_id``. ``log`` holds that run's events and
    the runs before it that ``before`` (the system prompt, or the conversation the run started
    from) does not already hold. ``run_id`` may be a heavy lane's (``HEAVY.K``). Raises
    ``ForkError`` for an unknown run or call, or a lane's call asked for by the heavy run's id."""
    lane = _lane_run(log, run_id)
    if lane is not None and run_id.endswith("." + AGGREGATE):
        # its verify round's sandbox and conversation were the aggregation's own, not a lane's
        raise ForkError(409, "the aggregation's calls cannot be forked (fork a lane's call)")
    run = lane if lane is not None else log[slice(*_run_span(log, run_id))]
    proposal = next(
        (e for e in run if e.get("type") == "tool.proposed" and e.get("call_id") == call_id), None
    )
    if proposal is None:
        raise ForkError(404, f"no tool call {call_id!r} in run {run_id}")
    if proposal.get("lane") and lane is None:
        lanes = [k for k in lanes_with_call(run, call_id) if k != AGGREGATE]
        ids = ", ".join(f"{run_id}.{k}" for k in lanes)
        raise ForkError(
            409, f"{call_id!r} is a heavy lane's call: fork it by its lane's run id ({ids})"
        )
    step = next(
        (e for e in run if e.get("type") == "step.end" and e.get("step") == proposal["step"]), None
    )
    if step is None:
        raise ForkError(409, f"the step of call {call_id!r} was not recorded")
    replay = Replay(ContinueConversation.from_messages(before.to_list()))
    for ev in log:
        if ev is step:
            break
        replay.feed(ev)
    # a lane's call: that lane's conversation (the heavy run's start, then the lane's steps)
    conv = replay.conversation if lane is None else replay.lane_before_step(run_id, step["step"])
    assert isinstance(conv, ContinueConversation)
    calls = step.get("tool_calls") or []
    idx = next((i for i, c in enumerate(calls) if c.get("id") == call_id), None)
    if idx is None:
        raise ForkError(409, f"call {call_id!r} is not in its step's recorded message")
    first = StepEnd(
        step=1,
        content=step.get("content", ""),
        reasoning=step.get("reasoning", ""),
        # earlier calls of that step already ran in the parent; the branch starts at this one
        tool_calls=[dict(c) for c in calls[idx:]],
        finish_reason=step.get("finish_reason"),
    )
    conv.skip_next_user = True
    return Fork(run_id, call_id, arguments, conv, first)


class ForkProvider:
    """Replays one recorded step first, then asks the real provider."""

    def __init__(self, inner: ChatProvider, first: StepEnd) -> None:
        self.inner = inner
        self.model = inner.model
        self.model_label = inner.model_label
        self.base_url = inner.base_url
        self._first: StepEnd | None = first

    def __getattr__(self, name: str) -> Any:
        # everything else is the inner provider's (demo, max_tokens, vision...): a fork of a demo
        # run is a demo run, and its run.start says so
        return getattr(self.inner, name)

    async def stream(
        self, conversation: Conversation, tools: list[dict[str, Any]], *, step: int
    ) -> AsyncIterator[Event]:
        if self._first is not None:
            first, self._first = self._first, None
            first.step = step
            first.ts = time.time()  # replayed now: not the parent's time, before this run began
            yield first
            return
        async for ev in self.inner.stream(conversation, tools, step=step):
            yield ev

    async def aclose(self) -> None:
        return None  # the inner provider belongs to the session


class ForkDecisions:
    """Decides the forked call with the person's code; everything else goes to ``inner``."""

    def __init__(self, inner: DecisionSource, call_id: str, arguments: str | None) -> None:
        self.inner = inner
        self.policy = inner.policy
        self.call_id = call_id
        self.arguments = arguments

    def decided_up_front(self, call_id: str) -> bool:
        """The forked call is decided here even where a tool's own config would not ask (an MCP
        server with ``"approve": "auto"``): the person's edit must be what runs."""
        return call_id == self.call_id

    async def decide(self, proposal: ToolProposed) -> Decision:
        if proposal.call_id == self.call_id:
            if self.arguments is None or self.arguments == proposal.arguments:
                return Decision("approve", by="user")
            return Decision("edit", arguments=self.arguments, by="user")
        return await self.inner.decide(proposal)
