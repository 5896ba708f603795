"""MCP tool servers as k2lab tools, through the official ``mcp`` SDK (2.x: ``mcp.Client``).

``MCPToolSet`` is an async context manager: entering it starts every configured server at once
(each in a task of its own, which owns the SDK client for its whole life), lists their tools and
wraps each as an ``MCPTool``; leaving it stops them all. A server that fails to start, or that
dies mid-run, does not end the run: it becomes a notice (``on_notice``, which the CLI points at the
registry the loop drains into ``notice`` events), and a call to one of its tools returns an error
result the model reads.

Each MCP tool is offered to the model as a function tool:

- ``name``: ``mcp__SERVER__TOOL`` with characters outside ``[A-Za-z0-9_-]`` replaced by ``_``;
  when that is longer than 64 characters or already taken (two servers whose names sanitise alike,
  a tool named like another), it is cut and given a hash suffix of the server and tool names, so
  names are unique and stable across runs.
- ``parameters``: the tool's ``inputSchema`` (``"type": "object"`` and ``"properties": {}`` added
  where missing). The registry validates arguments against it (``jsonschema``) before the call is
  proposed for approval, so a violation reaches neither a person nor the server.
- ``requires_approval``: False only for a server configured with ``"approve": "auto"``.
- ``replayable``: True only when the server marks the tool read-only (``readOnlyHint``).

Results: text content is the output; images become rich outputs (display bundles) with a note for
the model; embedded text resources are included as text; audio, blobs and resource links become
short notes. ``isError`` results are errors. Each call has the run's tool timeout; a timed-out call
is cancelled on the server and the next call works.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import BaseModel, ConfigDict

from k2lab.sandbox.output import head_tail
from k2lab.scrub import Scrubber
from k2lab.tools.base import ToolOutput, people_text
from k2lab.tools.mcp_config import HttpServer, MCPConfig, ServerConfig, StdioServer

if TYPE_CHECKING:
    from k2lab.agent.loop import Agent

NoticeFn = Callable[[str, str], None]

#: the model's text of one result (head and tail are kept beyond it)
MAX_OUTPUT = 40_000
MAX_DESCRIPTION = 2_000
#: a server listing more tools than this is cut (and says so)
MAX_TOOLS = 200
#: rich outputs of one result, in base64 characters (the python tool's display limit)
MAX_DISPLAY_CHARS = 1024**2
_SHOWN_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_NAME_OK = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
STDERR_LINES = 12


class MCPArgs(BaseModel):
    """An MCP tool's arguments: the JSON object itself (the schema check is ``jsonschema``'s)."""

    model_config = ConfigDict(extra="allow")


# -- names and schemas -------------------------------------------------------------------------
def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """A function name for ``tool`` of ``server``: valid, at most 64 characters, not taken."""
    base = f"mcp__{_BAD_CHARS.sub('_', server)}__{_BAD_CHARS.sub('_', tool)}"
    if len(base) <= 64 and base not in taken:
        return base
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()
    for n in range(8, 65, 4):  # a longer hash only on a collision of the short one
        name = f"{base[: 63 - n]}_{digest[:n]}"
        if name not in taken:
            return name
    raise ValueError(f"no unique name for the MCP tool {tool!r} of {server!r}")  # pragma: no cover


def function_parameters(schema: Any) -> dict[str, Any]:
    """An ``inputSchema`` as OpenAI function ``parameters``; ``SchemaError`` if it is no schema."""
    from jsonschema.validators import Draft202012Validator, validator_for

    if not isinstance(schema, dict):
        schema = {}
    params = dict(schema)
    params.setdefault("type", "object")
    if params.get("type") == "object" and not isinstance(params.get("properties"), dict):
        params["properties"] = {}
    cls = validator_for(params, default=Draft202012Validator)
    cls.check_schema(params)
    return params


# -- results -----------------------------------------------------------------------------------
def _size(n: int) -> str:
    return (
        f"{n} B" if n < 1024 else f"{n / 1024:.0f} kB" if n < 1024**2 else f"{n / 1024**2:.1f} MB"
    )


def _b64_size(data: str) -> int | None:
    """Decoded size of base64 text, or None when it is not base64."""
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return None


def _image(
    mime: str, data: str, what: str, parts: list[str], display: list[dict[str, Any]]
) -> None:
    size = _b64_size(data) if isinstance(data, str) else None
    used = sum(len(next(iter(d["data"].values()))) for d in display)
    if size is None:
        parts.append(f"[{what}: {mime}, not valid base64: not shown]")
    elif mime not in _SHOWN_IMAGES:
        parts.append(f"[{what}: {mime}, {_size(size)}: this type is not shown]")
    elif used + len(data) > MAX_DISPLAY_CHARS:
        limit = _size(MAX_DISPLAY_CHARS)
        parts.append(f"[{what}: {mime}, {_size(size)}: over the {limit} display limit]")
    else:
        note = f"[{mime} output, {_size(size)}, shown to the user]"
        meta = {"k2lab": {"model_note": note}}  # people see the image, not this note
        display.append(
            {"data": {mime: data, "text/plain": f"[{mime} from an MCP tool]"}, "metadata": meta}
        )
        parts.append(note)


def convert_result(result: Any) -> ToolOutput:
    """A ``CallToolResult`` as the model's text plus rich outputs for people."""
    parts: list[str] = []
    display: list[dict[str, Any]] = []
    for block in getattr(result, "content", None) or []:
        t = getattr(block, "type", None)
        if t == "text":
            parts.append(str(block.text))
        elif t == "image":
            _image(str(block.mime_type), block.data, "image", parts, display)
        elif t == "audio":
            size = _b64_size(block.data) if isinstance(block.data, str) else None
            parts.append(f"[audio: {block.mime_type}, {_size(size or 0)}: not shown]")
        elif t == "resource":
            res = block.resource
            uri, mime = str(res.uri), res.mime_type or "unknown type"
            if hasattr(res, "text"):
                parts.append(f"[resource {uri} ({mime})]\n{res.text}")
            elif mime in _SHOWN_IMAGES:
                _image(mime, res.blob, f"resource {uri}", parts, display)
            else:
                size = _b64_size(res.blob)
                parts.append(
                    f"[resource {uri}: {mime}, {_size(size or 0)} of binary data: not shown]"
                )
        elif t == "resource_link":
            parts.append(f"[resource link: {getattr(block, 'name', '')} {block.uri}]")
        else:
            parts.append(f"[{t} content: not supported]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False, default=str))
    is_error = bool(getattr(result, "is_error", False))
    text = "\n".join(parts)
    if not text.strip():
        text = "(the tool reported an error without a message)" if is_error else "(no output)"
    text, truncated = head_tail(text, MAX_OUTPUT)
    return ToolOutput(
        ok=not is_error,
        output=text,
        display=display,
        truncated=truncated,
        people_output=people_text(text, display),
    )


# -- one server --------------------------------------------------------------------------------
class _StderrTail:
    """A stdio server's stderr: read by a daemon thread, the last lines kept (bounded)."""

    def __init__(self) -> None:
        r, w = os.pipe()
        self.writer: TextIO = os.fdopen(w, "w", encoding="utf-8", errors="replace")
        self._reader = os.fdopen(r, "r", encoding="utf-8", errors="replace")
        self.lines: deque[str] = deque(maxlen=STDERR_LINES)
        self.done = threading.Event()
        threading.Thread(target=self._read, name="k2lab-mcp-stderr", daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in self._reader:
                self.lines.append(line.rstrip()[:300])
        with contextlib.suppress(OSError):
            self._reader.close()
        self.done.set()

    async def settle(self, timeout: float = 1.0) -> None:
        """Wait (briefly) for an exited process's last lines."""
        await asyncio.to_thread(self.done.wait, timeout)

    def close_writer(self) -> None:
        """After the spawn: the child holds its own copy, ours would keep the pipe open."""
        with contextlib.suppress(OSError):
            self.writer.close()

    def tail(self) -> str:
        lines = [x for x in self.lines if x.strip()]
        return " | ".join(lines[-4:])


class MCPServerConnection:
    """One configured server: a task owns its SDK client from start to stop."""

    def __init__(self, config: ServerConfig, *, timeout: float, startup_timeout: float) -> None:
        self.config = config
        self.name = config.name
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.client: Any = None
        self.alive = False
        self.reason = ""  # why it is not alive
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stderr: _StderrTail | None = None
        self.on_death: Callable[[MCPServerConnection], None] | None = None

    async def start(self) -> list[Any]:
        """Start the server and list its tools; raises with a readable message when it cannot."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[list[Any]] = loop.create_future()
        self._task = asyncio.ensure_future(self._own(ready))
        try:
            return await asyncio.wait_for(asyncio.shield(ready), self.startup_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            await self.stop()
            raise RuntimeError(f"it did not start within {self.startup_timeout:g} s") from None
        except BaseException:
            await self.stop()
            raise
        finally:
            if ready.done() and not ready.cancelled():
                ready.exception()  # retrieved: no "never retrieved" warning for a stopped start

    def _transport(self) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        c = self.config
        if isinstance(c, StdioServer):
            self._stderr = _StderrTail()
            return StdioServerParameters(
                command=c.command, args=list(c.args), env=dict(c.env), cwd=c.cwd
            )
        assert isinstance(c, HttpServer)
        http = create_mcp_http_client(headers=dict(c.headers))
        return http, streamable_http_client(c.url, http_client=http)

    async def _own(self, ready: asyncio.Future[list[Any]]) -> None:
        from mcp import Client
        from mcp.client.stdio import stdio_client

        try:
            async with contextlib.AsyncExitStack() as stack:
                target = self._transport()
                if isinstance(target, tuple):
                    http, transport = target
                    await stack.enter_async_context(http)
                else:
                    assert self._stderr is not None
                    transport = stdio_client(target, errlog=self._stderr.writer)
                client = Client(transport, read_timeout_seconds=self.startup_timeout)
                try:
                    await stack.enter_async_context(client)
                finally:
                    if self._stderr is not None:
                        self._stderr.close_writer()
                tools = await self._list(client)
                self.client, self.alive = client, True
                ready.set_result(tools)
                await self._stop.wait()
        except BaseException as e:
            if self._stderr is not None and not isinstance(e, asyncio.CancelledError):
                self._stderr.close_writer()
                with contextlib.suppress(Exception):
                    await self._stderr.settle()
            if not ready.done():
                ready.set_exception(RuntimeError(self._describe(e)))
            elif not self._stop.is_set():
                self._died(self._describe(e))
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            self.alive = False
            if self._stderr is not None:
                self._stderr.close_writer()

    @staticmethod
    async def _list(client: Any) -> list[Any]:
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(50):  # a paginator that never ends cannot hang the start
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None or len(tools) >= MAX_TOOLS:
                break
        return tools

    def _describe(self, e: BaseException) -> str:
        while isinstance(getattr(e, "exceptions", None), tuple) and e.exceptions:  # type: ignore[attr-defined]
            e = e.exceptions[0]  # type: ignore[attr-defined]
        if isinstance(e, FileNotFoundError) and isinstance(self.config, StdioServer):
            msg = f"command not found: {self.config.command}"
        elif isinstance(e, asyncio.CancelledError):
            msg = "it was stopped"
        else:
            msg = str(e) or type(e).__name__
            if msg in ("Connection closed",) and self._stderr is not None:
                msg = "the process exited"
        tail = self._stderr.tail() if self._stderr is not None else ""
        return f"{msg} (stderr: {tail})" if tail else msg

    def _died(self, reason: str) -> None:
        if self.alive or not self.reason:
            self.alive = False
            self.reason = reason
            if self.on_death is not None:
                self.on_death(self)

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutput:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        if not self.alive or self.client is None:
            return ToolOutput(
                ok=False,
                output=f"Error: the MCP server {self.name!r} is not running ({self.reason}); "
                "its tools cannot be called in this run.",
            )
        try:
            # the SDK's read timeout cancels the request on the server; ours is the backstop
            async with asyncio.timeout(self.timeout + 5):
                result = await self.client.call_tool(
                    tool, arguments, read_timeout_seconds=self.timeout
                )
        except MCPError as e:
            if e.code == REQUEST_TIMEOUT:
                return self._timed_out()
            if e.code == CONNECTION_CLOSED:
                if self._stderr is not None:  # the last lines say why, often
                    await self._stderr.settle()
                self._died(self._describe(e))
                return ToolOutput(
                    ok=False,
                    output=f"Error: the MCP server {self.name!r} stopped while running "
                    f"{tool!r} ({self.reason}); the call may have had partial effects.",
                )
            return ToolOutput(ok=False, output=f"Error from the MCP server {self.name!r}: {e}")
        except (TimeoutError, asyncio.TimeoutError):
            return self._timed_out()
        return convert_result(result)

    def _timed_out(self) -> ToolOutput:
        return ToolOutput(
            ok=False,
            output=f"Error: the MCP tool did not answer within the tool timeout "
            f"({self.timeout:g} s); the call was cancelled.",
        )

    async def stop(self) -> None:
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            if self.client is None:  # still starting: nothing to wind down gently
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(task), 10)
        except (TimeoutError, Exception):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


# -- the tool ----------------------------------------------------------------------------------
class MCPTool:
    """One MCP server tool as a k2lab tool (see the module docstring)."""

    params = MCPArgs

    def __init__(
        self, server: MCPServerConnection, remote: Any, name: str, parameters: dict[str, Any]
    ) -> None:
        self.server = server
        self.remote_name: str = remote.name
        self.name = name
        self.parameters = parameters
        desc = (remote.description or getattr(remote, "title", None) or "").strip()
        if len(desc) > MAX_DESCRIPTION:
            desc = desc[:MAX_DESCRIPTION] + " [...]"
        where = f"(MCP server {server.name!r}, tool {remote.name!r})"
        self.description = f"{desc}\n{where}" if desc else where
        annotations = getattr(remote, "annotations", None)
        self.read_only = getattr(annotations, "read_only_hint", None) is True
        self.replayable = self.read_only
        self.requires_approval = server.config.approve != "auto"

    async def call(self, args: BaseModel) -> ToolOutput:
        return await self.server.call(self.remote_name, args.model_dump())


# -- the set -----------------------------------------------------------------------------------
class MCPToolSet:
    """The tools of every configured server, started with the run and stopped with it."""

    def __init__(
        self,
        config: MCPConfig,
        *,
        timeout: float = 60.0,
        startup_timeout: float = 30.0,
        on_notice: NoticeFn | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.on_notice = on_notice
        self.servers: list[MCPServerConnection] = []
        self.tools: list[MCPTool] = []
        #: notices from the start (failed servers, skipped tools), also sent to ``on_notice``
        self.notices: list[str] = []
        self.scrubber = Scrubber(config.secrets())

    def notice(self, message: str) -> None:
        message = self.scrubber.text(message)
        self.notices.append(message)
        if self.on_notice is not None:
            self.on_notice(message, "mcp")

    def _on_death(self, server: MCPServerConnection) -> None:
        self.notice(
            f"MCP server {server.name!r} stopped: {server.reason}. Its tools now return an "
            "error; the run goes on with the other tools."
        )

    def attach(self, agent: Agent) -> None:
        """Wire this set into an agent built with ``extra_tools=self.tools``: the servers' env and
        header values join the agent's scrubber (out of every event and of what the model reads),
        start-up notices go into its next run, later ones (a server that died) as they happen."""
        agent.scrubber = agent.scrubber.merged(self.scrubber)
        for n in self.notices:
            agent.tools.notice(n, "mcp")
        self.on_notice = agent.tools.notice

    async def __aenter__(self) -> MCPToolSet:
        conns = [
            MCPServerConnection(c, timeout=self.timeout, startup_timeout=self.startup_timeout)
            for c in self.config.servers
        ]
        listed = await asyncio.gather(*(c.start() for c in conns), return_exceptions=True)
        taken: set[str] = set()
        for conn, tools in zip(conns, listed, strict=True):
            if isinstance(tools, BaseException):
                if not isinstance(tools, Exception):
                    await self.__aexit__(None, None, None)
                    raise tools
                self.notice(
                    f"MCP server {conn.name!r} did not start: {tools}. The run goes on without "
                    "its tools."
                )
                continue
            conn.on_death = self._on_death
            self.servers.append(conn)
            if len(tools) >= MAX_TOOLS:
                self.notice(f"MCP server {conn.name!r} lists more than {MAX_TOOLS} tools: cut.")
            from jsonschema import SchemaError

            for remote in tools[:MAX_TOOLS]:
                try:
                    params = function_parameters(getattr(remote, "input_schema", None))
                except SchemaError as e:
                    self.notice(
                        f"MCP tool {remote.name!r} of {conn.name!r} is not offered: its "
                        f"inputSchema is not a valid JSON schema ({e.message})."
                    )
                    continue
                name = tool_name(conn.name, str(remote.name), taken)
                taken.add(name)
                self.tools.append(MCPTool(conn, remote, name, params))
        return self

    async def __aexit__(self, *exc: object) -> None:
        servers, self.servers = self.servers, []
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)

    def public(self) -> list[dict[str, Any]]:
        """Servers and their tools, for a face to list (no command lines, env or headers)."""
        by_server: dict[str, list[str]] = {}
        for t in self.tools:
            by_server.setdefault(t.server.name, []).append(t.name)
        rows = self.config.public()
        for row in rows:
            row["tools"] = by_server.get(row["name"], [])
            row["running"] = any(s.name == row["name"] and s.alive for s in self.servers)
        return rows
