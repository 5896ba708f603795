"""End to end in a real kernel: %k2 against the fake model server, steered by widget messages.

One ipykernel for the module (``%load_ext k2lab`` once); each test scripts the fake model and
points ``%k2`` at it with ``--base-url``. Buttons are comm messages on a subshell, as JupyterLab
4.6 sends them; everything is checked from the run's recorded events and the model's requests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from k2lab.trace.notebook import MIMETYPE, coalesce_events
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import FAKE_KEY, Kernel

pytestmark = pytest.mark.timeout(180)


def ask(kernel: Kernel, fake: FakeModel, prompt: str, opts: str = "--approve ask") -> int:
    """Start a run in a new conversation; returns its index in the session's runs."""
    res = kernel.run(f"%k2 --new --base-url {fake.base_url} {opts} {prompt}")
    assert res["error"] is None, res["error"]
    # the cell returned at once with the live view and the (empty) fork slot
    assert [o["type"] for o in res["outputs"]] == ["display_data", "display_data"]
    assert "application/vnd.jupyter.widget-view+json" in res["outputs"][0]["data"]
    return int(kernel.value("len(_k2s().runs)")) - 1


def code(src: str) -> dict[str, str]:
    return {"code": src}


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def test_approve_edit_and_reject_with_feedback(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(reasoning="First I print one.", tool_calls=[Call("python", code("print(1)"))]),
            Turn(reasoning="Now two.", tool_calls=[Call("python", code("print(2)"))]),
            Turn(reasoning="Now three.", tool_calls=[Call("python", code("print(3)"))]),
            Turn(content="All **done**."),
        ]
    )
    i = ask(kernel, fake_model, "count to three")
    kernel.wait_pending(i, "functions.python:0")
    kernel.click(i, {"action": "approve", "call_id": "functions.python:0"})
    kernel.wait_pending(i, "functions.python:1")
    kernel.click(i, {"action": "edit", "call_id": "functions.python:1", "code": "print(22)"})
    kernel.wait_pending(i, "functions.python:2")
    kernel.click(
        i, {"action": "reject", "call_id": "functions.python:2", "feedback": "no more printing"}
    )
    end = kernel.wait_ended(i)
    assert end["stop_reason"] == "completed" and end["answer"] == "All **done**."

    events = kernel.events(i)
    decisions = {e["call_id"]: e for e in events if e["type"] == "tool.decision"}
    assert decisions["functions.python:0"]["decision"] == "approve"
    assert decisions["functions.python:1"]["decision"] == "edit"
    assert json.loads(decisions["functions.python:1"]["arguments"]) == {"code": "print(22)"}
    assert decisions["functions.python:2"]["decision"] == "reject"
    assert all(d["by"] == "user" for d in decisions.values())
    results = {e["call_id"]: e for e in events if e["type"] == "tool.result"}
    assert results["functions.python:0"]["output"].strip() == "1"
    assert "22" in results["functions.python:1"]["output"]

    # what the model was told: the edit, and the rejection with the person's feedback
    last = tool_messages(fake_model.requests[3])
    assert "print(22)" in last[1] and "22" in last[1]
    assert "rejected" in last[2] and "no more printing" in last[2]

    # the view's state followed, and the final output is the saved trace bundle
    cards = kernel.value("_k2s().runs[-1].widget.state.cards")
    assert cards["functions.python:1"]["edited_code"] == "print(22)"
    assert cards["functions.python:2"]["status"] == "rejected"
    final = kernel.value("_k2s().runs[-1].final")
    assert final[MIMETYPE]["version"] == 1
    assert final[MIMETYPE]["events"] == coalesce_events(events)  # all but streamed fragments
    assert {"text/html", "text/markdown", "text/plain"} <= set(final)
    assert FAKE_KEY not in json.dumps(final)

    # Replay, from the view: the first call again in the sandbox, same output
    kernel.click(i, {"action": "replay", "call_id": "functions.python:0"})
    replay = kernel.wait_for(
        "(_k2s().runs[-1].widget.state.cards['functions.python:0']['replay'] or {}).get('code')"
        " and _k2s().runs[-1].widget.state.cards['functions.python:0']['replay']"
    )
    assert replay["changed"] is False and replay["new_output"].strip() == "1"


def test_stop_keeps_trace_and_next_run_works(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(reasoning="Let me run something.", tool_calls=[Call("python", code("1+1"))]),
            Turn(content="Fine, continuing after the stop."),
        ]
    )
    i = ask(kernel, fake_model, "do something")
    kernel.wait_pending(i, "functions.python:0")
    kernel.click(i, {"action": "stop"})
    end = kernel.wait_ended(i)
    assert end["stop_reason"] == "stopped"
    assert kernel.value("_k2s().runs[-1].widget.state.cards['functions.python:0']['status']") == (
        "not_run"
    )
    # a follow-up in the same conversation: the stopped call was answered in the history
    res = kernel.run(f"%k2 --base-url {fake_model.base_url} --approve ask and now?")
    assert res["error"] is None
    end2 = kernel.wait_ended(i + 1)
    assert end2["stop_reason"] == "completed"
    assert "not run" in tool_messages(fake_model.requests[1])[0]


def test_decision_errors_are_shown_not_raised(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script([Turn(tool_calls=[Call("python", code("print('x')"))]), Turn(content="ok")])
    i = ask(kernel, fake_model, "one call")
    kernel.wait_pending(i, "functions.python:0")
    kernel.click(i, {"action": "approve", "call_id": "no-such-call"})
    kernel.click(i, {"action": "approve", "call_id": "functions.python:0"})
    kernel.click(i, {"action": "approve", "call_id": "functions.python:0"})  # twice
    end = kernel.wait_ended(i)
    assert end["stop_reason"] == "completed"
    # the errors went back to the view as messages (recorded by the widget's test hook)
    errors = kernel.value("_k2s().runs[-1].widget.errors")
    assert any("no-such-call" in e for e in errors)
    assert any("already decided" in e for e in errors)


def test_approve_all(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", code("a = 1"))]),
            Turn(tool_calls=[Call("python", code("a += 1"))]),
            Turn(tool_calls=[Call("python", code("print(a)"))]),
            Turn(content="a is 2"),
        ]
    )
    i = ask(kernel, fake_model, "count")
    kernel.wait_pending(i, "functions.python:0")
    kernel.click(i, {"action": "approve_all"})
    end = kernel.wait_ended(i)
    assert end["stop_reason"] == "completed"
    by = [e["by"] for e in kernel.events(i) if e["type"] == "tool.decision"]
    assert by == ["user", "policy", "policy"]


def test_fork_from_a_call_with_edited_code(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(reasoning="Set x.", tool_calls=[Call("python", code("x = 2\nprint(x * 10)"))]),
            Turn(content="x*10 is 20."),
            # the branch: the model continues after the edited call
            Turn(content="In this branch x*10 is 70."),
        ]
    )
    i = ask(kernel, fake_model, "what is x*10?", "--approve auto")
    kernel.wait_ended(i)
    kernel.click(
        i, {"action": "fork", "call_id": "functions.python:0", "code": "x = 7\nprint(x * 10)"}
    )
    kernel.wait_for(f"len(_k2s().runs) == {i + 2}")
    end = kernel.wait_ended(i + 1)
    assert end["stop_reason"] == "completed" and "70" in end["answer"]
    events = kernel.events(i + 1)
    start = events[0]
    parent_id = kernel.value(f"_k2s().runs[{i}].run_id")
    assert start["parent_run_id"] == parent_id
    assert start["forked_from_call"] == "functions.python:0"
    decision = next(e for e in events if e["type"] == "tool.decision")
    assert decision["decision"] == "edit" and decision["by"] == "user"
    result = next(e for e in events if e["type"] == "tool.result")
    assert "70" in result["output"]
    # the branch asked the model once (the forked step itself was replayed from the record)
    assert len(fake_model.requests) == 3
    branch = fake_model.requests[2]["messages"]
    assert [m["role"] for m in branch[1:]] == ["user", "assistant", "tool"]
    assert branch[1]["content"] == "what is x*10?"
    assert "70" in branch[3]["content"]
    # the branch showed in the parent cell's slot: the parent's trace stays, saved, above
    assert kernel.value(f"_k2s().runs[{i}].fork_slot_used")
    assert kernel.value(f"_k2s().runs[{i + 1}].final is not None")


def test_in_kernel_uses_live_variables_and_hides_the_key(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    kernel.run("sales = [3, 4, 5]")
    fake_model.script(
        [
            Turn(
                tool_calls=[
                    Call("python", code("total = sum(sales)\nprint(total)")),
                    Call("python", code("import os\nprint(os.environ['K2LAB_API_KEY'])")),
                ]
            ),
            Turn(content="The total is 12."),
        ]
    )
    i = ask(kernel, fake_model, "sum my sales", "--in-kernel")
    # --in-kernel without --approve: every call waits for a person
    kernel.wait_pending(i, "functions.python:0")
    assert kernel.value(f"_k2s().runs[{i}].widget.state.head['isolation']") == "in-kernel"
    kernel.click(i, {"action": "approve", "call_id": "functions.python:0"})
    kernel.wait_pending(i, "functions.python:1")
    kernel.click(i, {"action": "approve", "call_id": "functions.python:1"})
    kernel.wait_ended(i)
    # the code ran in this kernel: it saw `sales` and left `total` behind
    assert kernel.value("total") == 12
    outputs = [e["output"] for e in kernel.events(i) if e["type"] == "tool.result"]
    assert outputs[0].strip() == "12"
    assert FAKE_KEY not in json.dumps(kernel.events(i)) and "[redacted]" in outputs[1]
    assert FAKE_KEY not in json.dumps(fake_model.requests)
    assert "Sandbox off" in kernel.value(f"_k2s().runs[{i}].final['text/html']")


def test_export_replay_resume_and_fork_magics(
    kernel: Kernel, fake_model: FakeModel, tmp_path: Any
) -> None:
    import nbformat

    fake_model.script(
        [
            Turn(reasoning="Set y.", tool_calls=[Call("python", code("y = 5\nprint(y)"))]),
            Turn(content="y is 5."),
            Turn(content="Resumed: y was 5."),  # the --resume run
            Turn(content="In the branch y is 6."),  # the %%k2 fork run
        ]
    )
    i = ask(kernel, fake_model, "set y", "--approve auto")
    kernel.wait_ended(i)
    run_id = kernel.value(f"_k2s().runs[{i}].run_id")

    # export: the calls that ran become the cells of a new notebook
    out = tmp_path / "export.ipynb"
    res = kernel.run(f"%k2 export {run_id} --out {out}")
    assert res["error"] is None and "1 code cell)" in res["stdout"]
    exported = nbformat.read(out, as_version=4)
    assert [c.source for c in exported.cells if c.cell_type == "code"] == ["y = 5\nprint(y)"]

    # replay: the run's calls again, in a fresh sandbox; the table says nothing changed
    kernel.run(f"%k2 replay {run_id}")
    kernel.run("import k2lab\nawait k2lab.wait()")
    table = kernel.value("_k2s().outputs[-1][1]['text/plain']")
    assert f"replayed run {run_id}: 1 call, 0 changed outputs" in table

    # --resume: a saved notebook's conversation continues (here a file holding the saved trace)
    saved = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("%%k2\nset y")
    final = kernel.value(f"_k2s().runs[{i}].final")
    cell.outputs = [nbformat.v4.new_output("display_data", data=final)]
    saved.cells = [cell]
    path = tmp_path / "saved.ipynb"
    nbformat.write(saved, path)
    res = kernel.run(
        f"%k2 --new --resume --file {path} --base-url {fake_model.base_url} and y was?"
    )
    assert res["error"] is None
    end = kernel.wait_ended(i + 1)
    assert end["answer"] == "Resumed: y was 5."
    roles = [(m["role"], m.get("content")) for m in fake_model.requests[2]["messages"][1:]]
    assert roles[0] == ("user", "set y") and roles[-1] == ("user", "and y was?")
    assert ("tool", "5\n") in roles or any(r == "tool" and "5" in c for r, c in roles)
    assert kernel.events(i + 1)[0]["parent_run_id"] == run_id

    # %%k2 fork RUN CALL: the cell body is the code the branch runs instead
    res = kernel.run(f"%%k2 fork {run_id} functions.python:0\ny = 6\nprint(y)\n")
    assert res["error"] is None
    end = kernel.wait_ended(i + 2)
    assert end["answer"] == "In the branch y is 6."
    branch = fake_model.requests[3]["messages"]
    assert branch[1] == {"role": "user", "content": "set y"}
    assert "6" in branch[-1]["content"] and branch[-1]["role"] == "tool"


def test_a_queued_run_can_stop_the_one_it_waits_for(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [Turn(tool_calls=[Call("python", code("print('A')"))]), Turn(content="B answered.")]
    )
    a = ask(kernel, fake_model, "run A")
    kernel.wait_pending(a, "functions.python:0")
    # the same cell run again (its view cleared): the new run queues behind the waiting one
    res = kernel.run(f"%k2 --base-url {fake_model.base_url} run B")
    assert res["error"] is None
    b = a + 1
    assert kernel.value(f"_k2s().runs[{b}].widget.state.head['status']") == "waiting"
    kernel.click(b, {"action": "stop_previous"})
    assert kernel.wait_ended(a)["stop_reason"] == "stopped"
    assert kernel.wait_ended(b)["answer"] == "B answered."
    res = kernel.run("%k2 stop")
    assert "no run is going" in res["stdout"]


def test_in_kernel_timeout_interrupts_the_call(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", code("import time\ntime.sleep(30)"))]),
            Turn(content="It took too long."),
        ]
    )
    i = ask(kernel, fake_model, "sleep", "--in-kernel --approve auto --tool-timeout 1")
    kernel.wait_ended(i, timeout=20)
    result = next(e for e in kernel.events(i) if e["type"] == "tool.result")
    assert not result["ok"] and "TimeoutError" in result["output"]
    assert result["duration"] < 5
    assert kernel.value("1 + 1") == 2  # the kernel is fine afterwards
