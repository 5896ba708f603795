"""``%k2 --in-kernel``: the "sandbox" is the notebook's own IPython shell. No isolation at all.

Tool code runs with ``shell.run_cell`` on the kernel's main thread, between the person's own cells
(the agent runs on the kernel's event loop, so nothing runs concurrently with a cell), in the user
namespace: the model can read and change live DataFrames. Output is captured (stdout, stderr, rich
displays, the traceback of an error) instead of going to the notebook, and bounded like the
sandbox kernel's. Known secrets (the API key) are scrubbed from what the model reads, because this
kernel's environment holds them. A timeout interrupts the code with a ``TimeoutError`` raised from
a SIGALRM handler (main thread only); code that ignores signals cannot be stopped this way.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from typing import Any

from k2lab.sandbox.base import ExecutionResult
from k2lab.sandbox.output import OutputCollector, strip_ansi
from k2lab.scrub import Scrubber, env_secrets

ISOLATION_NOTE = (
    "in-kernel: NO sandbox. Tool code runs in this notebook's kernel with your variables, files, "
    "network and credentials."
)


class _Timeout(Exception):
    pass


class InKernelSandbox:
    isolation = "in-kernel"
    isolation_note = ISOLATION_NOTE
    network = True

    def __init__(
        self,
        shell: Any,
        *,
        secrets: list[str] | None = None,
        model_chars: int = 12_000,
        display_bytes: int = 1024**2,
    ) -> None:
        self.shell = shell
        self.secrets = [s for s in (secrets or []) if len(s) >= 4]
        self._scrubber = Scrubber([*self.secrets, *env_secrets()])  # k2lab.scrub: the one scrubber
        self.model_chars = model_chars
        self.display_bytes = display_bytes

    async def start(self) -> None:
        return None

    async def restart(self) -> None:
        return None  # the person's kernel is theirs to restart

    async def shutdown(self) -> None:
        return None

    def _scrub(self, text: str) -> str:
        return self._scrubber.exact(text)

    async def execute(self, code: str, *, timeout: float) -> ExecutionResult:
        from IPython.utils.capture import capture_output

        out = OutputCollector(self.model_chars, self.display_bytes)
        t0 = time.perf_counter()
        timed_out = False
        shell = self.shell
        # the shell would publish the traceback itself; we capture it into the result instead
        saved_showtb = shell._showtraceback
        shell._showtraceback = lambda *a, **k: None
        # the value of the last expression goes to the result, not to the notebook
        results: list[tuple[dict[str, Any], dict[str, Any]]] = []
        hook = shell.displayhook
        hook.write_format_data = lambda data, md=None: results.append((data, md or {}))
        hook.finish_displayhook = lambda: None
        alarm = threading.current_thread() is threading.main_thread() and timeout > 0
        old_handler: Any = None
        if alarm:

            def _on_alarm(_sig: int, _frame: Any) -> None:
                raise _Timeout()

            old_handler = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            with capture_output(display=True) as cap:
                result = shell.run_cell(code, store_history=False, silent=False)
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_handler)
            shell._showtraceback = saved_showtb
            del hook.write_format_data, hook.finish_displayhook  # back to the class's methods
        if cap.stdout:
            out.handle({"msg_type": "stream", "content": {"text": cap.stdout}})
        if cap.stderr:
            out.handle({"msg_type": "stream", "content": {"text": cap.stderr}})
        for o in cap.outputs:
            out.handle(
                {"msg_type": "display_data", "content": {"data": o.data, "metadata": o.metadata}}
            )
        for data, md in results:
            out.handle({"msg_type": "execute_result", "content": {"data": data, "metadata": md}})
        err = result.error_before_exec or result.error_in_exec
        if isinstance(err, _Timeout):
            timed_out = True
            out.handle(
                {
                    "msg_type": "stream",
                    "content": {"text": f"TimeoutError: interrupted after {timeout:g} s\n"},
                }
            )
        elif err is not None:
            tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
            out.handle(
                {
                    "msg_type": "error",
                    "content": {
                        "ename": type(err).__name__,
                        "evalue": str(err),
                        "traceback": [strip_ansi(tb)],
                    },
                }
            )
        text = self._scrub(out.model_text())
        display = [
            {
                "data": {
                    k: self._scrub(v) if isinstance(v, str) else v for k, v in d["data"].items()
                },
                "metadata": self._scrubber.value(d["metadata"]),
            }
            for d in out.people_display()
        ]
        return ExecutionResult(
            ok=err is None,
            text=text,
            display=display,
            truncated=out.truncated,
            timed_out=timed_out,
            duration=time.perf_counter() - t0,
        )
