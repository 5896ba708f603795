"""A run's trace is not lost when its page reloads or its view goes away (issue 8, item 15).

In a real kernel against the fake model server, with the kernel test harness as the frontend:

- every k2lab display names its display id in its output metadata (saved in the ``.ipynb``), and
  the final ``update_display_data`` does too: what the labextension uses to replace a view that a
  reloaded page restored from the file (JupyterLab itself drops updates for ids it did not see);
- a view that opens (``hello``) after its run ended gets the final bundle published again;
- a run waiting for a decision whose views are all gone (nobody answers the ping) is stopped
  when the next run starts, with a notice that says why, and its trace goes into the new run's
  cell; a run whose view answers is left waiting.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

import nbformat
import pytest

from k2lab.trace.notebook import MIMETYPE, coalesce_events, runs_from_notebook, trace_bundle
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import FAKE_KEY, Kernel
from tests.notebook.test_state import run_events

pytestmark = pytest.mark.timeout(240)

WIDGET = "application/vnd.jupyter.widget-view+json"


def collect(
    kernel: Kernel, until: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> list[dict[str, Any]]:
    """IOPub messages from now until one satisfies ``until`` (whatever their parent)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = kernel.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            kinds = [m["msg_type"] for m in seen]
            raise TimeoutError(f"no such IOPub message in {timeout}s; saw {kinds}") from None
        seen.append(msg)
        if until(msg):
            return seen


def update_for(display_id: str) -> Callable[[dict[str, Any]], bool]:
    def match(msg: dict[str, Any]) -> bool:
        content = msg["content"]
        return bool(
            msg["msg_type"] == "update_display_data"
            and content.get("transient", {}).get("display_id") == display_id
            and MIMETYPE in content["data"]
        )

    return match


def ping_to(comm_id: str) -> Callable[[dict[str, Any]], bool]:
    def match(msg: dict[str, Any]) -> bool:
        c = msg["content"]
        return bool(
            msg["msg_type"] == "comm_msg"
            and c.get("comm_id") == comm_id
            and c.get("data", {}).get("content", {}).get("kind") == "ping"
        )

    return match


def start(kernel: Kernel, fake: FakeModel, prompt: str, opts: str) -> dict[str, Any]:
    res = kernel.run(f"%k2 --base-url {fake.base_url} {opts} {prompt}")
    assert res["error"] is None, res["error"]
    return res


def test_displays_name_their_id_and_the_final_update_does_too(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    fake_model.script(
        [Turn(tool_calls=[Call("python", {"code": "print(6*7)"})]), Turn(content="42")]
    )
    res = start(kernel, fake_model, "compute", "--new --approve auto")
    view, slot = res["outputs"]
    assert WIDGET in view["data"]
    did = view["transient"]["display_id"]
    assert view["metadata"]["k2lab"]["display_id"] == did
    run_id = view["metadata"]["k2lab"]["run_id"]
    assert slot["metadata"]["k2lab"]["display_id"] == slot["transient"]["display_id"] != did

    final = collect(kernel, update_for(did))[-1]["content"]
    assert final["metadata"]["k2lab"] == {"display_id": did, "run_id": run_id}
    assert final["data"][MIMETYPE]["run_id"] == run_id
    assert {"text/html", "text/markdown", "text/plain"} <= set(final["data"])


def test_a_view_that_opens_after_the_run_ended_gets_the_trace_again(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    fake_model.script([Turn(content="done quickly")])
    res = start(kernel, fake_model, "be quick", "--new --approve auto")
    did = res["outputs"][0]["transient"]["display_id"]
    i = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_ended(i)
    # the page was away when the run ended; a reloaded page's view says hello
    kernel.click(i, {"action": "hello"})
    final = collect(kernel, update_for(did))[-1]["content"]
    events = final["data"][MIMETYPE]["events"]
    assert events[-1]["type"] == "run.end" and events[-1]["answer"] == "done quickly"


def test_a_run_nobody_can_see_is_stopped_by_the_next_and_its_trace_kept(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    fake_model.script(
        [Turn(tool_calls=[Call("python", {"code": "print('A')"})]), Turn(content="B answered.")]
    )
    start(kernel, fake_model, "run A", "--new --approve ask")
    a = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_pending(a, "functions.python:0")
    a_id = kernel.value(f"_k2s().runs[{a}].run_id")
    kernel.run("_k2s().view_timeout = 2")
    # the page reloaded before saving: A's cell is gone, no view answers; B starts
    res = start(kernel, fake_model, "run B", "--approve ask")
    slot, view_b, _fork_slot = res["outputs"]
    assert WIDGET in view_b["data"] and WIDGET not in slot["data"]
    assert kernel.wait_ended(a)["stop_reason"] == "stopped"
    notice = [e for e in kernel.events(a) if e["type"] == "notice" and e["kind"] == "stopped"]
    assert len(notice) == 1 and "no view of it was open" in notice[0]["message"]
    assert kernel.wait_ended(a + 1)["answer"] == "B answered."

    # A's trace is in B's cell, in the slot before B's view
    again = kernel.run(f"_k2s().runs[{a}].publish_final()")  # as wait() does, from this cell
    slot_id = slot["transient"]["display_id"]
    (got,) = [o for o in again["outputs"] if o.get("transient", {}).get("display_id") == slot_id]
    assert got["data"][MIMETYPE]["run_id"] == a_id
    assert got["metadata"]["k2lab"]["display_id"] == slot_id
    assert any(e["type"] == "notice" for e in got["data"][MIMETYPE]["events"])
    # the conversation went on: the model was told A's call did not run
    assert (
        "not run"
        in [m for m in fake_model.requests[1]["messages"] if m["role"] == "tool"][0]["content"]
    )


def test_a_run_whose_view_answers_keeps_waiting(kernel: Kernel, fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(tool_calls=[Call("python", {"code": "print('A')"})]),
            Turn(content="A answered."),
            Turn(content="B answered."),
        ]
    )
    start(kernel, fake_model, "run A", "--new --approve ask")
    a = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_pending(a, "functions.python:0")
    comm_a = kernel.value(f"_k2s().runs[{a}].widget.comm.comm_id")
    kernel.run("_k2s().view_timeout = 60")
    kernel.kc.execute(f"%k2 --base-url {fake_model.base_url} --approve ask run B")
    collect(kernel, ping_to(comm_a))  # B asks whether A's view is still open: it is
    kernel.click(a, {"action": "pong"})
    time.sleep(1)
    assert kernel.value(f"_k2s().runs[{a}].waits_for_person()") is True
    assert "waits for a decision on functions.python:0" in kernel.run("%k2 runs")["stdout"]
    kernel.click(a, {"action": "approve", "call_id": "functions.python:0"})
    assert kernel.wait_ended(a)["answer"] == "A answered."
    assert kernel.wait_ended(a + 1)["answer"] == "B answered."
    assert not [e for e in kernel.events(a) if e["type"] == "notice"]


def test_show_brings_back_a_view_that_becomes_the_trace(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    fake_model.script(
        [Turn(tool_calls=[Call("python", {"code": "print('S')"})]), Turn(content="shown.")]
    )
    start(kernel, fake_model, "run S", "--new --approve ask")
    i = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_pending(i, "functions.python:0")
    res = kernel.run("%k2 show")
    (view,) = res["outputs"]
    assert WIDGET in view["data"]
    did = view["transient"]["display_id"]
    assert did == kernel.value(f"_k2s().runs[{i}].handle.display_id")
    kernel.click(i, {"action": "approve", "call_id": "functions.python:0"})
    final = collect(kernel, update_for(did))[-1]["content"]
    assert final["data"][MIMETYPE]["events"][-1]["answer"] == "shown."
    # once ended, show gives the trace itself
    (trace,) = kernel.run("%k2 show")["outputs"]
    assert MIMETYPE in trace["data"]


def test_a_kernel_shutdown_stops_the_runs_and_publishes_their_traces(
    fake_model: FakeModel,
) -> None:
    fake_model.script([Turn(tool_calls=[Call("python", {"code": "print('R')"})])])
    k = Kernel({"K2LAB_API_KEY": FAKE_KEY, "K2LAB_ISOLATION": "process"})
    try:
        res = start(k, fake_model, "run R", "--new --approve ask")
        did = res["outputs"][0]["transient"]["display_id"]
        k.wait_pending(0, "functions.python:0")
        k.kc.shutdown(restart=True)  # what a restart from JupyterLab sends first
        final = collect(k, update_for(did), timeout=30)[-1]["content"]
        events = final["data"][MIMETYPE]["events"]
        assert events[-1]["type"] == "run.end" and events[-1]["stop_reason"] == "stopped"
        (notice,) = [e for e in events if e["type"] == "notice"]
        assert "kernel was shut down or restarted" in notice["message"]
    finally:
        k.close()


def test_a_run_shown_twice_in_a_notebook_counts_once() -> None:
    """An abandoned run's trace in the next cell, and in its own (a view that answered late), or
    a ``%k2 show``: one run for ``--resume``, where it first appears, with its longest record."""
    full, partial, other = run_events(), run_events()[:3], run_events()
    for e in other:
        e["run_id"] = "r2"
    out = nbformat.v4.new_output
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "a", outputs=[out("display_data", data=trace_bundle("r1", partial))]
        ),
        nbformat.v4.new_code_cell(
            "b",
            outputs=[
                out("display_data", data=trace_bundle("r1", full)),
                out("display_data", data=trace_bundle("r2", other)),
            ],
        ),
    ]
    runs = runs_from_notebook(nbformat.reads(nbformat.writes(nb), as_version=4))
    assert [(r.run_id, r.cell_index) for r in runs] == [("r1", 0), ("r2", 1)]
    assert runs[0].events == coalesce_events(full)


def test_stop_names_the_runs_and_show_gives_their_traces(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    fake_model.script([Turn(tool_calls=[Call("python", {"code": "print('T')"})])])
    start(kernel, fake_model, "run T", "--new --approve ask")
    i = int(kernel.value("len(_k2s().runs)")) - 1
    kernel.wait_pending(i, "functions.python:0")
    run_id = kernel.value(f"_k2s().runs[{i}].run_id")
    out = kernel.run("%k2 stop")["stdout"]
    assert run_id in out and "%k2 show" in out
    kernel.wait_ended(i)
    (trace,) = kernel.run(f"%k2 show {run_id}")["outputs"]
    assert trace["data"][MIMETYPE]["run_id"] == run_id
    assert "no run 'nope'" in kernel.run("%k2 show nope")["stdout"]
