"""A sandbox kernel on a Jupyter gateway (Enterprise Gateway or Kernel Gateway).

REST (``POST /api/kernels``, ``/interrupt``, ``/restart``, ``DELETE``) plus one WebSocket on
``/api/kernels/{id}/channels`` carrying the token in an ``Authorization`` header (jupyter_server
2.21's own gateway client drops it there). Output is bounded by the same ``OutputCollector`` as
the local sandbox; timeouts interrupt and then restart; a kernel that died is restarted.

Key rule: the start request's ``env`` holds only ``KERNEL_USERNAME`` (EG refuses kernels for
root without it); nothing of this process's environment is sent.

Isolation is ``remote``: whatever the gateway's kernel image provides. With the ``k2lab-sandbox``
kernelspec in that image (k2lab installed there) the launcher applies the same rlimits and bwrap
confinement as locally, except that the kernel's ports must stay reachable by the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import time
import uuid
from typing import Any

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from k2lab.sandbox.base import ExecutionResult, Limits
from k2lab.sandbox.calls import LOST, KernelCalls, call_result, interrupt_note
from k2lab.sandbox.output import OutputCollector

DEFAULT_KERNEL = "k2lab-sandbox"


def gateway_from_env() -> tuple[str, str]:
    """(url, token) from Jupyter's own variables (``JUPYTER_GATEWAY_URL``/``_AUTH_TOKEN``)."""
    return (
        os.environ.get("JUPYTER_GATEWAY_URL", "").strip(),
        os.environ.get("JUPYTER_GATEWAY_AUTH_TOKEN", "").strip(),
    )


class GatewaySandbox(KernelCalls):
    """A ``Sandbox`` whose kernel lives on a Jupyter gateway."""

    isolation = "remote"

    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        kernel_name: str = DEFAULT_KERNEL,
        limits: Limits | None = None,
        username: str = "",
        start_timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.kernel_name = kernel_name
        self.limits = limits or Limits()
        self.start_timeout = start_timeout
        self._token = token
        self._username = username or _username()
        self.kernel_id = ""
        self._session = uuid.uuid4().hex
        self._ws: WebSocketClientConnection | None = None
        self._http: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        #: msg_id of a call cancelled mid-run (the next call waits for it, or restarts)
        self._abandoned: str | None = None
        self._running: str | None = None  # the msg id of the call in progress
        self.isolation_note = (
            f"remote kernel on {self.url} ({kernel_name}): isolation is what the gateway's "
            "kernel image provides"
        )

    # -- plumbing -------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self._token}"} if self._token else {}

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.url, headers=self._headers(), timeout=self.start_timeout
            )
        return self._http

    async def _rest(self, method: str, path: str, body: Any = None) -> Any:
        r = await self._client().request(method, path, json=body)
        if r.status_code >= 400:
            raise RuntimeError(f"gateway {method} {path}: HTTP {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def _start_env(self) -> dict[str, str]:
        # gateways pass a kernel only its kernelspec's env and the request's KERNEL_* variables:
        # the sandbox's limits live in the kernelspec of the gateway's image (see the README)
        return {"KERNEL_USERNAME": self._username}

    async def _open_ws(self) -> None:
        ws_url = self.url.replace("http", "ws", 1)
        req = HTTPRequest(
            f"{ws_url}/api/kernels/{self.kernel_id}/channels?session_id={self._session}",
            headers=self._headers(),
            connect_timeout=self.start_timeout,
        )
        self._ws = await websocket_connect(req, max_message_size=256 * 1024**2)

    async def _close_ws(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def _send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "session": self._session,
                "username": self._username,
                "version": "5.3",
                "date": "",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }
        assert self._ws is not None
        self._ws.write_message(json.dumps(msg))
        return msg_id

    async def _recv(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None on timeout; raises ConnectionError when the socket closed."""
        assert self._ws is not None
        try:
            raw = await asyncio.wait_for(self._ws.read_message(), max(timeout, 0.001))
        except TimeoutError:
            return None
        if raw is None:
            raise ConnectionError("the gateway closed the kernel's WebSocket")
        if isinstance(raw, bytes):  # binary frames carry buffers; we keep none
            return {}
        msg: dict[str, Any] = json.loads(raw)
        return msg

    async def _wait_ready(self, deadline: float) -> None:
        """``kernel_info`` until the kernel has answered on shell AND iopub has delivered the
        status of one of those requests.

        A reply alone is not enough: the gateway subscribes to the kernel's iopub for each new
        WebSocket, and ZMQ drops what the kernel publishes before that subscription is live, so
        the first call after a (re)start could lose its output and read as an empty success
        (``test_restart_after_crash`` flaked that way). A request is sent again every half
        second until both came: the kernel may still be booting, or the gateway restarting it
        (its own auto-restart), whose ``restarting`` status is ignored here.
        """
        pending: set[str] = set()
        replied = published = False
        while time.monotonic() < deadline:
            pending.add(self._send("kernel_info_request", {}))
            step = min(time.monotonic() + 0.5, deadline)
            while time.monotonic() < step:
                msg = await self._recv(step - time.monotonic())
                if not msg:
                    continue
                if msg.get("msg_type") == "status" and msg["content"].get("execution_state") == (
                    "dead"
                ):
                    raise RuntimeError("the gateway reports the kernel dead (its restart failed)")
                if msg.get("parent_header", {}).get("msg_id") not in pending:
                    continue
                if msg.get("msg_type") == "kernel_info_reply":
                    replied = True
                elif msg.get("msg_type") == "status" and msg.get("channel") == "iopub":
                    published = True
                if replied and published:
                    return
        raise TimeoutError("the remote kernel did not answer kernel_info")

    async def _reconnect(self) -> None:
        """A fresh WebSocket (and session) to the same kernel, once it answers: after the
        gateway restarted the kernel itself. Our own restart if it does not come back."""
        await self._close_ws()
        self._abandoned = None
        self._session = uuid.uuid4().hex
        try:
            await self._open_ws()
            await self._wait_ready(time.monotonic() + self.start_timeout)
        except Exception:
            await self.restart()

    async def _recover(self, status: str) -> None:
        """After a fault: join the gateway's own restart (a second one, ours, would race it and
        could be undone by it), else restart the kernel ourselves."""
        if status == "restarted":
            await self._reconnect()
        else:
            await self.restart()

    # -- Sandbox --------------------------------------------------------------------------------

    async def start(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        body = {"name": self.kernel_name, "env": self._start_env()}
        info = await self._rest("POST", "/api/kernels", body)
        self.kernel_id = info["id"]
        await self._open_ws()
        await self._wait_ready(deadline)

    async def _alive(self) -> bool:
        try:
            r = await self._client().get(f"/api/kernels/{self.kernel_id}")
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and r.json().get("execution_state") != "dead"

    async def restart(self) -> None:
        """A fresh kernel: the gateway's restart when it still knows the kernel, else a new one."""
        await self._close_ws()
        self._abandoned = None
        restarted = False
        if self.kernel_id:
            with contextlib.suppress(Exception):
                await self._rest("POST", f"/api/kernels/{self.kernel_id}/restart", {})
                restarted = True
        if not restarted:
            if self.kernel_id:
                with contextlib.suppress(Exception):
                    await self._rest("DELETE", f"/api/kernels/{self.kernel_id}")
            self.kernel_id = ""
            await self.start()
            return
        self._session = uuid.uuid4().hex  # no replay of the old kernel's buffered output
        await self._open_ws()
        await self._wait_ready(time.monotonic() + self.start_timeout)

    async def interrupt(self) -> None:
        if self.kernel_id:
            with contextlib.suppress(Exception):
                await self._rest("POST", f"/api/kernels/{self.kernel_id}/interrupt", {})

    async def shutdown(self) -> None:
        self._closed = True
        await self._close_ws()
        if self.kernel_id:
            with contextlib.suppress(Exception):
                await self._rest("DELETE", f"/api/kernels/{self.kernel_id}")
            self.kernel_id = ""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> GatewaySandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def _collect(self, msg_id: str, out: OutputCollector, deadline: float) -> str:
        next_check = time.monotonic() + 2.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return "timeout"
            if now >= next_check:
                next_check = now + 2.0
                if not await self._alive():
                    return "died"
            try:
                msg = await self._recv(min(deadline - now, 0.5))
            except ConnectionError:
                return "died"
            if not msg:
                continue
            if msg.get("msg_type") == "status" and msg["content"].get("execution_state") in (
                "starting",
                "restarting",
            ):
                # the gateway restarted the kernel itself (its auto-restart after a crash)
                return "restarted"
            if msg.get("channel") != "iopub":
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                if msg["content"].get("execution_state") == "idle":
                    return "idle"
                continue
            out.handle(msg)

    async def execute(self, code: str, *, timeout: float) -> ExecutionResult:
        if self._closed:
            return ExecutionResult(ok=False, text="[The sandbox was shut down.]")
        async with self._lock:
            t0 = time.monotonic()
            note_before = ""
            try:
                if not self.kernel_id:
                    await self.start()
                elif self._ws is None or not await self._alive():
                    await self.restart()
                    note_before = (
                        "[The remote kernel had died since the last call; it was restarted and "
                        "all variables were lost.]"
                    )
            except Exception as e:
                return ExecutionResult(
                    ok=False,
                    text=f"[The remote sandbox kernel could not be started: {e}]",
                    duration=time.monotonic() - t0,
                )
            try:
                result = await self._run(code, timeout, t0)
            except asyncio.CancelledError:
                self._abandoned, self._running = self._running, None
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(self.interrupt()), 2.0)
                raise
            except Exception as e:
                result = await self._after_client_error(e)
            if note_before:
                result.text = note_before + "\n" + result.text
                result.restarted = True
            result.duration = time.monotonic() - t0
            return result

    async def _run(self, code: str, timeout: float, t0: float) -> ExecutionResult:
        out = OutputCollector(self.limits.model_chars, self.limits.display_bytes)
        settled = await self._settle()
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        msg_id = self._send("execute_request", content)
        self._running = msg_id
        status = await self._collect(msg_id, out, t0 + timeout)
        self._running = None
        note = ""
        restarted = timed_out = False
        if status == "timeout":
            timed_out = True
            await self.interrupt()
            status = await self._collect(
                msg_id, out, time.monotonic() + self.limits.interrupt_grace
            )
            what = f"Timed out after {timeout:g} s"
            if status != "idle":
                await self._recover(status)
                restarted = True
            note = interrupt_note(what, stopped=status == "idle")
        elif status in ("died", "restarted"):
            await self._recover(status)
            restarted = True
            note = f"[The remote kernel died; it was restarted and {LOST}.]"
        return call_result(out, note, settled, timed_out=timed_out, restarted=restarted)


def _username() -> str:
    """This user's name for ``KERNEL_USERNAME``; root (which EG refuses by default) is "k2lab"."""
    try:
        name = getpass.getuser()
    except Exception:
        name = ""
    return name if name and name != "root" else "k2lab"


async def open_gateway_sandbox(settings: Any) -> GatewaySandbox:
    """A started ``GatewaySandbox`` on ``settings.gateway_url`` (``k2lab.runtime.open_sandbox``
    calls this when a gateway is set)."""
    sandbox = GatewaySandbox(settings.gateway_url, token=settings.gateway_token)
    try:
        await sandbox.start()
    except BaseException:
        await sandbox.shutdown()
        raise
    return sandbox
