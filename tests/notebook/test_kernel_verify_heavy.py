"""``%k2 --verify`` and ``%k2 --heavy N`` in a real kernel, against the fake model server over
HTTP, with real sandbox kernels (one per lane): the notebook face on the one run driver."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.fake_server import Call, ConversationRouter, FakeModel, Turn
from tests.notebook.kernel import Kernel

pytestmark = pytest.mark.timeout(240)


def start(kernel: Kernel, fake: FakeModel, opts: str, prompt: str = "What is 6 * 7?") -> int:
    res = kernel.run(f"%k2 --new --base-url {fake.base_url} {opts} {prompt}")
    assert res["error"] is None, res["error"]
    return int(kernel.value("len(_k2s().runs)")) - 1


def ended(kernel: Kernel, i: int) -> list[dict[str, Any]]:
    kernel.wait_for(f"_k2s().runs[{i}].final is not None", 120)
    return kernel.events(i)


def _run_id(kernel: Kernel, i: int) -> str:
    return str(kernel.value(f"_k2s().runs[{i}].run_id"))


def magic(kernel: Kernel, line: str) -> str:
    """Run ``%k2 LINE``; its stdout, with 'USAGE: ...' for a UsageError (IPython only prints
    those; caught here to read)."""
    res = kernel.run(
        "from IPython.core.error import UsageError\n"
        f"try:\n    get_ipython().run_line_magic('k2', {line!r})\n"
        "except UsageError as e:\n    print('USAGE:', e)"
    )
    assert res["error"] is None, res["error"]
    return str(res["stdout"])


def usage_error(kernel: Kernel, fake: FakeModel, opts: str) -> str:
    count = "len(_k2s().runs) if _k2s() is not None else 0"  # no session before a first run
    before = int(kernel.value(count))
    said = magic(kernel, f"--new --base-url {fake.base_url} {opts} What is 6 * 7?")
    assert "USAGE:" in said, said
    assert int(kernel.value(count)) == before  # no run was started
    return said


def test_verify_checks_the_answer_in_the_same_run(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(reasoning="compute", tool_calls=[Call("python", {"code": "print(6 * 7)"})]),
            Turn(content="The answer is 42."),
            Turn(reasoning="check", tool_calls=[Call("python", {"code": "print(42 // 7)"})]),
            Turn(content="Recomputed another way: 42 / 7 = 6.\nVERDICT: holds"),
        ]
    )
    i = start(kernel, fake_model, "--approve auto --verify")
    events = ended(kernel, i)
    types = [e["type"] for e in events]
    assert types.count("verify.start") == 1 and types.count("verify.end") == 1
    check = next(e for e in events if e["type"] == "verify.end")
    assert check["outcome"] == "verified"
    end = events[-1]
    assert end["type"] == "run.end" and end["answer"] == "The answer is 42."
    # the check ran as a follow-up of the same conversation: it asked the model to verify
    assert len(fake_model.requests) == 4
    last_user = [m for m in fake_model.requests[2]["messages"] if m["role"] == "user"][-1]
    assert "verif" in str(last_user["content"]).lower()
    # the saved trace in the cell holds the verify pass
    assert kernel.value(f"_k2s().runs[{i}].final is not None")


def test_heavy_lanes_and_aggregation_in_the_notebook(kernel: Kernel, fake_model: FakeModel) -> None:
    def aside(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="Aggregated: 42 (lanes 1 and 2 agree).")
        return None

    scripts = [
        [
            Turn(reasoning=f"lane {k}", tool_calls=[Call("python", {"code": f"print({k} * 21)"})]),
            Turn(content=f"42 from lane {k}"),
        ]
        for k in (1, 2)
    ]
    fake_model.respond_with(ConversationRouter(scripts, aside=aside))
    i = start(kernel, fake_model, "--approve auto --heavy 2 --heavy-concurrency 2")
    events = ended(kernel, i)
    lanes = {e.get("lane") for e in events}
    assert lanes == {"1", "2", "aggregate"}
    ends = {e["lane"]: e for e in events if e["type"] == "run.end"}
    assert ends["1"]["stop_reason"] == ends["2"]["stop_reason"] == "completed"
    assert ends["aggregate"]["answer"] == "Aggregated: 42 (lanes 1 and 2 agree)."
    # each lane ran its code in its own sandbox
    outs = sorted(e["output"].strip() for e in events if e["type"] == "tool.result")
    assert outs == ["21", "42"]
    # lanes' run ids are the heavy run's, and the saved trace in the cell holds every lane
    starts = {e["lane"]: e["run_id"] for e in events if e["type"] == "run.start"}
    assert starts == {k: f"{_run_id(kernel, i)}.{k}" for k in ("1", "2", "aggregate")}
    bundle = kernel.value(f"_k2s().runs[{i}].final")
    assert "Aggregated: 42" in str(bundle)

    # replay and export work per lane: each lane's calls in a sandbox of their own
    run_id = _run_id(kernel, i)
    kernel.run(f"%k2 replay {run_id}")
    kernel.run("import k2lab\nawait k2lab.wait()")
    table = kernel.value("_k2s().outputs[-1][1]['text/plain']")
    assert f"replayed run {run_id}: 2 calls, 0 changed outputs" in table, table
    assert "functions.python:0 (lane 1): same" in table and "(lane 2): same" in table
    said = magic(kernel, f"export {run_id} --lane 2 --cell")
    assert "USAGE" not in said
    for sub in ("export", "replay"):  # an unknown lane: the lanes there are, and nothing runs
        said = magic(kernel, f"{sub} {run_id} --lane 9")
        assert "USAGE: no lane '9' in this run (lanes: 1, 2, aggregate)" in said, said


def test_heavy_and_verify_usage_errors(kernel: Kernel, fake_model: FakeModel) -> None:
    assert "--verify-rounds needs --verify" in usage_error(
        kernel, fake_model, "--approve auto --verify-rounds 2"
    )
    assert "at least 1" in usage_error(kernel, fake_model, "--approve auto --heavy 0")
    assert "--heavy-concurrency needs --heavy" in usage_error(
        kernel, fake_model, "--approve auto --heavy-concurrency 2"
    )
    assert "--in-kernel" in usage_error(kernel, fake_model, "--approve auto --heavy 2 --in-kernel")
    # the help names the options
    res = kernel.run("%k2 --help")
    assert "--verify" in res["stdout"] and "--heavy N" in res["stdout"]


def test_stop_lane_stops_one_lane_and_the_aggregation_names_it(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    """The widget's "Stop lane" (RunRecord.stop_lane): one lane is slow (the fake server waits
    20 s before its first answer); once the other lane ended, stopping the slow one ends it as
    "stopped" and the aggregation runs on, told which lane was stopped."""

    def aside(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="Aggregated from the lane that finished: 42.")
        return None

    scripts = [
        [Turn(content="42 quickly")],
        [Turn(content="42 slowly", latency=20)],
    ]
    fake_model.respond_with(ConversationRouter(scripts, aside=aside))
    i = start(kernel, fake_model, "--approve auto --heavy 2 --heavy-concurrency 2")
    kernel.wait_for(
        f"any(e['type'] == 'run.end' and e.get('lane') in ('1', '2') "
        f"for e in _k2s().runs[{i}].events)",
        60,
    )
    done = next(e["lane"] for e in kernel.events(i) if e["type"] == "run.end")
    slow = "2" if done == "1" else "1"
    assert kernel.value(f"_k2s().runs[{i}].widget.snapshot()['head']['can_stop_lane']")
    kernel.click(i, {"action": "stop_lane", "lane": slow})
    events = ended(kernel, i)
    ends = {e["lane"]: e for e in events if e["type"] == "run.end"}
    assert ends[done]["stop_reason"] == "completed"
    assert ends[slow]["stop_reason"] == "stopped"
    assert ends["aggregate"]["answer"] == "Aggregated from the lane that finished: 42."
    # the aggregation was told the slow lane was stopped
    task = [r for r in fake_model.requests if "<task>" in str(r["messages"][-1].get("content", ""))]
    assert len(task) == 1
    told = str(task[0]["messages"][-1]["content"])
    assert f"lane {slow}" in told.lower() and "stopped" in told.lower(), told
    assert not kernel.value(f"_k2s().runs[{i}].widget.errors")


def test_stop_lane_without_lanes_is_an_explained_error(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    fake_model.script([Turn(content="42")])
    i = start(kernel, fake_model, "--approve auto")
    ended(kernel, i)
    kernel.click(i, {"action": "stop_lane", "lane": "1"})
    errors = kernel.wait_for(f"_k2s().runs[{i}].widget.errors", 10)
    assert "not a --heavy run" in str(errors)


def test_heavy_under_ask_each_lanes_call_gets_its_own_decision(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    """``%k2 --heavy 2 --approve ask``: both lanes propose a call with the same id; each waits
    for its own button, decided by (lane run id, call id): one lane's is approved (it runs),
    the other's rejected (it does not), and each lane gets its own decision."""

    def aside(body: dict[str, Any]) -> Turn | None:
        msgs = body.get("messages", [])
        if msgs and "<task>" in str(msgs[-1].get("content", "")):
            return Turn(content="Aggregated: 42.")
        return None

    scripts = [
        [
            Turn(tool_calls=[Call("python", {"code": f"print({k} * 21)"})]),
            Turn(content=f"lane answer {k}"),
        ]
        for k in (1, 2)
    ]
    fake_model.respond_with(ConversationRouter(scripts, aside=aside))
    i = start(kernel, fake_model, "--approve ask --heavy 2 --heavy-concurrency 2")
    kernel.wait_for(f"len(_k2s().runs[{i}].decisions.pending) == 2", 60)
    assert kernel.value(f"_k2s().runs[{i}].waits_for_person()")
    proposed = [e for e in kernel.events(i) if e["type"] == "tool.proposed"]
    assert sorted(e["lane"] for e in proposed) == ["1", "2"]
    ids = {e["call_id"] for e in proposed}
    assert len(ids) == 1  # the same id in both lanes
    cid = ids.pop()
    yes, no = proposed
    kernel.click(i, {"action": "approve", "call_id": cid, "run_id": yes["run_id"]})
    kernel.click(i, {"action": "reject", "call_id": cid, "run_id": no["run_id"]})
    events = ended(kernel, i)
    assert not kernel.value(f"_k2s().runs[{i}].widget.errors")
    decided = {e["lane"]: e["decision"] for e in events if e["type"] == "tool.decision"}
    assert decided == {yes["lane"]: "approve", no["lane"]: "reject"}
    ran = [e for e in events if e["type"] == "tool.result" and e.get("ok")]
    assert [e["lane"] for e in ran] == [yes["lane"]]
    want = "21" if "print(1 * 21)" in str(yes["arguments"]) else "42"  # the approved lane's code
    assert ran[0]["output"].strip() == want
    ends = {e["lane"]: e for e in events if e["type"] == "run.end"}
    assert ends["aggregate"]["answer"] == "Aggregated: 42."
