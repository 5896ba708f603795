"""The events WebSocket: reconnecting without losing events, and the notebook tools' round trip
(the test plays the side panel and answers ``notebook.request`` messages)."""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures.fake_server import Call, Turn


async def test_reconnect_after_a_dropped_socket_gets_exactly_the_rest(api, fake_model):
    fake_model.script([Turn(reasoning="r" * 120, content="c" * 60, chunk=2, delay=0.004)])
    sid = await api.new_session()
    first = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "stream a lot"})
    while len(first.events) < 15:
        await first.next()
    first.close()  # the page reloads mid-run
    last_seen = first.events[-1][0]
    await asyncio.sleep(0.1)  # events keep coming while nobody listens
    second = await api.socket(sid, after=last_seen)
    await second.until_event("run.end")
    got = first.events + second.events
    assert [i for i, _ in got] == list(range(len(got)))  # no gap, no duplicate
    assert [e for _, e in got] == await api.events(sid)
    assert second.events[0][0] == last_seen + 1
    # a third client from scratch sees the whole log again
    third = await api.socket(sid)
    while len(third.events) < len(got):
        await third.next()
    assert third.events == got


async def test_bad_after_is_rejected_and_bad_client_messages_get_an_error(api, jp_ws_fetch):
    sid = await api.new_session()
    with pytest.raises(Exception) as err:
        await jp_ws_fetch("k2lab", "api", "sessions", sid, "events", params={"after": "x"})
    assert "400" in str(err.value)
    with pytest.raises(Exception) as err:
        await jp_ws_fetch("k2lab", "api", "sessions", "nope", "events")
    assert "404" in str(err.value)
    sock = await api.socket(sid)
    sock.send({"kind": "chat"})
    assert "unknown message kind" in (await sock.next())["message"]
    sock.conn.write_message("not json")
    assert "JSON objects" in (await sock.next())["message"]
    sock.send({"kind": "notebook.response", "id": "r99", "ok": True, "result": {}})
    assert "no notebook request" in (await sock.next())["message"]


NOTEBOOK = {
    "path": "analysis.ipynb",
    "n_cells": 2,
    "active_index": 1,
    "cells": [
        {"index": 0, "id": "a", "cell_type": "markdown", "source": "# Sales", "outputs": []},
        {"index": 1, "id": "b", "cell_type": "code", "source": "total = 3 + 4\ntotal",
         "execution_count": 1,
         "outputs": [{"output_type": "execute_result", "data": {"text/plain": "7"},
                      "metadata": {}, "execution_count": 1}]},
    ],
}  # fmt: skip


async def test_notebook_tools_round_trip_through_the_panel(api, fake_model):
    fake_model.script(
        [
            Turn(tool_calls=[Call("notebook_read", {})]),
            Turn(tool_calls=[Call("notebook_insert_cell", {"index": -1, "source": "total * 2"})]),
            Turn(tool_calls=[Call("notebook_run_cell", {"index": 2})]),
            Turn(content="Doubled: 14."),
        ]
    )
    sid = await api.new_session(settings={"approve": "auto"})  # the user chose auto
    panel = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "double the total"})
    seen = []
    for answer in (
        NOTEBOOK,
        {"path": "analysis.ipynb", "index": 2, "id": "c"},
        {"path": "analysis.ipynb", "index": 2, "execution_count": 2, "status": "ok",
         "outputs": [{"output_type": "execute_result", "data": {"text/plain": "14"},
                      "metadata": {}, "execution_count": 2}]},
    ):  # fmt: skip
        req = await panel.until(lambda m: m["kind"] == "notebook.request")
        seen.append((req["op"], req["args"]))
        panel.send({"kind": "notebook.response", "id": req["id"], "ok": True, "result": answer})
    await panel.until_event("run.end")
    assert seen == [
        ("read", {"start": 0, "outputs": True}),
        ("insert_cell", {"index": -1, "source": "total * 2", "cell_type": "code"}),
        ("run_cell", {"index": 2}),
    ]
    results = [e for _, e in panel.events if e["type"] == "tool.result"]
    assert all(r["ok"] for r in results)
    read = results[0]["output"]
    assert "analysis.ipynb (2 cells; the user's cursor is in cell 1)" in read
    assert "--- cell 1 (code) [1]" in read and "total = 3 + 4" in read and "\n7" in read
    assert "index 2" in results[1]["output"]
    assert "14" in results[2]["output"] and results[2]["display"][0]["data"]["text/plain"] == "14"
    decisions = [e for _, e in panel.events if e["type"] == "tool.decision"]
    assert {d["by"] for d in decisions} == {"policy"}  # auto chosen by the user covers all


# the server-wide default is auto (an admin's choice, not the user's in this session)
@pytest.mark.parametrize("k2_config", [{"approve": "auto"}])
async def test_notebook_edits_ask_even_when_the_server_default_is_auto(api, fake_model):
    fake_model.script(
        [
            Turn(tool_calls=[Call("notebook_read", {"outputs": False}),
                             Call("notebook_replace_cell", {"index": 1, "source": "x = 1"})]),
            Turn(content="ok"),
        ]
    )  # fmt: skip
    sid = await api.new_session()
    panel = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "fix cell 1"})
    req = await panel.until(lambda m: m.get("kind") == "notebook.request")
    assert req["op"] == "read"  # reading followed the (auto) policy: no question asked
    panel.send({"kind": "notebook.response", "id": req["id"], "ok": True, "result": NOTEBOOK})
    proposed = await panel.until(
        lambda m: m.get("kind") == "event" and m["event"]["type"] == "tool.proposed"
        and m["event"]["name"] == "notebook_replace_cell"
    )  # fmt: skip
    cid = proposed["event"]["call_id"]
    code, meta = await api.get("sessions", sid)
    assert meta["pending"] == [cid]  # the edit waits for a person
    rej = {"call_id": cid, "decision": "reject", "feedback": "Leave my cell alone."}
    assert (await api.post("sessions", sid, "decisions", body=rej))[0] == 200
    await panel.until_event("run.end")
    assert not [m for m in panel.other if m.get("op") == "replace_cell"]  # never sent


async def test_notebook_tool_without_a_panel_is_an_error_result(api, fake_model):
    fake_model.script([Turn(tool_calls=[Call("notebook_read", {})]), Turn(content="I can't.")])
    sid = await api.new_session(settings={"approve": "auto"})
    await api.post("sessions", sid, "messages", body={"text": "read my notebook"})
    evs = await api.wait_for(sid, lambda evs: evs and evs[-1]["type"] == "run.end")
    (res,) = [e for e in evs if e["type"] == "tool.result"]
    assert res["ok"] is False and "No k2lab side panel is connected" in res["output"]
    assert evs[-1]["stop_reason"] == "completed"


async def test_panel_errors_and_disconnects_become_error_results(api, fake_model):
    fake_model.script(
        [
            Turn(tool_calls=[Call("notebook_run_cell", {"index": 0})]),
            Turn(tool_calls=[Call("notebook_read", {})]),
            Turn(content="done"),
        ]
    )
    sid = await api.new_session(settings={"approve": "auto"})
    panel = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "run it"})
    req = await panel.until(lambda m: m.get("kind") == "notebook.request")
    panel.send({"kind": "notebook.response", "id": req["id"], "ok": False,
                "result": "No notebook is open."})  # fmt: skip
    await panel.until(lambda m: m.get("kind") == "notebook.request")
    panel.close()  # the panel goes away while the server waits for its answer
    evs = await api.wait_for(sid, lambda evs: evs and evs[-1]["type"] == "run.end")
    results = [e for e in evs if e["type"] == "tool.result"]
    assert [r["ok"] for r in results] == [False, False]
    assert "No notebook is open." in results[0]["output"]
    assert "disconnected" in results[1]["output"]


async def test_deleting_a_session_closes_its_sockets(api):
    sid = await api.new_session()
    sock = await api.socket(sid)
    assert (await api.call("DELETE", "sessions", sid))[0] == 204
    with pytest.raises(ConnectionError):
        await sock.next(timeout=5)


async def test_a_pending_approval_survives_a_page_reload(api, fake_model):
    fake_model.script([Turn(tool_calls=[Call("python", {"code": "print(3)"})]), Turn(content="3")])
    sid = await api.new_session()
    page = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "go"})
    cid = (await page.until_event("tool.proposed"))["event"]["call_id"]
    page.close()  # reload: the old page is gone ...
    await asyncio.sleep(0.3)  # ... for a while; nothing may auto-reject meanwhile
    reloaded = await api.socket(sid)
    code, meta = await api.get("sessions", sid)
    assert meta["running"] is True and meta["pending"] == [cid]
    msg = await reloaded.until_event("tool.proposed")  # the card is rebuilt from the backlog
    assert msg["event"]["call_id"] == cid
    assert (await api.post("sessions", sid, "decisions",
                           body={"call_id": cid, "decision": "approve"}))[0] == 200  # fmt: skip
    end = (await reloaded.until_event("run.end"))["event"]
    assert end["stop_reason"] == "completed"
