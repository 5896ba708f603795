"""Secrets of the engine process stay out of the sandbox: environment, /proc, ps, home files.

The engine runs as a real subprocess with the secret in its exec-time environment (which is what
``/proc/<pid>/environ`` shows), a fake key file in its $HOME and a `.env` in its project dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox.conftest import skip_unavailable

SECRET = "sk-test-secret-4f9a2c7e1b"
ROOT = Path(__file__).resolve().parents[2]


def probe(level: str, tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "home"
    (home / ".config" / "k2lab").mkdir(parents=True)
    (home / ".config" / "k2lab" / "key").write_text(SECRET)
    (home / ".jupyter").mkdir()
    (home / ".jupyter" / "jupyter_server_config.py").write_text(f"c.K2Lab.api_key = '{SECRET}'\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(f"K2LAB_API_KEY={SECRET}\n")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "K2LAB_API_KEY": SECRET,
        "MOONSHOT_API_KEY": SECRET,
        "OPENAI_API_KEY": SECRET,
        "PYTHONPATH": str(ROOT),
    }
    p = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "sandbox" / "secret_probe.py"), level],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert p.returncode == 0, p.stderr[-2000:] + p.stdout[-2000:]
    result: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["isolation"] == level
    return result


@pytest.mark.parametrize("level", ["bwrap", "process"])
def test_environment_is_clean(level: str, tmp_path: Path) -> None:
    skip_unavailable(level)
    found = probe(level, tmp_path)
    assert found["os.environ"] == []
    if level == "bwrap":
        # every route is closed
        assert found["/proc"] == [], found
        assert found["ps"] is False, found
        assert found["files"] == [] and found["walk"] == [], found
        assert found["pids_visible"] <= 4, found  # its own PID namespace
    else:
        # the engine blanks its secrets in its own /proc environ (k2lab.sandbox.parent), so
        # neither /proc nor ps shows them; the user's files stay readable at this level, as
        # its note and the README say
        assert found["/proc"] == [], found
        assert found["ps"] is False, found
        assert found["files"], "expected: the process level does not hide files"


def test_process_level_note_states_what_is_open() -> None:
    from k2lab.sandbox.isolation import ISOLATION_NOTES

    note = ISOLATION_NOTES["process"]
    assert "can read your files" in note and "network" in note
