"""The one run view: a pure, incremental fold of events into run state.

``RunView().apply(event)`` takes an ``Event`` or its dict form (``Event.to_dict()``, a JSONL line,
a WebSocket message) and updates, in O(1) amortised per event (streamed text is a list of fragments
joined only when read):

- ``runs``: one ``RunState`` per ``run.start`` (a trace or a session log may hold several), with its
  identity (``run_id``, ``lane``), model, base URL, isolation, ``demo`` flag (a field of
  ``run.start``, never a regex on the label), steps, calls, answer, retries, notices, errors,
  totals and stop reason;
- ``calls``: every tool call keyed by ``(run_id, call_id)`` (Kimi's ids repeat across runs).

Only ``k2lab.events`` is imported: ``trace`` never imports the notebook face (no package cycle),
and every face (widget, fallbacks, export, replay, fork, CLI, panel) reads the same state. The
golden traces in ``tests/trace/data/*.jsonl`` with their ``*.view.json`` pin these rules, for
Python and for the browser-side renderers alike.

Rules (where the older folds disagreed, the choice made here):

- **Identity.** An event with a non-empty ``run_id`` belongs to that run; one without (step and
  delta events, tool events of traces written before tool events carried it) belongs to the latest
  ``run.start`` (of the event's ``lane`` when it has one: heavy-mode lanes interleave). Events
  before any ``run.start`` go to an implicit run with ``run_id=""``. The lane is
  ``run.start.lane`` when present, else ``""``.
- **Call states**, one vocabulary. ``decision`` is ``None`` while the call waits, then one of
  ``approve`` / ``edit`` (``edited_arguments`` ran; ``arguments`` stays the model's original) /
  ``reject`` (``feedback``) / ``stop`` (the run stopped or ran out of time while the call waited for
  a decision: no ``tool.decision`` came; ``reason`` is the run's ``stop_reason``) / ``not_run``
  (``reason``: ``invalid`` for a ``problem`` at proposal, ``invalid_edit`` for edited arguments that
  are not a JSON object, ``no_result`` for a decided call the trace never answered).
  ``status`` is ``pending`` -> ``running`` (decided, not answered) -> ``done`` / ``error``
  (executed; ``ok`` true / false), or ``rejected`` / ``not_run``. ``executed`` is true only for
  approved or edited calls that got a result (a call interrupted while running counts as executed:
  it may have had effects). A call stopped while it waited for approval was **not** run: export
  and replay both leave it out (``notebook/commands.executed_code`` used to export it).
- **Edits as fields.** ``result.output`` is what the model read; ``result.shown_output`` the tool's
  own output. A ``tool.result`` with ``edited`` holds the tool's output and the model's text is
  ``events.tool_message`` of it; older traces (no field) hold the note inside ``output``, and the
  one legacy read cuts that exact note (built from ``edited_arguments``, not found by regex).
- **Attached context.** ``context`` is ``run.start.context`` (``{label, text}``, or None): the
  panel's attached cell / selection / notebook / variables; ``prompt`` is what the user typed.
  Older traces have the context inside ``prompt`` and ``context`` None.
- **Step restart.** ``notice(kind="step_restart")`` in an unfinished step drops that step's streamed
  reasoning and content (the provider streams the step again), so a cut stream is never shown
  twice; ``restarts`` counts them. ``step.end`` replaces both texts with the assembled message,
  which is always the truth.
- **Retries.** ``retry.attempt`` is 1 for the first retry; the view numbers *attempts*: a retry
  entry's ``attempt`` is the attempt it starts (``retry.attempt + 1``) out of ``max_attempts``
  attempts in all, shown as "attempt 2 of 4" (``retry_text``). The CLI read ``attempt/max-1`` and
  the widget ``attempt/max``; both now read this.
- **Tokens.** A step's ``usage`` sums its ``usage`` events (``None`` until one arrives; counting
  deltas is not a token count). Run totals sum the usage events, and ``run.end``'s own counts win
  when they are non-zero.
- **Answer.** Before ``run.end``: the content of the latest step without tool calls, or of a step
  with calls when it has content (the loop's rule); ``run.end.answer`` wins.
  Once a ``verify.start`` came, the answer under check stands: the verify rounds' texts never
  replace it, only the corrected answer after a ``verify.end`` with a ``correction`` does.
- **Verify pass.** ``verify``: ``rounds`` (prompt, verdict, outcome, summary, reason, checks,
  correction each), ``outcome`` (the last ``verify.end``'s) and ``phase``; the key exists only
  for runs with a verify pass.
- **Ended without answers.** At ``run.end`` a call still waiting becomes ``stop``; a decided call
  with no result becomes ``not_run`` / ``no_result``.
- Unknown event types are ignored (a newer writer), missing fields read as defaults: bad input
  never raises here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from k2lab.events import EDIT_NOTE, EVENT_TYPES, Event, tool_message

CALL_STATUSES = ("pending", "running", "done", "error", "rejected", "not_run")
DECISIONS = ("approve", "edit", "reject", "stop", "not_run")


class _Get(Protocol):
    def get(self, key: str, default: Any = None, /) -> Any: ...


class _Attrs:
    """``.get`` over an event object's attributes (no dict built per streamed fragment)."""

    __slots__ = ("_ev",)

    def __init__(self, ev: object) -> None:
        self._ev = ev

    def get(self, key: str, default: Any = None, /) -> Any:
        return getattr(self._ev, key, default)


class Text:
    """Streamed text: appends are O(1) (a list of fragments), joined only when read."""

    __slots__ = ("_parts", "length")

    def __init__(self, value: str = "") -> None:
        self._parts = [value] if value else []
        self.length = len(value)

    def append(self, piece: str) -> None:
        if piece:
            self._parts.append(piece)
            self.length += len(piece)

    def __str__(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def since(self, offset: int) -> str:
        """The text after ``offset``: walks back over the new parts only, so a live patch costs
        what was added since the last one, not the whole text so far."""
        if offset >= self.length:
            return ""
        tail: list[str] = []
        pos = self.length
        for part in reversed(self._parts):
            if pos <= offset:
                break
            pos -= len(part)
            tail.append(part)
        tail.reverse()
        tail[0] = tail[0][offset - pos :]
        return "".join(tail)


def retry_text(retry: dict[str, Any]) -> str:
    """The one wording of a retry: "attempt 2 of 4 in 1.0 s: <reason>"."""
    return (
        f"attempt {retry['attempt']} of {retry['max_attempts']} in {retry['delay']:.1f} s: "
        f"{retry['reason']}"
    )


def _str(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _int(v: Any) -> int:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, TypeError):
        return False


class Step:
    __slots__ = (
        "index",
        "reasoning",
        "content",
        "started",
        "duration",
        "done",
        "finish_reason",
        "usage",
        "calls",
        "restarts",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.reasoning = Text()
        self.content = Text()
        self.started: float | None = None
        self.duration: float | None = None
        self.done = False
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None
        self.calls: list[str] = []
        self.restarts = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "reasoning": str(self.reasoning),
            "content": str(self.content),
            "started": self.started,
            "duration": self.duration,
            "done": self.done,
            "finish_reason": self.finish_reason,
            "usage": None if self.usage is None else dict(self.usage),
            "calls": list(self.calls),
            "restarts": self.restarts,
            "tokens": step_tokens(self),
        }


class Call:
    __slots__ = (
        "run_id",
        "call_id",
        "model_id",
        "step",
        "name",
        "arguments",
        "problem",
        "decision",
        "by",
        "edited_arguments",
        "feedback",
        "reason",
        "status",
        "executed",
        "result",
    )

    def __init__(self, run_id: str, call_id: str, step: int, name: str, arguments: str) -> None:
        self.run_id = run_id
        self.call_id = call_id
        self.model_id: str | None = None  # the model's own id, when the engine renamed it
        self.step = step
        self.name = name
        self.arguments = arguments  # as the model proposed them
        self.problem: str | None = None
        self.decision: str | None = None
        self.by: str | None = None
        self.edited_arguments: str | None = None
        self.feedback: str | None = None
        self.reason: str | None = None
        self.status = "pending"
        self.executed = False
        self.result: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.run_id, self.call_id)

    @property
    def ran_arguments(self) -> str:
        """The arguments that ran (or would have): the edit when edited, else the model's."""
        if self.decision == "edit" and self.edited_arguments is not None:
            return self.edited_arguments
        return self.arguments

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.__slots__}, "label": call_label(self)}


_NOT_RUN_WHY = {
    "invalid": "invalid call",
    "invalid_edit": "invalid edit",
    "no_result": "no result",
    "stopped": "stopped",
    "wall_time": "wall time",
    "tokens": "token budget",
    "max_steps": "step budget",
    "error": "run failed",
}


def call_label(c: Call) -> str:
    """A call's state in words, the one wording of every face (widget, fallbacks, the saved-trace
    and panel cards: ``fold.ts`` ``callLabel`` says the same, checked on the golden traces). The
    decision stays in the words once the call ran ("approved, ran", "edited, ran")."""
    did = "edited" if c.decision == "edit" else "approved"
    if c.status == "pending":
        return "waiting for you"
    if c.status == "running":
        return f"{did}, running"
    if c.status == "done":
        return f"{did}, ran"
    if c.status == "error":
        return f"{did}, ran with an error"
    if c.status == "rejected":
        return "rejected"
    why = _NOT_RUN_WHY.get(c.reason or "", c.reason or "")
    return f"not run ({why})" if why else "not run"


def step_tokens(st: Step) -> int | None:
    """The tokens a step's reasoning row shows: its reasoning tokens, else its completion tokens,
    from the usage; None until a usage arrives (counting streamed pieces is not a token count)."""
    if st.usage is None:
        return None
    return st.usage.get("reasoning_tokens") or st.usage.get("completion_tokens") or 0


_NO_BUDGETS: dict[str, Any] = {
    "wall_time": None,
    "max_total_tokens": None,
    "max_tokens": None,
    "context_window": 0,
    "prices": None,
}


def budgets_of(d: _Get) -> dict[str, Any]:
    """The budgets a ``run.start`` carries; a missing or bad value is "unknown" (None / 0)."""
    out = dict(_NO_BUDGETS)
    wall = d.get("wall_time")
    if isinstance(wall, int | float) and not isinstance(wall, bool) and wall > 0:
        out["wall_time"] = float(wall)
    for k in ("max_total_tokens", "max_tokens"):
        v = d.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            out[k] = v
    out["context_window"] = max(0, _int(d.get("context_window")))
    prices = d.get("prices")
    if (
        isinstance(prices, list)
        and len(prices) == 3
        and all(isinstance(p, int | float) and not isinstance(p, bool) and p >= 0 for p in prices)
    ):
        out["prices"] = [float(p) for p in prices]
    return out


def context_of(v: Any) -> dict[str, str] | None:
    """``run.start.context`` as ``{label, text}``; None when absent or not that shape."""
    if not isinstance(v, dict) or not isinstance(v.get("text"), str):
        return None
    label = v.get("label")
    return {"label": label if isinstance(label, str) else "", "text": v["text"]}


def cost_text(totals: dict[str, Any], prices: list[float] | None) -> str:
    """ "≈ $0.0123" from the run's tokens at the preset's prices; "" where no price is known."""
    if not prices:
        return ""
    cached = _int(totals.get("cached_tokens"))
    fresh = max(0, _int(totals.get("prompt_tokens")) - cached)
    usd = (
        fresh * prices[0] + cached * prices[1] + _int(totals.get("completion_tokens")) * prices[2]
    ) / 1e6
    return f"≈ ${usd:.4f}" if usd < 1 else f"≈ ${usd:.2f}"


def short_count(n: int) -> str:
    """262144 -> "262k", 1500000 -> "1.5M", 950 -> "950"."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M".replace(".0M", "M")
    if n >= 10_000:
        return f"{round(n / 1000)}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return str(n)


def context_gauge(last_prompt_tokens: int, window: int) -> str:
    """ "ctx 41% of 262k": the last request's prompt over the window; "" when either is unknown."""
    if window <= 0 or last_prompt_tokens <= 0:
        return ""
    return f"ctx {round(100 * last_prompt_tokens / window)}% of {short_count(window)}"


def _secs(v: float) -> str:
    return f"{v:g} s"


def budget_words(budgets: dict[str, Any]) -> list[str]:
    """The budgets as a run's header says them: "wall time 60 s", "5000 completion tokens",
    "32768 tokens/request", "window 262k"; unknown ones are left out."""
    out = []
    if budgets.get("wall_time"):
        out.append(f"wall time {_secs(budgets['wall_time'])}")
    if budgets.get("max_total_tokens"):
        out.append(f"{budgets['max_total_tokens']} completion tokens")
    if budgets.get("max_tokens"):
        out.append(f"{budgets['max_tokens']} tokens/request")
    if budgets.get("context_window"):
        out.append(f"window {short_count(int(budgets['context_window']))}")
    return out


def budget_stop_text(reason: str | None, budgets: dict[str, Any], max_steps: int = 0) -> str:
    """What a budget stop says: "budget: wall time 60 s"; other reasons as they are."""
    if reason == "wall_time":
        wall = budgets.get("wall_time")
        return f"budget: wall time {_secs(wall)}" if wall else "budget: wall time"
    if reason == "tokens":
        cap = budgets.get("max_total_tokens")
        return f"budget: {cap} completion tokens" if cap else "budget: completion tokens"
    if reason == "max_steps":
        return f"budget: {max_steps} steps" if max_steps else "budget: steps"
    return reason or ""


class RunState:
    __slots__ = (
        "run_id",
        "lane",
        "prompt",
        "model",
        "model_label",
        "base_url",
        "policy",
        "isolation",
        "max_steps",
        "demo",
        "tools",
        "parent_run_id",
        "forked_from_call",
        "status",
        "started",
        "stop_reason",
        "error",
        "answer",
        "steps",
        "calls",
        "retries",
        "notices",
        "errors",
        "totals",
        "current",
        "_model_ids",
        "verify",
        "budgets",
        "last_prompt_tokens",
        "context",
        "replayable",  # not in to_dict (the golden views): the widget's Replay button reads it
    )

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self.lane = ""
        self.prompt = ""
        self.model = ""
        self.model_label = ""
        self.base_url = ""
        self.policy = ""
        self.isolation = ""
        self.max_steps = 0
        self.demo = False
        self.tools: list[str] = []
        #: tools whose calls Replay may run again (run.start.replayable; older traces: python)
        self.replayable: list[str] = ["python"]
        self.parent_run_id: str | None = None
        self.forked_from_call: str | None = None
        self.status = "running"  # running | ended
        self.started: float | None = None
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.answer = ""
        self.steps: dict[int, Step] = {}
        self.calls: dict[str, Call] = {}  # by call_id, in proposal order
        self.retries: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.totals: dict[str, Any] = {
            "steps": 0,
            "calls": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "duration": None,
        }
        self.current: int | None = None  # the step streaming now
        self._model_ids: dict[str, str] = {}
        #: the verify pass, once a ``verify.start`` came: ``rounds`` (one dict per round),
        #: ``outcome`` (the last ``verify.end``'s), ``phase`` (checking / correcting / answered)
        self.verify: dict[str, Any] | None = None
        #: from ``run.start``: wall_time / max_total_tokens / max_tokens (None = unlimited or
        #: unknown) and context_window (0 = unknown); older traces have none of them
        self.budgets: dict[str, Any] = dict(_NO_BUDGETS)
        #: the latest request's prompt tokens (the context gauge's numerator)
        self.last_prompt_tokens = 0
        #: ``run.start.context``: what the user attached to the prompt ({label, text}), or None
        self.context: dict[str, str] | None = None

    def step(self, index: int) -> Step:
        st = self.steps.get(index)
        if st is None:
            st = self.steps[index] = Step(index)
        return st

    def to_dict(self) -> dict[str, Any]:
        head = {k: getattr(self, k) for k in self.__slots__[:18]}  # run_id .. answer
        head["tools"] = list(self.tools)
        out = {
            **head,
            "steps": [self.steps[n].to_dict() for n in sorted(self.steps)],
            "calls": [c.to_dict() for c in self.calls.values()],
            "retries": [dict(r) for r in self.retries],
            "notices": [dict(n) for n in self.notices],
            "errors": [dict(e) for e in self.errors],
            "totals": dict(self.totals),
            "budgets": dict(self.budgets),
            "last_prompt_tokens": self.last_prompt_tokens,
            "context": None if self.context is None else dict(self.context),
        }
        if self.verify is not None:  # only runs with a verify pass carry the key
            v = self.verify
            out["verify"] = {
                "outcome": v["outcome"],
                "phase": v["phase"],
                "rounds": [{**r, "checks": [dict(c) for c in r["checks"]]} for r in v["rounds"]],
            }
        return out


class RunView:
    """Events in, run state out. Pure: no I/O, no clock, no UI."""

    def __init__(self) -> None:
        self.runs: list[RunState] = []
        self.calls: dict[tuple[str, str], Call] = {}
        self._by_id: dict[str, RunState] = {}
        #: heavy mode: the latest run of each lane (lanes interleave in one trace)
        self._by_lane: dict[str, RunState] = {}
        self.last_seq = -1
        #: the latest event's ``ts`` (the CLI's "3.1 s of 60 s" reads it; no clock here)
        self.last_ts: float | None = None

    # -- reading -------------------------------------------------------------------------------
    @property
    def run(self) -> RunState | None:
        """The latest run."""
        return self.runs[-1] if self.runs else None

    def call(self, run_id: str, call_id: str) -> Call | None:
        return self.calls.get((run_id, call_id))

    def find_call(self, call_id: str) -> Call | None:
        """The latest call with this id, whatever its run."""
        for run in reversed(self.runs):
            c = run.calls.get(call_id)
            if c is not None:
                return c
        return None

    def all_calls(self) -> list[Call]:
        """Every call, runs in order, calls in proposal order."""
        return [c for run in self.runs for c in run.calls.values()]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [r.to_dict() for r in self.runs]}

    # -- folding -------------------------------------------------------------------------------
    def apply(self, ev: Event | dict[str, Any]) -> None:
        d: _Get = ev if isinstance(ev, dict) else _Attrs(ev)
        kind = d.get("type")
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return
        seq = d.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and seq > self.last_seq:
            self.last_seq = seq
        ts = d.get("ts")
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            self.last_ts = float(ts)
        handler(self, d)

    def extend(self, events: Iterable[Event | dict[str, Any]]) -> RunView:
        for ev in events:
            self.apply(ev)
        return self

    def _run_of(self, d: _Get) -> RunState:
        rid = d.get("run_id")
        if isinstance(rid, str) and rid:
            run = self._by_id.get(rid)
            if run is not None:
                return run
        lane = d.get("lane")
        if isinstance(lane, str) and lane:
            run = self._by_lane.get(lane)
            if run is not None:
                return run
        if not self.runs:
            self._add_run(RunState(rid if isinstance(rid, str) else ""))
        return self.runs[-1]

    def _add_run(self, run: RunState) -> None:
        self.runs.append(run)
        self._by_id[run.run_id] = run
        if run.lane:
            self._by_lane[run.lane] = run

    def _on_run_start(self, d: _Get) -> None:
        run = RunState(_str(d.get("run_id")))
        run.lane = _str(d.get("lane"))
        for k in ("prompt", "model", "model_label", "base_url", "policy", "isolation"):
            setattr(run, k, _str(d.get(k)))
        run.max_steps = _int(d.get("max_steps"))
        run.demo = d.get("demo") is True
        tools = d.get("tools")
        run.tools = [t for t in tools if isinstance(t, str)] if isinstance(tools, list) else []
        again = d.get("replayable")
        if isinstance(again, list):
            run.replayable = [t for t in again if isinstance(t, str)]
        parent = d.get("parent_run_id")
        run.parent_run_id = parent if isinstance(parent, str) else None
        fork = d.get("forked_from_call")
        run.forked_from_call = fork if isinstance(fork, str) else None
        ts = d.get("ts")
        run.started = float(ts) if isinstance(ts, int | float) else None
        run.budgets = budgets_of(d)
        run.context = context_of(d.get("context"))
        self._add_run(run)

    def _on_step_start(self, d: _Get) -> None:
        run = self._run_of(d)
        n = _int(d.get("step"))
        st = run.step(n)
        ts = d.get("ts")
        st.started = float(ts) if isinstance(ts, int | float) else None
        run.current = n
        run.totals["steps"] = max(run.totals["steps"], len(run.steps))

    def _on_reasoning_delta(self, d: _Get) -> None:
        self._run_of(d).step(_int(d.get("step"))).reasoning.append(_str(d.get("text")))

    def _on_content_delta(self, d: _Get) -> None:
        self._run_of(d).step(_int(d.get("step"))).content.append(_str(d.get("text")))

    def _on_step_end(self, d: _Get) -> None:
        run = self._run_of(d)
        st = run.step(_int(d.get("step")))
        st.reasoning = Text(_str(d.get("reasoning"), str(st.reasoning)))
        st.content = Text(_str(d.get("content"), str(st.content)))
        # 0.0 is a duration (a fork's first step is replayed from the record, not asked for):
        # only a missing one is taken from the clock, and never below zero
        dur = d.get("duration")
        ok_dur = isinstance(dur, int | float) and not isinstance(dur, bool)
        st.duration = float(dur) if ok_dur else None
        if st.duration is None and st.started is not None and isinstance(d.get("ts"), int | float):
            st.duration = max(0.0, float(d.get("ts")) - st.started)
        st.done = True
        fr = d.get("finish_reason")
        st.finish_reason = fr if isinstance(fr, str) else None
        calls = d.get("tool_calls")
        calls = [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
        for c in calls:
            mid = c.get("model_id")
            if isinstance(mid, str) and isinstance(c.get("id"), str):
                run._model_ids[c["id"]] = mid
        content = str(st.content)
        v = run.verify
        if v is None:
            if not calls or content:
                run.answer = content
        elif v["phase"] == "correcting" and not calls:
            # during a verify pass only the corrected answer replaces the one that stands
            run.answer, v["phase"] = content, "answered"
        if run.current == st.index:
            run.current = None

    def _on_usage(self, d: _Get) -> None:
        run = self._run_of(d)
        st = run.step(_int(d.get("step")))
        if st.usage is None:
            st.usage = dict.fromkeys(_USAGE_KEYS, 0)
        for k in _USAGE_KEYS:
            v = _int(d.get(k))
            st.usage[k] += v
            run.totals[k] += v
        p = _int(d.get("prompt_tokens"))
        if p > 0:
            run.last_prompt_tokens = p

    def _on_tool_proposed(self, d: _Get) -> None:
        run = self._run_of(d)
        cid = _str(d.get("call_id"))
        step = _int(d.get("step"))
        call = Call(run.run_id, cid, step, _str(d.get("name")), _str(d.get("arguments")))
        call.model_id = run._model_ids.get(cid)
        problem = d.get("problem")
        if isinstance(problem, str) and problem:
            call.problem = problem
            call.decision, call.reason, call.status = "not_run", "invalid", "not_run"
        run.calls.pop(cid, None)  # the same id twice in one run: the latest wins
        run.calls[cid] = call
        self.calls[call.key] = call
        st = run.step(step)
        st.calls.append(cid)
        run.totals["calls"] += 1

    def _call_of(self, d: _Get) -> Call | None:
        return self._run_of(d).calls.get(_str(d.get("call_id")))

    def _on_tool_decision(self, d: _Get) -> None:
        call = self._call_of(d)
        if call is None or call.status != "pending":
            return
        kind = d.get("decision")
        by = d.get("by")
        call.by = by if isinstance(by, str) else None
        if kind == "reject":
            call.decision, call.status = "reject", "rejected"
            fb = d.get("feedback")
            call.feedback = fb if isinstance(fb, str) else None
        elif kind == "edit":
            call.decision, call.status = "edit", "running"
            args = d.get("arguments")
            call.edited_arguments = args if isinstance(args, str) else None
        elif kind == "approve":
            call.decision, call.status = "approve", "running"

    def _on_tool_result(self, d: _Get) -> None:
        call = self._call_of(d)
        if call is None or call.result is not None:
            return  # answered already: the first answer is the one the model read
        output = shown = _str(d.get("output"))
        if call.decision == "edit" and call.edited_arguments is not None:
            if d.get("edited") is True:  # the edit is a field: the model read the note too
                output = tool_message(shown, call.edited_arguments)
            else:  # the one legacy read: older traces hold the note inside the output
                note = EDIT_NOTE.format(arguments=call.edited_arguments)
                if output.startswith(note):
                    shown = output[len(note) :]
        display = d.get("display")
        ok = d.get("ok") is True
        people = d.get("people_output")
        sent = d.get("sent_to_model")
        call.result = {
            "ok": ok,
            "output": output,
            "shown_output": shown,
            "display": list(display) if isinstance(display, list) else [],
            "duration": _num(d.get("duration")),
            "truncated": d.get("truncated") is True,
            # what people read: without the notes for the model about the display bundles
            "people_output": people if isinstance(people, str) else None,
            "sent_to_model": [i for i in sent if isinstance(i, int)]
            if isinstance(sent, list)
            else [],
        }
        if call.status == "pending":  # answered without a decision: the run stopped
            call.decision, call.status = "stop", "not_run"
        elif call.status == "running":
            if (
                call.decision == "edit"
                and call.edited_arguments is not None
                and not _json_object(call.edited_arguments)
            ):
                call.reason, call.status = "invalid_edit", "not_run"
            else:
                call.executed = True
                call.status = "done" if ok else "error"

    def _on_retry(self, d: _Get) -> None:
        run = self._run_of(d)
        run.retries.append(
            {
                "step": run.current,
                "attempt": _int(d.get("attempt")) + 1,
                "max_attempts": _int(d.get("max_attempts")),
                "delay": _num(d.get("delay")),
                "reason": _str(d.get("reason")),
            }
        )

    def _on_error(self, d: _Get) -> None:
        run = self._run_of(d)
        run.errors.append(
            {
                "step": run.current,
                "kind": _str(d.get("kind"), "error"),
                "message": _str(d.get("message")),
                "fatal": d.get("fatal") is True,
            }
        )

    def _on_notice(self, d: _Get) -> None:
        run = self._run_of(d)
        kind = _str(d.get("kind"), "info")
        run.notices.append({"step": run.current, "kind": kind, "message": _str(d.get("message"))})
        if kind == "step_restart" and run.current is not None:
            st = run.steps[run.current]
            st.reasoning, st.content = Text(), Text()
            st.restarts += 1

    def _on_verify_start(self, d: _Get) -> None:
        run = self._run_of(d)
        if run.verify is None:
            run.verify = {"outcome": None, "phase": "checking", "rounds": []}
        run.verify["phase"] = "checking"
        run.verify["rounds"].append(
            {
                "round": _int(d.get("round")),
                "max_rounds": _int(d.get("max_rounds")),
                "prompt": _str(d.get("prompt")),
                "status": "checking",
                "verdict": None,
                "outcome": None,
                "summary": "",
                "reason": "",
                "checks": [],
                "correction": None,
            }
        )

    def _on_verify_end(self, d: _Get) -> None:
        run = self._run_of(d)
        if run.verify is None or not run.verify["rounds"]:
            self._on_verify_start(d)  # a trace cut before its start: still show the verdict
        v = run.verify
        assert v is not None
        r = v["rounds"][-1]
        checks = d.get("checks")
        corr = d.get("correction")
        r.update(
            status="done",
            verdict=_str(d.get("verdict"), "none"),
            outcome=_str(d.get("outcome"), "unverified"),
            summary=_str(d.get("summary")),
            reason=_str(d.get("reason")),
            checks=[
                {k: _str(c.get(k)) for k in ("call_id", "name", "arguments", "output")}
                for c in (checks if isinstance(checks, list) else [])
                if isinstance(c, dict)
            ],
            correction=corr if isinstance(corr, str) else None,
        )
        v["outcome"] = r["outcome"]
        v["phase"] = "correcting" if r["correction"] is not None else "answered"

    def _on_run_end(self, d: _Get) -> None:
        run = self._run_of(d)
        reason = _str(d.get("stop_reason"), "error")
        run.status, run.stop_reason = "ended", reason
        err = d.get("error")
        run.error = err if isinstance(err, str) else None
        answer = d.get("answer")
        if isinstance(answer, str):
            run.answer = answer
        for call in run.calls.values():
            if call.status == "pending":
                call.decision, call.status = "stop", "not_run"
            elif call.status == "running":
                call.reason, call.status = "no_result", "not_run"
            if call.decision == "stop" and call.reason is None:
                call.reason = reason
        t = run.totals
        t["steps"] = max(t["steps"], _int(d.get("steps")))
        t["calls"] = max(t["calls"], _int(d.get("tool_calls")))
        for k in ("prompt_tokens", "completion_tokens"):
            if _int(d.get(k)):
                t[k] = _int(d.get(k))
        el = d.get("elapsed")
        t["duration"] = float(el) if isinstance(el, int | float) else None
        run.current = None


_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")

_HANDLERS: dict[Any, Any] = {
    name: getattr(RunView, "_on_" + name.replace(".", "_")) for name in EVENT_TYPES
}


def view_of(events: Iterable[Event | dict[str, Any]]) -> RunView:
    return RunView().extend(events)
