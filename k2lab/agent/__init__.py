"""The agent engine: async, face-agnostic; yields ``k2lab.events``."""

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import Decision, DecisionError, PendingDecisions, decision_source
from k2lab.agent.loop import Agent, Budgets

__all__ = [
    "Agent",
    "Budgets",
    "Conversation",
    "Decision",
    "DecisionError",
    "PendingDecisions",
    "decision_source",
]
