"""The trace view's state model: events in, a JSON-able view of the run out. Pure: no I/O, no UI.

One ``TraceState`` per run. ``apply(event)`` folds an event dict (``Event.to_dict()``) into:

- ``head``: run facts and the status line (step / budget, tokens, time, isolation, model, status);
- ``steps``: one entry per model step (reasoning, answer text, token count, elapsed time, calls);
- ``cards``: one entry per tool call (code, decision, edit, feedback, result, replay).

It also records what changed since the last ``take_patch()``, so the widget sends small patches at a
coalesced rate instead of the whole state: streamed text travels as appends (``*_from`` says at
which length the append starts, so a view that missed one asks for a ``snapshot()``). The same model
feeds the saved renderings (``k2lab.trace.notebook``), so the live view and the saved trace agree.
"""

from __future__ import annotations

import json
import time
from typing import Any

from k2lab.trace.view import (
    Call,
    RunState,
    RunView,
    Step,
    Text,
    budgets_of,
    call_label,
    cost_text,
    retry_text,
    step_tokens,
)

__all__ = ["TraceState", "Text", "arguments_for", "code_of", "state_from_events"]

#: The heavy-mode lane of the aggregation step (its events go to the main steps and answer).
AGGREGATE = "aggregate"
#: A lane's detail carries its last this many steps (older ones are counted, not sent: a patch
#: of a long lane costs what its recent steps hold), each text cut to its last LANE_TEXT chars.
LANE_STEPS = 20
LANE_TEXT = 4000
#: How the verify pass's outcome reads (as ``k2lab run`` says it).
VERIFY_WORDS = {"verified": "verified", "corrected": "corrected", "unverified": "could not verify"}


def code_of(name: str, arguments: str) -> str:
    """What to show (and edit) of a call: a python call's ``code``, else the JSON arguments."""
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return arguments
    if name == "python" and isinstance(args, dict) and isinstance(args.get("code"), str):
        return str(args["code"])
    return json.dumps(args, indent=2, ensure_ascii=False)


def arguments_for(name: str, code: str) -> str:
    """The inverse of ``code_of``: the JSON arguments an edited card runs with."""
    if name == "python":
        return json.dumps({"code": code}, ensure_ascii=False)
    return code


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def people_output(c: Call) -> str | None:
    """The result text people read: the tool's own output, without the notes for the model."""
    r = c.result
    if r is None:
        return None
    return r["people_output"] if r["people_output"] is not None else str(r["shown_output"])


def _lane_call(c: Call) -> dict[str, Any]:
    out = people_output(c)
    return {
        "call_id": c.call_id,
        "name": c.name,
        "code": code_of(c.name, c.ran_arguments),
        "status": c.status,
        "decision": c.decision,
        "label": call_label(c),
        "output": out[-LANE_TEXT:] if out is not None else None,
        "ok": c.result["ok"] if c.result else None,
    }


#: the head's facts that are ``run.start``'s, as the fold read them
_HEAD_OF_RUN = (
    "run_id",
    "prompt",
    "context",
    "model",
    "model_label",
    "base_url",
    "policy",
    "isolation",
    "max_steps",
    "parent_run_id",
    "forked_from_call",
    "demo",
)


class TraceState:
    """The widget's shape of ``RunView``'s state: every fact (steps, texts, calls, decisions,
    results, answer, totals, restarts, retries) is the fold's; this class picks the run the view
    shows, shapes it as the widget's JSON and remembers what changed since the last patch."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {
            "run_id": "",
            "prompt": "",
            "context": None,  # run.start's attached context ({label, text}), or None
            "model": "",
            "model_label": "",
            "demo": False,  # run.start's flag: the offline demo model answered
            "base_url": "",
            "policy": "",
            "isolation": "",
            "max_steps": 0,
            "parent_run_id": None,
            "forked_from_call": None,
            "step": 0,
            "status": "waiting",  # waiting | running | ended
            "stop_reason": None,
            "error": None,
            "answer": "",
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "tool_calls": 0,
            "started": None,
            "elapsed": 0.0,
            "approve_all": False,
            "messages": [],  # notices, errors and retries: {"kind", "level", "text"}
            "heavy": False,  # events carry lanes: ``lanes`` in snapshots and patches
            "aggregating": False,  # the aggregation step has started
            "lanes_note": "",  # which lanes finished (heavy mode)
            "verify": None,  # the verify pass (``verify_view``), once a verify.start came
            "budgets": budgets_of(
                {}
            ),  # run.start's wall_time / max_total_tokens / max_tokens / window
            "last_prompt_tokens": 0,  # the latest request's prompt (the context gauge)
            "cached_tokens": 0,  # of prompt_tokens, for the cost at the preset's prices
        }
        #: the one fold of events (k2lab.trace.view): everything shown is read from it
        self.view = RunView()
        #: the run the head, steps and cards show: the latest plain run, or heavy mode's
        #: aggregation (its lanes are ``lanes``)
        self._main: RunState | None = None
        self.lane_order: list[str] = []
        self._dirty_lanes: set[str] = set()
        #: lane -> the steps of it that changed since the last patch (a patch sends only those)
        self._dirty_lane_steps: dict[str, set[int]] = {}
        self._replays: dict[str, dict[str, Any]] = {}
        self._dirty_head = True
        self._dirty_steps: set[int] = set()
        #: call ids whose card changed, in the order they changed (proposal order for new ones)
        self._dirty_cards: dict[str, None] = {}
        #: step -> (reasoning length, content length, restarts) the last patch ended at
        self._sent: dict[int, tuple[int, int, int]] = {}
        #: the prompt the view has: a head patch leaves it out until it changes (a 21,000-character
        #: prompt went with every tick and every streamed piece)
        self._sent_prompt: str | None = None

    # -- folding events ------------------------------------------------------------------------
    def apply(self, ev: dict[str, Any]) -> None:
        self.view.apply(ev)
        kind = ev.get("type", "")
        lane = ev.get("lane")
        if isinstance(lane, str) and lane and lane != AGGREGATE:
            self._on_lane(lane, ev)
            return
        if kind == "run.start" or self._main is None:
            self._main = self._latest_main()
        if lane == AGGREGATE and kind == "run.start":
            # the aggregation's prompt is k2lab's, not the person's: the head keeps the task
            self._set(aggregating=True, lanes_note=self._lanes_note())
            return
        run = self._main
        if run is None:
            return
        handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
        if handler is not None:
            handler(run, ev)
        if kind in ("verify.start", "verify.end"):
            self._set(verify=self._verify_view())

    # -- heavy-mode lanes: the fold's per-lane runs, summed into the head ----------------------
    def _on_lane(self, lane: str, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if lane not in self.lane_order:
            self.lane_order.append(lane)
            self._set(heavy=True)
        self._dirty_lanes.add(lane)
        step = ev.get("step")
        if not isinstance(step, int):  # a decision or a result: the step of its call
            run = self._lane_run(lane)
            call = run.calls.get(str(ev.get("call_id"))) if run is not None else None
            step = call.step if call is not None else None
        if isinstance(step, int):
            self._dirty_lane_steps.setdefault(lane, set()).add(step)
        if kind == "run.start" and not self.head["run_id"]:
            run = self._lane_run(lane)
            if run is not None:
                self._on_run_start(run, ev)
            rid = str(ev.get("run_id") or "")
            self._set(run_id=rid.removesuffix("." + lane))  # the heavy run's own id
        elif kind in ("usage", "tool.proposed"):
            self._set_totals()
        if kind in ("run.start", "run.end", "error"):
            self._set(lanes_note=self._lanes_note())

    def _lane_run(self, lane: str) -> RunState | None:
        for run in reversed(self.view.runs):
            if run.lane == lane:
                return run
        return None

    def _lanes_note(self) -> str:
        runs = [r for r in (self._lane_run(n) for n in self.lane_order) if r is not None]
        done = [r.lane for r in runs if r.stop_reason == "completed"]
        other = [
            f"{r.lane} ({r.stop_reason})"
            for r in runs
            if r.status == "ended" and r.stop_reason != "completed"
        ]
        going = [r.lane for r in runs if r.status != "ended"]
        parts = [_count(len(runs), "lane")]
        if done:
            parts.append("finished: " + ", ".join(done))
        if other:
            parts.append("did not finish: " + ", ".join(other))
        if going:
            parts.append("running: " + ", ".join(going))
        return " · ".join(parts)

    def lane_view(self, lane: str, only: set[int] | None = None) -> dict[str, Any]:
        """One lane as the view shows it: a summary row and its latest steps with their calls
        (``only``: just those steps, ``partial`` set: the view merges them by step number)."""
        run = self._lane_run(lane)
        if run is None:
            return {"lane": lane, "status": "running", "steps": [], "calls": []}
        nums = sorted(run.steps)
        calls = list(run.calls.values())
        steps = []
        shown = nums[-LANE_STEPS:]
        for n in shown if only is None else [n for n in shown if n in only]:
            st = run.steps[n]
            steps.append(
                {
                    "step": n,
                    "reasoning": str(st.reasoning)[-LANE_TEXT:],
                    "content": str(st.content)[-LANE_TEXT:],
                    "done": st.done,
                    "tokens": (st.usage or {}).get("completion_tokens"),
                    "calls": [_lane_call(run.calls[c]) for c in st.calls if c in run.calls],
                }
            )
        t = run.totals
        return {
            "lane": lane,
            "run_id": run.run_id,
            "status": run.status,
            "stop_reason": run.stop_reason,
            "error": run.error,
            "step": run.current if run.current is not None else (nums[-1] if nums else 0),
            "max_steps": run.max_steps,
            "n_steps": len(nums),
            "n_calls": len(calls),
            "waiting": any(c.status == "pending" for c in calls),
            "prompt_tokens": t["prompt_tokens"],
            "completion_tokens": t["completion_tokens"],
            "cost": cost_text(t, run.budgets.get("prices")),  # "" where the preset knows no prices
            "answer": run.answer[-LANE_TEXT:],
            "steps_omitted": max(0, len(nums) - LANE_STEPS),
            "first_step": shown[0] if shown else 0,
            "partial": only is not None,
            "steps": steps,
        }

    def lanes(self) -> list[dict[str, Any]]:
        return [self.lane_view(n) for n in self.lane_order]

    def _verify_view(self) -> dict[str, Any] | None:
        run = self._main_run()
        v = run.verify if run is not None else None
        if v is None:
            return None
        rounds = [
            {
                "round": r["round"],
                "max_rounds": r["max_rounds"],
                "status": r["status"],
                "outcome": r["outcome"],
                "summary": r["summary"],
                "reason": r["reason"],
                "checks": [
                    {
                        "name": c["name"],
                        "code": code_of(c["name"], c["arguments"]),
                        "output": c["output"],
                    }
                    for c in r["checks"]
                ],
                "corrected": r["correction"] is not None,
            }
            for r in v["rounds"]
        ]
        outcome = v["outcome"]
        return {
            "outcome": outcome,
            "phase": v["phase"],
            "text": VERIFY_WORDS.get(outcome, outcome) if outcome else "checking the answer",
            "rounds": rounds,
        }

    def _latest_main(self) -> RunState | None:
        """The run the head shows: the aggregation in heavy mode, else the latest run."""
        for run in reversed(self.view.runs):
            if run.lane in ("", AGGREGATE):
                return run
        return None

    _main_run = _latest_main

    def _set(self, **kw: Any) -> None:
        self.head.update(kw)
        self._dirty_head = True

    def _set_totals(self) -> None:
        """The head's counts: the fold's totals of every run shown here (heavy mode: every lane
        and the aggregation; a plain run: its own)."""
        runs = self.view.runs
        main = self._main
        self._set(
            prompt_tokens=sum(r.totals["prompt_tokens"] for r in runs),
            completion_tokens=sum(r.totals["completion_tokens"] for r in runs),
            cached_tokens=sum(r.totals["cached_tokens"] for r in runs),
            tool_calls=sum(r.totals["calls"] for r in runs),
            last_prompt_tokens=main.last_prompt_tokens if main is not None else 0,
        )

    def _message(self, level: str, kind: str, text: str) -> None:
        self.head["messages"].append({"level": level, "kind": kind, "text": text})
        self._dirty_head = True

    def _on_run_start(self, run: RunState, ev: dict[str, Any]) -> None:
        self._set(
            **{k: getattr(run, k) for k in _HEAD_OF_RUN},
            status="running",
            started=run.started if run.started is not None else time.time(),
            budgets=dict(run.budgets),
        )

    def _on_step_start(self, run: RunState, ev: dict[str, Any]) -> None:
        n = int(ev.get("step") or 0)
        self._dirty_steps.add(n)
        self._set(step=n)

    def _on_reasoning_delta(self, run: RunState, ev: dict[str, Any]) -> None:
        self._dirty_steps.add(int(ev.get("step") or 0))

    _on_content_delta = _on_reasoning_delta

    def _on_usage(self, run: RunState, ev: dict[str, Any]) -> None:
        self._dirty_steps.add(int(ev.get("step") or 0))
        self._set_totals()

    def _on_step_end(self, run: RunState, ev: dict[str, Any]) -> None:
        n = int(ev.get("step") or 0)
        self._dirty_steps.add(n)
        self._sent.pop(n, None)  # the text may have been replaced: resend it whole

    def _on_tool_proposed(self, run: RunState, ev: dict[str, Any]) -> None:
        self._dirty_cards[str(ev.get("call_id"))] = None
        self._dirty_steps.add(int(ev.get("step") or 0))
        self._set_totals()

    def _on_tool_decision(self, run: RunState, ev: dict[str, Any]) -> None:
        self._dirty_cards[str(ev.get("call_id"))] = None

    _on_tool_result = _on_tool_decision

    def _on_retry(self, run: RunState, ev: dict[str, Any]) -> None:
        if run.retries:  # the fold's entry: the attempt it starts, of max_attempts
            self._message("warning", "retry", "Retrying: " + retry_text(run.retries[-1]))

    def _on_error(self, run: RunState, ev: dict[str, Any]) -> None:
        if run.errors:
            e = run.errors[-1]
            self._message("error", e["kind"], e["message"])

    def _on_notice(self, run: RunState, ev: dict[str, Any]) -> None:
        if run.notices:
            n = run.notices[-1]
            self._message("info", n["kind"], n["message"])
            if n["kind"] == "step_restart" and n["step"] is not None:
                self._dirty_steps.add(n["step"])  # the fold dropped the cut stream

    def _on_run_end(self, run: RunState, ev: dict[str, Any]) -> None:
        self._dirty_cards.update(dict.fromkeys(run.calls))  # the fold closed what a stop left
        self._set_totals()
        elapsed = run.totals["duration"]
        if self.head["heavy"]:  # the head's clock is the whole heavy run's
            started, ts = self.head["started"], ev.get("ts")
            if isinstance(ts, int | float) and started:
                elapsed = ts - started
        self._set(
            status="ended",
            stop_reason=run.stop_reason,
            error=run.error,
            answer=run.answer,
            elapsed=elapsed if elapsed is not None else 0.0,
            lanes_note=self._lanes_note() if self.head["heavy"] else self.head["lanes_note"],
        )

    # -- things the face adds (not events) -----------------------------------------------------
    def set_replay(self, call_id: str, replay: dict[str, Any]) -> None:
        if self._main is not None and call_id in self._main.calls:
            self._replays[call_id] = replay
            self._dirty_cards[call_id] = None

    def set_approve_all(self) -> None:
        self._set(approve_all=True)

    def tick(self, now: float | None = None) -> None:
        """Refresh the running clock of the status line."""
        if self.head["status"] == "running" and self.head["started"]:
            self._set(elapsed=(now or time.time()) - self.head["started"])

    # -- reading: the fold's state in the widget's shape -----------------------------------------
    @property
    def ended(self) -> bool:
        return bool(self.head["status"] == "ended")

    def _steps_of(self) -> dict[int, Step]:
        return self._main.steps if self._main is not None else {}

    @property
    def n_steps(self) -> int:
        return len(self._steps_of())

    def step(self, n: int) -> Step | None:
        """The fold's step ``n`` of the run shown (texts are ``Text``: read with ``str``)."""
        return self._steps_of().get(n)

    def _step_item(self, st: Step) -> dict[str, Any]:
        return {
            "step": st.index,
            "tokens": step_tokens(st),  # from the usage; None before it (never counted pieces)
            "started": st.started,
            "duration": st.duration,
            "done": st.done,
            "restarts": st.restarts,
            "calls": list(st.calls),
        }

    def step_view(self, n: int) -> dict[str, Any]:
        """One step with its texts as strings."""
        st = self._steps_of()[n]
        return {**self._step_item(st), "reasoning": str(st.reasoning), "content": str(st.content)}

    @property
    def steps(self) -> dict[int, dict[str, Any]]:
        """Every step of the run shown, as ``step_view`` (built on each read: for tests and
        one-off readers; patches read only the steps that changed)."""
        return {n: self.step_view(n) for n in sorted(self._steps_of())}

    def card(self, call_id: str) -> dict[str, Any] | None:
        c = self._main.calls.get(call_id) if self._main is not None else None
        return None if c is None else self._card(c)

    @property
    def cards(self) -> dict[str, dict[str, Any]]:
        """Every card of the run shown, by call id, in proposal order (built on each read)."""
        calls = self._main.calls.values() if self._main is not None else []
        return {c.call_id: self._card(c) for c in calls}

    @property
    def card_order(self) -> list[str]:
        return list(self._main.calls) if self._main is not None else []

    def _card(self, c: Call) -> dict[str, Any]:
        """One call as the widget shows it: the fold's state and words (``call_label``)."""
        r = c.result
        edited = c.edited_arguments if c.decision == "edit" else None
        return {
            "call_id": c.call_id,
            "run_id": c.run_id,
            "step": c.step,
            "name": c.name,
            "arguments": c.arguments,
            "code": code_of(c.name, c.arguments),
            "problem": c.problem,
            "status": c.status,  # RunView's: pending running done error rejected not_run
            "decision": c.decision,
            "reason": c.reason,
            "label": call_label(c),
            "executed": c.executed,
            # Replay runs python and read-only MCP tools again, never a tool that acts (writes)
            "replayable": c.name in (self._main.replayable if self._main else ["python"]),
            "by": c.by,
            "edited_arguments": edited,
            "edited_code": code_of(c.name, edited) if edited is not None else None,
            "feedback": c.feedback,
            "ok": r["ok"] if r is not None else None,
            "output": people_output(c),
            "display": list(r["display"]) if r is not None else [],
            "sent_to_model": list(r["sent_to_model"]) if r is not None else [],
            "duration": r["duration"] if r is not None else None,
            "truncated": r["truncated"] if r is not None else False,
            "replay": self._replays.get(c.call_id),
        }

    def pending_calls(self) -> list[str]:
        if self._main is None:
            return []
        return [cid for cid, c in self._main.calls.items() if c.status == "pending"]

    def snapshot(self) -> dict[str, Any]:
        """The whole view (for a view that just opened, and for the saved renderings)."""
        steps = self._steps_of()
        self._sent = {
            n: (s.reasoning.length, s.content.length, s.restarts) for n, s in steps.items()
        }
        self._dirty_head, self._dirty_steps, self._dirty_cards = False, set(), {}
        self._dirty_lanes, self._dirty_lane_steps = set(), {}
        self._sent_prompt = self.head.get("prompt")
        return {
            "kind": "snapshot",
            "head": dict(self.head),
            "steps": [self.step_view(n) for n in sorted(steps)],
            "cards": list(self.cards.values()),
            "lanes": self.lanes(),
        }

    @property
    def dirty(self) -> bool:
        return (
            self._dirty_head
            or bool(self._dirty_steps)
            or bool(self._dirty_cards)
            or bool(self._dirty_lanes)
        )

    def take_patch(self) -> dict[str, Any] | None:
        """What changed since the last patch or snapshot; None when nothing did. Streamed text
        travels as appends (``*_from`` is the length it starts at): O(what was added)."""
        if not self.dirty:
            return None
        steps = []
        all_steps = self._steps_of()
        for n in sorted(self._dirty_steps):
            st = all_steps.get(n)
            if st is None:
                continue
            r0, c0, restarts = self._sent.get(n, (0, 0, st.restarts))
            if restarts != st.restarts:  # the fold dropped a cut stream: start again from 0
                r0 = c0 = 0
            item = self._step_item(st)
            item.update(
                reasoning_from=r0,
                reasoning_add=st.reasoning.since(r0),
                content_from=c0,
                content_add=st.content.since(c0),
            )
            steps.append(item)
            self._sent[n] = (st.reasoning.length, st.content.length, st.restarts)
        head = dict(self.head) if self._dirty_head else None
        if head is not None:
            if head.get("prompt") == self._sent_prompt:
                del head["prompt"]  # the view keeps the one it has
            else:
                self._sent_prompt = head.get("prompt")
        calls = self._main.calls if self._main is not None else {}
        patch = {
            "kind": "patch",
            "head": head,
            "steps": steps,
            "cards": [self._card(calls[cid]) for cid in self._dirty_cards if cid in calls],
            "lanes": [
                self.lane_view(n, self._dirty_lane_steps.get(n, set()))
                for n in self.lane_order
                if n in self._dirty_lanes
            ],
        }
        self._dirty_lane_steps = {}
        self._dirty_head, self._dirty_steps, self._dirty_cards = False, set(), {}
        self._dirty_lanes = set()
        return patch


def state_from_events(events: list[dict[str, Any]]) -> TraceState:
    st = TraceState()
    for ev in events:
        st.apply(ev)
    return st
