"""Sessions on disk: a restart loses nothing, a run cut by a restart is ended, a cut line is
dropped, and a follow-up after a restart continues the same conversation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k2lab.agent.history import INTERRUPTED
from k2lab.server.sessions import SessionManager
from k2lab.server.store import SessionFileError, SessionHeader, read_session
from tests.fixtures.fake_server import Call, Turn


def _ext(jp_serverapp):  # type: ignore[no-untyped-def]
    (app,) = jp_serverapp.extension_manager.extension_apps["k2lab"]
    return app


async def test_a_restart_reloads_sessions_and_the_conversation_continues(
    api, fake_model, jp_serverapp, sessions_dir
):
    fake_model.script(
        [
            Turn(reasoning="Use python.", tool_calls=[Call("python", {"code": "print(2 + 2)"})]),
            Turn(content="Four."),
            Turn(content="You asked about 2 + 2."),
        ]
    )
    sid = await api.new_session(title="Sums", settings={"approve": "auto"})
    await api.post("sessions", sid, "messages", body={"text": "2+2?"})
    before = await api.wait_for(sid, lambda evs: evs and evs[-1]["type"] == "run.end")

    # the server goes down (sessions closed, sandboxes shut) and comes back on the same directory
    ext = _ext(jp_serverapp)
    await ext.sessions.close()
    ext.sessions = SessionManager(sessions_dir, ext.factory, ext.k2config)
    assert ext.sessions.load() == 1

    code, meta = await api.get("sessions", sid)
    assert meta["title"] == "Sums" and meta["settings"] == {"approve": "auto"}
    assert [e["event"] for e in meta["events"]] == before
    await api.post("sessions", sid, "messages", body={"text": "What did I ask?"})
    after = await api.wait_for(sid, lambda evs: [e["type"] for e in evs].count("run.end") == 2)
    assert after[-1]["answer"] == "You asked about 2 + 2."
    # the model got the whole earlier exchange back, tool call and result included
    msgs = fake_model.requests[-1]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert msgs[1]["content"] == "2+2?" and msgs[3]["content"].strip().endswith("4")
    assert msgs[2]["tool_calls"][0]["function"]["arguments"] == '{"code": "print(2 + 2)"}'
    # indices continue across the restart
    code, meta = await api.get("sessions", sid)
    assert [e["index"] for e in meta["events"]] == list(range(len(after)))


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def _header(sid: str) -> str:
    return json.dumps(SessionHeader(session_id=sid, title="t").to_dict())


def _ev(**kw) -> str:  # type: ignore[no-untyped-def]
    return json.dumps({"seq": 0, "ts": 1.0, **kw})


RUN_START = dict(type="run.start", run_id="r1", prompt="p", model="m", model_label="m",
                 base_url="u", policy="ask", isolation="process", max_steps=5)  # fmt: skip


async def test_a_run_cut_by_a_crash_is_ended_and_a_cut_line_dropped(
    api, jp_serverapp, sessions_dir
):
    sessions_dir.mkdir(parents=True, exist_ok=True)
    path = sessions_dir / "abcdefabcdef.jsonl"
    _write(path, [_header("abcdefabcdef"), _ev(**RUN_START), _ev(type="step.start", step=1, seq=1)])
    with open(path, "a") as f:
        f.write('{"type": "reasoning.delta", "step": 1, "te')  # the process died mid-write
    ext = _ext(jp_serverapp)
    ext.sessions = SessionManager(sessions_dir, ext.factory, ext.k2config)
    ext.sessions.load()
    code, meta = await api.get("sessions", "abcdefabcdef")
    assert code == 200 and meta["running"] is False
    evs = [e["event"] for e in meta["events"]]
    assert [e["type"] for e in evs] == ["run.start", "step.start", "run.end"]
    assert evs[-1]["stop_reason"] == "error" and evs[-1]["error"] == INTERRUPTED
    assert evs[-1]["seq"] == 2 and evs[-1]["steps"] == 1
    # the file is whole again: every line parses, and the run.end was appended on its own line
    lines = path.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines[1:]] == [
        "run.start",
        "step.start",
        "run.end",
    ]


def test_reader_skips_a_damaged_middle_line_and_refuses_newer_formats(tmp_path):
    path = tmp_path / "s.jsonl"
    _write(path, [_header("s"), _ev(**RUN_START), "{garbage", _ev(type="notice", message="hi")])
    header, events = read_session(path)
    assert header.session_id == "s" and [e["type"] for e in events] == ["run.start", "notice"]
    newer = json.loads(_header("s"))
    newer["k2lab_session"] = 99
    _write(path, [json.dumps(newer)])
    with pytest.raises(SessionFileError, match="newer"):
        read_session(path)
    path.write_text('{"k2lab_sess')  # cut inside the header
    with pytest.raises(SessionFileError):
        read_session(path)


def test_unreadable_files_are_skipped_not_fatal(tmp_path):
    (tmp_path / "bad.jsonl").write_text("not json\n")
    _write(tmp_path / "good.jsonl", [_header("good")])
    manager = SessionManager(tmp_path, factory=None, config=None)  # type: ignore[arg-type]
    assert manager.load() == 1 and list(manager.sessions) == ["good"]
    assert (tmp_path / "bad.jsonl").exists()  # kept for the user to look at
