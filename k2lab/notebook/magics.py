# mypy: disable-error-code="no-untyped-call"
"""``%k2`` / ``%%k2``: the notebook face's magics. Thin: parse, then hand over to the session.

Everything heavy (widgets, the agent, the model client, the sandbox) is imported when a magic runs,
not when ``%load_ext k2lab`` does. The options come first and the prompt is the rest of the line,
verbatim (so apostrophes need no quoting); with ``%%k2`` the cell body is the prompt. A few words
are subcommands when they come first: config, runs, show, stop, export, replay, fork.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

SUBCOMMANDS = ("config", "runs", "show", "stop", "export", "replay", "fork")
_OPTION = re.compile(r"\s*(--?[A-Za-z][\w-]*)(?:=(\S+))?")


@magics_class
class K2Magics(Magics):
    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            from k2lab.notebook.session import NotebookSession

            self._session = NotebookSession(self.shell)
        return self._session

    @magic_arguments()
    @argument("--model", help="Model name (default kimi-k2-thinking; $K2LAB_MODEL).")
    @argument("--base-url", help="OpenAI-compatible base URL ($K2LAB_BASE_URL).")
    @argument("--preset", help="moonshot | moonshot-cn | openrouter | vllm | sglang.")
    @argument(
        "--vision",
        choices=("auto", "on", "off"),
        help="Send plots and images of tool results to the model (auto: by model name; "
        "Kimi K2.5 and vision models yes, kimi-k2-thinking and the demo model no).",
    )
    @argument(
        "--approve",
        choices=("ask", "auto", "never"),
        help="Approval policy for tool calls (default ask; $K2LAB_APPROVE).",
    )
    @argument("--max-steps", type=int, help="Most model steps in the run.")
    @argument("--wall-time", type=float, help="Seconds for the whole run (0 = unlimited).")
    @argument("--max-tokens", type=int, help="Completion tokens for the whole run (0 = no cap).")
    @argument(
        "--max-request-tokens",
        type=int,
        help="max_tokens of each model request (the step's reasoning + answer; default 32768).",
    )
    @argument("--context-window", type=int, help="The model's context window (default 262144).")
    @argument(
        "--context-share",
        type=float,
        help="Hide earlier tool outputs once a request passes this share of the window "
        "(default 0.85).",
    )
    @argument(
        "--summarise-context",
        action="store_true",
        default=None,
        help="When hiding tool outputs is not enough, summarise the older messages in one "
        "model call and send the summary instead (default off).",
    )
    @argument("--tool-timeout", type=float, help="Seconds per tool call.")
    @argument("--isolation", choices=("auto", "bwrap", "process"), help="Sandbox isolation level.")
    @argument("--network", action="store_true", default=None, help="Let sandbox code use the net.")
    @argument(
        "--in-kernel",
        action="store_true",
        help="NO SANDBOX: run tool code in this notebook's kernel (your variables); every call "
        "then needs approval unless --approve is given.",
    )
    @argument(
        "--data",
        action="append",
        help="A file or folder the sandbox code may read (repeatable): read-only at /data/NAME "
        "under bwrap; at the process level at its real path (nothing is confined there).",
    )
    @argument(
        "--mcp-config",
        help='MCP tool servers to offer the model: a JSON file {"mcpServers": {NAME: {"command": '
        '..., "args": [...]} or {"url": ...}}} ($K2LAB_MCP_CONFIG). The servers start with the '
        "first run that names the file and serve this kernel's later runs with the same config.",
    )
    @argument(
        "--with",
        dest="with_vars",
        metavar="NAMES",
        help="Copy these variables of this notebook (comma-separated: df,model) into the sandbox "
        "before the run (pickled, size-checked); the model is told their types, shapes and "
        "columns. Copies: the notebook's own variables do not change.",
    )
    @argument(
        "--notebook-tools",
        action="store_true",
        help="Also offer the model this notebook's tools (read cells; insert, replace and run a "
        "cell): JupyterLab with the k2lab extension carries them out. Edits and runs always wait "
        "for your approval, even under --approve auto.",
    )
    @argument(
        "--verify",
        action="store_true",
        help="After the answer, ask the model to check it with tools (re-compute, edge cases, "
        "another method); a fault it finds is corrected and checked again (up to "
        "--verify-rounds). The outcome shows next to the answer.",
    )
    @argument("--verify-rounds", type=int, help="Most verify rounds with --verify (default 1).")
    @argument(
        "--heavy",
        type=int,
        help="Heavy mode: N independent lanes (own agent and sandbox each) in parallel, then one "
        "aggregation of their answers and evidence (with --verify, it checks that answer). "
        "Under --approve ask each lane's calls wait for their own buttons.",
    )
    @argument(
        "--heavy-concurrency", type=int, help="Most lanes alive at once with --heavy (default N)."
    )
    @argument("--new", action="store_true", help="Start a new conversation.")
    @argument(
        "--resume",
        action="store_true",
        help="Continue the conversation saved in a notebook (--file, default: this notebook).",
    )
    @argument("--file", help="Notebook to read saved runs from (resume, replay).")
    @argument("--run", help="Run id (resume up to it; replay or export it).")
    @argument("--out", help="export: the notebook file to write.")
    @argument("--cell", action="store_true", help="export: put the code in the next cell instead.")
    @argument(
        "--lane",
        help="export, replay: only this lane of a heavy run (default: every lane, apart).",
    )
    @argument("-h", "--help", action="store_true", help="Show this help.")
    @line_cell_magic
    def k2(self, line: str, cell: str | None = None) -> Any:
        """Ask the thinking model; watch and steer its tool calls in a live view.

        Usage:

          %k2 [options] PROMPT         # the rest of the line is the prompt
          %%k2 [options]               # the cell body is the prompt
          %k2 config                   # effective settings and where each came from
          %k2 runs                     # the runs of this kernel session
          %k2 show [RUN]               # a run's view again (its cell was lost), or its trace
          %k2 stop                     # stop every run of this kernel session
          %k2 export [RUN] [--out F]   # a run's tool calls as a notebook (--cell: next cell);
                                       # no RUN: the latest run that has ended
          %k2 replay [RUN] [--file F]  # re-execute a run's calls, say which outputs changed
          %%k2 fork RUN|last CALL      # branch a run at a call; the cell body is the code to run
          %k2 --resume PROMPT          # continue the conversation saved in this notebook
          %k2 --mcp-config F PROMPT    # also offer the tools of the MCP servers in file F
          %k2 --with df,model PROMPT   # copies of these variables in the sandbox
          %k2 --notebook-tools PROMPT  # the model may read, edit and run this notebook's cells
          %k2 --verify PROMPT          # the model checks its answer with tools (--verify-rounds R)
          %k2 --heavy N PROMPT         # N lanes in parallel, then one aggregated answer
                                       # (--heavy-concurrency C)
          await k2lab.wait()           # wait for the runs (Run All, nbclient)

        The cell returns at once; the run goes on in the kernel's event loop, so the buttons work
        and the notebook stays usable. Follow-ups continue the conversation (--new starts
        over). The key comes from $K2LAB_API_KEY (or $MOONSHOT_API_KEY, Jupyter config) and is
        never shown; with no key and no base URL, the offline demo model answers.
        """
        opts, rest = self._parse(line)
        if opts.help:
            return self._help()
        words = rest.split(None, 1)
        if words and words[0] in SUBCOMMANDS:
            from k2lab.notebook import commands

            sub, arg = words[0], (words[1] if len(words) > 1 else "")
            opts, arg = self._sub_options(opts, arg)
            return getattr(commands, sub)(self.session, opts, arg, cell)
        prompt = cell if cell is not None and cell.strip() else rest
        if not prompt.strip():
            raise UsageError("%k2 needs a prompt: %k2 PROMPT, or a %%k2 cell (see %k2 --help)")
        from k2lab.notebook import commands

        return commands.ask(self.session, opts, prompt.strip())

    def _parse(self, line: str) -> tuple[Any, str]:
        """Options first (argparse), then the prompt: everything after the last option, verbatim."""
        tokens: list[str] = []
        pos = 0
        while True:
            m = _OPTION.match(line, pos)
            if m is None:
                break
            tokens.append(m.group(1))
            if m.group(2) is not None:
                tokens.append(m.group(2))
            pos = m.end()
            action = self._action(m.group(1))
            if action is not None and action.nargs != 0 and m.group(2) is None:
                v = re.match(r"\s*(\"[^\"]*\"|'[^']*'|\S+)", line[pos:])
                if v is None:
                    raise UsageError(f"{m.group(1)} needs a value")
                tokens.append(shlex.split(v.group(1))[0])
                pos += v.end()
        args = parse_argstring(self.k2, " ".join(shlex.quote(t) for t in tokens))
        return args, line[pos:].strip()

    def _sub_options(self, opts: Any, arg: str) -> tuple[Any, str]:
        """Subcommands take options anywhere (``export RUN --out F``); the rest are arguments."""
        try:
            argv = shlex.split(arg)
        except ValueError as e:
            raise UsageError(str(e)) from None
        for flag in (a.split("=", 1)[0] for a in argv if a.startswith("-")):
            self._action(flag)  # unknown options are errors here too
        more, rest = self.k2.parser.parse_known_args(argv)  # type: ignore[attr-defined]
        for name, value in vars(more).items():
            if value not in (None, False):
                setattr(opts, name, value)
        return opts, " ".join(rest)

    def _action(self, flag: str) -> Any:
        parser = self.k2.parser  # type: ignore[attr-defined]
        for action in parser._actions:
            if flag in action.option_strings:
                return action
        raise UsageError(f"unknown option {flag} (see %k2 --help)")

    def _help(self) -> None:
        print(help_text(self.k2.__doc__ or ""))  # noqa: T201 - a magic's help goes to the output


def help_text(doc: str) -> str:
    """The magic's docstring as plain text: IPython's magic_arguments opens it with a
    reStructuredText literal-block marker (``::``) that means nothing in a cell output."""
    doc = re.sub(r"\A\s*::\s*\n", "", doc)
    return re.sub(r"``([^`]+)``", r"\1", doc).strip("\n")


async def wait() -> None:
    """Wait for every ``%k2`` run of this kernel (see ``NotebookSession.wait``)."""
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("K2Magics") if shell is not None else None
    if magics is not None and magics._session is not None:
        await magics._session.wait()


_QUESTION = re.compile(r"^(\s*)%k2(\s.*\?)\s*$")


def keep_questions(lines: list[str]) -> list[str]:
    """IPython reads ``%k2 what is this?`` as a help request (``this?``); a prompt often ends in
    a question mark, so such lines become the plain magic call before IPython's help syntax."""
    out = []
    for line in lines:
        m = _QUESTION.match(line)
        if m is None:
            out.append(line)
            continue
        nl = "\n" if line.endswith("\n") else ""
        out.append(f"{m.group(1)}get_ipython().run_line_magic('k2', {m.group(2).strip()!r}){nl}")
    return out


def _hook_shutdown(ipython: Any) -> None:
    """Runs still going when the kernel shuts down or restarts are stopped first, so each leaves
    its trace in its cell (see ``NotebookSession.finish_at_shutdown``)."""
    kernel = getattr(ipython, "kernel", None)
    if kernel is None or getattr(kernel, "_k2lab_shutdown_hooked", False):
        return
    original = kernel.do_shutdown

    def do_shutdown(restart: bool) -> Any:
        magics = ipython.magics_manager.registry.get("K2Magics")
        session = getattr(magics, "_session", None)
        if session is not None:
            session.finish_at_shutdown()
        return original(restart)

    kernel.do_shutdown = do_shutdown
    kernel._k2lab_shutdown_hooked = True


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(K2Magics)
    _hook_shutdown(ipython)
    if keep_questions not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(keep_questions)


def unload_ipython_extension(ipython: Any) -> None:
    if keep_questions in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(keep_questions)
