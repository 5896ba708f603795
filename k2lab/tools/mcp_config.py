"""The MCP servers file: the ``mcpServers`` shape other MCP clients read, checked field by field.

::

    {"mcpServers": {
        "files":  {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."],
                   "env": {"TOKEN": "${MY_TOKEN}"}, "cwd": "~/data"},
        "search": {"url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer ${SEARCH_KEY}"}, "approve": "auto"},
        "old":    {"command": "legacy-server", "disabled": true}}}

A server is a stdio server (``command``, ``args``, ``env``, ``cwd``) or a Streamable HTTP server
(``url``, ``headers``); ``"type"`` may say which (``stdio``, ``http``, ``streamable-http``), and
``sse`` is refused (not supported). ``disabled: true`` leaves it out; ``approve: "auto"`` lets its
tools run without asking when the run's policy is ``ask``. ``${VAR}`` and ``${VAR:-default}`` in
``command``, ``args``, ``env``, ``cwd``, ``url`` and ``headers`` are read from the environment, so
keys need not be written in the file. A relative ``cwd`` is relative to the file.

Every problem is a ``MCPConfigError`` naming the field (``mcpServers.files.args[1]: ...``). Keys
this reader does not know are kept as ``warnings`` (other clients' settings), not errors. The values
of ``env`` and ``headers`` (and a URL's password and query) are ``secrets()``: they go to the server
process or in its requests, and nowhere else (not in events, traces or the browser).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from k2lab.scrub import url_secrets

Approve = Literal["ask", "auto"]

_KNOWN = {"command", "args", "env", "cwd", "url", "headers", "disabled", "approve", "type"}
_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "streamableHttp": "http"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class MCPConfigError(ValueError):
    """A malformed MCP servers file; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class StdioServer:
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    approve: Approve = "ask"

    @property
    def transport(self) -> str:
        return "stdio"


@dataclass(frozen=True, slots=True)
class HttpServer:
    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    approve: Approve = "ask"

    @property
    def transport(self) -> str:
        return "http"


ServerConfig = StdioServer | HttpServer


@dataclass(slots=True)
class MCPConfig:
    #: the enabled servers, in file order
    servers: list[ServerConfig] = field(default_factory=list)
    #: names of the servers marked ``disabled``
    disabled: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = ""

    def secrets(self) -> list[str]:
        """Values that must not leave the server side: env and header values, URL secrets."""
        found: list[str] = []
        for s in self.servers:
            if isinstance(s, StdioServer):
                found.extend(s.env.values())
            else:
                found.extend(s.headers.values())
                # "Bearer xyz": the token alone may be echoed too
                found.extend(v.split(None, 1)[1] for v in s.headers.values() if " " in v.strip())
                found.extend(url_secrets(s.url))
        return [v for v in found if v]

    def public(self) -> list[dict[str, Any]]:
        """What a face may show: names, transports, approval; no command line, env or headers."""
        rows: list[dict[str, Any]] = [
            {"name": s.name, "transport": s.transport, "approve": s.approve, "disabled": False}
            for s in self.servers
        ]
        rows += [{"name": n, "disabled": True} for n in self.disabled]
        return rows


def load_mcp_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> MCPConfig:
    """Read and check an MCP servers file (``MCPConfigError`` for anything wrong with it)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise MCPConfigError(f"cannot read the MCP config {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise MCPConfigError(f"the MCP config {path} is not UTF-8 text") from e
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise MCPConfigError(
            f"the MCP config {path} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from e
    except _Duplicate as e:
        raise MCPConfigError(f"the MCP config {path}: key {e.args[0]!r} appears twice") from e
    return parse_mcp_config(data, source=str(path), base=p.resolve().parent, environ=environ)


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise _Duplicate(k)
        d[k] = v
    return d


def parse_mcp_config(
    data: Any,
    *,
    source: str = "",
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> MCPConfig:
    env = os.environ if environ is None else environ
    where = f"the MCP config {source}: " if source else "the MCP config: "

    def fail(path: str, msg: str) -> MCPConfigError:
        return MCPConfigError(f"{where}{path}: {msg}")

    if not isinstance(data, dict):
        raise fail("(top level)", 'must be a JSON object with an "mcpServers" object')
    if "mcpServers" not in data:
        raise fail("mcpServers", 'missing (the file must hold {"mcpServers": {NAME: {...}}})')
    servers = data["mcpServers"]
    if not isinstance(servers, dict):
        raise fail("mcpServers", f"must be an object of servers by name, not {_kind(servers)}")
    cfg = MCPConfig(source=source)
    for key in data:
        if key != "mcpServers":
            cfg.warnings.append(f"{where}top-level key {key!r} is not used")
    for name, spec in servers.items():
        at = f"mcpServers.{name}"
        if not _NAME.match(name):
            raise fail(at, "a server name is 1-64 letters, digits, '_', '-' or '.'")
        if not isinstance(spec, dict):
            raise fail(at, f"must be an object, not {_kind(spec)}")
        for key in spec:
            if key not in _KNOWN:
                cfg.warnings.append(f"{where}{at}.{key} is not used by k2lab")
        disabled = spec.get("disabled", False)
        if not isinstance(disabled, bool):
            raise fail(f"{at}.disabled", f"must be true or false, not {_kind(disabled)}")
        approve = spec.get("approve", "ask")
        if approve not in ("ask", "auto"):
            raise fail(f"{at}.approve", f'must be "ask" or "auto", not {approve!r}')
        kind = spec.get("type")
        if kind is not None and kind not in _TYPES:
            hint = " (SSE servers are not supported; use Streamable HTTP)" if kind == "sse" else ""
            raise fail(f"{at}.type", f"must be stdio, http or streamable-http, not {kind!r}{hint}")
        has_cmd, has_url = "command" in spec, "url" in spec
        if has_cmd and has_url:
            raise fail(at, 'has both "command" (stdio) and "url" (HTTP): choose one')
        if not has_cmd and not has_url:
            raise fail(at, 'needs "command" (a stdio server) or "url" (a Streamable HTTP server)')
        if kind is not None and _TYPES[kind] != ("stdio" if has_cmd else "http"):
            raise fail(
                f"{at}.type", f"is {kind!r} but the server has a {'command' if has_cmd else 'url'}"
            )
        if disabled:
            cfg.disabled.append(name)
            continue

        def expand(path: str, value: str) -> str:
            def sub(m: re.Match[str]) -> str:
                var, default = m.group(1), m.group(2)
                if var in env:
                    return env[var]
                if default is not None:
                    return default
                raise fail(path, f"${{{var}}} is not set in the environment")

            return _VAR.sub(sub, value)

        def string(path: str, value: Any, *, empty: bool = False) -> str:
            if not isinstance(value, str):
                raise fail(path, f"must be a string, not {_kind(value)}")
            text = expand(path, value)
            if not empty and not text.strip():
                raise fail(path, "must not be empty")
            return text

        def strings(path: str, value: Any) -> dict[str, str]:
            if not isinstance(value, dict):
                raise fail(path, f"must be an object of strings, not {_kind(value)}")
            out: dict[str, str] = {}
            for k, v in value.items():
                if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                    raise fail(f"{path}.{k}", f"must be a string, not {_kind(v)}")
                out[k] = expand(f"{path}.{k}", v if isinstance(v, str) else str(v))
            return out

        server: ServerConfig
        if has_cmd:
            command = string(f"{at}.command", spec["command"])
            raw_args = spec.get("args", [])
            if not isinstance(raw_args, list):
                raise fail(f"{at}.args", f"must be a list of strings, not {_kind(raw_args)}")
            args = tuple(string(f"{at}.args[{i}]", a, empty=True) for i, a in enumerate(raw_args))
            senv = strings(f"{at}.env", spec.get("env", {}))
            for k in senv:
                if not k or "=" in k or "\0" in k:
                    raise fail(f"{at}.env", f"{k!r} is not an environment variable name")
            cwd = None
            if spec.get("cwd") is not None:
                c = Path(string(f"{at}.cwd", spec["cwd"])).expanduser()
                if not c.is_absolute() and base is not None:
                    c = base / c
                cwd = str(c)
            server = StdioServer(name, command, args, senv, cwd, approve)
        else:
            url = string(f"{at}.url", spec["url"])
            try:
                parts = urlsplit(url)
                ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            except ValueError:
                ok = False
            if not ok:
                raise fail(f"{at}.url", "must be an http:// or https:// URL")
            headers = strings(f"{at}.headers", spec.get("headers", {}))
            for k, v in headers.items():
                if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", k) or any(
                    c in v for c in "\r\n\0"
                ):
                    raise fail(f"{at}.headers.{k}", "is not a valid HTTP header")
            server = HttpServer(name, url, headers, approve)
        cfg.servers.append(server)
    return cfg


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
    }.get(type(v), type(v).__name__)
