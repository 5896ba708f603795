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

from k2lab.trace.view import Call, RunState, RunView, budgets_of, retry_text

#: The heavy-mode lane of the aggregation step (its events go to the main steps and answer).
AGGREGATE = "aggregate"
#: A lane's detail carries its last this many steps (older ones are counted, not sent: a patch
#: of a long lane costs what its recent steps hold), each text cut to its last LANE_TEXT chars.
LANE_STEPS = 20
LANE_TEXT = 4000
#: How the verify pass's outcome reads (as ``k2lab run`` says it).
VERIFY_WORDS = {"verified": "verified", "corrected": "corrected", "unverified": "could not verify"}
#: Statuses a card goes through, in order (``problem`` and ``rejected`` end early).
CARD_STATUSES = ("pending", "approved", "edited", "rejected", "problem", "done", "error", "not_run")


class Text:
    """Streamed text: appends are O(1) (a list of parts), joined only when read."""

    __slots__ = ("_parts", "length")

    def __init__(self, value: str = "") -> None:
        self._parts = [value] if value else []
        self.length = len(value)

    def append(self, piece: str) -> None:
        self._parts.append(piece)
        self.length += len(piece)

    def __str__(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def since(self, offset: int) -> str:
        """The text after ``offset``: walks back over the new parts only, so a patch costs what
        was added since the last one, not the whole text so far."""
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


def _lane_call(c: Call) -> dict[str, Any]:
    out = c.result["shown_output"] if c.result else None
    return {
        "call_id": c.call_id,
        "name": c.name,
        "code": code_of(c.name, c.ran_arguments),
        "status": c.status,
        "decision": c.decision,
        "output": out[-LANE_TEXT:] if out is not None else None,
        "ok": c.result["ok"] if c.result else None,
    }


class TraceState:
    def __init__(self) -> None:
        self.head: dict[str, Any] = {
            "run_id": "",
            "prompt": "",
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
        #: the one fold of events (k2lab.trace.view): lanes and the verify pass are read from it
        self.view = RunView()
        self.lane_order: list[str] = []
        self._dirty_lanes: set[str] = set()
        #: lane -> the steps of it that changed since the last patch (a patch sends only those)
        self._dirty_lane_steps: dict[str, set[int]] = {}
        self.steps: dict[int, dict[str, Any]] = {}
        self.cards: dict[str, dict[str, Any]] = {}
        self.card_order: list[str] = []
        self._dirty_head = True
        self._dirty_steps: set[int] = set()
        self._dirty_cards: set[str] = set()
        #: step -> (reasoning length, content length) the last patch ended at
        self._sent: dict[int, tuple[int, int]] = {}
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
        if lane == AGGREGATE and kind == "run.start":
            # the aggregation's prompt is k2lab's, not the person's: the head keeps the task
            self._set(aggregating=True, lanes_note=self._lanes_note())
            return
        handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
        if handler is not None:
            handler(ev)
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
            self._on_run_start(ev)
            rid = str(ev.get("run_id") or "")
            self._set(run_id=rid.removesuffix("." + lane))  # the heavy run's own id
        elif kind == "usage":
            self._set(
                prompt_tokens=self.head["prompt_tokens"] + int(ev.get("prompt_tokens") or 0),
                completion_tokens=self.head["completion_tokens"]
                + int(ev.get("completion_tokens") or 0),
            )
        elif kind == "tool.proposed":
            self._set(tool_calls=self.head["tool_calls"] + 1)
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

    def _main_run(self) -> RunState | None:
        """The run the head shows: the aggregation in heavy mode, else the latest run."""
        for run in reversed(self.view.runs):
            if run.lane in ("", AGGREGATE):
                return run
        return None

    def _set(self, **kw: Any) -> None:
        self.head.update(kw)
        self._dirty_head = True

    def _message(self, level: str, kind: str, text: str) -> None:
        self.head["messages"].append({"level": level, "kind": kind, "text": text})
        self._dirty_head = True

    def _on_run_start(self, ev: dict[str, Any]) -> None:
        keys = ("run_id", "prompt", "model", "model_label", "base_url", "policy", "isolation")
        self._set(
            **{k: ev.get(k, "") for k in keys},
            max_steps=ev.get("max_steps", 0),
            parent_run_id=ev.get("parent_run_id"),
            forked_from_call=ev.get("forked_from_call"),
            demo=ev.get("demo") is True,
            status="running",
            started=ev.get("ts", time.time()),
            budgets=budgets_of(ev),
        )

    def _step(self, n: int) -> dict[str, Any]:
        st = self.steps.get(n)
        if st is None:
            st = self.steps[n] = {
                "step": n,
                "reasoning": Text(),
                "content": Text(),
                "tokens": 0,  # exact once the usage arrives, else counted deltas (~1 token each)
                "tokens_exact": False,
                "started": None,
                "duration": None,
                "done": False,
                "calls": [],
            }
        self._dirty_steps.add(n)
        return st

    def _on_step_start(self, ev: dict[str, Any]) -> None:
        self._step(ev["step"])["started"] = ev.get("ts")
        self._set(step=ev["step"])

    def _on_reasoning_delta(self, ev: dict[str, Any]) -> None:
        st = self._step(ev["step"])
        st["reasoning"].append(ev["text"])
        if not st["tokens_exact"]:
            st["tokens"] += 1

    def _on_content_delta(self, ev: dict[str, Any]) -> None:
        st = self._step(ev["step"])
        st["content"].append(ev["text"])
        if not st["tokens_exact"]:
            st["tokens"] += 1

    def _on_usage(self, ev: dict[str, Any]) -> None:
        st = self._step(ev["step"])
        st["tokens"] = ev.get("reasoning_tokens") or ev.get("completion_tokens", 0)
        st["tokens_exact"] = True
        self._set(
            prompt_tokens=self.head["prompt_tokens"] + ev.get("prompt_tokens", 0),
            completion_tokens=self.head["completion_tokens"] + ev.get("completion_tokens", 0),
            last_prompt_tokens=int(ev.get("prompt_tokens") or 0) or self.head["last_prompt_tokens"],
            cached_tokens=self.head["cached_tokens"] + int(ev.get("cached_tokens") or 0),
        )

    def _on_step_end(self, ev: dict[str, Any]) -> None:
        st = self._step(ev["step"])
        # the assembled message is the truth (a retried stream may have re-sent deltas)
        st["reasoning"] = Text(ev.get("reasoning", str(st["reasoning"])))
        st["content"] = Text(ev.get("content", str(st["content"])))
        # 0.0 is a duration (a fork's first step is replayed from the record, not asked for):
        # only a missing one is taken from the clock, and never below zero
        duration = ev.get("duration")
        if duration is None and st["started"]:
            duration = max(0.0, ev.get("ts", 0) - st["started"])
        st["duration"] = duration
        if not st["tokens_exact"] and not st["tokens"]:
            st["tokens"] = None  # no usage and no streamed text: nothing to count
        st["done"] = True
        self._sent.pop(ev["step"], None)  # the text may have been replaced: resend it whole

    def _on_tool_proposed(self, ev: dict[str, Any]) -> None:
        cid, name = ev["call_id"], ev["name"]
        problem = ev.get("problem")
        self.cards[cid] = {
            "call_id": cid,
            "step": ev["step"],
            "name": name,
            "arguments": ev["arguments"],
            "code": code_of(name, ev["arguments"]),
            "problem": problem,
            "status": "problem" if problem else "pending",
            "decision": None,
            "by": None,
            "edited_arguments": None,
            "edited_code": None,
            "feedback": None,
            "ok": None,
            "output": None,
            "display": [],
            "sent_to_model": [],
            "duration": None,
            "truncated": False,
            "replay": None,
        }
        self.card_order.append(cid)
        self._step(ev["step"])["calls"].append(cid)
        self._dirty_cards.add(cid)
        self._set(tool_calls=len(self.card_order))

    def _on_tool_decision(self, ev: dict[str, Any]) -> None:
        card = self.cards.get(ev["call_id"])
        if card is None:
            return
        kind = ev["decision"]
        card.update(decision=kind, by=ev.get("by"), feedback=ev.get("feedback"))
        card["status"] = {"approve": "approved", "edit": "edited", "reject": "rejected"}[kind]
        if kind == "edit" and ev.get("arguments") is not None:
            card["edited_arguments"] = ev["arguments"]
            card["edited_code"] = code_of(card["name"], ev["arguments"])
        self._dirty_cards.add(card["call_id"])

    def _on_tool_result(self, ev: dict[str, Any]) -> None:
        card = self.cards.get(ev["call_id"])
        if card is None:
            return
        card.update(
            ok=ev["ok"],
            # people see the tool's own output (the view's shown_output: the edit is a field)
            output=ev["people_output"]
            if isinstance(ev.get("people_output"), str)
            else self._shown_output(ev),
            display=ev.get("display") or [],
            sent_to_model=ev.get("sent_to_model") or [],
            duration=ev.get("duration"),
            truncated=ev.get("truncated", False),
        )
        if card["status"] == "pending":  # answered without a decision: a stop closed it
            card["status"] = "not_run"
        elif card["status"] not in ("rejected", "problem"):
            card["status"] = "done" if ev["ok"] else "error"
        self._dirty_cards.add(card["call_id"])

    def _shown_output(self, ev: dict[str, Any]) -> str:
        call = self.view.find_call(str(ev.get("call_id")))
        return (
            str(ev.get("output", ""))
            if call is None or call.result is None
            else call.result["shown_output"]
        )

    def _on_retry(self, ev: dict[str, Any]) -> None:
        # RunView's numbering: the attempt a retry starts (retry.attempt + 1) of max_attempts
        r = {
            "attempt": int(ev.get("attempt", 0)) + 1,
            "max_attempts": ev.get("max_attempts", 0),
            "delay": float(ev.get("delay", 0.0)),
            "reason": ev.get("reason", ""),
        }
        self._message("warning", "retry", "Retrying: " + retry_text(r))

    def _on_error(self, ev: dict[str, Any]) -> None:
        self._message("error", ev.get("kind", "error"), ev["message"])

    def _on_notice(self, ev: dict[str, Any]) -> None:
        kind = ev.get("kind", "info")
        self._message("info", kind, ev["message"])
        n = self.head.get("step")
        st = self.steps.get(n) if isinstance(n, int) else None
        if kind == "step_restart" and isinstance(n, int) and st is not None and not st["done"]:
            # RunView's rule: the cut stream is dropped, the provider streams the step again
            st["reasoning"], st["content"] = Text(), Text()
            if not st["tokens_exact"]:
                st["tokens"] = 0
            self._sent.pop(n, None)  # the next patch starts the texts again (from 0)
            self._dirty_steps.add(n)

    def _on_run_end(self, ev: dict[str, Any]) -> None:
        for cid in self.card_order:  # calls a stop left undecided or unrun
            card = self.cards[cid]
            if card["status"] in ("pending", "approved", "edited"):
                card["status"] = "not_run"
                self._dirty_cards.add(cid)
        if self.head["heavy"]:  # the aggregation's counts are its own: the head sums every lane
            started, ts = self.head["started"], ev.get("ts")
            whole = ts - started if isinstance(ts, int | float) and started else None
            self._set(
                status="ended",
                stop_reason=ev["stop_reason"],
                error=ev.get("error"),
                answer=ev.get("answer", ""),
                elapsed=whole if whole is not None else ev.get("elapsed", 0.0),
                lanes_note=self._lanes_note(),
            )
            return
        self._set(
            status="ended",
            stop_reason=ev["stop_reason"],
            error=ev.get("error"),
            answer=ev.get("answer", ""),
            elapsed=ev.get("elapsed", 0.0),
            prompt_tokens=ev.get("prompt_tokens") or self.head["prompt_tokens"],
            completion_tokens=ev.get("completion_tokens") or self.head["completion_tokens"],
        )

    # -- things the face adds (not events) -----------------------------------------------------
    def set_replay(self, call_id: str, replay: dict[str, Any]) -> None:
        card = self.cards.get(call_id)
        if card is not None:
            card["replay"] = replay
            self._dirty_cards.add(call_id)

    def set_approve_all(self) -> None:
        self._set(approve_all=True)

    def tick(self, now: float | None = None) -> None:
        """Refresh the running clock of the status line."""
        if self.head["status"] == "running" and self.head["started"]:
            self._set(elapsed=(now or time.time()) - self.head["started"])

    # -- reading -------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        return bool(self.head["status"] == "ended")

    def step_view(self, n: int) -> dict[str, Any]:
        """One step with its texts as strings."""
        st = dict(self.steps[n])
        st["reasoning"], st["content"] = str(st["reasoning"]), str(st["content"])
        return st

    def pending_calls(self) -> list[str]:
        return [c for c in self.card_order if self.cards[c]["status"] == "pending"]

    def snapshot(self) -> dict[str, Any]:
        """The whole view (for a view that just opened, and for the saved renderings)."""
        self._sent = {
            n: (s["reasoning"].length, s["content"].length) for n, s in self.steps.items()
        }
        self._dirty_head, self._dirty_steps, self._dirty_cards = False, set(), set()
        self._dirty_lanes, self._dirty_lane_steps = set(), {}
        self._sent_prompt = self.head.get("prompt")
        return {
            "kind": "snapshot",
            "head": dict(self.head),
            "steps": [self.step_view(n) for n in sorted(self.steps)],
            "cards": [dict(self.cards[c]) for c in self.card_order],
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
        """What changed since the last patch or snapshot; None when nothing did."""
        if not self.dirty:
            return None
        steps = []
        for n in sorted(self._dirty_steps):
            st = self.steps[n]
            r0, c0 = self._sent.get(n, (0, 0))
            item = {k: v for k, v in st.items() if k not in ("reasoning", "content")}
            item.update(
                reasoning_from=r0,
                reasoning_add=st["reasoning"].since(r0),
                content_from=c0,
                content_add=st["content"].since(c0),
            )
            steps.append(item)
            self._sent[n] = (st["reasoning"].length, st["content"].length)
        head = dict(self.head) if self._dirty_head else None
        if head is not None:
            if head.get("prompt") == self._sent_prompt:
                del head["prompt"]  # the view keeps the one it has
            else:
                self._sent_prompt = head.get("prompt")
        patch = {
            "kind": "patch",
            "head": head,
            "steps": steps,
            "cards": [dict(self.cards[c]) for c in self.card_order if c in self._dirty_cards],
            "lanes": [
                self.lane_view(n, self._dirty_lane_steps.get(n, set()))
                for n in self.lane_order
                if n in self._dirty_lanes
            ],
        }
        self._dirty_lane_steps = {}
        self._dirty_head, self._dirty_steps, self._dirty_cards = False, set(), set()
        self._dirty_lanes = set()
        return patch


def state_from_events(events: list[dict[str, Any]]) -> TraceState:
    st = TraceState()
    for ev in events:
        st.apply(ev)
    return st
