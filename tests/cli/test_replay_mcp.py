"""``k2lab replay`` of a trace with MCP calls (issue 10: replayable only when read-only): with
``--mcp-config``, a tool its real server marks ``readOnlyHint`` is called again and compared; one
without the hint is skipped with why, and never runs again; without the config both are skipped
with a hint."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import RunCli
from tests.cli.test_run_mcp import write_config
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.tools.conftest import stdio_spec

FAST = ("--isolation", "process")


def _trace(fake_model: FakeModel, run_cli: RunCli, tmp_path: Path) -> tuple[Path, Path, Path]:
    notes = tmp_path / "notes.txt"
    cfg = write_config(tmp_path / "mcp.json", {"calc": stdio_spec(env={"NOTES_FILE": str(notes)})})
    fake_model.script(
        [
            Turn(tool_calls=[Call("mcp__calc__add", {"a": 40, "b": 2})]),
            Turn(tool_calls=[Call("mcp__calc__write_note", {"text": "once"})]),
            Turn(tool_calls=[Call("python", {"code": "print(6 * 7)"})]),
            Turn(content="42, noted."),
        ]
    )
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST,
        "--mcp-config", str(cfg), "--trace", str(trace), "add and note",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert notes.read_text() == "once\n"
    return trace, cfg, notes


def test_only_read_only_mcp_calls_are_replayed(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    trace, cfg, notes = _trace(fake_model, run_cli, tmp_path)
    r = run_cli("replay", *FAST, "--json", "--mcp-config", str(cfg), str(trace))
    assert r.returncode == 0, r.stderr
    rows = {row["call_id"]: row for row in map(json.loads, r.stdout.splitlines())}
    add, note = rows["functions.mcp__calc__add:0"], rows["functions.mcp__calc__write_note:1"]
    py = rows["functions.python:2"]
    assert add["status"] == "same" and add["new_output"] == "42"
    assert json.loads(add["code"]) == {"a": 40, "b": 2}  # what ran again: the arguments
    assert note["status"] == "skipped" and "not marked read-only" in note["reason"]
    assert py["status"] == "same"
    assert notes.read_text() == "once\n"  # the tool with effects did not run again


def test_without_the_config_mcp_calls_are_skipped_with_a_hint(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    trace, _, _ = _trace(fake_model, run_cli, tmp_path)
    r = run_cli("replay", *FAST, str(trace))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    skipped = [ln for ln in lines if ln.startswith("skipped")]
    assert len(skipped) == 2 and all("--mcp-config with its server" in ln for ln in skipped)
    assert lines[-1] == "replayed 1 call(s): 1 same, 0 changed, 2 skipped"
