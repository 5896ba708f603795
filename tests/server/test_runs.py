"""Runs through the API: streaming, approvals (approve / edit / reject / approve-all), policies,
stop mid-stream and mid-decision. The model is the fake over HTTP; python runs in a real sandbox
kernel started through the server's kernel manager."""

from __future__ import annotations

import pytest

from tests.fixtures.fake_server import Call, Turn
from tests.server.conftest import API_KEY

PY = "python"


def types(events):
    return [e["type"] for e in events]


def ended(events):
    return bool(events) and events[-1]["type"] == "run.end"


async def test_a_run_streams_reasoning_and_answer_over_the_socket(api, fake_model):
    fake_model.script([Turn(reasoning="Thinking it over.", content="Hello there!", chunk=4)])
    sid = await api.new_session()
    sock = await api.socket(sid)
    code, data = await api.post("sessions", sid, "messages", body={"text": "Say hello"})
    assert code == 202 and data["run_id"]
    end = await sock.until_event("run.end")
    assert end["event"]["stop_reason"] == "completed"
    assert end["event"]["answer"] == "Hello there!"
    indices = [i for i, _ in sock.events]
    assert indices == list(range(len(indices)))  # session-wide index from 0, no gaps
    evs = [e for _, e in sock.events]
    assert evs == await api.events(sid)  # the socket and the stored log agree
    assert evs[0]["type"] == "run.start" and evs[0]["run_id"] == data["run_id"]
    assert evs[0]["prompt"] == "Say hello" and evs[0]["model"] == "fake-k2"
    assert "".join(e["text"] for e in evs if e["type"] == "reasoning.delta") == "Thinking it over."
    # the key was used by the server, towards the configured endpoint only
    assert fake_model.headers[0]["authorization"] == f"Bearer {API_KEY}"
    code, data = await api.get("sessions")
    assert data["sessions"][0]["title"] == "Say hello"  # untitled sessions take the first message


async def test_context_from_the_notebook_reaches_the_model(api, fake_model):
    fake_model.script([Turn(content="It imports pandas.")])
    sid = await api.new_session()
    ctx = {"kind": "cell", "path": "work/a.ipynb", "text": "import pandas as pd"}
    body = {"text": "What does this do?", "context": ctx}
    assert (await api.post("sessions", sid, "messages", body=body))[0] == 202
    evs = await api.wait_for(sid, ended)
    user = fake_model.requests[0]["messages"][-1]
    assert user["role"] == "user"
    # the model reads the message and the context joined, as before ...
    assert user["content"] == (
        "What does this do?\n\nContext (the current cell of work/a.ipynb):\n"
        "```\nimport pandas as pd\n```"
    )
    # ... and the trace keeps them apart: the prompt is what the user typed, the context a field
    start = next(e for e in evs if e["type"] == "run.start")
    assert start["prompt"] == "What does this do?"
    assert start["context"] == {
        "label": "the current cell of work/a.ipynb",
        "text": "import pandas as pd",
    }


async def test_a_tool_call_waits_for_approval_then_runs_in_the_sandbox(
    api, fake_model, jp_serverapp
):
    fake_model.script(
        [
            Turn(reasoning="Compute it.", tool_calls=[Call(PY, {"code": "print(6 * 7)"})]),
            Turn(content="It is 42."),
        ]
    )
    sid = await api.new_session()
    sock = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "6*7?"})
    proposed = (await sock.until_event("tool.proposed"))["event"]
    cid = proposed["call_id"]
    code, meta = await api.get("sessions", sid)
    assert meta["running"] is True and meta["pending"] == [cid]
    # one run at a time
    code, data = await api.post("sessions", sid, "messages", body={"text": "again"})
    assert code == 409 and "in progress" in data["message"]
    code, data = await api.post("sessions", sid, "decisions",
                                body={"call_id": cid, "decision": "approve"})  # fmt: skip
    assert (code, data) == (200, {"call_id": cid, "decision": "approve"})
    # deciding twice is a conflict, not a silent no-op
    code, data = await api.post("sessions", sid, "decisions",
                                body={"call_id": cid, "decision": "reject"})  # fmt: skip
    assert code == 409 and "already decided" in data["message"]
    result = (await sock.until_event("tool.result"))["event"]
    assert result["ok"] is True and "42" in result["output"]
    # the server hands its own kernel manager to the sandbox (a gateway one runs it remotely)
    (ext,) = jp_serverapp.extension_manager.extension_apps["k2lab"]
    assert ext.factory.kernel_manager is jp_serverapp.kernel_manager
    end = (await sock.until_event("run.end"))["event"]
    assert end["stop_reason"] == "completed" and end["answer"] == "It is 42."
    decision = next(e for _, e in sock.events if e["type"] == "tool.decision")
    assert decision["by"] == "user" and decision["decision"] == "approve"
    assert fake_model.requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": cid,
        "content": result["output"],
    }
    code, info = await api.get("info")
    assert info["isolation"] in ("process", "bwrap", "remote")  # the level actually in force


async def test_edit_and_reject_with_feedback(api, fake_model):
    fake_model.script(
        [
            Turn(tool_calls=[Call(PY, {"code": "print(1)"}), Call(PY, {"code": "import os"})]),
            Turn(content="Done."),
        ]
    )
    sid = await api.new_session()
    sock = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "go"})
    first = (await sock.until_event("tool.proposed"))["event"]["call_id"]
    edit = {"call_id": first, "decision": "edit", "arguments": '{"code": "print(7 * 7)"}'}
    assert (await api.post("sessions", sid, "decisions", body=edit))[0] == 200
    r1 = (await sock.until_event("tool.result"))["event"]
    assert (r1["output"], r1["edited"]) == ("49\n", True)  # the edit is a field of the result
    second = (await sock.until_event("tool.proposed"))["event"]["call_id"]
    rej = {"call_id": second, "decision": "reject", "feedback": "No imports, please."}
    assert (await api.post("sessions", sid, "decisions", body=rej))[0] == 200
    await sock.until_event("run.end")
    evs = [e for _, e in sock.events]
    decisions = [e for e in evs if e["type"] == "tool.decision"]
    assert [d["decision"] for d in decisions] == ["edit", "reject"]
    assert decisions[0]["arguments"] == '{"code": "print(7 * 7)"}'
    tool_msgs = [m for m in fake_model.requests[1]["messages"] if m["role"] == "tool"]
    assert "No imports, please." in tool_msgs[1]["content"]
    # the model reads the note as before (events.tool_message)
    note = '[The user edited the arguments before running: {"code": "print(7 * 7)"}]\n'
    assert tool_msgs[0]["content"] == note + "49\n"


async def test_approve_all_approves_pending_and_later_calls_of_the_run(api, fake_model):
    fake_model.script(
        [
            Turn(tool_calls=[Call(PY, {"code": "print('a')"})]),
            Turn(tool_calls=[Call(PY, {"code": "print('b')"})]),
            Turn(content="ok"),
            Turn(tool_calls=[Call(PY, {"code": "print('c')"})]),
            Turn(content="ok again"),
        ]
    )
    sid = await api.new_session()
    sock = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "go"})
    await sock.until_event("tool.proposed")
    code, data = await api.post("sessions", sid, "approve-all")
    assert (code, data) == (200, {"approved": 1})
    await sock.until_event("run.end")
    decisions = [e for _, e in sock.events if e["type"] == "tool.decision"]
    assert [d["by"] for d in decisions] == ["user", "policy"]
    # "approve all" lasts one run: the next message asks again
    await api.post("sessions", sid, "messages", body={"text": "more"})
    cid = (await sock.until_event("tool.proposed"))["event"]["call_id"]
    code, meta = await api.get("sessions", sid)
    assert meta["pending"] == [cid]
    await api.post("sessions", sid, "decisions", body={"call_id": cid, "decision": "approve"})
    await sock.until_event("run.end")


@pytest.mark.parametrize(("policy", "decision", "ok"), [("auto", "approve", True),
                                                        ("never", "reject", False)])  # fmt: skip
async def test_session_policy_decides_python_calls(api, fake_model, policy, decision, ok):
    fake_model.script([Turn(tool_calls=[Call(PY, {"code": "print(5)"})]), Turn(content="k")])
    sid = await api.new_session(settings={"approve": policy})
    await api.post("sessions", sid, "messages", body={"text": "print 5"})
    evs = await api.wait_for(sid, ended)
    (d,) = [e for e in evs if e["type"] == "tool.decision"]
    assert (d["decision"], d["by"]) == (decision, "policy")
    (r,) = [e for e in evs if e["type"] == "tool.result"]
    assert r["ok"] is ok
    assert evs[0]["policy"] == policy


async def test_stop_mid_stream_keeps_the_trace_and_the_next_message_works(api, fake_model):
    fake_model.script(
        [
            Turn(reasoning="x" * 400, chunk=10, stall_after=5),  # streams, then hangs
            Turn(content="Still here."),
        ]
    )
    sid = await api.new_session()
    sock = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "think forever"})
    await sock.until_event("reasoning.delta")
    code, data = await api.post("sessions", sid, "stop")
    assert (code, data) == (200, {"stopped": True})
    end = (await sock.until_event("run.end", timeout=10))["event"]
    assert end["stop_reason"] == "stopped"
    evs = await api.events(sid)
    assert "reasoning.delta" in types(evs)  # what streamed before the stop is kept
    code, meta = await api.get("sessions", sid)
    assert meta["running"] is False
    await api.post("sessions", sid, "messages", body={"text": "and now?"})
    end = (await sock.until_event("run.end"))["event"]
    assert (end["stop_reason"], end["answer"]) == ("completed", "Still here.")


async def test_stop_while_a_call_waits_for_a_decision(api, fake_model):
    fake_model.script([Turn(tool_calls=[Call(PY, {"code": "print(1)"})]), Turn(content="fine")])
    sid = await api.new_session()
    sock = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "go"})
    cid = (await sock.until_event("tool.proposed"))["event"]["call_id"]
    assert (await api.post("sessions", sid, "stop"))[1] == {"stopped": True}
    end = (await sock.until_event("run.end"))["event"]
    assert end["stop_reason"] == "stopped"
    code, data = await api.post("sessions", sid, "decisions",
                                body={"call_id": cid, "decision": "approve"})  # fmt: skip
    assert code == 409 and "not waiting" in data["message"]
    # the conversation stays valid: the unanswered call got a "not run" answer
    await api.post("sessions", sid, "messages", body={"text": "continue"})
    await api.wait_for(sid, lambda evs: types(evs).count("run.end") == 2)
    tool_msgs = [m for m in fake_model.requests[-1]["messages"] if m["role"] == "tool"]
    assert tool_msgs and "stopped" in tool_msgs[0]["content"]


async def test_provider_failure_is_an_event_and_the_session_goes_on(api, fake_model):
    fake_model.script([Turn(status=400, error="bad request: nope"), Turn(content="recovered")])
    sid = await api.new_session()
    await api.post("sessions", sid, "messages", body={"text": "hi"})
    evs = await api.wait_for(sid, ended)
    assert evs[-1]["stop_reason"] == "error"
    assert any(e["type"] == "error" and e["fatal"] for e in evs)
    await api.post("sessions", sid, "messages", body={"text": "again"})
    evs = await api.wait_for(sid, lambda evs: types(evs).count("run.end") == 2)
    assert evs[-1]["answer"] == "recovered"


async def test_stop_while_the_sandbox_starts_ends_the_run(api, fake_model, jp_serverapp):
    fake_model.script([Turn(content="never asked")])
    sid = await api.new_session()
    await api.post("sessions", sid, "messages", body={"text": "hi"})
    assert (await api.post("sessions", sid, "stop"))[1] == {"stopped": True}
    evs = await api.wait_for(sid, ended)
    assert types(evs) == ["run.start", "run.end"] and evs[-1]["stop_reason"] == "stopped"
    assert fake_model.requests == []
    code, meta = await api.get("sessions", sid)
    assert meta["running"] is False
    # the kernel start was not cut half-way (that can orphan it): it finished and is kept
    (ext,) = jp_serverapp.extension_manager.extension_apps["k2lab"]
    built = await ext.sessions.get(sid).ensure_agent()
    assert built.sandbox is not None and built.sandbox.started


@pytest.mark.parametrize("k2_config", [{"isolation": "chroot-please"}])
async def test_a_sandbox_that_cannot_start_is_an_error_in_the_log(api, fake_model):
    sid = await api.new_session()
    for attempt in (1, 2):  # every message says why; nothing hangs
        code, _ = await api.post("sessions", sid, "messages", body={"text": "hi"})
        assert code == 202
        evs = await api.wait_for(sid, lambda e, n=attempt: types(e).count("run.end") == n)
        assert types(evs)[-3:] == ["run.start", "error", "run.end"]
        assert "chroot-please" in evs[-2]["message"] and evs[-2]["fatal"] is True
        assert evs[-1]["stop_reason"] == "error"
    assert fake_model.requests == []
