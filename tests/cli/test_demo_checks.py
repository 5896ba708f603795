"""The demo model in heavy mode and the verify pass (the heavy/verify example runs on it).

End to end with ``k2lab run``: a verify pass that re-runs the answer's code in the sandbox and
finds it holds, and heavy lanes aggregated with the lanes named. The script on its own: figures
that change on the re-run are a fault and the correction reports the re-run's figures; lanes that
disagree are reconciled by their figures, and lanes that did not finish are named.
"""

from __future__ import annotations

import json
from pathlib import Path

from k2lab.agent.verify import correction_prompt, parse_verdict, verify_prompt
from k2lab.providers.demo import DEMO_PROMPTS
from k2lab.providers.demo.scripts import reply_for
from tests.cli.conftest import RunCli

FAST = ("--isolation", "process", "--approve", "auto")
PYTHON = [{"type": "function", "function": {"name": "python", "parameters": {}}}]


def test_verify_re_runs_the_answers_code_and_it_holds(run_cli: RunCli, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    r = run_cli("run", *FAST, "--verify", "--trace", str(trace), DEMO_PROMPTS["fix_bug"])
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in trace.read_text().splitlines()[1:]]
    start = next(i for i, e in enumerate(lines) if e["type"] == "verify.start")
    end = next(e for e in lines if e["type"] == "verify.end")
    assert end["outcome"] == "verified", end
    rerun = [e for e in lines[start:] if e["type"] == "tool.result"]
    assert len(rerun) == 1 and rerun[0]["ok"]
    # what the check ran is the code the answer rests on, and its output matched
    assert "re-ran the code behind the answer" in r.stderr
    assert "Average order value per customer" in r.stdout  # the answer stands


def test_heavy_lanes_are_aggregated_and_named(run_cli: RunCli, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    r = run_cli("run", *FAST, "--heavy", "3", "--trace", str(trace), DEMO_PROMPTS["estimate_pi"])
    assert r.returncode == 0, r.stderr
    assert "Lanes followed: 1, 2, 3, because all 3 finished lanes state the same figures" in (
        r.stdout
    )
    assert "pi ~ 3.14" in r.stdout
    assert "offline demo model compares the figures" in r.stdout  # it says what it did not do


def _call_and_result(reply: object, output: str) -> list[dict[str, object]]:
    (call,) = reply.tool_calls  # type: ignore[attr-defined]
    wire = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    return [
        {"role": "assistant", "content": "", "tool_calls": [wire]},
        {"role": "tool", "tool_call_id": call.id, "content": output},
    ]


def test_figures_that_change_on_the_re_run_are_a_fault_then_corrected() -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": DEMO_PROMPTS["estimate_pi"]}]
    first = reply_for(messages, PYTHON)
    messages += _call_and_result(first, "inside=785484 n=1000000 pi_hat=3.141936\n")
    messages += [
        {"role": "assistant", "content": "pi ~ 3.141936"},
        {"role": "user", "content": verify_prompt(1, 1)},
    ]
    check = reply_for(messages, PYTHON)
    code = json.loads(check.tool_calls[0].arguments)["code"]
    assert "# step: verify re-run" in code and "default_rng" in code  # the same code again
    messages += _call_and_result(check, "inside=700000 n=1000000 pi_hat=2.800000\n")
    verdict = reply_for(messages, PYTHON)
    assert parse_verdict(verdict.content)[0] == "fault"
    assert "pi_hat: 3.141936 then 2.800000" in verdict.content
    messages += [
        {"role": "assistant", "content": verdict.content},
        {"role": "user", "content": correction_prompt()},
    ]
    fixed = reply_for(messages, PYTHON)
    assert "pi_hat=2.800000" in fixed.content and "VERDICT" not in fixed.content


def test_a_rejected_re_run_cannot_verify() -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": DEMO_PROMPTS["estimate_pi"]}]
    messages += _call_and_result(reply_for(messages, PYTHON), "pi_hat=3.14\n")
    messages += [
        {"role": "assistant", "content": "pi ~ 3.14"},
        {"role": "user", "content": verify_prompt(1, 1)},
    ]
    messages += _call_and_result(reply_for(messages, PYTHON), "The user rejected this tool call.")
    assert parse_verdict(reply_for(messages, PYTHON).content)[0] == "cannot_verify"


def _lane(name: str, answer: str) -> str:
    return (
        f'<lane id="{name}" status="answered" steps="2" tool_calls="1">\n<answer>\n{answer}\n'
        "</answer>\n<evidence>\n...\n</evidence>\n</lane>\n"
    )


def test_disagreeing_lanes_follow_the_larger_group_and_name_the_others() -> None:
    prompt = (
        "Task given to 4 independent lane(s):\n<task>\nwhat is 6*7?\n</task>\n\n"
        + _lane("1", "6*7 = 42")
        + _lane("2", "6*7 = 41")
        + _lane("3", "It is 42.")
        + "Lanes that did not finish (no answer from them):\n- lane 4: provider error 500\n"
    )
    reply = reply_for([{"role": "user", "content": prompt}], [])
    assert reply.content.startswith("6*7 = 42")
    assert "Lanes followed: 1, 3" in reply.content
    assert "set aside lane(s) 2" in reply.content and "lane 4 (provider error 500)" in reply.content


def test_only_heavy_modes_own_prompt_is_taken_for_an_aggregation() -> None:
    from k2lab.providers.demo.checks import is_aggregation

    assert not is_aggregation("Task given to me by my boss: <lane id=1> sort this out")
    assert is_aggregation("Task given to 2 independent lane(s):\n<task>\nx\n</task>\n")
