"""Heavy mode: N trajectories of one prompt in parallel, then one reflective aggregation.

``HeavyRun(n, make_lane, provider).run(prompt)`` yields the events of every lane, interleaved as
they come, then those of the aggregation:

- **Lanes.** Each lane ("1".."N") is its own ``Agent`` with its own conversation and its own
  sandbox, built by ``make_lane(name)`` (the face's factory: it knows settings, decisions, the
  sandbox kind); nothing is shared between lanes but the provider's HTTP client. At most
  ``concurrency`` lanes (default N) live at once (an ``asyncio.Semaphore``; a lane holds it from
  its sandbox's start to its shutdown). A lane's sandbox starts *while* its first model request
  streams (``LateSandbox``: the first tool call waits for the start), launched just after that
  request went out (``_start_after_send``), so sandbox starts and model requests of all lanes
  overlap and no kernel launch holds a first request back. Each lane is one run: ``run.start``
  .. ``run.end``, its own ``run_id`` (``HEAVYID.K``) and ``seq``; every event carries ``lane``.
- **Failure is per lane.** A lane whose provider fails, whose sandbox does not start (an ``error``
  event of kind ``sandbox`` before its ``run.end``, which then reads ``stop_reason="error"``), or
  that is stopped (``stop(lane)``) ends alone; the others go on.
- **Aggregation** (lane ``"aggregate"``, run id ``HEAVYID.aggregate``): when every lane has ended,
  one model call through the same provider, with no tools, whose prompt (``aggregation_prompt``)
  holds the task, each finished lane's answer and the evidence behind it (its executed tool calls'
  code and results, newest kept first, bounded to ``evidence_chars`` per lane with a visible
  ``[... omitted]``), and which lanes did not finish and why. The system prompt
  (``prompts/aggregate.md``) asks it to reconcile agreement and conflicts on the evidence (not a
  majority vote) and to end with a "Lanes followed:" paragraph. Its events stream like a run's.
- **Verifying the aggregated answer** (``aggregate_follow_up``, e.g. a ``VerifyPass``, with
  ``verify_lane``): the aggregation step stays tool-less, but from the verify round on it is
  offered the ``python`` tool over a sandbox of its own, built by ``verify_lane("aggregate")``
  like a lane's (fresh, same isolation and data settings, the run's decisions), started while
  the aggregation's first request streams and closed when the aggregation ends. None of the
  lanes' state is in it: the check re-computes from the evidence.
- ``stop()`` stops every lane and the aggregation (none starts after it). ``outcome`` says how it
  ended: the aggregated answer, or why there is none (all lanes failed, the aggregation failed,
  stopped).

What the lanes wrote is hostile input to the aggregation: it goes inside ``<lane>`` blocks that a
lane's text cannot close (``</lane`` in it is escaped), and the system prompt says to judge it and
follow none of its instructions. The aggregation's run passes through the provider's scrubber like
every run; events built here (a lane that could not be built) go through it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.decisions import AutoApprove
from k2lab.agent.loop import Agent, Budgets, Continuation, FollowUp
from k2lab.events import Error, Event, RunEnd, RunStart, StepEnd, StepStart, StopReason
from k2lab.providers.base import ChatProvider
from k2lab.sandbox.base import ExecutionResult, Sandbox
from k2lab.scrub import Scrubber, env_secrets
from k2lab.tools.registry import ToolRegistry
from k2lab.trace.view import RunView

AGGREGATE = "aggregate"
#: characters of evidence (tool calls' code and results) per lane in the aggregation prompt
EVIDENCE_CHARS = 6000
#: characters of one lane's answer in the aggregation prompt
ANSWER_CHARS = 8000
#: characters of one call's code, and of its result, before the lane's budget applies
CALL_PART_CHARS = 1500
#: seconds a lane's sandbox start waits after its first model request was issued (``_drive``)
SEND_WINDOW = 0.03
#: steps of the aggregation run (it has no tools: one step answers; more only if it tried a tool)
AGGREGATE_STEPS = 3

LaneStatus = str  # waiting | starting | running | answered | failed | stopped


@dataclass
class LaneSetup:
    """What ``make_lane`` returns for one lane."""

    agent: Agent
    #: started concurrently with the lane's first model request; raising fails the lane
    start: Callable[[], Awaitable[None]] | None = None
    #: called once the lane has ended (its sandbox's shutdown)
    close: Callable[[], Awaitable[None]] | None = None
    #: where the lane's sandbox has the user's data (the data note of its system prompt)
    data_note: str = ""


LaneFactory = Callable[[str], Awaitable[LaneSetup]]


@dataclass
class Lane:
    """One lane's state, for faces (status lines) and the aggregation prompt."""

    name: str
    run_id: str
    status: LaneStatus = "waiting"
    #: why the lane did not finish ("" while it runs or once it answered)
    error: str = ""
    view: RunView = field(default_factory=RunView)
    end: RunEnd | None = None
    agent: Agent | None = None
    #: seconds its sandbox took to start (None: not started, or failed)
    sandbox_seconds: float | None = None
    started: float | None = None
    ended: float | None = None
    task: asyncio.Task[None] | None = None
    stop_requested: bool = False

    @property
    def finished(self) -> bool:
        """It answered: its answer goes to the aggregation."""
        return self.status == "answered"

    @property
    def answer(self) -> str:
        return self.end.answer if self.end is not None else ""

    def tokens(self) -> tuple[int, int]:
        run = self.view.run
        if run is None:
            return 0, 0
        return int(run.totals["prompt_tokens"]), int(run.totals["completion_tokens"])


@dataclass
class HeavyOutcome:
    #: "completed" when the aggregation answered; else why there is no answer
    stop_reason: StopReason
    answer: str = ""
    error: str | None = None
    finished: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class LateSandbox:
    """A sandbox started in the background: calls wait for the start, which runs while the
    lane's first model request streams. ``isolation`` is the expected level until the start
    says otherwise (the face resolves it up front). A failed start makes every call a clear
    error result (and the lane is stopped: ``HeavyRun``)."""

    def __init__(self, inner: Sandbox, *, expected_isolation: str | None = None) -> None:
        self.inner = inner
        self._expected = expected_isolation
        self._started: asyncio.Future[None] | None = None
        self.start_seconds: float | None = None

    @property
    def isolation(self) -> str:
        started = self._started is not None and self._started.done()
        if self._expected is not None and not started:
            return self._expected
        return self.inner.isolation

    @property
    def network(self) -> Any:
        return getattr(self.inner, "network", None)

    @property
    def isolation_note(self) -> str:
        return str(getattr(self.inner, "isolation_note", ""))

    def data_note_for_model(self) -> str:
        """The inner sandbox's data note (the lane's system prompt says where the data is)."""
        note_of = getattr(self.inner, "data_note_for_model", None)
        return str(note_of()) if callable(note_of) else ""

    async def start(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        t0 = time.perf_counter()
        await self.inner.start()
        self.start_seconds = time.perf_counter() - t0

    async def _ready(self) -> str | None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        try:
            await asyncio.shield(self._started)
        except asyncio.CancelledError:
            if self._started.cancelled():
                return "the sandbox's start was cancelled"
            raise
        except Exception as e:
            return f"the sandbox did not start: {e}"
        return None

    async def execute(self, code: str, *, timeout: float) -> ExecutionResult:
        problem = await self._ready()
        if problem is not None:
            return ExecutionResult(ok=False, text=f"[{problem}]")
        return await self.inner.execute(code, timeout=timeout)

    async def restart(self) -> None:
        if await self._ready() is None:
            await self.inner.restart()

    async def shutdown(self) -> None:
        if self._started is not None and not self._started.done():
            self._started.cancel()
            with contextlib.suppress(BaseException):
                await self._started
        await self.inner.shutdown()


def _prompt_text(name: str) -> str:
    return (resources.files("k2lab.agent") / "prompts" / name).read_text(encoding="utf-8").strip()


def aggregate_system_prompt() -> str:
    return _prompt_text("aggregate.md")


def clip_middle(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters: head and tail kept, the middle marked omitted."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40)
    head, tail = keep * 2 // 3, keep - keep * 2 // 3
    gone = len(text) - head - tail
    return f"{text[:head]}\n[... omitted {gone} chars]\n{text[len(text) - tail :] if tail else ''}"


def _guard(text: str) -> str:
    """A lane's text cannot close (or open) the block it sits in."""
    return text.replace("</lane", "<\\/lane").replace("<lane", "<\\lane")


def _code(arguments: str) -> str:
    import json

    try:
        args = json.loads(arguments)
    except (ValueError, TypeError):
        return arguments
    code = args.get("code") if isinstance(args, dict) else None
    return code if isinstance(code, str) else arguments


def lane_evidence(view: RunView, limit: int = EVIDENCE_CHARS) -> str:
    """The executed tool calls of a lane (code and result), newest first kept, within ``limit``."""
    entries: list[str] = []
    calls = [c for c in view.all_calls() if c.executed and c.result is not None]
    for i, c in enumerate(calls, 1):
        result = c.result or {}
        ok = "ok" if result.get("ok") else "error"
        output = str(result.get("shown_output", result.get("output", "")))
        entries.append(
            f"[tool call {i}: {c.name}]\n"
            f"code:\n{clip_middle(_code(c.ran_arguments), CALL_PART_CHARS)}\n"
            f"result ({ok}):\n{clip_middle(output.rstrip(), CALL_PART_CHARS)}"
        )
    if not entries:
        return "(no tool calls ran)"
    kept: list[str] = []
    used = 0
    for entry in reversed(entries):
        if used + len(entry) + 2 > limit:
            if not kept:  # even the last call alone is too long: keep what fits of it
                kept.append(clip_middle(entry, max(200, limit - 80)))
            break
        kept.append(entry)
        used += len(entry) + 2
    kept.reverse()
    omitted = len(entries) - len(kept)
    head = [f"[... omitted: {omitted} earlier tool call(s)]"] if omitted else []
    return "\n\n".join(head + kept)


def aggregation_prompt(
    task: str, lanes: list[Lane], *, evidence_chars: int = EVIDENCE_CHARS
) -> str:
    """The user message of the aggregation step."""
    done = [ln for ln in lanes if ln.finished]
    parts = [
        f"Task given to {len(lanes)} independent lane(s):",
        "<task>",
        task.strip(),
        "</task>",
        "",
    ]
    for ln in done:
        run = ln.view.run
        steps = run.totals["steps"] if run is not None else 0
        calls = run.totals["calls"] if run is not None else 0
        parts += [
            f'<lane id="{ln.name}" status="answered" steps="{steps}" tool_calls="{calls}">',
            "<answer>",
            _guard(clip_middle(ln.answer.strip() or "(empty answer)", ANSWER_CHARS)),
            "</answer>",
            "<evidence>",
            _guard(lane_evidence(ln.view, evidence_chars)),
            "</evidence>",
            "</lane>",
            "",
        ]
    failed = [ln for ln in lanes if not ln.finished]
    if failed:
        parts.append("Lanes that did not finish (no answer from them):")
        parts += [f"- lane {ln.name}: {ln.error or ln.status}" for ln in failed]
    else:
        parts.append("Every lane finished.")
    names = ", ".join(ln.name for ln in done)
    parts += [
        "",
        f"Reconcile the answers of lanes {names} on their evidence and write the final answer "
        'to the task, ending with the "Lanes followed:" paragraph.',
    ]
    return "\n".join(parts)


_WHY = {
    "max_steps": "it reached its step budget before answering",
    "wall_time": "it ran out of wall time before answering",
    "tokens": "it used its token budget before answering",
    "stopped": "it was stopped",
}


class HeavyRun:
    def __init__(
        self,
        n: int,
        make_lane: LaneFactory,
        provider: ChatProvider,
        *,
        concurrency: int | None = None,
        evidence_chars: int = EVIDENCE_CHARS,
        aggregate_budgets: Budgets | None = None,
        run_id: str | None = None,
        aggregate_follow_up: FollowUp | None = None,
        verify_lane: LaneFactory | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("heavy mode needs at least one lane")
        c = n if concurrency is None else concurrency
        if c < 1:
            raise ValueError("heavy concurrency must be at least 1")
        self.n = n
        self.concurrency = min(c, n)
        self.make_lane = make_lane
        self.provider = provider
        self.evidence_chars = evidence_chars
        #: e.g. a ``VerifyPass``: runs in the aggregation's run, on its answer
        self.aggregate_follow_up = aggregate_follow_up
        #: builds the verify round's tools and sandbox (called with ``"aggregate"``)
        self.verify_lane = verify_lane
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.lanes = [Lane(str(i), f"{self.run_id}.{i}") for i in range(1, n + 1)]
        self.aggregate = Lane(AGGREGATE, f"{self.run_id}.{AGGREGATE}")
        b = aggregate_budgets or Budgets()
        tools_later = verify_lane is not None and aggregate_follow_up is not None
        self.aggregate_budgets = Budgets(
            # a verify round with tools takes steps of its own (the run's step budget)
            max_steps=b.max_steps if tools_later else min(AGGREGATE_STEPS, b.max_steps),
            wall_time=b.wall_time,
            max_total_tokens=b.max_total_tokens,
            context_window=b.context_window,
            compact_at=b.compact_at,
        )
        own = getattr(provider, "scrubber", None)
        self.scrubber = own if isinstance(own, Scrubber) else Scrubber(env_secrets())
        self.stopped = False
        self.outcome: HeavyOutcome | None = None
        self.lanes_ended: float | None = None
        #: every lane's task, kept after the lane signalled its end: its sandbox's shutdown
        #: still runs in it, and ``run()`` awaits them all before it returns
        self._tasks: list[asyncio.Task[None]] = []

    # -- control -------------------------------------------------------------------------------
    def lane(self, name: str) -> Lane:
        for ln in [*self.lanes, self.aggregate]:
            if ln.name == name:
                return ln
        raise KeyError(f"no lane {name!r}")

    def stop(self, lane: str | None = None, why: str | None = None) -> None:
        """Stop one lane (the others go on), or everything (``lane=None``): every lane and the
        aggregation, and no aggregation starts after it."""
        if lane is None:
            self.stopped = True
            targets = [*self.lanes, self.aggregate]
        else:
            targets = [self.lane(lane)]
        for ln in targets:
            ln.stop_requested = True
            if ln.agent is not None and ln.agent.running:
                ln.agent.stop(why)
            elif ln.task is not None and not ln.task.done():
                ln.task.cancel()

    # -- running -------------------------------------------------------------------------------
    async def run(self, prompt: str) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event | Lane] = asyncio.Queue()
        sem = asyncio.Semaphore(self.concurrency)
        for ln in self.lanes:
            ln.task = asyncio.ensure_future(self._lane(ln, prompt, sem, queue))
            self._tasks.append(ln.task)
        try:
            waiting = len(self.lanes)
            while waiting:
                item = await queue.get()
                if isinstance(item, Lane):
                    waiting -= 1
                    continue
                yield item
            self.lanes_ended = time.time()
            finished = [ln.name for ln in self.lanes if ln.finished]
            failed = [ln.name for ln in self.lanes if not ln.finished]
            if self.stopped:
                self.outcome = HeavyOutcome("stopped", finished=finished, failed=failed)
            elif not finished:
                why = "; ".join(f"lane {ln.name}: {ln.error or ln.status}" for ln in self.lanes)
                self.outcome = HeavyOutcome(
                    "error",
                    error=f"all {self.n} lanes failed ({why})",
                    finished=finished,
                    failed=failed,
                )
            else:
                async for ev in self._aggregate(prompt):
                    yield ev
                end = self.aggregate.end
                assert end is not None
                error = end.error
                if end.stop_reason != "completed" and error is None:
                    error = f"the aggregation ended: {end.stop_reason}"
                reason: StopReason = "stopped" if self.stopped else end.stop_reason
                self.outcome = HeavyOutcome(
                    reason, answer=end.answer, error=error, finished=finished, failed=failed
                )
        finally:
            self.stop_all_quietly()
            # every lane's task, those that already signalled their end included: their
            # sandboxes' shutdowns are awaited here, not left behind the run
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop_all_quietly(self) -> None:
        """Leave nothing running (the consumer went away): lanes and aggregation."""
        for ln in [*self.lanes, self.aggregate]:
            if ln.agent is not None and ln.agent.running:
                ln.agent.stop()
            elif ln.task is not None and not ln.task.done():
                ln.task.cancel()

    def _emit(self, ln: Lane, ev: Event, queue: asyncio.Queue[Event | Lane]) -> None:
        ev.lane = ln.name
        ln.view.apply(ev)
        queue.put_nowait(ev)

    async def _lane(
        self, ln: Lane, prompt: str, sem: asyncio.Semaphore, queue: asyncio.Queue[Event | Lane]
    ) -> None:
        setup: LaneSetup | None = None
        try:
            async with sem:
                if ln.stop_requested or self.stopped:
                    ln.status, ln.error = "stopped", "it was stopped before it started"
                    return
                ln.status, ln.started = "starting", time.time()
                try:
                    setup = await self.make_lane(ln.name)
                except Exception as e:
                    self._unbuilt(ln, prompt, f"the lane could not be set up: {e}", queue)
                    return
                ln.agent = setup.agent
                await self._drive(ln, setup, prompt, queue)
                queue.put_nowait(ln)  # the lane has ended: the aggregation need not wait
                ln.task = None  # signalled; the shutdown below still holds the semaphore
                if setup.close is not None:
                    with contextlib.suppress(Exception):
                        await setup.close()
                setup = None
        except asyncio.CancelledError:
            if ln.status in ("waiting", "starting"):
                ln.status, ln.error = "stopped", "it was stopped before it started"
        except Exception as e:  # a bug here must not take the other lanes down
            ln.status, ln.error = "failed", f"internal error: {type(e).__name__}: {e}"
        finally:
            if setup is not None and setup.close is not None:
                with contextlib.suppress(BaseException):
                    await setup.close()
            if ln.ended is None:
                ln.ended = time.time()
            if ln.task is not None:  # not signalled yet
                queue.put_nowait(ln)

    async def _drive(
        self, ln: Lane, setup: LaneSetup, prompt: str, queue: asyncio.Queue[Event | Lane]
    ) -> None:
        agent = setup.agent
        broken: list[str] = []
        starting: asyncio.Future[None] | None = None
        answered = asyncio.Event()  # the first model step has ended: no reason to wait longer

        def start_sandbox() -> asyncio.Future[None] | None:
            if setup.start is None:
                return None
            fut = asyncio.ensure_future(self._start_after_send(ln, setup.start, answered))

            def started(t: asyncio.Future[None]) -> None:
                if t.cancelled() or t.exception() is None:
                    return
                broken.append(f"its sandbox did not start: {t.exception()}")
                agent.stop(broken[0])

            fut.add_done_callback(started)
            return fut

        ln.status = "running"
        try:
            async for ev in agent.run(prompt, run_id=ln.run_id):
                if starting is None and isinstance(ev, StepStart):
                    # the lane's first request is being posted: its sandbox starts now, while
                    # the model thinks (see ``_start_after_send``)
                    starting = start_sandbox()
                elif isinstance(ev, StepEnd):
                    # a tool call may already be waiting on the sandbox (it starts it itself):
                    # the start's outcome, a failure too, is the lane's at once
                    answered.set()
                if isinstance(ev, RunEnd):
                    if broken and ev.stop_reason == "stopped" and not ln.stop_requested:
                        # the stop was the sandbox's failure, not a person's: say so
                        err = Error(message=broken[0], kind="sandbox", fatal=True, seq=ev.seq)
                        self._emit(ln, self.scrubber.event(err), queue)
                        ev.seq += 1
                        ev.stop_reason, ev.error = "error", self.scrubber.text(broken[0])
                    ln.end, ln.ended = ev, time.time()
                    if ev.stop_reason == "completed":
                        ln.status = "answered"
                    else:
                        ln.status = "stopped" if ev.stop_reason == "stopped" else "failed"
                        ln.error = ev.error or _WHY.get(ev.stop_reason, ev.stop_reason)
                self._emit(ln, ev, queue)
        finally:
            if starting is not None and not starting.done():
                starting.cancel()
                with contextlib.suppress(BaseException):
                    await starting

    @staticmethod
    async def _start_after_send(
        ln: Lane, start: Callable[[], Awaitable[None]], answered: asyncio.Event
    ) -> None:
        """A lane's sandbox start, ``SEND_WINDOW`` after its first request was issued (or as
        soon as the model answered, if sooner).

        A kernel's launch holds the event loop ~20 ms, and then its boot takes ~0.2 s of CPU in
        a scheduler group of its own; eight launched before the lanes' first requests had left
        held those requests back 0.3-0.9 s on 2 cores (``benchmarks/bench_heavy.py``), time the
        model's answer then came later by. The window lets every lane's request go out first;
        the model takes far longer than that to answer, and the kernel boots meanwhile.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(answered.wait(), SEND_WINDOW)
        t0 = time.perf_counter()
        await start()
        ln.sandbox_seconds = time.perf_counter() - t0

    def _unbuilt(
        self, ln: Lane, prompt: str, message: str, queue: asyncio.Queue[Event | Lane]
    ) -> None:
        """A lane that could not even be built still shows as a run that failed."""
        p = self.provider
        events: list[Event] = [
            RunStart(
                run_id=ln.run_id,
                prompt=prompt,
                model=p.model,
                model_label=p.model_label,
                base_url=p.base_url,
                policy="",
                isolation="",
                max_steps=0,
                demo=getattr(p, "demo", False) is True,
            ),
            Error(message=message, kind="sandbox", fatal=True),
            RunEnd(stop_reason="error", answer="", steps=0, tool_calls=0, error=message),
        ]
        for i, ev in enumerate(events):
            ev.seq = i
            self._emit(ln, self.scrubber.event(ev), queue)
        ln.status, ln.error, ln.ended = "failed", self.scrubber.text(message), time.time()
        ln.end = events[-1]  # type: ignore[assignment]

    async def _aggregate(self, prompt: str) -> AsyncIterator[Event]:
        ln = self.aggregate
        ln.status, ln.started = "running", time.time()
        follow_up = self.aggregate_follow_up
        setup: LaneSetup | None = None
        problem = ""
        if follow_up is not None and self.verify_lane is not None:
            try:
                setup = await self.verify_lane(ln.name)
            except Exception as e:
                problem = f"the verify pass gets no sandbox (it could not be set up: {e})"
        agent = Agent(
            self.provider,
            ToolRegistry([]),
            setup.agent.decisions if setup is not None else AutoApprove(),
            budgets=self.aggregate_budgets,
            isolation=setup.agent.isolation if setup is not None else "none",
            system_prompt=aggregate_system_prompt(),
        )
        if problem:
            agent.tools.notice(self.scrubber.text(problem), "sandbox")
        starting: asyncio.Future[None] | None = None
        if setup is not None:
            assert follow_up is not None
            follow_up = ToolsFromVerify(follow_up, agent, setup.agent.tools, setup.data_note)
            if setup.start is not None:  # while the aggregation's first request streams
                starting = asyncio.ensure_future(setup.start())
                # a failed start shows in the verify round's calls (LateSandbox's error result)
                starting.add_done_callback(lambda t: t.cancelled() or t.exception())
        ln.agent = agent
        text = aggregation_prompt(prompt, self.lanes, evidence_chars=self.evidence_chars)
        try:
            async for ev in agent.run(text, run_id=ln.run_id, follow_up=follow_up):
                ev.lane = ln.name
                ln.view.apply(ev)
                if isinstance(ev, RunEnd):
                    ln.end, ln.ended = ev, time.time()
                    ln.status = "answered" if ev.stop_reason == "completed" else "failed"
                    if ev.stop_reason == "stopped":
                        ln.status = "stopped"
                    ln.error = "" if ln.finished else (ev.error or _WHY.get(ev.stop_reason, ""))
                yield ev
        finally:
            if starting is not None and not starting.done():
                starting.cancel()
                with contextlib.suppress(BaseException):
                    await starting
            if setup is not None and setup.close is not None:
                with contextlib.suppress(BaseException):
                    await setup.close()


class ToolsFromVerify:
    """The aggregation's follow-up: the inner one (a ``VerifyPass``), and once it asks for a
    round the aggregation's agent is offered ``tools`` (its own sandbox's python) from then on;
    the first round's message says where the data is, as a lane's system prompt does."""

    def __init__(self, inner: FollowUp, agent: Agent, tools: ToolRegistry, note: str) -> None:
        self.inner = inner
        self.agent = agent
        self.tools = tools
        self.note = note
        self.armed = False

    def on_answer(self, answer: str, conversation: Conversation, run_id: str) -> Continuation:
        nxt = self.inner.on_answer(answer, conversation, run_id)
        if nxt.message is not None and not self.armed:
            self.armed = True
            for message, kind in self.agent.tools.take_notices():
                self.tools.notice(message, kind)
            self.agent.tools = self.tools
            if self.note:
                nxt.message = f"{nxt.message}\n\n{self.note}"
        return nxt

    def on_end(
        self, stop_reason: StopReason, error: str | None, conversation: Conversation, run_id: str
    ) -> list[Event]:
        return self.inner.on_end(stop_reason, error, conversation, run_id)
