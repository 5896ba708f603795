"""``k2lab run``: one prompt, one run of the agent; the answer on stdout.

Builds the agent through ``k2lab.runtime`` (the same path as the notebook and the server), writes
every event to the trace and the progress view, and turns the run's end into an exit code:
0 answered; 1 failed (provider, sandbox, nobody to approve); 3 a budget ended it before an
answer; 130 stopped with Ctrl-C. Failures are one line on stderr. With ``--verify`` the check's
outcome is one ``k2lab: verified|corrected|could not verify (...)`` line on stderr, and a run
whose model answered exits 0 whatever the check found, even if a budget or an error cut the check.
With ``--resume TRACE`` the run continues the conversation a trace recorded
(``k2lab.agent.history``, as the notebook's ``%k2 --resume`` and the server's sessions do: hidden
outputs stay hidden); a ``--trace`` naming the same file appends the new run to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import DecisionSource, decision_source
from k2lab.agent.heavy import AGGREGATE
from k2lab.agent.verify import outcome_text
from k2lab.cli.approve import StdinLines, TerminalApprover
from k2lab.cli.progress import Progress
from k2lab.cli.term import (
    EXIT_BUDGET,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_USAGE,
    CliFailure,
    err,
    one_line,
    out,
)
from k2lab.config import Settings
from k2lab.driver import RunDriver, RunResult, RunSpec, Sink
from k2lab.events import Event, Notice, RunEnd, ToolProposed
from k2lab.providers.demo import DEMO_MODEL_LABEL
from k2lab.tools.mcp_config import MCPConfig
from k2lab.trace.jsonl import TraceWriter

DEMO_NOTE = (
    "k2lab: no API key (K2LAB_API_KEY / MOONSHOT_API_KEY) and no --base-url: the "
    f"{DEMO_MODEL_LABEL} answers. It only plays scripted demos; set K2LAB_API_KEY to use "
    "Kimi K2 Thinking."
)

_BUDGET_WORDS = {
    "max_steps": "the run reached --max-steps {max_steps} before the model answered",
    "wall_time": "the run hit its wall-time budget ({wall_time:g} s) before the model answered",
    "tokens": "the run used its token budget before the model answered",
}


@dataclass
class RunOptions:
    json: bool = False
    trace: str | None = None
    verbose: bool = False
    #: the demo command answers with its own header; run prints the bare answer
    announce_demo: bool = True
    #: the sandbox's workspace (None: a fresh temporary directory)
    workspace: Path | None = None
    #: MCP tool servers started with the run and stopped with it (``--mcp-config``)
    mcp: MCPConfig | None = None
    #: verify rounds after the answer (``--verify [--verify-rounds R]``); 0: no verify pass
    verify_rounds: int = 0
    #: heavy mode (``--heavy N [--heavy-concurrency C]``): N lanes and an aggregation; 0: off
    heavy: int = 0
    heavy_concurrency: int | None = None
    #: ``--resume TRACE``: continue the conversation of this trace file
    resume: str | None = None
    #: ``--with NAME=FILE``: values loaded into the sandbox before the run (``FileBytes``)
    variables: dict[str, Any] = field(default_factory=dict)


async def execute_run(settings: Settings, prompt: str, opts: RunOptions) -> tuple[int, str]:
    """Run ``prompt``; returns (exit code, answer). Raises ``CliFailure`` for one-line failures."""
    # what the terminal cannot do with N lanes: said before anything starts
    if opts.heavy and settings.approve == "ask":
        raise CliFailure(
            "--heavy needs --approve auto or deny (no terminal approval of N lanes yet)",
            EXIT_USAGE,
        )
    tty = sys.stderr.isatty()
    color = tty and not os.environ.get("NO_COLOR")
    progress = Progress(sys.stderr, enabled=opts.verbose or tty, color=color)
    resumed = _resumed(opts.resume) if opts.resume else None
    writer = _open_trace(opts.trace, append=_same_file(opts.trace, opts.resume))
    if settings.uses_demo_model and opts.announce_demo:
        err(DEMO_NOTE)
    try:
        return await _drive(settings, prompt, opts, progress, writer, resumed)
    finally:
        if writer is not None:
            writer.close()


def _resumed(path: str) -> tuple[Conversation, str | None]:
    """The conversation a trace recorded, and its last run (the new run's parent)."""
    from k2lab.agent.history import conversation_from_events
    from k2lab.agent.loop import default_system_prompt
    from k2lab.trace.jsonl import TraceError, load_trace

    try:
        trace = load_trace(path)
    except TraceError as e:
        raise CliFailure(f"--resume: {e}", EXIT_USAGE) from e
    events = [e.to_dict() for e in trace.events]
    starts = [e for e in events if e.get("type") == "run.start" and not e.get("lane")]
    lanes = [e for e in events if e.get("type") == "run.start" and e.get("lane")]
    if not starts and not lanes:
        raise CliFailure(f"--resume: {path} has no run to continue", EXIT_USAGE)
    parent = starts[-1].get("run_id") if starts else lanes[-1].get("run_id", "").rpartition(".")[0]
    return conversation_from_events([events], default_system_prompt()), parent or None


def _same_file(a: str | None, b: str | None) -> bool:
    return bool(a and b) and Path(a or "").resolve() == Path(b or "").resolve()


def _open_trace(path: str | None, *, append: bool = False) -> TraceWriter | None:
    if not path:
        return None
    try:
        return TraceWriter(path, mode="a" if append else "w")
    except OSError as e:
        raise CliFailure(f"cannot write the trace {path}: {e.strerror or e}", EXIT_USAGE) from e


async def _drive(
    settings: Settings,
    prompt: str,
    opts: RunOptions,
    progress: Progress,
    writer: TraceWriter | None,
    resumed: tuple[Conversation, str | None] | None = None,
) -> tuple[int, str]:
    """One run through the driver (``k2lab.driver``): the trace, the JSON lines, the progress
    view and the approver are its sinks; the run's end becomes the exit code."""
    drivers: list[RunDriver] = []  # the driver, once made (the approver stops it)

    def stop() -> None:
        if drivers:
            drivers[0].stop()

    approver: TerminalApprover | None = None
    decisions: DecisionSource
    if settings.approve == "ask":
        approver = TerminalApprover(
            StdinLines(), show_code=not progress.enabled, on_unavailable=stop
        )
        decisions = approver
    else:
        decisions = decision_source(settings.approve)
    spec = RunSpec(
        settings,
        prompt,
        decisions=decisions,
        workspace=opts.workspace,
        mcp=opts.mcp,
        verify_rounds=opts.verify_rounds,
        heavy=opts.heavy,
        heavy_concurrency=opts.heavy_concurrency,
        conversation=resumed[0] if resumed else None,
        parent_run_id=resumed[1] if resumed else None,
        variables=opts.variables,
    )
    sinks: list[Sink] = []
    if writer is not None:
        sinks.append(writer.write)
    if opts.json:
        sinks.append(lambda ev: out(json.dumps(ev.to_dict(), ensure_ascii=False)))
    sinks.append(_heavy_progress(progress) if opts.heavy else progress.show)
    if not progress.enabled:
        sinks.append(_warnings)
    if approver is not None:
        shown = approver.proposal_shown
        sinks.append(lambda ev: shown(ev.call_id) if isinstance(ev, ToolProposed) else None)
    driver = RunDriver(spec, sinks, on_agent=lambda _agent: _sandbox_note(progress, driver))
    drivers.append(driver)
    interrupts = _install_sigint(driver.stop)
    try:
        result = await driver.run()
    finally:
        _remove_sigint()
    trace_hint = f" (trace: {opts.trace})" if opts.trace else ""
    if result.failed == "stopped":
        code = EXIT_STOPPED if interrupts[0] else EXIT_FAILED
        raise CliFailure(f"the run was stopped before it started{trace_hint}", code)
    if result.failed is not None:
        raise CliFailure(result.failure + trace_hint)
    if approver is not None and approver.failure:
        raise CliFailure(approver.failure + trace_hint)
    if opts.heavy:
        return _heavy_exit(result, trace_hint, interrupts)
    end = result.end
    checked = result.verify
    if end is None:  # cannot happen: the driver always ends a run with run.end
        raise CliFailure("the run ended without a run.end event" + trace_hint)
    if checked is not None:  # the model answered: exit 0 whatever the check found
        err(f"k2lab: {one_line(outcome_text(checked), 600)}")
        if end.stop_reason != "stopped":
            return EXIT_OK, end.answer
    if end.stop_reason == "completed":
        return EXIT_OK, end.answer
    if end.stop_reason == "error":
        raise CliFailure(f"the run failed: {end.error or 'unknown error'}{trace_hint}")
    if end.stop_reason == "stopped":
        code = EXIT_STOPPED if interrupts[0] else EXIT_FAILED
        raise CliFailure(f"the run was stopped; the trace so far is kept{trace_hint}", code)
    words = _BUDGET_WORDS.get(end.stop_reason, f"the run ended: {end.stop_reason}")
    words = words.format(max_steps=settings.max_steps, wall_time=settings.wall_time)
    raise CliFailure(words + trace_hint, EXIT_BUDGET)


def _sandbox_note(progress: Progress, driver: RunDriver) -> None:
    note = getattr(driver.sandbox, "isolation_note", "")
    if note:
        progress.line(progress.dim(f"sandbox: {note}"))


def _warnings(ev: Event) -> None:
    if isinstance(ev, Notice) and ev.kind in ("mcp", "verify"):
        # a server that failed or died, a correction a budget cut: always said
        err(f"k2lab: warning: {ev.message}")


def _heavy_progress(progress: Progress) -> Sink:
    """Heavy mode's progress: a line per lane's end, the aggregation's run in full."""

    def show(ev: Event) -> None:
        if isinstance(ev, RunEnd) and ev.lane != AGGREGATE:
            what = ev.stop_reason if ev.stop_reason != "error" else f"error: {ev.error}"
            progress.line(progress.dim(f"lane {ev.lane}: {one_line(what, 200)}"))
        elif ev.lane == AGGREGATE:
            progress.show(ev)

    return show


def _heavy_exit(result: RunResult, trace_hint: str, interrupts: list[int]) -> tuple[int, str]:
    outcome = result.heavy
    checked = result.verify
    if outcome is None:
        raise CliFailure("the heavy run ended without an outcome" + trace_hint)
    if outcome.failed:
        err(f"k2lab: lanes that did not finish: {', '.join(outcome.failed)}")
    if checked is not None:
        err(f"k2lab: {one_line(outcome_text(checked), 600)}")
    if outcome.stop_reason == "completed" or (checked is not None and outcome.answer):
        return EXIT_OK, outcome.answer
    if outcome.stop_reason == "stopped":
        code = EXIT_STOPPED if interrupts[0] else EXIT_FAILED
        raise CliFailure(f"the run was stopped; the trace so far is kept{trace_hint}", code)
    if outcome.stop_reason == "error":
        raise CliFailure(f"the heavy run failed: {outcome.error or 'unknown error'}{trace_hint}")
    raise CliFailure(f"the aggregation ended: {outcome.stop_reason}{trace_hint}", EXIT_BUDGET)


def _install_sigint(stop: Callable[[], None]) -> list[int]:
    """First Ctrl-C stops the run cleanly (run.end, trace kept); the second quits at once."""
    count = [0]
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        count[0] += 1
        if count[0] == 1:
            err("\nk2lab: stopping the run (Ctrl-C again to quit now)")
            stop()
        else:
            loop.remove_signal_handler(signal.SIGINT)
            signal.default_int_handler(signal.SIGINT, None)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    return count


def _remove_sigint() -> None:
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


def report(code: int, answer: str, opts: RunOptions) -> int:
    """Print the answer (unless events went to stdout as JSON)."""
    if not opts.json:
        out(answer)
    return code
