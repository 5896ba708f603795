"""Who decides a tool call in a panel session.

The session's approval policy (ask / auto / never) applies to the ``python`` sandbox tool and to
reading the notebook. Tools flagged ``always_ask`` (``k2lab.tools.base``: they change the user's
notebook or run code in the user's own kernel, outside any sandbox) always wait for a person,
unless the user chose ``auto`` for this session themselves (in the panel's session settings) or
pressed "Approve all" for the current run. A server-wide default of ``auto`` does not count as that
choice. The policy reads the tools' flag (``always_ask_names``), never a list of tool names.

A call waiting for a person is known by ``(run_id, call_id)``: each run gets its own table, so an
id the model (or an engine's fallback) repeats in a later run never collides with an earlier one,
and an id repeated inside one run is answered at once (rejected) rather than waiting on a decision
that can never be sent. A heavy run's lanes (run ids ``RUN.1`` .. ``RUN.N``) are runs of their own
here: each lane gets its table, so the same call id in two lanes is two cards, decided apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from k2lab.agent.decisions import NEVER_FEEDBACK, Decision, DecisionError
from k2lab.events import ToolProposed
from k2lab.tools.base import Tool, always_ask


def always_ask_names(tools: Iterable[Tool]) -> frozenset[str]:
    """The names of the tools that act outside the sandbox (their ``always_ask`` flag)."""
    return frozenset(t.name for t in tools if always_ask(t))


DUPLICATE_FEEDBACK = (
    "[not run: this tool call repeats the id {call_id!r} of another call in this run, so no one "
    "could approve it; send each call with its own id]"
)


class RunPending:
    """The calls of one run that wait for a person, by call id."""

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self._pending: dict[str, asyncio.Future[Decision]] = {}
        self._seen: set[str] = set()
        self.auto = False

    @property
    def pending(self) -> list[str]:
        return [cid for cid, fut in self._pending.items() if not fut.done()]

    async def decide(self, proposal: ToolProposed) -> Decision:
        cid = proposal.call_id
        if not cid or cid in self._seen:
            return Decision("reject", feedback=DUPLICATE_FEEDBACK.format(call_id=cid), by="policy")
        self._seen.add(cid)
        if self.auto:
            return Decision("approve", by="policy")
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        try:
            return await fut
        finally:
            self._pending.pop(cid, None)

    def resolve(self, call_id: str, decision: Decision) -> None:
        fut = self._pending.get(call_id)
        if fut is None or fut.done():
            if call_id in self._seen:
                raise DecisionError(f"tool call {call_id!r} was already decided")
            raise DecisionError(f"no tool call {call_id!r} is waiting for a decision")
        if decision.kind == "edit" and decision.arguments is None:
            raise DecisionError("an edit needs the arguments to run")
        fut.set_result(decision)

    def approve_all(self) -> None:
        self.auto = True
        for cid in self.pending:
            self._pending[cid].set_result(Decision("approve", by="user"))


class SessionDecisions:
    """A ``DecisionSource``: the session policy, with ``always_ask`` tools held for a person.

    ``tools`` are the session's tools: the ones flagged ``always_ask`` are held under ``auto``."""

    def __init__(
        self, policy: str, *, user_chose_auto: bool = False, tools: Iterable[Tool] = ()
    ) -> None:
        if policy not in ("ask", "auto", "never"):
            raise ValueError(f"unknown approval policy {policy!r} (use ask, auto or never)")
        self.policy = policy
        self.user_chose_auto = user_chose_auto
        self.always_ask = always_ask_names(tools)
        self.pending = RunPending()
        #: the tables of the current heavy run's lanes, by lane run id
        self.lanes: dict[str, RunPending] = {}

    @property
    def run_id(self) -> str:
        return self.pending.run_id

    def new_run(self, run_id: str = "") -> None:
        """A fresh table per run: "Approve all" lasts for one run, ids are the run's own."""
        self.pending = RunPending(run_id)
        self.lanes = {}

    def is_current(self, run_id: str) -> bool:
        """``run_id`` is the current run or one of its heavy lanes."""
        cur = self.pending.run_id
        return run_id == cur or (bool(cur) and run_id.startswith(cur + "."))

    def table(self, run_id: str | None) -> RunPending | None:
        """The table of the current run (``None``/its id) or of one of its lanes."""
        if not run_id or run_id == self.pending.run_id:
            return self.pending
        return self.lanes.get(run_id) if self.is_current(run_id) else None

    def waiting(self) -> list[tuple[str, str]]:
        """Every ``(run_id, call_id)`` that waits for a person, the run's then its lanes'."""
        tables = [self.pending, *self.lanes.values()]
        return [(t.run_id, cid) for t in tables for cid in t.pending]

    def approve_all(self) -> None:
        """Approve what waits, in the run and all its lanes, and the rest of the run."""
        for t in [self.pending, *self.lanes.values()]:
            t.approve_all()

    def _table_for(self, proposal: ToolProposed) -> RunPending:
        rid = proposal.run_id
        if not rid or rid == self.pending.run_id or not self.is_current(rid):
            return self.pending
        t = self.lanes.get(rid)
        if t is None:
            t = self.lanes[rid] = RunPending(rid)
            t.auto = self.pending.auto  # "Approve all" pressed before this lane's first call
        return t

    async def decide(self, proposal: ToolProposed) -> Decision:
        if self.policy == "never":
            return Decision("reject", feedback=NEVER_FEEDBACK, by="policy")
        if self.policy == "auto" and (self.user_chose_auto or proposal.name not in self.always_ask):
            return Decision("approve", by="policy")
        return await self._table_for(proposal).decide(proposal)
