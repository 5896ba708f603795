"""What every kernel sandbox (local ``SandboxKernel``, remote ``GatewaySandbox``) does the same
around one call: settle a cancelled earlier call, say what an interrupt or a restart cost, turn a
client error into a result, and build the result the model reads.

The transports differ (ZMQ through jupyter_client, a WebSocket to a gateway) and so do the fault
checks only a local kernel can make (quota, fork storms); those stay in each class. One wording
for the model, whichever sandbox ran the code.
"""

from __future__ import annotations

import time

from k2lab.sandbox.base import ExecutionResult, Limits
from k2lab.sandbox.output import OutputCollector

LOST = "all variables were lost"


def interrupt_note(what: str, *, stopped: bool) -> str:
    """The note after a timeout or a limit: the interrupt stopped the call, or a restart did."""
    if stopped:
        return f"[{what}: the call was interrupted; the kernel's variables are kept.]"
    return f"[{what}: the interrupt did not stop it, so the kernel was restarted; {LOST}.]"


def call_result(
    out: OutputCollector, note: str, settled: str, *, timed_out: bool, restarted: bool
) -> ExecutionResult:
    """The result of a call from what was collected, the fault note and the settle note."""
    text = out.model_text()
    if note:
        text = (text.rstrip("\n") + "\n" + note) if text.strip() else note
    if settled:
        text = f"{settled}\n{text}"
        restarted = True
    return ExecutionResult(
        ok=out.error is None and not note,
        text=text,
        display=out.people_display(),
        truncated=out.truncated,
        timed_out=timed_out,
        restarted=restarted,
    )


class KernelCalls:
    """Shared call handling; the class provides ``limits``, ``_abandoned`` (the msg id of a
    call cancelled under us), ``_collect`` and ``restart``."""

    limits: Limits
    _abandoned: str | None

    async def _collect(self, msg_id: str, out: OutputCollector, deadline: float) -> str:
        raise NotImplementedError

    async def restart(self) -> None:
        raise NotImplementedError

    async def _recover(self, status: str) -> None:
        """A fresh kernel after a call ended ``status`` (not idle): a restart here; a gateway
        sandbox joins the gateway's own restart instead when that is what happened."""
        await self.restart()

    async def _settle(self) -> str:
        """Wait for a cancelled call to finish (it was interrupted); restart if it does not."""
        abandoned, self._abandoned = self._abandoned, None
        if abandoned is None:
            return ""
        scratch = OutputCollector(100, 100)
        deadline = time.monotonic() + self.limits.interrupt_grace
        status = await self._collect(abandoned, scratch, deadline)
        if status == "idle":
            return ""
        await self._recover(status)
        return (
            "[A cancelled earlier call did not stop when interrupted, so the kernel was "
            f"restarted before this call; {LOST}.]"
        )

    async def _after_client_error(self, e: Exception) -> ExecutionResult:
        """A client error left the kernel in an unknown state: restart it, say so."""
        try:
            await self.restart()
            after = f"The kernel was restarted; {LOST}."
        except Exception as e2:
            after = f"Restarting the kernel failed too ({e2}); the next call retries."
        return ExecutionResult(ok=False, text=f"[Sandbox error: {e}. {after}]", restarted=True)
