"""What the launcher applies to a sandbox kernel: bwrap argv, rlimits, the clean environment.

Runs in the kernel's own process on every start (``k2lab.sandbox.launch``), so it imports only
``os``, ``sys`` and ``resource`` and takes plain values (no dataclasses, pathlib, shutil: together
~50 ms of every start). ``k2lab.sandbox.isolation`` wraps these for the parent side.
"""

from __future__ import annotations

import os
import resource
import sys

ENV_PREFIX = "K2LAB_SANDBOX_"
#: The limits the launcher applies (the others are the parent's business), as env names.
LIMIT_NAMES = ("memory", "cpu_seconds", "file_size", "processes", "tmp_size")


def limits_from_env(env: dict[str, str] | os._Environ[str]) -> dict[str, int]:
    """The launcher's limits from ``K2LAB_SANDBOX_LIMIT_*``; a missing one is 0 (off)."""
    out = {}
    for name in LIMIT_NAMES:
        raw = env.get(ENV_PREFIX + "LIMIT_" + name.upper(), "")
        out[name] = int(raw) if raw else 0
    return out


def which(name: str) -> str | None:
    """``shutil.which`` without importing shutil."""
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


# -- bubblewrap ------------------------------------------------------------------------------


def interpreter() -> str:
    """``sys.executable`` in its real directory (a venv reached through a symlinked folder
    becomes the venv's real path; ``bin/python`` itself stays the venv's, not its target, or the
    venv would be lost). Under bwrap only real paths are bound (``python_roots``)."""
    exe = sys.executable
    return os.path.join(os.path.realpath(os.path.dirname(exe)), os.path.basename(exe))


def python_roots() -> list[str]:
    """Directories the interpreter and its packages live in (bound read-only under bwrap)."""
    import sysconfig  # only at the bwrap level

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            roots.add(p)
    # keep only the outermost of nested paths, and never a bare / or a whole home directory
    home = os.path.realpath(os.path.expanduser("~"))
    out: list[str] = []
    for r in sorted({os.path.realpath(r) for r in roots}):
        if r in ("/", home) or any(r.startswith(o + "/") for o in out):
            continue
        out.append(r)
    return out


#: System directories every dynamically linked Python needs; bound read-only if they exist.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Single files and small directories from /etc that programs expect; none hold secrets.
_ETC = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
    "/etc/fonts",
    "/etc/mime.types",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
)
_ETC_NET = ("/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf")

SANDBOX_UID = 1000
#: Size of the sandbox's /run (it holds the kernel's connection file), at most ``tmp_size``.
RUN_SIZE = 16 * 1024**2
_PASSWD = f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:k2lab sandbox:{{home}}:/bin/sh\n"
_GROUP = f"sandbox:x:{SANDBOX_UID}:\n"


def bwrap_argv(
    command: list[str],
    *,
    workspace: str,
    network: bool,
    tmp_size: int,
    data_fds: dict[str, int] | None = None,
    extra_rw: tuple[str, ...] = (),
    ro_binds: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """The bwrap command that runs ``command`` isolated.

    ``ro_binds`` are the user's ``--data`` paths, (host path, path inside): bound read-only,
    each checked by ``data_ok`` (only the parent's settings name them, see ``launch``).

    ``data_fds`` maps a path inside the sandbox to a readable fd whose content bwrap copies there
    (``--ro-bind-data``): small synthetic files such as /etc/passwd, never a host file.
    """
    bwrap = which("bwrap") or "bwrap"
    ws = workspace
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--disable-userns",  # no nested namespaces to climb out of
        "--cap-drop",
        "ALL",
        "--die-with-parent",  # killing the kernel process kills the whole PID namespace
        "--new-session",
        "--hostname",
        "sandbox",
    ]
    if network:
        argv.append("--share-net")
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    for p in _ETC + (_ETC_NET if network else ()):
        argv += ["--ro-bind-try", p, p]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # every writable place outside the workspace is a tmpfs of a known size (RAM the sandbox may
    # fill): /tmp, /var/tmp and /dev/shm get ``tmp_size`` each, /run (a few small files) less.
    # ``--dev``'s own /dev/shm is a plain folder on its unsized /dev tmpfs, so it is replaced
    for tmp, cap in (
        ("/tmp", tmp_size),
        ("/var/tmp", tmp_size),
        ("/dev/shm", tmp_size),
        ("/run", min(tmp_size, RUN_SIZE)),
    ):
        argv += (["--size", str(cap)] if cap > 0 else []) + ["--tmpfs", tmp]
    # after the tmpfs mounts: a venv that lives under /tmp (a CI checkout) must stay visible
    for root in python_roots():
        argv += ["--ro-bind", root, root]
    # the workspace at the same path as outside, so paths (and ipc sockets) match
    argv += ["--bind", ws, ws, "--chdir", ws]
    for d in extra_rw:  # e.g. a short directory for the ipc sockets (see SandboxKernel)
        argv += ["--bind", d, d]
    for host, inner in ro_binds:
        if data_ok(host, inner, ws):
            argv += ["--ro-bind", host, inner]
    for path, fd in (data_fds or {}).items():
        argv += ["--ro-bind-data", str(fd), path]
    # last, after every mount point is made: bwrap's root and /dev are tmpfs mounts without a
    # size (half the machine's RAM); read-only, nothing can be written there
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--clearenv"]
    argv += ["--", *command]
    return argv


#: Where ``--data`` paths appear inside a bwrap sandbox (``DATA_ROOT/NAME``).
DATA_ROOT = "/data"


def data_ok(host: str, inner: str, workspace: str) -> bool:
    """Whether a ``--data`` mount may be made: an absolute real host path that exists and is not
    in (or a link into) the workspace, which the sandbox writes and could turn into a link to
    anything before the next start; an inner path one level under ``DATA_ROOT``."""
    name = inner[len(DATA_ROOT) + 1 :] if inner.startswith(DATA_ROOT + "/") else ""
    if not name or "/" in name or name in (".", "..") or "\n" in inner or "\0" in inner:
        return False
    if not os.path.isabs(host) or os.path.realpath(host) != host or not os.path.exists(host):
        return False
    ws = os.path.realpath(workspace) if workspace else ""
    return not (ws and (host == ws or host.startswith(ws + "/")))


def passwd_files(home: str) -> dict[str, str]:
    return {"/etc/passwd": _PASSWD.format(home=home), "/etc/group": _GROUP}


# -- limits and environment -----------------------------------------------------------------


def user_tasks() -> int:
    """Tasks (processes and threads) of this user: RLIMIT_NPROC counts them all, not ours only."""
    uid, total = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            total += int(fields.get("Threads", "1").strip() or 1)
    return total


def apply_rlimits(
    *, memory: int, cpu_seconds: int, file_size: int, processes: int, in_cgroup: bool = False
) -> None:
    """Set the kernel's rlimits (inherited by bwrap, the kernel and everything it starts).

    With a pids cgroup the process count is its job. Otherwise RLIMIT_NPROC caps this user's
    tasks as a whole, so the cap is the user's current count plus the sandbox's allowance (a flat
    256 would stop a kernel from starting on a busy server); root is exempt from it anyway.
    """

    def cap(which: int, value: int) -> None:
        if value <= 0:
            return
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_AS, memory)
    # the soft limit sends SIGXCPU (the kernel dies and is restarted); the hard one a second later
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    cap(resource.RLIMIT_FSIZE, file_size)
    if not in_cgroup and processes > 0 and os.getuid() != 0:
        cap(resource.RLIMIT_NPROC, user_tasks() + processes)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files full of kernel memory


KEEP_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


def kernel_env(level: str, *, network: bool, home: str, tmp: str) -> dict[str, str]:
    """The complete environment of the sandboxed kernel: nothing inherited but locale and TZ."""
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    bindir = os.path.dirname(interpreter())
    env.update(
        PATH=f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        HOME=home,
        USER="sandbox",
        LOGNAME="sandbox",
        TMPDIR=tmp,
        IPYTHONDIR=os.path.join(tmp, "ipython"),
        MPLCONFIGDIR=os.path.join(tmp, "matplotlib"),
        XDG_CACHE_HOME=os.path.join(tmp, "cache"),
        MPLBACKEND="module://matplotlib_inline.backend_inline",
        # the system and venv are read-only under bwrap anyway; sandbox code must not leave
        # .pyc files in the workspace either
        PYTHONDONTWRITEBYTECODE="1",
        # RLIMIT_AS counts reserved address space: glibc's per-thread 64 MB malloc arenas would
        # spend a small memory limit on nothing
        MALLOC_ARENA_MAX="2",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        K2LAB_ISOLATION=level,
        K2LAB_NETWORK="1" if network or level == "process" else "0",
    )
    return env
