"""The event types: serialisation round trip and the registry of names."""

import json

import pytest

from k2lab.events import (
    EVENT_TYPES,
    RunEnd,
    RunStart,
    ToolProposed,
    ToolResult,
    event_from_dict,
)


def test_every_event_round_trips_through_json() -> None:
    samples = [
        RunStart(
            run_id="r1",
            prompt="p",
            model="m",
            model_label="m",
            base_url="u",
            policy="ask",
            isolation="bwrap",
            max_steps=3,
        ),
        ToolProposed(step=1, call_id="functions.python:0", name="python", arguments='{"code":"1"}'),
        ToolResult(call_id="functions.python:0", name="python", ok=True, output="1", display=[]),
        RunEnd(stop_reason="completed", answer="ü", steps=1, tool_calls=1),
    ]
    for ev in samples:
        d = json.loads(json.dumps(ev.to_dict()))
        back = event_from_dict(d)
        assert back == ev
        assert d["type"] == ev.type


def test_unknown_fields_from_newer_versions_are_ignored() -> None:
    d = RunEnd(stop_reason="stopped", answer="", steps=0, tool_calls=0).to_dict()
    d["something_new"] = 1
    assert event_from_dict(d).stop_reason == "stopped"  # type: ignore[union-attr]


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        event_from_dict({"type": "nope"})


def test_type_names_are_unique_and_dotted() -> None:
    assert all("." in name or name in {"usage", "retry", "error", "notice"} for name in EVENT_TYPES)
