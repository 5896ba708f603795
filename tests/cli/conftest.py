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


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """``run_cli(*args, input=None, env=None, timeout=90)`` -> CompletedProcess (text mode)."""

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
            cwd=tmp_path,
            timeout=timeout,
        )

    return run


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def tool_messages(body: dict[str, Any]) -> list[str]:
    """The contents of the tool messages in a request body the fake model received."""
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]
