"""The side panel's transport for the model's notebook tools (``k2lab.tools.notebook``).

The server never rewrites the ``.ipynb`` file under the user: each tool sends a
``notebook.request`` over the session's WebSocket, and the panel applies it through JupyterLab's
document model (undoable, safe with real-time collaboration) or runs the cell in the notebook's
own kernel, then answers with a ``notebook.response``. With no panel connected, or no answer in
time, the tool returns an error result that says so (the run goes on).

Wire protocol (server -> panel, then panel -> server)::

    {"kind": "notebook.request", "id": "r1", "op": "read" | "insert_cell" | "replace_cell"
     | "run_cell", "args": {...the tool's arguments; "path" absent = the notebook in focus}}
    {"kind": "notebook.response", "id": "r1", "ok": true, "result": {...}}   # or ok false + a str

Results the panel sends (extra keys are ignored; a plain string is passed to the model as is):
read -> ``{"path", "cells": [{"index", "id", "cell_type", "source", "execution_count",
"outputs"}]}``;
insert_cell / replace_cell -> ``{"path", "index", "id"}``;
run_cell -> ``{"path", "index", "execution_count", "status": "ok"|"error", "outputs": [...]}``
(outputs are nbformat output dicts).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Protocol

# the tools themselves (schemas, result texts) are shared with ``%k2 --notebook-tools``
from k2lab.tools.notebook import notebook_tools, outputs_text

__all__ = ["NotebookBridge", "PanelSocket", "notebook_tools", "outputs_text"]


class PanelSocket(Protocol):
    """What the bridge needs from a connected panel (the WebSocket handler)."""

    def send_json(self, msg: dict[str, Any]) -> None: ...


class NotebookBridge:
    """Requests to the panel(s) of one session and their answers, matched by id."""

    def __init__(self) -> None:
        self._sockets: list[PanelSocket] = []
        self._waiting: dict[str, tuple[PanelSocket, asyncio.Future[tuple[bool, Any]]]] = {}
        self._ids = itertools.count(1)

    def attach(self, sock: PanelSocket) -> None:
        self._sockets.append(sock)

    def detach(self, sock: PanelSocket) -> None:
        if sock in self._sockets:
            self._sockets.remove(sock)
        for rid, (s, fut) in list(self._waiting.items()):
            if s is sock and not fut.done():
                fut.set_result((False, "the side panel disconnected before answering"))
                self._waiting.pop(rid, None)

    @property
    def connected(self) -> bool:
        return bool(self._sockets)

    def on_response(self, msg: dict[str, Any]) -> bool:
        """Resolve a waiting request; False if the id is unknown (late, or never asked)."""
        entry = self._waiting.pop(str(msg.get("id")), None)
        if entry is None or entry[1].done():
            return False
        entry[1].set_result((bool(msg.get("ok")), msg.get("result")))
        return True

    async def request(self, op: str, args: dict[str, Any], *, timeout: float) -> tuple[bool, Any]:
        if not self._sockets:
            return False, (
                "No k2lab side panel is connected to this session, so the notebook cannot be "
                "reached. Ask the user to open the k2lab panel in JupyterLab."
            )
        # the most recently connected panel is the one the user is looking at
        sock = self._sockets[-1]
        rid = f"r{next(self._ids)}"
        fut: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = (sock, fut)
        try:
            sock.send_json({"kind": "notebook.request", "id": rid, "op": op, "args": args})
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return False, f"The side panel did not answer within {timeout:g} s."
        except Exception as e:  # the socket closed while sending
            return False, f"Could not reach the side panel: {e}"
        finally:
            self._waiting.pop(rid, None)
