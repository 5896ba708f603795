"""``k2lab run`` as a subprocess against the fake K2 server (real HTTP, real sandbox kernel)."""

from __future__ import annotations

from pathlib import Path

from k2lab.trace.jsonl import read_trace
from tests.cli.conftest import RunCli, json_events, tool_messages
from tests.fixtures.fake_server import Call, FakeModel, Turn

# the process level starts fastest; isolation itself is the sandbox area's to test
FAST = ("--isolation", "process")


def py(code: str) -> Call:
    return Call("python", {"code": code})


def test_answer_on_stdout_and_exit_0(fake_model: FakeModel, run_cli: RunCli) -> None:
    fake_model.script(
        [
            Turn(reasoning="Compute it.", tool_calls=[py("print(6 * 7)")]),
            Turn(reasoning="It printed 42.", content="The answer is 42."),
        ]
    )
    r = run_cli("run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST, "what?")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "The answer is 42.\n"
    # the call really ran in the sandbox, and its output went back to the model
    assert tool_messages(fake_model.requests[1]) == ["42"]
    assert "offline demo model" not in r.stderr  # a base URL was given: no demo note


def test_json_events_and_trace(fake_model: FakeModel, run_cli: RunCli, tmp_path: Path) -> None:
    fake_model.script(
        [Turn(tool_calls=[py("print('hi')")]), Turn(reasoning="ok", content="Said hi.")]
    )
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST,
        "--json", "--trace", str(trace), "greet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    events = json_events(r.stdout)
    types = [e["type"] for e in events]
    assert types[0] == "run.start" and types[-1] == "run.end"
    assert [e["seq"] for e in events] == list(range(len(events)))
    result = next(e for e in events if e["type"] == "tool.result")
    assert result["ok"] is True and result["output"].strip() == "hi"
    assert events[-1]["answer"] == "Said hi." and events[-1]["stop_reason"] == "completed"
    assert "Said hi." not in [line for line in r.stdout.splitlines()]  # no bare answer line

    header, traced = read_trace(trace)
    assert header["k2lab_trace"] == 1
    assert header["run_id"] == events[0]["run_id"]
    assert [e.to_dict() for e in traced] == events


def test_approve_never_runs_nothing_and_tells_the_model(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    marker = tmp_path / "ran.txt"
    fake_model.script(
        [
            Turn(tool_calls=[py(f"open({str(marker)!r}, 'w').write('x')")]),
            Turn(content="I could not run it."),
        ]
    )
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "never", *FAST,
        "--trace", str(trace), "write a file",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not marker.exists()  # the process level could have written it: nothing ran
    (told,) = tool_messages(fake_model.requests[1])
    assert "rejected" in told and "'never'" in told
    _, events = read_trace(trace)
    decision = next(e for e in events if e.type == "tool.decision")
    assert decision.decision == "reject" and decision.by == "policy"


def test_provider_failure_is_one_stderr_line(fake_model: FakeModel, run_cli: RunCli) -> None:
    fake_model.script([Turn(status=401, error="Invalid Authentication")])
    r = run_cli("run", "--base-url", fake_model.base_url, *FAST, "hello")
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("k2lab: error:") and "401" in lines[0]


def test_unreachable_server_fails_after_retries(run_cli: RunCli) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli("run", "--base-url", f"http://127.0.0.1:{port}/v1", *FAST, "hello")
    assert r.returncode == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("k2lab: error: the run failed:")


def test_max_steps_ends_the_run(fake_model: FakeModel, run_cli: RunCli) -> None:
    fake_model.respond_with(lambda body, i: Turn(tool_calls=[py(f"print({i})")]))
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", *FAST,
        "--max-steps", "2", "loop forever",
    )  # fmt: skip
    assert r.returncode == 3
    assert len(fake_model.requests) == 2
    (line,) = r.stderr.strip().splitlines()
    assert "--max-steps 2" in line


def test_bad_options_are_usage_errors(run_cli: RunCli) -> None:
    r = run_cli("run", "--preset", "nope", "hi")
    assert r.returncode == 2 and "unknown preset" in r.stderr
    r = run_cli("run", "--approve", "sometimes", "hi")
    assert r.returncode == 2
    r = run_cli("run", "--trace", "/nonexistent-dir/t.jsonl", "hi")
    assert r.returncode == 2 and "cannot write the trace" in r.stderr


def test_ask_over_a_pipe_yes_no_edit_all(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    fake_model.script(
        [
            Turn(tool_calls=[py("print('first')")]),
            Turn(tool_calls=[py("print('second')")]),
            Turn(tool_calls=[py("print('third')")]),
            Turn(tool_calls=[py("print('fourth')")]),
            Turn(tool_calls=[py("print('fifth')")]),  # approved by the earlier "a"
            Turn(content="done"),
        ]
    )
    trace = tmp_path / "t.jsonl"
    answers = "y\nn\nnot this one\ne\nprint('edited')\nprint('twice')\n.\na\n"
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "ask", *FAST,
        "--trace", str(trace), "five calls", input=answers,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n"
    assert tool_messages(fake_model.requests[1]) == ["first"]
    second = tool_messages(fake_model.requests[2])[1]
    assert "rejected" in second and "Feedback from the user: not this one" in second
    third = tool_messages(fake_model.requests[3])[2]
    assert third.endswith("edited\ntwice") and "third" not in third
    assert tool_messages(fake_model.requests[5])[3:] == ["fourth", "fifth"]
    _, events = read_trace(trace)
    decisions = [(e.decision, e.by) for e in events if e.type == "tool.decision"]
    assert decisions == [
        ("approve", "user"),
        ("reject", "user"),
        ("edit", "user"),
        ("approve", "user"),
        ("approve", "policy"),
    ]
    # each question is asked on stderr after the code it is about; none after "a"
    assert r.stderr.index("print('first')") < r.stderr.index("Run it?")
    assert r.stderr.count("Run it?") == 4


def test_ask_without_answers_fails_clearly(fake_model: FakeModel, run_cli: RunCli) -> None:
    fake_model.script([Turn(tool_calls=[py("print(1)")]), Turn(content="unreachable")])
    r = run_cli("run", "--base-url", fake_model.base_url, *FAST, "x")  # stdin is /dev/null
    assert r.returncode == 1 and r.stdout == ""
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("k2lab: error: --approve ask needs an answer on stdin")
    assert len(fake_model.requests) == 1  # nothing ran, nothing more was asked


def test_ctrl_c_stops_cleanly_and_keeps_the_trace(fake_model: FakeModel, tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from tests.cli.conftest import K2LAB, clean_env

    fake_model.script([Turn(reasoning="Thinking very slowly " * 5, stall_after=4)])
    trace = tmp_path / "t.jsonl"
    proc = subprocess.Popen(
        [str(K2LAB), "run", "--base-url", fake_model.base_url, *FAST, "--trace", str(trace), "x"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "reasoning.delta" not in (
            trace.read_text() if trace.exists() else ""
        ):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert stdout == ""
    assert stderr.strip().splitlines()[-1].startswith("k2lab: error: the run was stopped")
    _, events = read_trace(trace)
    assert events[-1].type == "run.end" and events[-1].stop_reason == "stopped"


def test_workspace_is_where_the_code_works(
    fake_model: FakeModel, run_cli: RunCli, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "data.csv").write_text("a,b\n1,2\n")
    code = "import os\nprint(open('data.csv').read().split()[1])\nopen('out.txt', 'w').write('hi')"
    fake_model.script([Turn(tool_calls=[py(code)]), Turn(content="read it")])
    r = run_cli(
        "run", "--base-url", fake_model.base_url, "--approve", "auto",
        "--workspace", str(ws), "read my data",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert tool_messages(fake_model.requests[1]) == ["1,2\n2"]
    assert (ws / "out.txt").read_text() == "hi"
    assert (ws / "data.csv").exists()  # a workspace the user gave is kept


def test_edit_opens_the_editor(fake_model: FakeModel, run_cli: RunCli) -> None:
    from tests.cli.conftest import clean_env

    fake_model.script([Turn(tool_calls=[py("print('draft')")]), Turn(content="ok")])
    # any command that edits the file in place works as $EDITOR
    env = clean_env(EDITOR="sed -i s/draft/final/")
    r = run_cli("run", "--base-url", fake_model.base_url, *FAST, "x", input="e\n", env=env)
    assert r.returncode == 0, r.stderr
    (result,) = tool_messages(fake_model.requests[1])
    assert result.endswith("\nfinal") and "print('final')" in result
