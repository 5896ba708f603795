"""How a pending tool call gets decided: by a policy, or by a person through any face.

The loop asks a ``DecisionSource`` for each call. ``auto`` approves, ``never`` rejects, and ``ask``
parks a future per call that a widget button, a panel button or a terminal prompt resolves with
``PendingDecisions.resolve``. Deciding twice, or deciding a call that is not pending, is an error
the face can show (``DecisionError``), never a silent no-op.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from k2lab.events import DecisionKind, ToolProposed


@dataclass(slots=True, frozen=True)
class Decision:
    kind: DecisionKind
    arguments: str | None = None  # for "edit": the arguments to run instead
    feedback: str | None = None  # for "reject": what the model is told
    by: Literal["policy", "user"] = "user"


class DecisionError(Exception):
    """A decision that cannot be applied (unknown call, already decided, bad payload)."""


@runtime_checkable
class DecisionSource(Protocol):
    policy: str

    async def decide(self, proposal: ToolProposed) -> Decision: ...


class AutoApprove:
    policy = "auto"

    async def decide(self, proposal: ToolProposed) -> Decision:
        return Decision("approve", by="policy")


NEVER_FEEDBACK = "The user's approval policy is 'never': this tool call was not executed."


class RejectAll:
    policy = "never"

    async def decide(self, proposal: ToolProposed) -> Decision:
        return Decision("reject", feedback=NEVER_FEEDBACK, by="policy")


class PendingDecisions:
    """The ``ask`` policy: each call waits until someone resolves it.

    Calls are keyed by ``(run_id, call_id)`` (``tool.proposed.run_id``): Kimi's ids
    (``functions.python:0``) repeat across runs and heavy-mode lanes, so one source can serve a
    run and all its lanes, each call decided apart. ``resolve`` takes the run id, or finds the one
    waiting call with that id. ``approve_all()`` turns the rest of the run into ``auto`` (the
    "Approve all" button), and resolves whatever is pending now.
    """

    policy = "ask"

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], asyncio.Future[Decision]] = {}
        self._decided: set[tuple[str, str]] = set()
        self.auto = False

    @property
    def waiting(self) -> list[tuple[str, str]]:
        """Every ``(run_id, call_id)`` that waits for a person, in proposal order."""
        return [key for key, fut in self._pending.items() if not fut.done()]

    @property
    def pending(self) -> list[str]:
        """The call ids that wait (a call id twice when two runs' calls share it)."""
        return [cid for _, cid in self.waiting]

    async def decide(self, proposal: ToolProposed) -> Decision:
        if self.auto:
            return Decision("approve", by="policy")
        key = (proposal.run_id, proposal.call_id)
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            return await fut
        finally:
            self._pending.pop(key, None)
            self._decided.add(key)

    def _key(self, call_id: str, run_id: str | None) -> tuple[str, str]:
        if run_id is not None:
            return (run_id, call_id)
        waiting = [k for k in self.waiting if k[1] == call_id]
        if len(waiting) > 1:
            runs = ", ".join(k[0] or "(no run id)" for k in waiting)
            raise DecisionError(f"tool call {call_id!r} waits in several runs ({runs}): say which")
        done = [k for k in self._decided if k[1] == call_id]
        return (waiting or done or [("", call_id)])[0]

    def resolve(self, call_id: str, decision: Decision, *, run_id: str | None = None) -> None:
        key = self._key(call_id, run_id)
        fut = self._pending.get(key)
        if fut is None or fut.done():
            if key in self._decided or fut is not None:
                raise DecisionError(f"tool call {call_id!r} was already decided")
            raise DecisionError(f"no tool call {call_id!r} is waiting for a decision")
        if decision.kind == "edit" and decision.arguments is None:
            raise DecisionError("an edit needs the arguments to run")
        fut.set_result(decision)

    def approve_all(self) -> None:
        self.auto = True
        for key in self.waiting:
            self._pending[key].set_result(Decision("approve", by="user"))


def decision_source(policy: str) -> DecisionSource:
    if policy == "auto":
        return AutoApprove()
    if policy == "never":
        return RejectAll()
    if policy == "ask":
        return PendingDecisions()
    raise ValueError(f"unknown approval policy {policy!r} (use auto, ask or never)")
