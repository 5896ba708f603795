"""Fork from a heavy lane's call in the notebook (``%%k2 fork RUN_ID.K CALL``, the widget's Fork
from here on a lane's card): a real kernel, the fake model over HTTP, real sandbox kernels."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.fake_server import Call, ConversationRouter, FakeModel, Turn
from tests.notebook.kernel import Kernel

pytestmark = pytest.mark.timeout(240)
CALL = "functions.python:0"


def aside(body: dict[str, Any]) -> Turn | None:
    """The aggregation, the branches (their edited call's output) and the follow-up."""
    msgs = body.get("messages", [])
    last = str(msgs[-1].get("content", "")) if msgs else ""
    if "<task>" in last:
        return Turn(content="Aggregated: 21 and 42.")
    for n in ("555", "777"):
        if msgs[-1].get("role") == "tool" and last.strip().endswith(n):
            return Turn(content=f"The branch got {n}.")
    return Turn(content="Still the branch.") if "and now?" in last else None


def test_a_lanes_call_forks_from_the_magic_and_the_lane_card(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    scripts = [
        [Turn(tool_calls=[Call("python", {"code": f"print({k} * 21)"})]), Turn(f"{k * 21}")]
        for k in (1, 2)
    ]
    fake_model.respond_with(ConversationRouter(scripts, aside=aside))
    res = kernel.run(f"%k2 --new --base-url {fake_model.base_url} --approve auto --heavy 2 6*7?")
    assert res["error"] is None, res["error"]
    kernel.wait_ended(0, 120)
    heavy = str(kernel.value("_k2s().runs[0].run_id"))
    events = kernel.events(0)
    code = {
        e["run_id"]: e["arguments"]
        for e in events
        if e["type"] == "tool.proposed" and e["run_id"] in (f"{heavy}.1", f"{heavy}.2")
    }

    # the heavy run's own id: which lane, then
    res = kernel.run(f"%%k2 fork {heavy} {CALL}\nprint(555)")
    assert f"{heavy}.1, {heavy}.2" in str(res), res
    res = kernel.run(f"%%k2 fork {heavy}.2 {CALL}\nprint(555)")
    assert res["error"] is None, res["error"]
    end = kernel.wait_ended(1, 120)
    assert end["answer"] == "The branch got 555."
    branch = kernel.events(1)
    assert (branch[0]["parent_run_id"], branch[0]["forked_from_call"]) == (f"{heavy}.2", CALL)
    assert not any(e.get("lane") for e in branch)  # a single run
    sent = fake_model.requests[-1]["messages"]
    assert sent[0]["role"] == "system"
    assert [m["content"] for m in sent if m["role"] == "user"] == ["6*7?"]  # lane 2's task
    assert code[f"{heavy}.2"] in str(sent) and code[f"{heavy}.1"] not in str(sent)

    # the widget's Fork from here on lane 1's card (the lane's run id says which call)
    click = {"action": "fork", "call_id": CALL, "run_id": f"{heavy}.1", "code": "print(777)"}
    kernel.click(0, click)
    kernel.wait_for("len(_k2s().runs) == 3")
    assert kernel.wait_ended(2, 120)["answer"] == "The branch got 777."
    assert kernel.events(2)[0]["parent_run_id"] == f"{heavy}.1"
    sent = fake_model.requests[-1]["messages"]
    assert code[f"{heavy}.1"] in str(sent) and code[f"{heavy}.2"] not in str(sent)

    # a follow-up continues the latest branch: lane 1's conversation, then the branch
    res = kernel.run(f"%k2 --base-url {fake_model.base_url} --approve auto and now?")
    assert res["error"] is None, res["error"]
    assert kernel.wait_ended(3, 120)["answer"] == "Still the branch."
    sent = fake_model.requests[-1]["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["6*7?", "and now?"]
    assert any(m.get("content") == "The branch got 777." for m in sent)
    assert not any(m.get("content") == "Aggregated: 21 and 42." for m in sent)
