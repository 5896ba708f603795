"""Real MCP servers for the tool tests (the SDK's own server, as subprocesses the tests start).

``stdio_spec(...)``: an ``mcpServers`` entry running ``tests/fixtures/mcp_servers/tools_server.py``
over stdio. ``http_mcp``: the same server over Streamable HTTP (uvicorn on 127.0.0.1, a free port),
which refuses requests without ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVERS = Path(__file__).resolve().parents[1] / "fixtures" / "mcp_servers"
TOOLS_SERVER = SERVERS / "tools_server.py"
CRASH_AT_START = SERVERS / "crash_at_start.py"


def stdio_spec(*flags: str, env: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "command": sys.executable,
        "args": [str(TOOLS_SERVER), "stdio", *flags],
        "env": env or {},
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HttpMCP:
    url: str
    token: str


@pytest.fixture(scope="module")
def http_mcp() -> Iterator[HttpMCP]:
    port = free_port()
    token = "http-token-5f2a9c"
    proc = subprocess.Popen(
        [sys.executable, str(TOOLS_SERVER), "http", str(port)],
        env={**os.environ, "MCP_TOKEN": token},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the HTTP MCP server exited ({proc.returncode})")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield HttpMCP(f"http://127.0.0.1:{port}/mcp", token)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
