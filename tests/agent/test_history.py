"""The engine's one rebuild of a conversation from events (``k2lab.agent.history``) and the fork
planned on it (``k2lab.agent.fork.plan_fork``), as every face uses them."""

from __future__ import annotations

from typing import Any

import pytest

from k2lab.agent.context import HIDDEN_OUTPUT, Conversation
from k2lab.agent.decisions import Decision
from k2lab.agent.fork import ForkError, plan_fork
from k2lab.agent.history import (
    INTERRUPTED,
    REPLAY_TYPES,
    RESTART_BEFORE_RUN,
    conversation_before,
    conversation_from_events,
    interrupted_run_end,
)
from k2lab.agent.loop import STOPPED_BEFORE_RUN, Budgets
from k2lab.events import ToolProposed
from tests.agent.helpers import make_agent, run_all
from tests.fixtures.fake_server import Call, FakeModel, Turn


def tool_turn(code: str, **kw: Any) -> Turn:
    return Turn(reasoning="work", tool_calls=[Call("python", {"code": code})], **kw)


def said(conv: Conversation) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in conv.to_list()[1:]]


async def test_a_compacted_run_resumes_without_resending_hidden_outputs(
    fake_model: FakeModel,
) -> None:
    """The run hid its tool outputs (compaction): the rebuilt conversation is the live one, the
    hidden outputs hidden (the old ``--resume`` rebuild resent them)."""
    fake_model.script(
        [
            tool_turn("one()", prompt_tokens=100),
            tool_turn("two()", prompt_tokens=700),
            Turn(content="done", prompt_tokens=100),
        ]
    )
    agent, _ = make_agent(fake_model, budgets=Budgets(context_window=1000, compact_at=0.6))
    events = [e.to_dict() for e in await run_all(agent, "go")]
    assert any(e["type"] == "notice" and e["kind"] == "compaction" for e in events)
    system = agent.conversation.messages[0]["content"]
    conv = conversation_from_events([[e for e in events if e["type"] in REPLAY_TYPES]], system)
    assert conv.to_list() == agent.conversation.to_list()
    outputs = [m["content"] for m in conv.messages if m["role"] == "tool"]
    assert outputs[0] == HIDDEN_OUTPUT and "ran: one()" not in str(conv.to_list())


@pytest.mark.parametrize("summary", ["One and two ran; three is next.", ""])
async def test_a_summarised_run_resumes_with_its_summary(
    fake_model: FakeModel, summary: str
) -> None:
    """The summarising compaction's notice carries the summary and what it replaced: the rebuilt
    conversation is the live one, the summary in place of the older messages (before: those
    messages came back with their outputs hidden). A summary that failed ("" here: the model
    returned none) changed nothing, and the rebuild changes nothing either."""
    from k2lab.agent.summarise import SUMMARY_HEAD

    fake_model.script(
        [
            tool_turn("one()", prompt_tokens=100),
            tool_turn("two()", prompt_tokens=700),  # over the share: outputs hidden
            tool_turn("three()", prompt_tokens=700),  # still over: a summary is due
            Turn(content=summary, prompt_tokens=300, completion_tokens=9),
            Turn(content="done", prompt_tokens=200),
        ]
    )
    budgets = Budgets(context_window=1000, compact_at=0.6, summarise=True, summary_keep_steps=1)
    agent, _ = make_agent(fake_model, budgets=budgets)
    events = [e.to_dict() for e in await run_all(agent, "go")]
    notice = [e for e in events if e["type"] == "notice" and e["kind"] == "compaction"][-1]
    assert notice["compaction"] == ("summary" if summary else "failed")
    system = agent.conversation.messages[0]["content"]
    conv = conversation_from_events([[e for e in events if e["type"] in REPLAY_TYPES]], system)
    assert conv.to_list() == agent.conversation.to_list()
    summarised = any(SUMMARY_HEAD.split("{")[0] in str(m["content"]) for m in conv.messages)
    assert summarised == bool(summary)


class EditFirst:
    """Edits every call to print 56 (as a person's Edit & run would)."""

    policy = "ask"

    async def decide(self, proposal: ToolProposed) -> Decision:
        return Decision("edit", arguments='{"code": "print(56)"}', by="user")


async def test_an_edited_call_and_attached_context_rebuild_as_the_model_read_them(
    fake_model: FakeModel,
) -> None:
    """Facts in fields (``tool.result.edited``, ``run.start.context``): the rebuilt messages are
    the ones the model read (the edit note, the context), not the bare fields."""
    fake_model.script([tool_turn("print(42)"), Turn(content="56 it is.")])
    agent, _ = make_agent(fake_model, EditFirst())
    context = {"label": "the current cell of a.ipynb", "text": "x = 1"}
    events = [e.to_dict() async for e in agent.run("go", context=context)]
    assert any(e["type"] == "tool.result" and e.get("edited") for e in events)
    system = agent.conversation.messages[0]["content"]
    conv = conversation_from_events([events], system)
    assert conv.to_list() == agent.conversation.to_list()
    assert "x = 1" in conv.messages[1]["content"]


def test_calls_left_without_results_are_answered() -> None:
    stopped = [
        {"type": "run.start", "run_id": "a", "prompt": "go"},
        {"type": "step.end", "step": 1, "content": "", "tool_calls": [_call("c1")]},
        {"type": "run.end", "stop_reason": "stopped"},
    ]
    cut = [
        {"type": "run.start", "run_id": "b", "prompt": "again"},
        {"type": "tool.proposed", "step": 1, "call_id": "c2", "name": "python"},
        {"type": "step.end", "step": 1, "content": "", "tool_calls": [_call("c2")]},
    ]
    conv = conversation_from_events([stopped, cut], "sys")
    tools = [m["content"] for m in conv.messages if m["role"] == "tool"]
    assert tools == [STOPPED_BEFORE_RUN, RESTART_BEFORE_RUN]
    ended = interrupted_run_end(cut)
    assert ended[-1]["error"] == INTERRUPTED and ended[0]["output"] == RESTART_BEFORE_RUN


def test_a_saved_heavy_run_restores_as_one_turn() -> None:
    log = [
        {"type": "run.start", "run_id": "h.1", "lane": "1", "prompt": "6*7?"},
        {"type": "step.end", "lane": "1", "content": "42", "tool_calls": []},
        {"type": "run.start", "run_id": "h.2", "lane": "2", "prompt": "6*7?"},
        {"type": "run.end", "lane": "1", "answer": "42", "stop_reason": "completed"},
        {"type": "run.end", "lane": "2", "answer": "42", "stop_reason": "completed"},
        {"type": "run.start", "run_id": "h.aggregate", "lane": "aggregate", "prompt": "<task>"},
        {
            "type": "run.end",
            "lane": "aggregate",
            "answer": "Aggregated: 42.",
            "stop_reason": "completed",
        },
        {"type": "run.start", "run_id": "g.1", "lane": "1", "prompt": "again?"},
        {"type": "run.end", "lane": "1", "answer": "", "stop_reason": "error", "error": "down"},
        {"type": "run.start", "run_id": "s", "prompt": "plain"},
        {"type": "step.end", "content": "ok", "tool_calls": []},
        {"type": "run.end", "answer": "ok", "stop_reason": "completed"},
    ]
    assert said(conversation_from_events([log], "sys")) == [
        ("user", "6*7?"),
        ("assistant", "Aggregated: 42."),
        ("user", "again?"),
        ("assistant", "[heavy mode gave no aggregated answer: no lane finished]"),
        ("user", "plain"),
        ("assistant", "ok"),
    ]


def test_a_verify_run_restores_with_its_check_and_correction_messages() -> None:
    """The verify pass's check and its ask to correct are user messages, as they were in the
    live run (not two answers in a row)."""
    events = [
        {"type": "run.start", "prompt": "6*7?"},
        {"type": "step.end", "content": "41", "reasoning": "", "tool_calls": []},
        {"type": "verify.start", "prompt": "Check your answer."},
        {"type": "step.end", "content": "VERDICT: fault", "reasoning": "", "tool_calls": []},
        {"type": "verify.end", "correction": "Correct it."},
        {"type": "step.end", "content": "42", "reasoning": "", "tool_calls": []},
        {"type": "run.end", "answer": "42"},
    ]
    assert all(e["type"] in REPLAY_TYPES for e in events)
    assert said(conversation_from_events([events], "sys")) == [
        ("user", "6*7?"),
        ("assistant", "41"),
        ("user", "Check your answer."),
        ("assistant", "VERDICT: fault"),
        ("user", "Correct it."),
        ("assistant", "42"),
    ]


# -- forks -------------------------------------------------------------------------------------
def _call(cid: str, code: str = "x") -> dict[str, str]:
    return {"id": cid, "name": "python", "arguments": f'{{"code": "{code}"}}'}


def _two_step_run(run_id: str = "p") -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"type": "run.start", "run_id": run_id, "prompt": "go"}]
    for step, cid in ((1, "c1"), (2, "c2")):
        events += [
            {"type": "tool.proposed", "run_id": run_id, "step": step, "call_id": cid},
            {
                "type": "step.end",
                "run_id": run_id,
                "step": step,
                "content": f"s{step}",
                "tool_calls": [_call(cid, f"code{step}")],
            },  # fmt: skip
            {"type": "tool.result", "run_id": run_id, "call_id": cid, "output": f"out{step}"},
        ]
    events += [
        {"type": "step.end", "run_id": run_id, "step": 3, "content": "answer", "tool_calls": []},
        {"type": "run.end", "run_id": run_id, "answer": "answer"},
    ]
    return events


def test_a_fork_starts_from_the_calls_step_with_the_recorded_message() -> None:
    parent = _two_step_run()
    plan = plan_fork(Conversation("sys"), parent, "p", "c2", '{"code": "edited"}')
    assert said(plan.conversation) == [
        ("user", "go"),
        ("assistant", "s1"),
        ("tool", "out1"),
    ]
    assert [c["id"] for c in plan.first.tool_calls] == ["c2"] and plan.first.content == "s2"
    assert plan.prompt == "[branch of run p from call c2]"
    plan.conversation.add_user(plan.prompt)  # the branch's run: nobody spoke
    assert len(plan.conversation.messages) == 4


def test_a_resumed_log_with_a_fork_continues_from_the_branch() -> None:
    """A fork in the log rewinds to the parent before the call's step, as the live branch ran;
    a follow-up after it continues the branch, not the parent's end."""
    branch = [
        {
            "type": "run.start",
            "run_id": "f",
            "prompt": "[branch]",
            "parent_run_id": "p",
            "forked_from_call": "c2",
        },  # fmt: skip
        {
            "type": "step.end",
            "run_id": "f",
            "step": 1,
            "content": "s2",
            "tool_calls": [_call("c2", "edited")],
        },  # fmt: skip
        {"type": "tool.proposed", "run_id": "f", "step": 1, "call_id": "c2"},
        {"type": "tool.result", "run_id": "f", "call_id": "c2", "output": "edited out"},
        {
            "type": "step.end",
            "run_id": "f",
            "step": 2,
            "content": "branch answer",
            "tool_calls": [],
        },
        {"type": "run.end", "run_id": "f", "answer": "branch answer"},
    ]
    conv = conversation_from_events([_two_step_run(), branch], "sys")
    assert said(conv) == [
        ("user", "go"),
        ("assistant", "s1"),
        ("tool", "out1"),
        ("assistant", "s2"),
        ("tool", "edited out"),
        ("assistant", "branch answer"),
    ]
    # a fork of that branch, planned from the whole log, keeps the parent's first step too
    plan = plan_fork(Conversation("sys"), [*_two_step_run(), *branch], "f", "c2")
    assert said(plan.conversation) == [("user", "go"), ("assistant", "s1"), ("tool", "out1")]
    # and so does one planned from the branch alone, on what it started from (%%k2 fork --file)
    before = conversation_before([_two_step_run(), branch], "sys")
    assert said(before) == [("user", "go"), ("assistant", "s1"), ("tool", "out1")]
    plan = plan_fork(before, branch, "f", "c2")
    assert said(plan.conversation) == [("user", "go"), ("assistant", "s1"), ("tool", "out1")]
    assert said(conversation_before([_two_step_run()], "sys")) == []


def test_forking_an_unknown_run_or_call_says_which() -> None:
    log = _two_step_run()
    with pytest.raises(ForkError, match="no tool call 'zz'") as e:
        plan_fork(Conversation("sys"), log, "p", "zz")
    assert e.value.status == 404
    with pytest.raises(ForkError, match="no run 'q'") as e:
        plan_fork(Conversation("sys"), log, "q", "c1")
    assert e.value.status == 404
    lane = [{**ev, "lane": "1"} for ev in log]
    lane[0]["run_id"] = "p"
    with pytest.raises(ForkError) as e:
        plan_fork(Conversation("sys"), [log[0], *lane[1:]], "p", "c1")
    assert e.value.status == 409


# -- forks of a heavy lane's call --------------------------------------------------------------
def _heavy_run(root: str = "h") -> list[dict[str, Any]]:
    """Two lanes of the two-step run (``root.1``, ``root.2``; the same call ids, each lane its own
    outputs), interleaved as they stream, then the aggregation."""
    lanes = []
    for k in ("1", "2"):
        run = _two_step_run(f"{root}.{k}")
        for ev in run:
            ev["lane"] = k
            if ev["type"] == "step.end":
                del ev["run_id"]  # as a lane writes it: it belongs to its lane's latest run.start
            if ev["type"] == "tool.result":
                ev["output"] = f"lane {k} {ev['output']}"
        lanes.append(run)
    mixed = [ev for pair in zip(*lanes, strict=True) for ev in pair]
    agg = f"{root}.aggregate"
    return [
        *mixed,
        {"type": "run.start", "run_id": agg, "lane": "aggregate", "prompt": "<lanes>"},
        {"type": "run.end", "lane": "aggregate", "answer": "both: 42", "stop_reason": "completed"},
    ]


def test_a_lanes_call_forks_from_that_lanes_conversation_and_the_branch_replays() -> None:
    """Lane 2's call c2: the branch starts from what the heavy run started from (an earlier run),
    then lane 2's own task, step and output (not lane 1's, not the aggregated turn); replayed
    later, a follow-up after the branch continues the branch."""
    earlier = [
        {"type": "run.start", "run_id": "e", "prompt": "hello"},
        {"type": "step.end", "run_id": "e", "step": 1, "content": "hi", "tool_calls": []},
        {"type": "run.end", "run_id": "e", "answer": "hi"},
    ]
    log = [*earlier, *_heavy_run()]
    plan = plan_fork(Conversation("sys"), log, "h.2", "c2", '{"code": "edited"}')
    lane_2 = [("user", "hello"), ("assistant", "hi"), ("user", "go")]
    lane_2 += [("assistant", "s1"), ("tool", "lane 2 out1")]
    assert said(plan.conversation) == lane_2
    assert [c["id"] for c in plan.first.tool_calls] == ["c2"] and plan.first.content == "s2"
    assert plan.parent_run_id == "h.2" and plan.prompt == "[branch of run h.2 from call c2]"
    branch = [
        {
            "type": "run.start",
            "run_id": "f",
            "prompt": plan.prompt,
            "parent_run_id": "h.2",
            "forked_from_call": "c2",
        },  # fmt: skip
        {"type": "tool.proposed", "run_id": "f", "step": 1, "call_id": "c2"},
        {"type": "step.end", "step": 1, "content": "s2", "tool_calls": [_call("c2", "edited")]},
        {"type": "tool.result", "run_id": "f", "call_id": "c2", "output": "edited out"},
        {"type": "step.end", "step": 2, "content": "branch answer", "tool_calls": []},
        {"type": "run.end", "run_id": "f", "answer": "branch answer"},
    ]
    follow = [
        {"type": "run.start", "run_id": "g", "prompt": "and then?"},
        {"type": "step.end", "step": 1, "content": "then 43", "tool_calls": []},
        {"type": "run.end", "run_id": "g", "answer": "then 43"},
    ]
    conv = conversation_from_events([log, branch, follow], "sys")
    assert said(conv) == [
        *lane_2,
        ("assistant", "s2"),
        ("tool", "edited out"),
        ("assistant", "branch answer"),
        ("user", "and then?"),
        ("assistant", "then 43"),
    ]
    # without the branch the heavy run is one turn, as before
    assert said(conversation_from_events([log], "sys"))[-2:] == [
        ("user", "go"),
        ("assistant", "both: 42"),
    ]
    # %%k2 fork --file on the branch: it starts from lane 2's conversation too
    assert said(conversation_before([log, branch], "sys")) == lane_2


def test_a_lanes_call_asked_for_by_the_heavy_runs_id_names_the_lanes() -> None:
    with pytest.raises(ForkError, match=r"lane's run id \(h.1, h.2\)") as e:
        plan_fork(Conversation("sys"), _heavy_run(), "h", "c1")
    assert e.value.status == 409
    with pytest.raises(ForkError, match="the aggregation's calls cannot be forked") as e:
        plan_fork(Conversation("sys"), _heavy_run(), "h.aggregate", "c1")
    assert e.value.status == 409
    with pytest.raises(ForkError, match="no tool call 'zz' in run h.1") as e:
        plan_fork(Conversation("sys"), _heavy_run(), "h.1", "zz")
    assert e.value.status == 404
    # a second heavy run reuses the lane names and call ids: h.1 is still the first one's lane
    plan = plan_fork(Conversation("sys"), [*_heavy_run(), *_heavy_run("k")], "h.1", "c2")
    assert said(plan.conversation)[-1] == ("tool", "lane 1 out1")
