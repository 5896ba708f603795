"""Abuse suite: sandbox code attacks how the *next* sandbox starts (issue 8, items 1-3 and 6).

Rule under test: nothing the sandbox can write decides how the next sandbox starts. Each attack is
real sandbox code run through ``SandboxKernel.execute``: it edits every connection file it can
reach, plants modules and symlinks in its workspace, then forces a restart (``os._exit``) or a new
sandbox on the same (kept) workspace. Then nothing may appear in a host directory outside the
workspace, no host 127.0.0.1 port may be reachable under bwrap, no planted module may have run,
and the kernel must still work.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.multikernelmanager import AsyncMultiKernelManager

from k2lab.sandbox import leftovers
from k2lab.sandbox.kernel import SandboxKernel
from tests.sandbox.conftest import skip_unavailable, small_limits

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-escape-secret-7d1e5b3a9c"


@pytest.fixture
def host_port() -> Iterator[int]:
    """A TCP server on the host's 127.0.0.1 (like a Jupyter server's port)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.sendall(b"host\n")
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def planted_module(marker: str, host_dir: Path | None = None, port: int = 0) -> str:
    """Source of a ``threading.py`` to plant in the workspace: it records that it ran (and tries
    the host directory and port), then hands over to the real ``threading`` so the kernel works."""
    return textwrap.dedent(
        f"""
        import os, sys
        with open({marker!r}, "a") as f:
            f.write("ran in pid %d\\n" % os.getpid())
        host = {str(host_dir) if host_dir else ""!r}
        if host:
            try:
                open(os.path.join(host, "written-by-the-sandbox"), "w").write("escaped")
            except OSError:
                pass
        if {port}:
            try:
                import socket
                socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
                with open({marker!r}, "a") as f:
                    f.write("REACHED the host port\\n")
            except OSError:
                pass
        _here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
        del sys.modules[__name__]
        import threading as _real
        sys.modules[__name__] = _real
        """
    )


#: Sandbox code: tamper with every connection file it can find (the workspace's ``.k2lab``, next
#: to each of its sockets, its own open files), in the way ``mode`` says.
TAMPER = r"""
import glob, json, os
mode, host = {mode!r}, {host!r}
ws = os.getcwd()
orig = {{}}
args = open("/proc/self/cmdline", "rb").read().decode().split("\0")
for p in [ws + "/.k2lab/kernel.json", "/run/k2lab/connection.json", *args[-3:]]:
    try:
        orig = json.load(open(p))
        break
    except (OSError, ValueError):
        pass
def evil(info):
    info = dict(info)
    if mode == "ipc-outside":
        info.update(transport="ipc", ip=host + "/kernel-ipc")
    elif mode == "tcp":
        info.update(transport="tcp", ip="127.0.0.1")
    else:  # a missing field
        info.pop("key", None)
    return info
targets = {{ws + "/.k2lab/kernel.json"}}
try:  # the directories of this kernel's unix sockets
    for line in open("/proc/net/unix").read().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[7].startswith("/"):
            targets.add(os.path.join(os.path.dirname(parts[7]), "kernel.json"))
except OSError:
    pass
args = open("/proc/self/cmdline", "rb").read().decode().split("\0")
if "-f" in args and args.index("-f") + 1 < len(args):  # this kernel's own connection file
    targets.add(os.path.abspath(args[args.index("-f") + 1]))
for fd in os.listdir("/proc/self/fd"):
    try:
        p = os.readlink("/proc/self/fd/" + fd)
    except OSError:
        continue
    if p.endswith(".json"):
        targets.add(p)
done = []
for t in sorted(targets):
    try:
        os.makedirs(os.path.dirname(t), exist_ok=True)
        with open(t, "w") as f:
            json.dump(evil(orig), f)
        done.append(t)
    except OSError:
        pass
print("TAMPERED", done)
"""

PROBE = r"""
import os, socket
host, port = {host!r}, {port}
try:
    open(os.path.join(host, "probe-after-restart"), "w").write("x")
    print("HOST-WRITE ok")
except OSError as e:
    print("HOST-WRITE blocked", e)
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    print("PORT reached")
except OSError as e:
    print("PORT blocked", e)
"""


@pytest.mark.parametrize("mode", ["ipc-outside", "tcp", "missing-key"])
@pytest.mark.parametrize("face", ["api", "server-manager"])
async def test_tampered_connection_file_does_not_widen_the_next_sandbox(
    mode: str, face: str, tmp_path: Path, host_port: int
) -> None:
    """Item 1: the restart after a tampered connection file gets the same closed sandbox."""
    skip_unavailable("bwrap")
    host = tmp_path / "host"
    host.mkdir()
    marker = "planted-ran.txt"
    # the panel's sessions start through the Jupyter server's (local) kernel manager
    mkm = AsyncMultiKernelManager() if face == "server-manager" else None
    sk = SandboxKernel(isolation="bwrap", limits=small_limits(), kernel_manager=mkm)
    await sk.start()
    try:
        ws = sk.workspace
        module = planted_module(str(ws / marker), host, host_port)
        plant = f"open('threading.py', 'w').write({module!r})"
        assert (await sk.execute(plant, timeout=10)).ok
        r = await sk.execute(TAMPER.format(mode=mode, host=str(host)), timeout=10)
        assert r.ok, r.text
        r = await sk.execute("import os\nos._exit(3)", timeout=60)
        assert r.restarted, r.text
        r = await sk.execute(PROBE.format(host=str(host), port=host_port), timeout=60)
        assert r.ok, r.text
        assert "HOST-WRITE blocked" in r.text and "PORT blocked" in r.text, r.text
        assert sk.isolation == "bwrap" and not sk.network
        assert not (ws / marker).exists(), (ws / marker).read_text()
        # and again: a second restart after the same tampering
        r = await sk.execute(TAMPER.format(mode=mode, host=str(host)), timeout=10)
        await sk.execute("import os\nos._exit(3)", timeout=60)
        r = await sk.execute("print('still works')", timeout=60)
        assert r.ok and "still works" in r.text, r.text
        assert not (ws / marker).exists()
    finally:
        await sk.shutdown()
    assert list(host.iterdir()) == [], "files appeared in a host directory outside the workspace"


async def test_process_level_restart_ignores_a_tampered_connection_file(tmp_path: Path) -> None:
    """Item 1 at the process level, where the sandbox can reach the connection file (it shares
    the user): the restart writes it again from the manager's memory instead of re-reading it
    (jupyter_client re-read it, and a missing field failed every later start)."""
    mode = "missing-key"
    host = tmp_path / "host"
    host.mkdir()
    async with SandboxKernel(isolation="process", limits=small_limits()) as sk:
        r = await sk.execute(TAMPER.format(mode=mode, host=str(host)), timeout=10)
        assert r.ok and "kernel.json" in r.text, r.text
        r = await sk.execute("import os\nos._exit(3)", timeout=60)
        assert r.restarted, r.text
        r = await sk.execute("print('still works')", timeout=60)
        assert r.ok and "still works" in r.text, r.text
        km = sk._handle.km  # type: ignore[union-attr]
        written = json.loads(Path(km.connection_file).read_text())
        assert written["transport"] == "ipc" and written["ip"] == km.ip
        assert written["key"] == km.session.key.decode()
    assert list(host.iterdir()) == []


@pytest.mark.parametrize("level", ["bwrap", "process"])
async def test_kernel_files_are_outside_the_workspace(level: str, tmp_path: Path) -> None:
    """Item 1: the connection file and the log are not in (or under) the workspace, and what the
    sandbox sees of the parent's kernel directory is its socket directory only."""
    skip_unavailable(level)
    ws = tmp_path / "ws"
    async with SandboxKernel(isolation=level, workspace=ws, limits=small_limits()) as sk:
        cf = Path(sk._handle.km.connection_file)  # type: ignore[union-attr]
        assert cf.is_file() and ws not in cf.parents
        assert not list(ws.rglob("*.json")) and not list(ws.rglob("*.log"))
        runtime = cf.parent
        assert runtime.stat().st_mode & 0o777 == 0o700
        assert leftovers.owner_alive(runtime) is True  # swept if this engine is SIGKILLed
        if level == "bwrap":
            code = f"import os\nprint(sorted(os.listdir({str(runtime)!r})))"
            r = await sk.execute(code, timeout=10)
            assert r.text.strip() == "['ipc']", r.text  # the sockets only; no json, no log
        # the socket directory is writable from the sandbox: it is named for the disk quota
        assert sk.writable_dirs() == [sk.workspace, runtime / "ipc"]
        for _ in range(2):
            await sk.restart()
        if level == "process":  # one start directory (IPython's) per kernel, not per start
            assert len(list(runtime.glob("start-*"))) == 1
    assert not runtime.exists(), "the private kernel directory outlived the sandbox"


def _launch(env: dict[str, str], conn: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2lab.sandbox.launch", "-f", str(conn)],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "info",
    [
        {"transport": "ipc", "ip": "HOST/kernel-ipc"},
        {"transport": "tcp", "ip": "127.0.0.1"},
        {"transport": "ipc", "ip": "IPC/../kernel-ipc"},
    ],
)
def test_launcher_refuses_a_connection_file_that_names_other_binds(
    info: dict[str, str], tmp_path: Path
) -> None:
    """Item 1: the launcher takes its socket directory and network from the parent's settings
    only; a connection file that disagrees is refused, never turned into a bind or --share-net."""
    skip_unavailable("bwrap")
    ipc, host, ws = tmp_path / "rt" / "ipc", tmp_path / "host", tmp_path / "ws"
    for d in (ipc, host, ws):
        d.mkdir(parents=True)
    info = {k: v.replace("HOST", str(host)).replace("IPC", str(ipc)) for k, v in info.items()}
    conn = tmp_path / "rt" / "kernel.json"
    conn.write_text(json.dumps({**info, "key": "k", "shell_port": 1}))
    p = _launch(
        {
            "K2LAB_SANDBOX_LEVEL": "bwrap",
            "K2LAB_SANDBOX_NETWORK": "0",
            "K2LAB_SANDBOX_WORKSPACE": str(ws),
            "K2LAB_SANDBOX_RUNTIME": str(ipc.parent),
        },
        conn,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert "refused" in p.stderr, p.stderr
    assert list(host.iterdir()) == []


def test_launcher_refuses_ipc_from_another_kernel_manager(tmp_path: Path) -> None:
    """Without k2lab's private directory (a kernel picker, a gateway), an ipc connection file is
    refused rather than its directory (a server's runtime dir, with every kernel's keys) bound."""
    skip_unavailable("bwrap")
    ws = tmp_path / "ws"
    ws.mkdir()
    conn = tmp_path / "kernel-1.json"
    conn.write_text(json.dumps({"transport": "ipc", "ip": str(tmp_path / "kernel"), "key": "k"}))
    p = _launch({"K2LAB_SANDBOX_LEVEL": "bwrap", "K2LAB_SANDBOX_WORKSPACE": str(ws)}, conn)
    assert p.returncode == 2 and "refused" in p.stderr, p.stdout + p.stderr


@pytest.mark.parametrize("level", ["bwrap", "process"])
async def test_planted_modules_do_not_run_at_start(level: str, tmp_path: Path) -> None:
    """Item 2: a planted stdlib name (and, at the process level, an IPython startup file where
    the kernel's IPython dir used to be) runs neither at start, nor after a restart, a reset or a
    new sandbox on the kept workspace; the model's own ``import helper`` still works."""
    skip_unavailable(level)
    ws = tmp_path / "ws"
    ws.mkdir()
    marker = ws / "planted-ran.txt"
    plants = {
        "threading.py": planted_module(str(marker)),
        "helper.py": "VALUE = 42\n",
        ".k2lab/tmp/ipython/profile_default/startup/00-planted.py": (
            f"open({str(marker)!r}, 'a').write('ipython startup ran\\n')\n"
        ),
    }

    def plant() -> None:
        for rel, text in plants.items():
            (ws / rel).parent.mkdir(parents=True, exist_ok=True)
            (ws / rel).write_text(text)

    plant()  # a kept workspace from an earlier run
    check = (
        "import os, sys, threading, helper\n"
        "print('CWD', os.getcwd())\nprint('HELPER', helper.VALUE)\n"
        "print('THREADING', threading.__file__)"
    )
    for round_ in range(2):
        async with SandboxKernel(isolation=level, workspace=ws, limits=small_limits()) as sk:
            for step in ("start", "restart", "reset"):
                r = await sk.execute(check, timeout=30)
                assert r.ok, r.text
                lines = dict(line.split(" ", 1) for line in r.text.strip().splitlines())
                assert lines["CWD"] == str(ws) and lines["HELPER"] == "42", r.text
                assert not lines["THREADING"].startswith(str(ws)), r.text
                assert not marker.exists(), f"{step} #{round_}: {marker.read_text()}"
                # the sandbox plants them again itself, then the kernel starts anew
                code = "\n".join(
                    f"os.makedirs(os.path.dirname(os.path.abspath({rel!r})), exist_ok=True)\n"
                    f"open({rel!r}, 'w').write({text!r})"
                    for rel, text in plants.items()
                )
                assert (await sk.execute("import os\n" + code, timeout=10)).ok
                if step == "start":
                    r = await sk.execute("import os\nos._exit(1)", timeout=60)
                    assert r.restarted, r.text
                elif step == "restart":
                    await sk.reset()
            r = await sk.execute(check, timeout=30)
            assert r.ok and not marker.exists(), r.text


@pytest.mark.parametrize("level", ["bwrap", "process"])
async def test_planted_kernel_log_link_is_not_followed(level: str, tmp_path: Path) -> None:
    """Item 3: a ``.k2lab/kernel.log`` symlink the sandbox left in a kept workspace does not make
    the parent append the kernel's stderr to the file it points to."""
    skip_unavailable(level)
    ws = tmp_path / "ws"
    victim = tmp_path / "victim.txt"
    victim.write_text("original\n")
    victim.chmod(0o600)
    async with SandboxKernel(isolation=level, workspace=ws, limits=small_limits()) as sk:
        code = (
            "import os\nos.makedirs('.k2lab', exist_ok=True)\n"
            "if os.path.lexists('.k2lab/kernel.log'):\n    os.remove('.k2lab/kernel.log')\n"
            f"os.symlink({str(victim)!r}, '.k2lab/kernel.log')"
        )
        assert (await sk.execute(code, timeout=10)).ok
    assert (ws / ".k2lab" / "kernel.log").is_symlink()
    async with SandboxKernel(isolation=level, workspace=ws, limits=small_limits()) as sk:
        r = await sk.execute("import os\nos.write(2, b'THROUGH-THE-LINK\\n')", timeout=10)
        assert r.ok, r.text
        await sk.restart()
        await sk.execute("import os\nos.write(2, b'THROUGH-THE-LINK\\n')", timeout=10)
        assert "THROUGH-THE-LINK" in sk._log_tail()  # the kernel's stderr still has its log
    assert victim.read_text() == "original\n"


SYMLINKED_ENGINE = """
import asyncio, sys
from k2lab.sandbox.kernel import SandboxKernel
async def main():
    async with SandboxKernel(isolation="bwrap") as sk:
        code = "import sys\\nprint('SUM', 1 + 1)\\nprint('EXE', sys.executable)"
        r = await sk.execute(code, timeout=20)
        print(sk.isolation, r.text, flush=True)
asyncio.run(main())
"""


def test_venv_reached_through_a_symlink(tmp_path: Path) -> None:
    """Item 6: an engine whose interpreter path goes through a symlink (the project's ``.venv``
    reached through a linked folder) still starts a bwrap sandbox."""
    skip_unavailable("bwrap")
    exe = Path(sys.executable)
    link = tmp_path / "linked-project"
    link.symlink_to(exe.parent.parent.parent)  # the folder that holds the venv
    python = link / exe.parent.parent.name / exe.parent.name / exe.name
    assert python.exists() and str(python.resolve()) != str(python)
    p = subprocess.run(
        [str(python), "-c", SYMLINKED_ENGINE],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert "bwrap" in p.stdout and "SUM 2" in p.stdout, p.stdout + p.stderr[-3000:]


#: A kernelspec whose first process, before the launcher, reads the engine's /proc environ: the
#: earliest moment any sandbox process exists.
FIRST_PROCESS = """
import os, sys
with open(os.environ.get("K2LAB_SANDBOX_WORKSPACE", "") + "/../first-process.txt", "w") as f:
    environ = open("/proc/%d/environ" % os.getppid(), "rb").read()
    f.write("SEEN" if {secret!r}.encode() in environ else "BLANK")
os.execv(sys.executable, [sys.executable, "-m", "k2lab.sandbox.launch", *sys.argv[1:]])
"""

SECRET_ENGINE = """
import asyncio, sys
from pathlib import Path
from k2lab.sandbox.kernel import SandboxKernel
async def main():
    async with SandboxKernel(isolation="process", kernel_name="k2lab-first-process",
                             workspace=Path(sys.argv[1])) as sk:
        r = await sk.execute("print('SUM', 1 + 1)", timeout=20)
        print(sk.isolation, r.text, flush=True)
asyncio.run(main())
"""


def test_process_level_secrets_blanked_before_the_kernel_starts(tmp_path: Path) -> None:
    """Item 2: at the process level the engine blanks its /proc environ before it starts any
    sandbox process, not after the kernel answered."""
    spec = tmp_path / "share" / "kernels" / "k2lab-first-process"
    spec.mkdir(parents=True)
    probe = tmp_path / "first_process.py"
    probe.write_text(FIRST_PROCESS.format(secret=SECRET))
    argv = ["python", str(probe), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "probe", "language": "python"})
    )
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "JUPYTER_PATH": str(tmp_path / "share"),
        "K2LAB_API_KEY": SECRET,
    }
    p = subprocess.run(
        [sys.executable, "-c", SECRET_ENGINE, str(tmp_path / "ws")],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert p.returncode == 0 and "SUM 2" in p.stdout, p.stdout + p.stderr[-3000:]
    assert (tmp_path / "first-process.txt").read_text() == "BLANK"
