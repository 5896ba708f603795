"""The notebook mime bundle: shape, versions, fallbacks, escaping, secrets, nbformat round trip."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from k2lab.trace.notebook import (
    MIMETYPE,
    REDACTED,
    TraceVersionError,
    clean_url,
    coalesce_events,
    read_bundle,
    runs_from_notebook,
    scrub_event,
    trace_bundle,
)
from tests.notebook.test_state import run_events


def test_bundle_shape_and_fallbacks() -> None:
    events = run_events(decision="edit")
    b = trace_bundle("r1", events)
    assert b[MIMETYPE] == {"version": 1, "run_id": "r1", "events": coalesce_events(events)}
    html, md = b["text/html"], b["text/markdown"]
    assert 'class="k2lab-trace" data-k2lab-run-id="r1"' in html
    assert "<script" not in html
    text = re.sub(r"<[^>]+>", "", html)  # the code is highlighted: compare the text
    assert "Let me think." in text and "print(2)" in text and "proposed by the model" in text
    assert "print(1)" in md and "print(2)" in md and "Done" in md
    assert b["text/plain"].startswith("k2lab run r1: ended (completed)")
    json.dumps(b)


def test_everything_from_the_model_and_sandbox_is_escaped() -> None:
    events = run_events()
    evil = "<img src=x onerror=alert(1)>"
    for ev in events:
        if ev["type"] == "step.end" and ev["step"] == 1:
            ev["reasoning"] = evil
        if ev["type"] == "tool.result":
            ev["output"] = evil
            ev["display"] = [
                {"data": {"text/html": f"<p>hi</p>{evil}"}, "metadata": {}},
                {"data": {"image/png": "iVBORw0KGgo="}, "metadata": {}},
            ]
        if ev["type"] == "run.end":
            ev["answer"] = f"**ok** {evil}"
    html = trace_bundle("r1", events)["text/html"]
    assert evil not in html.replace('srcdoc="', "")  # only inside the iframe's srcdoc, escaped
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") >= 2
    assert '<iframe class="k2lab-html" sandbox=""' in html
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in html
    assert "<strong>ok</strong>" in html


def test_long_outputs_are_collapsed() -> None:
    events = run_events()
    res = next(e for e in events if e["type"] == "tool.result")
    res["output"] = "\n".join(f"line {i}" for i in range(200))
    b = trace_bundle("r1", events)
    assert "show all 200 lines" in b["text/html"]


def test_markdown_fences_survive_backticks() -> None:
    events = run_events()
    res = next(e for e in events if e["type"] == "tool.result")
    res["output"] = "```\ninside\n```"
    md = trace_bundle("r1", events)["text/markdown"]
    assert "````text\n```\ninside\n```\n````" in md


def test_version_checks() -> None:
    events = run_events()
    assert read_bundle({"version": 1, "run_id": "a", "events": events})[0] == "a"
    assert read_bundle(json.dumps({"version": 1, "run_id": "a", "events": []}))[1] == []
    with pytest.raises(TraceVersionError, match="upgrade k2lab"):
        read_bundle({"version": 2, "run_id": "a", "events": []})
    for bad in ({}, {"version": "1"}, {"version": 1, "events": "x"}, [1]):
        with pytest.raises(ValueError):
            read_bundle(bad)


def test_secrets_and_url_credentials_are_scrubbed() -> None:
    events = run_events()
    events[0]["base_url"] = "https://user:sk-secret-123@api.example.com/v1?key=sk-secret-123"
    res = next(e for e in events if e["type"] == "tool.result")
    res["output"] = "the key is sk-secret-123"
    clean = [scrub_event(e, ["sk-secret-123", ""]) for e in events]
    assert "sk-secret-123" not in json.dumps(clean)
    assert clean[0]["base_url"] == "https://api.example.com/v1"
    assert REDACTED in next(e for e in clean if e["type"] == "tool.result")["output"]
    assert clean_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_nbformat_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%k2\np")
    events = run_events()
    b1, b2 = trace_bundle("r1", events), trace_bundle("r2", run_events(stop=True))
    cell.outputs = [
        nbformat.v4.new_output("display_data", data=b1),
        nbformat.v4.new_output("display_data", data={"text/plain": ""}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("hi"), cell]
    nb.cells.append(
        nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("display_data", data=b2)])
    )
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    back = nbformat.read(path, as_version=4)
    nbformat.validate(back)
    runs = runs_from_notebook(back)
    assert [(r.run_id, r.cell_index, r.version) for r in runs] == [("r1", 1, 1), ("r2", 2, 1)]
    assert runs[0].events == coalesce_events(events)


# -- the saved record costs what the run produced (issue 9) -------------------------------------

from k2lab.trace.view import view_of  # noqa: E402
from tests.trace.test_runview import GOLDEN, events_of  # noqa: E402


def _reopen(tmp_path, run_id: str, events: list) -> list:  # type: ignore[no-untyped-def,type-arg]
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%k2\nhi")
    cell.outputs = [nbformat.v4.new_output("display_data", data=trace_bundle(run_id, events))]
    nb.cells = [cell]
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    (run,) = runs_from_notebook(nbformat.read(path, as_version=4))
    return run.events


@pytest.mark.parametrize("name", [*GOLDEN, "pi_v1"])
def test_saved_notebook_reopens_to_the_live_view(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    """Every golden trace, finished and at each live state its view file names (and at every
    event boundary), saved in a notebook and read back, folds to the view the live run had."""
    events = events_of(name)
    cuts = sorted({len(events), *range(1, len(events))})
    for n in cuts:
        live = view_of(events[:n]).to_dict()
        saved = _reopen(tmp_path, name, events[:n])
        assert view_of(saved).to_dict() == live, (name, n)
    full = _reopen(tmp_path, name, events)
    deltas = [e for e in events if e["type"].endswith(".delta")]
    if deltas and events[-1]["type"] == "run.end":
        assert not [e for e in full if e["type"].endswith(".delta")]  # every step ended
    kept = [e for e in events if not e["type"].endswith(".delta")]
    assert [e for e in full if not e["type"].endswith(".delta")] == kept  # nothing else dropped


def test_unfinished_step_keeps_its_text_merged_per_lane() -> None:
    evs = [
        {"type": "run.start", "run_id": "h.1", "lane": "1", "prompt": "p"},
        {"type": "run.start", "run_id": "h.2", "lane": "2", "prompt": "p"},
        {"type": "step.start", "step": 1, "lane": "1"},
        {"type": "step.start", "step": 1, "lane": "2"},
    ]
    for i in range(6):
        evs.append({"type": "reasoning.delta", "step": 1, "lane": "1", "text": f"a{i}"})
        evs.append({"type": "reasoning.delta", "step": 1, "lane": "2", "text": f"b{i}"})
    evs.append({"type": "step.end", "step": 1, "lane": "1", "reasoning": "A", "content": ""})
    out = coalesce_events(evs)
    d = [e for e in out if e["type"] == "reasoning.delta"]
    assert d == [{"type": "reasoning.delta", "step": 1, "lane": "2", "text": "b0b1b2b3b4b5"}]
    assert view_of(out).to_dict() == view_of(evs).to_dict()


def test_old_bundle_with_every_fragment_still_reads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    events = events_of("step_restart")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%k2\nhi")
    old = {MIMETYPE: {"version": 1, "run_id": "old", "events": events}, "text/plain": "x"}
    cell.outputs = [nbformat.v4.new_output("display_data", data=old)]
    nb.cells = [cell]
    (run,) = runs_from_notebook(nb)
    assert run.events == events
    assert view_of(run.events).to_dict() == view_of(events).to_dict()
