"""``--approve ask`` in a terminal: y approve / n reject (with feedback) / e edit / a approve all.

Answers are read from stdin line by line, so they can come from a person at a terminal or from a
pipe. When stdin ends before an answer (no terminal, ``< /dev/null``), nobody can approve: the run
is stopped and the CLI fails with one clear line (the trace so far is kept).

Editing opens ``$VISUAL`` / ``$EDITOR`` on the code when one is set, else reads the replacement
code from stdin until a line holding a single ``.``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import TextIO

from k2lab.agent.decisions import Decision
from k2lab.cli.progress import MAX_CODE_LINES, clip, code_of, indent
from k2lab.cli.term import err
from k2lab.events import ToolProposed

QUESTION = "Run it? [y]es / [n]o / [e]dit / [a]pprove all: "
NO_ANSWER = (
    "--approve ask needs an answer on stdin for each tool call, but stdin ended "
    "(use --approve auto or --approve never for unattended runs)"
)


class StdinLines:
    """Lines of a text stream read on demand by a daemon thread.

    A daemon thread, not the event loop's executor: a read still blocked when the run is stopped
    must not keep the process alive. A read abandoned by a cancelled prompt is reused by the next.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self._pending: concurrent.futures.Future[str] | None = None

    async def readline(self) -> str | None:
        """The next line without its newline, or None at end of input."""
        if self._pending is None:
            fut: concurrent.futures.Future[str] = concurrent.futures.Future()

            def work() -> None:
                try:
                    line = self.stream.readline()
                except (OSError, ValueError):
                    line = ""
                fut.set_result(line)

            threading.Thread(target=work, name="k2lab-stdin", daemon=True).start()
            self._pending = fut
        line = await asyncio.shield(asyncio.wrap_future(self._pending))
        self._pending = None
        if line and not _isatty(self.stream):
            err(line.rstrip("\r\n"))  # piped answers are not echoed: keep the transcript readable
        return None if line == "" else line.rstrip("\r\n")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


class TerminalApprover:
    """A ``DecisionSource`` that asks in the terminal. ``failure`` is set when nobody can answer."""

    policy = "ask"

    def __init__(
        self, lines: StdinLines, *, show_code: bool, on_unavailable: Callable[[], None]
    ) -> None:
        self.lines = lines
        self.show_code = show_code  # False when the progress view already shows proposals
        self.on_unavailable = on_unavailable
        self.auto = False
        self.failure: str | None = None
        self._shown: dict[str, asyncio.Event] = {}

    def proposal_shown(self, call_id: str) -> None:
        """The CLI rendered this proposal; the question may follow it."""
        self._shown.setdefault(call_id, asyncio.Event()).set()

    async def decide(self, proposal: ToolProposed) -> Decision:
        if self.auto:
            return Decision("approve", by="policy")
        # the loop asks before the CLI has printed the proposal event: wait for it, so the
        # question never appears above the code it is about
        await self._shown.setdefault(proposal.call_id, asyncio.Event()).wait()
        self._shown.pop(proposal.call_id, None)
        if self.show_code:
            body = code_of(proposal.arguments)
            err(f"{proposal.name} [{proposal.call_id}] wants to run:")
            err(indent(clip(body if body is not None else proposal.arguments, MAX_CODE_LINES)))
        while True:
            err(QUESTION, end="")
            answer = await self._read()
            a = answer.strip().lower()
            if a in ("y", "yes"):
                return Decision("approve")
            if a in ("a", "all"):
                self.auto = True
                return Decision("approve")
            if a in ("n", "no"):
                err("Feedback for the model (optional, Enter to skip): ", end="")
                feedback = (await self.lines.readline() or "").strip()
                return Decision("reject", feedback=feedback or None)
            if a in ("e", "edit"):
                edited = await self._edit(proposal)
                if edited is None:
                    err("(no change; answer again)")
                    continue
                return Decision("edit", arguments=edited)
            err("please answer y, n, e or a")

    async def _read(self) -> str:
        line = await self.lines.readline()
        if line is None:
            err("")  # end the unanswered question's line
            self.failure = NO_ANSWER
            self.on_unavailable()  # stops the run; the wait below is cancelled
            await asyncio.Event().wait()
        assert line is not None
        return line

    async def _edit(self, proposal: ToolProposed) -> str | None:
        """New arguments (JSON text), or None when nothing changed."""
        code = code_of(proposal.arguments)
        original = code if code is not None else proposal.arguments
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
        if editor:
            new = await asyncio.to_thread(_run_editor, editor, original, code is not None)
        else:
            err("Enter the code to run instead; end with a line holding a single '.':")
            lines: list[str] = []
            while True:
                line = await self.lines.readline()
                if line is None or line == ".":
                    break
                lines.append(line)
            new = "\n".join(lines) + ("\n" if lines else "")
        if not new.strip() or new.strip() == original.strip():
            return None
        if code is None:
            return new.strip()  # a non-python tool: the person edited the raw JSON arguments
        try:
            args = json.loads(proposal.arguments)
        except json.JSONDecodeError:
            args = {}
        return json.dumps({**args, "code": new}, ensure_ascii=False)


def _run_editor(editor: str, text: str, is_code: bool) -> str:
    suffix = ".py" if is_code else ".json"
    with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False, encoding="utf-8") as f:
        f.write(text)
        path = f.name
    try:
        subprocess.run([*shlex.split(editor), path], check=False)
        with open(path, encoding="utf-8") as f:
            return f.read()
    finally:
        os.unlink(path)
