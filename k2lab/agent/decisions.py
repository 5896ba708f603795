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

    ``approve_all()`` turns the rest of the run into ``auto`` (the "Approve all" button), and
    resolves whatever is pending now.
    """

    policy = "ask"

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[Decision]] = {}
        self._decided: set[str] = set()
        self.auto = False

    @property
    def pending(self) -> list[str]:
        return [cid for cid, fut in self._pending.items() if not fut.done()]

    async def decide(self, proposal: ToolProposed) -> Decision:
        if self.auto:
            return Decision("approve", by="policy")
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending[proposal.call_id] = fut
        try:
            return await fut
        finally:
            self._pending.pop(proposal.call_id, None)
            self._decided.add(proposal.call_id)

    def resolve(self, call_id: str, decision: Decision) -> None:
        fut = self._pending.get(call_id)
        if fut is None or fut.done():
            if call_id in self._decided or fut is not None:
                raise DecisionError(f"tool call {call_id!r} was already decided")
            raise DecisionError(f"no tool call {call_id!r} is waiting for a decision")
        if decision.kind == "edit" and decision.arguments is None:
            raise DecisionError("an edit needs the arguments to run")
        fut.set_result(decision)

    def approve_all(self) -> None:
        self.auto = True
        for cid in self.pending:
            self._pending[cid].set_result(Decision("approve", by="user"))


def decision_source(policy: str) -> DecisionSource:
    if policy == "auto":
        return AutoApprove()
    if policy == "never":
        return RejectAll()
    if policy == "ask":
        return PendingDecisions()
    raise ValueError(f"unknown approval policy {policy!r} (use auto, ask or never)")
