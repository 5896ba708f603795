"""Side-panel chat sessions: an agent, its pending decisions and its event log, kept on disk.

A session's events carry a session-wide ``index`` (runs append to one log). Subscribers (the
WebSockets) get every event after the index they name: the backlog and the registration happen in
one synchronous step on the event loop, so a reconnecting panel sees no duplicates and no gaps.
Pending decisions are server-side futures, so reloading the page loses none of them.

Errors meant for HTTP clients are ``SessionError`` with a status (404 unknown, 409 conflict).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from k2lab.agent.decisions import Decision, DecisionError
from k2lab.config import K2Lab, Settings, resolve_settings
from k2lab.events import Error, RunEnd, RunStart
from k2lab.server.engine import AgentFactory, BuiltAgent
from k2lab.server.history import interrupted_run_end, restore_conversation
from k2lab.server.notebook_tools import NotebookBridge, notebook_tools
from k2lab.server.policy import SessionDecisions
from k2lab.server.store import SessionFile, SessionFileError, SessionHeader, read_session

log = logging.getLogger(__name__)

#: key sources that belong to the server's configured endpoint, not to any URL a panel names
_GENERIC_KEYS = ("$K2LAB_API_KEY", "$MOONSHOT_API_KEY", "jupyter config")


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
        file: SessionFile,
        events: list[dict[str, Any]],
        manager: SessionManager,
    ) -> None:
        self.header = header
        self.file = file
        self.events = events
        self.manager = manager
        self.bridge = NotebookBridge()
        self._subscribers: list[Subscriber] = []
        self._built: BuiltAgent | None = None
        self._decisions: SessionDecisions | None = None
        self._task: asyncio.Task[None] | None = None
        #: a stop that came before the agent existed (its sandbox was still starting)
        self._stop_pending = False
        # what the log says about tool calls, to answer 404 / 409 without guessing
        self._proposed: set[str] = set()
        self._decided: set[str] = set()
        for ev in events:
            self._track(ev)

    @property
    def id(self) -> str:
        return self.header.session_id

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def title(self) -> str:
        if self.header.title:
            return self.header.title
        for ev in self.events:  # untitled: named after its first message
            if ev.get("type") == "run.start":
                first = str(ev.get("prompt", "")).strip().splitlines() or [""]
                return first[0][:60] or "New chat"
        return "New chat"

    def meta(self) -> dict[str, Any]:
        updated = self.events[-1].get("ts") if self.events else None
        return {
            "id": self.id,
            "title": self.title,
            "created": self.header.created,
            "updated": updated if isinstance(updated, (int, float)) else None,
            "running": self.running,
            "n_events": len(self.events),
            "settings": self.header.settings,
            "pending": self.pending_calls(),
            "panel_connected": self.bridge.connected,
        }

    @property
    def proposed_calls(self) -> set[str]:
        return self._proposed

    def pending_calls(self) -> list[str]:
        return [] if self._decisions is None else self._decisions.pending.pending

    # -- the event log ---------------------------------------------------------------------------
    def _track(self, ev: dict[str, Any]) -> None:
        kind, cid = ev.get("type"), ev.get("call_id")
        if kind == "tool.proposed" and isinstance(cid, str):
            self._proposed.add(cid)
        elif kind == "tool.decision" and isinstance(cid, str):
            self._decided.add(cid)

    def append(self, ev: dict[str, Any]) -> int:
        index = len(self.events)
        try:
            self.file.append(ev)
        except OSError as e:  # a full disk must not kill the run; say so once per event
            log.error("k2lab: could not write session %s: %s", self.id, e)
        self.events.append(ev)
        self._track(ev)
        for sub in list(self._subscribers):
            try:
                sub.deliver(index, ev)
            except Exception:  # a dead socket unsubscribes itself on close
                log.debug("k2lab: dropping a subscriber of %s", self.id, exc_info=True)
                self.unsubscribe(sub)
        return index

    def subscribe(self, sub: Subscriber, after: int) -> list[tuple[int, dict[str, Any]]]:
        """Register ``sub`` for live events and return the backlog after ``after`` (atomic)."""
        self._subscribers.append(sub)
        start = max(after + 1, 0)
        return [(i, self.events[i]) for i in range(start, len(self.events))]

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    # -- running ---------------------------------------------------------------------------------
    def settings(self) -> Settings:
        return self.manager.session_settings(self.header.settings)

    async def ensure_agent(self) -> BuiltAgent:
        if self._built is not None:
            return self._built
        settings = self.settings()
        self._decisions = SessionDecisions(
            settings.approve, user_chose_auto=self.header.settings.get("approve") == "auto"
        )
        tools = notebook_tools(
            self.bridge,
            timeout=self.manager.notebook_timeout,
            run_timeout=max(settings.tool_timeout, self.manager.notebook_timeout),
        )
        built = await self.manager.factory(settings, self._decisions, tools)
        restore_conversation(built.agent.conversation, self.events)
        self._built = built
        return built

    def send(self, text: str) -> str:
        if self.running:
            raise SessionError(409, "a run is in progress in this session; stop it or wait")
        run_id = uuid.uuid4().hex[:12]
        self._stop_pending = False
        self._task = asyncio.ensure_future(self._run(text, run_id))
        return run_id

    async def _run(self, prompt: str, run_id: str) -> None:
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
        self._decisions.new_run()
        try:
            async for ev in built.agent.run(prompt, run_id=run_id):
                self.append(ev.to_dict())
        except Exception as e:  # the loop promises not to raise; keep the log whole if it does
            log.exception("k2lab: run %s of session %s failed", run_id, self.id)
            err = Error(message=f"internal error: {e}", kind="internal", fatal=True)
            self.append(err.to_dict())

    def _failed_start(
        self, prompt: str, run_id: str, err: Exception | None, *, stopped: bool = False
    ) -> None:
        """A run that never reached the model still shows up in the log, with the reason."""
        try:
            s = self.settings()
        except ValueError:  # the settings themselves are what failed: describe the run anyway
            s = Settings()
        msg = f"could not start the agent: {type(err).__name__}: {err}" if err else None
        self.append(
            RunStart(
                seq=0, run_id=run_id, prompt=prompt, model=s.model, model_label=s.model,
                base_url=s.base_url, policy=s.approve, isolation="none", max_steps=s.max_steps,
            ).to_dict()
        )  # fmt: skip
        seq = 1
        if msg:
            self.append(Error(seq=seq, message=msg, kind="sandbox", fatal=True).to_dict())
            seq += 1
        self.append(
            RunEnd(
                seq=seq, stop_reason="stopped" if stopped else "error", answer="", steps=0,
                tool_calls=0, error=msg,
            ).to_dict()
        )  # fmt: skip

    def stop(self) -> bool:
        """Stop the run wherever it waits; False when nothing was running."""
        if not self.running:
            return False
        if self._built is not None and self._built.agent.running:
            self._built.agent.stop()  # the agent ends the run with run.end "stopped"
        else:
            # Still starting the sandbox. Cancelling a kernel start half-way can orphan the kernel
            # process, so the start finishes (the sandbox is kept for the next message) and the
            # run ends right after it, before the model is asked anything.
            self._stop_pending = True
        return True

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    # -- decisions -------------------------------------------------------------------------------
    def decide(self, call_id: str, decision: Decision) -> None:
        if call_id not in self._proposed:
            raise SessionError(404, f"no tool call {call_id!r} in this session")
        if call_id in self._decided:
            raise SessionError(409, f"tool call {call_id!r} was already decided")
        if call_id not in self.pending_calls():
            raise SessionError(
                409,
                f"tool call {call_id!r} is not waiting for a decision "
                "(it was never offered, or its run ended)",
            )
        assert self._decisions is not None
        try:
            self._decisions.pending.resolve(call_id, decision)
        except DecisionError as e:
            raise SessionError(409, str(e)) from e

    def approve_all(self) -> int:
        """Approve what is pending and the rest of this run; returns how many were pending."""
        if self._decisions is None or not self.running:
            raise SessionError(409, "no run is in progress in this session")
        n = len(self.pending_calls())
        self._decisions.pending.approve_all()
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
        self.file.close()


class SessionManager:
    def __init__(
        self,
        directory: Path,
        factory: AgentFactory,
        config: K2Lab | None = None,
        *,
        notebook_timeout: float = 30.0,
    ) -> None:
        self.directory = directory
        self.factory = factory
        self.config = config
        self.notebook_timeout = notebook_timeout
        self.sessions: dict[str, Session] = {}

    def server_settings(self) -> Settings:
        return resolve_settings(None, config=self.config)

    def session_settings(self, overrides: dict[str, Any]) -> Settings:
        s = resolve_settings(overrides, config=self.config)
        # the server's key goes only to the endpoint it was configured for
        if s.base_url != self.server_settings().base_url and s.sources.get("api_key") in (
            _GENERIC_KEYS
        ):
            s.api_key = ""
            s.sources["api_key"] = "withheld: this session names another endpoint"
        return s

    def load(self) -> int:
        """Open every session file in the directory; a run cut by a restart is ended."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.directory.glob("*.jsonl")):
            try:
                header, events = read_session(path)
            except (OSError, SessionFileError) as e:
                log.warning("k2lab: skipping session file %s: %s", path, e)
                continue
            if not header.session_id or header.session_id in self.sessions:
                header.session_id = path.stem
            session = Session(header, SessionFile(path), events, self)
            end = interrupted_run_end(events)
            if end is not None:
                session.append(end)
            self.sessions[session.id] = session
        return len(self.sessions)

    def create(self, title: str = "", settings: dict[str, Any] | None = None) -> Session:
        overrides = dict(settings or {})
        try:  # refuse settings the engine would refuse later, now, with the reason
            self.session_settings(overrides)
        except (ValueError, TypeError) as e:
            raise SessionError(400, str(e)) from e
        sid = uuid.uuid4().hex[:12]
        header = SessionHeader(session_id=sid, title=title, settings=overrides)
        path = self.directory / f"{sid}.jsonl"
        session = Session(header, SessionFile.create(path, header), [], self)
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
        session.file.path.unlink(missing_ok=True)

    async def close(self) -> None:
        started = time.monotonic()
        await asyncio.gather(*(s.close() for s in self.sessions.values()), return_exceptions=True)
        took = time.monotonic() - started
        log.info("k2lab: closed %d sessions in %.1fs", len(self.sessions), took)
