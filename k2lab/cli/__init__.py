"""The ``k2lab`` command: ``run`` a prompt, ``replay`` a trace, ``demo`` (the main job).

Kept thin: argument parsing and exit codes here; each command lives in its own module. Contract
(README, section "cli"): ``k2lab run PROMPT`` prints the final answer on stdout and exits 0; a
failure is one line on stderr and a non-zero exit (1 failed, 2 usage, 3 budget, 130 Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from pathlib import Path
from typing import Any

from k2lab.cli.term import EXIT_USAGE, CliFailure, fail

_EPILOG = """\
The API key comes from K2LAB_API_KEY, or the provider's own variable (MOONSHOT_API_KEY,
OPENROUTER_API_KEY). K2LAB_API_KEY goes to the endpoint this command names (--base-url / --preset,
else K2LAB_BASE_URL / K2LAB_PRESET, else Moonshot); a provider's variable only to that provider.
With no key and no --base-url the offline demo model answers (and says so).
Presets: moonshot, moonshot-cn, openrouter, vllm, sglang.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="k2lab",
        description="Run a thinking model with approvable tool calls in a sandboxed kernel.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run one prompt; the answer goes to stdout",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("prompt", metavar="PROMPT", help="the prompt ('-' reads it from stdin)")
    run.add_argument("--base-url", help="OpenAI-compatible endpoint (default: Moonshot)")
    run.add_argument("--model", help="model name (default: kimi-k2-thinking)")
    run.add_argument("--preset", help="provider preset: base URL, model and key variable")
    run.add_argument(
        "--vision",
        choices=("auto", "on", "off"),
        help="send plots and images of tool results to the model (auto: by model name; "
        "Kimi K2.5 and vision models yes, kimi-k2-thinking and the demo model no)",
    )
    run.add_argument(
        "--approve",
        choices=("ask", "auto", "never"),
        help="tool calls: ask in the terminal (default), run all, or reject all",
    )
    run.add_argument("--max-steps", type=int, metavar="N", help="most model steps (default 300)")
    run.add_argument(
        "--wall-time",
        type=float,
        metavar="S",
        help="seconds for the whole run, enforced even while the model streams or a tool runs "
        "(default: unlimited); reaching it exits 3",
    )
    run.add_argument(
        "--max-total-tokens",
        type=int,
        metavar="N",
        help="completion tokens for the whole run (default: unlimited); reaching it exits 3",
    )
    run.add_argument(
        "--max-request-tokens",
        type=int,
        metavar="N",
        help="max_tokens of each model request: the step's reasoning + answer budget "
        "(default 32768; Moonshot used 24k-48k per step for K2 Thinking's benchmarks)",
    )
    run.add_argument(
        "--context-window",
        type=int,
        metavar="N",
        help="the model's context window in tokens (default 262144, K2 Thinking's 256k)",
    )
    run.add_argument(
        "--context-share",
        type=float,
        metavar="F",
        help="hide earlier tool outputs (one batch, placeholders) once a request passes this "
        "share of the window (default 0.85, 0.1-0.99)",
    )
    run.add_argument(
        "--summarise-context",
        action="store_true",
        default=None,
        help="when a request still passes the share after the hiding, summarise the older "
        "messages in one model call (max_tokens 4096) and send the summary instead "
        "($K2LAB_SUMMARISE_CONTEXT=1; default off)",
    )
    run.add_argument(
        "--data",
        action="append",
        metavar="PATH",
        help="a file or folder the sandbox code may read (repeatable): read-only at /data/NAME "
        "under bwrap, nothing else of your files; at the process level the code reads it (and "
        "everything else) at its real path",
    )
    run.add_argument(
        "--with",
        dest="with_files",
        action="append",
        metavar="NAME=FILE",
        help="load FILE into the sandbox as variable NAME (repeatable): a pickle (.pkl), .csv or "
        ".parquet (a pandas DataFrame) or .json file; its bytes are copied in and read there (a "
        "pickle is unpickled only in the sandbox), size-limited like %%k2 --with; the model is "
        "told each name, type, shape and columns",
    )
    run.add_argument(
        "--mcp-config",
        metavar="FILE",
        help='MCP tool servers to offer the model: {"mcpServers": {NAME: {"command": ..., '
        '"args": [...], "env": {...}} | {"url": ..., "headers": {...}}}} (default: '
        "$K2LAB_MCP_CONFIG)",
    )
    run.add_argument(
        "--verify",
        action="store_true",
        help="after the answer, ask the model to check it with tools; a fault found is "
        "corrected and checked again (up to --verify-rounds); the outcome goes to stderr",
    )
    run.add_argument(
        "--verify-rounds",
        type=int,
        metavar="R",
        help="most verify rounds with --verify (default 1)",
    )
    run.add_argument(
        "--heavy",
        type=int,
        metavar="N",
        help="heavy mode: N independent lanes (own agent and sandbox each) in parallel, then "
        "one aggregation of their answers and evidence (with --verify, it checks that answer)",
    )
    run.add_argument(
        "--heavy-concurrency",
        type=int,
        metavar="C",
        help="most lanes alive at once with --heavy (default N)",
    )
    _sandbox_options(run)
    run.add_argument("--json", action="store_true", help="print events as JSON lines on stdout")
    run.add_argument("--trace", metavar="FILE", help="write the run's events to FILE (JSONL)")
    run.add_argument(
        "--resume",
        metavar="TRACE",
        help="continue the conversation a trace recorded (as the model had it: hidden outputs "
        "stay hidden); --trace on the same file appends the new run",
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="show progress on stderr even if not a TTY"
    )

    rep = sub.add_parser(
        "replay",
        help="re-run a trace's tool calls in a fresh sandbox and report changed outputs",
        description="Exit 0 if every output is the same, 1 if some differ, 2 if the trace "
        "cannot be read or replayed.",
    )
    rep.add_argument("file", metavar="FILE", help="a JSONL trace (k2lab run --trace FILE)")
    rep.add_argument("--call", metavar="ID", help="report only this call (earlier calls still run)")
    rep.add_argument(
        "--lane",
        metavar="K",
        help="heavy trace: replay only lane K (default: every lane, each in its own sandbox)",
    )
    rep.add_argument("--json", action="store_true", help="one JSON object per call")
    rep.add_argument(
        "--mcp-config",
        metavar="FILE",
        help="MCP servers for the trace's MCP calls: only the tools a server marks read-only "
        "(readOnlyHint) are called again (default: $K2LAB_MCP_CONFIG)",
    )
    _sandbox_options(rep)

    demo = sub.add_parser(
        "demo",
        help="the demo: JupyterLab on examples/demo.ipynb, or the terminal demo",
        description="Without a flag: --lab if JupyterLab and examples/demo.ipynb are there, "
        "else --cli. Unknown options are passed to `jupyter lab` (e.g. --port 8899).",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--lab", action="store_true", help="start JupyterLab on the demo notebook")
    mode.add_argument("--cli", action="store_true", help="play the scripted demos in the terminal")
    demo.add_argument(
        "--name",
        default="all",
        help="which terminal demo: all (default), " + ", ".join(_demo_names()),
    )
    demo.add_argument("--trace", metavar="FILE", help="write the demo's events to FILE (JSONL)")
    _sandbox_options(demo)
    return p


def _demo_names() -> list[str]:
    from k2lab.providers.demo import DEMO_PROMPTS

    return list(DEMO_PROMPTS)


def _sandbox_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tool-timeout", type=float, metavar="S", help="seconds per tool call")
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help="the sandbox's working directory; under bwrap the only place it can write "
        "(default: a fresh temporary directory, removed afterwards)",
    )
    p.add_argument(
        "--isolation",
        choices=("auto", "bwrap", "process"),
        help="sandbox isolation (default auto: bwrap where available)",
    )
    p.add_argument(
        "--gateway-url",
        metavar="URL",
        help="start the sandbox kernel on this Jupyter gateway ($JUPYTER_GATEWAY_URL); its "
        "isolation is the gateway kernel image's",
    )
    p.add_argument(
        "--gateway-token", metavar="T", help="the gateway's token ($JUPYTER_GATEWAY_AUTH_TOKEN)"
    )


def _settings(args: argparse.Namespace) -> Any:
    from k2lab.config import resolve_settings

    keys = (
        "base_url",
        "model",
        "preset",
        "approve",
        "max_steps",
        "wall_time",
        "tool_timeout",
        "isolation",
        "gateway_url",
        "gateway_token",
        "data",
        "vision",
        "max_total_tokens",
        "context_window",
        "context_share",
        "summarise_context",
    )
    overrides = {k: getattr(args, k, None) for k in keys}
    # the per-request budget's option says what it is; the setting keeps OpenAI's name
    overrides["max_tokens"] = getattr(args, "max_request_tokens", None)
    try:
        # the command line is the key owner's own: an endpoint it names gets $K2LAB_API_KEY
        return resolve_settings(overrides, options_are_the_owners=True)
    except ValueError as e:
        raise CliFailure(str(e), EXIT_USAGE) from e


def _dir(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise CliFailure(f"--workspace {path} is not a directory", EXIT_USAGE)
    return p


def _mcp_config(path: str | None) -> Any:
    """The MCP servers of ``--mcp-config`` (else ``$K2LAB_MCP_CONFIG``), checked before anything
    starts: a malformed file is a usage error naming the field."""
    import os

    path = path or os.environ.get("K2LAB_MCP_CONFIG") or None
    if path is None:
        return None
    from k2lab.tools.mcp_config import MCPConfigError, load_mcp_config

    try:
        cfg = load_mcp_config(path)
    except MCPConfigError as e:
        raise CliFailure(str(e), EXIT_USAGE) from e
    from k2lab.cli.term import err

    for w in cfg.warnings:
        err(f"k2lab: warning: {w}")
    return cfg


def _with_files(specs: list[str], *, heavy: bool) -> dict[str, Any]:
    """``--with NAME=FILE``: each file's bytes (read in the sandbox later), checked here: a
    name, a readable file of a known kind, within ``Limits.transfer_bytes``."""
    from k2lab.sandbox.base import Limits
    from k2lab.sandbox.transfer import FileBytes, TransferError, file_reader

    if specs and heavy:
        from k2lab.driver import HEAVY_NO_WITH

        raise CliFailure(f"--with: {HEAVY_NO_WITH}", EXIT_USAGE)
    limit = Limits().transfer_bytes
    out: dict[str, Any] = {}
    for spec in specs:
        name, eq, path = spec.partition("=")
        name = name.strip()
        if not eq or not path:
            raise CliFailure(
                f"--with {spec}: expected NAME=FILE (e.g. sales=sales.csv)", EXIT_USAGE
            )
        if not name.isidentifier() or name.startswith("__"):
            raise CliFailure(f"--with {spec}: {name!r} is not a variable name", EXIT_USAGE)
        if name in out:
            raise CliFailure(f"--with: {name!r} is given twice", EXIT_USAGE)
        file = Path(path).expanduser()
        try:
            file_reader(str(file))  # a kind it can read, before the bytes are read
            size = file.stat().st_size
            if not file.is_file():
                raise CliFailure(f"--with {spec}: {path} is not a file", EXIT_USAGE)
            if size > limit:
                raise CliFailure(
                    f"--with {spec}: {path} is {size:,} bytes; the limit is {limit:,} "
                    "(Limits.transfer_bytes)",
                    EXIT_USAGE,
                )
            out[name] = FileBytes(str(file), file.read_bytes())
        except TransferError as e:
            raise CliFailure(f"--with {spec}: {e}", EXIT_USAGE) from None
        except OSError as e:
            raise CliFailure(f"--with {spec}: {path}: {e.strerror or e}", EXIT_USAGE) from None
    return out


def _read_prompt(prompt: str) -> str:
    if prompt == "-":
        prompt = sys.stdin.read()
    if not prompt.strip():
        raise CliFailure("the prompt is empty", EXIT_USAGE)
    return prompt


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return _dispatch(args, extra)
    except CliFailure as e:
        fail(str(e))
        return e.code
    except KeyboardInterrupt:
        fail("interrupted")
        return 130


def _dispatch(args: argparse.Namespace, extra: list[str]) -> int:
    if args.command == "run":
        from k2lab.cli.run import RunOptions, execute_run, report

        if args.max_steps is not None and args.max_steps < 1:
            raise CliFailure("--max-steps must be at least 1", EXIT_USAGE)
        if args.wall_time is not None and not (0 < args.wall_time < math.inf):
            raise CliFailure("--wall-time must be a positive number of seconds", EXIT_USAGE)
        if args.verify_rounds is not None and (args.verify_rounds < 1 or not args.verify):
            raise CliFailure("--verify-rounds needs --verify and at least 1 round", EXIT_USAGE)
        if args.heavy is not None and args.heavy < 1:
            raise CliFailure("--heavy must be at least 1", EXIT_USAGE)
        if args.heavy_concurrency is not None and (args.heavy_concurrency < 1 or not args.heavy):
            raise CliFailure("--heavy-concurrency needs --heavy and at least 1", EXIT_USAGE)
        if args.heavy and args.workspace:
            raise CliFailure("--heavy gives each lane a fresh workspace", EXIT_USAGE)
        settings = _settings(args)
        if settings.data:
            from k2lab.sandbox.isolation import data_mounts

            try:
                data_mounts(settings.data)
            except ValueError as e:
                raise CliFailure(str(e), EXIT_USAGE) from e
        mcp = _mcp_config(args.mcp_config)
        variables = _with_files(args.with_files or [], heavy=bool(args.heavy))
        prompt = _read_prompt(args.prompt)
        opts = RunOptions(
            json=args.json,
            trace=args.trace,
            verbose=args.verbose,
            workspace=_dir(args.workspace),
            mcp=mcp,
            verify_rounds=(args.verify_rounds or 1) if args.verify else 0,
            heavy=args.heavy or 0,
            heavy_concurrency=args.heavy_concurrency,
            resume=args.resume,
            variables=variables,
        )
        code, answer = asyncio.run(execute_run(settings, prompt, opts))
        return report(code, answer, opts)
    if args.command == "replay":
        from k2lab.cli.replay import replay_command

        settings = _settings(args)
        return asyncio.run(
            replay_command(
                args.file,
                settings,
                call=args.call,
                lane=args.lane,
                as_json=args.json,
                workspace=_dir(args.workspace),
                mcp=_mcp_config(args.mcp_config),
            )
        )
    if args.command == "demo":
        from k2lab.cli.demo import lab_available, run_cli_demos, start_lab
        from k2lab.providers.demo import DEMO_PROMPTS

        lab = args.lab or (not args.cli and lab_available())
        if lab:
            return start_lab(extra)
        if extra:
            raise CliFailure(f"unrecognized arguments: {' '.join(extra)}", EXIT_USAGE)
        names = list(DEMO_PROMPTS) if args.name == "all" else [args.name]
        if any(n not in DEMO_PROMPTS for n in names):
            raise CliFailure(
                f"unknown demo {args.name!r}; choose all, {', '.join(DEMO_PROMPTS)}", EXIT_USAGE
            )
        settings = _settings(args)
        return asyncio.run(
            run_cli_demos(settings, names, trace=args.trace, workspace=_dir(args.workspace))
        )
    raise CliFailure(f"unknown command {args.command!r}", EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
