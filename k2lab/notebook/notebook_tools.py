"""``%k2 --notebook-tools``: the panel's notebook tools, carried by a Jupyter comm to the page.

The tools (names, schemas, result texts) are ``k2lab.tools.notebook``'s, as in the side panel;
only the transport differs. Each request opens a comm to the target ``k2lab.notebook``, which the
labextension registers on every notebook's kernel (``labextension/src/kernelNotebookTools.ts``);
the page answers for the notebook whose kernel sent it (``path`` omitted), first with an ack, then
with the result, and the kernel closes the comm. Wire (kernel -> page, then page -> kernel)::

    comm_open  {"id": "k1", "op": "read" | "insert_cell" | "replace_cell" | "run_cell", "args": {}}
    comm_msg   {"kind": "ack", "id": "k1"}
    comm_msg   {"kind": "response", "id": "k1", "ok": true, "result": {...}}  # or ok false + a str

Nothing answers in classic Notebook, VS Code or nbclient (no ack within ``ack_timeout``), and
JupyterLab without the extension closes the comm at once: both become an error result that says
the tools need JupyterLab with the k2lab extension, and the run goes on.

Why a run never deadlocks on its own kernel: the run is a task on the kernel's loop and ``%k2``'s
cell has returned, so the page's answers (comm messages) and a cell the tool runs (an
``execute_request``) are handled while the run waits. ipykernel 7 dispatches comm messages even
while an async cell runs, but an ``execute_request`` queues behind the cell the main shell is
executing; when that cell is ``await k2lab.wait()``, it waits for this very run, so ``run_cell``
then refuses at once (``busy``) instead of waiting out its timeout, and it refuses a cell that
itself waits for the runs (``k2lab.wait(``), which could never finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any, Protocol

from k2lab.agent.decisions import Decision, DecisionSource, PendingDecisions, decision_source
from k2lab.events import ToolProposed
from k2lab.tools.base import Tool, always_ask
from k2lab.tools.notebook import notebook_tools

TARGET = "k2lab.notebook"
NEEDS_LAB = "notebook tools need JupyterLab with the k2lab extension"
#: seconds the page gets to acknowledge a request (an answer that takes longer is still waited for)
ACK_TIMEOUT = 5.0
#: a cell whose source holds this waits for every %k2 run, this one included
WAITS_FOR_RUNS = "k2lab.wait("


class CommLike(Protocol):
    """What the bridge uses of an ipykernel ``Comm`` (tests pass a fake)."""

    def on_msg(self, callback: Callable[[dict[str, Any]], None]) -> None: ...
    def on_close(self, callback: Callable[[dict[str, Any]], None]) -> None: ...
    def open(self, data: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def kernel_comm() -> CommLike:
    """An unopened comm to the page: callbacks are set before ``open``, so no answer can come
    before they are (answers arrive on a subshell's thread, racing this one)."""
    from comm import create_comm

    comm: CommLike = create_comm(target_name=TARGET, primary=False)
    return comm


class CommBridge:
    """Requests to the JupyterLab page showing this kernel's notebook, one comm each."""

    def __init__(
        self,
        make_comm: Callable[[], CommLike] = kernel_comm,
        *,
        ack_timeout: float = ACK_TIMEOUT,
        busy: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.make_comm = make_comm
        self.ack_timeout = ack_timeout
        #: why the main shell cannot run a cell for this run now (None: it can)
        self.busy = busy
        self._ids = itertools.count(1)

    async def request(self, op: str, args: dict[str, Any], *, timeout: float) -> tuple[bool, Any]:
        if op == "run_cell":
            refused = await self._refuse_run(args, timeout)
            if refused is not None:
                return False, refused
        return await self._ask(op, args, timeout)

    async def _refuse_run(self, args: dict[str, Any], timeout: float) -> str | None:
        """Why the cell must not run now (see the docstring), or None. Reads the cell first."""
        why = self.busy()
        if why is not None:
            return f"The cell was not run: {why}"
        index = int(args.get("index", 0))
        where = {k: v for k, v in args.items() if k == "path"}
        ask = {**where, "start": index, "end": index + 1, "outputs": False}
        ok, result = await self._ask("read", ask, timeout)
        if not ok:
            return str(result)
        cells = result.get("cells") if isinstance(result, dict) else None
        source = str(cells[0].get("source", "")) if cells and isinstance(cells[0], dict) else ""
        if WAITS_FOR_RUNS in source:
            return (
                f"The cell was not run: cell {index} waits for the %k2 runs (k2lab.wait()), "
                "this one included, so it could never finish while this run waits for it."
            )
        return None

    async def _ask(self, op: str, args: dict[str, Any], timeout: float) -> tuple[bool, Any]:
        loop = asyncio.get_running_loop()
        rid = f"k{next(self._ids)}"
        acked: asyncio.Future[None] = loop.create_future()
        answer: asyncio.Future[tuple[bool, Any]] = loop.create_future()

        def settle(data: Any) -> None:  # on the loop
            if not isinstance(data, dict) or data.get("id") != rid:
                return
            if not acked.done():
                acked.set_result(None)
            if data.get("kind") == "response" and not answer.done():
                answer.set_result((bool(data.get("ok")), data.get("result")))

        def closed() -> None:
            if not answer.done():
                answer.set_result((False, None))

        def on_msg(msg: dict[str, Any]) -> None:  # maybe on a subshell's thread
            data = (msg.get("content") or {}).get("data")
            loop.call_soon_threadsafe(settle, data)

        def on_close(_msg: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(closed)

        try:
            comm = self.make_comm()
            comm.on_msg(on_msg)
            comm.on_close(on_close)
            comm.open({"id": rid, "op": op, "args": args})
        except Exception as e:  # no kernel comm manager: not inside a Jupyter kernel
            return False, f"{NEEDS_LAB} (no comm to a frontend: {e})"
        try:
            first: set[asyncio.Future[Any]] = {acked, answer}
            await asyncio.wait(first, timeout=self.ack_timeout, return_when=asyncio.FIRST_COMPLETED)
            if not acked.done():
                if answer.done():  # closed unanswered: JupyterLab knows no such comm target
                    return (
                        False,
                        f"{NEEDS_LAB}: this JupyterLab has no k2lab notebook-tools handler",
                    )
                return False, (
                    f"{NEEDS_LAB}: no frontend answered within {self.ack_timeout:g} s "
                    "(classic Notebook, VS Code and nbclient cannot carry them out; or the "
                    "kernel was busy running another cell)"
                )
            try:
                ok, result = await asyncio.wait_for(answer, timeout)
            except asyncio.TimeoutError:
                return False, f"JupyterLab did not answer within {timeout:g} s."
            if result is None and not ok:
                return False, "The notebook's page closed the request before answering."
            return ok, result
        finally:
            with contextlib.suppress(Exception):
                comm.close()


class AskForNotebook(PendingDecisions):
    """``--approve auto`` with notebook tools: the run's calls are approved by the policy, except
    those of tools flagged ``always_ask`` (they act on the user's notebook and kernel, outside the
    sandbox), which wait for a person, as in the panel. "Approve all" covers the rest of the run."""

    policy = "auto"

    def __init__(self, tools: list[Tool]) -> None:
        super().__init__()
        self.held = frozenset(t.name for t in tools if always_ask(t))

    async def decide(self, proposal: ToolProposed) -> Decision:
        if proposal.name not in self.held:
            return Decision("approve", by="policy")
        return await super().decide(proposal)


def decisions_for(policy: str, tools: list[Tool]) -> DecisionSource:
    """The run's decision source: its policy, with ``always_ask`` tools held under ``auto``."""
    if policy == "auto" and any(always_ask(t) for t in tools):
        return AskForNotebook(tools)
    return decision_source(policy)


def kernel_tools(
    busy: Callable[[], str | None], *, timeout: float = 30.0, run_timeout: float = 600.0
) -> list[Tool]:
    """The four notebook tools over a comm to this kernel's JupyterLab page."""
    return notebook_tools(CommBridge(busy=busy), timeout=timeout, run_timeout=run_timeout)
