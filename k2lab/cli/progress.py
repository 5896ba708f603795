"""The live view of a run on stderr: reasoning as it streams, tool calls, results, retries.

Shown when stderr is a terminal or with ``--verbose``. It renders events and nothing else (the
loop is the engine's), and keeps long code and outputs short: the trace has them in full.
"""

from __future__ import annotations

import json
from typing import TextIO

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

    def show(self, ev: Event) -> None:
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
            self.line(
                self.bold(f"k2lab: {ev.model_label}")
                + f" · sandbox: {ev.isolation} · approve: {ev.policy} · max steps {ev.max_steps}"
            )
        elif isinstance(ev, StepStart):
            self.line(self.dim(f"── step {ev.step}"))
        elif isinstance(ev, StepEnd):
            if self._in_reasoning:
                self.line("")
        elif isinstance(ev, ToolProposed):
            self._proposed(ev)
        elif isinstance(ev, ToolDecision):
            self._decision(ev)
        elif isinstance(ev, ToolResult):
            mark = "ok" if ev.ok else "error"
            extra = f", {len(ev.display)} rich output(s)" if ev.display else ""
            self.line(f"  ← {mark} ({ev.duration:.2f} s{extra})")
            if ev.output.strip():
                self.line(indent(clip(ev.output, MAX_OUTPUT_LINES)))
        elif isinstance(ev, Retry):
            self.line(
                f"  retry {ev.attempt}/{ev.max_attempts - 1} in {ev.delay:.1f} s: {ev.reason}"
            )
        elif isinstance(ev, Error):
            self.line(f"  error ({ev.kind}): {ev.message}")
        elif isinstance(ev, Notice):
            self.line(f"  note: {ev.message}")
        elif isinstance(ev, RunEnd):
            tokens = f", {ev.prompt_tokens} + {ev.completion_tokens} tokens"
            self.line(
                self.dim(
                    f"── {ev.stop_reason}: {ev.steps} steps, {ev.tool_calls} tool calls, "
                    f"{ev.elapsed:.1f} s{tokens}"
                )
            )

    def _proposed(self, ev: ToolProposed) -> None:
        self.line(f"  → {self.bold(ev.name)} [{ev.call_id}]")
        code = code_of(ev.arguments)
        body = code if code is not None else ev.arguments
        self.line(indent(clip(body, MAX_CODE_LINES)))
        if ev.problem:
            self.line(f"  ✗ not run: {ev.problem}")

    def _decision(self, ev: ToolDecision) -> None:
        who = "policy" if ev.by == "policy" else "you"
        if ev.decision == "approve":
            self.line(self.dim(f"  approved ({who})"))
        elif ev.decision == "edit":
            self.line(f"  edited ({who}); running instead:")
            code = code_of(ev.arguments or "")
            self.line(indent(clip(code if code is not None else ev.arguments or "", 25)))
        else:
            fb = f": {ev.feedback}" if ev.feedback else ""
            self.line(f"  rejected ({who}){fb}")
