"""``k2lab run`` against a hostile provider: stalls end at --wall-time, echoed keys go nowhere."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.cli.conftest import RunCli, clean_env, json_events
from tests.fixtures.fake_server import Call, FakeModel, Turn

FAST = ("--isolation", "process")
KEY = "sk-cli-SECRET-0123456789abcdef"


def test_wall_time_ends_a_keep_alive_stall_with_exit_3(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_model.script([Turn(content="never", stall_after=0)] * 4)
    trace = tmp_path / "t.jsonl"
    t0 = time.monotonic()
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--wall-time", "2", "--trace", str(trace),
        *FAST, "hello",
        timeout=120,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert r.returncode == 3, r.stderr
    assert "wall-time budget (2 s)" in r.stderr and r.stdout == ""
    assert took < 100  # bounded (the idle timeout alone would be 300 s per attempt)
    last = json.loads(trace.read_text().splitlines()[-1])
    assert last["type"] == "run.end" and last["stop_reason"] == "wall_time"


def test_bad_wall_time_is_a_usage_error(run_cli: RunCli) -> None:
    for bad in ("0", "-1", "nan", "inf"):
        r = run_cli("run", "--wall-time", bad, "hello")
        assert r.returncode == 2 and "--wall-time" in r.stderr, (bad, r.stderr)


def test_a_key_echoed_by_the_provider_is_in_no_output_trace_or_json(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_model.script(
        [
            Turn(
                reasoning=f"I was given {KEY}",
                tool_calls=[Call("python", {"code": f"print('{KEY}'[:3])"})],
                chunk=4,
            ),
            Turn(stream_error="gateway broke", echo_auth=True),
        ]
        + [Turn(stream_error="gateway broke", echo_auth=True)] * 3
    )
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", "--json", "-v",
        "--trace", str(trace),
        *FAST, "hello",
        # the key belongs to K2LAB_BASE_URL: a --base-url naming another endpoint gets none
        env=clean_env(K2LAB_API_KEY=KEY, K2LAB_BASE_URL=fake_model.base_url),
        timeout=120,
    )  # fmt: skip
    assert fake_model.headers[1]["authorization"] == f"Bearer {KEY}"  # it was echoed
    assert r.returncode == 1 and "gateway broke" in r.stderr
    events = json_events(r.stdout)
    assert events[-1]["type"] == "run.end" and events[-1]["stop_reason"] == "error"
    saved = trace.read_text()
    for where in (r.stdout, r.stderr, saved):
        assert KEY not in where


def test_a_base_url_password_is_in_no_output_or_trace(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_model.script([Turn(stream_error="gateway broke", echo_auth=True)] * 4)
    trace = tmp_path / "t.jsonl"
    url = fake_model.base_url.replace("http://", "http://bob:pw-0123456789xyz@")
    r = run_cli(
        "run", "--base-url", url, "--json", "--trace", str(trace), *FAST, "hello",
        timeout=120,
    )  # fmt: skip
    basic = fake_model.headers[0]["authorization"]
    assert basic.startswith("Basic ")  # httpx sends the URL's userinfo; the provider echoes it
    assert r.returncode == 1 and "gateway broke" in r.stderr
    events = json_events(r.stdout)
    assert events[0]["base_url"] == fake_model.base_url
    for where in (r.stdout, r.stderr, trace.read_text()):
        assert "pw-0123456789xyz" not in where and basic not in where and basic[6:] not in where


def test_a_sandbox_that_does_not_start_leaves_its_run_in_the_trace(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """The driver's failed start: the trace (and --json) hold run.start, the error and run.end,
    with the model that would have answered; exit 1 with one line, and the key in none of it."""
    trace = tmp_path / "t.jsonl"
    key = "sk-cli-failed-start-0123456789abcdef"
    env = clean_env(JUPYTER_GATEWAY_URL=f"http://127.0.0.1:9/?token={key}")
    r = run_cli("run", "--approve", "auto", "--json", "--trace", str(trace), "hi", env=env)
    assert r.returncode == 1
    assert "the sandbox did not start" in r.stderr and str(trace) in r.stderr
    events = [json.loads(line) for line in trace.read_text().splitlines()[1:]]
    assert [e["type"] for e in events] == ["run.start", "error", "run.end"]
    assert events[0]["model_label"] == "offline demo model (scripted)"
    assert events[1]["kind"] == "sandbox" and events[2]["stop_reason"] == "error"
    assert [e["type"] for e in json_events(r.stdout)] == ["run.start", "error", "run.end"]
    assert key not in r.stdout + r.stderr + trace.read_text()
