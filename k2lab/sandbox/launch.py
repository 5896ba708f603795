"""The sandbox kernel's launcher: ``python -m k2lab.sandbox.launch -f {connection_file}``.

Runs as the kernel process that jupyter_client (or a Jupyter server) starts. It ties its life to
the engine's (``PR_SET_PDEATHSIG``), reads the ``K2LAB_SANDBOX_*`` settings, joins a pids cgroup
where possible, sets rlimits, and execs into ipykernel, wrapped in bubblewrap at the "bwrap" level.
Nothing of the environment it was started with reaches the kernel: the kernel gets a freshly
built one.

It runs on the host, so nothing a sandbox can write may steer it: the mounts and the network come
from the parent's settings (``K2LAB_SANDBOX_*``), never from the connection file, which must name
the parent's socket directory or the start is refused (see ``_ipc_dir``).

It runs on every kernel start, so it imports only the stdlib-lean ``confine`` and ``cgroup``
(``k2lab.sandbox.isolation`` only in the rare case where the level is not decided yet).
"""

from __future__ import annotations

import os
import sys

from k2lab.sandbox import cgroup, confine

#: ``typing`` is ~11 ms of import on every start, for one annotation: mypy reads this name as
#: ``typing.TYPE_CHECKING``
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

#: No sqlite history (nobody reads it, and its writer thread spends address space and disk).
_KERNEL_OPTS = ["--HistoryManager.enabled=False"]
#: The parent's private kernel directory (``SandboxKernel``): the connection file, the log, and
#: ``ipc/``, the only part a bwrap sandbox sees (bound read-write: its kernel binds its sockets
#: there). Set only by k2lab's own kernel manager.
RUNTIME_ENV = confine.ENV_PREFIX + "RUNTIME"

#: What the kernel runs: ``python -m ipykernel_launcher`` minus debugpy. ipykernel imports debugpy
#: at start whenever it is installed (~0.1 s of CPU, a fifth of the kernel's start) although the
#: sandbox kernelspec declares no debugger; a ``None`` in ``sys.modules`` makes that import fail
#: the way a missing debugpy does, and is removed at once so sandbox code can still import it.
#: It also watches the lifeline pipe (see ``managers.LocalHandle._lifeline``): EOF means the
#: engine is gone, and the kernel exits (at the bwrap level, taking its PID namespace along).
#: Nothing the sandbox wrote runs at start: ipykernel starts in a directory the sandbox cannot
#: have written to (``K2LAB_STARTDIR``) with no ``''`` on ``sys.path`` (``-s``: no user site
#: either, which would be the workspace's ``.local``), and only once it is initialised does the
#: kernel move into the workspace (``K2LAB_WORKDIR``), where IPython's ``''`` (after the
#: standard library on ``sys.path``) lets the model's own ``import helper`` work.
#: (Inline code, not a k2lab module: under bwrap the k2lab sources are not visible.)
_BOOT = """\
# k2lab sandbox kernel: ipykernel without debugpy (k2lab/sandbox/launch.py)
import gc
gc.disable()  # no collections (~100) while ~450 modules load: a tenth of the start's CPU
import sys
if sys.path and sys.path[0] == "":
    del sys.path[0]  # first of all: nothing is imported from the start directory
import os
os.chdir(os.environ.pop("K2LAB_STARTDIR", "/"))
_ws = os.environ.pop("K2LAB_WORKDIR", "")
import threading
def _lifeline(fd):
    try:
        while os.read(fd, 64):
            pass
    finally:  # EOF: the engine that started this kernel is gone (or the fd was taken away)
        os._exit(1)
_fd = os.environ.pop("K2LAB_LIFELINE", "")
if _fd.isdigit():
    threading.Thread(target=_lifeline, args=(int(_fd),), name="k2lab-lifeline", daemon=True).start()
sys.modules["debugpy"] = None
import ipykernel.debugger
del sys.modules["debugpy"]
from ipykernel import kernelapp
_app = kernelapp.IPKernelApp.instance()
_app.initialize()
if _ws:  # only now the workspace: the cwd, and importable through IPython's '' on sys.path
    os.chdir(_ws)
    if _app.shell is not None:
        _app.shell.user_ns["_dh"] = [_ws]
gc.freeze()  # what the start built lives as long as the kernel: later collections skip it
gc.enable()
_app.start()
"""

_PR_SET_PDEATHSIG = 1
_SIGKILL = 9  # not ``signal.SIGKILL``: the signal module's import is not free


def _die(msg: str) -> NoReturn:
    print(f"k2lab sandbox launcher: {msg}", file=sys.stderr, flush=True)  # noqa: T201
    sys.exit(2)


def _data_fd(content: str) -> int:
    """A readable fd holding ``content``, inherited by bwrap for ``--ro-bind-data``."""
    r, w = os.pipe()
    os.write(w, content.encode())  # small files only: fits the pipe buffer
    os.close(w)
    os.set_inheritable(r, True)
    return r


def _data_binds(raw: str, ws: str) -> tuple[tuple[str, str], ...]:
    """The ``--data`` mounts from the parent's ``K2LAB_SANDBOX_DATA`` (a JSON list of
    [host, inner] pairs); anything malformed refuses the start (``confine.data_ok`` checks
    each pair again when the argv is built)."""
    import json

    if not raw:
        return ()
    try:
        pairs = json.loads(raw)
        out = tuple((str(h), str(i)) for h, i in pairs)
    except (ValueError, TypeError):
        _die("refused: malformed K2LAB_SANDBOX_DATA")
    for host, inner in out:
        if not confine.data_ok(host, inner, ws):
            _die(f"refused: --data {host!r} at {inner!r} (missing, a link, or in the workspace)")
    return out


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL this process (and, kept across exec, the kernel or bwrap it becomes) when the
    engine dies, even by SIGKILL.

    ``expected_parent`` is the engine's pid (``K2LAB_SANDBOX_PARENT``; 0 when unknown, e.g. a
    plain Jupyter server started the kernel). The engine may die while this interpreter is still
    starting, before the prctl: then the parent is already someone else (init or a subreaper) and
    nothing would ever kill the kernel, so it must not start at all. (Comparing with the parent
    read at our own start instead would miss a death during that time, which under load is a
    few hundred ms: the way process-level kernels were orphaned.)
    Linux ties the signal to the *thread* that forked us: an engine must start kernels from a
    thread that lives as long as they do (its event loop's), or they die with that thread.
    """
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the engine's shutdown is all there is
        return
    if expected_parent and os.getppid() != expected_parent:
        os._exit(1)


def _ipc_dir(runtime: str, conn: dict[str, object]) -> str:
    """The socket directory to bind: the parent's, named by its settings, never by the file.

    The connection file must agree with it (ipc, sockets in ``RUNTIME/ipc``), or the start is
    refused: a file that names another directory or TCP is not the one the parent wrote.
    """
    ipc_dir = os.path.join(runtime, "ipc")
    ip = conn.get("ip")
    if (
        conn.get("transport") != "ipc"
        or not isinstance(ip, str)
        or not os.path.isabs(ip)
        or os.path.dirname(os.path.normpath(ip)) != ipc_dir
    ):
        _die(
            "refused: the connection file does not match the sandbox's socket directory "
            f"{ipc_dir} (transport {conn.get('transport')!r}, ip {ip!r})"
        )
    if os.path.islink(ipc_dir) or not os.path.isdir(ipc_dir):
        _die(f"refused: the socket directory {ipc_dir} is not a plain directory")
    if os.path.realpath(ipc_dir) != ipc_dir:
        _die(f"refused: the socket directory {ipc_dir} is reached through a symlink")
    return ipc_dir


def _fresh_dir(base: str) -> str:
    """A new empty directory under ``base`` with a name nobody could have guessed (no sandbox
    can have planted anything in it)."""
    os.makedirs(base, exist_ok=True)
    while True:
        d = os.path.join(base, "start-" + os.urandom(8).hex())
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        return d


def main(argv: list[str] | None = None) -> None:
    env_in = os.environ
    parent_raw = env_in.get(confine.ENV_PREFIX + "PARENT", "")
    die_with_parent(int(parent_raw) if parent_raw.isdigit() else 0)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "-f":
        _die("usage: python -m k2lab.sandbox.launch -f CONNECTION_FILE")
    conn_file = os.path.abspath(args[1])
    level = env_in.get(confine.ENV_PREFIX + "LEVEL", "") or "auto"
    # the network comes from the parent's settings alone (and, for a kernel manager that is not
    # k2lab's, from TCP needing the host's loopback: see below), never from anything the
    # sandbox could have written
    network = env_in.get(confine.ENV_PREFIX + "NETWORK", "0") == "1"
    ws = env_in.get(confine.ENV_PREFIX + "WORKSPACE", "")
    group = env_in.get(confine.ENV_PREFIX + "CGROUP", "")
    runtime = env_in.get(RUNTIME_ENV, "")
    limits = confine.limits_from_env(env_in)
    why = ""
    if level not in ("bwrap", "process"):
        # started without k2lab's settings (e.g. a plain kernel picker): decide here. The parent
        # normally has already chosen (and checked) the level: no second bwrap probe per start
        from k2lab.sandbox.isolation import resolve_level

        try:
            level, why = resolve_level(level)
        except (ValueError, RuntimeError) as e:
            _die(str(e))
    if not ws:
        import tempfile

        ws = tempfile.mkdtemp(prefix="k2lab-ws-")  # a private one
    os.makedirs(ws, exist_ok=True)
    ws = os.path.realpath(ws)  # bound and entered as what it is, not through a link
    in_cgroup = bool(group) and cgroup.join(group, limits["processes"])

    def rlimits() -> None:
        confine.apply_rlimits(
            memory=limits["memory"],
            cpu_seconds=limits["cpu_seconds"],
            file_size=limits["file_size"],
            processes=limits["processes"],
            in_cgroup=in_cgroup,
        )

    lifeline = env_in.get(confine.ENV_PREFIX + "LIFELINE", "")

    def kernel_env(tmp: str, start: str) -> dict[str, str]:
        env = confine.kernel_env(level, network=network, home=ws, tmp=tmp)
        if lifeline.isdigit():
            env["K2LAB_LIFELINE"] = lifeline  # inherited as is, through bwrap too
        env["K2LAB_STARTDIR"], env["K2LAB_WORKDIR"] = start, ws
        return env

    # the interpreter at its real directory: a venv reached through a symlinked folder is
    # bound (``confine.python_roots``) at its real path only
    python = confine.interpreter()
    if level == "bwrap":
        import json  # here: with the re module it pulls in, ~15 ms the process level need not pay

        try:
            with open(conn_file) as f:
                conn = json.load(f)
        except (OSError, ValueError) as e:
            _die(f"cannot read the connection file {conn_file}: {e}")
        if not isinstance(conn, dict):
            _die(f"cannot read the connection file {conn_file}: not a JSON object")
        extra: tuple[str, ...] = ()
        if runtime:
            # k2lab's own kernel manager: ipc sockets in its private directory, whatever the file
            extra = (_ipc_dir(runtime, conn),)
        elif conn.get("transport", "tcp") == "ipc":
            _die(
                "refused: an ipc connection file from a kernel manager other than k2lab's "
                "(its socket directory would be shared with the sandbox); use tcp"
            )
        else:
            # another kernel manager (a kernel picker, a gateway) over TCP, its connection file
            # in its own runtime directory: TCP needs the host's loopback, so share the network
            network = True
        inner_conn = "/run/k2lab/connection.json"
        # the start directory: / of the fresh mount namespace, which no earlier sandbox saw;
        # IPython's directory is the fresh /tmp's
        env = kernel_env("/tmp", "/")
        fds = {inner_conn: _data_fd(json.dumps(conn))}
        for path, content in confine.passwd_files(ws).items():
            fds[path] = _data_fd(content)
        cmd = [python, "-s", "-c", _BOOT, "-f", inner_conn, *_KERNEL_OPTS]
        full = confine.bwrap_argv(
            cmd,
            workspace=ws,
            network=network,
            tmp_size=limits["tmp_size"],
            data_fds=fds,
            extra_rw=extra,
            ro_binds=_data_binds(env_in.get(confine.ENV_PREFIX + "DATA", ""), ws),
        )
        # --clearenv then --setenv: the kernel's environment is exactly ``env``
        tail = full.index("--clearenv") + 1
        sets: list[str] = []
        for k, v in env.items():
            sets += ["--setenv", k, v]
        full[tail:tail] = sets
        rlimits()
        # bwrap keeps this pid and the death signal; its --die-with-parent passes it on to the
        # sandbox's init, whose death ends the whole PID namespace
        os.execve(full[0], full, {"PATH": env["PATH"]})
    else:
        tmp = os.path.join(ws, ".k2lab", "tmp")
        os.makedirs(tmp, exist_ok=True)
        # a new directory per start (in the parent's private directory, which it removes):
        # the start directory, and IPython's (whose startup files and config would run)
        start = _fresh_dir(runtime or tmp)
        env = kernel_env(tmp, start)
        env["IPYTHONDIR"] = os.path.join(start, "ipython")
        if why:
            env["K2LAB_ISOLATION_REASON"] = why
        os.chdir(start)
        rlimits()
        # the connection file is ipykernel's to read (and to complain about, into the log)
        cmd = [python, "-s", "-c", _BOOT, "-f", conn_file, *_KERNEL_OPTS]
        os.execve(python, cmd, env)


if __name__ == "__main__":
    main()
