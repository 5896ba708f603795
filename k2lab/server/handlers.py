"""The REST + WebSocket routes under ``{base_url}k2lab/api/`` (see ``openapi.yaml``).

Every route goes through Jupyter's authentication (403 without a user), its XSRF rules (cookie-
authenticated POSTs need the ``_xsrf`` token) and its authorizer (resource ``k2lab``). Bodies are
validated by ``payloads``; a bad one gets a 400 whose ``message`` says what is wrong. Handlers only
translate HTTP to ``sessions`` calls: no agent logic lives here.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from pydantic import BaseModel
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from k2lab.agent.decisions import Decision
from k2lab.server.payloads import (
    CreateSession,
    DecideCall,
    ForkCall,
    PayloadError,
    ReplayCall,
    SendMessage,
    StopRun,
    parse,
)
from k2lab.server.sessions import Session, SessionError
from k2lab.trace.jsonl import dumps_text, loads

if TYPE_CHECKING:
    from k2lab.server.app import K2LabApp

AUTH_RESOURCE = "k2lab"
M = TypeVar("M", bound=BaseModel)


class _Base(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def k2(self) -> K2LabApp:
        return self.settings["k2lab"]  # type: ignore[no-any-return]

    def body(self, model: type[M]) -> M:
        try:
            return parse(model, self.request.body)
        except PayloadError as e:
            raise web.HTTPError(400, str(e)) from None

    def session(self, sid: str) -> Session:
        try:
            return self.k2.sessions.get(sid)
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None

    async def opened(self, sid: str) -> Session:
        """The session with its events read (off the event loop)."""
        try:
            return await self.k2.sessions.open(sid)
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:  # RFC 9110: say which methods the route has
            own = [m for m in ("GET", "POST", "DELETE") if m.lower() in vars(type(self))]
            self.set_header("Allow", ", ".join(own))
        super().write_error(status_code, **kwargs)

    def reply(self, obj: Any, status: int = 200, *, text: str | None = None) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps_text(obj) if text is None else text)  # strict JSON: no NaN/Infinity


class InfoHandler(_Base):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply(self.k2.info())


class OpenAPIHandler(_Base):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.set_header("Content-Type", "application/yaml")
        self.finish((resources.files("k2lab.server") / "openapi.yaml").read_bytes())


class SessionsHandler(_Base):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply({"sessions": self.k2.sessions.list()})

    @web.authenticated
    @authorized
    def post(self) -> None:
        req = self.body(CreateSession)
        try:
            s = self.k2.sessions.create(req.title, req.settings.model_dump(exclude_none=True))
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.reply(s.meta(), 201)


class SessionHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, sid: str) -> None:
        s = await self.opened(sid)
        meta = s.meta()
        n = len(s.log)

        def body() -> str:  # read and encode a big log off the event loop
            events = [{"index": i, "event": ev} for i, ev in enumerate(s.log.slice(0, n))]
            return dumps_text({**meta, "events": events})

        self.reply(None, text=await asyncio.to_thread(body))

    @web.authenticated
    @authorized
    async def delete(self, sid: str) -> None:
        self.session(sid)
        await self.k2.sessions.delete(sid)
        self.set_status(204)
        self.finish()


class MessagesHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self, sid: str) -> None:
        s = await self.opened(sid)
        req = self.body(SendMessage)
        try:
            opts = req.options
            options = opts.model_dump(exclude_none=True, exclude={"with_"}) if opts else None
            copy = opts.with_ if opts else None
            variables = await self.copied(s, copy.kernel_id, copy.names) if copy else None
            run_id = s.send(
                req.text, context=req.run_context(), options=options, variables=variables
            )
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.reply({"run_id": run_id}, 202)

    async def copied(self, s: Session, kernel_id: str, names: list[str]) -> dict[str, Any]:
        """``options.with``: the variables read from the notebook's kernel, pickled there; a
        refusal is a 400 that names each variable and why, and no run starts."""
        from k2lab.sandbox.transfer import TransferError
        from k2lab.server.variables import read_variables

        if s.running:  # the 409 of send, before the notebook's kernel is asked anything
            raise SessionError(409, "a run is in progress in this session; stop it or wait")
        # reading a kernel's variables runs code in it: the same right as running a cell
        allowed = self.authorizer.is_authorized(self, self.current_user, "execute", "kernels")
        if not await ensure_async(allowed):
            raise web.HTTPError(403, "copying variables needs the right to execute in kernels")
        try:
            return await read_variables(self.kernel_manager, kernel_id, names)
        except TransferError as e:
            raise web.HTTPError(400, f"Copy into the sandbox: {e}") from None


class DecisionsHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self, sid: str) -> None:
        s = await self.opened(sid)
        req = self.body(DecideCall)
        try:
            s.decide(
                req.call_id,
                Decision(req.decision, arguments=req.arguments, feedback=req.feedback, by="user"),
                run_id=req.run_id,
            )
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.reply({"call_id": req.call_id, "decision": req.decision})


class ApproveAllHandler(_Base):
    @web.authenticated
    @authorized
    def post(self, sid: str) -> None:
        s = self.session(sid)
        try:
            n = s.approve_all()
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.reply({"approved": n})


class StopHandler(_Base):
    @web.authenticated
    @authorized
    def post(self, sid: str) -> None:
        s = self.session(sid)
        req = self.body(StopRun)
        if req.lane is None:
            self.reply({"stopped": s.stop()})
            return
        try:
            stopped = s.stop_lane(req.lane)
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.reply({"stopped": stopped, "lane": req.lane})


class ReplayHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self, sid: str) -> None:
        s = await self.opened(sid)
        req = self.body(ReplayCall)
        try:
            result = await self.k2.replay(s, req.call_id, req.run_id)
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.reply(result)


class ForkHandler(_Base):
    @web.authenticated
    @authorized
    async def post(self, sid: str) -> None:
        s = await self.opened(sid)
        req = self.body(ForkCall)
        try:
            run_id = await s.fork(req.run_id, req.call_id, req.arguments)
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.reply({"run_id": run_id, "parent_run_id": req.run_id, "call_id": req.call_id}, 202)


class ToolsHandler(_Base):
    @web.authenticated
    @authorized
    async def get(self, sid: str) -> None:
        """The session's tools: built-in ones and the configured MCP servers' (started here if
        the session has not started them yet)."""
        s = self.session(sid)
        self.reply(await s.tools())


class EventsSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):  # type: ignore[misc]
    """``WS sessions/{id}/events?after=N``: the backlog after N, then live events; notebook
    requests to the panel and its answers ride the same socket."""

    auth_resource = AUTH_RESOURCE
    k2session: Session | None = None
    #: live events that came while the backlog was read, sent right after it
    _held: list[tuple[int, dict[str, Any]]] | None = None

    def set_default_headers(self) -> None:
        """No JupyterHandler security headers on a websocket upgrade (as the kernel socket)."""

    async def pre_get(self, sid: str) -> None:
        authorized_ = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        )
        if not authorized_:
            raise web.HTTPError(403)
        try:
            self.k2session = await self.settings["k2lab"].sessions.open(sid)
        except SessionError as e:
            raise web.HTTPError(e.status, str(e)) from None
        raw = self.get_argument("after", "-1")
        try:
            self.after = int(raw)
        except ValueError:
            raise web.HTTPError(400, f"'after' must be an integer, not {raw!r}") from None

    @ws_authenticated
    async def get(self, sid: str) -> None:  # type: ignore[override]
        await self.pre_get(sid)
        await super().get(sid)

    async def open(self, sid: str) -> None:  # type: ignore[override]
        super().open()
        s = self.k2session
        assert s is not None
        # Subscribe first (live events are held), read the backlog before that point off the
        # event loop, send it, then what was held: no gap, no duplicate, no stall on a big log.
        self._held = []
        first_live = s.subscribe(self)
        backlog = await asyncio.to_thread(s.log.slice, self.after + 1, first_live)
        held, self._held = self._held, None
        try:
            for index, ev in enumerate(backlog, start=max(self.after + 1, 0)):
                self.deliver(index, ev)
            for index, ev in held:
                self.deliver(index, ev)
        except WebSocketClosedError:
            return
        s.bridge.attach(self)

    def deliver(self, index: int, event: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append((index, event))
            return
        self.send_json({"kind": "event", "index": index, "event": event})

    def send_json(self, msg: dict[str, Any]) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            raise WebSocketClosedError()
        self.write_message(dumps_text(msg))

    def on_message(self, message: str | bytes) -> None:
        try:
            msg = loads(message, strict=True)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self._complain("messages must be JSON objects")
            return
        if msg.get("kind") == "notebook.response":
            if "id" not in msg or not isinstance(msg.get("ok"), bool):
                self._complain("a notebook.response needs 'id' and a boolean 'ok'")
            elif self.k2session is not None and not self.k2session.bridge.on_response(msg):
                self._complain(f"no notebook request {msg.get('id')!r} is waiting (late answer?)")
            return
        self._complain(f"unknown message kind {msg.get('kind')!r}")

    def _complain(self, text: str) -> None:
        try:
            self.send_json({"kind": "error", "message": text})
        except WebSocketClosedError:
            pass

    def on_close(self) -> None:
        if self.k2session is not None:
            self.k2session.unsubscribe(self)
            self.k2session.bridge.detach(self)


def api_handlers() -> list[tuple[str, type[Any]]]:
    """Routes relative to ``base_url`` (the ExtensionApp joins them)."""
    sid = r"(?P<sid>[^/]+)"
    base = "/k2lab/api"
    return [
        (f"{base}/info", InfoHandler),
        (f"{base}/openapi.yaml", OpenAPIHandler),
        (f"{base}/sessions", SessionsHandler),
        (f"{base}/sessions/{sid}", SessionHandler),
        (f"{base}/sessions/{sid}/messages", MessagesHandler),
        (f"{base}/sessions/{sid}/decisions", DecisionsHandler),
        (f"{base}/sessions/{sid}/approve-all", ApproveAllHandler),
        (f"{base}/sessions/{sid}/stop", StopHandler),
        (f"{base}/sessions/{sid}/replay", ReplayHandler),
        (f"{base}/sessions/{sid}/fork", ForkHandler),
        (f"{base}/sessions/{sid}/tools", ToolsHandler),
        (f"{base}/sessions/{sid}/events", EventsSocket),
    ]
