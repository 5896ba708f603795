"""The one run driver: every face (``k2lab run``, ``%k2``, the server) runs the agent through here.

``RunDriver(spec, sinks).run()`` opens what the ``RunSpec`` does not bring (the provider through
``runtime.open_provider``, the sandbox through ``runtime.open_sandbox``, the MCP servers of an
``MCPConfig``), builds the agent (``runtime.build_agent``), runs it (or a ``HeavyRun`` when
``heavy > 0``, with a ``VerifyPass`` on the answer when ``verify_rounds > 0``), hands every event
to every sink, and closes what it opened, and only that: a provider, sandbox or MCP tool set the
face passed in (a long-lived session's) stays open.

Done here, once, for every face:

- **Scrubbing.** Every event passes ``Scrubber.event`` (the settings' key, the key variables, the
  base URL's secrets, the MCP servers' env and header values) before any sink sees it.
- **Failed starts.** A provider, sandbox or MCP start that fails, or a stop before the model was
  asked anything, becomes ``run.start`` + ``error`` + ``run.end`` (``stop_reason="error"``, or
  ``"stopped"``), so the trace shows why; ``RunResult.failed`` says which part failed.
- **A closing ``run.end``.** If the run raises (a bug), an ``error`` event of kind ``internal``
  and a ``run.end`` with ``stop_reason="error"`` close it; a run always ends with ``run.end``.

Sinks are callables taking an ``Event`` (a trace writer's ``write``, a progress view's ``show``,
a widget's feed, a session log's append); what they return is ignored. A sink that raises ends
the run like a bug does (``error`` of kind ``internal``, then ``run.end``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from k2lab.agent.decisions import DecisionSource, decision_source
from k2lab.config import Settings
from k2lab.events import Error, Event, RunEnd, RunStart, VerifyEnd, user_message
from k2lab.scrub import Scrubber

if TYPE_CHECKING:
    from k2lab.agent.context import Conversation
    from k2lab.agent.heavy import HeavyOutcome, HeavyRun, LaneSetup
    from k2lab.agent.loop import Agent
    from k2lab.providers.base import ChatProvider
    from k2lab.sandbox.base import Sandbox
    from k2lab.tools.base import Tool
    from k2lab.tools.mcp import MCPToolSet
    from k2lab.tools.mcp_config import MCPConfig

Sink = Callable[[Event], object]

#: the message of a heavy run under ``ask`` in a face that cannot show lanes' cards
HEAVY_NEEDS_POLICY = "heavy mode needs --approve auto or deny (approving N lanes' calls: not yet)"
HEAVY_NO_WITH = "heavy mode does not copy notebook variables (--with) into its lanes yet"


@dataclass
class RunSpec:
    """What to run and with what. Everything left ``None`` is opened by the driver (and closed
    after the run); everything passed in is the face's and stays open."""

    settings: Settings
    #: what the user typed (``context``: what they attached to it, ``RunStart.context``)
    prompt: str
    context: dict[str, str] | None = None
    #: what k2lab tells the model before the prompt (``RunStart.note``; the notebook session's
    #: "earlier copies are gone"); a follow-up's ``--with`` note joins it
    note: str | None = None
    #: who decides on tool calls (None: ``decision_source(settings.approve)``)
    decisions: DecisionSource | None = None
    run_id: str | None = None
    provider: ChatProvider | None = None
    #: wraps the provider for this run (a fork replays its recorded step first)
    wrap_provider: Callable[[ChatProvider], ChatProvider] | None = None
    sandbox: Sandbox | None = None
    #: the face's way to get a sandbox (e.g. a session's cached kernel): called, never closed
    sandbox_factory: Callable[[], Awaitable[Sandbox]] | None = None
    #: the workspace of a sandbox the driver opens (None: a fresh temporary directory)
    workspace: Path | None = None
    #: MCP servers started for this run and stopped after it
    mcp: MCPConfig | None = None
    #: the face's MCP tool set (already started, or a factory that starts it): kept open
    mcp_tools: MCPToolSet | Callable[[], Awaitable[MCPToolSet | None]] | None = None
    extra_tools: Sequence[Tool] = ()
    #: verify rounds after the answer (0: no verify pass); in heavy mode, on the aggregation
    verify_rounds: int = 0
    #: heavy mode: N lanes (each its own sandbox) and an aggregation; 0: one agent
    heavy: int = 0
    heavy_concurrency: int | None = None
    #: notebook variables copied into the sandbox before the run (``%k2 --with``), by name
    variables: Mapping[str, Any] = field(default_factory=dict)
    #: the conversation to continue (a follow-up, a fork's copy); None: a new one
    conversation: Conversation | None = None
    parent_run_id: str | None = None
    forked_from_call: str | None = None


@dataclass
class RunResult:
    #: the run's ``run.end`` (heavy: the aggregation's, or the closing one when none ran)
    end: RunEnd | None = None
    #: the last ``verify.end``: the verify pass's outcome
    verify: VerifyEnd | None = None
    heavy: HeavyOutcome | None = None
    #: which part did not start ("provider", "sandbox", "mcp", "stopped"), None when it ran
    failed: str | None = None
    #: why it did not start (scrubbed)
    failure: str = ""
    events: int = 0

    @property
    def stop_reason(self) -> str:
        if self.heavy is not None:
            return self.heavy.stop_reason
        return self.end.stop_reason if self.end is not None else "error"

    @property
    def answer(self) -> str:
        if self.heavy is not None:
            return self.heavy.answer
        return self.end.answer if self.end is not None else ""


def heavy_problem(spec: RunSpec, *, lanes_can_ask: bool = False) -> str | None:
    """Why ``spec``'s heavy run cannot go in this face (None: it can)."""
    if not spec.heavy:
        return None
    if spec.variables:
        return HEAVY_NO_WITH
    if not lanes_can_ask and spec.settings.approve == "ask" and spec.decisions is None:
        return HEAVY_NEEDS_POLICY
    return None


def lanes_share_mcp(
    make: Callable[[str], Awaitable[LaneSetup]], mcp: MCPToolSet
) -> Callable[[str], Awaitable[LaneSetup]]:
    """Heavy lanes share the run's one MCPToolSet: one process (or HTTP session) per server,
    concurrent calls multiplexed by the MCP client, as a user expects of a service. Each lane's
    agent gets the servers' secrets in its scrubber and the start-up notices; a later notice (a
    server that died) goes to every lane built so far."""
    lanes: list[Agent] = []

    def every_lane(message: str, kind: str = "mcp") -> None:
        for agent in lanes:
            agent.tools.notice(message, kind)

    async def made(name: str) -> LaneSetup:
        setup = await make(name)
        mcp.attach(setup.agent)
        lanes.append(setup.agent)
        mcp.on_notice = every_lane
        return setup

    return made


def lanes_continue(
    make: Callable[[str], Awaitable[LaneSetup]], earlier: list[dict[str, Any]]
) -> Callable[[str], Awaitable[LaneSetup]]:
    """Each lane's conversation: its own system prompt, then the face's earlier turns."""
    from k2lab.agent.context import Conversation

    async def made(name: str) -> LaneSetup:
        setup = await make(name)
        own = [m for m in setup.agent.conversation.to_list() if m.get("role") == "system"]
        setup.agent.conversation = Conversation.from_messages([*own, *earlier])
        return setup

    return made


def heavy_turn(conversation: Conversation, prompt: str, answer: str, why: str) -> None:
    """A heavy run as one turn of the face's conversation (what a follow-up sees): the prompt,
    then the aggregated answer, or why there is none. The server's history restore writes the
    same turn from a saved log (``k2lab.agent.history``)."""
    conversation.add_user(prompt)
    text = answer or f"[heavy mode gave no aggregated answer: {why}]"
    conversation.add_assistant(text, "", [])


def scrubber_for(settings: Settings, provider: Any = None) -> Scrubber:
    """The settings' secrets, plus the provider's own scrubber when it has one."""
    s = Scrubber.for_provider(settings.api_key, settings.base_url)
    own = getattr(provider, "scrubber", None)
    return s.merged(own) if isinstance(own, Scrubber) else s


def failed_start_events(
    settings: Settings,
    prompt: str,
    run_id: str,
    message: str | None,
    *,
    kind: str = "sandbox",
    stopped: bool = False,
    scrubber: Scrubber | None = None,
    provider: Any = None,
) -> list[Event]:
    """The events of a run that never reached the model: ``run.start``, the ``error`` saying why
    (none when it was only stopped), and ``run.end``. Scrubbed. With ``provider`` (it opened,
    the sandbox did not), ``run.start`` names its model label and base URL."""
    scrub = scrubber or Scrubber.for_provider(settings.api_key, settings.base_url)
    msg = scrub.text(message) if message else None
    events: list[Event] = [
        RunStart(
            run_id=run_id,
            prompt=prompt,
            model=getattr(provider, "model", settings.model),
            model_label=getattr(provider, "model_label", settings.model),
            base_url=getattr(provider, "base_url", settings.base_url),
            policy=settings.approve,
            isolation="none",
            max_steps=settings.max_steps,
            demo=bool(getattr(provider, "demo", settings.uses_demo_model)),
        )
    ]
    if msg:
        events.append(Error(message=msg, kind=kind, fatal=True))
    events.append(
        RunEnd(
            stop_reason="stopped" if stopped else "error",
            answer="",
            steps=0,
            tool_calls=0,
            error=msg,
        )
    )
    for i, ev in enumerate(events):
        ev.seq = i
        scrub.event(ev)
    return events


class _StartFailed(Exception):
    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part
        self.message = message


class RunDriver:
    """One run of ``spec``; ``run()`` once. ``stop()`` works at any time (before the start too:
    the run then ends, ``stopped``, before the model is asked anything)."""

    def __init__(
        self,
        spec: RunSpec,
        sinks: Iterable[Sink] = (),
        *,
        on_agent: Callable[[Agent], None] | None = None,
    ) -> None:
        self.spec = spec
        self.sinks: list[Sink] = list(sinks)
        self.on_agent = on_agent
        self.run_id = spec.run_id or uuid.uuid4().hex[:12]
        self.agent: Agent | None = None
        self.heavy_run: HeavyRun | None = None
        self.provider: ChatProvider | None = spec.provider
        self.sandbox: Sandbox | None = spec.sandbox
        self.mcp: MCPToolSet | None = None
        self.scrubber = scrubber_for(spec.settings, spec.provider)
        self.result = RunResult()
        self._stop_requested = False
        self._stop_why: str | None = None
        self._ran = False
        self._done = False
        #: ``--with``: the model's note and the view's line on what was copied
        self.variables_note = ""
        self.copied = ""

    # -- control ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._ran and not self._done

    def stop(self, why: str | None = None) -> None:
        """Stop the run (every lane and the aggregation in heavy mode)."""
        self._stop_requested = True
        self._stop_why = self._stop_why or why
        if self.heavy_run is not None:
            self.heavy_run.stop(why=why)
        elif self.agent is not None:
            self.agent.stop(why)

    def stop_lane(self, lane: str) -> None:
        """Heavy mode: stop one lane, the others go on."""
        if self.heavy_run is not None:
            self.heavy_run.stop(lane)

    # -- events ----------------------------------------------------------------------------------
    def emit(self, ev: Event) -> None:
        self.scrubber.event(ev)
        r = self.result
        r.events += 1
        if isinstance(ev, VerifyEnd):
            r.verify = ev
        elif isinstance(ev, RunEnd) and ev.lane in ("", "aggregate"):
            r.end = ev
        for sink in self.sinks:
            sink(ev)

    # -- running ---------------------------------------------------------------------------------
    async def run(self) -> RunResult:
        if self._ran:
            raise RuntimeError("a RunDriver runs once")
        self._ran = True
        try:
            return await self._run()
        finally:
            self._done = True

    async def _run(self) -> RunResult:
        async with contextlib.AsyncExitStack() as opened:
            try:
                await self._open(opened)
            except _StartFailed as e:
                self._failed_start(e.part, e.message)
                return self.result
            if self._stop_requested:
                self._failed_start("stopped", "", stopped=True)
                return self.result
            try:
                if self.spec.heavy:
                    await self._run_heavy()
                else:
                    await self._run_one()
            except asyncio.CancelledError:
                self._close_run("stopped", "the run was cancelled")
                raise
            except Exception as e:  # the loop promises not to raise; keep the log whole if it does
                self._close_run("error", f"internal error: {type(e).__name__}: {e}")
        return self.result

    async def _open(self, opened: contextlib.AsyncExitStack) -> None:
        spec = self.spec
        s = spec.settings
        booting: asyncio.Future[Sandbox] | None = None
        if not spec.heavy and self.sandbox is None:
            factory = spec.sandbox_factory
            if factory is not None:
                booting = asyncio.ensure_future(factory())
            else:  # the kernel boots in its own process while the HTTP client is built
                booting = asyncio.ensure_future(_open_owned_sandbox(s, spec.workspace, opened))
        if self.provider is None:
            from k2lab.runtime import open_provider

            try:
                self.provider = await asyncio.to_thread(open_provider, s)
            except Exception as e:
                if booting is not None:
                    with contextlib.suppress(BaseException):
                        await booting  # let a boot finish: the stack shuts it down
                raise _StartFailed("provider", f"the model could not be set up: {e}") from e
            opened.push_async_callback(_quiet_close, self.provider)
            self.scrubber = scrubber_for(s, self.provider)
        if booting is not None:
            try:
                self.sandbox = await booting
            except Exception as e:
                raise _StartFailed("sandbox", f"the sandbox did not start: {e}") from e
        mcp = spec.mcp_tools
        try:
            if callable(mcp):
                self.mcp = await mcp()
            elif mcp is not None:
                self.mcp = mcp
            elif spec.mcp is not None and spec.mcp.servers:
                from k2lab.tools.mcp import MCPToolSet

                self.mcp = await opened.enter_async_context(
                    MCPToolSet(spec.mcp, timeout=s.tool_timeout)
                )
        except Exception as e:
            raise _StartFailed("mcp", f"the MCP servers did not start: {e}") from e
        if self.mcp is not None:
            self.scrubber = self.scrubber.merged(self.mcp.scrubber)
        if spec.variables and not spec.heavy:
            await self._copy_variables()

    async def _copy_variables(self) -> None:
        """``--with``: the notebook's variables into the sandbox (pickled, size-checked); what
        was copied goes to the view (a notice) and to the model (the system prompt's note)."""
        from k2lab.sandbox.transfer import TransferError, describe_value, variables_note

        put = getattr(self.sandbox, "put", None)
        if put is None:
            raise _StartFailed(
                "sandbox", "--with: this sandbox cannot take copies of notebook variables"
            )
        described: list[tuple[str, str]] = []
        for name, value in self.spec.variables.items():
            try:
                await put(name, value)
            except TransferError as e:
                raise _StartFailed("sandbox", f"--with {name}: {e}") from e
            described.append((name, describe_value(value)))
        self.variables_note = variables_note(described)
        self.copied = "copied into the sandbox (--with): " + "; ".join(
            f"{n} ({what})" for n, what in described
        )

    def _decisions(self) -> DecisionSource:
        d = self.spec.decisions
        return d if d is not None else decision_source(self.spec.settings.approve)

    def _follow_up(self) -> Any:
        if not self.spec.verify_rounds:
            return None
        from k2lab.agent.verify import VerifyPass

        return VerifyPass(self.spec.verify_rounds)

    async def _run_one(self) -> None:
        from k2lab.runtime import build_agent

        spec = self.spec
        assert self.provider is not None and self.sandbox is not None
        provider = self.provider
        if spec.wrap_provider is not None:
            provider = spec.wrap_provider(provider)
        extra = [*spec.extra_tools]
        if self.mcp is not None:
            extra += cast("list[Tool]", self.mcp.tools)
        notes = [self.variables_note] if self.variables_note else []
        note = spec.note
        if notes and spec.conversation is not None and spec.conversation.messages:
            # a follow-up keeps its system prompt: the note comes with the message instead (a
            # field of run.start, so the prompt stays the user's words)
            note = "\n\n".join(n for n in (spec.note, self.variables_note) if n)
        agent = build_agent(
            spec.settings, provider, self.sandbox, self._decisions(), extra_tools=extra, notes=notes
        )
        if self.copied:
            agent.tools.notice(self.copied, "data")
        if self.mcp is not None:
            self.mcp.attach(agent)  # its secrets out of every event, its notices into the run
        if spec.conversation is not None:
            agent.conversation = spec.conversation
        self.agent = agent
        if self.on_agent is not None:
            self.on_agent(agent)
        if self._stop_requested:  # stopped while the agent was being built
            self._failed_start("stopped", "", stopped=True)
            return
        events = cast(
            "AsyncGenerator[Event, None]",
            agent.run(
                spec.prompt,
                run_id=self.run_id,
                parent_run_id=spec.parent_run_id,
                forked_from_call=spec.forked_from_call,
                follow_up=self._follow_up(),
                context=spec.context,
                note=note or None,
            ),
        )
        async with contextlib.aclosing(events):  # a sink that raised: the agent stops too
            async for ev in events:
                self.emit(ev)

    async def _run_heavy(self) -> None:
        from k2lab.agent.heavy import HeavyRun
        from k2lab.runtime import lane_factory

        spec = self.spec
        assert self.provider is not None
        extra = [*spec.extra_tools]
        if self.mcp is not None:  # one MCPToolSet for every lane (see ``lanes_share_mcp``)
            extra += cast("list[Tool]", self.mcp.tools)
        make = lane_factory(spec.settings, self.provider, self._decisions(), extra_tools=extra)
        if self.mcp is not None:
            make = lanes_share_mcp(make, self.mcp)
        earlier = spec.conversation.to_list() if spec.conversation is not None else []
        earlier = [m for m in earlier if m.get("role") != "system"]
        if earlier:  # a heavy follow-up: every lane continues the face's conversation
            make = lanes_continue(make, earlier)
        heavy = HeavyRun(
            spec.heavy,
            make,
            self.provider,
            concurrency=spec.heavy_concurrency,
            run_id=self.run_id,
            aggregate_follow_up=self._follow_up(),
            # the verify pass of the aggregated answer: python on a sandbox of its own
            verify_lane=lane_factory(spec.settings, self.provider, self._decisions())
            if spec.verify_rounds
            else None,
        )
        self.heavy_run = heavy
        if self._stop_requested:
            heavy.stop(why=self._stop_why)
        # the lanes read the attached context as part of their task (each lane's own run.start)
        task = user_message(spec.prompt, spec.context)
        events = cast("AsyncGenerator[Event, None]", heavy.run(task))
        async with contextlib.aclosing(events):  # lanes stopped and their sandboxes closed
            async for ev in events:
                self.emit(ev)
        self.result.heavy = out = heavy.outcome
        if spec.conversation is not None and out is not None:
            heavy_turn(spec.conversation, task, out.answer, out.error or out.stop_reason)

    def _failed_start(self, part: str, message: str, *, stopped: bool = False) -> None:
        self.result.failed = part
        self.result.failure = self.scrubber.text(message) if message else ""
        kind = part if part in ("provider", "sandbox", "mcp") else "sandbox"
        for ev in failed_start_events(
            self.spec.settings,
            self.spec.prompt,
            self.run_id,
            message or None,
            kind=kind,
            stopped=stopped,
            scrubber=self.scrubber,
            provider=self.provider,
        ):
            self.emit(ev)

    def _close_run(self, reason: str, message: str) -> None:
        """The run raised: say so, and end it with ``run.end`` if it has none yet."""
        err = Error(message=message, kind="internal", fatal=True)
        self.emit(err)
        if self.result.end is None:
            self.emit(
                RunEnd(
                    stop_reason=reason,  # type: ignore[arg-type]
                    answer="",
                    steps=0,
                    tool_calls=0,
                    error=message,
                )
            )


async def _open_owned_sandbox(
    settings: Settings, workspace: Path | None, opened: contextlib.AsyncExitStack
) -> Sandbox:
    from k2lab.runtime import open_sandbox

    sandbox = await open_sandbox(settings, workspace=workspace)
    opened.push_async_callback(_quiet_shutdown, sandbox)
    return sandbox


async def _quiet_shutdown(sandbox: Sandbox) -> None:
    with contextlib.suppress(Exception):
        await sandbox.shutdown()


async def _quiet_close(provider: Any) -> None:
    with contextlib.suppress(Exception):
        await provider.aclose()


async def drive(spec: RunSpec, sinks: Iterable[Sink] = (), **kw: Any) -> RunResult:
    """``RunDriver(spec, sinks).run()``."""
    return await RunDriver(spec, sinks, **kw).run()


__all__ = [
    "HEAVY_NEEDS_POLICY",
    "HEAVY_NO_WITH",
    "RunDriver",
    "RunResult",
    "RunSpec",
    "Sink",
    "drive",
    "failed_start_events",
    "heavy_problem",
    "scrubber_for",
]
