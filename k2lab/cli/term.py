"""Terminal plumbing for the CLI: where text goes, exit codes, one-line failures.

stdout carries only the result (the answer, or JSON lines); everything else goes to stderr.
"""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILED = 1  # the run failed: provider, sandbox, approval impossible; replay: outputs differ
EXIT_USAGE = 2  # bad options or input (argparse uses 2 as well); replay: trace unreadable
EXIT_BUDGET = 3  # a budget (max steps, wall time, tokens) ended the run before an answer
EXIT_STOPPED = 130  # stopped with Ctrl-C (the trace so far is kept)


class CliFailure(Exception):
    """A failure to report as one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str, *, end: str = "\n") -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()


def one_line(text: str, limit: int = 400) -> str:
    """Failures are one line: newlines folded, very long messages cut."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def fail(message: str) -> None:
    err(f"k2lab: error: {one_line(message)}")
