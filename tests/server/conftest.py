"""A real Jupyter server with the k2lab extension, for the handler tests (pytest-jupyter).

pytest-jupyter's fixtures are imported here rather than enabled as a plugin, so they (and their
event-loop fixture) exist only under ``tests/server``. Its two collection hooks are dropped: with
pytest-asyncio in auto mode, pytest-asyncio runs the async tests, and ``jp_asyncio_loop`` is
pointed at pytest-asyncio's loop so the server, its HTTP client and the test share one loop.

The model is the ``fake_model`` (real HTTP); the sandbox is a real kernel started through the
server's own kernel manager, with the ``k2lab-sandbox`` kernelspec written into the test's data dir.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.httpclient import HTTPClientError

from k2lab.sandbox.managers import KERNEL_NAME, write_kernelspec

del pytest_pycollect_makeitem, pytest_pyfunc_call  # noqa: F821

API_KEY = "sk-test-not-a-real-key-0123456789"


@pytest.fixture
def jp_asyncio_loop(_function_scoped_runner):  # type: ignore[no-untyped-def]
    yield _function_scoped_runner.get_loop()


@pytest.fixture
def sessions_dir(tmp_path: Path) -> Path:
    return tmp_path / "k2lab-sessions"


@pytest.fixture
def k2_config() -> dict[str, Any]:
    """Extra ``c.K2Lab`` settings a test module wants (override the fixture)."""
    return {}


@pytest.fixture
def jp_server_config(fake_model, sessions_dir, jp_data_dir, k2_config, monkeypatch):  # type: ignore[no-untyped-def]
    for var in ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "K2LAB_BASE_URL", "K2LAB_APPROVE"):
        monkeypatch.delenv(var, raising=False)
    write_kernelspec(Path(jp_data_dir) / "kernels" / KERNEL_NAME)
    return {
        "ServerApp": {"jpserver_extensions": {"k2lab": True}},
        "K2Lab": {
            "base_url": fake_model.base_url,
            "model": "fake-k2",
            "api_key": API_KEY,
            "isolation": "process",
            "tool_timeout": 20.0,
            **k2_config,
        },
        "K2LabApp": {"sessions_dir": str(sessions_dir), "notebook_timeout": 5.0},
    }


class Api:
    """JSON in, (status, JSON) out, over ``jp_fetch``; errors are answers, not exceptions."""

    def __init__(self, fetch: Callable[..., Any], ws_fetch: Callable[..., Any]) -> None:
        self.fetch = fetch
        self.ws_fetch = ws_fetch

    async def call(self, method: str, *parts: str, body: Any = None, **kw: Any) -> Any:
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if method == "POST" and body is None:
            body = "{}"
        r = await self.fetch("k2lab", "api", *parts, method=method, body=body,
                             raise_error=False, **kw)  # fmt: skip
        text = r.body.decode() if r.body else ""
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        return r.code, data

    async def get(self, *parts: str, **kw: Any) -> Any:
        return await self.call("GET", *parts, **kw)

    async def post(self, *parts: str, body: Any = None, **kw: Any) -> Any:
        return await self.call("POST", *parts, body=body, **kw)

    async def new_session(self, **body: Any) -> str:
        code, data = await self.post("sessions", body=body)
        assert code == 201, data
        return str(data["id"])

    async def events(self, sid: str) -> list[dict[str, Any]]:
        code, data = await self.get("sessions", sid)
        assert code == 200, data
        return [e["event"] for e in data["events"]]

    async def wait_for(
        self, sid: str, pred: Callable[[list[dict[str, Any]]], Any], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll the session until ``pred(events)`` holds (the REST view of the log)."""
        deadline = time.monotonic() + timeout
        while True:
            evs = await self.events(sid)
            if pred(evs):
                return evs
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last events: {[e['type'] for e in evs]}")
            await asyncio.sleep(0.05)

    async def socket(self, sid: str, after: int | None = None) -> Socket:
        params = {} if after is None else {"after": str(after)}
        conn = await self.ws_fetch("k2lab", "api", "sessions", sid, "events", params=params)
        return Socket(conn)


class Socket:
    """A panel's view of the events WebSocket: collects messages, can answer notebook requests."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.other: list[dict[str, Any]] = []

    async def next(self, timeout: float = 30.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            raise ConnectionError("the server closed the socket")
        msg: dict[str, Any] = json.loads(raw)
        if msg.get("kind") == "event":
            self.events.append((msg["index"], msg["event"]))
        else:
            self.other.append(msg)
        return msg

    async def until(self, pred: Callable[[dict[str, Any]], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.next(max(0.01, deadline - time.monotonic()))
            if pred(msg):
                return msg

    async def until_event(self, type_: str, timeout: float = 30.0) -> dict[str, Any]:
        msg = await self.until(
            lambda m: m.get("kind") == "event" and m["event"]["type"] == type_, timeout
        )
        return msg  # type: ignore[no-any-return]

    def send(self, msg: dict[str, Any]) -> None:
        self.conn.write_message(json.dumps(msg))

    def send_raw(self, text: str) -> None:
        self.conn.write_message(text)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def api(jp_fetch, jp_ws_fetch) -> Api:  # type: ignore[no-untyped-def]
    return Api(jp_fetch, jp_ws_fetch)


__all__ = ["API_KEY", "Api", "HTTPClientError", "Socket"]
