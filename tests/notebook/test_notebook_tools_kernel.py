"""``%k2 --notebook-tools`` in a real kernel, against the fake model, with a scripted "page".

The page is a second jupyter_client connected to the same kernel, doing what the labextension's
comm target does (``labextension/src/kernelNotebookTools.ts``): it acknowledges each request,
keeps a small notebook, and runs a cell by sending an ``execute_request`` to the same kernel, as
JupyterLab does. The real page is in ``tests/browser/test_notebook_tools_magic.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from jupyter_client import BlockingKernelClient

from k2lab.notebook.notebook_tools import NEEDS_LAB, TARGET
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.notebook.kernel import Kernel

pytestmark = pytest.mark.timeout(240)


class Page(threading.Thread):
    """The comm target ``k2lab.notebook`` of a JupyterLab page, on a client of its own."""

    def __init__(self, kernel: Kernel, cells: list[str]) -> None:
        super().__init__(daemon=True)
        # a client of its own: ``km.client()`` would share the test client's session (its
        # socket identity), and the kernel would then answer only one of them
        self.kc = BlockingKernelClient()
        self.kc.load_connection_info(kernel.km.get_connection_info())
        self.kc.start_channels()
        self.cells = [{"cell_type": "code", "source": s, "outputs": []} for s in cells]
        self.ops: list[str] = []
        self.done = threading.Event()
        self.start()

    def close(self) -> None:
        self.done.set()
        self.join(5)
        self.kc.stop_channels()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2)
            except Exception:
                continue
            c = msg["content"]
            if msg["msg_type"] == "comm_open" and c.get("target_name") == TARGET:
                self.answer(c["comm_id"], c["data"])

    def send(self, comm_id: str, data: dict[str, Any]) -> None:
        self.kc.shell_channel.send(
            self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        )

    def answer(self, comm_id: str, data: dict[str, Any]) -> None:
        rid, op, args = data["id"], data["op"], data["args"]
        self.ops.append(op)
        self.send(comm_id, {"kind": "ack", "id": rid})
        result: dict[str, Any] = {"path": "page.ipynb"}
        if op == "read":
            start, end = args.get("start", 0), args.get("end", len(self.cells))
            result["cells"] = [
                {"index": i, **self.cells[i]} for i in range(start, min(end, len(self.cells)))
            ]
        elif op == "insert_cell":
            index = len(self.cells) if args["index"] == -1 else args["index"]
            self.cells.insert(index, {"cell_type": "code", "source": args["source"], "outputs": []})
            result["index"] = index
        elif op == "run_cell":
            result.update(self.execute(args["index"]))
        self.send(comm_id, {"kind": "response", "id": rid, "ok": True, "result": result})

    def execute(self, index: int) -> dict[str, Any]:
        """Run the cell in the kernel (queued behind whatever the main shell is executing)."""
        msg_id = self.kc.execute(self.cells[index]["source"])
        outputs: list[dict[str, Any]] = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                outputs.append({"output_type": "stream", "text": msg["content"]["text"]})
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        self.cells[index]["outputs"] = outputs
        return {"index": index, "status": "ok", "outputs": outputs}


def start(kernel: Kernel, fake: FakeModel, opts: str) -> int:
    res = kernel.run(f"%k2 --new --notebook-tools --base-url {fake.base_url} {opts} go")
    assert res["error"] is None, res["error"]
    return int(kernel.value("len(_k2s().runs)")) - 1


def pending(kernel: Kernel, i: int, tool: str) -> str:
    """The id of ``tool``'s call once it waits for a person."""
    calls = f"_k2s().runs[{i}].widget.state.pending_calls()"
    kernel.wait_for(f"[c for c in {calls} if {tool!r} in c]")
    return str(next(c for c in kernel.value(calls) if tool in c))


def results(kernel: Kernel, i: int) -> dict[str, str]:
    return {e["name"]: e["output"] for e in kernel.events(i) if e["type"] == "tool.result"}


def test_under_auto_the_model_reads_then_inserts_and_runs_a_cell_after_approval(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    """Reading follows auto; the insert and the run wait for a click even under auto; the run
    executes in the same kernel while the %k2 run waits for it (no deadlock)."""
    fake_model.script(
        [
            Turn(tool_calls=[Call("notebook_read", {})]),
            Turn(
                tool_calls=[Call("notebook_insert_cell", {"index": -1, "source": "print(6 * 7)"})]
            ),
            Turn(tool_calls=[Call("notebook_run_cell", {"index": 1})]),
            Turn(content="It printed 42."),
        ]
    )
    page = Page(kernel, ["x = 1"])
    try:
        i = start(kernel, fake_model, "--approve auto")
        insert = pending(kernel, i, "notebook_insert_cell")
        assert page.ops == ["read"]  # read without asking, the insert not before the click
        kernel.click(i, {"action": "approve", "call_id": insert})
        run = pending(kernel, i, "notebook_run_cell")
        kernel.click(i, {"action": "approve", "call_id": run})
        end = kernel.wait_ended(i)
    finally:
        page.close()
    assert end["stop_reason"] == "completed"
    out = results(kernel, i)
    assert "--- cell 0 (code)\nx = 1" in out["notebook_read"]
    assert out["notebook_insert_cell"] == "Inserted a cell at index 1."
    assert out["notebook_run_cell"] == "[cell 1 ran: ok]\n42"
    assert page.ops == ["read", "insert_cell", "read", "run_cell"]
    assert page.cells[1]["source"] == "print(6 * 7)"
    decisions = {e["call_id"]: e["by"] for e in kernel.events(i) if e["type"] == "tool.decision"}
    assert list(decisions.values()) == ["policy", "user", "user"]


def test_with_no_page_the_tool_says_it_needs_jupyterlab_and_the_run_goes_on(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    """nbclient / classic Notebook / VS Code: no comm target answers."""
    fake_model.script([Turn(tool_calls=[Call("notebook_read", {})]), Turn(content="ok")])
    i = start(kernel, fake_model, "--approve auto")
    end = kernel.wait_ended(i)
    assert end["stop_reason"] == "completed"
    out = results(kernel, i)["notebook_read"]
    assert NEEDS_LAB in out and "no frontend answered within 5 s" in out
    tool_msgs = [m["content"] for m in fake_model.requests[1]["messages"] if m["role"] == "tool"]
    assert NEEDS_LAB in tool_msgs[-1]  # the model is told


def test_a_cell_awaiting_the_runs_does_not_deadlock_a_notebook_tool(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    """``await k2lab.wait()`` holds the main shell while the run uses the notebook tools: the page's
    answers still arrive (ipykernel dispatches comm messages beside a running async cell), so a
    read works; a cell to run would queue behind the waiting cell, so run_cell refuses at once;
    the run ends and the waiting cell finishes."""
    waiting = threading.Event()
    turns = [
        Turn(tool_calls=[Call("notebook_read", {})]),
        Turn(tool_calls=[Call("notebook_run_cell", {"index": 0})]),
        Turn(content="ok"),
    ]

    def answer(_body: dict[str, Any], index: int) -> Turn:
        waiting.wait(30)  # the model calls the tools once the cell below awaits the run
        return turns[min(index, 2)]

    fake_model.respond_with(answer)
    page = Page(kernel, ["x = 1"])
    try:
        i = start(kernel, fake_model, "--approve auto")
        # asking the kernel anything below would queue behind the waiter: approve ahead
        kernel.click(i, {"action": "approve_all"})
        waiter = kernel.kc.execute("import k2lab\nawait k2lab.wait()")
        while True:  # the waiter's cell has started
            msg = kernel.kc.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") == waiter and msg["msg_type"] == "execute_input":
                break
        time.sleep(0.5)
        waiting.set()
        reply = kernel.kc.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != waiter:
            reply = kernel.kc.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "ok"
    finally:
        waiting.set()
        page.close()
    end = kernel.wait_ended(i)
    assert end["stop_reason"] == "completed"
    out = results(kernel, i)
    assert "--- cell 0 (code)\nx = 1" in out["notebook_read"]
    assert "The cell was not run" in out["notebook_run_cell"]
    assert "await k2lab.wait()" in out["notebook_run_cell"]
    assert page.ops == ["read"]


def test_a_fork_keeps_the_notebook_tools_and_their_always_ask_rule(
    kernel: Kernel, fake_model: FakeModel
) -> None:
    """``%%k2 fork`` of a ``--notebook-tools --approve auto`` run at its insert: the edited insert
    runs (the person chose it), and the branch's next notebook edit/run waits for a click."""
    fake_model.script(
        [
            Turn(tool_calls=[Call("notebook_insert_cell", {"index": -1, "source": "print(1)"})]),
            Turn(content="inserted"),
        ]
    )
    page = Page(kernel, ["x = 1"])
    try:
        i = start(kernel, fake_model, "--approve auto")
        insert = pending(kernel, i, "notebook_insert_cell")
        kernel.click(i, {"action": "approve", "call_id": insert})
        kernel.wait_ended(i)
        fake_model.script(
            [
                Turn(tool_calls=[Call("notebook_run_cell", {"index": 1})]),
                Turn(content="ran it"),
            ]
        )
        run_id = kernel.value(f"_k2s().runs[{i}].run_id")
        body = '{"index": -1, "source": "print(6 * 7)"}'
        res = kernel.run(f"%%k2 fork {run_id} {insert}\n{body}")
        assert res["error"] is None, res["error"]
        j = i + 1
        run = pending(kernel, j, "notebook_run_cell")  # not approved by the auto policy
        kernel.click(j, {"action": "approve", "call_id": run})
        end = kernel.wait_ended(j)
    finally:
        page.close()
    assert end["stop_reason"] == "completed"
    assert [c["source"] for c in page.cells] == ["x = 1", "print(1)", "print(6 * 7)"]
    assert results(kernel, j)["notebook_run_cell"] == "[cell 1 ran: ok]\n1"
