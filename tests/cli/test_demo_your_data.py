"""The demo model's "summarise my data" (issue 10's example): the user's data reached the ways
k2lab offers it, read from the request as a real model reads it, every figure from real output.

End to end with ``k2lab run``: ``--data`` (a folder with a CSV, the real sandbox reads it) and
``--mcp-config`` (the example's real MCP server); and the script on its own for ``--with``
variables (the system prompt's note), rejections and a run with nothing attached.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from k2lab.events import ToolResult
from k2lab.providers.demo import DEMO_PROMPTS
from k2lab.providers.demo.scripts import match_demo, reply_for
from k2lab.sandbox.transfer import variables_note
from k2lab.trace.jsonl import read_trace
from tests.cli.conftest import RunCli

ROOT = Path(__file__).resolve().parents[2]
PROMPT = DEMO_PROMPTS["your_data"]
FAST = ("--isolation", "process", "--approve", "auto")


def _results(trace: Path) -> list[ToolResult]:
    _, events = read_trace(trace)
    return [e for e in events if isinstance(e, ToolResult)]


def test_prompts_about_the_users_data_pick_this_demo_not_the_synthetic_one() -> None:
    for p in (PROMPT, "demo: analyze my data", "summarize my data", "demo: use the mcp tools"):
        assert match_demo(p) == "your_data", p
    assert match_demo("demo: analyze a small synthetic sales dataset and plot it") == (
        "analyze_dataset"
    )


def test_a_mounted_folder_is_listed_and_its_csv_read(run_cli: RunCli, tmp_path: Path) -> None:
    data = tmp_path / "shop"
    data.mkdir()
    rows = [f"{d},{r},{10 * d + i}" for d in range(1, 8) for i, r in enumerate("NSEW")]
    (data / "sales.csv").write_text("day,region,sales\n" + "\n".join(rows) + "\n")
    trace = tmp_path / "t.jsonl"
    r = run_cli("run", *FAST, "--data", str(data), "--trace", str(trace), PROMPT)
    assert r.returncode == 0, r.stderr
    listed, read = _results(trace)
    assert listed.ok and "sales.csv" in listed.output and "files=1" in listed.output
    assert read.ok and "rows=28 columns=3" in read.output
    # the answer quotes what pandas printed: the row count and the describe() table
    assert "28 rows, 3 columns" in r.stdout
    mean = re.search(r"^mean\s+([\d.]+)", read.output, re.M)
    assert mean is not None and mean.group(1) in r.stdout


def test_an_mcp_tool_that_needs_no_arguments_is_called(run_cli: RunCli, tmp_path: Path) -> None:
    # the example's own server and config, copied so its relative script path resolves
    for f in ("shop_server.py", "servers.json"):
        shutil.copy(ROOT / "examples" / "mcp" / f, tmp_path / f)
    cfg = json.loads((tmp_path / "servers.json").read_text())
    cfg["mcpServers"]["shop"]["command"] = sys.executable  # the test's interpreter has the SDK
    (tmp_path / "servers.json").write_text(json.dumps(cfg))
    trace = tmp_path / "t.jsonl"
    r = run_cli(
        "run", *FAST, "--mcp-config", str(tmp_path / "servers.json"), "--trace", str(trace), PROMPT
    )
    assert r.returncode == 0, r.stderr
    (result,) = _results(trace)
    assert result.name == "mcp__shop__sales_targets" and result.ok
    assert "target_East=150.0" in result.output and "target_East=150.0" in r.stdout


def _request(system_note: str) -> list[dict[str, object]]:
    return [
        {"role": "system", "content": "You are k2lab's agent.\n\n" + system_note},
        {"role": "user", "content": PROMPT},
    ]


PYTHON = [{"type": "function", "function": {"name": "python", "parameters": {}}}]


def test_a_copied_dataframe_is_described_from_its_output() -> None:
    note = variables_note([("orders", "DataFrame, shape (50, 2), columns a (int64), b (float64)")])
    messages = _request(note)
    first = reply_for(messages, PYTHON)
    (call,) = first.tool_calls
    code = json.loads(call.arguments)["code"]
    assert "value = orders" in code and "describe()" in code
    compile(code, "<demo>", "exec")
    output = (
        "name=orders type=DataFrame rows=50 columns=2\na int64\nb float64\n"
        "most_varied=b mean=3.250 std=9.125\nmissing_values=4\n"
    )
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [_wire(call)]},
        {"role": "tool", "tool_call_id": call.id, "content": output},
    ]
    answer = reply_for(messages, PYTHON)
    assert not answer.tool_calls
    for figure in ("50 rows, 2 columns", "4 missing values", "**b**", "3.250", "9.125"):
        assert figure in answer.content, answer.content


def test_a_rejected_look_is_said_and_nothing_is_invented() -> None:
    messages = _request(variables_note([("df", "DataFrame, shape (3, 1), columns x (int64)")]))
    (call,) = reply_for(messages, PYTHON).tool_calls
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [_wire(call)]},
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": "The user rejected this tool call. Feedback from the user: not now",
        },
    ]
    answer = reply_for(messages, PYTHON)
    assert "nothing ran" in answer.content and '"not now"' in answer.content
    assert "rows" not in answer.content


def test_with_nothing_attached_it_says_how_to_attach_data() -> None:
    answer = reply_for([{"role": "user", "content": PROMPT}], PYTHON)
    assert not answer.tool_calls
    for way in ("--with", "--data", "--mcp-config"):
        assert way in answer.content


def _wire(call: object) -> dict[str, object]:
    return {
        "id": call.id,  # type: ignore[attr-defined]
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},  # type: ignore[attr-defined]
    }
