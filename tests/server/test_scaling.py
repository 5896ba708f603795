"""Panel sessions with the verify pass, heavy lanes, data paths and MCP servers (issues 10, 12):
a real jupyter_server with the extension, the fake model over HTTP, real sandbox kernels and real
MCP server processes (tests/fixtures/mcp_servers)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.fake_server import Call, ConversationRouter, Turn
from tests.tools.conftest import CRASH_AT_START, stdio_spec

SECRET = "env-secret-panel-5c2e91"


def ended(events: list[dict[str, Any]]) -> bool:
    return bool(events) and events[-1]["type"] == "run.end"


@pytest.fixture
def k2_config(tmp_path: Path) -> dict[str, Any]:
    cfg = tmp_path / "mcp.json"
    servers = {
        "calc": stdio_spec(env={"MCP_SECRET": SECRET}),
        "broken": {"command": sys.executable, "args": [str(CRASH_AT_START)]},
    }
    cfg.write_text(json.dumps({"mcpServers": servers}))
    return {"mcp_config": str(cfg)}


async def test_verify_in_a_panel_session_checks_the_answer(api, fake_model):
    fake_model.script(
        [
            Turn(content="6*7 is 42."),
            Turn(
                tool_calls=[Call("python", {"code": "print(6 * 7)"})],
                reasoning="Re-compute it.",
            ),
            Turn(content="Recomputed: 42.\nVERDICT: holds"),
        ]
    )
    sid = await api.new_session(settings={"verify": True, "approve": "auto"})
    assert (await api.post("sessions", sid, "messages", body={"text": "6*7?"}))[0] == 202
    evs = await api.wait_for(sid, ended, timeout=60)
    types = [e["type"] for e in evs]
    assert types.count("verify.start") == 1 and types.count("verify.end") == 1
    end = next(e for e in evs if e["type"] == "verify.end")
    assert end["outcome"] == "verified" and end["checks"][0]["output"].strip() == "42"
    assert evs[-1]["answer"] == "6*7 is 42."  # the checked answer stands, not the check's text
    assert len(fake_model.requests) == 3


async def test_heavy_two_lanes_then_the_aggregate(api, fake_model):
    def lane(k: int) -> list[Turn]:
        return [
            Turn(tool_calls=[Call("python", {"code": f"print(40 + {k} * 0 + 2)"})]),
            Turn(content=f"42 (lane {k})"),
        ]

    def aggregation(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="The lanes agree: 42.")
        return None

    fake_model.respond_with(ConversationRouter([lane(1), lane(2)], aggregation))
    sid = await api.new_session(settings={"heavy": 2, "approve": "auto"})
    code, data = await api.post("sessions", sid, "messages", body={"text": "6*7?"})
    assert code == 202
    evs = await api.wait_for(
        sid,
        lambda es: any(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in es),
        timeout=90,
    )
    ends = {e["lane"]: e for e in evs if e["type"] == "run.end"}
    assert set(ends) == {"1", "2", "aggregate"}
    assert all(e["stop_reason"] == "completed" for e in ends.values())
    assert ends["aggregate"]["answer"] == "The lanes agree: 42."
    starts = {e["run_id"] for e in evs if e["type"] == "run.start"}
    rid = data["run_id"]
    assert starts == {f"{rid}.1", f"{rid}.2", f"{rid}.aggregate"}
    outputs = [e["output"].strip() for e in evs if e["type"] == "tool.result"]
    assert outputs == ["42", "42"]  # each lane ran its code in a sandbox of its own
    for _ in range(200):  # the lanes' sandboxes shut down after the last event
        code, meta = await api.get("sessions", sid)
        if not meta["running"]:
            break
        await asyncio.sleep(0.05)
    assert meta["running"] is False


async def test_bad_run_settings_are_400_with_the_reason(api, tmp_path):
    code, data = await api.post("sessions", body={"settings": {"verify_rounds": 0}})
    assert code == 400 and "verify_rounds" in data["message"]
    code, data = await api.post("sessions", body={"settings": {"heavy": 9, "approve": "auto"}})
    assert code == 400 and "heavy" in data["message"]
    missing = str(tmp_path / "nope.csv")
    code, data = await api.post("sessions", body={"settings": {"data": [missing]}})
    assert code == 400 and "no such file or folder" in data["message"]
    code, data = await api.post("sessions", body={"settings": {"data": ["  "]}})
    assert code == 400 and "data" in data["message"]


async def test_data_paths_reach_the_sandbox_and_the_model(api, fake_model, tmp_path):
    table = tmp_path / "sales.csv"
    table.write_text("x\n1\n2\n")
    fake_model.script([Turn(content="I see the file.")])
    sid = await api.new_session(settings={"data": [str(table)]})
    code, meta = await api.get("sessions", sid)
    assert meta["settings"]["data"] == [str(table)]
    await api.post("sessions", sid, "messages", body={"text": "what data?"})
    await api.wait_for(sid, ended, timeout=60)
    system = fake_model.requests[0]["messages"][0]["content"]
    assert "sales.csv" in system  # the model is told where the data is


async def test_heavy_lanes_each_see_the_data_paths(api, fake_model, tmp_path):
    table = tmp_path / "sales.csv"
    table.write_text("x\n1\n2\n")

    # the code reads the path the lane's system prompt names: /data/sales.csv under bwrap
    # (the only way in), the real path at the process level
    reads = (
        "import os\n"
        f"p = '/data/sales.csv' if os.path.exists('/data/sales.csv') else {str(table)!r}\n"
        "print(','.join(open(p).read().split()))"
    )

    def lane(k: int) -> list[Turn]:
        return [
            Turn(tool_calls=[Call("python", {"code": reads})]),
            Turn(content=f"3 lines (lane {k})"),
        ]

    def aggregation(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="Both lanes read 3 lines.")
        return None

    fake_model.respond_with(ConversationRouter([lane(1), lane(2)], aggregation))
    sid = await api.new_session(settings={"heavy": 2, "approve": "auto", "data": [str(table)]})
    await api.post("sessions", sid, "messages", body={"text": "how many lines?"})
    evs = await api.wait_for(
        sid,
        lambda es: any(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in es),
        timeout=90,
    )
    results = [e for e in evs if e["type"] == "tool.result"]
    assert sorted(e["lane"] for e in results) == ["1", "2"]
    assert [e["output"].strip() for e in results] == ["x,1,2", "x,1,2"]  # each lane's sandbox
    lane_systems = [
        r["messages"][0]["content"]
        for r in fake_model.requests
        if "<task>" not in str(r["messages"][-1].get("content", ""))
    ]
    assert len(lane_systems) >= 2 and all("sales.csv" in s for s in lane_systems)


async def test_heavy_lanes_in_the_panel_call_the_sessions_mcp_servers(api, fake_model):
    # before the driver ran panel sessions, heavy lanes had the python tool only
    def lane(k: int) -> list[Turn]:
        return [
            Turn(tool_calls=[Call("mcp__calc__pid", {})]),
            Turn(tool_calls=[Call("mcp__calc__whoami", {})]),
            Turn(content=f"asked the server (lane {k})"),
        ]

    def aggregation(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="One server answered both lanes.")
        return None

    fake_model.respond_with(ConversationRouter([lane(1), lane(2)], aggregation))
    sid = await api.new_session(settings={"heavy": 2, "approve": "auto"})
    await api.post("sessions", sid, "messages", body={"text": "which process?"})
    evs = await api.wait_for(
        sid,
        lambda es: any(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in es),
        timeout=90,
    )
    pids = [e for e in evs if e["type"] == "tool.result" and e["name"] == "mcp__calc__pid"]
    assert sorted(e["lane"] for e in pids) == ["1", "2"] and all(e["ok"] for e in pids)
    assert len({e["output"].strip() for e in pids}) == 1  # the session's one server process
    assert SECRET not in json.dumps(evs)  # each lane's scrubber has the server's env
    assert not any(SECRET in json.dumps(r["messages"]) for r in fake_model.requests)
    code, tools = await api.get("sessions", sid, "tools")
    calc = next(s for s in tools["servers"] if s["name"] == "calc")
    assert calc["in_session"] is True


async def test_a_heavy_follow_up_continues_from_the_aggregated_answer(api, fake_model):
    def reply(body: dict[str, Any], index: int) -> Turn:
        last = str(body["messages"][-1].get("content", ""))
        if "<task>" in last:
            return Turn(content="Aggregated: 42." if "6*7" in last else "Aggregated: 84.")
        return Turn(content="42" if last == "6*7?" else "84")

    fake_model.respond_with(reply)
    sid = await api.new_session(settings={"heavy": 2, "approve": "auto"})

    def aggregated(n: int):
        return lambda es: (
            sum(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in es) == n
        )

    await api.post("sessions", sid, "messages", body={"text": "6*7?"})
    await api.wait_for(sid, aggregated(1), timeout=90)
    for _ in range(200):
        if not (await api.get("sessions", sid))[1]["running"]:
            break
        await asyncio.sleep(0.05)
    first = len(fake_model.requests)
    await api.post("sessions", sid, "messages", body={"text": "and twice that?"})
    await api.wait_for(sid, aggregated(2), timeout=90)
    lanes = [
        r["messages"]
        for r in fake_model.requests[first:]
        if "<task>" not in str(r["messages"][-1].get("content", ""))
    ]
    assert len(lanes) == 2
    for msgs in lanes:  # each lane of the follow-up sees the first run as the previous turn
        turns = [(m["role"], m["content"]) for m in msgs if m["role"] != "system"]
        assert turns == [
            ("user", "6*7?"),
            ("assistant", "Aggregated: 42."),
            ("user", "and twice that?"),
        ]


async def test_mcp_servers_are_listed_and_their_tools_called(api, fake_model):
    sid = await api.new_session(settings={"approve": "auto"})
    code, tools = await api.get("sessions", sid, "tools")
    assert code == 200, tools
    assert tools["error"] is None and tools["config"].endswith("mcp.json")
    assert "python" in [t["name"] for t in tools["builtin"]]
    servers = {s["name"]: s for s in tools["servers"]}
    assert servers["calc"]["status"] == "started" and servers["calc"]["transport"] == "stdio"
    calc = {t["name"]: t["description"] for t in servers["calc"]["tools"]}
    assert "mcp__calc__add" in calc and "calc" in calc["mcp__calc__add"]
    assert servers["broken"]["status"] == "failed"
    assert "did not start" in servers["broken"]["error"]
    assert SECRET not in json.dumps(tools)
    assert servers["calc"]["in_session"] is False  # a probe: nothing runs for a session looked at

    fake_model.script(
        [
            Turn(tool_calls=[Call("mcp__calc__add", {"a": 40, "b": 2})]),
            Turn(tool_calls=[Call("mcp__calc__whoami", {})]),
            Turn(content="The sum is 42."),
        ]
    )
    await api.post("sessions", sid, "messages", body={"text": "add 40 and 2"})
    evs = await api.wait_for(sid, ended, timeout=60)
    results = [(e["name"], e["output"]) for e in evs if e["type"] == "tool.result"]
    assert results[0] == ("mcp__calc__add", "42")
    assert results[1][0] == "mcp__calc__whoami" and "[redacted]" in results[1][1]
    offered = {t["function"]["name"] for t in fake_model.requests[0]["tools"]}
    assert {"python", "mcp__calc__add"} <= offered
    assert any("'broken' did not start" in e.get("message", "") for e in evs)
    assert SECRET not in json.dumps(evs) + json.dumps(fake_model.requests)
    code, tools = await api.get("sessions", sid, "tools")
    calc = next(s for s in tools["servers"] if s["name"] == "calc")
    assert calc["in_session"] is True and calc["status"] == "started"


async def test_mcp_tools_wait_for_approval_under_ask(api, fake_model):
    fake_model.script(
        [Turn(tool_calls=[Call("mcp__calc__add", {"a": 1, "b": 2})]), Turn(content="3")]
    )
    sid = await api.new_session(settings={"approve": "ask"})
    sock = await api.socket(sid)
    await api.post("sessions", sid, "messages", body={"text": "1+2"})
    proposed = (await sock.until_event("tool.proposed", timeout=60))["event"]
    assert proposed["name"] == "mcp__calc__add"
    code, _ = await api.post(
        "sessions", sid, "decisions",
        body={"call_id": proposed["call_id"], "run_id": proposed["run_id"], "decision": "approve"},
    )  # fmt: skip
    assert code == 200
    end = (await sock.until_event("run.end", timeout=60))["event"]
    assert end["answer"] == "3"


async def test_heavy_under_ask_gives_each_lane_its_own_cards(api, fake_model):
    """Both lanes propose a call with the same id: two cards, keyed by (lane run id, call id),
    decided apart (lane 1 approved, lane 2 rejected), then the aggregation."""

    def lane(k: int) -> list[Turn]:
        return [
            Turn(tool_calls=[Call("python", {"code": f"print({k} * 21)"}, id="same")]),
            Turn(content=f"answer of lane {k}"),
        ]

    def aggregation(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="aggregated")
        return None

    fake_model.respond_with(ConversationRouter([lane(1), lane(2)], aggregation))
    sid = await api.new_session(settings={"heavy": 2, "approve": "ask"})
    code, data = await api.post("sessions", sid, "messages", body={"text": "go"})
    rid = data["run_id"]
    evs = await api.wait_for(
        sid, lambda es: sum(e["type"] == "tool.proposed" for e in es) == 2, timeout=90
    )
    proposed = {e["run_id"]: e for e in evs if e["type"] == "tool.proposed"}
    assert set(proposed) == {f"{rid}.1", f"{rid}.2"}
    code, meta = await api.get("sessions", sid)
    cid = proposed[f"{rid}.1"]["call_id"]
    assert proposed[f"{rid}.2"]["call_id"] == cid  # the same id in both lanes
    assert meta["pending"] == [cid, cid]
    code, data = await api.post(
        "sessions", sid, "decisions", body={"call_id": cid, "decision": "approve"}
    )
    assert code == 409 and "name its run_id" in data["message"]  # which lane's card?
    approve = {"call_id": cid, "run_id": f"{rid}.1", "decision": "approve"}
    assert (await api.post("sessions", sid, "decisions", body=approve))[0] == 200
    code, again = await api.post("sessions", sid, "decisions", body=approve)
    assert code == 409, again  # lane 1's card is decided; lane 2's still waits
    reject = {"call_id": cid, "run_id": f"{rid}.2", "decision": "reject", "feedback": "no"}
    assert (await api.post("sessions", sid, "decisions", body=reject))[0] == 200
    evs = await api.wait_for(
        sid,
        lambda es: any(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in es),
        timeout=90,
    )
    results = {e["run_id"]: e for e in evs if e["type"] == "tool.result"}
    # the router hands scripts out in the order lanes ask: lane 1 ran whichever code it proposed
    expected = "21" if "1 * 21" in proposed[f"{rid}.1"]["arguments"] else "42"
    assert results[f"{rid}.1"]["output"].strip() == expected
    decisions = {e["run_id"]: e["decision"] for e in evs if e["type"] == "tool.decision"}
    assert decisions == {f"{rid}.1": "approve", f"{rid}.2": "reject"}
    assert evs[-1]["answer"] == "aggregated"


async def test_stop_ends_every_heavy_lane(api, fake_model):
    def lane(k: int) -> list[Turn]:
        return [Turn(tool_calls=[Call("python", {"code": "print(1)"})]), Turn(content="x")]

    fake_model.respond_with(ConversationRouter([lane(1), lane(2)], lambda body: None))
    sid = await api.new_session(settings={"heavy": 2, "approve": "ask"})
    await api.post("sessions", sid, "messages", body={"text": "go"})
    await api.wait_for(
        sid, lambda es: sum(e["type"] == "tool.proposed" for e in es) == 2, timeout=90
    )
    code, data = await api.post("sessions", sid, "stop")
    assert code == 200 and data["stopped"] is True
    evs = await api.wait_for(
        sid, lambda es: sum(e["type"] == "run.end" for e in es) == 2, timeout=60
    )
    ends = [e for e in evs if e["type"] == "run.end"]
    assert {e["lane"] for e in ends} == {"1", "2"} and all(
        e["stop_reason"] == "stopped" for e in ends
    )
    assert not any(e.get("lane") == "aggregate" for e in evs)  # none starts after a stop


async def test_the_sessions_mcp_servers_stop_with_it(api, fake_model):
    fake_model.script([Turn(tool_calls=[Call("mcp__calc__pid", {})]), Turn(content="done")])
    sid = await api.new_session(settings={"approve": "auto"})
    await api.post("sessions", sid, "messages", body={"text": "pid?"})
    evs = await api.wait_for(sid, ended, timeout=60)
    pid = int(next(e["output"] for e in evs if e["type"] == "tool.result"))
    os.kill(pid, 0)  # alive while the session is
    code, _ = await api.call("DELETE", "sessions", sid)
    assert code == 204
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the MCP server {pid} outlived its session")


async def test_a_message_can_turn_heavy_and_verify_on_for_its_run_only(api, fake_model):
    def reply(body: dict[str, Any], index: int) -> Turn:
        last = str(body["messages"][-1].get("content", ""))
        if "<task>" in last:
            return Turn(content="Aggregated: 42.")
        return Turn(content="42")

    fake_model.respond_with(reply)
    sid = await api.new_session(settings={"approve": "auto"})
    code, data = await api.post(
        "sessions", sid, "messages", body={"text": "6*7?", "options": {"heavy": 2}}
    )
    assert code == 202, data
    evs = await api.wait_for(
        sid,
        lambda es: any(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in es),
        timeout=90,
    )
    assert {e["lane"] for e in evs if e["type"] == "run.end"} == {"1", "2", "aggregate"}
    for _ in range(200):
        code, meta = await api.get("sessions", sid)
        if not meta["running"]:
            break
        await asyncio.sleep(0.05)
    assert "heavy" not in meta["settings"]  # the session's own settings stay
    n = len(evs)
    await api.post("sessions", sid, "messages", body={"text": "again?"})
    evs = await api.wait_for(
        sid, lambda es: len(es) > n and es[-1]["type"] == "run.end", timeout=60
    )
    assert not any(e.get("lane") for e in evs[n:])  # the next message: one agent again
    code, data = await api.post(
        "sessions", sid, "messages", body={"text": "x", "options": {"heavy": 9}}
    )
    assert code == 400 and "heavy" in data["message"]
    code, data = await api.post(
        "sessions", sid, "messages", body={"text": "x", "options": {"data": ["a.csv"]}}
    )
    assert code == 400 and "data" in data["message"]


async def test_stop_one_heavy_lane_the_other_goes_on_to_the_aggregation(api, fake_model):
    def lane(k: int) -> list[Turn]:
        return [
            Turn(tool_calls=[Call("python", {"code": f"print({k} * 21)"})]),
            Turn(content=f"answer of lane {k}"),
        ]

    agg_prompts: list[str] = []

    def aggregation(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            agg_prompts.append(str(msgs[-1]["content"]))
            return Turn(content="aggregated from the lane that finished")
        return None

    fake_model.respond_with(ConversationRouter([lane(1), lane(2)], aggregation))
    sid = await api.new_session(settings={"heavy": 2, "approve": "ask"})
    assert (await api.post("sessions", sid, "messages", body={"text": "go"}))[0] == 202
    await api.wait_for(
        sid, lambda es: sum(e["type"] == "tool.proposed" for e in es) == 2, timeout=90
    )
    # bad requests: an unknown lane, a lane that is not a string, unknown fields
    code, bad = await api.post("sessions", sid, "stop", body={"lane": "9"})
    assert code == 404 and "no lane '9'" in bad["message"] and "lanes: 1, 2" in bad["message"]
    assert (await api.post("sessions", sid, "stop", body={"lane": 1}))[0] == 400
    assert (await api.post("sessions", sid, "stop", body={"lanes": "1"}))[0] == 400
    code, data = await api.post("sessions", sid, "stop", body={"lane": "1"})
    assert code == 200 and data == {"stopped": True, "lane": "1"}
    evs = await api.wait_for(
        sid, lambda es: any(e["type"] == "run.end" and e.get("lane") == "1" for e in es), 60
    )
    end1 = next(e for e in evs if e["type"] == "run.end" and e.get("lane") == "1")
    assert end1["stop_reason"] == "stopped"
    code, again = await api.post("sessions", sid, "stop", body={"lane": "1"})
    assert code == 200 and again["stopped"] is False  # it had already ended
    # lane 2 still waits for its card: approve it, it answers, the aggregation follows
    code, meta = await api.get("sessions", sid)
    assert meta["running"] is True and len(meta["pending"]) == 1
    assert (await api.post("sessions", sid, "approve-all"))[0] == 200
    evs = await api.wait_for(
        sid,
        lambda es: any(e["type"] == "run.end" and e.get("lane") == "aggregate" for e in es),
        timeout=90,
    )
    ends = {e["lane"]: e["stop_reason"] for e in evs if e["type"] == "run.end"}
    assert ends == {"1": "stopped", "2": "completed", "aggregate": "completed"}
    assert len(agg_prompts) == 1 and "- lane 1: it was stopped" in agg_prompts[0]
    assert evs[-1]["answer"] == "aggregated from the lane that finished"


async def test_stopping_a_lane_of_a_run_that_is_not_heavy_is_409(api, fake_model):
    fake_model.script([Turn(tool_calls=[Call("python", {"code": "print(1)"})]), Turn(content="x")])
    sid = await api.new_session(settings={"approve": "ask"})
    await api.post("sessions", sid, "messages", body={"text": "go"})
    await api.wait_for(sid, lambda es: any(e["type"] == "tool.proposed" for e in es), 60)
    code, data = await api.post("sessions", sid, "stop", body={"lane": "1"})
    assert code == 409 and "not a heavy run" in data["message"]
    code, data = await api.post("sessions", sid, "stop", body={})
    assert code == 200 and data == {"stopped": True}
    await api.wait_for(sid, ended, timeout=60)
    code, data = await api.post("sessions", sid, "stop", body={"lane": "1"})
    assert code == 200 and data == {"stopped": False, "lane": "1"}  # nothing runs
