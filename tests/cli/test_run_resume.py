"""``k2lab run --resume TRACE``: the next run continues the conversation a trace recorded, as the
model had it (the engine's ``conversation_from_events``): outputs the run hid stay hidden."""

from __future__ import annotations

from pathlib import Path

from k2lab.agent.context import HIDDEN_OUTPUT
from k2lab.trace.jsonl import read_trace
from tests.cli.conftest import RunCli, tool_messages
from tests.fixtures.fake_server import Call, FakeModel, Turn

FAST = ("--isolation", "process")


def test_a_compacted_run_resumes_without_resending_hidden_outputs(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    # the second step's prompt is over the context share: the loop hides the outputs so far
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", {"code": "print('first output')"})], prompt_tokens=100),
            Turn(
                tool_calls=[Call("python", {"code": "print('second output')"})],
                prompt_tokens=250_000,
            ),
            Turn(content="Done.", prompt_tokens=100),
            Turn(content="Continued."),
        ]
    )
    trace = tmp_path / "t.jsonl"
    base = ("run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST)
    r = run_cli(*base, "--trace", str(trace), "first task")
    assert r.returncode == 0, r.stderr
    _, first = read_trace(trace)
    assert any(e.type == "notice" and getattr(e, "kind", "") == "compaction" for e in first)
    assert tool_messages(fake_model.requests[2])[0] == HIDDEN_OUTPUT

    r = run_cli(*base, "--resume", str(trace), "--trace", str(trace), "go on")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Continued.\n"
    sent = fake_model.requests[3]["messages"]
    assert tool_messages(fake_model.requests[3]) == [HIDDEN_OUTPUT, "second output"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["first task", "go on"]
    assert not any("first output" in str(m.get("content")) for m in sent)
    # the same file: the new run is appended, naming the run it continues
    _, both = read_trace(trace)
    starts = [e for e in both if e.type == "run.start"]
    assert len(starts) == 2 and starts[1].parent_run_id == starts[0].run_id


def test_resume_from_a_file_that_is_not_a_trace_is_a_usage_error(
    run_cli: RunCli, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    r = run_cli("run", "--resume", str(bad), "--approve", "auto", *FAST, "go on")
    assert r.returncode == 2, r.stderr
    assert "--resume" in r.stderr and "not a k2lab trace" in r.stderr
