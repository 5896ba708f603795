"""The server under faults and hostile input (issue 8): non-finite numbers, deep nesting, a full
disk, tool-call ids repeated across runs, a restart mid-run, and sessions opened only when asked.
Real Jupyter server (pytest-jupyter), real fake model over HTTP, real sandbox kernel."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from k2lab.agent.decisions import Decision
from k2lab.agent.history import INTERRUPTED, RESTART_BEFORE_RUN
from k2lab.events import RunEnd, RunStart, ToolDecision, ToolProposed, ToolResult
from k2lab.server import store
from k2lab.server.policy import SessionDecisions
from k2lab.server.sessions import SessionManager
from k2lab.server.store import CACHE_MAX, EventLog, SessionHeader
from tests.fixtures.fake_server import Call, Turn


def _ext(jp_serverapp):  # type: ignore[no-untyped-def]
    (app,) = jp_serverapp.extension_manager.extension_apps["k2lab"]
    return app


def strict(text: str) -> Any:
    """Parse as a browser's JSON.parse would: NaN/Infinity are errors."""

    def bad(name: str) -> Any:
        raise ValueError(f"{name} in an answer")

    return json.loads(text, parse_constant=bad)


async def raw_get(api, *parts: str) -> tuple[int, Any]:  # type: ignore[no-untyped-def]
    r = await api.fetch("k2lab", "api", *parts, method="GET", raise_error=False)
    return r.code, strict(r.body.decode())


def ended(n: int = 1):  # type: ignore[no-untyped-def]
    return lambda evs: [e["type"] for e in evs].count("run.end") >= n


async def restart(jp_serverapp, sessions_dir: Path) -> SessionManager:  # type: ignore[no-untyped-def]
    ext = _ext(jp_serverapp)
    await ext.sessions.close()
    ext.sessions = SessionManager(sessions_dir, ext.factory, ext.k2config)
    ext.sessions.load()
    return ext.sessions  # type: ignore[no-any-return]


# -- item 12: non-finite numbers ------------------------------------------------------------------
@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
async def test_non_finite_settings_are_refused_and_the_list_stays_json(api, number):
    code, data = await api.post("sessions", body=f'{{"settings": {{"wall_time": {number}}}}}')
    assert code == 400, data
    assert "finite" in data["message"] or "wall_time" in data["message"]
    code, listed = await raw_get(api, "sessions")
    assert code == 200 and listed["sessions"] == []


async def test_old_files_with_non_finite_numbers_load_and_answer_strict_json(
    api, jp_serverapp, sessions_dir
):
    sessions_dir.mkdir(parents=True, exist_ok=True)
    head = SessionHeader(session_id="0123456789ab", title="old").to_dict()
    lines = [
        json.dumps(head).replace("{}", '{"wall_time": Infinity, "approve": "auto"}'),
        json.dumps({"seq": 0, "ts": 1.0, "type": "run.start", "run_id": "r", "prompt": "p"}),
        '{"seq": 1, "ts": 2.0, "type": "tool.result", "call_id": "c", "name": "python", "ok": true,'
        ' "output": "x", "display": [{"data": {"text/plain": "x"}, "metadata": {"m": NaN}}]}',
        json.dumps({"seq": 2, "ts": 3.0, "type": "run.end", "stop_reason": "completed"}),
    ]
    (sessions_dir / "0123456789ab.jsonl").write_text("\n".join(lines) + "\n")
    await restart(jp_serverapp, sessions_dir)
    code, listed = await raw_get(api, "sessions")
    assert code == 200 and [s["id"] for s in listed["sessions"]] == ["0123456789ab"]
    assert listed["sessions"][0]["settings"] == {"approve": "auto"}  # the bad value is dropped
    code, one = await raw_get(api, "sessions", "0123456789ab")
    result = one["events"][1]["event"]
    assert result["type"] == "tool.result" and result["display"][0]["metadata"] == {"m": None}


async def test_a_non_finite_number_in_an_event_is_null_on_the_socket_in_get_and_on_disk(
    api, jp_serverapp
):
    """Sandbox display metadata can hold NaN/Infinity; what the server sends is strict JSON."""
    sid = await api.new_session()
    sock = await api.socket(sid)
    session = _ext(jp_serverapp).sessions.get(sid)
    meta = {"score": float("nan"), "big": float("inf"), "deep": [[{"x": float("-inf")}]]}
    ev = ToolResult(call_id="c", name="python", ok=True, output="x",
                    display=[{"data": {"text/plain": "x"}, "metadata": meta}])  # fmt: skip
    session.append(ev.to_dict())
    msg = await sock.until_event("tool.result")
    want = {"score": None, "big": None, "deep": [[{"x": None}]]}
    assert msg["event"]["display"][0]["metadata"] == want
    code, one = await raw_get(api, "sessions", sid)  # strict: NaN would fail here
    assert code == 200 and one["events"][0]["event"]["display"][0]["metadata"] == want
    for line in session.path.read_text().splitlines():
        strict(line)


async def test_undecodable_text_from_the_sandbox_is_kept_not_lost(api, jp_serverapp):
    """A lone surrogate (bytes the sandbox printed that are not UTF-8) is saved as a JSON escape."""
    sid = await api.new_session()
    session = _ext(jp_serverapp).sessions.get(sid)
    out = "bad byte: \udcff, fine: é"
    session.append(ToolResult(call_id="c", name="python", ok=True, output=out).to_dict())
    await restart(jp_serverapp, sessions_dir=session.path.parent)
    code, one = await raw_get(api, "sessions", sid)
    assert code == 200 and one["events"][0]["event"]["output"] == out


# -- item 13: deep nesting ------------------------------------------------------------------------
ROUTES = [("sessions",), ("sessions", "S", "messages"), ("sessions", "S", "decisions"),
          ("sessions", "S", "replay")]  # fmt: skip


@pytest.mark.parametrize("route", ROUTES)
async def test_deeply_nested_bodies_are_400(api, route):
    sid = await api.new_session()
    parts = tuple(sid if p == "S" else p for p in route)
    for body in ("[" * 100_000, '{"a":' * 100_000, "[" * 100_000 + "]" * 100_000):
        code, data = await api.post(*parts, body=body)
        assert code == 400, (parts, code, data)
        assert "nested" in data["message"] or "JSON" in data["message"]


async def test_deeply_nested_or_non_finite_edit_arguments_are_400(api):
    sid = await api.new_session()
    for args in ("[" * 100_000, '{"a": NaN}', '{"a": Infinity}'):
        body = {"call_id": "c", "decision": "edit", "arguments": args}
        code, data = await api.post("sessions", sid, "decisions", body=body)
        assert code == 400, (args[:20], code, data)
        assert "arguments" in data["message"]


async def test_a_deeply_nested_socket_message_gets_an_error_not_a_crash(api):
    sid = await api.new_session()
    sock = await api.socket(sid)
    sock.send_raw("[" * 100_000)
    msg = await sock.until(lambda m: m.get("kind") == "error", timeout=10)
    assert "JSON" in msg["message"]
    sock.send({"kind": "nope"})  # still served
    await sock.until(lambda m: m.get("kind") == "error", timeout=10)


# -- item 14: a full disk -------------------------------------------------------------------------
class FullDisk:
    """``store._write`` that, while ``full``, writes half a line then fails (as a disk does)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.full = False
        self.refused = 0

    def __call__(self, fd: int, data: bytes) -> int:
        if not self.full:
            return int(self.real(fd, data))
        self.refused += 1
        if self.refused % 2:  # a short write: half the line reaches the disk
            return int(self.real(fd, data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")


async def test_a_full_disk_loses_no_event_and_shifts_no_index(
    api, fake_model, jp_serverapp, sessions_dir, monkeypatch
):
    disk = FullDisk(store._write)
    monkeypatch.setattr(store, "_write", disk)
    fake_model.script(
        [Turn(reasoning="Thinking " * 20, content="First answer.", chunk=8),
         Turn(reasoning="More thought.", content="Second answer.", chunk=8)]
    )  # fmt: skip
    sid = await api.new_session(title="disk")
    sock = await api.socket(sid)
    path = _ext(jp_serverapp).sessions.get(sid).path
    disk.full = True
    await api.post("sessions", sid, "messages", body={"text": "first"})
    await sock.until_event("run.end")
    assert disk.refused > 0
    # the panel was told, live, that events are not saved
    storage = [e for _, e in sock.events if e["type"] == "error" and e["kind"] == "storage"]
    assert storage and "could not be saved" in storage[0]["message"]
    assert "No space left" in storage[0]["message"] or "short write" in storage[0]["message"]
    # the file holds whole lines only (the half lines were cut back), a prefix of the events
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    on_disk = [json.loads(line) for line in raw.splitlines()[1:]]
    live = [e for _, e in sock.events]
    assert on_disk == live[: len(on_disk)] and len(on_disk) < len(live)

    disk.full = False  # space comes back: the next events flush the waiting ones first, in order
    await api.post("sessions", sid, "messages", body={"text": "second"})
    await sock.until_event("run.end")
    live = [e for _, e in sock.events]
    assert [i for i, _ in sock.events] == list(range(len(live)))
    assert any(e["type"] == "notice" and e["kind"] == "storage" for e in live)
    on_disk = [json.loads(line) for line in path.read_bytes().splitlines()[1:]]
    assert on_disk == live

    await restart(jp_serverapp, sessions_dir)  # nothing lost, same indices, both prompts
    code, one = await api.get("sessions", sid)
    assert [e["index"] for e in one["events"]] == list(range(len(live)))
    assert [e["event"] for e in one["events"]] == live
    assert [e["prompt"] for e in live if e["type"] == "run.start"] == ["first", "second"]


def test_a_failed_write_is_cut_back_to_the_last_whole_line(tmp_path, monkeypatch):
    disk = FullDisk(store._write)
    monkeypatch.setattr(store, "_write", disk)
    path = tmp_path / "s.jsonl"
    elog = EventLog.create(path, SessionHeader(session_id="s"))
    elog.append({"type": "notice", "seq": 0, "ts": 1.0, "message": "a"})
    disk.full = True
    elog.append({"type": "notice", "seq": 1, "ts": 2.0, "message": "b" * 1000})
    elog.append({"type": "notice", "seq": 2, "ts": 3.0, "message": "c"})
    assert elog.unsaved == 2 and elog.saved == 1 and len(elog) == 3 and elog.error
    assert path.read_bytes().count(b"\n") == 2 and path.read_bytes().endswith(b"\n")
    assert [e["message"][0] for e in elog] == ["a", "b", "c"]  # readable from memory
    disk.full = False
    assert elog.retry() and elog.unsaved == 0
    elog.close()
    header, events = store.read_session(path)
    assert [e["message"][0] for e in events] == ["a", "b", "c"]


def test_no_line_is_glued_to_a_half_line_even_when_cutting_back_fails(tmp_path, monkeypatch):
    disk = FullDisk(store._write)
    monkeypatch.setattr(store, "_write", disk)
    real_truncate = os.ftruncate
    fail = {"n": 2}

    def flaky_truncate(fd: int, size: int) -> None:
        if fail["n"]:
            fail["n"] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real_truncate(fd, size)

    monkeypatch.setattr(store.os, "ftruncate", flaky_truncate)
    path = tmp_path / "s.jsonl"
    elog = EventLog.create(path, SessionHeader(session_id="s"))
    disk.full = True
    elog.append({"type": "notice", "seq": 0, "ts": 1.0, "message": "a" * 100})  # half written
    assert not path.read_bytes().endswith(b"\n")  # the cut failed: a half line is there
    disk.full = False
    elog.append({"type": "notice", "seq": 1, "ts": 2.0, "message": "b"})  # cut fails again
    assert elog.saved == 0 and elog.unsaved == 2
    elog.append({"type": "notice", "seq": 2, "ts": 3.0, "message": "c"})  # cut works: written
    assert elog.unsaved == 0
    elog.close()
    _, events = store.read_session(path)
    assert [e["message"][0] for e in events] == ["a", "b", "c"]


# -- item 11: tool-call ids repeated across runs ------------------------------------------------
async def test_a_call_id_repeated_in_a_later_run_can_still_be_decided(
    api, fake_model, jp_serverapp
):
    """Two runs proposing the same call id: the second waits for, and gets, its own decision
    (before: 409 "already decided" and the run waited forever)."""
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", {"code": "print(1)"}, id="call_0")]),
            Turn(content="One."),
            Turn(tool_calls=[Call("python", {"code": "print(2)"}, id="call_0")]),
            Turn(content="Two."),
        ]
    )
    sid = await api.new_session()
    session = _ext(jp_serverapp).sessions.get(sid)
    first_call = ""
    for n, text in ((1, "one"), (2, "two")):
        await api.post("sessions", sid, "messages", body={"text": text})
        evs = await api.wait_for(
            sid,
            lambda evs: (
                [e["type"] for e in evs].count("tool.proposed") == n  # noqa: B023
                and bool(session.pending_calls())
            ),
            timeout=60,
        )
        proposed = [e for e in evs if e["type"] == "tool.proposed"][-1]
        code, data = await api.post(
            "sessions", sid, "decisions",
            body={"call_id": proposed["call_id"], "decision": "approve"},
        )  # fmt: skip
        assert code == 200, data
        evs = await api.wait_for(sid, ended(n), timeout=60)
        assert evs[-1]["stop_reason"] == "completed"
        first_call = first_call or proposed["call_id"]
    # a call is named with its run too; an old run's call is not waiting any more
    starts = [e for e in evs if e["type"] == "run.start"]
    code, data = await api.post(
        "sessions", sid, "decisions",
        body={"call_id": first_call, "run_id": starts[0]["run_id"], "decision": "approve"},
    )  # fmt: skip
    assert code == 409 and "already decided" in data["message"]


async def test_a_call_id_the_session_decided_in_an_old_run_is_not_409_in_a_new_one(
    api, fake_model, jp_serverapp, sessions_dir
):
    """The log (not the engine) says run 1 decided ``c1``; run 2 proposes ``c1`` again."""
    sessions_dir.mkdir(parents=True, exist_ok=True)
    sid = "aaaaaaaaaaaa"
    lines = [
        json.dumps(SessionHeader(session_id=sid).to_dict()),
        json.dumps({"seq": 0, "ts": 1.0, "type": "run.start", "run_id": "old", "prompt": "p"}),
        json.dumps({"seq": 1, "ts": 1.0, "type": "tool.proposed", "call_id": "functions.python:0",
                    "name": "python", "arguments": "{}", "step": 1}),
        json.dumps({"seq": 2, "ts": 1.0, "type": "tool.decision", "call_id": "functions.python:0",
                    "decision": "reject", "by": "user"}),
        json.dumps({"seq": 3, "ts": 1.0, "type": "run.end", "stop_reason": "completed"}),
    ]  # fmt: skip
    (sessions_dir / f"{sid}.jsonl").write_text("\n".join(lines) + "\n")
    manager = await restart(jp_serverapp, sessions_dir)
    session = manager.get(sid)
    await session.opened()
    # a run "new" in progress proposes the same id and waits for a person
    session._decisions = SessionDecisions("ask")
    session._decisions.new_run("new")
    blocker = asyncio.Event()
    session._task = asyncio.ensure_future(blocker.wait())
    session.append(RunStart(run_id="new", prompt="again", model="m", model_label="m",
                            base_url="", policy="ask", isolation="process",
                            max_steps=3).to_dict())  # fmt: skip
    proposal = ToolProposed(step=1, call_id="functions.python:0", run_id="new", name="python",
                            arguments="{}")  # fmt: skip
    session.append(proposal.to_dict())
    waiting = asyncio.ensure_future(session._decisions.decide(proposal))
    await asyncio.sleep(0.05)
    code, data = await api.post(
        "sessions", sid, "decisions", body={"call_id": "functions.python:0", "decision": "approve"}
    )
    assert code == 200, data
    assert (await asyncio.wait_for(waiting, 5)).kind == "approve"
    # the old run's call of that id is still known as decided
    code, data = await api.post(
        "sessions", sid, "decisions",
        body={"call_id": "functions.python:0", "run_id": "old", "decision": "approve"},
    )  # fmt: skip
    assert code == 409 and "already decided" in data["message"]
    blocker.set()
    await session._task


def test_an_id_repeated_inside_one_run_is_answered_not_left_waiting():
    async def go() -> None:
        src = SessionDecisions("ask")
        src.new_run("r")
        p = ToolProposed(step=1, call_id="dup", run_id="r", name="python", arguments="{}")
        first = asyncio.ensure_future(src.decide(p))
        await asyncio.sleep(0)
        second = await asyncio.wait_for(src.decide(p), 5)  # does not wait
        assert second.kind == "reject" and "repeats the id" in (second.feedback or "")
        assert src.pending.pending == ["dup"]
        src.pending.resolve("dup", Decision("approve"))
        assert (await first).kind == "approve"

    asyncio.run(go())


async def test_replay_names_the_run_of_a_call_id_two_runs_share(api, jp_serverapp, sessions_dir):
    sessions_dir.mkdir(parents=True, exist_ok=True)
    sid = "cccccccccccc"
    cid = "functions.python:0"
    lines = [SessionHeader(session_id=sid).to_dict()]
    for run, word in (("r1", "one"), ("r2", "two")):
        args = json.dumps({"code": f"print('{word}')"})
        lines += [
            RunStart(run_id=run, prompt=word, model="m", model_label="m", base_url="",
                     policy="ask", isolation="process", max_steps=3).to_dict(),
            ToolProposed(step=1, call_id=cid, run_id=run, name="python", arguments=args).to_dict(),
            ToolDecision(call_id=cid, run_id=run, decision="approve", by="user").to_dict(),
            ToolResult(call_id=cid, run_id=run, name="python", ok=True, output=word).to_dict(),
            RunEnd(stop_reason="completed", answer="", steps=1, tool_calls=1).to_dict(),
        ]  # fmt: skip
    (sessions_dir / f"{sid}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    await restart(jp_serverapp, sessions_dir)
    code, first = await api.post("sessions", sid, "replay", body={"call_id": cid, "run_id": "r1"})
    assert code == 200, first
    assert first["code"] == "print('one')" and "one" in first["new_output"]
    code, latest = await api.post("sessions", sid, "replay", body={"call_id": cid})
    assert code == 200 and latest["code"] == "print('two')"
    code, data = await api.post("sessions", sid, "replay", body={"call_id": cid, "run_id": "r9"})
    assert code == 404, data


# -- item 16: a restart cuts a run off -------------------------------------------------------------
async def test_a_restart_while_a_call_waits_says_the_restart_cut_it_off(
    api, fake_model, jp_serverapp, sessions_dir
):
    fake_model.script(
        [Turn(tool_calls=[Call("python", {"code": "print(1)"})]), Turn(content="Picked up.")]
    )
    sid = await api.new_session()
    session = _ext(jp_serverapp).sessions.get(sid)
    await api.post("sessions", sid, "messages", body={"text": "run it"})
    await api.wait_for(sid, lambda evs: bool(session.pending_calls()), timeout=60)
    # the server dies with the call waiting: a new server starts on the file as it was left
    crashed = sessions_dir.parent / "after-crash"
    crashed.mkdir()
    (crashed / session.path.name).write_bytes(session.path.read_bytes())
    ext = _ext(jp_serverapp)
    old = ext.sessions
    ext.sessions = SessionManager(crashed, ext.factory, ext.k2config)
    ext.sessions.load()
    await old.close()
    evs = await api.events(sid)
    result = next(e for e in evs if e["type"] == "tool.result")
    assert result["output"] == RESTART_BEFORE_RUN and not result["ok"]
    assert "user stopped" not in result["output"]
    assert evs[-1]["type"] == "run.end" and evs[-1]["error"] == INTERRUPTED
    # the model is told the same on the next message
    await api.post("sessions", sid, "messages", body={"text": "and now?"})
    await api.wait_for(sid, ended(2), timeout=60)
    tool_msgs = [m for m in fake_model.requests[-1]["messages"] if m["role"] == "tool"]
    assert tool_msgs and tool_msgs[0]["content"] == RESTART_BEFORE_RUN


# -- item 9: sessions are opened when asked for, big events are not kept in memory -------------
def _big_session(path: Path, sid: str, n_deltas: int, step_chars: int) -> int:
    with open(path, "w") as f:
        f.write(json.dumps(SessionHeader(session_id=sid).to_dict()) + "\n")
        f.write(json.dumps({"seq": 0, "ts": 1.0, "type": "run.start", "run_id": "r",
                            "prompt": "Think hard\nplease"}) + "\n")  # fmt: skip
        for i in range(n_deltas):
            f.write(json.dumps({"seq": i + 1, "ts": 2.0, "type": "reasoning.delta", "step": 1,
                                "text": "x" * 100}) + "\n")  # fmt: skip
        f.write(json.dumps({"seq": n_deltas + 1, "ts": 3.0, "type": "step.end", "step": 1,
                            "content": "ok", "reasoning": "y" * step_chars,
                            "tool_calls": []}) + "\n")  # fmt: skip
        f.write(json.dumps({"seq": n_deltas + 2, "ts": 4.5, "type": "run.end",
                            "stop_reason": "completed", "answer": "ok"}) + "\n")  # fmt: skip
    return n_deltas + 3


async def test_sessions_are_listed_without_reading_their_events(
    api, jp_serverapp, sessions_dir, monkeypatch
):
    sessions_dir.mkdir(parents=True, exist_ok=True)
    n = _big_session(sessions_dir / "bbbbbbbbbbbb.jsonl", "bbbbbbbbbbbb", 2000, 3 * SCAN_MAX)
    manager = await restart(jp_serverapp, sessions_dir)
    session = manager.get("bbbbbbbbbbbb")
    assert not session.loaded  # listed, not read
    code, listed = await api.get("sessions")
    meta = listed["sessions"][0]
    assert (meta["n_events"], meta["updated"], meta["title"]) == (n, 4.5, "Think hard")
    assert not session.loaded
    # opening reads it, off the event loop's thread; only small, non-fragment events stay
    threads: list[str] = []
    real_open = EventLog.open.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, *a: Any, **k: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real_open(cls, *a, **k)

    monkeypatch.setattr(EventLog, "open", classmethod(spy))
    code, one = await api.get("sessions", "bbbbbbbbbbbb")
    assert threads and threading.main_thread().name not in threads
    assert code == 200 and len(one["events"]) == n and session.loaded
    assert one["events"][-2]["event"]["reasoning"] == "y" * 3 * SCAN_MAX
    cached = session.log._cache
    assert all(session.log.type_of(i) != "reasoning.delta" for i in cached)
    assert n - 2 not in cached  # the big step.end is read back from the file when asked for
    assert sum(len(json.dumps(e)) for e in cached.values()) < 10 * CACHE_MAX
    # a clean shutdown leaves a summary: the next start lists from it without a scan
    await restart(jp_serverapp, sessions_dir)

    def no_scan(*a: Any, **k: Any) -> Any:
        raise AssertionError("the event lines were scanned")

    manager = _ext(jp_serverapp).sessions
    assert (sessions_dir / "bbbbbbbbbbbb.summary.json").exists()
    monkeypatch.setattr(store, "_event", no_scan)
    monkeypatch.setattr(store, "_peek", no_scan)
    manager.sessions.clear()
    assert manager.load() == 1 and manager.get("bbbbbbbbbbbb").meta()["n_events"] == n


SCAN_MAX = store.SCAN_PARSE_MAX
