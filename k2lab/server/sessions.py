"""Side-panel chat sessions: an agent, its pending decisions and its event log, kept on disk.

A session's events carry a session-wide ``index`` (runs append to one log). Subscribers (the
WebSockets) get every event after the index they name: the backlog and the registration happen in
one synchronous step on the event loop, so a reconnecting panel sees no duplicates and no gaps.
Pending decisions are server-side futures, so reloading the page loses none of them.

A session's events are opened only when asked for (``SessionManager.open``, off the event loop);
the session list comes from each file's header and summary. A tool call is known by
``(run_id, call_id)``, so an id repeated in another run never blocks a decision. A write that
fails (a full disk) is an ``error`` event in the log (kind ``storage``), live in the panel, and the
events wait in memory, in order, until they can be written (``store``).

Errors meant for HTTP clients are ``SessionError`` with a status (404 unknown, 409 conflict).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from k2lab.agent.decisions import Decision, DecisionError
from k2lab.agent.fork import Fork, ForkError, plan_fork
from k2lab.agent.history import REPLAY_TYPES, continued, interrupted_run_end
from k2lab.config import K2Lab, Settings, resolve_settings
from k2lab.events import Error, Notice
from k2lab.scrub import Scrubber
from k2lab.server.engine import AgentFactory, BuiltAgent
from k2lab.server.notebook_tools import NotebookBridge, notebook_tools
from k2lab.server.payloads import RUN_OPTIONS
from k2lab.server.policy import SessionDecisions
from k2lab.server.store import (
    EventLog,
    SessionFileError,
    SessionHeader,
    Summary,
    summarize,
    summary_path,
)
from k2lab.tools.base import Tool

if TYPE_CHECKING:
    from k2lab.driver import RunDriver
    from k2lab.tools.mcp import MCPToolSet
    from k2lab.tools.mcp_config import MCPConfig

log = logging.getLogger(__name__)

#: how long the tools listing of sessions whose MCP servers have not started is kept
PROBE_SECONDS = 30.0


class _Calls:
    """What the log says about tool calls, by ``(run_id, call_id)``, to answer 404 / 409."""

    def __init__(self) -> None:
        self.proposed: set[tuple[str, str]] = set()
        self.decided: set[tuple[str, str]] = set()
        #: the run each call id was last proposed in
        self.last_run: dict[str, str] = {}
        self.run = ""
        self.runs = 0

    def track(self, ev: dict[str, Any]) -> None:
        kind, cid = ev.get("type"), ev.get("call_id")
        if kind == "run.start":
            self.runs += 1
            # traces from before run ids were on every event: the run is the latest run.start
            self.run = str(ev.get("run_id") or f"#{self.runs}")
            return
        if not isinstance(cid, str):
            return
        key = (str(ev.get("run_id") or self.run), cid)
        if kind == "tool.proposed":
            self.proposed.add(key)
            self.last_run[cid] = key[0]
        elif kind == "tool.decision":
            self.decided.add(key)


def describe_mcp(mcp: MCPToolSet) -> list[dict[str, Any]]:
    """Each configured server of a started set: status (started / failed / disabled), why it
    failed, its tools (names and descriptions, scrubbed of the servers' secrets)."""
    scrub = mcp.scrubber
    out: list[dict[str, Any]] = []
    for row in mcp.public():
        name = row["name"]
        tools = [
            {"name": t.name, "description": scrub.text(t.description)}
            for t in mcp.tools
            if t.server.name == name
        ]
        why = [n for n in mcp.notices if f"MCP server {name!r}" in n]
        status = (
            "disabled" if row.get("disabled") else ("started" if row.get("running") else "failed")
        )
        out.append(
            {
                "name": name,
                "transport": row.get("transport", ""),
                "approve": row.get("approve", "ask"),
                "status": status,
                "error": why[-1] if status == "failed" and why else None,
                "tools": tools,
            }
        )
    return out


class SessionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Subscriber(Protocol):
    def deliver(self, index: int, event: dict[str, Any]) -> None: ...


class Session:
    def __init__(
        self,
        header: SessionHeader,
        path: Path,
        manager: SessionManager,
        *,
        events: EventLog | None = None,
        summary: Summary | None = None,
    ) -> None:
        self.header = header
        self.path = path
        self.manager = manager
        self.bridge = NotebookBridge()
        self._log = events
        self._summary = summary if summary is not None else Summary()
        self._calls = _Calls()
        self._opening: asyncio.Lock | None = None
        self._subscribers: list[Subscriber] = []
        self._built: BuiltAgent | None = None
        self._decisions: SessionDecisions | None = None
        self._task: asyncio.Task[None] | None = None
        #: a stop that came before the agent existed (its sandbox was still starting)
        self._stop_pending = False
        #: the configured MCP servers, started with the session's first run (or tools listing)
        self._mcp: MCPToolSet | None = None
        self._mcp_starting: asyncio.Lock | None = None
        #: the run in progress (``k2lab.driver``: the same driver as the CLI and the notebook)
        self._driver: RunDriver | None = None
        #: the notebook tools of the session's agent (passed to every run)
        self._tools: list[Tool] = []

    @property
    def id(self) -> str:
        return self.header.session_id

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def loaded(self) -> bool:
        return self._log is not None

    @property
    def summary(self) -> Summary:
        return self._log.summary if self._log is not None else self._summary

    @property
    def title(self) -> str:
        if self.header.title:
            return self.header.title
        return self.summary.first_prompt[:60] or "New chat"  # untitled: its first message

    def meta(self) -> dict[str, Any]:
        summary = self.summary
        return {
            "id": self.id,
            "title": self.title,
            "created": self.header.created,
            "updated": summary.updated,
            "running": self.running,
            "n_events": summary.n_events,
            "settings": self.header.settings,
            "pending": self.pending_calls(),
            "panel_connected": self.bridge.connected,
        }

    @property
    def proposed_calls(self) -> set[str]:
        return {cid for _, cid in self._calls.proposed}

    def has_call(self, run_id: str, call_id: str) -> bool:
        return (run_id, call_id) in self._calls.proposed

    def pending_calls(self) -> list[str]:
        """Call ids waiting for a person (a heavy run's lanes may repeat an id: each lane's call
        is its own card, decided with its ``run_id``)."""
        return [] if self._decisions is None else [c for _, c in self._decisions.waiting()]

    # -- the event log ---------------------------------------------------------------------------
    def _read(self) -> tuple[EventLog, _Calls]:
        calls = _Calls()
        _, events = EventLog.open(self.path, calls.track)
        return events, calls

    @property
    def log(self) -> EventLog:
        """The events (opened here, blocking, if ``opened()`` was not awaited first)."""
        if self._log is None:
            self._log, self._calls = self._read()
        return self._log

    @property
    def events(self) -> EventLog:
        return self.log

    async def opened(self) -> EventLog:
        """The events, read from the file off the event loop the first time."""
        if self._log is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._log is None:
                    events, calls = await asyncio.to_thread(self._read)
                    if self._log is None:
                        self._log, self._calls = events, calls
                    else:
                        events.close()
        return self._log

    def append(self, ev: dict[str, Any]) -> int:
        events = self.log
        was_unsaved = events.unsaved
        stored = events.append(ev)
        index = len(events) - 1
        self._calls.track(stored)
        for sub in list(self._subscribers):
            try:
                sub.deliver(index, stored)
            except Exception:  # a dead socket unsubscribes itself on close
                log.debug("k2lab: dropping a subscriber of %s", self.id, exc_info=True)
                self.unsubscribe(sub)
        if events.unsaved and not was_unsaved:
            self._not_saved(index)
        elif was_unsaved and not events.unsaved:
            self._saved_again(was_unsaved + 1)
        return index

    def _not_saved(self, index: int) -> None:
        err = self.log.error
        log.error("k2lab: could not write session %s: %s", self.id, err)
        self.append(
            Error(
                message=f"Events from #{index} on could not be saved to {self.path.name} ({err}). "
                "They are kept in memory and written as soon as a write succeeds; if the server "
                "stops before that, they are lost. Free some disk space.",
                kind="storage",
                fatal=False,
            ).to_dict()
        )

    def _saved_again(self, n: int) -> None:
        log.warning("k2lab: session %s: the %d unsaved events are written now", self.id, n)
        self.append(
            Notice(
                message=f"The {n} events that could not be saved are now written to "
                f"{self.path.name}.",
                kind="storage",
            ).to_dict()
        )

    def _retry_save(self) -> None:
        events = self._log
        if events is None or not events.unsaved:
            return
        n = events.unsaved
        if events.retry():
            self._saved_again(n)

    def subscribe(self, sub: Subscriber) -> int:
        """Register ``sub`` for live events; returns the index of the first one it will get (the
        backlog before it is the caller's to read, e.g. with ``log.slice`` in a thread)."""
        self._subscribers.append(sub)
        return len(self.log)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    # -- running ---------------------------------------------------------------------------------
    def settings(self) -> Settings:
        return self.manager.session_settings(self.header.settings)

    def run_options(self, options: dict[str, Any] | None = None) -> tuple[int, int, int | None]:
        """(verify rounds, 0 = no verify pass; heavy lanes, 0 = one agent; heavy concurrency):
        the session's settings, under a message's own ``options``."""
        o = {**self.header.settings, **(options or {})}
        rounds = int(o.get("verify_rounds") or 1) if o.get("verify") else 0
        return rounds, int(o.get("heavy") or 0), o.get("heavy_concurrency")

    async def ensure_mcp(self) -> MCPToolSet | None:
        """The session's MCP servers, started once (together), stopped with the session."""
        cfg = self.manager.mcp_config()
        if cfg is None or not cfg.servers:
            return None
        if self._mcp_starting is None:
            self._mcp_starting = asyncio.Lock()
        async with self._mcp_starting:
            if self._mcp is None:
                from k2lab.tools.mcp import MCPToolSet

                ts = MCPToolSet(cfg, timeout=self.settings().tool_timeout)
                await ts.__aenter__()
                self._mcp = ts
        return self._mcp

    async def tools(self) -> dict[str, Any]:
        """What the session's agent may call: its built-in tools, and each configured MCP server
        with its tools, started or not and why (no command lines, env or headers). A session
        whose servers have not started yet is answered from a probe (``SessionManager``): no
        server process is left behind for a session only looked at."""
        problem = self.manager.mcp_problem
        builtin = [{"name": "python", "description": "Run Python in the session's sandbox."}]
        builtin += [
            {"name": t.name, "description": t.description}
            for t in notebook_tools(self.bridge, timeout=1.0, run_timeout=1.0)
        ]
        try:
            if self._mcp is not None:
                servers = [{**row, "in_session": True} for row in describe_mcp(self._mcp)]
            else:
                servers = await self.manager.mcp_probe()
        except Exception as e:  # a server set that could not even be tried: said, not a 500
            servers, problem = [], f"the MCP servers did not start: {e}"
        return {
            "config": self.manager.mcp_source,
            "error": problem,
            "builtin": builtin,
            "servers": servers,
        }

    async def ensure_agent(self) -> BuiltAgent:
        if self._built is not None:
            return self._built
        settings = self.settings()
        tools = notebook_tools(
            self.bridge,
            timeout=self.manager.notebook_timeout,
            run_timeout=max(settings.tool_timeout, self.manager.notebook_timeout),
        )
        self._tools = list(tools)
        mcp = await self.ensure_mcp()
        tools += cast(list[Tool], mcp.tools) if mcp is not None else []
        self._decisions = SessionDecisions(  # the tools' always_ask flags hold them for a person
            settings.approve,
            user_chose_auto=self.header.settings.get("approve") == "auto",
            tools=tools,
        )
        events = await self.opened()
        history = await asyncio.to_thread(events.select, REPLAY_TYPES)  # big ones from disk
        built = await self.manager.factory(settings, self._decisions, tools)
        if mcp is not None:
            mcp.attach(built.agent)  # its secrets out of every event, its notices into the run
        built.agent.conversation = continued(built.agent.conversation, [history])
        self._built = built
        return built

    def send(
        self,
        text: str,
        *,
        options: dict[str, Any] | None = None,
        variables: dict[str, Any] | None = None,
        context: dict[str, str] | None = None,
    ) -> str:
        """Start a run of ``text``; ``options`` (verify / heavy) for this run only;
        ``variables`` copied into the session's sandbox first (``options.with``); ``context``
        what the user attached (``run.start.context``)."""
        if self.running:
            raise SessionError(409, "a run is in progress in this session; stop it or wait")
        if variables and self.run_options(options)[1]:
            from k2lab.driver import HEAVY_NO_WITH

            raise SessionError(400, f"Copy into the sandbox: {HEAVY_NO_WITH}")
        run_id = uuid.uuid4().hex[:12]
        self._stop_pending = False
        self._task = asyncio.ensure_future(
            self._run(text, run_id, options, variables=variables, context=context)
        )
        return run_id

    async def fork(self, run_id: str, call_id: str, arguments: str | None = None) -> str:
        """Start a branch of run ``run_id`` from its call ``call_id`` (``k2lab.agent.fork``), with
        the recorded or the given arguments, as the session's next run; follow-ups continue the
        branch. The sandbox is not rewound. 404: no such run or call; 409: a run is going."""
        if self.running:
            raise SessionError(409, "a run is in progress in this session; stop it or wait")
        from k2lab.agent.context import Conversation

        history = await asyncio.to_thread(self.log.select, REPLAY_TYPES)
        try:
            plan = plan_fork(Conversation(), history, run_id, call_id, arguments)
        except ForkError as e:
            raise SessionError(e.status, str(e)) from None
        if self.running:  # another request started a run while the log was read
            raise SessionError(409, "a run is in progress in this session; stop it or wait")
        new_id = uuid.uuid4().hex[:12]
        self._stop_pending = False
        self._task = asyncio.ensure_future(self._run(plan.prompt, new_id, fork=plan))
        return new_id

    async def _run(
        self,
        prompt: str,
        run_id: str,
        options: dict[str, Any] | None = None,
        *,
        fork: Fork | None = None,
        variables: dict[str, Any] | None = None,
        context: dict[str, str] | None = None,
    ) -> None:
        """The session keeps its provider, sandbox, conversation, MCP servers and decisions;
        the run itself (scrubbing, verify rounds, heavy lanes, the closing ``run.end``) is
        ``k2lab.driver.RunDriver``'s, as in the CLI and the notebook."""
        from k2lab.driver import RunDriver, RunSpec

        try:
            built = await self.ensure_agent()
        except Exception as e:
            log.exception("k2lab: could not start the agent of session %s", self.id)
            self._failed_start(prompt, run_id, e)
            return
        if self._stop_pending:  # stopped while the sandbox started: end before the model is asked
            self._failed_start(prompt, run_id, None, stopped=True)
            return
        assert self._decisions is not None
        self._decisions.new_run(run_id)
        rounds, heavy, concurrency = self.run_options(options)
        if fork is not None:  # a branch is one agent; it runs on its own copy of the history
            fork.under(built.agent.conversation)
            built.agent.conversation = fork.conversation  # follow-ups continue the branch
            heavy = 0
        spec = RunSpec(
            self.settings(),
            prompt,
            context=context,
            decisions=fork.decisions(self._decisions) if fork is not None else self._decisions,
            wrap_provider=fork.provider if fork is not None else None,
            parent_run_id=fork.parent_run_id if fork is not None else None,
            forked_from_call=fork.call_id if fork is not None else None,
            run_id=run_id,
            provider=built.provider,
            sandbox=built.sandbox,
            mcp_tools=self._mcp,
            extra_tools=self._tools,
            verify_rounds=rounds,
            heavy=heavy,
            heavy_concurrency=concurrency,
            conversation=built.agent.conversation,
            variables=variables or {},
        )
        driver = RunDriver(spec, [lambda ev: self.append(ev.to_dict())])
        self._driver = driver
        try:
            await driver.run()
        except Exception as e:  # the driver promises not to raise; keep the log whole if it does
            log.exception("k2lab: run %s of session %s failed", run_id, self.id)
            err = Error(message=f"internal error: {e}", kind="internal", fatal=True)
            self.append(driver.scrubber.event(err).to_dict())
        finally:
            self._driver = None
            self._retry_save()
            if self._log is not None:
                self._log.save_summary()

    def _scrubber(self) -> Scrubber:
        try:
            s = self.settings()
        except ValueError:
            return Scrubber.for_provider()
        return Scrubber.for_provider(s.api_key, s.base_url)

    def _failed_start(
        self, prompt: str, run_id: str, err: Exception | None, *, stopped: bool = False
    ) -> None:
        """A run that never reached the model still shows up in the log, with the reason: the
        driver's events for it (the same as the CLI's and the notebook's)."""
        from k2lab.driver import failed_start_events

        try:
            s = self.settings()
        except ValueError:  # the settings themselves are what failed: describe the run anyway
            s = Settings()
        msg = f"could not start the agent: {type(err).__name__}: {err}" if err else None
        for ev in failed_start_events(s, prompt, run_id, msg, kind="sandbox", stopped=stopped):
            self.append(ev.to_dict())
        self._retry_save()

    def stop(self) -> bool:
        """Stop the run wherever it waits; False when nothing was running."""
        if not self.running:
            return False
        if self._driver is not None:
            self._driver.stop()  # the agent, or every lane and the aggregation
        else:
            # Still starting the sandbox. Cancelling a kernel start half-way can orphan the kernel
            # process, so the start finishes (the sandbox is kept for the next message) and the
            # run ends right after it, before the model is asked anything.
            self._stop_pending = True
        return True

    def stop_lane(self, lane: str) -> bool:
        """Heavy mode: stop one lane of the current run (the others go on, and the aggregation
        uses the lanes that finished); False when that lane had already ended."""
        if not self.running:
            return False
        driver = self._driver
        heavy = driver.heavy_run if driver is not None else None
        if heavy is None:
            if driver is not None and not driver.spec.heavy:
                raise SessionError(409, "the current run is not a heavy run: it has no lanes")
            raise SessionError(409, "the heavy run has not started its lanes yet: try again")
        try:
            ln = heavy.lane(lane)
        except KeyError:
            names = ", ".join([*(x.name for x in heavy.lanes), heavy.aggregate.name])
            raise SessionError(
                404, f"no lane {lane!r} in the current run (lanes: {names})"
            ) from None
        if ln.status in ("answered", "failed", "stopped") or heavy.stopped:
            return False
        if ln.name == heavy.aggregate.name and ln.status == "waiting":
            raise SessionError(409, "the aggregation has not started: stop the lanes or the run")
        assert driver is not None
        driver.stop_lane(ln.name)
        return True

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- decisions -------------------------------------------------------------------------------
    def decide(self, call_id: str, decision: Decision, run_id: str | None = None) -> None:
        """Resolve a waiting call: ``(run_id, call_id)``; without ``run_id``, the call of that id
        in the current run (or the one lane of it where it waits), else in the latest run that
        proposed it. An id waiting in several heavy lanes needs ``run_id`` (409 otherwise)."""
        calls = self._calls
        current = self._decisions.run_id if self._decisions is not None and self.running else ""
        run = run_id
        if run is None and current and self._decisions is not None:
            lanes = [r for r, c in self._decisions.waiting() if c == call_id and r != current]
            if len(lanes) > 1:
                raise SessionError(
                    409,
                    f"tool call {call_id!r} waits in several lanes ({', '.join(lanes)}): "
                    "name its run_id",
                )
            run = lanes[0] if lanes else None
        if run is None:
            run = current if (current, call_id) in calls.proposed else calls.last_run.get(call_id)
        key = (run or "", call_id)
        if key not in calls.proposed:
            raise SessionError(404, f"no tool call {call_id!r} in this session")
        if key in calls.decided:
            raise SessionError(409, f"tool call {call_id!r} was already decided")
        table = self._decisions.table(key[0]) if current and self._decisions else None
        if table is None or call_id not in table.pending:
            raise SessionError(
                409,
                f"tool call {call_id!r} is not waiting for a decision "
                "(it was never offered, or its run ended)",
            )
        try:
            table.resolve(call_id, decision)
        except DecisionError as e:
            raise SessionError(409, str(e)) from e

    def approve_all(self) -> int:
        """Approve what is pending and the rest of this run; returns how many were pending."""
        if self._decisions is None or not self.running:
            raise SessionError(409, "no run is in progress in this session")
        n = len(self.pending_calls())
        self._decisions.approve_all()
        return n

    async def close(self) -> None:
        for sub in list(self._subscribers):  # sockets learn the session is gone
            closer = getattr(sub, "close", None)
            if callable(closer):
                closer(1001, "the session was closed")
        if self.running:
            self.stop()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 10)  # type: ignore[arg-type]
            except (asyncio.TimeoutError, asyncio.CancelledError):
                log.warning("k2lab: session %s did not stop in time", self.id)
        built, self._built = self._built, None
        if built is not None:
            try:
                await built.aclose()
            except Exception:
                log.warning("k2lab: closing session %s failed", self.id, exc_info=True)
        mcp, self._mcp = self._mcp, None
        if mcp is not None:
            try:
                await mcp.__aexit__(None, None, None)
            except Exception:
                log.warning("k2lab: stopping the MCP servers of %s failed", self.id, exc_info=True)
        if self._log is not None:
            self._retry_save()
            if self._log.unsaved:
                log.error("k2lab: session %s: %d events could not be saved and are lost",
                          self.id, self._log.unsaved)  # fmt: skip
            self._log.close()


class SessionManager:
    def __init__(
        self,
        directory: Path,
        factory: AgentFactory,
        config: K2Lab | None = None,
        *,
        notebook_timeout: float = 30.0,
        root_dir: Path | None = None,
    ) -> None:
        self.directory = directory
        self.factory = factory
        self.config = config
        self.notebook_timeout = notebook_timeout
        #: where a session's relative data paths are (the Jupyter server's root)
        self.root_dir = root_dir
        self.sessions: dict[str, Session] = {}
        self._mcp: MCPConfig | None = None
        self._mcp_read = False
        #: the MCP servers file, and why it could not be read ("" = fine or none)
        self.mcp_source = ""
        self.mcp_problem: str | None = None
        self._probe: tuple[float, list[dict[str, Any]]] | None = None
        self._probe_lock: asyncio.Lock | None = None

    async def mcp_probe(self) -> list[dict[str, Any]]:
        """The configured servers as a session would find them: started together, listed, and
        stopped again (the answer is kept for ``PROBE_SECONDS``; one probe at a time)."""
        cfg = self.mcp_config()
        if cfg is None or not (cfg.servers or cfg.disabled):
            return []
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            if self._probe is not None and time.monotonic() - self._probe[0] < PROBE_SECONDS:
                return self._probe[1]
            from k2lab.tools.mcp import MCPToolSet

            async with MCPToolSet(cfg, timeout=self.server_settings().tool_timeout) as ts:
                rows = [{**row, "in_session": False} for row in describe_mcp(ts)]
            self._probe = (time.monotonic(), rows)
            return rows

    def mcp_config(self) -> MCPConfig | None:
        """The configured MCP servers (``c.K2Lab.mcp_config`` / ``$K2LAB_MCP_CONFIG``), read once;
        a file that cannot be read is logged and said by the tools listing, not fatal."""
        if self._mcp_read:
            return self._mcp
        self._mcp_read = True
        try:
            path = self.server_settings().mcp_config
        except ValueError:
            return None
        if not path:
            return None
        from k2lab.tools.mcp_config import MCPConfigError, load_mcp_config

        self.mcp_source = path
        try:
            self._mcp = load_mcp_config(path)
        except (MCPConfigError, OSError) as e:
            self.mcp_problem = f"the MCP servers file could not be read: {e}"
            log.error("k2lab: %s", self.mcp_problem)
        return self._mcp

    def server_settings(self) -> Settings:
        return resolve_settings(None, config=self.config)

    def session_settings(self, overrides: dict[str, Any]) -> Settings:
        # the key rule (a key goes only to the endpoint it belongs to) is resolve_settings' own
        agent = {k: v for k, v in overrides.items() if k not in RUN_OPTIONS}
        return resolve_settings(agent, config=self.config)

    def data_paths(self, paths: list[str]) -> list[str]:
        """A session's data paths as absolute server paths (relative ones from the server's
        root); a missing one is a ValueError naming it."""
        from k2lab.sandbox.isolation import data_mounts

        root = self.root_dir or Path.cwd()
        out = [str(root / Path(p).expanduser()) for p in paths]
        data_mounts(out)
        return out

    def load(self) -> int:
        """List the session files in the directory (headers and summaries, not their events);
        a run cut by a restart is ended, in the log, with the reason."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.directory.glob("*.jsonl")):
            try:
                header, summary = summarize(path)
            except (OSError, SessionFileError) as e:
                log.warning("k2lab: skipping session file %s: %s", path, e)
                continue
            if not header.session_id or header.session_id in self.sessions:
                header.session_id = path.stem
            session = Session(header, path, self, summary=summary)
            if summary.open_run:
                try:
                    self._end_cut_run(session)
                except (OSError, SessionFileError) as e:
                    log.warning("k2lab: skipping session file %s: %s", path, e)
                    continue
            self.sessions[session.id] = session
        return len(self.sessions)

    @staticmethod
    def _end_cut_run(session: Session) -> None:
        events = session.log
        start = events.last_index_of("run.start")
        if start >= 0:
            for ev in interrupted_run_end(events.slice(start)):
                session.append(ev)
        events.save_summary()

    async def open(self, sid: str) -> Session:
        """The session with its events read (off the event loop the first time)."""
        session = self.get(sid)
        await session.opened()
        return session

    def create(self, title: str = "", settings: dict[str, Any] | None = None) -> Session:
        overrides = dict(settings or {})
        try:  # refuse settings the engine would refuse later, now, with the reason
            if overrides.get("data"):
                overrides["data"] = self.data_paths(overrides["data"])
            self.session_settings(overrides)
        except (ValueError, TypeError) as e:
            raise SessionError(400, str(e)) from e
        sid = uuid.uuid4().hex[:12]
        header = SessionHeader(session_id=sid, title=title, settings=overrides)
        path = self.directory / f"{sid}.jsonl"
        try:
            events = EventLog.create(path, header)
        except OSError as e:
            raise SessionError(503, f"could not create the session file: {e}") from e
        session = Session(header, path, self, events=events)
        self.sessions[sid] = session
        return session

    def get(self, sid: str) -> Session:
        session = self.sessions.get(sid)
        if session is None:
            raise SessionError(404, f"no session {sid!r}")
        return session

    def list(self) -> list[dict[str, Any]]:
        metas = [s.meta() for s in self.sessions.values()]
        return sorted(metas, key=lambda m: m["updated"] or 0, reverse=True)

    async def delete(self, sid: str) -> None:
        session = self.get(sid)
        del self.sessions[sid]
        await session.close()
        session.path.unlink(missing_ok=True)
        summary_path(session.path).unlink(missing_ok=True)

    async def close(self) -> None:
        started = time.monotonic()
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)
        took = time.monotonic() - started
        log.info("k2lab: closed %d sessions in %.1fs", len(self.sessions), took)
