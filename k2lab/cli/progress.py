"""The live view of a run on stderr: reasoning as it streams, tool calls, results, retries.

Shown when stderr is a terminal or with ``--verbose``. It renders events and nothing else (the
loop is the engine's), and keeps long code and outputs short: the trace has them in full.

Facts come from the run view (``k2lab.trace.view``), folded from the same events as every other
face: decisions and edits from the call's fields, a result's status (``ok`` / ``error`` /
``rejected`` / ``not run``) and its output without the loop's edit note, retries as
"attempt 2 of 4" (``retry_text``), totals from the view. Streamed reasoning is printed as it comes;
after a ``step_restart`` notice the line ends and the restarted stream starts a new one.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from k2lab.events import (
    ContentDelta,
    Error,
    Event,
    Notice,
    ReasoningDelta,
    Retry,
    RunEnd,
    RunStart,
    StepEnd,
    StepStart,
    ToolDecision,
    ToolProposed,
    ToolResult,
)
from k2lab.trace.view import (
    Call,
    RunView,
    budget_stop_text,
    budget_words,
    context_gauge,
    cost_text,
    retry_text,
)

MAX_CODE_LINES = 25
MAX_OUTPUT_LINES = 15


def code_of(arguments: str) -> str | None:
    """The ``code`` of python-tool arguments, or None if they are something else."""
    try:
        args = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    code = args.get("code") if isinstance(args, dict) else None
    return code if isinstance(code, str) else None


def clip(text: str, max_lines: int) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) <= max_lines:
        return "\n".join(lines)
    keep = max_lines - 1
    return "\n".join([*lines[:keep], f"... ({len(lines) - keep} more lines; see the trace)"])


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


class Progress:
    def __init__(self, stream: TextIO, *, enabled: bool, color: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.color = color
        self._in_reasoning = False
        #: the run so far, as every face sees it
        self.view = RunView()

    def _style(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def dim(self, text: str) -> str:
        return self._style(text, "2")

    def bold(self, text: str) -> str:
        return self._style(text, "1")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def line(self, text: str) -> None:
        """A whole line (ends an open reasoning stream first)."""
        if not self.enabled:
            return
        if self._in_reasoning:
            self._write("\n")
            self._in_reasoning = False
        self._write(text + "\n")

    def _call(self, call_id: str, run_id: str) -> Call | None:
        run = self.view.run
        return None if run is None else self.view.call(run_id or run.run_id, call_id)

    def show(self, ev: Event) -> None:
        self.view.apply(ev)
        if not self.enabled:
            return
        if isinstance(ev, ReasoningDelta):
            if not self._in_reasoning:
                self._write(self.dim("thinking: "))
                self._in_reasoning = True
            self._write(self.dim(ev.text))
        elif isinstance(ev, ContentDelta):
            pass  # the answer goes to stdout at the end, once
        elif isinstance(ev, RunStart):
            run = self.view.run
            assert run is not None
            self.line(
                self.bold(f"k2lab: {run.model_label}")
                + f" · sandbox: {run.isolation} · approve: {run.policy} · max steps {run.max_steps}"
                + "".join(f" · {b}" for b in budget_words(run.budgets))
            )
        elif isinstance(ev, StepStart):
            self.line(self.dim(f"── step {ev.step}" + self._gauges(ev.step)))
        elif isinstance(ev, StepEnd):
            if self._in_reasoning:
                self.line("")
        elif isinstance(ev, ToolProposed):
            self._proposed(ev)
        elif isinstance(ev, ToolDecision):
            call = self._call(ev.call_id, ev.run_id)
            if call is not None:
                self._decision(call)
        elif isinstance(ev, ToolResult):
            call = self._call(ev.call_id, ev.run_id)
            if call is not None and call.result is not None:
                self._result(call, call.result)
        elif isinstance(ev, Retry):
            run = self.view.run
            if run is not None and run.retries:
                self.line(f"  retry: {retry_text(run.retries[-1])}")
        elif isinstance(ev, Error):
            self.line(f"  error ({ev.kind}): {ev.message}")
        elif isinstance(ev, Notice):
            self.line(f"  note: {ev.message}")
        elif isinstance(ev, RunEnd):
            run = self.view.run
            assert run is not None
            t = run.totals
            tokens = f", {t['prompt_tokens']} + {t['completion_tokens']} tokens"
            ctx = context_gauge(run.last_prompt_tokens, int(run.budgets["context_window"] or 0))
            if ctx:
                tokens += f", last {ctx}"
            cost = cost_text(t, run.budgets.get("prices"))
            if cost:
                tokens += f", {cost} at published prices"
            why = budget_stop_text(run.stop_reason, run.budgets, run.max_steps)
            self.line(
                self.dim(
                    f"── {why}: {t['steps']} step{'' if t['steps'] == 1 else 's'}, "
                    f"{t['calls']} tool call{'' if t['calls'] == 1 else 's'}, "
                    f"{t['duration'] or 0.0:.1f} s{tokens}"
                )
            )

    def _gauges(self, step: int) -> str:
        """ "/20 · ctx 41% of 262k · 70/5000 out tokens · 3.1 s of 60 s": what is left."""
        run = self.view.run
        if run is None:
            return ""
        b = run.budgets
        parts = [
            context_gauge(run.last_prompt_tokens, int(b.get("context_window") or 0)),
            f"{run.totals['completion_tokens']}/{b['max_total_tokens']} out tokens"
            if b.get("max_total_tokens")
            else "",
        ]
        wall, ts = b.get("wall_time"), self.view.last_ts
        if wall and run.started is not None and ts is not None:
            parts.append(f"{max(0.0, ts - run.started):.1f} s of {wall:g} s")
        tail = "".join(f" · {p}" for p in parts if p)
        return (f"/{run.max_steps}" if run.max_steps else "") + tail

    def _proposed(self, ev: ToolProposed) -> None:
        self.line(f"  → {self.bold(ev.name)} [{ev.call_id}]")
        code = code_of(ev.arguments)
        body = code if code is not None else ev.arguments
        self.line(indent(clip(body, MAX_CODE_LINES)))
        if ev.problem:
            self.line(f"  ✗ not run: {ev.problem}")

    def _decision(self, call: Call) -> None:
        who = "policy" if call.by == "policy" else "you"
        if call.decision == "approve":
            self.line(self.dim(f"  approved ({who})"))
        elif call.decision == "edit":
            self.line(f"  edited ({who}); running instead:")
            args = call.edited_arguments or ""
            code = code_of(args)
            self.line(indent(clip(code if code is not None else args, MAX_CODE_LINES)))
        elif call.decision == "reject":
            fb = f": {call.feedback}" if call.feedback else ""
            self.line(f"  rejected ({who}){fb}")

    def _result(self, call: Call, result: dict[str, Any]) -> None:
        mark = {"done": "ok", "error": "error", "rejected": "rejected"}.get(call.status, "not run")
        shown = len(result["display"])
        extra = f", {shown} rich output(s)" if shown else ""
        self.line(f"  ← {mark} ({result['duration']:.2f} s{extra})")
        output: str = result["shown_output"]
        if output.strip():
            self.line(indent(clip(output, MAX_OUTPUT_LINES)))
