"""``k2lab run`` in a real terminal (a pty): live progress on stderr, questions answered by keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import K2LAB, clean_env

pexpect = pytest.importorskip("pexpect")  # IPython depends on it on Linux


def test_ask_in_a_terminal(tmp_path: Path) -> None:
    child = pexpect.spawn(
        str(K2LAB),
        ["run", "--isolation", "process", "demo: estimate pi"],
        env=clean_env(),
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    try:
        child.expect("offline demo model \\(scripted\\)")
        child.expect("thinking: The user wants an estimate of pi")  # reasoning streams live
        child.expect("→ python \\[functions.python:0\\]")
        child.expect("Run it\\?")
        child.sendline("y")
        child.expect("← ok")
        child.expect("pi_hat=(\\d\\.\\d+)")
        printed = child.match.group(1)
        child.expect("Run it\\?")
        child.sendline("n")
        child.expect("Feedback")
        child.sendline("no need to check")
        child.expect("rejected \\(you\\): no need to check")
        child.expect(pexpect.EOF)
        tail = child.before
    finally:
        child.close()
    assert child.exitstatus == 0
    assert f"**pi ~ {printed}**" in tail and "Not verified" in tail
