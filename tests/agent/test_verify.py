"""The verify pass (k2lab.agent.verify) through the real loop, over HTTP against the fake model."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from k2lab.agent.loop import Budgets
from k2lab.agent.verify import VerifyPass, outcome_text, parse_verdict, run_verified
from k2lab.events import Event, RunEnd, VerifyEnd, VerifyStart
from k2lab.trace.view import view_of
from tests.agent.helpers import check_history, check_run_shape, make_agent, of_type
from tests.fixtures.fake_server import Call, FakeModel, Turn

PROMPT = "What is 6 * 7?"


def code(c: str) -> dict[str, str]:
    return {"code": c}


async def verified_run(fake: FakeModel, rounds: int = 1, **kw: Any) -> list[Event]:
    agent, _ = make_agent(fake, **kw)
    events: list[Event] = []

    async def consume() -> None:
        async for ev in run_verified(agent, PROMPT, rounds):
            events.append(ev)

    await asyncio.wait_for(consume(), 30)
    check_run_shape(events)
    return events


def end_of(events: list[Event]) -> RunEnd:
    end = events[-1]
    assert isinstance(end, RunEnd)
    return end


def verify_ends(events: list[Event]) -> list[VerifyEnd]:
    return of_type(events, "verify.end")


def user_texts(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def test_holds_on_the_first_check(fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(content="6 * 7 = 42."),
            Turn(reasoning="Re-compute.", tool_calls=[Call("python", code("print(6 * 7)"))]),
            Turn(content="I re-computed it: the tool printed 42.\nVERDICT: holds"),
        ]
    )
    events = asyncio.run(verified_run(fake_model))
    end = end_of(events)
    assert (end.stop_reason, end.answer) == ("completed", "6 * 7 = 42.")
    starts: list[VerifyStart] = of_type(events, "verify.start")
    (v,) = verify_ends(events)
    assert [s.round for s in starts] == [1] and starts[0].max_rounds == 1
    assert (v.verdict, v.outcome, v.round, v.correction) == ("holds", "verified", 1, None)
    assert v.summary == "I re-computed it: the tool printed 42."
    # what was checked: the verify turn's tool call, with the output the model read
    assert [(c["name"], c["output"]) for c in v.checks] == [("python", "ran: print(6 * 7)")]
    assert v.checks[0]["call_id"] == of_type(events, "tool.result")[0].call_id
    assert v.run_id == starts[0].run_id == events[0].run_id  # type: ignore[union-attr]
    # one extra turn: the verify request carries the history and the answer being checked
    assert len(fake_model.requests) == 3
    req = fake_model.requests[1]["messages"]
    assert [m["role"] for m in req] == ["system", "user", "assistant", "user"]
    assert req[1]["content"] == PROMPT and req[2]["content"] == "6 * 7 = 42."
    assert req[3]["content"] == starts[0].prompt and "VERDICT: holds" in req[3]["content"]
    assert "round 1 of 1" in req[3]["content"]
    check_history(fake_model.requests[2]["messages"])
    assert end.steps == 3 and end.tool_calls == 1
    assert outcome_text(v).startswith("verified (1 round, 1 tool call in the check): ")


def test_fault_then_corrected_then_holds(fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(content="6 * 7 = 41."),
            Turn(tool_calls=[Call("python", code("print(6 * 7)"))]),
            Turn(content="The tool printed 42, not 41.\n**Verdict:** fault"),
            # the correction turn may use tools too; its text with a call is not the answer
            Turn(content="Let me redo it.", tool_calls=[Call("python", code("print(42)"))]),
            Turn(content="6 * 7 = 42 (corrected)."),
            Turn(tool_calls=[Call("python", code("print(6 * 7 == 42)"))]),
            Turn(content="It printed True.\nverdict: HOLDS."),
        ]
    )
    events = asyncio.run(verified_run(fake_model, rounds=2))
    end = end_of(events)
    assert (end.stop_reason, end.answer) == ("completed", "6 * 7 = 42 (corrected).")
    r1, r2 = verify_ends(events)
    assert (r1.verdict, r1.outcome, r1.round) == ("fault", "unverified", 1)
    assert r1.correction is not None and "round 2 checks" in r1.reason
    assert (r2.verdict, r2.outcome, r2.round, r2.correction) == ("holds", "corrected", 2, None)
    assert [c["arguments"] for c in r2.checks] == ['{"code": "print(6 * 7 == 42)"}']
    assert len(fake_model.requests) == 7 and fake_model.remaining == 0
    # the correction request follows the fault; round 2 checks the corrected answer
    corr = fake_model.requests[3]["messages"]
    assert corr[-1] == {"role": "user", "content": r1.correction}
    second = fake_model.requests[5]["messages"]
    assert second[-2] == {"role": "assistant", "content": "6 * 7 = 42 (corrected)."}
    assert "round 2 of 2" in second[-1]["content"]
    assert user_texts(fake_model.requests[5])[0] == PROMPT
    check_history(fake_model.requests[6]["messages"])
    view = view_of(events).run
    assert view is not None and view.answer == end.answer
    assert view.to_dict()["verify"]["outcome"] == "corrected"
    # live, before run.end: the verify texts never replace the answer under check
    cut = next(i for i, e in enumerate(events) if isinstance(e, VerifyEnd))
    live = view_of(events[:cut]).run
    assert live is not None and live.answer == "6 * 7 = 41."


def test_no_verdict_is_could_not_verify(fake_model: FakeModel) -> None:
    fake_model.script(
        [Turn(content="42"), Turn(content="I looked at it again and it seems fine to me.")]
    )
    events = asyncio.run(verified_run(fake_model, rounds=3))
    end = end_of(events)
    (v,) = verify_ends(events)
    assert (v.verdict, v.outcome, v.checks) == ("none", "unverified", [])
    assert "without a verdict" in v.reason
    assert (end.stop_reason, end.answer) == ("completed", "42")
    assert len(fake_model.requests) == 2  # no more rounds after a missing verdict
    assert outcome_text(v).startswith("could not verify (1 round")


def test_cannot_verify_ends_the_pass(fake_model: FakeModel) -> None:
    fake_model.script(
        [Turn(content="42"), Turn(content="No tool can check this.\nVERDICT: cannot verify")]
    )
    events = asyncio.run(verified_run(fake_model, rounds=2))
    (v,) = verify_ends(events)
    assert (v.verdict, v.outcome) == ("cannot_verify", "unverified")
    assert end_of(events).answer == "42" and len(fake_model.requests) == 2


def test_rounds_bound_is_respected(fake_model: FakeModel) -> None:
    """A fault every time with one round: one check, one correction, nothing more."""
    fake_model.script(
        [
            Turn(content="first answer"),
            Turn(content="Wrong.\nVERDICT: fault"),
            Turn(content="second answer"),
            Turn(content="Wrong again.\nVERDICT: fault"),  # must never be requested
        ]
    )
    events = asyncio.run(verified_run(fake_model, rounds=1))
    end = end_of(events)
    (v,) = verify_ends(events)
    assert [s.round for s in of_type(events, "verify.start")] == [1]
    assert (v.verdict, v.outcome) == ("fault", "unverified")
    assert "not checked again (--verify-rounds 1)" in v.reason
    assert (end.stop_reason, end.answer) == ("completed", "second answer")
    assert fake_model.remaining == 1 and len(fake_model.requests) == 3


def test_step_budget_stops_the_check(fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(content="42"),
            Turn(tool_calls=[Call("python", code("print(6 * 7)"))]),
            Turn(content="VERDICT: holds"),  # never requested: the step budget is spent
        ]
    )
    events = asyncio.run(verified_run(fake_model, budgets=Budgets(max_steps=2)))
    end = end_of(events)
    (v,) = verify_ends(events)
    assert (end.stop_reason, end.answer) == ("max_steps", "42")
    assert (v.verdict, v.outcome) == ("none", "unverified")
    assert "step budget" in v.reason and len(v.checks) == 1
    assert len(fake_model.requests) == 2


def test_token_budget_counts_the_answer_turn(fake_model: FakeModel) -> None:
    fake_model.script([Turn(content="42", completion_tokens=500), Turn(content="VERDICT: holds")])
    events = asyncio.run(verified_run(fake_model, budgets=Budgets(max_total_tokens=400)))
    end = end_of(events)
    (v,) = verify_ends(events)
    assert (end.stop_reason, end.answer, v.outcome) == ("tokens", "42", "unverified")
    assert "token budget" in v.reason and len(fake_model.requests) == 1


def test_wall_time_stops_a_stalled_check(fake_model: FakeModel) -> None:
    fake_model.script([Turn(content="42"), Turn(stall_after=0)])
    events = asyncio.run(verified_run(fake_model, budgets=Budgets(wall_time=2.0)))
    end = end_of(events)
    (v,) = verify_ends(events)
    assert (end.stop_reason, end.answer, v.outcome) == ("wall_time", "42", "unverified")
    assert "wall-time budget" in v.reason


def test_budget_during_the_correction_keeps_the_checked_answer(fake_model: FakeModel) -> None:
    fake_model.script(
        [
            Turn(content="41"),
            Turn(content="VERDICT: fault"),
            Turn(content="fixing", tool_calls=[Call("python", code("print(42)"))]),
        ]
    )
    events = asyncio.run(verified_run(fake_model, rounds=2, budgets=Budgets(max_steps=3)))
    end = end_of(events)
    assert (end.stop_reason, end.answer) == ("max_steps", "41")
    assert verify_ends(events)[-1].outcome == "unverified"
    notes = [n for n in of_type(events, "notice") if n.kind == "verify"]
    assert len(notes) == 1 and "while the model corrected" in notes[0].message


def test_a_secret_in_a_check_is_scrubbed(fake_model: FakeModel) -> None:
    key = "sk-verify-secret-123456"
    fake_model.script(
        [
            Turn(content="ok"),
            Turn(tool_calls=[Call("python", code(f"print('{key}')"))]),
            Turn(content=f"It printed {key}.\nVERDICT: holds"),
        ]
    )
    events = asyncio.run(verified_run(fake_model, api_key=key))
    (v,) = verify_ends(events)
    assert key not in repr(v.to_dict()) and "[redacted]" in v.checks[0]["arguments"]


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("checked\nVERDICT: holds", "holds"),
        ("**Verdict:** Holds.", "holds"),
        ("VERDICT: HOLDS\n\n", "holds"),
        ("Verdict = FAULT", "fault"),
        ("VERDICT: does not hold", "fault"),
        ("verdict: incorrect", "fault"),
        ("verdict - cannot verify", "cannot_verify"),
        ("VERDICT: can't verify (no data)", "cannot_verify"),
        ("VERDICT: no errors found", "holds"),
        ("The verdict follows below.\nVERDICT: fault", "fault"),
        ("VERDICT: fault\nOn reflection:\nVERDICT: holds", "holds"),  # the last one counts
        ("VERDICT:", "none"),
        ("it is fine", "none"),
        ("", "none"),
    ],
)
def test_parse_verdict(text: str, verdict: str) -> None:
    assert parse_verdict(text)[0] == verdict


def test_rounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        VerifyPass(0)
