"""The magics in IPython's test shell: parsing, help, config, errors (no kernel, no model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output

from k2lab.notebook import commands


@pytest.fixture(scope="module")
def ip() -> Iterator[Any]:
    shell = start_ipython()
    shell.run_line_magic("load_ext", "k2lab")
    yield shell


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, str]]:
    """Record what ``ask`` receives instead of starting a run."""
    calls: list[tuple[Any, str]] = []
    monkeypatch.setattr(commands, "ask", lambda session, opts, prompt: calls.append((opts, prompt)))
    return calls


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("K2LAB_API_KEY", "MOONSHOT_API_KEY", "K2LAB_BASE_URL", "K2LAB_APPROVE"):
        monkeypatch.delenv(var, raising=False)


def test_help_documents_every_option(ip: Any) -> None:
    with capture_output() as cap:
        ip.run_line_magic("k2", "--help")
    for opt in (
        "--model",
        "--base-url",
        "--approve",
        "--max-steps",
        "--wall-time",
        "--max-tokens",
        "--max-request-tokens",
        "--context-window",
        "--context-share",
        "--summarise-context",
        "--tool-timeout",
        "--isolation",
        "--in-kernel",
        "--new",
        "--resume",
        "%k2 config",
        "%k2 export",
        "%k2 replay",
        "%%k2 fork",
    ):
        assert opt in cap.stdout, opt


def test_options_then_the_prompt_verbatim(ip: Any, asked: list[tuple[Any, str]]) -> None:
    ip.run_line_magic("k2", "--approve auto --max-steps 3 --model=k2-x what's 2 + 2, really")
    opts, prompt = asked[-1]
    assert (opts.approve, opts.max_steps, opts.model) == ("auto", 3, "k2-x")
    assert prompt == "what's 2 + 2, really"
    ip.run_cell_magic("k2", "--new --in-kernel", "Summarise df.\nBe brief.\n")
    opts, prompt = asked[-1]
    assert opts.new and opts.in_kernel and prompt == "Summarise df.\nBe brief."


def test_a_question_is_a_prompt_not_a_help_request(ip: Any, asked: list[tuple[Any, str]]) -> None:
    ip.run_cell("%k2 --approve never what is x*10?")
    opts, prompt = asked[-1]
    assert opts.approve == "never" and prompt == "what is x*10?"


def test_bad_input_gets_a_clear_error(ip: Any, asked: list[tuple[Any, str]]) -> None:
    with pytest.raises(UsageError, match="needs a prompt"):
        ip.run_line_magic("k2", "--approve auto")
    with pytest.raises(UsageError, match="invalid choice"):
        ip.run_line_magic("k2", "--approve sometimes hi")
    with pytest.raises(UsageError, match="unknown option --frobnicate"):
        ip.run_line_magic("k2", "--frobnicate hi")
    with pytest.raises(UsageError, match="needs a value"):
        ip.run_line_magic("k2", "--model")
    assert asked == []


def test_config_shows_sources_never_the_key(ip: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with capture_output() as cap:
        ip.run_line_magic("k2", "config")
    text = cap.outputs[0].data["text/plain"]
    assert "offline demo model" in text and "api key" in text and "not set" in text
    monkeypatch.setenv("K2LAB_API_KEY", "sk-very-secret-test-key")
    monkeypatch.setenv("K2LAB_APPROVE", "auto")
    with capture_output() as cap:
        ip.run_line_magic("k2", "--max-steps 7 config")
    data = cap.outputs[0].data
    for body in (data["text/plain"], data["text/html"]):
        assert "sk-very-secret-test-key" not in body
    text = data["text/plain"]
    assert "set (from $K2LAB_API_KEY)" in text
    assert any(line.split()[:3] == ["approve", "auto", "environment"] for line in text.splitlines())
    assert any(line.split()[:3] == ["max_steps", "7", "option"] for line in text.splitlines())


def test_config_names_the_mcp_servers_not_their_secrets(ip: Any, tmp_path: Any) -> None:
    cfg = tmp_path / "mcp.json"
    cfg.write_text(
        '{"mcpServers": {"calc": {"command": "calc-server", "env": {"TOKEN": "tok-3f9e1"}},'
        ' "web": {"url": "https://example.invalid/mcp"}}}'
    )
    with capture_output() as cap:
        ip.run_line_magic("k2", f"config --mcp-config {cfg}")
    data = cap.outputs[0].data
    (line,) = [ln for ln in data["text/plain"].splitlines() if ln.startswith("mcp servers")]
    assert "calc (stdio), web (http)" in line and str(cfg) in line
    for body in (data["text/plain"], data["text/html"]):
        assert "tok-3f9e1" not in body and "calc-server" not in body
    cfg.write_text('{"mcpServers": {"calc": {"command": 5}}}')
    with pytest.raises(UsageError, match="mcpServers.calc.command"):
        ip.run_line_magic("k2", f"config --mcp-config {cfg}")


def test_subcommands_without_runs(ip: Any) -> None:
    with capture_output() as cap:
        ip.run_line_magic("k2", "runs")
    assert "no runs yet" in cap.stdout
    with pytest.raises(UsageError):
        ip.run_line_magic("k2", "export --file /nonexistent.ipynb")
    with pytest.raises(UsageError, match="usage: %%k2 fork"):
        ip.run_cell_magic("k2", "fork onlyone", "print(1)")


def test_a_run_needs_a_kernel_loop(ip: Any) -> None:
    with pytest.raises(UsageError, match="k2lab run"):
        ip.run_line_magic("k2", "hello")
