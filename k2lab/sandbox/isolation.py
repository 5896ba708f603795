"""How a sandbox kernel is isolated: detecting bubblewrap, building its argv, limits, clean env.

Used by the launcher (``k2lab.sandbox.launch``, which runs in the kernel's process just before it
execs) and by ``SandboxKernel`` (which passes the chosen settings to the launcher through
``K2LAB_SANDBOX_*`` variables). Stdlib only: the launcher must start fast.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path

from k2lab.sandbox.base import Limits

LEVELS = ("auto", "bwrap", "process")
ENV_PREFIX = "K2LAB_SANDBOX_"

#: One line per level for the faces (widget, panel, CLI, run.start) to show.
ISOLATION_NOTES = {
    "bwrap": (
        "bwrap isolation: own PID/network/user namespaces, read-only system, your home and "
        "project files hidden, only the workspace writable, resource limits; it shares the "
        "kernel of this machine (no VM), so a kernel exploit could escape"
    ),
    "bwrap+net": (
        "bwrap isolation with network ON: own PID/user namespaces, read-only system, your home "
        "hidden, only the workspace writable; the code CAN reach the network"
    ),
    "process": (
        "process isolation: resource limits and a clean environment only; the code can read "
        "your files and reach the network"
    ),
    "remote": (
        "remote kernel (Jupyter gateway): isolation is whatever the remote kernel provides; "
        "limits and a clean environment are applied if it runs k2lab's launcher"
    ),
}


@dataclass
class SandboxConfig:
    """What the launcher needs to know; travels as ``K2LAB_SANDBOX_*`` environment variables."""

    level: str = "auto"
    network: bool = False
    workspace: str = ""
    #: Name of the pids cgroup to join ("" = none); chosen by the parent so it can clean up.
    cgroup: str = ""
    limits: Limits = field(default_factory=Limits)

    def to_env(self) -> dict[str, str]:
        env = {
            ENV_PREFIX + "LEVEL": self.level,
            ENV_PREFIX + "NETWORK": "1" if self.network else "0",
            ENV_PREFIX + "WORKSPACE": self.workspace,
            ENV_PREFIX + "CGROUP": self.cgroup,
        }
        for k, v in asdict(self.limits).items():
            env[ENV_PREFIX + "LIMIT_" + k.upper()] = str(v)
        return env

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str]) -> SandboxConfig:
        limits = Limits()
        for f in fields(Limits):
            raw = env.get(ENV_PREFIX + "LIMIT_" + f.name.upper())
            if raw:
                setattr(limits, f.name, type(getattr(limits, f.name))(raw))
        return cls(
            level=env.get(ENV_PREFIX + "LEVEL", "auto") or "auto",
            network=env.get(ENV_PREFIX + "NETWORK", "0") == "1",
            workspace=env.get(ENV_PREFIX + "WORKSPACE", ""),
            cgroup=env.get(ENV_PREFIX + "CGROUP", ""),
            limits=limits,
        )


# -- bubblewrap ------------------------------------------------------------------------------


def _python_roots() -> list[str]:
    """Directories the interpreter and its packages live in (bound read-only under bwrap)."""
    import sysconfig  # here, not at the top: the launcher imports this module on every start

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.add(str(Path(os.path.realpath(sys.executable)).parent.parent))
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
_PASSWD = f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:k2lab sandbox:{{home}}:/bin/sh\n"
_GROUP = f"sandbox:x:{SANDBOX_UID}:\n"


def bwrap_argv(
    cfg: SandboxConfig,
    command: list[str],
    *,
    data_fds: dict[str, int] | None = None,
    extra_rw: tuple[str, ...] = (),
) -> list[str]:
    """The bwrap command that runs ``command`` isolated.

    ``data_fds`` maps a path inside the sandbox to a readable fd whose content bwrap copies there
    (``--ro-bind-data``): small synthetic files such as /etc/passwd, never a host file.
    """
    bwrap = shutil.which("bwrap") or "bwrap"
    ws = cfg.workspace
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
    if cfg.network:
        argv.append("--share-net")
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    for p in _ETC + (_ETC_NET if cfg.network else ()):
        argv += ["--ro-bind-try", p, p]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    size = str(cfg.limits.tmp_size) if cfg.limits.tmp_size else None
    for tmp in ("/tmp", "/var/tmp", "/run"):
        argv += (["--size", size] if size else []) + ["--tmpfs", tmp]
    # after the tmpfs mounts: a venv that lives under /tmp (a CI checkout) must stay visible
    for root in _python_roots():
        argv += ["--ro-bind", root, root]
    # the workspace at the same path as outside, so paths (and ipc sockets) match
    argv += ["--bind", ws, ws, "--chdir", ws]
    for d in extra_rw:  # e.g. a short directory for the ipc sockets (see SandboxKernel)
        argv += ["--bind", d, d]
    for path, fd in (data_fds or {}).items():
        argv += ["--ro-bind-data", str(fd), path]
    argv += ["--clearenv"]
    argv += ["--", *command]
    return argv


def passwd_files(home: str) -> dict[str, str]:
    return {"/etc/passwd": _PASSWD.format(home=home), "/etc/group": _GROUP}


@lru_cache(maxsize=1)
def bwrap_status() -> tuple[bool, str]:
    """Whether bubblewrap actually works here (tried, not guessed), and why not."""
    import subprocess

    bwrap = shutil.which("bwrap")
    if not bwrap:
        return False, "bubblewrap (bwrap) is not installed"
    cfg = SandboxConfig(level="bwrap", workspace="/tmp")
    cfg.limits.tmp_size = 0
    argv = bwrap_argv(cfg, ["/bin/true"] if os.path.exists("/bin/true") else ["true"])
    try:
        p = subprocess.run(argv, capture_output=True, timeout=10, text=True)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap failed to run: {e}"
    if p.returncode != 0:
        return False, f"bwrap cannot create namespaces here: {p.stderr.strip()[:200]}"
    return True, ""


def resolve_level(requested: str) -> tuple[str, str]:
    """The level to use for ``requested`` ("auto" | "bwrap" | "process") and a reason if lower."""
    if requested not in LEVELS:
        raise ValueError(f"unknown isolation level {requested!r}; use one of {', '.join(LEVELS)}")
    if requested == "process":
        return "process", ""
    ok, why = bwrap_status()
    if ok:
        return "bwrap", ""
    if requested == "bwrap":
        raise RuntimeError(f"isolation 'bwrap' was requested but is unavailable: {why}")
    return "process", why


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


def apply_rlimits(limits: Limits, *, in_cgroup: bool = False) -> None:
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

    cap(resource.RLIMIT_AS, limits.memory)
    # the soft limit sends SIGXCPU (the kernel dies and is restarted); the hard one a second later
    if limits.cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    cap(resource.RLIMIT_FSIZE, limits.file_size)
    if not in_cgroup and limits.processes > 0 and os.getuid() != 0:
        cap(resource.RLIMIT_NPROC, user_tasks() + limits.processes)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files full of kernel memory


_KEEP_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


def kernel_env(cfg: SandboxConfig, level: str, *, home: str, tmp: str) -> dict[str, str]:
    """The complete environment of the sandboxed kernel: nothing inherited but locale and TZ."""
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    bindir = os.path.dirname(sys.executable)
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
        PYTHONDONTWRITEBYTECODE="1",
        # RLIMIT_AS counts reserved address space: glibc's per-thread 64 MB malloc arenas would
        # spend a small memory limit on nothing
        MALLOC_ARENA_MAX="2",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        K2LAB_ISOLATION=level,
        K2LAB_NETWORK="1" if cfg.network or level == "process" else "0",
    )
    return env


def scrubbed_launch_env(cfg: SandboxConfig) -> dict[str, str]:
    """What the parent passes to the launcher: the sandbox settings and a bare minimum, no secret.

    jupyter_client would otherwise copy the whole parent environment (API keys included) into the
    kernel process, where ``/proc/self/environ`` keeps it even after the launcher drops it.
    """
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    env.update(cfg.to_env())
    return env
