"""The JSONL trace: header, round trip, cut last line, versions, append."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from k2lab.events import (
    ReasoningDelta,
    RunEnd,
    RunStart,
    StepEnd,
    StepStart,
    ToolDecision,
    ToolProposed,
    ToolResult,
)
from k2lab.trace.jsonl import TraceError, TraceWriter, load_trace, read_trace

DATA = Path(__file__).parent / "data"


def _run_events(run_id: str = "r1") -> list:
    evs = [
        RunStart(
            run_id=run_id, prompt="p", model="m", model_label="Label", base_url="http://x/v1",
            policy="auto", isolation="process", max_steps=5,
        ),
        StepStart(step=1),
        ReasoningDelta(step=1, text="thinking … ünïcode"),
        StepEnd(step=1, content="", reasoning="thinking",
                tool_calls=[{"id": "functions.python:0", "name": "python", "arguments": "{}"}]),
        ToolProposed(step=1, call_id="functions.python:0", name="python", arguments='{"code":"1"}'),
        ToolDecision(call_id="functions.python:0", decision="approve", by="policy"),
        ToolResult(call_id="functions.python:0", name="python", ok=True, output="1",
                   display=[{"data": {"text/plain": "1"}, "metadata": {}}]),
        RunEnd(stop_reason="completed", answer="one", steps=2, tool_calls=1),
    ]  # fmt: skip
    for i, e in enumerate(evs):
        e.seq = i
    return evs


def test_round_trip_with_header(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    events = _run_events()
    with TraceWriter(path) as w:
        for e in events:
            w.write(e)
    header, back = read_trace(path)
    assert header["k2lab_trace"] == 1
    assert header["run_id"] == "r1" and header["model_label"] == "Label"
    assert "T" in header["created"]  # ISO 8601
    assert [e.to_dict() for e in back] == [e.to_dict() for e in events]


def test_each_line_is_flushed_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    w = TraceWriter(path)
    events = _run_events()
    w.write(events[0])
    w.write(events[1])
    # a reader sees both lines while the writer is still open (a crash would keep them)
    assert [e.type for e in read_trace(path)[1]] == ["run.start", "step.start"]
    w.close()


def test_cut_last_line_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        for e in _run_events()[:5]:
            w.write(e)
    with path.open("a") as f:
        f.write('{"seq":5,"type":"tool.decis')  # the process died mid-write
    with caplog.at_level(logging.WARNING, logger="k2lab.trace"):
        t = load_trace(path)
    assert len(t.events) == 5
    assert len(t.warnings) == 1 and "cut last line" in t.warnings[0]
    assert "cut last line" in caplog.text


def test_appending_after_a_crash_repairs_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    events = _run_events()
    with TraceWriter(path) as w:
        for e in events[:3]:
            w.write(e)
    with path.open("a") as f:
        f.write('{"seq":3,"ty')
    with TraceWriter(path) as w:  # a session reopens its trace and goes on
        for e in events[3:]:
            w.write(e)
    t = load_trace(path)
    assert t.warnings == []
    assert [e.seq for e in t.events] == list(range(len(events)))
    assert path.read_text().count('"k2lab_trace"') == 1  # one header


def test_mode_w_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    for run_id in ("first", "second"):
        with TraceWriter(path, mode="w") as w:
            for e in _run_events(run_id):
                w.write(e)
    header, events = read_trace(path)
    assert header["run_id"] == "second" and len(events) == len(_run_events())


def test_newer_major_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"k2lab_trace": 2, "created": "2031-01-01"}) + "\n")
    with pytest.raises(TraceError, match=r"version 2 trace; this k2lab reads up to version 1"):
        load_trace(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ('{"seq": 0, "type": "run.start"}\n', "not a k2lab trace"),
        ("not json at all\n", "not a k2lab trace"),
        ('{"k2lab_trace": "one"}\n', "invalid trace version"),
    ],
)
def test_not_a_trace(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(content)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_a_corrupt_middle_line_is_skipped_with_its_line_number(tmp_path: Path) -> None:
    """As the server's session files do (one JSONL layer): the line is named, the rest is read."""
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        for e in _run_events()[:2]:
            w.write(e)
    with path.open("a") as f:
        f.write("garbage\n[1, 2]\n" + json.dumps(_run_events()[2].to_dict()) + "\n")
    t = load_trace(path)
    assert [e.type for e in t.events] == [e.type for e in _run_events()[:3]]
    assert any("skipped line 4: not valid JSON" in w for w in t.warnings), t.warnings
    assert any("skipped line 5: not an event object" in w for w in t.warnings), t.warnings


def test_a_nan_in_an_event_is_written_as_strict_json(tmp_path: Path) -> None:
    """Sandbox output can hold NaN (display metadata); the line stays JSON other tools read."""
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        w.write_dict({"seq": 0, "type": "notice", "message": "m", "x": float("nan")})
    line = path.read_text().splitlines()[1]
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the trace"))["x"] is None


def test_unknown_event_types_and_fields_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with TraceWriter(path) as w:
        w.write(_run_events()[0])
        w.write_dict({"seq": 1, "type": "hologram.start", "ts": 0})  # from a newer k2lab
        d = _run_events()[1].to_dict()
        d["future_field"] = 1
        w.write_dict(d)
    t = load_trace(path)
    assert [e.type for e in t.events] == ["run.start", "step.start"]
    assert any("hologram.start" in w for w in t.warnings)


def test_a_frozen_version_1_trace_stays_readable() -> None:
    """A trace written by k2lab 0.1 (`k2lab run "demo: estimate pi" --trace`), kept as is."""
    t = load_trace(DATA / "pi_v1.jsonl")
    assert t.header["k2lab_trace"] == 1 and t.warnings == []
    assert t.events[0].type == "run.start" and t.events[-1].type == "run.end"
    results = [e for e in t.events if isinstance(e, ToolResult)]
    assert len(results) == 2 and "pi_hat=" in results[0].output


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read trace"):
        load_trace(tmp_path / "nope.jsonl")
