"""A notebook holding saved heavy-mode and verify traces, reopened in real JupyterLab + Chromium
(issues 12 and 9): the trace renderer shows the lanes side by side (status, step, tokens), each
lane opens to its own steps and cards (Kimi's call ids repeat across lanes: one card each), the
aggregation with its answer and which lanes finished or failed, and the verify outcome next to
the answer (verified / corrected, and what was checked). A trace cut mid-run (what a live view
holds while the aggregation's check runs) shows "Checking the answer".

The traces are the golden traces of tests/trace/data/ (real HeavyRun / VerifyPass runs over HTTP,
tests/trace/golden.py). Screenshots: tests/browser/screenshots/heavy-*.png; the README's heavy
section shows docs/img/saved-heavy-trace.png from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import expect

from k2lab.trace.notebook import trace_bundle
from tests.browser.test_panel import copy_to_docs, new_notebook, open_lab
from tests.browser.test_panel_ui import axe_violations, low_contrast, overflowing
from tests.trace.test_runview import events_of

pytestmark = pytest.mark.browser

OUT = ".k2lab-trace-output"


def _cell(source: str, run_id: str, events: list[dict[str, Any]]) -> Any:
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("display_data", data=trace_bundle(run_id, events))]
    return cell


def _notebook(lab: Any, name: str) -> None:
    heavy = events_of("heavy")
    checking = next(i for i, e in enumerate(heavy) if e["type"] == "verify.start") + 1
    cells = [
        _cell("%%k2 --heavy 3 --verify\nWhat is 6 * 7?", "heavy", heavy),
        _cell(
            "%%k2 --verify --verify-rounds 2\nWhat is 6 * 7?", "v", events_of("verify_corrected")
        ),
        _cell("%%k2 --heavy 3 --verify\nWhat is 6 * 7?", "heavy-live", heavy[:checking]),
    ]
    nbformat.write(new_notebook(cells), Path(lab.root_dir) / name)


def test_saved_heavy_trace_shows_lanes_aggregation_and_verify(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    name = "heavy_saved.ipynb"
    _notebook(jupyterlab, name)
    page.set_viewport_size({"width": 1280, "height": 1000})
    open_lab(page, jupyterlab, name)
    outs = page.locator(OUT)
    expect(outs).to_have_count(3, timeout=60_000)
    heavy = outs.nth(0).locator(".k2lab-heavy")
    expect(heavy).to_have_count(1)

    # the lanes side by side: one tile each, status / step / tokens, on one row
    tiles = heavy.locator(".k2lab-lanes > .k2lab-lane")
    expect(tiles).to_have_count(3)
    expect(tiles.nth(0)).to_contain_text("Lane 1")
    expect(tiles.nth(0).locator(".k2lab-lane-status")).to_have_text("answered")
    expect(tiles.nth(1).locator(".k2lab-lane-status")).to_have_text("answered")
    expect(tiles.nth(2).locator(".k2lab-lane-status")).to_have_text("failed")
    expect(tiles.nth(2)).to_contain_text("its sandbox did not start")
    expect(tiles.nth(0)).to_contain_text("step 2/300 · 1 call")
    expect(tiles.nth(0)).to_contain_text("150 in / 18 out tokens")
    boxes = [tiles.nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"], boxes  # side by side
    assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]
    expect(heavy.locator(".k2lab-heavy-summary")).to_contain_text(
        "Heavy: 3 lanes · 2 answered · 1 not"
    )

    # a lane opens to its own steps and cards; the same call id in two lanes is two cards
    bodies = heavy.locator(".k2lab-lane-body")
    expect(bodies.nth(0)).to_be_hidden()
    tiles.nth(0).click()
    expect(tiles.nth(0)).to_have_attribute("aria-expanded", "true")
    expect(bodies.nth(0)).to_be_visible()
    tiles.nth(1).click()
    cards = heavy.locator('.k2lab-call[data-call-id="functions.python:0"]')
    expect(cards).to_have_count(2)
    assert {cards.nth(i).get_attribute("data-run-id") for i in range(2)} == {
        "heavy.1",
        "heavy.2",
    }
    for i in range(2):
        expect(cards.nth(i)).to_contain_text("ran: print(6 * 7)")
    tiles.nth(1).click()
    expect(bodies.nth(1)).to_be_hidden()

    # the aggregation: its answer, the lanes it used and the one that failed, the verify outcome
    agg = heavy.locator(".k2lab-aggregate")
    expect(agg.locator(".k2lab-answer")).to_contain_text("Lanes followed: 1 and 2")
    expect(agg.locator(".k2lab-lanes-used")).to_contain_text(
        "Aggregated the answers of lane 1, lane 2; "
        "did not finish: lane 3 (its sandbox did not start"
    )
    verify = agg.locator(".k2lab-verify")
    expect(verify).to_have_attribute("data-outcome", "verified")
    expect(verify.locator(".k2lab-verify-badge")).to_have_text("Verified")
    expect(verify).to_contain_text("7 * 6 = 42 and 42 / 7 = 6.")
    # next to the answer: the verify block follows the answer directly
    assert agg.evaluate(
        "n => n.querySelector('.k2lab-answer').nextElementSibling"
        " === n.querySelector('.k2lab-verify')"
    )
    shot = screenshot("heavy-saved", outs.nth(0))
    copy_to_docs(shot, "saved-heavy-trace.png")

    # a single run with a verify pass: corrected, with what was checked in each round
    single = outs.nth(1)
    sv = single.locator(".k2lab-verify")
    expect(sv).to_have_attribute("data-outcome", "corrected")
    expect(sv.locator(".k2lab-verify-badge")).to_have_text("Corrected")
    expect(sv).to_contain_text("2 rounds, 2 tool calls in the check")
    expect(single.locator(".k2lab-answer")).to_have_text("6 * 7 = 42.")
    sv.locator(".k2lab-verify-rounds > summary").click()
    rounds = sv.locator(".k2lab-verify-round")
    expect(rounds).to_have_count(2)
    expect(rounds.nth(0)).to_contain_text("Round 1: fault")
    expect(rounds.nth(0)).to_contain_text("print(6 * 7)")
    expect(rounds.nth(1)).to_contain_text("Round 2: holds")
    expect(single.locator(".k2lab-verify-step")).to_have_count(4)  # the check rounds' steps
    screenshot("heavy-verify-corrected", single)

    # cut while the aggregation's check runs (what the live view holds then)
    live = outs.nth(2)
    expect(live.locator(".k2lab-verify")).to_have_attribute("data-outcome", "checking")
    expect(live.locator(".k2lab-verify-badge")).to_have_text("Checking the answer · round 1 of 1")
    expect(live.locator(".k2lab-lane-status")).to_have_text(["answered", "answered", "failed"])
    expect(live.locator(".k2lab-heavy-summary")).to_contain_text("3 lanes · 2 answered")
    expect(live.locator(".k2lab-run-end")).to_have_count(3)  # the lanes ended, not the aggregation

    assert axe_violations(page, OUT) == []
    assert (bad := low_contrast(page, f"{OUT} .k2lab-heavy")) == [], "\n".join(bad)

    # an 800 px window: the tiles wrap inside the output, nothing runs past its edge
    page.set_viewport_size({"width": 800, "height": 900})
    page.wait_for_timeout(300)
    assert overflowing(page, f"{OUT} .k2lab-heavy", ".k2lab-lane") == []
    assert overflowing(page, f"{OUT} .k2lab-heavy", ".k2lab-lane-status") == []
    screenshot("heavy-saved-800", outs.nth(0))


def test_a_heavy_trace_at_known_prices_shows_each_lanes_cost_and_the_total(
    jupyterlab: Any, page: Any, screenshot: Any
) -> None:
    """Issue 12: tokens and, where the preset knows prices, cost per lane and in total."""
    from k2lab.trace.view import cost_text, view_of

    prices = [0.6, 0.15, 2.5]
    heavy = [{**e, "prices": prices} if e["type"] == "run.start" else e for e in events_of("heavy")]
    name = "heavy_prices.ipynb"
    cells = [_cell("%%k2 --heavy 3\nWhat is 6 * 7?", "heavy", heavy)]
    nbformat.write(new_notebook(cells), Path(jupyterlab.root_dir) / name)
    open_lab(page, jupyterlab, name)
    out = page.locator(OUT)
    expect(out).to_have_count(1, timeout=60_000)
    runs = {r.lane: r for r in view_of(heavy).runs}
    tiles = out.locator(".k2lab-heavy .k2lab-lanes > .k2lab-lane")
    expect(tiles).to_have_count(3)
    for i, lane in enumerate(("1", "2", "3")):
        want = cost_text(runs[lane].totals, prices)
        expect(tiles.nth(i).locator(".k2lab-lane-tokens")).to_contain_text(want)
    summary = out.locator(".k2lab-heavy-summary")
    expect(summary).to_contain_text(" in all · ≈ $")
    screenshot("heavy-prices", out.locator(".k2lab-heavy"))
