"""The provider interface the agent loop talks to.

A provider streams one assistant turn. It yields ``ReasoningDelta`` / ``ContentDelta`` /
``Usage`` / ``Retry`` events as they arrive and ends with exactly one ``StepEnd`` carrying the
assembled message (content, reasoning, tool calls with their IDs byte-for-byte). It raises
``ProviderError`` when it gives up (after its own bounded retries).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from k2lab.agent.context import Conversation
    from k2lab.events import Event


class ProviderError(Exception):
    """A provider failure that retries did not fix. ``kind`` is shown to users."""

    def __init__(self, message: str, *, kind: str = "provider", status: int | None = None):
        super().__init__(message)
        self.kind = kind  # "provider", "context_overflow", "auth", "cut_stream", ...
        self.status = status


@runtime_checkable
class ChatProvider(Protocol):
    model: str
    #: The name shown to users ("offline demo model (scripted)" for the demo model).
    model_label: str
    base_url: str

    def stream(
        self, conversation: Conversation, tools: list[dict[str, Any]], *, step: int
    ) -> AsyncIterator[Event]: ...

    async def aclose(self) -> None: ...
