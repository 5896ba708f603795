"""Rebuilding conversations from recorded events: ``--resume`` and "Fork from here".

A fork re-runs a run from one of its tool calls, with the code the person chose, and lets the model
continue as a new branch (a new run whose ``run.start`` names the parent run and the call). It is
built from the record, without the model re-generating anything before the call:

- the conversation is what the model had before the parent run, plus the parent run's prompt and
  every step before the call's step with its recorded tool results;
- the fork's first step is the recorded assistant message of the call's step (``ForkProvider``
  replays it instead of asking the model), keeping the calls from the chosen one on;
- the chosen call is decided up front (``ForkDecisions``): "edit" with the new code, or "approve"
  when the code is unchanged; later calls of that step are decided as usual;
- the sandbox is NOT rewound: the call runs in the sandbox's current state (say so to users).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import Decision, DecisionSource
from k2lab.agent.loop import STOPPED_BEFORE_RUN
from k2lab.events import Event, StepEnd, ToolProposed
from k2lab.providers.base import ChatProvider


class ContinueConversation(Conversation):
    """A conversation whose next ``add_user`` is skipped once (a fork continues; nobody spoke)."""

    skip_next_user = False

    def add_user(self, text: str) -> None:
        if self.skip_next_user:
            self.skip_next_user = False
            return
        super().add_user(text)


def _replay_steps(conv: Conversation, events: list[dict[str, Any]], upto_step: int | None) -> None:
    """Append a run's prompt, then its steps (< ``upto_step``) with their recorded results."""
    results = {e["call_id"]: e["output"] for e in events if e.get("type") == "tool.result"}
    for ev in events:
        kind = ev.get("type")
        if kind == "run.start" and not ev.get("forked_from_call"):
            conv.add_user(ev["prompt"])
        elif kind == "step.end":
            if upto_step is not None and ev["step"] >= upto_step:
                break
            calls = ev.get("tool_calls") or []
            conv.add_assistant(ev.get("content", ""), ev.get("reasoning", ""), calls)
            for c in calls:
                conv.add_tool_result(c["id"], results.get(c["id"], STOPPED_BEFORE_RUN))


def conversation_from_runs(
    runs: list[list[dict[str, Any]]], system: str, *, cls: type[Conversation] = Conversation
) -> Conversation:
    """The conversation a series of recorded runs left behind (for ``%k2 --resume``).

    Forked runs start from their own replayed message; their prompt is not a user turn.
    """
    conv = cls(system)
    for events in runs:
        _replay_steps(conv, events, None)
    return conv


def fork_point(events: list[dict[str, Any]], call_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``step.end`` holding ``call_id`` and the call's recorded proposal."""
    proposal = next(
        (e for e in events if e.get("type") == "tool.proposed" and e["call_id"] == call_id), None
    )
    if proposal is None:
        raise ValueError(f"no tool call {call_id!r} in this run")
    step = next(
        (e for e in events if e.get("type") == "step.end" and e["step"] == proposal["step"]), None
    )
    if step is None:
        raise ValueError(f"the step of call {call_id!r} was not recorded")
    return step, proposal


def fork_conversation(
    before: list[dict[str, Any]], events: list[dict[str, Any]], call_id: str
) -> tuple[ContinueConversation, StepEnd]:
    """The conversation up to the fork point, and the step the fork replays first."""
    step, _ = fork_point(events, call_id)
    conv = ContinueConversation.from_messages(before)
    assert isinstance(conv, ContinueConversation)
    # a parent that was itself a fork has no prompt of its own: the replay starts at its steps
    _replay_steps(conv, events, step["step"])
    calls = step.get("tool_calls") or []
    idx = next(i for i, c in enumerate(calls) if c["id"] == call_id)
    first = StepEnd(
        step=1,
        content=step.get("content", ""),
        reasoning=step.get("reasoning", ""),
        # earlier calls of that step already ran in the parent; the branch starts at this one
        tool_calls=[dict(c) for c in calls[idx:]],
        finish_reason=step.get("finish_reason"),
    )
    conv.skip_next_user = True
    return conv, first


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

    async def decide(self, proposal: ToolProposed) -> Decision:
        if proposal.call_id == self.call_id:
            if self.arguments is None or self.arguments == proposal.arguments:
                return Decision("approve", by="user")
            return Decision("edit", arguments=self.arguments, by="user")
        return await self.inner.decide(proposal)
