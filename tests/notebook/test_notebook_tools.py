"""``%k2 --notebook-tools``: the kernel side against a fake comm (k2lab.notebook.notebook_tools).

The fake page answers from another thread, as JupyterLab's answers reach ipykernel on a shell
thread that is not the run's loop. The real kernel and real JupyterLab are in
``test_notebook_tools_kernel.py`` and ``tests/browser/test_notebook_tools_magic.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from k2lab.agent.decisions import Decision, PendingDecisions, RejectAll
from k2lab.events import ToolProposed
from k2lab.notebook.notebook_tools import (
    NEEDS_LAB,
    AskForNotebook,
    CommBridge,
    decisions_for,
    kernel_tools,
)
from k2lab.server.notebook_tools import NotebookBridge
from k2lab.tools.base import always_ask, tool_schema
from k2lab.tools.notebook import notebook_tools

Page = Callable[["FakeComm", dict[str, Any]], None]


class FakeComm:
    """A comm whose other end is ``page(comm, open_data)``, run on a thread of its own."""

    def __init__(self, page: Page | None, log: list[dict[str, Any]]) -> None:
        self.page = page
        self.log = log
        self.msg_cb: Callable[[dict[str, Any]], None] | None = None
        self.close_cb: Callable[[dict[str, Any]], None] | None = None
        self.closed = False

    def on_msg(self, cb: Callable[[dict[str, Any]], None]) -> None:
        self.msg_cb = cb

    def on_close(self, cb: Callable[[dict[str, Any]], None]) -> None:
        self.close_cb = cb

    def open(self, data: dict[str, Any]) -> None:
        self.log.append(data)
        if self.page is not None:
            threading.Thread(target=self.page, args=(self, data), daemon=True).start()

    def close(self) -> None:
        self.closed = True

    # -- what the page does
    def reply(self, data: dict[str, Any]) -> None:
        assert self.msg_cb is not None
        self.msg_cb({"content": {"comm_id": "c", "data": data}})

    def close_from_page(self) -> None:
        assert self.close_cb is not None
        self.close_cb({"content": {"comm_id": "c", "data": {}}})


CELLS = [
    {"index": 0, "id": "a", "cell_type": "code", "source": "x = 1", "outputs": []},
    {"index": 1, "id": "b", "cell_type": "code", "source": "print(x + 1)", "outputs": []},
    {"index": 2, "id": "c", "cell_type": "code", "source": "await k2lab.wait()", "outputs": []},
]


def lab_page(comm: FakeComm, data: dict[str, Any]) -> None:
    """JupyterLab with the extension: ack, then the panel's result shapes."""
    rid, op, args = data["id"], data["op"], data["args"]
    comm.reply({"kind": "ack", "id": rid})
    if op == "read":
        start, end = args.get("start", 0), args.get("end", len(CELLS))
        result: Any = {"path": "nb.ipynb", "n_cells": 3, "cells": CELLS[start:end]}
    elif op == "run_cell":
        out = {"output_type": "stream", "name": "stdout", "text": "2\n"}
        result = {"path": "nb.ipynb", "index": args["index"], "status": "ok", "outputs": [out]}
    else:
        result = {"path": "nb.ipynb", "index": args["index"], "id": "new"}
    comm.reply({"kind": "response", "id": rid, "ok": True, "result": result})


def bridge(page: Page | None, log: list[dict[str, Any]], **kw: Any) -> CommBridge:
    comms: list[FakeComm] = []

    def make() -> FakeComm:
        comms.append(FakeComm(page, log))
        return comms[-1]

    b = CommBridge(make, **kw)
    b.comms = comms  # type: ignore[attr-defined]
    return b


def tools_by_name(b: Any) -> dict[str, Any]:
    return {t.name: t for t in notebook_tools(b, timeout=2.0, run_timeout=2.0)}


async def call(tool: Any, **args: Any) -> Any:
    return await tool.call(tool.params(**args))


def test_the_kernel_offers_the_panels_tools_with_the_same_names_schemas_and_flags() -> None:
    ours = kernel_tools(lambda: None)
    panels = notebook_tools(NotebookBridge())
    assert [tool_schema(t) for t in ours] == [tool_schema(t) for t in panels]
    assert [t.name for t in ours if always_ask(t)] == [
        "notebook_insert_cell",
        "notebook_replace_cell",
        "notebook_run_cell",
    ]


async def test_read_goes_over_the_comm_and_reads_as_in_the_panel() -> None:
    log: list[dict[str, Any]] = []
    b = bridge(lab_page, log)
    out = await call(tools_by_name(b)["notebook_read"])
    assert out.ok, out.output
    assert out.output.startswith("Notebook nb.ipynb (3 cells):")
    assert "--- cell 1 (code)\nprint(x + 1)" in out.output
    assert log == [{"id": "k1", "op": "read", "args": {"start": 0, "outputs": True}}]
    assert all(c.closed for c in b.comms)  # type: ignore[attr-defined]


async def test_insert_says_where_the_cell_went() -> None:
    log: list[dict[str, Any]] = []
    out = await call(
        tools_by_name(bridge(lab_page, log))["notebook_insert_cell"], index=-1, source="y = 2"
    )
    assert (out.ok, out.output) == (True, "Inserted a cell at index -1.")
    assert log[0]["op"] == "insert_cell" and log[0]["args"]["source"] == "y = 2"


async def test_no_frontend_is_a_clear_error_after_the_ack_timeout() -> None:
    """Classic Notebook, VS Code, nbclient: nothing answers the comm."""
    b = bridge(None, [], ack_timeout=0.3)
    t0 = time.monotonic()
    out = await call(tools_by_name(b)["notebook_read"])
    assert time.monotonic() - t0 < 1.5  # the ack timeout, not the tool's 2 s
    assert not out.ok
    assert NEEDS_LAB in out.output and "no frontend answered within 0.3 s" in out.output
    assert all(c.closed for c in b.comms)  # type: ignore[attr-defined]


async def test_jupyterlab_without_the_extension_closes_the_comm_and_is_told_at_once() -> None:
    b = bridge(lambda comm, _data: comm.close_from_page(), [], ack_timeout=5.0)
    t0 = time.monotonic()
    out = await call(tools_by_name(b)["notebook_read"])
    assert time.monotonic() - t0 < 1.0
    assert (
        not out.ok and NEEDS_LAB in out.output and "no k2lab notebook-tools handler" in out.output
    )


async def test_an_acknowledged_request_may_take_longer_than_the_ack_timeout() -> None:
    def slow(comm: FakeComm, data: dict[str, Any]) -> None:
        comm.reply({"kind": "ack", "id": data["id"]})
        time.sleep(0.5)
        comm.reply({"kind": "response", "id": data["id"], "ok": True, "result": {"index": 0}})

    out = await call(
        tools_by_name(bridge(slow, [], ack_timeout=0.2))["notebook_replace_cell"],
        index=0,
        source="z",
    )
    assert out.ok, out.output


async def test_an_acknowledged_request_with_no_answer_times_out_with_the_tools_timeout() -> None:
    def mute(comm: FakeComm, data: dict[str, Any]) -> None:
        comm.reply({"kind": "ack", "id": data["id"]})

    b = bridge(mute, [], ack_timeout=0.2)
    tool = notebook_tools(b, timeout=0.5)[0]
    out = await call(tool)
    assert not out.ok and "did not answer within 0.5 s" in out.output


async def test_the_pages_error_and_a_stray_answer_for_another_id() -> None:
    def wrong(comm: FakeComm, data: dict[str, Any]) -> None:
        comm.reply({"kind": "response", "id": "k999", "ok": True, "result": {}})  # not ours
        comm.reply({"kind": "ack", "id": data["id"]})
        comm.reply({"kind": "response", "id": data["id"], "ok": False, "result": "no cell 9"})

    out = await call(tools_by_name(bridge(wrong, []))["notebook_replace_cell"], index=9, source="")
    assert (out.ok, out.output) == (False, "Error: no cell 9")


async def test_outside_a_kernel_the_tool_says_what_it_needs() -> None:
    def no_kernel() -> Any:
        raise RuntimeError("Comms cannot be opened without a comm_manager.")

    out = await call(tools_by_name(CommBridge(no_kernel))["notebook_read"])
    assert not out.ok and NEEDS_LAB in out.output and "comm_manager" in out.output


async def test_run_cell_reads_the_cell_first_then_runs_it() -> None:
    log: list[dict[str, Any]] = []
    out = await call(tools_by_name(bridge(lab_page, log))["notebook_run_cell"], index=1)
    assert out.ok and out.output == "[cell 1 ran: ok]\n2"
    assert [d["op"] for d in log] == ["read", "run_cell"]
    assert log[0]["args"] == {"start": 1, "end": 2, "outputs": False}


async def test_run_cell_refuses_a_cell_that_waits_for_the_runs() -> None:
    """Running ``await k2lab.wait()`` would wait for this run, which waits for the cell."""
    log: list[dict[str, Any]] = []
    out = await call(tools_by_name(bridge(lab_page, log))["notebook_run_cell"], index=2)
    assert not out.ok and "waits for the %k2 runs" in out.output
    assert [d["op"] for d in log] == ["read"]  # never asked to run it


async def test_while_a_cell_awaits_the_runs_run_cell_refuses_at_once_and_reading_goes_on() -> None:
    log: list[dict[str, Any]] = []
    b = bridge(lab_page, log, busy=lambda: "a cell is running `await k2lab.wait()`")
    out = await call(tools_by_name(b)["notebook_run_cell"], index=1)
    assert not out.ok and out.output == (
        "Error: The cell was not run: a cell is running `await k2lab.wait()`"
    )
    assert log == []  # nothing was sent
    out = await call(tools_by_name(b)["notebook_read"])
    assert out.ok and [d["op"] for d in log] == ["read"]


# -- who decides ---------------------------------------------------------------------------------
def proposal(name: str, cid: str) -> ToolProposed:
    return ToolProposed(step=1, call_id=cid, name=name, arguments="{}")


async def test_under_auto_edits_and_runs_wait_for_a_person_reading_and_python_do_not() -> None:
    d = decisions_for("auto", kernel_tools(lambda: None))
    assert isinstance(d, AskForNotebook) and d.policy == "auto"
    assert (await d.decide(proposal("python", "p"))).by == "policy"
    assert (await d.decide(proposal("notebook_read", "r"))).kind == "approve"
    waiting = asyncio.ensure_future(d.decide(proposal("notebook_insert_cell", "i")))
    await asyncio.sleep(0.05)
    assert not waiting.done() and d.pending == ["i"]
    d.resolve("i", Decision("reject", feedback="not that"))
    assert (await waiting).kind == "reject"
    # "Approve all" covers the rest of the run, as in the panel
    d.approve_all()
    assert (await d.decide(proposal("notebook_run_cell", "x"))).kind == "approve"


@pytest.mark.parametrize(("policy", "kind"), [("ask", PendingDecisions), ("never", RejectAll)])
def test_ask_and_never_are_the_runs_own_policy(policy: str, kind: type) -> None:
    assert type(decisions_for(policy, kernel_tools(lambda: None))) is kind


def test_auto_without_notebook_tools_stays_plain_auto() -> None:
    assert decisions_for("auto", []).__class__.__name__ == "AutoApprove"


# -- the option --------------------------------------------------------------------------------
def test_the_option_parses_documents_itself_and_reaches_start_run() -> None:
    from k2lab.notebook.magics import K2Magics, help_text
    from k2lab.notebook.session import run_flags

    magics = K2Magics(None)
    text = " ".join(help_text(magics.k2.__doc__ or "").split())
    assert "%k2 --notebook-tools PROMPT" in text and "even under --approve auto" in text
    opts, prompt = magics._parse("--notebook-tools --approve auto what's in cell 2?")
    assert prompt == "what's in cell 2?"
    assert run_flags(opts)["notebook_tools"] is True
    opts, _ = magics._parse("no tools")
    assert run_flags(opts)["notebook_tools"] is False


async def test_not_with_heavy_said_before_anything_starts() -> None:
    from IPython.core.error import UsageError

    from k2lab.config import resolve_settings
    from k2lab.notebook.session import NotebookSession

    session = NotebookSession(None)
    with pytest.raises(UsageError, match="--notebook-tools: not with --heavy"):
        session.start_run("go", resolve_settings({}), heavy=2, notebook_tools=True)
    assert session.runs == []
