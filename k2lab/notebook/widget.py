"""The live trace view: an anywidget fed by events, with buttons that act on the run.

Python keeps the state (``TraceState``); the browser keeps nothing it cannot ask for again. Events
are folded in as they arrive, and a patch of what changed goes out at most every ``interval``
seconds (0.04 s: 25 messages/s however fast the model streams), as an anywidget custom message. A
view that opens late, or missed a patch, asks ``{"action": "hello"}`` and gets a snapshot. A
``{"kind": "ping"}`` from Python is answered ``{"action": "pong"}`` by every open view (``probe``:
is anyone still looking at this run?).

Buttons send ``{"action": ..., "call_id"?, "code"?, "feedback"?}``; the widget hands them to its
``RunControls`` (the notebook session implements it) and answers errors with
``{"kind": "error", "message"}`` so the person sees why a click did nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

import anywidget
import traitlets

from k2lab.trace.render import CSS_PATH, display_html, highlight_python, markdown_html, status_line
from k2lab.trace.state import TraceState

_STATIC = Path(__file__).parent / "static"
#: Seconds between two patches (a ceiling of 25 messages per second to the frontend).
FLUSH_INTERVAL = 0.04
#: While a run goes and no event comes (a call waits for a decision), the status line's clock
#: still moves: a patch of the head at least this often.
TICK_INTERVAL = 1.0


class RunControls(Protocol):
    """What the buttons do; implemented by the notebook session for one run."""

    def decide(
        self,
        call_id: str,
        kind: str,
        *,
        code: str | None,
        feedback: str | None,
        run_id: str | None = None,
    ) -> None: ...

    def approve_all(self) -> None: ...

    def stop(self) -> None: ...

    def stop_previous(self) -> None: ...

    def replay(self, call_id: str) -> Awaitable[dict[str, Any]]: ...

    def fork(self, call_id: str, code: str | None, run_id: str | None = None) -> str: ...

    def insert_cell(self, call_id: str) -> str: ...


class TraceWidget(anywidget.AnyWidget):  # type: ignore[misc]
    _esm = (_STATIC / "trace_view.js").read_text(encoding="utf-8")
    _css = CSS_PATH.read_text(encoding="utf-8")
    run_id = traitlets.Unicode("").tag(sync=True)
    #: True while no kernel-side controls exist any more (e.g. the session was reset).
    detached = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        controls: RunControls | None = None,
        *,
        interval: float = FLUSH_INTERVAL,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.controls = controls
        self.state = TraceState()
        self.interval = interval
        self.errors: list[str] = []  # what clicks failed with (also shown in the view)
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seen = asyncio.Event()  # set when a view answers (``probe``)
        #: the kernel's main loop, where the run and its decisions live
        self._loop: asyncio.AbstractEventLoop | None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self.on_msg(self._on_custom)

    def __repr__(self) -> str:
        return f"<k2lab trace view of run {self.run_id or '(starting)'}>"

    # -- events in, coalesced patches out --------------------------------------------------------
    def feed(self, event: dict[str, Any]) -> None:
        self.state.apply(event)
        if event.get("type") == "run.start":
            self.run_id = event.get("run_id", "")
        urgent = event.get("type") in ("run.end", "tool.proposed")
        self._schedule(urgent)

    def _schedule(self, urgent: bool = False) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (plain scripts, tests): send at once
            self.flush()
            return
        wait = self.interval - (time.monotonic() - self._last_flush)
        if urgent or wait <= 0:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = loop.call_later(wait, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.state.tick()
        patch = self.state.take_patch()
        self._keep_ticking()
        if patch is None:
            return
        self._last_flush = time.monotonic()
        self.send(self._decorate(patch))

    def _keep_ticking(self) -> None:
        """While the run goes, a flush comes at least every TICK_INTERVAL (the clock in the
        status line keeps running while a call waits for a decision and no event arrives)."""
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self.state.head["status"] != "running":
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._tick_handle = loop.call_later(TICK_INTERVAL, self.flush)

    def snapshot(self) -> dict[str, Any]:
        return self._decorate(self.state.snapshot())

    def _decorate(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Add the HTML pieces Python renders once (highlighted code, results, Markdown)."""
        head = msg.get("head")
        if head is not None:
            head["status_text"] = status_line(head, self.state.n_steps)
            head["answer_html"] = markdown_html(head["answer"]) if head.get("answer") else ""
            # a head patch leaves an unchanged prompt out (the view keeps its own): keep it out
            head["can_stop_lane"] = callable(getattr(self.controls, "stop_lane", None))
            verify = head.get("verify")
            if verify:
                verify = head["verify"] = dict(verify)
                verify["rounds"] = [
                    {
                        **r,
                        "summary_html": markdown_html(r["summary"]) if r["summary"] else "",
                        "checks": [
                            {**c, "code_html": highlight_python(c["code"])} for c in r["checks"]
                        ],
                    }
                    for r in verify["rounds"]
                ]
        for st in msg["steps"]:
            full = self.state.step(st["step"])
            done = full is not None and full.done
            st["content_html"] = markdown_html(str(full.content)) if full and done else ""
        for card in msg["cards"]:
            card["code_html"] = highlight_python(card["code"])
            if card.get("edited_code") is not None:
                card["edited_code_html"] = highlight_python(card["edited_code"])
            sent = card.get("sent_to_model") or []
            card["display_html"] = [
                display_html(d, sent=i in sent) for i, d in enumerate(card.get("display") or [])
            ]
            card.pop("display", None)  # raw bundles stay in Python; the view gets safe HTML
        for lane in msg.get("lanes") or []:
            lane["answer_html"] = markdown_html(lane["answer"]) if lane["answer"] else ""
            for st in lane["steps"]:
                for c in st["calls"]:
                    c["code_html"] = highlight_python(c["code"])
        return msg

    # -- buttons ---------------------------------------------------------------------------------
    def _on_custom(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        # JupyterLab 4.6 sends comm messages over kernel subshells: this handler may run in a
        # subshell's thread and loop. The run lives on the main loop, so act there.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                here = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            if here is not loop:
                loop.call_soon_threadsafe(self._act, content)
                return
        self._act(content)

    def _act(self, content: dict[str, Any]) -> None:
        action = content.get("action")
        try:
            self.handle_action(str(action), content)
        except Exception as e:  # any failure is shown next to the button, never raised
            self.errors.append(f"{action}: {e}")
            self.send({"kind": "error", "message": self.errors[-1]})

    def handle_action(self, action: str, content: dict[str, Any]) -> None:
        """One button press (also the entry point tests use to click without a browser)."""
        call_id = content.get("call_id")
        if action in ("hello", "pong"):
            self._seen.set()  # some view of this run is open
            if action == "hello":
                self.send(self.snapshot())
                opened = getattr(self.controls, "view_opened", None)
                if opened is not None:
                    opened()
            return
        if self.controls is None:
            raise RuntimeError("this run is no longer attached to the kernel session")
        if action in ("approve", "edit", "reject"):
            code, feedback = content.get("code"), content.get("feedback")
            run_id = content.get("run_id")  # a heavy run's lane call (call ids repeat)
            if run_id:
                self.controls.decide(
                    str(call_id), action, code=code, feedback=feedback, run_id=str(run_id)
                )
            else:
                self.controls.decide(str(call_id), action, code=code, feedback=feedback)
        elif action == "approve_all":
            self.controls.approve_all()
            self.state.set_approve_all()
            self._schedule(True)
        elif action == "stop":
            self.controls.stop()
        elif action == "stop_previous":
            self.controls.stop_previous()
        elif action == "stop_lane":
            stop_lane = getattr(self.controls, "stop_lane", None)
            if not callable(stop_lane):
                raise RuntimeError("this session cannot stop one lane; Stop stops the whole run")
            stop_lane(str(content.get("lane")))
        elif action == "replay":
            self._spawn(self._replay(str(call_id)))
        elif action == "fork":
            lane = content.get("run_id")  # a heavy lane's call: the lane's run id says which
            note = self.controls.fork(
                str(call_id), content.get("code"), str(lane) if lane else None
            )
            self.send({"kind": "info", "message": note})
        elif action == "insert":
            note = self.controls.insert_cell(str(call_id))
            self.send({"kind": "info", "message": note})
        else:
            raise ValueError(f"unknown action {action!r}")

    async def probe(self, timeout: float) -> bool:
        """Whether a view of this widget is open anywhere: True when one answers a ping (or says
        hello) within ``timeout`` seconds. A page reloaded before saving has none."""
        self._seen = asyncio.Event()
        self.send({"kind": "ping"})
        try:
            await asyncio.wait_for(self._seen.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replay(self, call_id: str) -> None:
        assert self.controls is not None
        self.state.set_replay(call_id, {"running": True})
        self._schedule(True)
        try:
            result = await self.controls.replay(call_id)
        except Exception as e:
            result = {"error": f"{type(e).__name__}: {e}"}
        if "new_output" in result:
            result["new_output_html"] = display_html({"data": {"text/plain": result["new_output"]}})
        self.state.set_replay(call_id, result)
        self._schedule(True)
