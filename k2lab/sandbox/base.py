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


@dataclass(slots=True)
class Limits:
    """Resource limits for one sandbox. 0 turns a limit off."""

    #: Address space of the kernel process (RLIMIT_AS), bytes.
    memory: int = 2 * 1024**3
    #: CPU seconds for the whole kernel session (RLIMIT_CPU); a kernel that uses them up dies and
    #: is restarted with a fresh budget.
    cpu_seconds: int = 3600
    #: Largest file the code may write (RLIMIT_FSIZE), bytes.
    file_size: int = 256 * 1024**2
    #: Processes/threads (a pids cgroup where writable, else RLIMIT_NPROC, which Linux does not
    #: enforce for root).
    processes: int = 256
    #: Total size of the workspace directory (and the kernel's socket directory), bytes: blocks
    #: plus 1 KiB per entry, checked in a thread every half second or so while the kernel lives,
    #: between calls too (``k2lab.sandbox.quota``).
    workspace_size: int = 1024**3
    #: Entries (files, folders, links) in the workspace, counted like ``workspace_size``.
    workspace_files: int = 100_000
    #: Size of each private tmpfs under bwrap (/tmp, /var/tmp, /dev/shm; /run gets at most
    #: 16 MiB), bytes; the rest of the sandbox's file system is read-only.
    tmp_size: int = 256 * 1024**2
    #: Characters of output the model reads per call (head and tail kept).
    model_chars: int = 12_000
    #: Bytes of output kept for people per call (head and tail kept).
    display_bytes: int = 1024**2
    #: Seconds to wait after an interrupt before restarting a kernel that is still busy.
    interrupt_grace: float = 2.0
    #: Largest value moved by ``put``/``get``, bytes (pickled).
    transfer_bytes: int = 64 * 1024**2


@runtime_checkable
class Sandbox(Protocol):
    isolation: str

    async def start(self) -> None: ...

    async def execute(self, code: str, *, timeout: float) -> ExecutionResult: ...

    async def restart(self) -> None: ...

    async def shutdown(self) -> None: ...
