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
    read_bundle,
    runs_from_notebook,
    scrub_event,
    trace_bundle,
)
from tests.notebook.test_state import run_events


def test_bundle_shape_and_fallbacks() -> None:
    events = run_events(decision="edit")
    b = trace_bundle("r1", events)
    assert b[MIMETYPE] == {"version": 1, "run_id": "r1", "events": events}
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
    assert runs[0].events == events
