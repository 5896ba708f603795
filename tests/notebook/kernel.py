"""A real ipykernel driven through jupyter_client, as the notebook tests' "frontend".

Button presses are sent the way JupyterLab 4.6 sends them: as widget ``comm_msg`` messages, on a
kernel subshell (JupyterLab's ``commsOverSubshells``), so the handler runs in the subshell's thread
exactly as in the browser.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import time
from collections.abc import Iterator
from typing import Any

from jupyter_client.manager import KernelManager

FAKE_KEY = "sk-k2lab-test-fake-key-4f9a2c"


class Kernel:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("K2LAB_", "MOONSHOT_", "OPENROUTER_"))
        }
        base.update(env or {})
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=base)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.subshell_id = self._create_subshell()
        self.run("%load_ext k2lab")
        self.run(
            "import json\n"
            "def _k2s():\n"
            "    return get_ipython().magics_manager.registry['K2Magics']._session\n"
        )

    def _create_subshell(self) -> str | None:
        msg = self.kc.session.msg("create_subshell_request", {})
        self.kc.control_channel.send(msg)
        reply = self.kc.control_channel.get_msg(timeout=10)
        return reply["content"].get("subshell_id")

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    # -- running code ------------------------------------------------------------------------------
    def run(self, code: str, timeout: float = 60) -> dict[str, Any]:
        """Execute a cell; returns its stdout, outputs (display_data etc.) and error, if any."""
        msg_id = self.kc.execute(code)
        out: dict[str, Any] = {"stdout": "", "outputs": [], "error": None}
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"cell did not finish in {timeout}s: {code[:80]!r}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out["stdout"] += content["text"]
            elif kind in ("display_data", "execute_result", "update_display_data"):
                out["outputs"].append({"type": kind, **content})
            elif kind == "error":
                out["error"] = content
            elif kind == "status" and content["execution_state"] == "idle":
                return out

    def value(self, expr: str) -> Any:
        """The JSON value of an expression evaluated in the kernel."""
        res = self.run(f"print(json.dumps({expr}))")
        if res["error"]:
            raise RuntimeError("\n".join(res["error"]["traceback"]))
        return json.loads(res["stdout"].strip().splitlines()[-1])

    def wait_for(self, expr: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            v = self.value(expr)
            if v:
                return v
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr} still false after {timeout}s")
            time.sleep(0.1)

    # -- the widget's buttons ---------------------------------------------------------------------
    def click(self, run_index: int, content: dict[str, Any]) -> None:
        """Send a button press to run ``run_index``'s widget, as JupyterLab does."""
        comm_id = self.value(f"_k2s().runs[{run_index}].widget.comm.comm_id")
        msg = self.kc.session.msg(
            "comm_msg",
            {"comm_id": comm_id, "data": {"method": "custom", "content": content}},
        )
        if self.subshell_id is not None:
            msg["header"]["subshell_id"] = self.subshell_id
        self.kc.shell_channel.send(msg)

    def events(self, run_index: int) -> list[dict[str, Any]]:
        return list(self.value(f"_k2s().runs[{run_index}].events"))

    def wait_pending(self, run_index: int, call_id: str, timeout: float = 30) -> None:
        self.wait_for(
            f"{call_id!r} in _k2s().runs[{run_index}].widget.state.pending_calls()", timeout
        )

    def wait_ended(self, run_index: int, timeout: float = 60) -> dict[str, Any]:
        self.wait_for(f"_k2s().runs[{run_index}].final is not None", timeout)
        return next(e for e in self.events(run_index) if e["type"] == "run.end")


@contextlib.contextmanager
def fake_key_kernel(setup: str = "") -> Iterator[Kernel]:
    """A ``%k2`` kernel whose runs go to the fake model (``--base-url``), sandboxes process-level;
    ``setup`` runs first (the notebook's own variables). The ``kernel`` fixture of
    ``tests/notebook/conftest.py`` is one per test module."""
    k = Kernel({"K2LAB_API_KEY": FAKE_KEY, "K2LAB_ISOLATION": "process"})
    try:
        if setup:
            res = k.run(setup)
            assert res["error"] is None, res["error"]
        yield k
    finally:
        k.close()
