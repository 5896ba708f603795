"""The agent loop: model step, tool calls (each decided), results back, until an answer or a budget.

Knows nothing of widgets, HTTP handlers or terminals: it yields ``k2lab.events`` and waits on a
``DecisionSource``. The loop body runs in its own task and hands events over through a queue, so
``stop()`` can cancel it wherever it is waiting (the model's stream, a person's decision, a tool),
and the run still ends with a ``run.end`` event and a conversation the next run can continue.

Invariants the faces rely on:

- The wall-time budget is a deadline on the whole run, enforced wherever the run waits (inside
  the model's stream, a decision, a tool), not only between steps: it ends with
  ``stop_reason="wall_time"``.
- Every tool call gets an id unique in the conversation (so in the run), ``functions.NAME:IDX``
  (``Conversation.assign_call_ids``), whatever id the model sent (repeated, missing, reused from an
  earlier run); ``step.end`` keeps the model's own id as ``model_id`` when it differs. Each id is
  answered exactly once in the history. Tool events carry the run's ``run_id``.
- Every event passes through the provider's ``Scrubber`` (``k2lab.scrub``) before it is emitted:
  no face, trace or session file gets a key a provider echoed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import Decision, DecisionSource
from k2lab.agent.images import StepImages
from k2lab.events import (
    Error,
    Event,
    Notice,
    RunEnd,
    RunStart,
    StepEnd,
    StepStart,
    StopReason,
    ToolDecision,
    ToolProposed,
    ToolResult,
    Usage,
    tool_message,
    user_message,
)
from k2lab.providers.base import ChatProvider, ProviderError
from k2lab.scrub import Scrubber, env_secrets
from k2lab.tools.base import requires_approval
from k2lab.tools.registry import ToolRegistry

STOPPED_BEFORE_RUN = "[not run: the user stopped the run before this tool call executed]"
STOPPED_WHILE_RUNNING = (
    "[interrupted: the user stopped the run while this tool call was running; it may have had "
    "partial effects]"
)
WALL_TIME_BEFORE_RUN = "[not run: the run's wall-time budget ended before this tool call executed]"
WALL_TIME_WHILE_RUNNING = (
    "[interrupted: the run's wall-time budget ended while this tool call was running; it may have "
    "had partial effects]"
)
ERROR_BEFORE_RUN = "[not run: the run ended with an internal error before this tool call executed]"
ERROR_WHILE_RUNNING = (
    "[interrupted: the run ended with an internal error while this tool call was running; it may "
    "have had partial effects]"
)


def stopped_texts(why: str | None) -> tuple[str, str]:
    """What the model reads for a call cut off by a stop: (while running, before it ran).

    ``why`` names a stop that was not the user's (``"the kernel restarted"``); None: the user's.
    """
    if why is None:
        return STOPPED_WHILE_RUNNING, STOPPED_BEFORE_RUN
    return (
        f"[interrupted: the run was stopped ({why}) while this tool call was running; it may "
        "have had partial effects]",
        f"[not run: the run was stopped ({why}) before this tool call executed]",
    )


def _max_tokens_of(provider: object) -> int | None:
    """The per-request ``max_tokens`` of the provider, when it has one (the demo has none)."""
    v = getattr(provider, "max_tokens", None)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _prices_of(provider: object) -> list[float] | None:
    """The published prices of the provider's model where the presets know them."""
    from k2lab.providers.presets import prices_for

    if getattr(provider, "demo", False) is True:
        return None
    p = prices_for(str(getattr(provider, "base_url", "")), str(getattr(provider, "model", "")))
    return list(p) if p else None


def default_system_prompt() -> str:
    return (resources.files("k2lab.agent") / "prompts" / "system.md").read_text(encoding="utf-8")


@dataclass(slots=True)
class Budgets:
    max_steps: int = 300
    #: seconds for the whole run; None = unlimited
    wall_time: float | None = None
    #: completion tokens (reasoning + answer) for the whole run; None = unlimited
    max_total_tokens: int | None = None
    #: the model's context window, and the fraction at which old tool outputs are hidden
    context_window: int = 262_144
    compact_at: float = 0.85
    #: the summarising compaction (``k2lab.agent.summarise``): off by default; when on and the
    #: request right after hiding tool outputs still passes the share, the older messages are
    #: summarised in one tool-less request of ``summary_max_tokens``, keeping the last
    #: ``summary_keep_steps`` steps as they are
    summarise: bool = False
    summary_keep_steps: int = 2
    summary_max_tokens: int = 4096


@dataclass(slots=True)
class Continuation:
    """What a ``FollowUp`` says when the model answered."""

    #: the answer the run stands on now (``run.end.answer`` if the run ends here or is cut)
    answer: str
    #: the next user message of the same run; None ends the run
    message: str | None = None
    #: emitted first (scrubbed and numbered like every event)
    events: list[Event] = field(default_factory=list)


class FollowUp(Protocol):
    """Continues a run past the model's answer with new user messages, inside the same run (so
    one ``run.start`` / ``run.end``, and the budgets hold across them): ``k2lab.agent.verify``.

    Once it has taken an answer, the run's answer is the one it returned: text of later steps
    does not replace it."""

    def on_answer(self, answer: str, conversation: Conversation, run_id: str) -> Continuation: ...

    def on_end(
        self, stop_reason: StopReason, error: str | None, conversation: Conversation, run_id: str
    ) -> list[Event]:
        """Called once, just before ``run.end``: close what is open (an interrupted round)."""
        ...


class _Finished(Exception):
    def __init__(self, reason: StopReason, error: str | None = None) -> None:
        self.reason = reason
        self.error = error


class Agent:
    """One conversation with a model. ``run`` may be called again for follow-ups."""

    def __init__(
        self,
        provider: ChatProvider,
        tools: ToolRegistry,
        decisions: DecisionSource,
        *,
        budgets: Budgets | None = None,
        isolation: str = "none",
        system_prompt: str | None = None,
        conversation: Conversation | None = None,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.provider = provider
        #: applied to every event before it is emitted (the provider's knows its key)
        own = getattr(provider, "scrubber", None)
        base = own if isinstance(own, Scrubber) else Scrubber(env_secrets())
        self.scrubber = base.merged(scrubber) if scrubber is not None else base
        self.tools = tools
        self.decisions = decisions
        self.budgets = budgets or Budgets()
        self.isolation = isolation
        self.conversation = conversation or Conversation(
            default_system_prompt() if system_prompt is None else system_prompt
        )
        self._task: asyncio.Task[None] | None = None
        #: why the current run was stopped, when it was not the user (see ``stop``)
        self._stop_why: str | None = None

    # -- control -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def stop(self, why: str | None = None) -> None:
        """Stop the current run wherever it is waiting; it ends with ``stop_reason="stopped"``.

        ``why`` says who stopped it when it was not the user (``"the server restarted"``, ``"the
        kernel shut down"``): the model then reads that, not that the user stopped the run.
        """
        if self._task is not None and not self._task.done():
            if self._stop_why is None:
                self._stop_why = why
            self._task.cancel()

    # -- running -------------------------------------------------------------------------------
    async def run(
        self,
        prompt: str,
        *,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        forked_from_call: str | None = None,
        follow_up: FollowUp | None = None,
        context: dict[str, str] | None = None,
        note: str | None = None,
    ) -> AsyncIterator[Event]:
        """Run ``prompt`` (what the user typed; ``context``: what they attached to it, see
        ``RunStart.context``; ``note``: what k2lab tells the model with it, ``RunStart.note``)
        to its ``run.end``, yielding every event."""
        if self.running:
            raise RuntimeError("this agent is already running; stop it or wait for run.end")
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        state = _RunState(
            run_id=run_id or uuid.uuid4().hex[:12],
            prompt=prompt,
            queue=queue,
            started=time.time(),
            scrubber=self.scrubber,
            context=context,
            note=note,
        )
        state.follow_up = follow_up
        state.emit(
            RunStart(
                run_id=state.run_id,
                prompt=prompt,
                model=self.provider.model,
                model_label=self.provider.model_label,
                base_url=self.provider.base_url,
                policy=self.decisions.policy,
                isolation=self.isolation,
                max_steps=self.budgets.max_steps,
                tools=self.tools.names,
                replayable=self.tools.replayable_names,
                parent_run_id=parent_run_id,
                forked_from_call=forked_from_call,
                demo=getattr(self.provider, "demo", False) is True,
                wall_time=self.budgets.wall_time,
                max_total_tokens=self.budgets.max_total_tokens,
                max_tokens=_max_tokens_of(self.provider),
                context_window=self.budgets.context_window,
                prices=_prices_of(self.provider),
                context=context,
                note=note,
            )
        )
        self._stop_why = None
        self._task = asyncio.ensure_future(self._drive(state))
        # Let _drive enter its try block before the consumer sees run.start: a task cancelled
        # before its first step never runs, and the run would end without run.end (a hang).
        await asyncio.sleep(0)
        try:
            while True:
                ev = await queue.get()
                if ev is None:
                    break
                yield ev
        finally:
            if not self._task.done():  # the consumer went away: do not leave a run behind
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass

    async def _drive(self, st: _RunState) -> None:
        reason: StopReason = "completed"
        error: str | None = None
        wall = self.budgets.wall_time
        deadline = asyncio.timeout(None if wall is None else max(0.0, wall - self._elapsed(st)))
        try:
            self.conversation.add_user(user_message(st.prompt, st.context, st.note))
            async with deadline:
                await self._loop(st)
        except _Finished as f:
            reason, error = f.reason, f.error
        except asyncio.CancelledError:
            reason = "stopped"
        except Exception as e:  # a bug in the loop itself: say so, keep the trace
            if isinstance(e, TimeoutError) and deadline.expired():
                reason = "wall_time"
            else:
                reason, error = "error", f"internal error: {type(e).__name__}: {e}"
                st.emit(Error(message=error, kind="internal", fatal=True))
        finally:
            self._close_open_calls(st, reason)
            if st.follow_up is not None:
                try:
                    for ev in st.follow_up.on_end(reason, error, self.conversation, st.run_id):
                        st.emit(ev)
                except Exception as e:  # never lose run.end to a follow-up's bug
                    message = f"internal error: {type(e).__name__}: {e}"
                    st.emit(Error(message=message, kind="internal"))
            st.emit(
                RunEnd(
                    stop_reason=reason,
                    answer=st.answer,
                    steps=st.step,
                    tool_calls=st.tool_calls,
                    prompt_tokens=st.prompt_tokens,
                    completion_tokens=st.completion_tokens,
                    elapsed=time.time() - st.started,
                    error=error,
                )
            )
            st.queue.put_nowait(None)

    async def _loop(self, st: _RunState) -> None:
        b = self.budgets
        while True:
            if st.step >= b.max_steps:
                raise _Finished("max_steps")
            self._check_budgets(st)
            st.step += 1
            st.emit(StepStart(step=st.step))
            self._tool_notices(st)
            if st.summary_due:
                await self._summarise(st)
            end = await self._model_step(st)
            calls = end.tool_calls
            self.conversation.add_assistant(end.content, end.reasoning, calls)
            st.open_calls = [c["id"] for c in calls]
            if end.finish_reason == "length":  # else a truncated reply passes silently
                st.emit(
                    Notice(
                        message="The model's reply was cut off at max_tokens: the answer or "
                        "tool call may be incomplete (raise max_tokens).",
                        kind="length",
                    )
                )
            if not calls:
                if st.follow_up is None:
                    st.answer = end.content
                    return
                nxt = st.follow_up.on_answer(end.content, self.conversation, st.run_id)
                for ev in nxt.events:
                    st.emit(ev)
                st.answer, st.answer_held = nxt.answer, True
                if nxt.message is None:
                    return
                self.conversation.add_user(nxt.message)
                continue
            if end.content and not st.answer_held:
                st.answer = end.content
            st.images = StepImages() if getattr(self.provider, "vision", False) is True else None
            for call in calls:
                await self._tool_call(st, call)
                self._tool_notices(st)
            self._send_images(st)

    def _tool_notices(self, st: _RunState) -> None:
        """What tools reported since the last look (an MCP server that failed or died)."""
        for message, kind in self.tools.take_notices():
            st.emit(Notice(message=message, kind=kind))

    @staticmethod
    def _elapsed(st: _RunState) -> float:
        return time.time() - st.started

    def _check_budgets(self, st: _RunState) -> None:
        b = self.budgets
        if b.wall_time is not None and self._elapsed(st) > b.wall_time:
            raise _Finished("wall_time")
        if b.max_total_tokens is not None and st.completion_tokens >= b.max_total_tokens:
            raise _Finished("tokens")

    async def _model_step(self, st: _RunState) -> StepEnd:
        retried_overflow = False
        while True:
            try:
                end: StepEnd | None = None
                async for ev in self.provider.stream(
                    self.conversation, self.tools.schemas(), step=st.step
                ):
                    if isinstance(ev, StepEnd):
                        end = ev
                        # unique ids before any face sees them (repeated/missing ids hang runs)
                        ev.tool_calls = self.conversation.assign_call_ids(ev.tool_calls)
                    elif isinstance(ev, Usage):
                        st.prompt_tokens += ev.prompt_tokens
                        st.completion_tokens += ev.completion_tokens
                        st.last_prompt_tokens = ev.prompt_tokens
                    st.emit(ev)
                if end is None:
                    raise ProviderError("the provider ended the step without a message")
                self._maybe_compact(st)
                return end
            except ProviderError as e:
                if e.kind == "context_overflow" and not retried_overflow:
                    retried_overflow = True
                    if self.conversation.hide_tool_outputs():
                        st.emit(
                            Notice(
                                message="The context window overflowed: all earlier tool outputs "
                                "were hidden from the model, and the step is retried.",
                                kind="compaction",
                            )
                        )
                        continue
                st.emit(Error(message=str(e), kind=e.kind, fatal=True))
                raise _Finished("error", str(e)) from e

    def _maybe_compact(self, st: _RunState) -> None:
        b = self.budgets
        tokens = st.last_prompt_tokens
        if tokens > b.compact_at * b.context_window:
            st.last_prompt_tokens = 0  # stale now: do not hide again before new usage arrives
            if b.summarise and not st.summary_failed and st.hid_at_step == st.step - 1:
                # the request right after the hiding still passes the share: summarise
                st.summary_due, st.summary_tokens = True, tokens
                return
            n = self.conversation.hide_tool_outputs()
            st.hid_at_step = st.step
            if not n and b.summarise and not st.summary_failed:
                st.summary_due, st.summary_tokens = True, tokens  # nothing left to hide
            if n:
                st.emit(
                    Notice(
                        message=f"Context at {tokens} tokens "
                        f"({round(100 * tokens / b.context_window)}% of the "
                        f"{b.context_window}-token window, over the {b.compact_at:.0%} share): "
                        f"hid {n} earlier tool outputs from the model to stay within the window.",
                        kind="compaction",
                    )
                )

    async def _summarise(self, st: _RunState) -> None:
        """The summarising compaction, once (``k2lab.agent.summarise``): a failure is a notice
        and the run goes on with hidden outputs only (no further summary in this run)."""
        from k2lab.agent.summarise import summarise

        b = self.budgets
        st.summary_due = False
        st.hid_at_step = -2
        side: list[Event] = []
        head = (
            f"Context at {st.summary_tokens} tokens after hiding earlier tool outputs, still "
            f"over the {b.compact_at:.0%} share of the {b.context_window}-token window"
        )
        try:
            done = await summarise(
                self.provider,
                self.conversation,
                keep_steps=b.summary_keep_steps,
                max_tokens=b.summary_max_tokens,
                context_window=b.context_window,
                step=st.step,
                side_events=side,
            )
        except Exception as e:  # a provider error (or a bug): visible, and the run goes on
            if not isinstance(e, ProviderError):
                e = ProviderError(f"internal error: {type(e).__name__}: {e}", kind="internal")
            for ev in side:
                st.emit(ev)
            st.summary_failed = True
            st.emit(
                Notice(
                    message=f"{head}: the summary request failed ({e}); the run goes on with "
                    "earlier tool outputs hidden only (no further summary in this run).",
                    kind="compaction",
                    compaction="failed",
                )
            )
            return
        for ev in side:
            st.emit(ev)
        if done is None:
            return
        st.prompt_tokens += done.prompt_tokens
        st.completion_tokens += done.completion_tokens
        used = f"{done.prompt_tokens} in / {done.completion_tokens} out tokens"
        if done.error:
            st.summary_failed = True
            st.emit(
                Notice(
                    message=f"{head}: {done.error} ({used}); the run goes on with earlier tool "
                    "outputs hidden only (no further summary in this run).",
                    kind="compaction",
                    compaction="failed",
                )
            )
            return
        st.emit(
            Notice(
                message=f"{head}: summarised {done.messages} earlier messages into one summary "
                f"of {len(done.text)} characters ({done.completion_tokens} tokens; the summary "
                f"request used {used}); the last {b.summary_keep_steps} steps are kept as they "
                "are, the full messages stay in the trace, and the prompt cache restarts once."
                f"\n\nSummary:\n{done.text}",
                kind="compaction",
                # what a rebuild needs to replace the same messages (``k2lab.agent.history``)
                compaction="summary",
                summary=done.text,
                summarised=done.messages,
                keep_steps=b.summary_keep_steps,
            )
        )

    async def _tool_call(self, st: _RunState, call: dict[str, str]) -> None:
        cid, name, args = call["id"], call["name"], call["arguments"]
        checked = self.tools.check(name, args)
        problem = checked if isinstance(checked, str) else None
        proposal = ToolProposed(
            step=st.step, call_id=cid, name=name, arguments=args, problem=problem, run_id=st.run_id
        )
        st.emit(proposal)
        st.proposed[cid] = name
        st.tool_calls += 1
        if problem is not None:
            self._result(st, ToolResult(call_id=cid, name=name, ok=False, output=problem))
            return
        assert not isinstance(checked, str)
        decision: Decision
        # a decision made up front (a fork's chosen call, ``k2lab.agent.fork``) wins over that
        up_front = getattr(self.decisions, "decided_up_front", None)
        if (
            self.decisions.policy == "ask"
            and not requires_approval(checked[0])
            and not (callable(up_front) and up_front(cid))
        ):
            # the tool's own configuration relaxes "ask" (an MCP server with approve=auto)
            decision = Decision("approve", by="policy")
        else:
            decision = await self.decisions.decide(proposal)
        decided = ToolDecision(
            run_id=st.run_id,
            call_id=cid,
            decision=decision.kind,
            by=decision.by,
            arguments=decision.arguments,
            feedback=decision.feedback,
        )
        st.emit(decided)
        if decision.kind == "reject":
            text = "The user rejected this tool call; it was not executed."
            if decision.feedback:
                text += f" Feedback from the user: {decision.feedback}"
            self._result(st, ToolResult(call_id=cid, name=name, ok=False, output=text))
            return
        if decision.kind == "edit" and decision.arguments is not None:
            checked = self.tools.check(name, decision.arguments)
            if isinstance(checked, str):
                self._result(st, ToolResult(call_id=cid, name=name, ok=False, output=checked))
                return
        assert not isinstance(checked, str)  # problems returned above
        tool, params = checked
        t0 = time.perf_counter()
        st.running_call = cid
        out = await self.tools.call(tool, params)
        st.running_call = None
        edited = decision.kind == "edit"
        self._result(
            st,
            ToolResult(
                call_id=cid,
                name=name,
                ok=out.ok,
                output=out.output,  # the edit is a field; the model's note is added below
                display=out.display,
                duration=time.perf_counter() - t0,
                truncated=out.truncated,
                people_output=out.people_output,
                edited=edited,
            ),
            edited_arguments=decided.arguments if edited else None,
        )

    def _result(
        self, st: _RunState, res: ToolResult, *, edited_arguments: str | None = None
    ) -> None:
        if res.call_id not in st.open_calls:  # answered already: never twice in the history
            return
        st.open_calls.remove(res.call_id)
        res.run_id = st.run_id
        if st.images is not None and res.display:  # a vision model: the images go too
            res.sent_to_model = st.images.offer(res.call_id, res.display)
        st.emit(res)  # scrubbed first: the model reads what the trace shows
        # ``edited_arguments`` from the emitted (scrubbed) tool.decision, as a rebuild reads it
        self.conversation.add_tool_result(res.call_id, tool_message(res.output, edited_arguments))

    def _send_images(self, st: _RunState) -> None:
        """The step's images as one user message after its tool messages (vision models)."""
        if st.images is not None:
            parts = st.images.message(self.scrubber.exact)
            st.images = None
            if parts is not None:
                self.conversation.add_tool_images(parts)

    def _close_open_calls(self, st: _RunState, reason: StopReason) -> None:
        """After a stop, answer calls that never ran, so the history stays valid for a follow-up.

        The text says what ended the run: the user, the wall time, an internal error, or the
        ``why`` given to ``stop``."""
        if reason == "wall_time":
            running, waiting = WALL_TIME_WHILE_RUNNING, WALL_TIME_BEFORE_RUN
        elif reason == "error":
            running, waiting = ERROR_WHILE_RUNNING, ERROR_BEFORE_RUN
        else:
            running, waiting = stopped_texts(self._stop_why)
        for cid in list(st.open_calls):
            text = running if cid == st.running_call else waiting
            self.conversation.add_tool_result(cid, text)
            name = st.proposed.get(cid)
            if name is not None:  # faces showed a card for it: close the card too
                st.emit(ToolResult(call_id=cid, name=name, ok=False, output=text, run_id=st.run_id))
        st.open_calls.clear()


class _RunState:
    __slots__ = (
        "run_id",
        "prompt",
        "context",
        "note",
        "queue",
        "started",
        "seq",
        "step",
        "tool_calls",
        "answer",
        "prompt_tokens",
        "completion_tokens",
        "last_prompt_tokens",
        "open_calls",
        "running_call",
        "proposed",
        "scrub",
        "follow_up",
        "answer_held",
        "images",
        "hid_at_step",
        "summary_due",
        "summary_tokens",
        "summary_failed",
    )

    def __init__(
        self,
        *,
        run_id: str,
        prompt: str,
        queue: asyncio.Queue[Event | None],
        started: float,
        scrubber: Scrubber,
        context: dict[str, str] | None = None,
        note: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.prompt = prompt
        self.context = context
        self.note = note
        self.queue = queue
        self.started = started
        self.seq = 0
        self.step = 0
        self.tool_calls = 0
        self.answer = ""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.last_prompt_tokens = 0
        self.open_calls: list[str] = []
        self.running_call: str | None = None
        #: call id -> tool name, for every call a face has been shown
        self.proposed: dict[str, str] = {}
        self.scrub = scrubber.event
        self.follow_up: FollowUp | None = None
        #: a follow-up took an answer: step texts no longer replace it
        self.answer_held = False
        #: the images of this step's tool results for a vision model (``k2lab.agent.images``)
        self.images: StepImages | None = None
        #: the summarising compaction: the step whose usage made the hiding, whether a summary
        #: is due before the next request (and the prompt tokens that made it due), and whether
        #: a summary failed in this run (no further try)
        self.hid_at_step = -2
        self.summary_due = False
        self.summary_tokens = 0
        self.summary_failed = False

    def emit(self, ev: Event) -> None:
        self.scrub(ev)
        ev.seq = self.seq
        self.seq += 1
        self.queue.put_nowait(ev)
