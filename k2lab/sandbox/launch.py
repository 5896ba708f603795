"""The sandbox kernel's launcher: ``python -m k2lab.sandbox.launch -f {connection_file}``.

Runs as the kernel process that jupyter_client (or a Jupyter server) starts. It reads the
``K2LAB_SANDBOX_*`` settings, joins a pids cgroup where possible, sets rlimits, and execs into
ipykernel, wrapped in bubblewrap at the "bwrap" level. Nothing of the environment it was started
with reaches the kernel: the kernel gets a freshly built one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from k2lab.sandbox import cgroup
from k2lab.sandbox.isolation import (
    SandboxConfig,
    apply_rlimits,
    bwrap_argv,
    kernel_env,
    passwd_files,
    resolve_level,
)

#: No sqlite history (nobody reads it, and its writer thread spends address space and disk).
_KERNEL_OPTS = ["--HistoryManager.enabled=False"]


def _die(msg: str) -> None:
    print(f"k2lab sandbox launcher: {msg}", file=sys.stderr, flush=True)  # noqa: T201
    sys.exit(2)


def _data_fd(content: str) -> int:
    """A readable fd holding ``content``, inherited by bwrap for ``--ro-bind-data``."""
    r, w = os.pipe()
    os.write(w, content.encode())  # small files only: fits the pipe buffer
    os.close(w)
    os.set_inheritable(r, True)
    return r


def _die_with_parent() -> None:
    """Like bwrap's --die-with-parent: a kernel must not outlive the engine that owns it."""
    parent = os.getppid()
    try:
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the prctl
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "-f":
        _die("usage: python -m k2lab.sandbox.launch -f CONNECTION_FILE")
    conn_file = os.path.abspath(args[1])
    cfg = SandboxConfig.from_env(os.environ)
    if cfg.level in ("bwrap", "process"):
        # the parent already chose (and checked) the level: no second bwrap probe per start
        level, why = cfg.level, ""
    else:
        try:
            level, why = resolve_level(cfg.level)
        except (ValueError, RuntimeError) as e:
            _die(str(e))
    if not cfg.workspace:
        # started by a server without k2lab's settings (e.g. a plain kernel picker): a private one
        cfg.workspace = tempfile.mkdtemp(prefix="k2lab-ws-")
    os.makedirs(cfg.workspace, exist_ok=True)
    ws = cfg.workspace
    try:
        with open(conn_file) as f:
            conn = json.load(f)
    except (OSError, ValueError) as e:
        _die(f"cannot read the connection file {conn_file}: {e}")

    in_cgroup = bool(cfg.cgroup) and cgroup.join(cfg.cgroup, cfg.limits.processes)

    python = sys.executable
    if level == "bwrap":
        if conn.get("transport", "tcp") != "ipc":
            # TCP needs the host's loopback: share the network namespace rather than fail
            cfg.network = True
        inner_conn = "/run/k2lab/connection.json"
        tmp = "/tmp"
        env = kernel_env(cfg, level, home=ws, tmp=tmp)
        fds = {inner_conn: _data_fd(json.dumps(conn))}
        for path, content in passwd_files(ws).items():
            fds[path] = _data_fd(content)
        cmd = [python, "-m", "ipykernel_launcher", "-f", inner_conn, *_KERNEL_OPTS]
        extra: tuple[str, ...] = ()
        if conn.get("transport") == "ipc":
            ipc_dir = os.path.dirname(os.path.abspath(conn["ip"]))
            if not (ipc_dir + "/").startswith(ws.rstrip("/") + "/"):
                extra = (ipc_dir,)
        full = bwrap_argv(cfg, cmd, data_fds=fds, extra_rw=extra)
        # --clearenv then --setenv: the kernel's environment is exactly ``env``
        tail = full.index("--clearenv") + 1
        sets: list[str] = []
        for k, v in env.items():
            sets += ["--setenv", k, v]
        full[tail:tail] = sets
        apply_rlimits(cfg.limits, in_cgroup=in_cgroup)
        os.execve(full[0], full, {"PATH": env["PATH"]})
    else:
        tmp = os.path.join(ws, ".k2lab", "tmp")
        os.makedirs(tmp, exist_ok=True)
        env = kernel_env(cfg, level, home=ws, tmp=tmp)
        if why:
            env["K2LAB_ISOLATION_REASON"] = why
        os.chdir(ws)
        _die_with_parent()
        apply_rlimits(cfg.limits, in_cgroup=in_cgroup)
        cmd = [python, "-m", "ipykernel_launcher", "-f", conn_file, *_KERNEL_OPTS]
        os.execve(python, cmd, env)


if __name__ == "__main__":
    main()
