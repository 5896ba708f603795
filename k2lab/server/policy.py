"""Who decides a tool call in a panel session.

The session's approval policy (ask / auto / never) applies to the ``python`` sandbox tool and to
reading the notebook. Tools that change the user's notebook or run code in the user's own kernel
are different: they are not sandboxed, so they always wait for a person, unless the user chose
``auto`` for this session themselves (in the panel's session settings) or pressed "Approve all"
for the current run. A server-wide default of ``auto`` does not count as that choice.
"""

from __future__ import annotations

from k2lab.agent.decisions import NEVER_FEEDBACK, Decision, PendingDecisions
from k2lab.events import ToolProposed

#: Tools that act outside the sandbox, on the user's notebook and kernel.
ALWAYS_ASK = frozenset({"notebook_insert_cell", "notebook_replace_cell", "notebook_run_cell"})


class SessionDecisions:
    """A ``DecisionSource``: the session policy, with ``ALWAYS_ASK`` tools held for a person."""

    def __init__(self, policy: str, *, user_chose_auto: bool = False) -> None:
        if policy not in ("ask", "auto", "never"):
            raise ValueError(f"unknown approval policy {policy!r} (use ask, auto or never)")
        self.policy = policy
        self.user_chose_auto = user_chose_auto
        self.pending = PendingDecisions()

    def new_run(self) -> None:
        """ "Approve all" lasts for one run; a new message starts asking again."""
        self.pending.auto = False

    async def decide(self, proposal: ToolProposed) -> Decision:
        if self.policy == "never":
            return Decision("reject", feedback=NEVER_FEEDBACK, by="policy")
        if self.policy == "auto" and (self.user_chose_auto or proposal.name not in ALWAYS_ASK):
            return Decision("approve", by="policy")
        return await self.pending.decide(proposal)
