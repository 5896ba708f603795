"""Replay of one saved call, asked for by the labextension's trace renderer.

The renderer of a saved trace (``application/vnd.k2lab.trace+json``) has the recorded events but
no k2lab session; when its notebook has a kernel it executes, in that kernel::

    import k2lab.notebook.replay_api as _k2r
    await _k2r.replay_json('<json: {"run_id", "call_id", "events"}>')

and reads the one line this prints (``MARK`` + JSON of a ``ReplayResult``, or ``{"error": ...}``).
The kernel's asyncio loop is already running (ipykernel), so this is a coroutine the cell awaits
(IPython's autoawait), never ``asyncio.run``.

What runs is what the trace says ran before: the run's earlier executed python calls are replayed
first, in order, in a sandbox kept per run, so a call that uses a variable an earlier call defined
sees it again. Asking again for a call at or before the sandbox's position starts a fresh sandbox
(the state must be that of the original run at that point, not of later calls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from k2lab.sandbox.base import Sandbox

#: Prefix of the result line on stdout, so sandbox or library chatter cannot be mistaken for it.
MARK = "k2lab-replay-result:"


@dataclass
class _RunSandbox:
    sandbox: Sandbox
    #: call ids already replayed in this sandbox, in order
    done: list[str] = field(default_factory=list)


#: run id -> the sandbox replaying it (per kernel process: this module's state)
_SANDBOXES: dict[str, _RunSandbox] = {}


def _settings() -> Any:
    from k2lab.config import K2Lab, resolve_settings

    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - k2lab depends on IPython via ipykernel
        shell = None
    config = K2Lab(config=shell.config) if shell is not None else None
    return resolve_settings(None, config=config)


async def replay_one(run_id: str, events_raw: list[dict[str, Any]], call_id: str) -> dict[str, Any]:
    """Replay ``call_id`` of a recorded run (after the run's earlier calls); a ReplayResult dict."""
    from k2lab.events import event_from_dict
    from k2lab.runtime import open_sandbox
    from k2lab.trace.replay import ReplayError, _run, recorded_calls

    events = [event_from_dict(e) for e in events_raw]
    calls = [c for c in recorded_calls(events) if c.executed and c.name == "python"]
    ids = [c.call_id for c in calls]
    if call_id not in ids:
        found = [c for c in recorded_calls(events) if c.call_id == call_id]
        if not found:
            raise ReplayError(f"no tool call {call_id!r} in this trace")
        if found[-1].name != "python":
            raise ReplayError(f"only python calls can be replayed, not {found[-1].name!r}")
        why = "was rejected" if found[-1].decision == "reject" else "never ran"
        raise ReplayError(f"call {call_id} {why}: nothing to replay")
    settings = _settings()
    slot = _SANDBOXES.get(run_id)
    target = ids.index(call_id)
    if slot is not None and (call_id in slot.done or slot.done != ids[: len(slot.done)]):
        await _drop(run_id)  # the sandbox is past this call: start again from the beginning
        slot = None
    if slot is None:
        slot = _RunSandbox(await open_sandbox(settings))
        _SANDBOXES[run_id] = slot
    for rc in calls[len(slot.done) : target]:
        await _run(rc, slot.sandbox, settings.tool_timeout)  # rebuild the state before the call
        slot.done.append(rc.call_id)
    result = await _run(calls[target], slot.sandbox, settings.tool_timeout)
    slot.done.append(call_id)
    return result.to_dict()


async def _drop(run_id: str) -> None:
    slot = _SANDBOXES.pop(run_id, None)
    if slot is not None:
        try:
            await slot.sandbox.shutdown()
        except Exception:  # noqa: BLE001 - a dead sandbox is already gone
            pass


async def replay_json(payload: str) -> None:
    """Print ``MARK`` + the JSON result of replaying the call ``payload`` names (or an error)."""
    try:
        data = json.loads(payload)
        out: dict[str, Any] = await replay_one(
            str(data.get("run_id") or "?"), list(data["events"]), str(data["call_id"])
        )
    except Exception as e:  # noqa: BLE001 - the renderer shows any failure as text
        out = {"error": f"{type(e).__name__}: {e}"}
    print(MARK + json.dumps(out))  # noqa: T201 - the renderer reads this stream line


async def shutdown_all() -> None:
    """Stop every replay sandbox of this kernel (tests; a kernel shutdown kills them anyway)."""
    for run_id in list(_SANDBOXES):
        await _drop(run_id)
