"""``%k2 --mcp-config``: MCP tool servers in a real kernel, against the fake model (issue 10).

The servers are ``tests/fixtures/mcp_servers/tools_server.py`` over stdio, started by the SDK as
the kernel's children. One set of servers lives per notebook session: later runs with the same
config reuse it (same server pid), a changed config restarts it, a kernel shutdown stops it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from k2lab.trace.notebook import MIMETYPE, coalesce_events
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import FAKE_KEY, Kernel
from tests.tools.conftest import stdio_spec

pytestmark = pytest.mark.timeout(240)

SECRET = "mcp-env-secret-5be1c07a"


def write_config(path: Path, servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is gone too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run(kernel: Kernel, fake: FakeModel, opts: str, prompt: str = "use the tools") -> int:
    res = kernel.run(f"%k2 --new --base-url {fake.base_url} {opts} {prompt}")
    assert res["error"] is None, res["error"]
    i = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_ended(i, timeout=120)
    return i


def results(kernel: Kernel, i: int) -> dict[str, dict[str, Any]]:
    return {e["call_id"]: e for e in kernel.events(i) if e["type"] == "tool.result"}


def test_the_model_calls_an_mcp_tool_and_the_trace_shows_it(
    kernel: Kernel, fake_model: FakeModel, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "mcp.json", {"calc": stdio_spec(env={"MCP_SECRET": SECRET})})
    fake_model.script(
        [
            Turn(reasoning="Add.", tool_calls=[Call("mcp__calc__add", {"a": 40, "b": 2})]),
            Turn(tool_calls=[Call("mcp__calc__whoami", {})]),
            Turn(tool_calls=[Call("mcp__calc__pid", {})]),
            Turn(content="The sum is 42."),
        ]
    )
    i = run(kernel, fake_model, f"--approve auto --mcp-config {cfg}")
    events = kernel.events(i)
    end = events[-1]
    assert end["type"] == "run.end" and end["stop_reason"] == "completed", end
    start = events[0]
    assert "mcp__calc__add" in start["tools"] and "python" in start["tools"]
    offered = {t["function"]["name"] for t in fake_model.requests[0]["tools"]}
    assert {"python", "mcp__calc__add", "mcp__calc__pid"} <= offered

    res = results(kernel, i)
    assert [(r["name"], r["ok"]) for r in res.values()] == [
        ("mcp__calc__add", True),
        ("mcp__calc__whoami", True),
        ("mcp__calc__pid", True),
    ]
    assert res["functions.mcp__calc__add:0"]["output"] == "42"
    assert tool_messages(fake_model.requests[1]) == ["42"]
    # the run view and the saved trace show the result; the server's env value is nowhere
    cards = kernel.value("_k2s().runs[-1].widget.state.cards")
    assert cards["functions.mcp__calc__add:0"]["status"] == "done"
    final = kernel.value("_k2s().runs[-1].final")
    assert final[MIMETYPE]["events"] == coalesce_events(events)  # all but streamed fragments
    assert "42" in final["text/markdown"] and "mcp__calc__add" in final["text/html"]
    everything = json.dumps(final) + json.dumps(events) + json.dumps(fake_model.requests)
    assert SECRET not in everything
    assert "my secret is [redacted]" in everything

    # a second run with the same config reuses the session's servers (the same process)
    pid = int(res["functions.mcp__calc__pid:2"]["output"])
    fake_model.script([Turn(tool_calls=[Call("mcp__calc__pid", {})]), Turn(content="same")])
    j = run(kernel, fake_model, f"--approve auto --mcp-config {cfg}")
    assert [int(r["output"]) for r in results(kernel, j).values()] == [pid]

    # a run without the option offers no MCP tool and leaves the servers alone
    fake_model.script([Turn(content="no tools")])
    run(kernel, fake_model, "--approve auto")
    assert not any(
        t["function"]["name"].startswith("mcp__") for t in fake_model.requests[-1]["tools"]
    )
    assert alive(pid)

    # a changed config: the old servers stop, new ones start
    write_config(cfg, {"calc": stdio_spec(env={"MCP_SECRET": SECRET, "OTHER": "1"})})
    fake_model.script([Turn(tool_calls=[Call("mcp__calc__pid", {})]), Turn(content="new")])
    k = run(kernel, fake_model, f"--approve auto --mcp-config {cfg}")
    (new,) = [int(r["output"]) for r in results(kernel, k).values()]
    assert new != pid
    assert wait_gone(pid)


def test_k2lab_mcp_config_is_the_default(
    kernel: Kernel, fake_model: FakeModel, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "env.json", {"envcalc": stdio_spec()})
    kernel.run(f"import os; os.environ['K2LAB_MCP_CONFIG'] = {str(cfg)!r}")
    try:
        fake_model.script(
            [Turn(tool_calls=[Call("mcp__envcalc__add", {"a": 2, "b": 3})]), Turn(content="5")]
        )
        i = run(kernel, fake_model, "--approve auto")
    finally:
        kernel.run("os.environ.pop('K2LAB_MCP_CONFIG', None)")
    assert [r["output"] for r in results(kernel, i).values()] == ["5"]


def test_a_bad_config_is_a_clear_usage_error(kernel: Kernel, tmp_path: Path) -> None:
    before = kernel.value("len(_k2s().runs)")
    bad = write_config(tmp_path / "bad.json", {"db": {"command": "x", "args": "--port 5"}})
    for path, words in (
        (bad, ("mcpServers.db.args", "list of strings")),
        (tmp_path / "missing.json", ("cannot read the MCP config",)),
    ):
        res = kernel.run(f"%k2 --approve auto --mcp-config {path} hi")
        # IPython shows a usage error as one line on stderr, no traceback
        assert res["error"] is None and res["outputs"] == [], res
        (line,) = res["stdout"].strip().splitlines()
        assert line.startswith("UsageError: ") and str(path) in line, line
        for w in words:
            assert w in line, line
    assert kernel.value("len(_k2s().runs)") == before  # no run started


def test_a_kernel_shutdown_stops_the_servers(fake_model: FakeModel, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "mcp.json", {"calc": stdio_spec()})
    k = Kernel({"K2LAB_API_KEY": FAKE_KEY, "K2LAB_ISOLATION": "process"})
    try:
        fake_model.script([Turn(tool_calls=[Call("mcp__calc__pid", {})]), Turn(content="ok")])
        i = run(k, fake_model, f"--approve auto --mcp-config {cfg}")
        (pid,) = [int(r["output"]) for r in results(k, i).values()]
        assert alive(pid)
        assert k.value("_k2s().mcp_running()") is True
    finally:
        k.kc.stop_channels()
        k.km.shutdown_kernel(now=False)
    assert wait_gone(pid)


def test_heavy_lanes_share_the_sessions_mcp_servers(
    kernel: Kernel, fake_model: FakeModel, tmp_path: Path
) -> None:
    """``%k2 --heavy 2 --mcp-config``: no longer refused; both lanes call the MCP tool on the
    session's one server (one pid), and its env secret stays out of every lane's events."""
    from tests.fixtures.fake_server import ConversationRouter

    cfg = write_config(tmp_path / "mcp.json", {"calc": stdio_spec(env={"MCP_SECRET": SECRET})})

    def aside(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="Aggregated: 42.")
        return None

    scripts = [
        [
            Turn(tool_calls=[Call("mcp__calc__add", {"a": 40, "b": k})]),
            Turn(tool_calls=[Call("mcp__calc__pid", {})]),
            Turn(tool_calls=[Call("mcp__calc__whoami", {})]),
            Turn(content=f"lane {k} done"),
        ]
        for k in (1, 2)
    ]
    fake_model.respond_with(ConversationRouter(scripts, aside=aside))
    i = run(kernel, fake_model, f"--approve auto --heavy 2 --mcp-config {cfg}")
    events = kernel.events(i)
    ends = {e["lane"]: e for e in events if e["type"] == "run.end"}
    assert ends["1"]["stop_reason"] == ends["2"]["stop_reason"] == "completed"
    assert ends["aggregate"]["answer"] == "Aggregated: 42."
    res = [e for e in events if e["type"] == "tool.result"]
    adds = sorted(e["output"].strip() for e in res if e["name"] == "mcp__calc__add")
    assert adds == ["41", "42"]
    pids = {e["output"].strip() for e in res if e["name"] == "mcp__calc__pid"}
    assert len(pids) == 1  # one server process for both lanes
    assert {e["lane"] for e in res if e["name"] == "mcp__calc__whoami"} == {"1", "2"}
    assert SECRET not in json.dumps(events)
