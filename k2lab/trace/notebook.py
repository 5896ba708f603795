"""A run saved in a notebook: the ``application/vnd.k2lab.trace+json`` bundle and its fallbacks.

One bundle per run, written into the output of the cell that ran it::

    {"application/vnd.k2lab.trace+json": {"version": 1, "run_id": ..., "events": [event dicts]},
     "text/html": <self-contained, no script, everything escaped>,
     "text/markdown": <for viewers without HTML>, "text/plain": <one line>}

The JSON is the record: the event log without its streamed fragments (``coalesce_events``: every
step's reasoning, content, calls, decisions, results, usage and notices), readable by
``runs_from_notebook`` and replayable, folding to the live run's ``RunView``. The
HTML and Markdown are what JupyterLab without the extension, GitHub and nbviewer show. The HTML's
structure and class names are documented in ``k2lab/notebook/static/README.md`` (the labextension's
renderer and the live widget share them). Keys never get here: base URLs lose any userinfo, and the
face scrubs known secrets from events before they reach a bundle (``scrub_event``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from k2lab.scrub import REDACTED as REDACTED  # re-exported for readers of saved runs
from k2lab.scrub import Scrubber, clean_url
from k2lab.trace.render import render_html, render_markdown
from k2lab.trace.state import state_from_events

MIMETYPE = "application/vnd.k2lab.trace+json"
VERSION = 1


class TraceVersionError(ValueError):
    """A bundle written by a newer k2lab than this one."""


@dataclass(slots=True)
class SavedRun:
    run_id: str
    events: list[dict[str, Any]]
    version: int
    cell_index: int
    cell_id: str | None


def scrub_event(ev: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """An event dict with every secret replaced (and the base URL cleaned): ``k2lab.scrub``."""
    if "base_url" in ev:  # before scrubbing: "[redacted]" in a host is not a URL any more
        ev = {**ev, "base_url": clean_url(str(ev["base_url"]))}
    out: dict[str, Any] = Scrubber(secrets).value(ev)
    return out


_DELTAS = ("reasoning.delta", "content.delta")


def coalesce_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The event log without its streamed fragments: what a saved trace keeps.

    A ``step.end`` carries the step's assembled reasoning and content, so the deltas of an ended
    step are dropped (``RunView`` replaces the streamed text with the assembled one). The deltas
    of a step that never ended (a stopped run) are merged: adjacent fragments of the same kind,
    lane and step become one event. Every other event (calls, decisions, results, usage, notices,
    retries, verify) is kept as it is, so the run folds to the same ``RunView``."""
    keep = [True] * len(events)
    pending: dict[tuple[str, Any], list[int]] = {}
    for i, ev in enumerate(events):
        t = ev.get("type")
        lane = ev.get("lane")
        lane = lane if isinstance(lane, str) else ""
        if t in _DELTAS:
            pending.setdefault((lane, ev.get("step", -1)), []).append(i)
        elif t == "run.start":
            for key in [k for k in pending if k[0] == lane]:
                del pending[key]
        elif (
            t == "step.end"
            and isinstance(ev.get("reasoning"), str)
            and isinstance(ev.get("content"), str)
        ):
            for j in pending.pop((lane, ev.get("step", -1)), []):
                keep[j] = False
    out: list[dict[str, Any]] = []
    for i, ev in enumerate(events):
        if not keep[i]:
            continue
        prev = out[-1] if out else None
        if (
            ev.get("type") in _DELTAS
            and prev is not None
            and prev.get("type") == ev.get("type")
            and prev.get("step") == ev.get("step")
            and prev.get("lane", "") == ev.get("lane", "")
            and prev.get("run_id", "") == ev.get("run_id", "")
            and isinstance(prev.get("text"), str)
            and isinstance(ev.get("text"), str)
        ):
            out[-1] = {**prev, "text": prev["text"] + ev["text"]}
            continue
        out.append(ev)
    return out


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def trace_bundle(run_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The mime bundle (``display(bundle, raw=True)``) of one run; its record is the coalesced
    event log (``coalesce_events``), the fallbacks are rendered from the full one."""
    state = state_from_events(events)
    snap = state.snapshot()
    head = snap["head"]
    plain = (
        f"k2lab run {run_id}: {head['status']}"
        + (f" ({head['stop_reason']})" if head.get("stop_reason") else "")
        + f", {_count(len(snap['steps']), 'step')}, {_count(head['tool_calls'], 'tool call')}"
    )
    return {
        MIMETYPE: {"version": VERSION, "run_id": run_id, "events": coalesce_events(events)},
        "text/html": render_html(snap),
        "text/markdown": render_markdown(snap),
        "text/plain": plain,
    }


def read_bundle(value: Any) -> tuple[str, list[dict[str, Any]], int]:
    """Validate a saved bundle value; returns (run_id, events, version)."""
    if isinstance(value, str):  # some writers store JSON mime values as text
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError("a k2lab trace must be a JSON object")
    version = value.get("version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"a k2lab trace needs an integer version, got {version!r}")
    if version > VERSION:
        raise TraceVersionError(
            f"this trace has version {version}; this k2lab reads up to {VERSION} (upgrade k2lab)"
        )
    events = value.get("events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError("a k2lab trace needs an 'events' list of objects")
    return str(value.get("run_id", "")), events, version


def _extent(events: list[dict[str, Any]]) -> tuple[int, int]:
    """How far a record goes: its last ``seq`` (saved records drop fragments), then its length."""
    seqs = [e["seq"] for e in events if isinstance(e.get("seq"), int)]
    return (max(seqs) if seqs else -1, len(events))


def runs_from_notebook(nb: Any) -> list[SavedRun]:
    """Every saved run of a notebook (an ``nbformat`` node or a plain dict), in cell order.

    A run shown twice (``%k2 show``, or the trace of a run whose view was thought gone, shown in
    the next run's cell as well as its own) counts once, where it first appears, with the
    longest of its event lists."""
    runs: list[SavedRun] = []
    seen: dict[str, SavedRun] = {}
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if MIMETYPE in data:
                run_id, events, version = read_bundle(data[MIMETYPE])
                first = seen.get(run_id) if run_id else None
                if first is not None:
                    if _extent(events) > _extent(first.events):
                        first.events, first.version = events, version
                    continue
                run = SavedRun(run_id, events, version, i, cell.get("id"))
                runs.append(run)
                if run_id:
                    seen[run_id] = run
    return runs
