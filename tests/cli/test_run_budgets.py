"""``k2lab run``'s budget options (issue 12): each reaches the engine and names what it ends.

``--max-request-tokens`` is each request's ``max_tokens``, ``--max-total-tokens`` ends the run
with exit 3, ``--context-window`` / ``--context-share`` move the point where earlier tool outputs
are hidden (a notice the user sees); a share outside 0.1-0.99 is a usage error.
"""

from __future__ import annotations

from k2lab.agent.context import HIDDEN_OUTPUT
from tests.cli.conftest import RunCli, json_events
from tests.fixtures.fake_server import Call, FakeModel, Turn

FAST = ("--isolation", "process", "--approve", "auto")


def _run(fake: FakeModel, run_cli: RunCli, *opts: str) -> tuple[int, list[dict[str, object]]]:
    r = run_cli("run", "--base-url", fake.base_url, *FAST, *opts, "--json", "go")
    return r.returncode, json_events(r.stdout)


def test_the_request_budget_is_each_requests_max_tokens(
    fake_model: FakeModel, run_cli: RunCli
) -> None:
    fake_model.script([Turn(content="done")])
    code, events = _run(fake_model, run_cli, "--max-request-tokens", "777")
    assert code == 0
    assert fake_model.requests[0]["max_tokens"] == 777


def test_the_total_token_budget_ends_the_run_with_exit_3(
    fake_model: FakeModel, run_cli: RunCli
) -> None:
    call = Call("python", {"code": "print(1)"})
    fake_model.script([Turn(tool_calls=[call], completion_tokens=400)] * 5)
    code, events = _run(fake_model, run_cli, "--max-total-tokens", "500")
    assert code == 3
    assert events[-1]["type"] == "run.end" and events[-1]["stop_reason"] == "tokens"
    assert len(fake_model.requests) == 2  # 400, then 800 > 500: no third request


def test_a_small_window_and_share_hide_earlier_outputs_with_a_notice(
    fake_model: FakeModel, run_cli: RunCli
) -> None:
    calls = [Turn(tool_calls=[Call("python", {"code": f"print('{i}' * 50)"})], prompt_tokens=p)
             for i, p in enumerate((300, 500, 700))]  # fmt: skip
    fake_model.script([*calls, Turn(content="done")])
    code, events = _run(fake_model, run_cli, "--context-window", "1000", "--context-share", "0.6")
    assert code == 0
    notices = [e for e in events if e["type"] == "notice" and "hid" in str(e["message"])]
    assert notices, [e for e in events if e["type"] == "notice"]
    last = fake_model.requests[-1]["messages"]
    assert any(m["role"] == "tool" and m["content"] == HIDDEN_OUTPUT for m in last)


def test_a_share_outside_the_range_is_a_usage_error(run_cli: RunCli) -> None:
    r = run_cli("run", "--context-share", "1.5", "go")
    assert r.returncode == 2 and "context_share" in r.stderr
