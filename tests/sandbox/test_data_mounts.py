"""``--data PATH`` (issue 10): the user's file or folder, read-only inside the sandbox.

Under bwrap the path is bound read-only at ``/data/NAME``; nothing else of the folder it sits in
becomes visible (a sibling file stays hidden) and writes are refused. At the process level nothing
is mounted: the code reads the real path, and the notes say so plainly. The mounts come from the
parent's settings only: a workspace path (which the sandbox writes, and could turn into a link)
is refused, and a tampered connection file cannot add one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from k2lab.sandbox import confine
from k2lab.sandbox.isolation import data_mounts
from k2lab.sandbox.kernel import SandboxKernel
from tests.cli.conftest import _runner, tool_messages
from tests.fixtures.fake_server import Call, FakeModel, Turn
from tests.sandbox.conftest import skip_unavailable, small_limits

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A project folder: data/ with sales.csv, and a secret file next to data/."""
    proj = tmp_path / "project"
    data = proj / "data"
    data.mkdir(parents=True)
    (data / "sales.csv").write_text("region,amount\nnorth,10\nsouth,32\n")
    secret = proj / "notes-secret.txt"
    secret.write_text("sibling-secret-91f3")
    return proj, data, secret


def test_mount_names_are_unique_and_checked(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "x", tmp_path / "b" / "x"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (tmp_path / "f.csv").write_text("1")
    mounts = data_mounts([str(a), str(b), str(tmp_path / "f.csv")])
    assert [i for _, i in mounts] == ["/data/x", "/data/x-2", "/data/f.csv"]
    assert mounts[0][0] == os.path.realpath(a)
    with pytest.raises(ValueError, match="no such file"):
        data_mounts([str(tmp_path / "missing")])
    # the launcher's own check: only /data/NAME, only real paths outside the workspace
    host = os.path.realpath(a)
    assert confine.data_ok(host, "/data/x", str(tmp_path / "ws"))
    assert not confine.data_ok(host, "/etc/x", "")
    assert not confine.data_ok(host, "/data/../etc", "")
    assert not confine.data_ok(host, "/data/a/b", "")
    assert not confine.data_ok(host, "/data/x", str(tmp_path))  # in the workspace
    link = tmp_path / "link"
    link.symlink_to(a)
    assert not confine.data_ok(str(link), "/data/x", "")


def test_a_path_inside_the_workspace_is_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "d").mkdir(parents=True)
    with pytest.raises(ValueError, match="workspace"):
        SandboxKernel(isolation="process", workspace=ws, data=[str(ws / "d")])


async def test_bwrap_sees_the_data_read_only_and_nothing_next_to_it(tmp_path: Path) -> None:
    skip_unavailable("bwrap")
    proj, data, secret = _project(tmp_path)
    single = proj / "one.txt"
    single.write_text("just-this-file")
    sk = SandboxKernel(isolation="bwrap", limits=small_limits(), data=[str(data), str(single)])
    async with sk:
        assert sk.isolation == "bwrap"
        note = sk.isolation_note
        assert f"{os.path.realpath(data)} at /data/data" in note, note
        prompt = sk.data_note_for_model()
        assert "/data/data: folder (read-only)" in prompt and "/data/one.txt: file" in prompt
        assert str(proj) not in prompt  # the model is told the inner path only
        code = (
            "import os, pandas as pd\n"
            "print(int(pd.read_csv('/data/data/sales.csv')['amount'].sum()))\n"
            "print(open('/data/one.txt').read())\n"
            "print(sorted(os.listdir('/data')))\n"
            f"print(os.path.exists({str(secret)!r}), os.path.exists({str(proj)!r}))\n"
        )
        r = await sk.execute(code, timeout=30)
        assert r.ok, r.text
        lines = r.text.strip().splitlines()
        assert lines == ["42", "just-this-file", "['data', 'one.txt']", "False False"], r.text
        for attempt in (
            "open('/data/data/new.txt', 'w').write('x')",
            "open('/data/data/sales.csv', 'a').write('x')",
            "os.remove('/data/data/sales.csv')",
            "open('/data/data/../notes-secret.txt').read()",
        ):
            r = await sk.execute(
                f"import os\ntry:\n    {attempt}\n    print('DONE')\nexcept OSError as e:\n"
                "    print('REFUSED', e.errno)",
                timeout=10,
            )
            assert "REFUSED" in r.text and "DONE" not in r.text, (attempt, r.text)
    assert (data / "sales.csv").read_text().endswith("south,32\n")
    assert not (data / "new.txt").exists()


async def test_process_level_says_plainly_that_nothing_is_mounted(tmp_path: Path) -> None:
    _, data, _ = _project(tmp_path)
    async with SandboxKernel(isolation="process", limits=small_limits(), data=[str(data)]) as sk:
        real = os.path.realpath(data)
        assert "mounts nothing" in sk.isolation_note and real in sk.isolation_note
        assert f"- {real}: folder" in sk.data_note_for_model()  # the real path, not /data
        r = await sk.execute(f"print(open({real + '/sales.csv'!r}).read().count(','))", timeout=20)
        assert r.text.strip() == "3", r.text
        r = await sk.execute("import os; print(os.path.exists('/data'))", timeout=10)
        assert r.text.strip() == "False" or os.path.exists("/data")


def test_launcher_refuses_a_data_mount_the_parent_would_not_make(tmp_path: Path) -> None:
    """The launcher checks the pairs again: /etc from a forged K2LAB_SANDBOX_DATA, or a path in
    the workspace, refuses the start instead of binding it."""
    skip_unavailable("bwrap")
    ws = tmp_path / "ws"
    (ws / "inner").mkdir(parents=True)
    conn = tmp_path / "conn.json"
    conn.write_text(json.dumps({"transport": "tcp", "ip": "127.0.0.1"}))
    for pairs in ([["/etc", "/etc"]], [[str(ws / "inner"), "/data/inner"]], "not json"):
        env = {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": str(ROOT),
            "K2LAB_SANDBOX_LEVEL": "bwrap",
            "K2LAB_SANDBOX_WORKSPACE": str(ws),
            "K2LAB_SANDBOX_DATA": pairs if isinstance(pairs, str) else json.dumps(pairs),
        }
        p = subprocess.run(
            [sys.executable, "-m", "k2lab.sandbox.launch", "-f", str(conn)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode == 2 and "refused" in p.stderr, (pairs, p.stderr)


def test_k2lab_run_data_end_to_end(fake_model: FakeModel, tmp_path: Path) -> None:
    """``k2lab run --data DIR``: the model is told /data/NAME in its system prompt, its code
    reads the CSV there, a sibling stays hidden; a missing path is a usage error (exit 2)."""
    skip_unavailable("bwrap")
    proj, data, secret = _project(tmp_path)
    code = (
        "import os, pandas as pd\n"
        "print(int(pd.read_csv('/data/data/sales.csv')['amount'].sum()), "
        f"os.path.exists({str(secret)!r}))"
    )
    fake_model.script(
        [Turn(tool_calls=[Call("python", {"code": code})]), Turn(content="Total 42.")]
    )
    run = _runner(proj)
    r = run(
        "run", "--base-url", fake_model.base_url, "--approve", "auto", "--isolation", "bwrap",
        "--data", str(data), "--verbose", "analyze sales.csv",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Total 42.\n"
    assert f"{os.path.realpath(data)} at /data/data" in r.stderr  # the user sees the mount
    system = fake_model.requests[0]["messages"][0]
    assert system["role"] == "system" and "/data/data: folder (read-only)" in system["content"]
    assert tool_messages(fake_model.requests[1]) == ["42 False"]
    r = run("run", "--data", str(tmp_path / "nope"), "hi")
    assert r.returncode == 2 and "no such file" in r.stderr, r.stderr
