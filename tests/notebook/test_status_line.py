"""The live view's one-line run summary (render.status_line): plurals, and a queued run says so
instead of "step 0/0 · isolation: ? · model: ?" (issue 11)."""

from __future__ import annotations

from k2lab.trace.render import status_line


def test_one_tool_call_is_singular_and_others_plural() -> None:
    head = {"step": 1, "max_steps": 300, "model_label": "demo", "isolation": "bwrap"}
    assert "· 1 tool call ·" in status_line({**head, "tool_calls": 1}, 1)
    assert "· 0 tool calls ·" in status_line({**head, "tool_calls": 0}, 1)
    assert "· 2 tool calls ·" in status_line({**head, "tool_calls": 2}, 1)


def test_a_queued_run_says_it_is_queued() -> None:
    for head in ({"status": "waiting"}, {"step": 0, "max_steps": 0, "tool_calls": 0}):
        line = status_line(head, 0)
        assert line.startswith("queued")
        assert "0/0" not in line and "?" not in line


def test_unknown_parts_are_left_out() -> None:
    line = status_line({"step": 2, "max_steps": 10, "model": "kimi-k2-thinking"}, 2)
    assert "isolation" not in line and "model: kimi-k2-thinking" in line


def test_a_heavy_run_counts_lanes_not_the_aggregations_steps() -> None:
    from k2lab.trace.state import state_from_events
    from tests.notebook.test_state import heavy_events

    events = heavy_events()
    st = state_from_events(events[:3])  # both lanes started
    line = status_line(st.head, len(st.steps))
    assert line.startswith("heavy: 2 lanes · running: 1, 2 · lanes running"), line
    st = state_from_events(events)
    line = status_line(st.head, len(st.steps))
    assert line.startswith("ended: completed · heavy: 2 lanes · finished: 1"), line
    assert "step 1/" not in line and "250 in / 25 out tokens" in line
