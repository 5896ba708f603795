"""Helpers for the CLI tests: run ``k2lab`` as a subprocess, the way users run it.

The environment is scrubbed of keys and k2lab settings (so the offline demo model answers unless a
test passes ``--base-url``), the demo model streams without delays, and colors are off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

K2LAB = Path(sys.executable).parent / "k2lab"

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("K2LAB_") and not k.endswith("_API_KEY")
    }
    env.update(K2LAB_DEMO_DELAY="0", NO_COLOR="1", EDITOR="", VISUAL="")
    env.update(extra)
    return env


def _runner(cwd: Path) -> RunCli:
    def run(
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 90,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(K2LAB), *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env or clean_env(),
            cwd=cwd,
            timeout=timeout,
        )

    return run


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """``run_cli(*args, input=None, env=None, timeout=90)`` -> CompletedProcess (text mode)."""
    return _runner(tmp_path)


@pytest.fixture(scope="session")
def pi_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One ``k2lab run "demo: estimate pi" --trace`` shared by the tests that read its trace."""
    d = tmp_path_factory.mktemp("pi")
    trace = d / "pi.jsonl"
    r = _runner(d)("run", "--approve", "auto", "--trace", str(trace), "demo: estimate pi")
    return r, trace


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def tool_messages(body: dict[str, Any]) -> list[str]:
    """The tool messages (trailing whitespace stripped) of a request the fake model received."""
    return [m["content"].rstrip() for m in body["messages"] if m["role"] == "tool"]
