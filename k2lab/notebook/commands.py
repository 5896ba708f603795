# mypy: disable-error-code="no-untyped-call"
"""What each ``%k2`` form does, given the parsed options (``k2lab.notebook.magics`` only parses).

``ask`` starts a run; ``config``, ``runs``, ``show``, ``stop``, ``export``, ``replay`` and
``fork`` are the subcommands. Saved runs are read from a notebook file with
``k2lab.trace.notebook``; the default file is this notebook (``$JPY_SESSION_NAME``, which
jupyter_server sets for the kernel).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.display import display

from k2lab.trace.notebook import runs_from_notebook

#: the machine-readable part of ``%k2 replay``'s output (no JupyterLab renderer: it shows HTML)
REPLAY_MIMETYPE = "application/vnd.k2lab.replay+json"

#: option name -> Settings field
_OVERRIDES = {
    "model": "model",
    "base_url": "base_url",
    "preset": "preset",
    "vision": "vision",
    "approve": "approve",
    "max_steps": "max_steps",
    "wall_time": "wall_time",
    "max_tokens": "max_total_tokens",
    "max_request_tokens": "max_tokens",
    "context_window": "context_window",
    "context_share": "context_share",
    "summarise_context": "summarise_context",
    "tool_timeout": "tool_timeout",
    "isolation": "isolation",
    "network": "network",
    "data": "data",
}


def _settings(session: Any, opts: Any) -> Any:
    overrides = {field: getattr(opts, opt) for opt, field in _OVERRIDES.items()}
    if opts.in_kernel and opts.approve is None:
        overrides["approve"] = "ask"  # no sandbox: a person looks at every call by default
    try:
        return session.settings(overrides)
    except ValueError as e:
        raise UsageError(str(e)) from e


def mcp_config(opts: Any) -> Any:
    """The MCP servers of ``--mcp-config`` (else ``$K2LAB_MCP_CONFIG``), checked before a run
    starts: a malformed file is a usage error naming the file and the field."""
    path = getattr(opts, "mcp_config", None) or os.environ.get("K2LAB_MCP_CONFIG") or None
    if path is None:
        return None
    from k2lab.tools.mcp_config import MCPConfigError, load_mcp_config

    try:
        cfg = load_mcp_config(path)
    except MCPConfigError as e:
        raise UsageError(str(e)) from None
    for w in cfg.warnings:
        print(f"k2lab: warning: {w}")  # noqa: T201
    return cfg


# -- saved runs ----------------------------------------------------------------------------------
def notebook_path(opts: Any) -> Path:
    name = opts.file or os.environ.get("JPY_SESSION_NAME", "")
    if not name:
        raise UsageError("which notebook? pass --file NOTEBOOK.ipynb")
    path = Path(name)
    if not path.exists() and Path(path.name).exists():
        path = Path(path.name)  # a path relative to the server root; the kernel runs beside it
    if not path.exists():
        raise UsageError(f"notebook not found: {name} (save it first, or pass --file)")
    return path


def saved_runs(opts: Any) -> list[Any]:
    import nbformat

    path = notebook_path(opts)
    try:
        runs = runs_from_notebook(nbformat.read(path, as_version=4))
    except ValueError as e:
        raise UsageError(f"{path}: {e}") from e
    if not runs:
        raise UsageError(f"{path} holds no saved k2lab run (save the notebook after a run)")
    return runs


def _upto(runs: list[Any], run_id: str | None) -> list[Any]:
    if not run_id:
        return runs
    ids = [r.run_id for r in runs]
    if run_id not in ids:
        raise UsageError(f"no saved run {run_id!r}; saved runs: {', '.join(ids)}")
    return runs[: ids.index(run_id) + 1]


def _ended(rec: Any) -> bool:
    return not rec.going and any(e.get("type") == "run.end" for e in reversed(rec.events))


def _events_of(
    session: Any, opts: Any, run_id: str, *, ended: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """A run's events: from this kernel session if it knows the run, else from a saved notebook.
    ``last`` is the latest run, or with ``ended`` the latest run that has ended."""
    if not opts.file and session.runs and run_id in ("", "last"):
        done = [r for r in session.runs if _ended(r)] if ended else session.runs
        if not done:
            going = ", ".join(r.run_id for r in session.runs)
            raise UsageError(
                f"no run of this kernel session has ended yet ({going}): wait for it "
                "(`await k2lab.wait()`), or name the run"
            )
        rec = done[-1]
        return rec.run_id, rec.events
    if not opts.file:
        for rec in session.runs:
            if rec.run_id == run_id:
                return rec.run_id, rec.events
    runs = saved_runs(opts)
    run = _upto(runs, run_id or None)[-1]
    return run.run_id, run.events


def _count(n: int, word: str) -> str:
    """``1 call``, ``2 calls``, ``0 calls``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- the forms -------------------------------------------------------------------------------------
def ask(session: Any, opts: Any, prompt: str) -> None:
    from k2lab.notebook.session import run_flags

    settings = _settings(session, opts)
    mcp = mcp_config(opts)
    conversation, parent = None, None
    if opts.resume:
        from k2lab.agent.history import conversation_from_events
        from k2lab.agent.loop import default_system_prompt

        runs = _upto(saved_runs(opts), opts.run)
        conversation = conversation_from_events([r.events for r in runs], default_system_prompt())
        parent = runs[-1].run_id
    session.start_run(
        prompt,
        settings,
        in_kernel=bool(opts.in_kernel),
        new=bool(opts.new),
        conversation=conversation,
        parent_run_id=parent,
        mcp=mcp,
        **run_flags(opts),  # --verify/--heavy (k2lab.notebook.session, helper "driver")
    )


#: Settings.public() entries that are flags or bookkeeping, not settings a user sets
_NOT_ROWS = ("api_key_set", "uses_demo_model", "gateway_token_set", "sources")


def _shown(value: Any) -> str:
    """A setting's value as a user reads it: empty values say so instead of a blank box."""
    if value is None or value == "" or value == () or value == []:
        return "not set"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value)
    return str(value)


def config_rows(s: Any, mcp: Any = None, mcp_where: str = "") -> list[tuple[str, str, str]]:
    """(setting, value, where it came from) for ``%k2 config``; never the key or a token."""
    demo = s.uses_demo_model
    rows: list[tuple[str, str, str]] = [
        (
            "talks to",
            "offline demo model (scripted): no key and no base URL"
            if demo
            else f"{s.model} at {s.base_url or 'https://api.moonshot.ai/v1'}",
            "",
        )
    ]
    for name, value in s.public().items():
        if name in _NOT_ROWS:
            continue
        shown = _shown(value)
        if name == "model" and demo:
            shown = f"{value} once a key is set (the offline demo model answers now)"
        rows.append((name, shown, s.sources.get(name, "")))
    key = f"set (from {s.sources.get('api_key')})" if s.api_key else "not set"
    rows.append(("api key", key, ""))
    if s.gateway_url:
        rows.append(("gateway token", "set" if s.gateway_token else "not set", ""))
    if mcp is not None:  # names and transports only: no command line, env or headers
        servers = ", ".join(
            f"{r['name']} ({r['transport']})" for r in mcp.public() if "transport" in r
        )
        rows.append(("mcp servers", servers or "none enabled", f"{mcp_where}: {mcp.source}"))
    return rows


def config(session: Any, opts: Any, arg: str, cell: str | None) -> None:
    s = _settings(session, opts)
    mcp = mcp_config(opts)
    where = "option" if getattr(opts, "mcp_config", None) else "$K2LAB_MCP_CONFIG"
    rows = config_rows(s, mcp, where)
    text = "\n".join(f"{n:<18} {v:<40} {src}".rstrip() for n, v, src in rows)
    body = "".join(
        f"<tr><td>{html.escape(n)}</td><td>"
        + (f"<em>{v}</em>" if v == "not set" else f"<code>{html.escape(v)}</code>")
        + f"</td><td>{html.escape(src)}</td></tr>"
        for n, v, src in rows
    )
    table = (
        '<table class="k2lab-config"><thead><tr><th>setting</th><th>value</th>'
        f"<th>from</th></tr></thead><tbody>{body}</tbody></table>"
    )
    display({"text/plain": text, "text/html": table}, raw=True)


def stop(session: Any, opts: Any, arg: str, cell: str | None) -> None:
    going = [r.run_id for r in session.runs if r.going]
    n = session.stop_all()
    if not n:
        print("no run is going")  # noqa: T201
        return
    print(  # noqa: T201
        f"stopped {_count(n, 'run')}: {', '.join(going)}; each trace replaces its view "
        "(a run whose cell is gone: `%k2 show RUN` puts its trace here)"
    )


def runs(session: Any, opts: Any, arg: str, cell: str | None) -> None:
    lines = []
    waiting = False
    for r in session.runs:
        head = r.widget.state.head
        status = head["stop_reason"] or head["status"]
        n = int(head["tool_calls"] or 0)
        calls = f"{n:>3} call{'' if n == 1 else 's'}"
        line = f"{r.run_id}  {status:<10} {calls:<9} {r.prompt[:60]!r}"
        if r.waits_for_person():
            waiting = True
            line += f"  waits for a decision on {', '.join(r.widget.state.pending_calls())}"
        lines.append(line)
    if waiting:
        lines.append(
            "(a run whose cell is gone: `%k2 show RUN` shows its view here, `%k2 stop` stops it)"
        )
    print("\n".join(lines) or "no runs yet in this kernel session")  # noqa: T201


def show(session: Any, opts: Any, arg: str, cell: str | None) -> None:
    """``%k2 show [RUN]``: a run's view again (its cell was lost, e.g. a reload before saving);
    the trace if it ended. The view is the run's own display, so it becomes the trace too."""
    try:
        rec = session.run(arg.strip() or "last")
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    if rec.final is not None:
        display(rec.final, raw=True, metadata={"k2lab": {"run_id": rec.run_id}})
        return
    meta = rec.metadata()
    display(rec.widget, display_id=meta["k2lab"]["display_id"], metadata=meta)


def executed_code(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(call id, code that ran) for every python call that ran, in proposal order; edits win.

    Read from the run view: a call stopped while it waited for approval, rejected, invalid or
    never answered did not run and is left out (as replay leaves it out)."""
    from k2lab.trace.state import code_of
    from k2lab.trace.view import view_of

    return [
        (c.call_id, code_of("python", c.ran_arguments))
        for c in view_of(events).all_calls()
        if c.executed and c.name == "python"
    ]


def _lanes(events: list[dict[str, Any]], opts: Any) -> dict[str, list[dict[str, Any]]]:
    """Lane -> its events (``{"": events}`` for a single run); ``--lane K`` picks one.

    A heavy run's lanes each had their own sandbox and conversation: their calls are exported
    and replayed apart, never as one sequence."""
    from k2lab.trace.lanes import by_lane, lane_events

    lane = getattr(opts, "lane", None)
    try:
        return {lane: lane_events(events, lane)} if lane else by_lane(events)
    except ValueError as e:
        raise UsageError(str(e)) from e


def _first(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next((e for e in events if e.get("type") == kind), {})


def export(session: Any, opts: Any, arg: str, cell: str | None) -> None:
    import nbformat

    run_id, events = _events_of(session, opts, (arg.strip() or opts.run or "last"), ended=True)
    by_lane = _lanes(events, opts)
    lanes = {lane: calls for lane, evs in by_lane.items() if (calls := executed_code(evs))}
    if not lanes:
        raise UsageError(f"run {run_id} ran no python code: nothing to export")

    def where(lane: str) -> str:
        return f"run {run_id} lane {lane}" if lane else f"run {run_id}"

    if opts.cell:
        joined = "\n\n".join(
            f"# k2lab {where(lane)}, call {cid}\n{code}"
            for lane, calls in lanes.items()
            for cid, code in calls
        )
        session.shell.set_next_input(joined, replace=False)
        return
    nb = nbformat.v4.new_notebook()
    heavy = "" not in lanes
    nb.cells.append(
        nbformat.v4.new_markdown_cell(
            f"# k2lab run `{run_id}`\n\n**Prompt:** {_first(events, 'run.start').get('prompt', '')}"
            "\n\nEach code cell below is one tool call that ran (edited calls as edited)."
            + (
                " Each lane ran in a sandbox of its own: run a lane's cells in order."
                if heavy
                else ""
            )
        )
    )
    for lane, calls in lanes.items():
        if heavy:
            nb.cells.append(nbformat.v4.new_markdown_cell(f"## Lane {lane}"))
        lane_run = _first(by_lane[lane], "run.start").get("run_id", run_id)
        for cid, code in calls:
            c = nbformat.v4.new_code_cell(code)
            c.metadata["k2lab"] = {
                "run_id": lane_run,
                "call_id": cid,
                **({"lane": lane} if lane else {}),
            }
            nb.cells.append(c)
    # the last run.end's: a heavy run's is the aggregation's; with --lane, that lane's own
    shown = next(iter(by_lane.values())) if len(by_lane) == 1 else events
    answer = next((e.get("answer") for e in reversed(shown) if e.get("type") == "run.end"), None)
    if answer:
        nb.cells.append(nbformat.v4.new_markdown_cell("**Answer:**\n\n" + answer))
    out = Path(opts.out or f"k2lab-run-{run_id}.ipynb")
    nbformat.write(nb, out)
    n = sum(len(c) for c in lanes.values())
    in_lanes = f" in {_count(len(lanes), 'lane')}" if heavy else ""
    print(f"wrote {out} ({_count(n, 'code cell')}{in_lanes})")  # noqa: T201


def replay(session: Any, opts: Any, arg: str, cell: str | None) -> None:
    """Re-execute a run's calls in a fresh sandbox; a table says which outputs changed."""
    from k2lab.events import event_from_dict

    run_id, raw = _events_of(session, opts, arg.strip() or opts.run or "last")
    lanes = {lane: [event_from_dict(e) for e in evs] for lane, evs in _lanes(raw, opts).items()}
    settings = _settings(session, opts)
    handle = display({"text/plain": f"replaying run {run_id}..."}, raw=True, display_id=True)

    async def go() -> None:
        from k2lab.runtime import open_sandbox
        from k2lab.trace.replay import replay_all, skipped_calls

        bundle: dict[str, Any]
        try:
            rows: list[dict[str, Any]] = []
            skipped = 0
            tools = session.mcp_tools()  # read-only MCP calls run again on the running servers
            for lane, evs in lanes.items():  # each lane in a fresh sandbox, as it ran
                skipped += len(skipped_calls(evs, tools))
                if not any(e.type == "tool.proposed" for e in evs):
                    continue
                sandbox = await open_sandbox(settings)
                try:
                    results = await replay_all(evs, sandbox, settings.tool_timeout, tools=tools)
                finally:
                    await sandbox.shutdown()
                rows += [{**r.to_dict(), **({"lane": lane} if lane else {})} for r in results]
            bundle = replay_bundle(run_id, rows, skipped)
        except Exception as e:
            bundle = {"text/plain": f"replay of run {run_id} failed: {type(e).__name__}: {e}"}
        handle.update(bundle, raw=True)
        session.outputs.append((handle, bundle))

    session.schedule(go())


def replay_bundle(run_id: str, results: list[dict[str, Any]], skipped: int) -> dict[str, Any]:
    changed = sum(1 for r in results if r["changed"])
    summary = (
        f"replayed run {run_id}: {_count(len(results), 'call')}, "
        f"{_count(changed, 'changed output')}"
        + (
            f", {skipped} skipped (rejected, invalid, never ran, or not read-only)"
            if skipped
            else ""
        )
    )

    def call(r: dict[str, Any]) -> str:
        return f"{r['call_id']} (lane {r['lane']})" if r.get("lane") else r["call_id"]

    rows = "".join(
        f"<tr><td><code>{html.escape(call(r))}</code></td>"
        f"<td>{'changed' if r['changed'] else 'same'}</td>"
        f"<td><pre>{html.escape(r['new_output'][:2000])}</pre></td></tr>"
        for r in results
    )
    text = (
        summary
        + "\n"
        + "\n".join(f"  {call(r)}: {'CHANGED' if r['changed'] else 'same'}" for r in results)
    )
    # The readable table comes first, and the results for programs go under k2lab's own mime
    # type: JupyterLab ranks its JSON tree (application/json) above text/html and showed that.
    return {
        "text/html": f'<div class="k2lab-replay"><p>{html.escape(summary)}</p><table>'
        f"<tr><th>call</th><th>output</th><th>new output</th></tr>{rows}</table></div>",
        "text/plain": text,
        REPLAY_MIMETYPE: json.loads(json.dumps({"run_id": run_id, "results": results})),
    }


def fork(session: Any, opts: Any, arg: str, cell: str | None) -> None:
    from k2lab.notebook.session import RunRecord, proposed_name
    from k2lab.trace.state import arguments_for

    parts = arg.split()
    if len(parts) != 2:
        raise UsageError("usage: %%k2 fork RUN_ID|last CALL_ID (the cell body is the code to run)")
    run_id, call_id = parts
    if run_id == "last" and session.runs and not opts.file:
        run_id = session.runs[-1].run_id  # the latest run of this kernel session
    lane = ""  # RUN_ID.K: lane K of heavy run RUN_ID (its calls' ids repeat in the other lanes)
    parent = next((r for r in session.runs if r.run_id == run_id), None)
    if parent is None and "." in run_id:
        root = run_id.rpartition(".")[0]
        known = any(r.run_id == root for r in session.runs) and not opts.file
        if known or (opts.file and root in {r.run_id for r in saved_runs(opts)}):
            lane, run_id = run_id, root
            parent = next((r for r in session.runs if r.run_id == root), None)
    if parent is None or opts.file:
        from k2lab.agent.context import Conversation
        from k2lab.agent.history import conversation_before
        from k2lab.agent.loop import default_system_prompt

        runs = _upto(saved_runs(opts), run_id)
        before = conversation_before([r.events for r in runs], default_system_prompt())
        parent = RunRecord(session, runs[-1].events[0].get("prompt", ""), _settings(session, opts))
        parent.run_id, parent.events = run_id, runs[-1].events
        for ev in parent.events:
            parent.widget.state.apply(ev)
        parent.conv_before = Conversation.to_list(before)
        parent.mcp = mcp_config(opts)  # a saved run's MCP tools: --mcp-config names them again
    if lane:
        name = proposed_name(parent.events, lane, call_id)
    else:  # a heavy run's lane call asked for by the heavy run's id: plan_fork names the lanes
        card = parent.widget.state.cards.get(call_id)
        name = card["name"] if card is not None else proposed_name(parent.events, "", call_id)
    if name is None:
        raise UsageError(f"run {lane or run_id} has no tool call {call_id!r}")
    code = cell if cell is not None and cell.strip() else None
    args = arguments_for(name, code.rstrip("\n")) if code is not None else None
    session.fork(parent, call_id, args, run_id=lane or None)
