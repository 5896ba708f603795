"""The panel's Replay of MCP calls (``POST sessions/{id}/replay``, issue 10): a tool the session's
real MCP server marks ``readOnlyHint`` is called again on that server and compared; one without
the hint is a 400 that says why, and does not run again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.server.conftest import Api
from tests.tools.conftest import stdio_spec


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    return tmp_path / "notes.txt"


@pytest.fixture
def k2_config(tmp_path: Path, notes: Path) -> dict[str, Any]:
    cfg = tmp_path / "mcp.json"
    servers = {"calc": stdio_spec(env={"NOTES_FILE": str(notes)})}
    cfg.write_text(json.dumps({"mcpServers": servers}))
    return {"mcp_config": str(cfg)}


async def test_only_a_read_only_mcp_call_is_replayed(
    api: Api, fake_model: FakeModel, notes: Path
) -> None:
    fake_model.script(
        [
            Turn(tool_calls=[Call("mcp__calc__add", {"a": 40, "b": 2})]),
            Turn(tool_calls=[Call("mcp__calc__write_note", {"text": "once"})]),
            Turn(content="42, noted."),
        ]
    )
    sid = await api.new_session(settings={"approve": "auto"})
    code, _ = await api.post("sessions", sid, "messages", body={"text": "add and note"})
    assert code == 202
    await api.wait_for(sid, lambda es: any(e["type"] == "run.end" for e in es), 60)
    assert notes.read_text() == "once\n"

    code, data = await api.post(
        "sessions", sid, "replay", body={"call_id": "functions.mcp__calc__add:0"}
    )
    assert code == 200, data
    assert data["changed"] is False and data["new_output"] == "42"
    code, data = await api.post(
        "sessions", sid, "replay", body={"call_id": "functions.mcp__calc__write_note:1"}
    )
    assert code == 400 and "not marked read-only by its MCP server" in data["message"], data
    assert notes.read_text() == "once\n"  # it did not run again
