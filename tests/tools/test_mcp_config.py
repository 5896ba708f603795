"""The MCP servers file: the shape other clients use, every problem named by its field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from k2lab.tools.mcp_config import (
    HttpServer,
    MCPConfigError,
    StdioServer,
    load_mcp_config,
    parse_mcp_config,
)


def parse(servers: Any, **kw: Any) -> Any:
    return parse_mcp_config({"mcpServers": servers}, **kw)


def test_stdio_http_and_disabled(tmp_path: Path) -> None:
    f = tmp_path / "mcp.json"
    f.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "files": {
                        "command": "npx",
                        "args": ["-y", "server-filesystem", "${HOME_DIR}"],
                        "env": {"TOKEN": "${MY_TOKEN}", "LEVEL": 3},
                        "cwd": "data",
                    },
                    "search": {
                        "type": "http",
                        "url": "https://mcp.example.com/mcp",
                        "headers": {"Authorization": "Bearer ${SEARCH_KEY:-fallback-key}"},
                        "approve": "auto",
                    },
                    "old": {"command": "legacy", "disabled": True},
                }
            }
        )
    )
    cfg = load_mcp_config(f, environ={"HOME_DIR": "/home/u", "MY_TOKEN": "tok-abcdef"})
    files, search = cfg.servers
    assert isinstance(files, StdioServer) and isinstance(search, HttpServer)
    assert files.args == ("-y", "server-filesystem", "/home/u")
    assert dict(files.env) == {"TOKEN": "tok-abcdef", "LEVEL": "3"}
    assert files.cwd == str(tmp_path / "data")  # relative to the file
    assert files.approve == "ask" and search.approve == "auto"
    assert dict(search.headers) == {"Authorization": "Bearer fallback-key"}
    assert cfg.disabled == ["old"]
    secrets = cfg.secrets()
    assert "tok-abcdef" in secrets and "Bearer fallback-key" in secrets
    assert "fallback-key" in secrets  # the token alone, too
    shown = json.dumps(cfg.public())
    assert "tok-abcdef" not in shown and "fallback-key" not in shown and "npx" not in shown
    assert [r["name"] for r in cfg.public()] == ["files", "search", "old"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "(top level)"),
        ({}, "mcpServers: missing"),
        ({"mcpServers": []}, "mcpServers: must be an object"),
        ({"mcpServers": {"s": "npx"}}, "mcpServers.s: must be an object"),
        ({"mcpServers": {"s": {}}}, 'mcpServers.s: needs "command"'),
        ({"mcpServers": {"s": {"command": "x", "url": "http://h"}}}, "choose one"),
        ({"mcpServers": {"s": {"command": ""}}}, "mcpServers.s.command: must not be empty"),
        ({"mcpServers": {"s": {"command": 3}}}, "mcpServers.s.command: must be a string"),
        (
            {"mcpServers": {"s": {"command": "x", "args": "a b"}}},
            "mcpServers.s.args: must be a list",
        ),
        ({"mcpServers": {"s": {"command": "x", "args": ["a", 2]}}}, "mcpServers.s.args[1]"),
        ({"mcpServers": {"s": {"command": "x", "env": {"A": None}}}}, "mcpServers.s.env.A"),
        ({"mcpServers": {"s": {"command": "x", "env": []}}}, "mcpServers.s.env: must be an object"),
        ({"mcpServers": {"s": {"url": "ftp://h/x"}}}, "mcpServers.s.url: must be an http"),
        (
            {"mcpServers": {"s": {"url": "http://h", "headers": {"A": 1.5, "B": "x\ny"}}}},
            "headers.B",
        ),
        ({"mcpServers": {"s": {"command": "x", "disabled": "yes"}}}, "mcpServers.s.disabled"),
        ({"mcpServers": {"s": {"command": "x", "approve": "always"}}}, "mcpServers.s.approve"),
        (
            {"mcpServers": {"s": {"url": "http://h", "type": "sse"}}},
            "SSE servers are not supported",
        ),
        ({"mcpServers": {"s": {"url": "http://h", "type": "stdio"}}}, "mcpServers.s.type"),
        ({"mcpServers": {"s": {"command": "${NOPE_NOT_SET}"}}}, "${NOPE_NOT_SET} is not set"),
        ({"mcpServers": {"bad name!": {"command": "x"}}}, "mcpServers.bad name!"),
    ],
)
def test_malformed_configs_name_the_field(data: Any, field: str) -> None:
    with pytest.raises(MCPConfigError) as e:
        parse_mcp_config(data, source="cfg.json", environ={})
    assert field in str(e.value)
    assert "cfg.json" in str(e.value)


def test_unknown_keys_are_warnings_not_errors() -> None:
    cfg = parse({"s": {"command": "x", "autoApprove": [], "timeout": 5}}, environ={})
    assert len(cfg.servers) == 1
    assert any("autoApprove" in w for w in cfg.warnings)
    assert any("timeout" in w for w in cfg.warnings)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MCPConfigError, match="cannot read"):
        load_mcp_config(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {')
    with pytest.raises(MCPConfigError, match="not valid JSON.*line 1"):
        load_mcp_config(bad)
    dup = tmp_path / "dup.json"
    dup.write_text('{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}')
    with pytest.raises(MCPConfigError, match="'a' appears twice"):
        load_mcp_config(dup)


def test_url_secrets_are_secrets() -> None:
    cfg = parse({"s": {"url": "https://user:pa55word@h.example/mcp?key=qs-secret-1"}}, environ={})
    assert "pa55word" in cfg.secrets() and "qs-secret-1" in cfg.secrets()
