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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from typing import Any

from IPython.core.error import UsageError
from IPython.display import DisplayHandle, display

from k2lab.agent.decisions import (
    Decision,
    DecisionError,
    DecisionSource,
    PendingDecisions,
    decision_source,
)
from k2lab.agent.loop import Agent
from k2lab.config import K2Lab, Settings, resolve_settings
from k2lab.events import Error, RunEnd, RunStart
from k2lab.providers.base import ChatProvider
from k2lab.sandbox.base import Sandbox
from k2lab.trace.notebook import scrub_event, trace_bundle
from k2lab.widgets.fork import ForkDecisions, ForkProvider, fork_conversation
from k2lab.widgets.state import arguments_for
from k2lab.widgets.trace_widget import TraceWidget

_SECRET_VARS = ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "OPENROUTER_API_KEY")


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
        self.handle: DisplayHandle | None = None
        self.fork_slot: DisplayHandle | None = None
        self.fork_slot_used = False
        self.task: asyncio.Task[None] | None = None
        self.agent: Agent | None = None
        self.sandbox: Sandbox | None = None
        #: the conversation's messages when this run started (a fork rebuilds from these)
        self.conv_before: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None

    # -- displays --------------------------------------------------------------------------------
    def show(self, *, slot: DisplayHandle | None = None) -> None:
        if slot is not None:  # a fork shows in its parent's slot
            self.handle = slot
            slot.update(self.widget)
            return
        self.handle = display(self.widget, display_id=True)
        self.fork_slot = display({"text/plain": ""}, raw=True, display_id=True)

    def publish_final(self) -> None:
        if self.final is not None and self.handle is not None:
            self.handle.update(self.final, raw=True)

    # -- events ------------------------------------------------------------------------------------
    def feed(self, ev: dict[str, Any]) -> None:
        ev = scrub_event(ev, self.session.secrets())
        self.events.append(ev)
        self.widget.feed(ev)

    def fail_before_start(self, message: str, kind: str) -> None:
        """A run that could not start (bad settings, sandbox failure) still leaves a trace."""
        s = self.settings
        for i, ev in enumerate(
            (
                RunStart(
                    run_id=self.run_id,
                    prompt=self.prompt,
                    model=s.model,
                    model_label="",
                    base_url=s.base_url,
                    policy=s.approve,
                    isolation="",
                    max_steps=s.max_steps,
                ),
                Error(message=message, kind=kind, fatal=True),
                RunEnd(stop_reason="error", answer="", steps=0, tool_calls=0, error=message),
            )
        ):
            ev.seq = i
            self.feed(ev.to_dict())

    # -- RunControls (what the buttons do) ---------------------------------------------------------
    def _card(self, call_id: str) -> dict[str, Any]:
        card = self.widget.state.cards.get(call_id)
        if card is None:
            raise DecisionError(f"no tool call {call_id!r} in this run")
        return card

    def decide(self, call_id: str, kind: str, *, code: str | None, feedback: str | None) -> None:
        card = self._card(call_id)
        pending = self._pending()
        if pending is None:
            raise DecisionError(f"this run's approval policy is {self.decisions.policy!r}")
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
        if self.agent is not None and self.agent.running:
            self.agent.stop()
        elif self.task is not None and not self.task.done():
            self.task.cancel()  # still queued behind another run

    async def replay(self, call_id: str) -> dict[str, Any]:
        from k2lab.events import event_from_dict
        from k2lab.trace.replay import replay_call

        sandbox = self.sandbox or await self.session.sandbox_for(self.settings)
        events = [event_from_dict(e) for e in self.events]
        result = await replay_call(events, call_id, sandbox, self.settings.tool_timeout)
        return result.to_dict()

    def fork(self, call_id: str, code: str | None) -> str:
        card = self._card(call_id)
        if self.fork_slot is None or self.fork_slot_used:
            return (
                f"This cell already shows a branch: run `%%k2 fork {self.run_id} {call_id}` "
                "in a new cell (the cell body is the code to run)."
            )
        self.fork_slot_used = True
        args = arguments_for(card["name"], code) if code is not None else None
        child = self.session.fork(self, call_id, args, slot=self.fork_slot)
        return f"Forked: branch {child.run_id} starts at call {call_id} (shown below)."

    def insert_cell(self, call_id: str) -> str:
        return (
            "Inserting cells needs the k2lab JupyterLab extension; meanwhile "
            f"`%k2 export {self.run_id} --cell` puts this run's code below the cell that runs it."
        )


class NotebookSession:
    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.runs: list[RunRecord] = []
        self.conversation: Any = None  # k2lab.agent.context.Conversation, shared by follow-ups
        self._providers: dict[tuple[Any, ...], ChatProvider] = {}
        self._sandboxes: dict[tuple[Any, ...], Sandbox] = {}
        self._last_task: asyncio.Task[None] | None = None
        #: other displays to re-publish in ``wait()`` (replay tables)
        self.outputs: list[tuple[DisplayHandle, dict[str, Any]]] = []

    # -- settings ---------------------------------------------------------------------------------
    def settings(self, overrides: dict[str, Any] | None = None) -> Settings:
        config = K2Lab(config=self.shell.config) if self.shell is not None else None
        return resolve_settings(overrides, config=config)

    def secrets(self) -> list[str]:
        found = [os.environ.get(v, "") for v in _SECRET_VARS]
        found += [r.settings.api_key for r in self.runs[-1:]]
        return [s for s in found if s]

    def run(self, run_id: str) -> RunRecord:
        for r in reversed(self.runs):
            if r.run_id == run_id or (run_id == "last" and r is self.runs[-1]):
                return r
        raise KeyError(f"no run {run_id!r} in this kernel session (see `%k2 runs`)")

    def reset(self) -> None:
        self.conversation = None

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

        key = (s.isolation, s.network)
        if key not in self._sandboxes:
            self._sandboxes[key] = await open_sandbox(s)
        return self._sandboxes[key]

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
    ) -> RunRecord:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise UsageError(
                "%k2 runs on a Jupyter kernel's event loop; in a terminal use `k2lab run PROMPT`"
            ) from None
        if new:
            self.reset()
        if conversation is not None:
            self.conversation = conversation
        rec = RunRecord(self, prompt, settings)
        self.runs.append(rec)
        if show:
            rec.show()
        rec.task = self.schedule(self._drive(rec, in_kernel=in_kernel, parent=parent_run_id))
        return rec

    def fork(
        self, parent: RunRecord, call_id: str, arguments: str | None, *, slot: Any = None
    ) -> RunRecord:
        """A branch of ``parent`` from ``call_id`` (stopping the parent first if it runs)."""
        conv, first = fork_conversation(parent.conv_before, parent.events, call_id)
        rec = RunRecord(
            self, f"[branch of run {parent.run_id} from call {call_id}]", parent.settings
        )
        rec.decisions = ForkDecisions(decision_source(parent.settings.approve), call_id, arguments)
        self.runs.append(rec)
        rec.show(slot=slot)
        parent.stop()
        rec.task = self.schedule(
            self._drive(rec, conversation=conv, first=first, parent=parent.run_id, at=call_id)
        )
        return rec

    def schedule(self, coro: Any) -> asyncio.Task[None]:
        prev = self._last_task

        async def chained() -> None:
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
        conversation: Any = None,
        first: Any = None,
        parent: str | None = None,
        at: str | None = None,
    ) -> None:
        from k2lab.runtime import build_agent

        s = rec.settings
        try:
            try:
                provider = self.provider_for(s)
                rec.sandbox = await self.sandbox_for(s, in_kernel=in_kernel)
            except Exception as e:
                rec.fail_before_start(f"{type(e).__name__}: {e}", "sandbox")
                return
            decisions = rec.decisions
            if first is not None:
                provider = ForkProvider(provider, first)
            agent = build_agent(s, provider, rec.sandbox, decisions)
            if conversation is not None:  # a fork runs on its own copy of the history
                agent.conversation = conversation
            elif self.conversation is not None:
                agent.conversation = self.conversation
            else:
                self.conversation = agent.conversation
            rec.agent = agent
            rec.conv_before = list(agent.conversation.messages)
            async for ev in agent.run(
                rec.prompt, run_id=rec.run_id, parent_run_id=parent, forked_from_call=at
            ):
                rec.feed(ev.to_dict())
            if conversation is not None:  # follow-ups continue the branch
                self.conversation = agent.conversation
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

    async def wait(self) -> None:
        """Wait for every run of the session; then re-publish their saved traces from here."""
        while self._last_task is not None and not self._last_task.done():
            with contextlib.suppress(BaseException):
                await self._last_task
        for rec in self.runs:
            rec.publish_final()
        for handle, bundle in self.outputs:
            handle.update(bundle, raw=True)
