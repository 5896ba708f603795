"""The verify pass (``--verify``): after the model answers, it is asked to check the answer.

A ``VerifyPass`` is the loop's ``FollowUp`` (``Agent.run(prompt, follow_up=VerifyPass(rounds))``):
the check is a follow-up user message in the same conversation and the same run, so the budgets
(steps, wall time, tokens) hold across it and the faces see one run. The model re-computes, tests
edge cases, cross-checks, and ends with a verdict line (``VERDICT: holds`` / ``fault`` /
``cannot verify``, read by ``parse_verdict``, forgiving of case and markdown; none found = could
not verify). A fault makes the run go on: the model is asked for a corrected answer, which the next
round checks, up to ``rounds`` rounds. The answer that stands is the run's answer (``run.end``);
the verification texts never replace it.

Each round is a ``verify.start`` / ``verify.end`` pair (``k2lab.events``); the last ``verify.end``
of a run carries the pass's outcome. Owns no I/O, no face: the prompts are package data
(``prompts/verify.md``, ``prompts/correct.md``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from k2lab.agent.context import Conversation
from k2lab.agent.loop import Agent, Continuation
from k2lab.events import (
    Event,
    Notice,
    StopReason,
    VerifyEnd,
    VerifyOutcome,
    VerifyStart,
    VerifyVerdict,
)

#: bounds on what a verify.end carries (the full texts are in the round's step events)
SUMMARY_LIMIT = 4000
ARGUMENTS_LIMIT = 2000
OUTPUT_LIMIT = 1000

_ENDED = {
    "max_steps": "the step budget (max steps) ran out",
    "wall_time": "the wall-time budget ran out",
    "tokens": "the token budget ran out",
    "stopped": "the run was stopped",
    "error": "the run failed",
    "completed": "the run ended",
}


def _prompt(name: str) -> str:
    return (resources.files("k2lab.agent") / "prompts" / name).read_text(encoding="utf-8").strip()


def verify_prompt(round: int, rounds: int) -> str:
    """The follow-up message that asks for round ``round`` of ``rounds``."""
    return _prompt("verify.md").replace("{round}", str(round)).replace("{rounds}", str(rounds))


def correction_prompt() -> str:
    return _prompt("correct.md")


# -- reading the verdict ---------------------------------------------------------------------
_VERDICT_WORD = re.compile(r"verdict", re.IGNORECASE)
_CANNOT = re.compile(
    r"\b(cannot|can ?not|can'?t|could ?not|couldn'?t|unable|not (?:be )?verif\w*|unverif\w*|"
    r"inconclusive|undetermined|unknown|unclear|not sure|n/?a)\b"
)
_FAULT = re.compile(
    r"\b(fault\w*|fails?|failed|wrong|incorrect|errors?|erroneous|invalid|false|"
    r"(?:does ?not|doesn'?t|not|no longer) (?:hold|correct|valid|right)\w*|refuted|broken)\b"
)
_NONE_FOUND = re.compile(r"\bno (?:faults?|errors?|issues?|problems?|mistakes?)\b")
_HOLDS = re.compile(
    r"\b(holds?|held|correct|verified|valid|confirmed|passe?s?|passed|ok|okay|true|right|sound)\b"
)


def _classify(phrase: str) -> VerifyVerdict:
    p = " ".join(re.sub(r"[*_`~#>\"“”‘’]", " ", phrase).lower().replace("’", "'").split())
    if _CANNOT.search(p):
        return "cannot_verify"
    if _NONE_FOUND.search(p):
        return "holds"
    if _FAULT.search(p):
        return "fault"
    if _HOLDS.search(p):
        return "holds"
    return "none"


def parse_verdict(text: str) -> tuple[VerifyVerdict, str]:
    """(verdict, the text without its verdict line). The last line naming a verdict counts:
    ``VERDICT: holds``, ``**Verdict:** Holds.``, ``verdict - cannot verify``, ``Verdict = FAULT``.
    No such line, or one that names none of the three: ``"none"``."""
    lines = text.rstrip().splitlines()
    for i in range(len(lines) - 1, -1, -1):
        m = _VERDICT_WORD.search(lines[i])
        if m is None:
            continue
        rest = lines[i][m.end() :]
        # the verdict is the first clause after the word: "holds (checked twice)" -> holds
        rest = re.sub(r"^[\s*_`:=\-–—>|]+", "", rest)
        clause = re.split(r"[.;,(\[\n]| - | — ", rest, maxsplit=1)[0]
        verdict = _classify(clause)
        if verdict == "none":
            continue  # "the verdict follows below": look further up, or none
        summary = "\n".join(lines[:i] + lines[i + 1 :]).strip()
        return verdict, summary
    return "none", text.strip()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 12].rstrip() + " ... [cut]"


def checks_since(conversation: Conversation, start: int) -> list[dict[str, Any]]:
    """The tool calls of the conversation from message ``start`` on, with their outputs (bounded):
    what a verify round checked."""
    msgs = conversation.messages[start:]
    outputs = {m.get("tool_call_id"): m.get("content") for m in msgs if m.get("role") == "tool"}
    checks: list[dict[str, Any]] = []
    for m in msgs:
        if m.get("role") != "assistant":
            continue
        for c in m.get("tool_calls") or []:
            fn = c.get("function") or {}
            out = outputs.get(c.get("id"))
            checks.append(
                {
                    "call_id": str(c.get("id", "")),
                    "name": str(fn.get("name", "")),
                    "arguments": _cut(str(fn.get("arguments", "")), ARGUMENTS_LIMIT),
                    "output": _cut(out if isinstance(out, str) else "", OUTPUT_LIMIT),
                }
            )
    return checks


# -- the pass ----------------------------------------------------------------------------------
class VerifyPass:
    """The loop's ``FollowUp`` for ``--verify``: up to ``rounds`` check rounds, corrections between.

    States: ``answer`` (waiting for the model's answer), ``checking`` (a round runs),
    ``correcting`` (a fault was found; waiting for the corrected answer), ``done``.
    """

    def __init__(self, rounds: int = 1) -> None:
        if rounds < 1:
            raise ValueError("verify rounds must be at least 1")
        self.rounds = rounds
        self.round = 0
        self.phase = "answer"
        self.faults = 0
        #: the answer that stands (under check, or the last one given)
        self.answer = ""
        #: index of the round's verify message in the conversation
        self._mark = 0
        #: the pass's outcome so far (the last verify.end's), None before the first round ends
        self.outcome: VerifyOutcome | None = None

    def on_answer(self, answer: str, conversation: Conversation, run_id: str) -> Continuation:
        if self.phase == "checking":
            return self._verdict(answer, conversation, run_id)
        if self.phase == "done":
            return Continuation(answer=self.answer)
        self.answer = answer
        if self.phase == "correcting" and self.round >= self.rounds:
            self.phase = "done"  # the last verify.end said it: corrected, not checked again
            return Continuation(answer=answer)
        self.round += 1
        self.phase = "checking"
        self._mark = len(conversation.messages)  # the verify message goes here
        prompt = verify_prompt(self.round, self.rounds)
        start = VerifyStart(run_id=run_id, round=self.round, max_rounds=self.rounds, prompt=prompt)
        return Continuation(answer=answer, message=prompt, events=[start])

    def _verdict(self, text: str, conversation: Conversation, run_id: str) -> Continuation:
        verdict, summary = parse_verdict(text)
        correction: str | None = None
        message: str | None = None
        outcome: VerifyOutcome = "unverified"
        if verdict == "holds":
            outcome = "corrected" if self.faults else "verified"
            reason = "the corrected answer held" if self.faults else "the answer held on the check"
        elif verdict == "fault":
            self.faults += 1
            correction = message = correction_prompt()
            reason = (
                f"the check found a fault; the model corrects its answer, and round "
                f"{self.round + 1} checks the correction"
                if self.round < self.rounds
                else "the check found a fault; the model corrected its answer, which was not "
                f"checked again (--verify-rounds {self.rounds})"
            )
        elif verdict == "cannot_verify":
            reason = "the model said it cannot verify the answer"
        else:
            reason = "the check ended without a verdict line"
        if verdict == "fault" and self.faults > 1:
            reason = f"{reason} (faults found in {self.faults} rounds)"
        self.outcome = outcome
        self.phase = "correcting" if message is not None else "done"
        end = VerifyEnd(
            run_id=run_id,
            round=self.round,
            verdict=verdict,
            outcome=outcome,
            summary=_cut(summary, SUMMARY_LIMIT),
            reason=reason,
            checks=checks_since(conversation, self._mark),
            correction=correction,
        )
        return Continuation(answer=self.answer, message=message, events=[end])

    def on_end(
        self, stop_reason: StopReason, error: str | None, conversation: Conversation, run_id: str
    ) -> list[Event]:
        ended = _ENDED.get(stop_reason, f"the run ended ({stop_reason})")
        if error and stop_reason == "error":
            ended = f"{ended}: {error}"
        if self.phase == "checking":
            self.phase, self.outcome = "done", "unverified"
            return [
                VerifyEnd(
                    run_id=run_id,
                    round=self.round,
                    verdict="none",
                    outcome="unverified",
                    reason=f"{ended} during the check",
                    checks=checks_since(conversation, self._mark),
                )
            ]
        if self.phase == "correcting" and stop_reason != "completed":
            self.phase = "done"
            return [
                Notice(
                    kind="verify",
                    message=f"{ended[0].upper()}{ended[1:]} while the model corrected its "
                    "answer: the answer is the one the check found a fault in.",
                )
            ]
        return []


def run_verified(
    agent: Agent, prompt: str, rounds: int = 1, **run_options: Any
) -> AsyncIterator[Event]:
    """``agent.run(prompt)`` with a verify pass of up to ``rounds`` rounds."""
    return agent.run(prompt, follow_up=VerifyPass(rounds), **run_options)


# -- words for faces ---------------------------------------------------------------------------
OUTCOME_WORDS = {"verified": "verified", "corrected": "corrected", "unverified": "could not verify"}


def outcome_text(end: VerifyEnd, *, limit: int = 300) -> str:
    """One line for a face: ``verified (1 round, 2 checks): <what the model said>``."""
    n = end.round
    checks = sum(1 for _ in end.checks)
    head = f"{OUTCOME_WORDS.get(end.outcome, end.outcome)} ({n} round{'s' if n != 1 else ''}"
    head += f", {checks} tool call{'s' if checks != 1 else ''} in the check)" if n else ")"
    said = " ".join(end.summary.split())
    if len(said) > limit:
        said = said[: limit - 3].rstrip() + "..."
    tail = f"{end.reason}" + (f": {said}" if said else "")
    return f"{head}: {tail}"
