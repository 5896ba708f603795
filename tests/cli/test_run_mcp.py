"""``k2lab run --mcp-config`` in a subprocess: real MCP servers, the fake model calls tools."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from k2lab.trace.jsonl import read_trace
from tests.cli.conftest import RunCli, clean_env, tool_messages
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.tools.conftest import CRASH_AT_START, HttpMCP, http_mcp, stdio_spec

__all__ = ["http_mcp"]  # the fixture, imported for these tests

FAST = ("--isolation", "process")
SECRET = "env-secret-7d41be09"


def write_config(path: Path, servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def test_the_model_calls_mcp_tools_and_secrets_stay_out(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path, http_mcp: HttpMCP
) -> None:
    cfg = write_config(
        tmp_path / "mcp.json",
        {
            "calc": stdio_spec(env={"MCP_SECRET": SECRET}),
            "web": {"url": http_mcp.url, "headers": {"Authorization": f"Bearer {http_mcp.token}"}},
            "broken": {"command": sys.executable, "args": [str(CRASH_AT_START)]},
        },
    )
    fake_model.script(
        [
            Turn(
                reasoning="Use the server.", tool_calls=[Call("mcp__calc__add", {"a": 40, "b": 2})]
            ),
            Turn(tool_calls=[Call("mcp__calc__whoami", {})]),
            Turn(tool_calls=[Call("mcp__web__add", {"a": 1, "b": 1})]),
            Turn(content="The sum is 42."),
        ]
    )
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST,
        "--mcp-config", str(cfg), "--trace", str(trace), "add 40 and 2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "The sum is 42.\n"
    # the server that did not start is said on stderr (and in the trace), the run went on
    assert "MCP server 'broken' did not start" in r.stderr
    assert "DATABASE_URL is not set" in r.stderr

    offered = {t["function"]["name"]: t["function"] for t in fake_model.requests[0]["tools"]}
    assert set(offered["mcp__calc__add"]["parameters"]["properties"]) == {"a", "b"}
    assert "python" in offered and "mcp__web__add" in offered
    assert not any(n.startswith("mcp__broken__") for n in offered)

    assert tool_messages(fake_model.requests[1]) == ["42"]
    assert tool_messages(fake_model.requests[2])[-1] == "my secret is [redacted]"
    assert tool_messages(fake_model.requests[3])[-1] == "2"

    _, events = read_trace(trace)
    start = events[0]
    assert start.type == "run.start" and "mcp__calc__add" in start.tools
    results = [e for e in events if e.type == "tool.result"]
    assert [(e.name, e.ok) for e in results] == [
        ("mcp__calc__add", True),
        ("mcp__calc__whoami", True),
        ("mcp__web__add", True),
    ]
    assert results[0].output == "42"
    notices = [e for e in events if e.type == "notice"]
    assert any("'broken' did not start" in n.message for n in notices)
    # no env value or header value anywhere: trace, stdout, stderr, what the model was sent
    everything = trace.read_text() + r.stdout + r.stderr + json.dumps(fake_model.requests)
    assert SECRET not in everything
    assert http_mcp.token not in everything


def test_a_malformed_config_is_a_usage_error_naming_the_field(
    run_cli: RunCli, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "mcp.json", {"db": {"command": "x", "args": "--port 5"}})
    r = run_cli("run", "--mcp-config", str(cfg), *FAST, "hi")
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert "mcpServers.db.args" in line and "list of strings" in line
    r = run_cli("run", "--mcp-config", str(tmp_path / "missing.json"), *FAST, "hi")
    assert r.returncode == 2 and "cannot read the MCP config" in r.stderr


def test_k2lab_mcp_config_variable(fake_model: FakeModel, run_cli: RunCli, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "mcp.json", {"calc": stdio_spec()})
    fake_model.script(
        [Turn(tool_calls=[Call("mcp__calc__add", {"a": 2, "b": 3})]), Turn(content="5")]
    )
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST, "sum",
        env=clean_env(K2LAB_MCP_CONFIG=str(cfg)),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert tool_messages(fake_model.requests[1]) == ["5"]


def test_approve_auto_in_the_config_needs_no_answer(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    """--approve ask with stdin closed fails at the first call that needs a person; a server
    configured ``approve: auto`` needs none."""
    cfg = write_config(tmp_path / "mcp.json", {"calc": {**stdio_spec(), "approve": "auto"}})
    fake_model.script(
        [Turn(tool_calls=[Call("mcp__calc__add", {"a": 2, "b": 2})]), Turn(content="4")]
    )
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "ask", *FAST,
        "--mcp-config", str(cfg), "sum",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "4\n"


def test_a_server_dying_mid_run_is_said_on_stderr(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "mcp.json", {"calc": stdio_spec()})
    fake_model.script(
        [
            Turn(tool_calls=[Call("mcp__calc__crash", {})]),
            Turn(tool_calls=[Call("python", {"code": "print(1 + 1)"})]),
            Turn(content="python still works"),
        ]
    )
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST,
        "--mcp-config", str(cfg), "crash it",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "python still works\n"
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("k2lab: warning: MCP server 'calc' stopped")
    assert "stopped while running 'crash'" in tool_messages(fake_model.requests[1])[0]
    assert tool_messages(fake_model.requests[2])[-1] == "2"


def test_heavy_lanes_share_one_mcp_server_and_its_secrets_stay_out(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    from tests.fixtures.fake_server import ConversationRouter

    cfg = write_config(tmp_path / "mcp.json", {"calc": stdio_spec(env={"MCP_SECRET": SECRET})})

    def lane(k: int) -> list[Turn]:
        return [
            Turn(tool_calls=[Call("mcp__calc__pid", {})]),
            Turn(tool_calls=[Call("mcp__calc__whoami", {})]),
            Turn(content=f"done (lane {k})"),
        ]

    def aggregation(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="The lanes agree.")
        return None

    fake_model.respond_with(ConversationRouter([lane(1), lane(2)], aggregation))
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST, "--heavy", "2",
        "--mcp-config", str(cfg), "--trace", str(trace), "which process?",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "The lanes agree.\n"
    _, events = read_trace(trace)
    results = [e for e in events if e.type == "tool.result"]
    pids = {e.output.strip() for e in results if e.name == "mcp__calc__pid"}  # type: ignore[attr-defined]
    lanes = {e.lane for e in results if e.name == "mcp__calc__pid"}  # type: ignore[attr-defined]
    assert lanes == {"1", "2"} and len(pids) == 1  # both lanes called the one server process
    assert SECRET not in trace.read_text() and SECRET not in r.stderr
    assert not any(SECRET in json.dumps(m) for req in fake_model.requests for m in req["messages"])
