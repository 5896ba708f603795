"""The sandbox interface the ``python`` tool uses.

Implementations: the isolated kernel (``k2lab.sandbox.kernel``), and the user's own kernel for
``%k2 --in-kernel``. Every failure (timeout, crash, memory) comes back as an ``ExecutionResult``
with ``ok=False`` and an explanation, never as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: Isolation levels, strongest first. "in-kernel" means no sandbox at all (the user's kernel).
ISOLATION_LEVELS = ("bwrap", "process", "remote", "in-kernel")


@dataclass(slots=True)
class ExecutionResult:
    ok: bool
    #: Bounded text rendering for the model: stdout, stderr, results, errors (head + tail kept).
    text: str
    #: Rich outputs for people: [{"data": {mime: value}, "metadata": {...}}].
    display: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    timed_out: bool = False
    #: True when the kernel was restarted during or after this call: its state is gone.
    restarted: bool = False
    duration: float = 0.0


@runtime_checkable
class Sandbox(Protocol):
    isolation: str

    async def start(self) -> None: ...

    async def execute(self, code: str, *, timeout: float) -> ExecutionResult: ...

    async def restart(self) -> None: ...

    async def shutdown(self) -> None: ...
