"""``k2lab replay FILE``: run a trace's tool calls again in a fresh sandbox, report what differs.

Exit codes: 0 every replayed output is the same; 1 some output differs; 2 the trace could not be
read or replayed. One line per call on stdout (``same`` / ``changed`` / ``skipped``), a short
diff under each changed one, and a summary line; ``--json`` prints one JSON object per call.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from pathlib import Path

from k2lab.cli.progress import clip, indent
from k2lab.cli.term import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliFailure, err, out
from k2lab.config import Settings
from k2lab.runtime import open_sandbox
from k2lab.trace.jsonl import TraceError, load_trace
from k2lab.trace.replay import RecordedCall, ReplayError, normalize, recorded_calls, replay_all

MAX_DIFF_LINES = 20


def _skip_reason(c: RecordedCall) -> str:
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
    return f"not a python call ({c.name})"


async def replay_command(
    path: str,
    settings: Settings,
    *,
    call: str | None,
    as_json: bool,
    workspace: Path | None = None,
) -> int:
    try:
        trace = load_trace(path)
    except TraceError as e:
        raise CliFailure(str(e), EXIT_USAGE) from e
    for w in trace.warnings:
        err(f"k2lab: warning: {w}")
    calls = recorded_calls(trace.events)
    if call is not None and not any(c.call_id == call for c in calls):
        raise CliFailure(f"no tool call {call!r} in {path}", EXIT_USAGE)
    try:
        sandbox = await open_sandbox(settings, workspace=workspace)
    except Exception as e:
        raise CliFailure(f"the sandbox did not start: {e}") from e
    try:
        err(f"k2lab: replaying {path} in a fresh sandbox ({sandbox.isolation})")
        try:
            results = await replay_all(trace.events, sandbox, settings.tool_timeout, upto=call)
        except ReplayError as e:
            raise CliFailure(str(e), EXIT_USAGE) from e
    finally:
        with contextlib.suppress(Exception):
            await sandbox.shutdown()

    changed = 0
    shown = [r for r in results if call is None or r.call_id == call]
    for r in shown:
        changed += r.changed
        if as_json:
            out(json.dumps({"status": "changed" if r.changed else "same", **r.to_dict()}))
            continue
        out(f"{'changed' if r.changed else 'same':8} {r.call_id}")
        if r.changed:
            diff = difflib.unified_diff(
                normalize(r.old_output).splitlines(),
                normalize(r.new_output).splitlines(),
                "recorded",
                "replayed",
                lineterm="",
            )
            out(indent(clip("\n".join(diff), MAX_DIFF_LINES)))
    skipped = [
        c
        for c in calls
        if not (c.executed and c.name == "python") and (call is None or c.call_id == call)
    ]
    for c in skipped:
        reason = _skip_reason(c)
        if as_json:
            out(json.dumps({"status": "skipped", "call_id": c.call_id, "reason": reason}))
        else:
            out(f"{'skipped':8} {c.call_id} ({reason})")
    if not as_json:
        out(
            f"replayed {len(shown)} call(s): {len(shown) - changed} same, {changed} changed, "
            f"{len(skipped)} skipped"
        )
    return EXIT_FAILED if changed else EXIT_OK
