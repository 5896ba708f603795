# mypy: disable-error-code="no-untyped-call"
"""The notebook face's state for one kernel: settings, model, sandbox, conversation and runs.

``%k2`` calls ``NotebookSession.start_run``, which displays the live view and schedules the agent as
a task on the kernel's own event loop, then returns: the cell finishes at once, so ipykernel keeps
handling widget messages (button clicks) while the run waits for a decision. Runs of one session
follow each other (a follow-up cell queues behind a running one) and share one conversation.

Each run's cell gets two displays: the live view, which becomes the saved trace bundle when the run
ends (``update_display_data`` works after the cell returned; the saved notebook then holds the
trace, not a widget that would need the kernel), and an empty slot a "Fork from here" branch is
shown in. ``wait()`` (``await k2lab.wait()``) waits for the runs and re-publishes their final
outputs from the waiting cell, because headless runners such as nbclient only record messages
whose parent is the cell they are executing.

A page reload must not lose a trace. JupyterLab routes ``update_display_data`` by the display ids
*this page* saw being displayed, so after a reload the update is dropped. Every k2lab display
therefore carries its display id in its output metadata (``{"k2lab": {"display_id", "run_id"}}``,
saved in the ``.ipynb``), and the labextension replaces the outputs whose metadata names the id of
an update it sees on the kernel's IOPub channel (``labextension/src/liveTrace.ts``). A view that
opens (``hello``) after its run ended gets the final bundle published again, for a page that was
away when the run ended. A run whose view is gone altogether (a reload before saving, a re-run
cell) while it waits for a decision is found when the next run would queue behind it: its views
are asked to answer (``ping``); if none does within ``view_timeout`` seconds, the run is stopped
with a notice that says why, and its trace is shown in the new run's cell, so it stays in the
notebook (and in the conversation ``--resume`` rebuilds). A kernel shutdown or restart stops the
runs still going, with a notice, and waits (up to ``SHUTDOWN_WAIT``) for their traces to go out.

MCP tool servers (``%k2 --mcp-config FILE``): one ``MCPToolSet`` per session, started by the first
run that names a config and kept for the later runs with the same config (and tool timeout), so a
server's state lasts across follow-ups; a run with another config stops it and starts the new one,
a run without one offers no MCP tools and leaves it running, a server that died is started again
by the next run that uses it, and a kernel shutdown or restart stops the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.display import DisplayHandle, display

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import (
    Decision,
    DecisionError,
    DecisionSource,
    PendingDecisions,
    decision_source,
)
from k2lab.agent.fork import Fork, ForkError, plan_fork
from k2lab.agent.loop import Agent, default_system_prompt
from k2lab.config import K2Lab, Settings, resolve_settings
from k2lab.driver import (
    RunDriver,
    RunSpec,
    failed_start_events,
    heavy_problem,
)
from k2lab.events import Event, Notice
from k2lab.notebook.notebook_tools import decisions_for, kernel_tools
from k2lab.notebook.widget import TraceWidget
from k2lab.providers.base import ChatProvider
from k2lab.sandbox.base import Sandbox
from k2lab.trace.notebook import scrub_event, trace_bundle
from k2lab.trace.state import arguments_for

if TYPE_CHECKING:
    from k2lab.tools.base import Tool
    from k2lab.tools.mcp import MCPToolSet
    from k2lab.tools.mcp_config import MCPConfig

#: seconds a view gets to answer a ping (see the module docstring)
VIEW_TIMEOUT = 5.0
#: seconds a kernel shutdown waits for the runs it stops to publish their traces (jupyter_client
#: waits 5 s for a kernel to exit before it kills it)
SHUTDOWN_WAIT = 3.0
_SECRET_VARS = ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "OPENROUTER_API_KEY")


def new_display_id() -> str:
    return uuid.uuid4().hex


def empty_slot(text: str = "") -> DisplayHandle:
    """An output to fill later (a fork's view, an abandoned run's trace), findable after a
    reload by the display id in its metadata."""
    did = new_display_id()
    handle: DisplayHandle = display(
        {"text/plain": text}, raw=True, display_id=did, metadata={"k2lab": {"display_id": did}}
    )
    return handle


def run_flags(opts: Any) -> dict[str, Any]:
    """``%k2``'s run options (``--verify [--verify-rounds R]``, ``--heavy N
    [--heavy-concurrency C]``, ``--notebook-tools``, the CLI's words) as
    ``NotebookSession.start_run`` arguments."""
    verify = bool(getattr(opts, "verify", False))
    rounds = getattr(opts, "verify_rounds", None)
    heavy = getattr(opts, "heavy", None)
    concurrency = getattr(opts, "heavy_concurrency", None)
    if rounds is not None and (rounds < 1 or not verify):
        raise UsageError("--verify-rounds needs --verify and at least 1 round")
    if heavy is not None and heavy < 1:
        raise UsageError("--heavy must be at least 1")
    if concurrency is not None and (concurrency < 1 or not heavy):
        raise UsageError("--heavy-concurrency needs --heavy and at least 1")
    names = [n.strip() for n in (getattr(opts, "with_vars", None) or "").split(",") if n.strip()]
    return {
        "with_vars": tuple(dict.fromkeys(names)),
        "verify_rounds": (rounds or 1) if verify else 0,
        "heavy": heavy or 0,
        "heavy_concurrency": concurrency,
        "notebook_tools": bool(getattr(opts, "notebook_tools", False)),
    }


def proposed_name(events: list[dict[str, Any]], run_id: str, call_id: str) -> str | None:
    """The tool name of run ``run_id``'s call ``call_id`` (a heavy lane's: call ids repeat
    across lanes, the lane's run id says which; "": any run's)."""
    return next(
        (
            str(e.get("name", ""))
            for e in events
            if e.get("type") == "tool.proposed"
            and e.get("call_id") == call_id
            and (e.get("run_id") == run_id or not run_id)
        ),
        None,
    )


class RunRecord:
    """One run: its events, its view and displays, and the buttons' effects (``RunControls``)."""

    def __init__(self, session: NotebookSession, prompt: str, settings: Settings) -> None:
        self.session = session
        self.prompt = prompt
        self.settings = settings
        self.run_id = uuid.uuid4().hex[:12]
        self.events: list[dict[str, Any]] = []
        self.decisions: DecisionSource = decision_source(settings.approve)
        self.widget = TraceWidget(self)
        self.display_id = new_display_id()
        self.handle: DisplayHandle | None = None
        self.fork_slot: DisplayHandle | None = None
        #: other outputs showing this run's trace (an abandoned run's, in the next run's cell)
        self.extra_handles: list[DisplayHandle] = []
        self.fork_slot_used = False
        self.task: asyncio.Task[None] | None = None
        self.agent: Agent | None = None
        self.sandbox: Sandbox | None = None
        #: the conversation's messages when this run started (a fork rebuilds from these)
        self.conv_before: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        #: the MCP servers this run offers the tools of (``--mcp-config``); a fork inherits them
        self.mcp: MCPConfig | None = None
        #: ``--verify-rounds`` (0: no verify pass), ``--heavy N`` (0: one agent)
        self.verify_rounds = 0
        self.heavy = 0
        self.heavy_concurrency: int | None = None
        #: ``--with``: the notebook's variables copied into the sandbox before the run
        self.variables: dict[str, Any] = {}
        #: ``--notebook-tools``: the notebook tools this run offers (a fork inherits them)
        self.notebook_tools: list[Tool] = []
        #: the run's driver (``k2lab.driver``), once the run left the queue
        self.driver: RunDriver | None = None

    # -- displays --------------------------------------------------------------------------------
    def show(self, *, slot: DisplayHandle | None = None) -> None:
        if slot is not None:  # a fork shows in its parent's slot
            self.handle = slot
            slot.update(self.widget, metadata=self.metadata())
            return
        self.handle = display(self.widget, display_id=self.display_id, metadata=self.metadata())
        self.fork_slot = empty_slot()

    def metadata(self) -> dict[str, Any]:
        """What the output's metadata says (saved in the notebook): which display and run it is."""
        did = self.handle.display_id if self.handle is not None else self.display_id
        return {"k2lab": {"display_id": did, "run_id": self.run_id}}

    def publish_final(self) -> None:
        if self.final is None:
            return
        if self.handle is not None:
            self.handle.update(self.final, raw=True, metadata=self.metadata())
        for h in self.extra_handles:
            h.update(
                self.final,
                raw=True,
                metadata={"k2lab": {**self.metadata()["k2lab"], "display_id": h.display_id}},
            )

    def view_opened(self) -> None:
        """A view said hello: if the run already ended (the page was away then), publish the
        trace again, so the page that shows the view replaces it."""
        self.publish_final()

    @property
    def going(self) -> bool:
        return self.task is not None and not self.task.done()

    def waits_for_person(self) -> bool:
        pending = self._pending()  # heavy lanes' calls wait there too, by (run_id, call_id)
        return self.going and (
            bool(self.widget.state.pending_calls())
            or (pending is not None and bool(pending.pending))
        )

    def abandon(self, reason: str) -> None:
        """Stop this run because nobody can see it; the notice says so in its trace."""
        ev = Notice(message=reason, kind="stopped").to_dict()
        self.feed(ev)
        self.stop()

    # -- events ------------------------------------------------------------------------------------
    def feed(self, ev: dict[str, Any]) -> None:
        """An event made here (a notice): scrubbed, then shown and kept."""
        self.take(scrub_event(ev, self.session.secrets()))

    def take(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)
        self.widget.feed(ev)

    def sink(self, ev: Event) -> None:
        """The driver's sink: its events are scrubbed already."""
        self.take(ev.to_dict())

    def fail_before_start(self, message: str, kind: str) -> None:
        """A run that could not start still leaves a trace (``k2lab.driver``'s events)."""
        for ev in failed_start_events(self.settings, self.prompt, self.run_id, message, kind=kind):
            self.take(ev.to_dict())

    # -- RunControls (what the buttons do) ---------------------------------------------------------
    def _card(self, call_id: str) -> dict[str, Any]:
        card = self.widget.state.cards.get(call_id)
        if card is None:
            raise DecisionError(f"no tool call {call_id!r} in this run")
        return card

    def decide(
        self,
        call_id: str,
        kind: str,
        *,
        code: str | None,
        feedback: str | None,
        run_id: str | None = None,
    ) -> None:
        pending = self._pending()
        if pending is None:
            raise DecisionError(f"this run's approval policy is {self.decisions.policy!r}")
        if self.heavy:  # --heavy: a lane's call, by (run_id, call_id): ids repeat across lanes
            if not run_id:
                raise DecisionError("a lane's call is decided with its lane's run id")
            if kind == "edit":
                raise DecisionError("a lane's call can be approved or rejected, not edited")
            decision = (
                Decision("reject", feedback=(feedback or "").strip() or None)
                if kind == "reject"
                else Decision("approve")
            )
            pending.resolve(call_id, decision, run_id=run_id)
            return
        card = self._card(call_id)
        if kind == "edit":
            if code is None:
                raise DecisionError("an edit needs the code to run")
            args = arguments_for(card["name"], code)
            decision = Decision("approve") if args == card["arguments"] else Decision("edit", args)
        elif kind == "reject":
            decision = Decision("reject", feedback=(feedback or "").strip() or None)
        else:
            decision = Decision("approve")
        pending.resolve(call_id, decision)

    def _pending(self) -> PendingDecisions | None:
        source = getattr(self.decisions, "inner", self.decisions)  # a fork wraps the policy
        return source if isinstance(source, PendingDecisions) else None

    def approve_all(self) -> None:
        pending = self._pending()
        if pending is None:
            raise DecisionError(f"this run's approval policy is {self.decisions.policy!r}")
        pending.approve_all()

    def stop_previous(self) -> None:
        """Stop every earlier run still going (e.g. one whose view was cleared by re-running
        its cell), so this queued run can start."""
        for r in self.session.runs:
            if r is self:
                break
            r.stop()

    def stop(self) -> None:
        if self.driver is not None and self.driver.running:
            # a run still starting its sandbox ends right after the start, before the model is
            # asked anything (cancelling a kernel start half-way can orphan the kernel)
            self.driver.stop()
        elif self.task is not None and not self.task.done():
            self.task.cancel()  # still queued behind another run

    def stop_lane(self, lane: str) -> None:
        """The widget's "Stop lane" (``--heavy N``): stop that lane only; the others go on and
        the aggregation still runs, on the lanes that finished (it names the stopped one)."""
        if not self.heavy:
            raise DecisionError("this run has no lanes (it is not a --heavy run)")
        driver = self.driver
        if driver is None or not driver.running or driver.heavy_run is None:
            raise DecisionError("this run's lanes are not going (not started yet, or ended)")
        try:
            driver.stop_lane(lane)
        except KeyError:
            raise DecisionError(f"no lane {lane!r} in this run") from None

    async def replay(self, call_id: str) -> dict[str, Any]:
        from k2lab.events import event_from_dict
        from k2lab.trace.replay import replay_call

        sandbox = self.sandbox or await self.session.sandbox_for(self.settings)
        events = [event_from_dict(e) for e in self.events]
        result = await replay_call(
            events, call_id, sandbox, self.settings.tool_timeout, tools=self.session.mcp_tools()
        )
        return result.to_dict()

    def fork(self, call_id: str, code: str | None, run_id: str | None = None) -> str:
        """The widget's "Fork from here"; ``run_id``: a heavy lane's (``HEAVY.K``) for its call."""
        lane = run_id if run_id and run_id != self.run_id else None
        if lane is None:
            name = self._card(call_id)["name"]
        else:
            name = proposed_name(self.events, lane, call_id) or ""
            if not name:
                return f"Cannot fork: no tool call {call_id!r} in run {lane}"
        if self.fork_slot is None or self.fork_slot_used:
            return (
                f"This cell already shows a branch: run `%%k2 fork {lane or self.run_id} "
                f"{call_id}` in a new cell (the cell body is the code to run)."
            )
        args = arguments_for(name, code) if code is not None else None
        try:
            child = self.session.fork(self, call_id, args, slot=self.fork_slot, run_id=lane)
        except UsageError as e:
            return f"Cannot fork: {e}"
        self.fork_slot_used = True
        of = f" of run {lane}" if lane else ""
        return f"Forked: branch {child.run_id} starts at call {call_id}{of} (shown below)."

    def insert_cell(self, call_id: str) -> str:
        return (
            "Inserting cells needs the k2lab JupyterLab extension; meanwhile "
            f"`%k2 export {self.run_id} --cell` puts this run's code below the cell that runs it."
        )


#: the model's note when a follow-up's sandbox lacks the copies an earlier run made
STALE_COPIES = (
    "Note from k2lab: the python tool now runs in a new sandbox; the variables the user copied "
    "earlier ({names}) are not in it (the user can copy them again with --with)."
)


def sandbox_key(s: Settings) -> tuple[Any, ...]:
    """What makes the session's sandboxes differ: a run with another key gets another one."""
    return (s.isolation, s.network, s.data)


class NotebookSession:
    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.runs: list[RunRecord] = []
        self.conversation: Any = None  # k2lab.agent.context.Conversation, shared by follow-ups
        self._providers: dict[tuple[Any, ...], ChatProvider] = {}
        self._sandboxes: dict[tuple[Any, ...], Sandbox] = {}
        self._last_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the kernel's, where runs live
        #: seconds a waiting run's views get to answer before the run counts as abandoned
        self.view_timeout = VIEW_TIMEOUT
        #: other displays to re-publish in ``wait()`` (replay tables)
        self.outputs: list[tuple[DisplayHandle, dict[str, Any]]] = []
        #: cells awaiting ``wait()``: a cell a run runs queues behind them (``notebook_busy``)
        self.waiting_cells = 0
        self._mcp: MCPToolSet | None = None
        self._mcp_key: tuple[MCPConfig, float] | None = None
        #: ``--with``: which sandbox (``sandbox_key``) holds the copies the conversation names
        self._copies: tuple[tuple[Any, ...], tuple[str, ...]] | None = None

    # -- settings ---------------------------------------------------------------------------------
    def settings(self, overrides: dict[str, Any] | None = None) -> Settings:
        config = K2Lab(config=self.shell.config) if self.shell is not None else None
        return resolve_settings(overrides, config=config)

    def secrets(self) -> list[str]:
        found = [os.environ.get(v, "") for v in _SECRET_VARS]
        found += [r.settings.api_key for r in self.runs[-1:]]
        if self._mcp is not None:
            found += self._mcp.config.secrets()
        return [s for s in found if s]

    def run(self, run_id: str) -> RunRecord:
        for r in reversed(self.runs):
            if r.run_id == run_id or (run_id == "last" and r is self.runs[-1]):
                return r
        raise KeyError(f"no run {run_id!r} in this kernel session (see `%k2 runs`)")

    def reset(self) -> None:
        self.conversation = None
        self._copies = None

    # -- model and sandbox, reused across runs ----------------------------------------------------
    def provider_for(self, s: Settings) -> ChatProvider:
        from k2lab.runtime import open_provider

        key = (s.base_url, s.model, s.api_key, s.temperature, s.max_tokens, s.uses_demo_model)
        if key not in self._providers:
            self._providers[key] = open_provider(s)
        return self._providers[key]

    async def sandbox_for(self, s: Settings, *, in_kernel: bool = False) -> Sandbox:
        if in_kernel:
            from k2lab.sandbox.in_kernel import InKernelSandbox

            return InKernelSandbox(self.shell, secrets=self.secrets())
        from k2lab.runtime import open_sandbox

        key = sandbox_key(s)
        if key not in self._sandboxes:
            self._sandboxes[key] = await open_sandbox(s)
        return self._sandboxes[key]

    async def mcp_for(self, cfg: MCPConfig | None, timeout: float) -> MCPToolSet | None:
        """The session's MCP servers for ``cfg``: the running set when it has the same config and
        timeout and none of its servers died, else a new set (the old one stopped first)."""
        if cfg is None or not cfg.servers:
            return None
        ts = self._mcp
        if ts is not None and self._mcp_key == (cfg, timeout) and all(s.alive for s in ts.servers):
            return ts
        await self.close_mcp()
        from k2lab.tools.mcp import MCPToolSet

        ts = MCPToolSet(cfg, timeout=timeout)
        await ts.__aenter__()
        self._mcp, self._mcp_key = ts, (cfg, timeout)
        return ts

    async def close_mcp(self) -> None:
        """Stop the session's MCP servers, if any."""
        ts, self._mcp, self._mcp_key = self._mcp, None, None
        if ts is not None:
            with contextlib.suppress(Exception):
                await ts.__aexit__(None, None, None)

    def mcp_tools(self) -> dict[str, Any]:
        """The running MCP servers' tools by name: what a replay may call again (read-only)."""
        return {t.name: t for t in self._mcp.tools} if self._mcp is not None else {}

    def mcp_running(self) -> bool:
        return self._mcp is not None and any(s.alive for s in self._mcp.servers)

    # -- runs -------------------------------------------------------------------------------------
    def start_run(
        self,
        prompt: str,
        settings: Settings,
        *,
        in_kernel: bool = False,
        new: bool = False,
        conversation: Any = None,
        parent_run_id: str | None = None,
        show: bool = True,
        mcp: MCPConfig | None = None,
        verify_rounds: int = 0,
        heavy: int = 0,
        heavy_concurrency: int | None = None,
        with_vars: tuple[str, ...] = (),
        notebook_tools: bool = False,
    ) -> RunRecord:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            raise UsageError(
                "%k2 runs on a Jupyter kernel's event loop; in a terminal use `k2lab run PROMPT`"
            ) from None
        variables = self.variables_for(with_vars, in_kernel=in_kernel)
        if notebook_tools and heavy:  # lanes in parallel would edit one notebook at once
            raise UsageError("%k2 --notebook-tools: not with --heavy (one agent edits a notebook)")
        if heavy:
            spec = RunSpec(settings, prompt, heavy=heavy, mcp=mcp, variables=variables)
            # under ask, each lane's calls wait for their own buttons (PendingDecisions keys
            # them by (run_id, call_id))
            problem = heavy_problem(spec, lanes_can_ask=True)
            if in_kernel:
                problem = "each lane has a sandbox of its own; it does not take --in-kernel"
            if problem is not None:
                raise UsageError(f"%k2 --heavy: {problem}")
        if new:
            self.reset()
        if conversation is not None:
            self.conversation = conversation
        rec = RunRecord(self, prompt, settings)
        rec.mcp = mcp
        rec.verify_rounds, rec.heavy, rec.heavy_concurrency = (
            verify_rounds,
            heavy,
            heavy_concurrency,
        )
        rec.variables = variables
        if notebook_tools:  # edits and runs ask a person even under auto (``decisions_for``)
            rec.notebook_tools = self.notebook_tools_for(settings)
            rec.decisions = decisions_for(settings.approve, rec.notebook_tools)
        # earlier runs waiting for a person: if their views are gone, this run must not wait
        # behind them for ever; their traces then go in this cell (shown before this run's view)
        waiting = [(r, empty_slot()) for r in self.runs if r.waits_for_person()] if show else []
        self.runs.append(rec)
        if show:
            rec.show()
        rec.task = self.schedule(
            self._drive(rec, in_kernel=in_kernel, parent=parent_run_id),
            before=self._reap(rec, waiting) if waiting else None,
        )
        return rec

    def notebook_tools_for(self, s: Settings) -> list[Tool]:
        """``--notebook-tools``: the panel's notebook tools, over a comm to this kernel's page."""
        return kernel_tools(self.notebook_busy, run_timeout=max(s.tool_timeout, 30.0))

    def notebook_busy(self) -> str | None:
        """Why a cell cannot run for a run now (``k2lab.notebook.notebook_tools``), or None."""
        if not self.waiting_cells:
            return None
        return (
            "a cell of this notebook is running `await k2lab.wait()`, which waits for this run; "
            "a cell run now would queue behind it until the run ends (run it after the run)"
        )

    def variables_for(self, names: tuple[str, ...], *, in_kernel: bool) -> dict[str, Any]:
        """``--with NAMES``: the values of the notebook's variables, each checked here (exists,
        can be pickled, within the transfer limit), so a refusal is said in the cell at once."""
        if not names:
            return {}
        if in_kernel:
            raise UsageError(
                "%k2 --with copies variables into the sandbox; with --in-kernel the code "
                "already sees this notebook's variables"
            )
        from k2lab.sandbox.base import Limits
        from k2lab.sandbox.transfer import TransferError, pickled

        ns = getattr(self.shell, "user_ns", {}) or {}
        limit = Limits().transfer_bytes
        out: dict[str, Any] = {}
        for name in names:
            if name not in ns:
                raise UsageError(f"%k2 --with: no variable {name!r} in this notebook")
            try:
                pickled(name, ns[name], limit)
            except TransferError as e:
                raise UsageError(f"%k2 --with: {e}") from None
            out[name] = ns[name]
        return out

    def copies_gone(self, s: Settings, in_kernel: bool, variables: dict[str, Any]) -> str:
        """A follow-up whose sandbox is not the one the earlier ``--with`` copies went to (other
        isolation, network or data paths): the conversation still names those copies, so the
        model is told, once, that they are not there (``RunStart.note``, before the message).
        Then remembers where this run's copies go."""
        if in_kernel:  # the code runs in the notebook itself, where the originals are
            return ""
        key = sandbox_key(s)
        gone: list[str] = []
        if self._copies is not None and self.conversation is not None:
            where, names = self._copies
            gone = [n for n in names if n not in variables] if where != key else []
        if variables:
            self._copies = (key, tuple(variables))
        elif gone:
            self._copies = None
        return STALE_COPIES.format(names=", ".join(gone)) if gone else ""

    async def _reap(self, new: RunRecord, waiting: list[tuple[RunRecord, DisplayHandle]]) -> None:
        """Stop the runs in ``waiting`` that no view answers for; show their traces in their
        slots (in the cell that started the run behind them)."""
        answers = await asyncio.gather(
            *(r.widget.probe(self.view_timeout) for r, _ in waiting), return_exceptions=True
        )
        gone = [
            (r, slot) for (r, slot), seen in zip(waiting, answers, strict=True) if seen is False
        ]
        for r, _ in gone:
            if r.waits_for_person():
                r.abandon(
                    f"stopped: this run waited for a decision on "
                    f"{', '.join(r.widget.state.pending_calls())}, but no view of it was open "
                    f"(its cell was re-run or cleared, or the page was reloaded before saving) "
                    f"when run {new.run_id} was started; its trace is shown in that "
                    "run's cell"
                )
        for r, slot in gone:
            if r.task is not None:
                with contextlib.suppress(BaseException):
                    await r.task
            if r.final is not None:
                r.extra_handles.append(slot)
                r.publish_final()

    def fork(
        self,
        parent: RunRecord,
        call_id: str,
        arguments: str | None,
        *,
        slot: Any = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """A branch of ``parent`` from ``call_id`` (stopping the parent first if it runs);
        ``run_id``: one of a heavy parent's lanes (``HEAVY.K``): the branch is a single run on
        that lane's conversation, in this session's sandbox (the lane's own one is gone)."""
        before = Conversation.from_messages(parent.conv_before)
        try:
            plan = plan_fork(before, parent.events, run_id or parent.run_id, call_id, arguments)
        except ForkError as e:
            raise UsageError(str(e)) from None
        rec = RunRecord(self, plan.prompt, parent.settings)
        rec.notebook_tools = parent.notebook_tools
        rec.decisions = plan.decisions(decisions_for(parent.settings.approve, rec.notebook_tools))
        rec.mcp = parent.mcp
        self.runs.append(rec)
        rec.show(slot=slot)
        parent.stop()
        rec.task = self.schedule(self._drive(rec, fork=plan))
        return rec

    def schedule(self, coro: Any, *, before: Any = None) -> asyncio.Task[None]:
        """Run ``coro`` after every run scheduled so far (``before`` first, if given)."""
        prev = self._last_task

        async def chained() -> None:
            if before is not None:
                with contextlib.suppress(Exception):
                    await before
            if prev is not None and not prev.done():
                with contextlib.suppress(BaseException):
                    await prev
            await coro

        task = asyncio.get_event_loop().create_task(chained())
        self._last_task = task
        return task

    async def _drive(
        self,
        rec: RunRecord,
        *,
        in_kernel: bool = False,
        parent: str | None = None,
        fork: Fork | None = None,
    ) -> None:
        """The run through the driver (``k2lab.driver``): the session's model, sandbox and MCP
        servers are passed in and stay open for the next run; the events go to the record."""
        s = rec.settings
        try:
            try:
                provider = self.provider_for(s)
            except Exception as e:
                rec.fail_before_start(f"{type(e).__name__}: {e}", "provider")
                return

            async def sandbox() -> Sandbox:
                rec.sandbox = await self.sandbox_for(s, in_kernel=in_kernel)
                return rec.sandbox

            async def mcp() -> MCPToolSet | None:
                return await self.mcp_for(rec.mcp, s.tool_timeout)

            def built(agent: Agent) -> None:
                if fork is None and self.conversation is None:
                    self.conversation = agent.conversation
                rec.agent = agent
                rec.conv_before = list(agent.conversation.messages)

            if rec.heavy and fork is None:  # no agent of its own: a lane's fork starts from
                # what every lane continued (``driver.lanes_continue``)
                rec.conv_before = (
                    list(self.conversation.messages)
                    if self.conversation is not None
                    else Conversation(default_system_prompt()).to_list()
                )
            # a fork runs on the conversation of its parent's own sandbox
            gone = self.copies_gone(s, in_kernel, rec.variables) if fork is None else ""
            spec = RunSpec(
                s,
                rec.prompt,
                note=gone or None,
                decisions=rec.decisions,
                run_id=rec.run_id,
                provider=provider,
                wrap_provider=fork.provider if fork is not None else None,
                sandbox_factory=sandbox,
                mcp_tools=mcp if rec.mcp is not None and rec.mcp.servers else None,
                verify_rounds=rec.verify_rounds,
                heavy=rec.heavy,
                heavy_concurrency=rec.heavy_concurrency,
                variables=rec.variables,
                extra_tools=rec.notebook_tools,
                # a fork runs on its own copy of the history
                conversation=fork.conversation if fork is not None else self.conversation,
                parent_run_id=fork.parent_run_id if fork is not None else parent,
                forked_from_call=fork.call_id if fork is not None else None,
            )
            rec.driver = RunDriver(spec, [rec.sink], on_agent=built)
            await rec.driver.run()
            if fork is not None and rec.agent is not None:  # follow-ups continue the branch
                self.conversation = rec.agent.conversation
        except asyncio.CancelledError:
            if not rec.events:  # stopped while queued behind another run
                rec.fail_before_start("stopped before it started", "stopped")
        finally:
            rec.widget.flush()
            if rec.events:
                rec.final = trace_bundle(rec.run_id, rec.events)
                rec.publish_final()

    def stop_all(self) -> int:
        """``%k2 stop``: stop every run of the session; returns how many were going."""
        going = [r for r in self.runs if r.task is not None and not r.task.done()]
        for r in going:
            r.stop()
        return len(going)

    async def finish_all(self, reason: str) -> None:
        """Stop every run still going, saying why, and wait until their traces are published."""
        going = [r for r in self.runs if r.going]
        for r in going:
            if r.driver is not None and r.driver.running:
                r.abandon(reason)
            else:
                r.stop()
        for r in going:
            if r.task is not None:
                with contextlib.suppress(BaseException):
                    await r.task

    def finish_at_shutdown(self, timeout: float = SHUTDOWN_WAIT) -> None:
        """The kernel is shutting down or restarting (called from ipykernel's control thread):
        stop the runs so each leaves its trace in its cell before the process goes."""
        loop = self._loop
        going = any(r.going for r in self.runs)
        if loop is None or loop.is_closed() or not (going or self._mcp is not None):
            return
        reason = "stopped: the kernel was shut down or restarted while this run was going"
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # no control thread: we cannot wait here without blocking the run
            for r in self.runs:
                if r.going:
                    r.abandon(reason)
            loop.create_task(self.close_mcp())
            return

        async def finish() -> None:
            if going:
                await self.finish_all(reason)
            await self.close_mcp()

        fut = asyncio.run_coroutine_threadsafe(finish(), loop)
        with contextlib.suppress(Exception):
            fut.result(timeout)

    async def wait(self) -> None:
        """Wait for every run of the session; then re-publish their saved traces from here."""
        self.waiting_cells += 1
        try:
            while self._last_task is not None and not self._last_task.done():
                with contextlib.suppress(BaseException):
                    await self._last_task
        finally:
            self.waiting_cells -= 1
        for rec in self.runs:
            rec.publish_final()
        for handle, bundle in self.outputs:
            handle.update(bundle, raw=True)
