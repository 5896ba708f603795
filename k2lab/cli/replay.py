"""``k2lab replay FILE``: run a trace's tool calls again in a fresh sandbox, report what differs.

A heavy run's trace is replayed lane by lane, each lane in a fresh sandbox of its own (as it ran),
its lines tagged ``(lane K)``; ``--lane K`` replays one lane.

Exit codes: 0 every replayed output is the same; 1 some output differs; 2 the trace could not be
read or replayed. One line per call on stdout (``same`` / ``changed`` / ``skipped``), a short
diff under each changed one, and a summary line; ``--json`` prints one JSON object per call.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from pathlib import Path
from typing import Any

from k2lab.cli.progress import clip, indent
from k2lab.cli.term import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliFailure, err, out
from k2lab.config import Settings
from k2lab.runtime import open_sandbox
from k2lab.tools.mcp_config import MCPConfig
from k2lab.trace.jsonl import TraceError, load_trace
from k2lab.trace.lanes import by_lane, lane_events, lanes_with_call
from k2lab.trace.replay import (
    RecordedCall,
    ReplayError,
    ReplayResult,
    normalize,
    recorded_calls,
    replay_all,
    skipped_calls,
)

MAX_DIFF_LINES = 20


def _skip_reason(c: RecordedCall, tools: dict[str, Any]) -> str:
    """Why a call is not replayed, in the run view's vocabulary (``k2lab.trace.view``)."""
    if c.decision == "reject":
        return "rejected: it never ran"
    if c.decision == "stop":
        return "the run stopped while it waited for approval: it never ran"
    if c.reason == "invalid":
        return "invalid arguments or unknown tool: it never ran"
    if c.reason == "invalid_edit":
        return "the edited arguments were invalid: it never ran"
    if not c.executed:
        return "never ran (no result in the trace)"
    if c.name in tools:
        return (
            f"{c.name} is not marked read-only by its MCP server (readOnlyHint): running it "
            "again could repeat its effects"
        )
    if c.name.startswith("mcp__"):
        return f"an MCP call ({c.name}): --mcp-config with its server replays it if read-only"
    return f"not a python call ({c.name})"


def _lanes_to_replay(events: list[Any], lane: str | None, call: str | None) -> dict[str, list[Any]]:
    """Lane -> its events: every lane of a heavy trace (each had its own sandbox), or one."""
    try:
        if lane:
            return {lane: lane_events(events, lane)}
        split = by_lane(events)
        if call is not None and "" not in split:
            holders = lanes_with_call(events, call)
            if len(holders) > 1:
                raise ValueError(f"call {call!r} is in lanes {', '.join(holders)}: say --lane")
            return {h: split[h] for h in holders}
        return split
    except ValueError as e:
        raise CliFailure(str(e), EXIT_USAGE) from e


async def _replay_lane(
    events: list[Any],
    settings: Settings,
    *,
    upto: str | None,
    where: str,
    workspace: Path | None,
    tools: dict[str, Any],
) -> list[ReplayResult]:
    """Replay one lane's (or a single run's) python calls in a fresh sandbox of its own, and
    its read-only MCP calls on ``tools``."""
    try:
        sandbox = await open_sandbox(settings, workspace=workspace)
    except Exception as e:
        raise CliFailure(f"the sandbox did not start: {e}") from e
    try:
        err(f"k2lab: replaying {where} in a fresh sandbox ({sandbox.isolation})")
        try:
            return await replay_all(events, sandbox, settings.tool_timeout, upto=upto, tools=tools)
        except ReplayError as e:
            raise CliFailure(str(e), EXIT_USAGE) from e
    finally:
        with contextlib.suppress(Exception):
            await sandbox.shutdown()


async def replay_command(
    path: str,
    settings: Settings,
    *,
    call: str | None,
    as_json: bool,
    lane: str | None = None,
    workspace: Path | None = None,
    mcp: MCPConfig | None = None,
) -> int:
    try:
        trace = load_trace(path)
    except TraceError as e:
        raise CliFailure(str(e), EXIT_USAGE) from e
    for w in trace.warnings:
        err(f"k2lab: warning: {w}")
    lanes = _lanes_to_replay(trace.events, lane, call)
    if call is not None and not any(
        c.call_id == call for evs in lanes.values() for c in recorded_calls(evs)
    ):
        raise CliFailure(f"no tool call {call!r} in {path}", EXIT_USAGE)
    ran_mcp = any(
        c.executed and c.name.startswith("mcp__")
        for evs in lanes.values()
        for c in recorded_calls(evs)
    )
    async with contextlib.AsyncExitStack() as stack:
        tools: dict[str, Any] = {}
        if mcp is not None and mcp.servers and ran_mcp:  # the servers only when a call needs them
            from k2lab.tools.mcp import MCPToolSet

            ts = await stack.enter_async_context(MCPToolSet(mcp, timeout=settings.tool_timeout))
            tools = {t.name: t for t in ts.tools}
        return await _replay_lanes(path, settings, lanes, call, as_json, workspace, tools)


async def _replay_lanes(
    path: str,
    settings: Settings,
    lanes: dict[str, list[Any]],
    call: str | None,
    as_json: bool,
    workspace: Path | None,
    tools: dict[str, Any],
) -> int:
    changed = replayed = skipped_n = 0
    with_calls = 0  # lanes that had calls (the aggregation usually has none)
    for name, events in lanes.items():
        calls = recorded_calls(events)
        if call is not None and not any(c.call_id == call for c in calls):
            continue
        with_calls += bool(calls)
        tag = f" (lane {name})" if name else ""
        where = f"{path} lane {name}" if name else path
        skipped = [c for c in skipped_calls(events, tools) if call is None or c.call_id == call]
        if len(skipped) < len(calls):
            results = await _replay_lane(
                events, settings, upto=call, where=where, workspace=workspace, tools=tools
            )
        else:
            results = []
        shown = [r for r in results if call is None or r.call_id == call]
        replayed += len(shown)
        for r in shown:
            changed += r.changed
            if as_json:
                status = "changed" if r.changed else "same"
                out(
                    json.dumps(
                        {"status": status, **({"lane": name} if name else {}), **r.to_dict()}
                    )
                )
                continue
            out(f"{'changed' if r.changed else 'same':8} {r.call_id}{tag}")
            if r.changed:
                diff = difflib.unified_diff(
                    normalize(r.old_output).splitlines(),
                    normalize(r.new_output).splitlines(),
                    "recorded",
                    "replayed",
                    lineterm="",
                )
                out(indent(clip("\n".join(diff), MAX_DIFF_LINES)))
        skipped_n += len(skipped)
        for c in skipped:
            reason = _skip_reason(c, tools)
            if as_json:
                lane_field = {"lane": name} if name else {}
                out(
                    json.dumps(
                        {"status": "skipped", **lane_field, "call_id": c.call_id, "reason": reason}
                    )
                )
            else:
                out(f"{'skipped':8} {c.call_id}{tag} ({reason})")
    if not as_json:
        in_lanes = f" in {with_calls} lane(s)" if "" not in lanes else ""
        out(
            f"replayed {replayed} call(s){in_lanes}: {replayed - changed} same, {changed} changed, "
            f"{skipped_n} skipped"
        )
    return EXIT_FAILED if changed else EXIT_OK
