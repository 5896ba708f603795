"""The offline demo model end to end: ``k2lab run`` with no key, the real sandbox, the real trace.

The answers must carry the numbers the sandbox actually printed (read back from the trace here),
and the demo model must say what it is.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from k2lab.events import ToolResult
from k2lab.providers.demo import DEMO_MODEL_LABEL, DEMO_PROMPTS
from k2lab.trace.jsonl import read_trace
from tests.cli.conftest import RunCli


def _results(trace: Path) -> list[ToolResult]:
    _, events = read_trace(trace)
    return [e for e in events if isinstance(e, ToolResult)]


def test_estimate_pi_answers_with_the_computed_value(
    pi_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    r, trace = pi_run
    assert r.returncode == 0, r.stderr
    assert DEMO_MODEL_LABEL in r.stderr  # the demo says what it is, even without a TTY
    header, events = read_trace(trace)
    assert header["model_label"] == DEMO_MODEL_LABEL
    assert events[0].model_label == DEMO_MODEL_LABEL  # type: ignore[union-attr]
    sample, verify = _results(trace)
    assert sample.ok and verify.ok
    printed = re.search(r"pi_hat=(\d\.\d+)", sample.output)
    assert printed is not None, sample.output
    answered = re.search(r"pi ~ (\d\.\d+)", r.stdout)
    assert answered is not None, r.stdout
    assert answered.group(1) == printed.group(1)
    assert abs(float(answered.group(1)) - 3.14159) < 0.01
    # the verification's own numbers are quoted too
    abs_error = re.search(r"abs_error=([\d.]+)", verify.output)
    assert abs_error is not None and abs_error.group(1) in r.stdout


def test_fix_a_bug_shows_an_error_then_corrects_itself(run_cli: RunCli, tmp_path: Path) -> None:
    trace = tmp_path / "bug.jsonl"
    r = run_cli("run", "--approve", "auto", "--trace", str(trace), DEMO_PROMPTS["fix_bug"])
    assert r.returncode == 0, r.stderr
    results = _results(trace)
    assert not results[0].ok and "KeyError" in results[0].output
    assert all(res.ok for res in results[1:]) and len(results) >= 3
    # every average in the answer is one the fixed code printed
    fixed = next(res.output for res in results if "avg=" in res.output)
    printed = dict(re.findall(r"^(\w+): orders=\d+ avg=([\d.]+)", fixed, re.M))
    assert len(printed) == 4
    for customer, avg in printed.items():
        assert re.search(rf"\| {customer} \| \d+ \| {re.escape(avg)} \|", r.stdout), r.stdout
    assert "KeyError" in r.stdout  # it explains what went wrong first


def test_analyze_a_dataset_makes_a_plot(run_cli: RunCli, tmp_path: Path) -> None:
    trace = tmp_path / "data.jsonl"
    r = run_cli("run", "--approve", "auto", "--trace", str(trace), "Demo: analyze a dataset")
    assert r.returncode == 0, r.stderr
    results = _results(trace)
    assert all(res.ok for res in results), [res.output for res in results]
    summary = next(res.output for res in results if "top_region=" in res.output)
    top = re.search(r"top_region=(\w+) top_mean=([\d.]+)", summary)
    assert top is not None
    assert f"**{top.group(1)}** ({top.group(2)})" in r.stdout
    pngs = [d for res in results for d in res.display if "image/png" in d.get("data", {})]
    assert pngs, "the plot call should produce an image/png display output"


def test_other_prompts_get_an_honest_answer(run_cli: RunCli) -> None:
    r = run_cli("run", "--approve", "auto", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    assert DEMO_MODEL_LABEL in r.stdout and "K2LAB_API_KEY" in r.stdout
    assert "--base-url" in r.stdout
    assert "Paris" not in r.stdout


def test_demo_command_in_the_terminal(run_cli: RunCli) -> None:
    r = run_cli("demo", "--cli", "--name", "estimate_pi")
    assert r.returncode == 0, r.stderr
    assert f"## {DEMO_PROMPTS['estimate_pi']}" in r.stdout
    assert "pi ~ 3.1" in r.stdout
    # progress is shown for the demo even without a TTY: reasoning and the tool call
    assert "thinking:" in r.stderr and "→ python [functions.python:0]" in r.stderr
