"""``%k2 replay`` and the widget's Replay with MCP calls (issue 10: replayable only when read-only),
in a real kernel with a real stdio MCP server: the read-only ``add`` runs again on the session's
server; ``write_note`` (no ``readOnlyHint``) is skipped by ``%k2 replay`` and refused by the
button, and never runs a second time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import Kernel
from tests.notebook.test_kernel_mcp import run, write_config
from tests.tools.conftest import stdio_spec

pytestmark = pytest.mark.timeout(240)

ADD, NOTE = "functions.mcp__calc__add:0", "functions.mcp__calc__write_note:1"


def test_replay_calls_only_read_only_mcp_tools_again(
    kernel: Kernel, fake_model: FakeModel, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    cfg = write_config(tmp_path / "mcp.json", {"calc": stdio_spec(env={"NOTES_FILE": str(notes)})})
    fake_model.script(
        [
            Turn(tool_calls=[Call("mcp__calc__add", {"a": 40, "b": 2})]),
            Turn(tool_calls=[Call("mcp__calc__write_note", {"text": "once"})]),
            Turn(content="42, noted."),
        ]
    )
    i = run(kernel, fake_model, f"--approve auto --mcp-config {cfg}")
    run_id = kernel.value(f"_k2s().runs[{i}].run_id")
    assert notes.read_text() == "once\n"

    kernel.run(f"%k2 replay {run_id}")
    kernel.run("import k2lab\nawait k2lab.wait()")
    table = kernel.value("_k2s().outputs[-1][1]['text/plain']")
    assert f"replayed run {run_id}: 1 call, 0 changed outputs, 1 skipped" in table, table
    assert f"{ADD}: same" in table and NOTE not in table

    card = f"_k2s().runs[{i}].widget.state.cards"
    for call_id in (ADD, NOTE):
        kernel.click(i, {"action": "replay", "call_id": call_id})
        done = f"not ({card}[{call_id!r}]['replay'] or {{'running': True}}).get('running')"
        kernel.wait_for(done, 60)
    added = kernel.value(f"{card}[{ADD!r}]['replay']")
    assert added["changed"] is False and added["new_output"] == "42", added
    refused = kernel.value(f"{card}[{NOTE!r}]['replay']")
    assert "not marked read-only by its MCP server" in str(refused), refused
    assert notes.read_text() == "once\n"  # never a second note
