"""Fork from a recorded call through the API (``POST sessions/{id}/fork``): the branch is the
session's next run, built by the engine's ``plan_fork``; a real jupyter_server, the fake model over
HTTP, python in a real sandbox kernel."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fixtures.fake_server import Call, Turn

PY = "python"


async def idle(api: Any, sid: str) -> None:
    """Until the session's run is over (a heavy run's lane sandboxes shut down after its last
    event)."""
    for _ in range(400):
        if not (await api.get("sessions", sid))[1]["running"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the session's run did not end")


def runs_ended(n: int) -> Any:
    return lambda evs: sum(1 for e in evs if e["type"] == "run.end") >= n


async def test_a_fork_with_edited_code_runs_as_the_next_run_and_follow_ups_continue_it(
    api, fake_model
):
    fake_model.script(
        [
            Turn(reasoning="First a warm-up.", tool_calls=[Call(PY, {"code": "print(1 + 1)"})]),
            Turn(reasoning="Now compute.", tool_calls=[Call(PY, {"code": "print(6 * 7)"})]),
            Turn(content="It is 42."),
            Turn(content="The branch got 56."),  # the branch's step after its replayed one
            Turn(content="Still 56."),  # the follow-up
        ]
    )
    sid = await api.new_session(settings={"approve": "auto"})
    await api.post("sessions", sid, "messages", body={"text": "6*7?"})
    evs = await api.wait_for(sid, runs_ended(1))
    parent = evs[0]["run_id"]
    calls = [e["call_id"] for e in evs if e["type"] == "tool.proposed"]
    asked = len(fake_model.requests)
    body = {"run_id": parent, "call_id": calls[1], "arguments": '{"code": "print(7 * 8)"}'}
    code, data = await api.post("sessions", sid, "fork", body=body)
    assert code == 202, data
    assert data["parent_run_id"] == parent and data["call_id"] == calls[1]
    evs = await api.wait_for(sid, runs_ended(2))
    at = next(i for i, e in enumerate(evs) if e.get("run_id") == data["run_id"])
    branch = evs[at:]
    start = branch[0]
    assert start["type"] == "run.start"
    assert (start["parent_run_id"], start["forked_from_call"]) == (parent, calls[1])
    decision = next(e for e in branch if e["type"] == "tool.decision")
    assert decision["decision"] == "edit" and "7 * 8" in decision["arguments"]
    result = next(e for e in branch if e["type"] == "tool.result")
    assert result["ok"] and "56" in result["output"]
    assert branch[-1]["answer"] == "The branch got 56."
    # the recorded step was replayed, not asked again: one request for the branch
    assert len(fake_model.requests) == asked + 1
    sent = fake_model.requests[-1]["messages"]
    tool_outputs = [m["content"] for m in sent if m["role"] == "tool"]
    assert len(tool_outputs) == 2 and "2" in tool_outputs[0] and "56" in tool_outputs[1]
    assert not any("42" in str(m.get("content")) for m in sent)  # the parent's later steps: gone
    assert [m["content"] for m in sent if m["role"] == "user"] == ["6*7?"]
    # a follow-up continues the branch
    await api.post("sessions", sid, "messages", body={"text": "and now?"})
    await api.wait_for(sid, runs_ended(3))
    sent = fake_model.requests[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["6*7?", "and now?"]
    assert not any(m.get("content") == "It is 42." for m in sent)
    assert any(m.get("content") == "The branch got 56." for m in sent)


async def test_fork_refuses_unknown_runs_and_calls_and_a_going_run(api, fake_model):
    fake_model.script([Turn(tool_calls=[Call(PY, {"code": "print(6 * 7)"})]), Turn(content="42")])
    sid = await api.new_session()  # approve: ask, so the run waits
    sock = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "6*7?"})
    proposed = (await sock.until_event("tool.proposed"))["event"]
    run, cid = proposed["run_id"], proposed["call_id"]
    code, data = await api.post("sessions", sid, "fork", body={"run_id": run, "call_id": cid})
    assert code == 409 and "in progress" in data["message"]
    await api.post("sessions", sid, "decisions", body={"call_id": cid, "decision": "approve"})
    await sock.until_event("run.end")
    code, data = await api.post("sessions", sid, "fork", body={"run_id": "nope", "call_id": cid})
    assert code == 404 and "no run 'nope'" in data["message"]
    code, data = await api.post("sessions", sid, "fork", body={"run_id": run, "call_id": "zz"})
    assert code == 404 and "no tool call 'zz'" in data["message"]
    code, data = await api.post("sessions", sid, "fork", body={"call_id": cid})
    assert code == 400 and "run_id" in data["message"]
    code, data = await api.post("sessions", "nosuch", "fork", body={"run_id": run, "call_id": cid})
    assert code == 404


async def test_after_a_restart_a_follow_up_continues_the_branch_not_the_parent(
    api, fake_model, jp_serverapp, sessions_dir
):
    """The conversation rebuilt from the log after a restart is the branch's (the engine's
    replay rewinds to the parent before the forked call's step), as the live session had it."""
    from k2lab.server.sessions import SessionManager

    fake_model.script(
        [
            Turn(tool_calls=[Call(PY, {"code": "print(6 * 7)"})]),
            Turn(content="It is 42."),
            Turn(content="The branch got 56."),
            Turn(content="Still 56."),
        ]
    )
    sid = await api.new_session(settings={"approve": "auto"})
    await api.post("sessions", sid, "messages", body={"text": "6*7?"})
    evs = await api.wait_for(sid, runs_ended(1))
    call = next(e for e in evs if e["type"] == "tool.proposed")
    body = {"run_id": evs[0]["run_id"], "call_id": call["call_id"],
            "arguments": '{"code": "print(7 * 8)"}'}  # fmt: skip
    assert (await api.post("sessions", sid, "fork", body=body))[0] == 202
    await api.wait_for(sid, runs_ended(2))
    live = fake_model.requests[-1]["messages"]

    (ext,) = jp_serverapp.extension_manager.extension_apps["k2lab"]
    await ext.sessions.close()
    ext.sessions = SessionManager(sessions_dir, ext.factory, ext.k2config)
    assert ext.sessions.load() == 1
    await api.post("sessions", sid, "messages", body={"text": "and now?"})
    await api.wait_for(sid, runs_ended(3))
    sent = fake_model.requests[-1]["messages"]
    # what the branch's model had, then its answer and the new message: nothing of the parent's end
    assert sent[: len(live)] == live
    assert [m.get("content") for m in sent[len(live) :]] == ["The branch got 56.", "and now?"]
    assert not any(m.get("content") == "It is 42." for m in sent)


async def test_a_heavy_lanes_call_forks_into_a_single_run_that_follow_ups_continue(
    api, fake_model, jp_serverapp, sessions_dir
):
    """``run_id`` = lane 2's (``HEAVY.2``): the branch is one run (no lanes) on lane 2's
    conversation up to the call, in the session's sandbox; follow-ups continue it, also after a
    restart (the log's replay rewinds to the lane)."""
    from k2lab.server.sessions import SessionManager
    from tests.fixtures.fake_server import ConversationRouter

    def lane(k: int) -> list[Turn]:
        return [Turn(tool_calls=[Call(PY, {"code": f"print({k} * 100)"})]), Turn(f"{k}00")]

    def aside(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        last = str(msgs[-1].get("content", "")) if msgs else ""
        if "<task>" in last:
            return Turn(content="The lanes say 100 and 200.")
        if msgs and msgs[-1].get("role") == "tool" and "777" in last:
            return Turn(content="The branch got 777.")
        return Turn(content="Still 777.") if "and now?" in last else None

    fake_model.respond_with(ConversationRouter([lane(1), lane(2)], aside))
    sid = await api.new_session(settings={"approve": "auto"})
    body = {"text": "how much?", "options": {"heavy": 2}}
    code, data = await api.post("sessions", sid, "messages", body=body)
    assert code == 202, data
    heavy = data["run_id"]
    evs = await api.wait_for(
        sid, lambda es: any(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in es)
    )
    call = next(
        e for e in evs if e["type"] == "tool.proposed" and e["run_id"] == f"{heavy}.2"
    )  # the lanes' call ids are the same: the lane's run id says which
    await idle(api, sid)
    body = {"run_id": heavy, "call_id": call["call_id"]}
    code, data = await api.post("sessions", sid, "fork", body=body)
    assert code == 409 and f"{heavy}.1, {heavy}.2" in data["message"]
    body = {**body, "run_id": f"{heavy}.2", "arguments": '{"code": "print(777)"}'}
    code, data = await api.post("sessions", sid, "fork", body=body)
    assert code == 202, data
    assert data["parent_run_id"] == f"{heavy}.2"
    evs = await api.wait_for(sid, lambda es: es[-1].get("answer") == "The branch got 777.")
    branch = evs[next(i for i, e in enumerate(evs) if e.get("run_id") == data["run_id"]) :]
    assert (branch[0]["parent_run_id"], branch[0]["forked_from_call"]) == (
        f"{heavy}.2",
        call["call_id"],
    )
    assert not any(e.get("lane") for e in branch)  # a single run, not heavy
    result = next(e for e in branch if e["type"] == "tool.result")
    assert result["ok"] and result["output"].strip() == "777"
    sent = fake_model.requests[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["how much?"]  # lane 2's task
    (out,) = [m["content"] for m in sent if m["role"] == "tool"]
    assert "edited the arguments" in out and out.strip().endswith("777")
    # lane 2's step (the router gives scripts in arrival order: its code may be either's), not
    # lane 1's, nor the heavy run's aggregated turn
    other = next(e for e in evs if e["type"] == "tool.proposed" and e["run_id"] == f"{heavy}.1")
    assert call["arguments"] in str(sent) and other["arguments"] not in str(sent)
    assert "The lanes say" not in str(sent)
    await api.post("sessions", sid, "messages", body={"text": "and now?"})
    await api.wait_for(sid, lambda es: es[-1].get("answer") == "Still 777.")
    live = fake_model.requests[-1]["messages"]
    assert [m["content"] for m in live if m["role"] == "user"] == ["how much?", "and now?"]
    assert any(m.get("content") == "The branch got 777." for m in live)

    (ext,) = jp_serverapp.extension_manager.extension_apps["k2lab"]
    await ext.sessions.close()
    ext.sessions = SessionManager(sessions_dir, ext.factory, ext.k2config)
    assert ext.sessions.load() == 1
    await api.post("sessions", sid, "messages", body={"text": "and now?"})
    await api.wait_for(sid, lambda es: sum(e.get("answer") == "Still 777." for e in es) == 2)
    restored = fake_model.requests[-1]["messages"]
    assert restored[: len(live)] == live
