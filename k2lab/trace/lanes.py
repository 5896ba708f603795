"""A heavy run's trace, one lane at a time: what replay, export and fork need per lane.

A heavy run interleaves its lanes' events in one trace, each event tagged with ``lane`` ("1".."N",
"aggregate" for the aggregation and its verify round). Each lane had its own sandbox and its own
conversation, and Kimi's call ids (``functions.python:0``) repeat across lanes, so a lane's calls
are replayed, exported or forked only with that lane's events, in a sandbox of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

E = TypeVar("E")


def _lane(ev: Any) -> str:
    lane = ev.get("lane", "") if isinstance(ev, dict) else getattr(ev, "lane", "")
    return lane if isinstance(lane, str) else ""


def lanes_of(events: Sequence[Any]) -> list[str]:
    """The lanes of a trace in the order they started; ``[]`` for a single (not heavy) run."""
    return list(dict.fromkeys(lane for lane in map(_lane, events) if lane))


def by_lane(events: Sequence[E]) -> dict[str, list[E]]:
    """Each lane's events (``{"": events}`` for a single run)."""
    lanes = lanes_of(events)
    if not lanes:
        return {"": list(events)}
    split: dict[str, list[E]] = {lane: [] for lane in lanes}
    for ev in events:
        lane = _lane(ev)
        if lane:  # untagged events of a heavy trace (none are written today) belong to no lane
            split[lane].append(ev)
    return split


def lane_events(events: Sequence[E], lane: str | None) -> list[E]:
    """One lane's events; ``lane`` None or "" means the whole trace of a single run.

    Raises ``ValueError`` (a message for the user) for an unknown lane, or when a heavy trace
    is asked for without a lane where a single conversation is needed.
    """
    split = by_lane(events)
    if not lane:
        if "" in split:
            return split[""]
        raise ValueError(f"this is a heavy run: say which lane ({_names(split)})")
    if lane not in split:
        known = _names(split) if "" not in split else "none: this is not a heavy run"
        raise ValueError(f"no lane {lane!r} in this run (lanes: {known})")
    return split[lane]


def lanes_with_call(events: Sequence[Any], call_id: str) -> list[str]:
    """The lanes whose calls include ``call_id`` (ids repeat across lanes)."""
    return [
        lane
        for lane, evs in by_lane(events).items()
        if any(_type(e) == "tool.proposed" and _call_id(e) == call_id for e in evs)
    ]


def _type(ev: Any) -> str:
    return str(ev.get("type", "") if isinstance(ev, dict) else getattr(ev, "type", ""))


def _call_id(ev: Any) -> str:
    return str(ev.get("call_id", "") if isinstance(ev, dict) else getattr(ev, "call_id", ""))


def _names(split: dict[str, Any]) -> str:
    return ", ".join(split)
