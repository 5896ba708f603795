"""The CLI's progress view reads the run view: one retry numbering, edits and stops as fields."""

from __future__ import annotations

import io
from pathlib import Path

from k2lab.cli.progress import Progress
from k2lab.trace.jsonl import load_trace

DATA = Path(__file__).parents[1] / "trace" / "data"


def shown(name: str) -> str:
    out = io.StringIO()
    progress = Progress(out, enabled=True, color=False)
    for ev in load_trace(DATA / f"{name}.jsonl").events:
        progress.show(ev)
    return out.getvalue()


def test_retries_read_attempt_n_of_max() -> None:
    text = shown("retries")  # retry events: attempt=1 and 2 of max_attempts=4
    assert "retry: attempt 2 of 4 in 0.5 s: HTTP 503: overloaded" in text
    assert "retry: attempt 3 of 4 in 1.0 s: HTTP 429: slow down" in text


def test_an_edit_shows_what_ran_without_the_models_note() -> None:
    text = shown("edited")
    assert "edited (you); running instead:\n    print('hello')" in text
    assert "← ok" in text and "    ran: print('hello')" in text
    assert "[The user edited" not in text


def test_a_call_stopped_while_waiting_says_not_run() -> None:
    text = shown("stopped_waiting")
    assert text.count("← ok") == 1
    assert "← not run" in text and "← error" not in text
    assert "── stopped: 1 step, 2 tool calls" in text


def test_rejected_and_invalid_calls() -> None:
    text = shown("parallel")
    assert "rejected (you)" in text and "← rejected" in text
    assert "✗ not run: Error: unknown tool 'nope'" in text


def test_the_view_is_kept_when_progress_is_off() -> None:
    progress = Progress(io.StringIO(), enabled=False, color=False)
    for ev in load_trace(DATA / "approved.jsonl").events:
        progress.show(ev)
    assert progress.view.run is not None and progress.view.run.answer == "6 * 7 = 42."


def test_a_restarted_step_is_shown_once_after_the_cut_stream() -> None:
    """``notice(kind="step_restart")``: the cut stream's line ends, the step streams again on a
    line of its own, and the text is never run together ("Let me Let me think")."""
    text = shown("step_restart")
    assert "thinking: Let me \n  note: The model's stream failed" in text
    assert "\nthinking: Let me think about this carefully.\n" in text
    assert "Let me Let me" not in text
