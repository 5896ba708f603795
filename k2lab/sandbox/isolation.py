"""How a sandbox kernel is isolated: detecting bubblewrap, building its argv, limits, clean env.

The parent side (``SandboxKernel``): choosing the level, passing the settings to the launcher
through ``K2LAB_SANDBOX_*`` variables. What the launcher itself applies lives in
``k2lab.sandbox.confine`` (the launcher must not import this module: dataclasses cost start time);
the wrappers here take a ``SandboxConfig``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from functools import lru_cache

from k2lab.sandbox import confine
from k2lab.sandbox.base import Limits
from k2lab.sandbox.confine import ENV_PREFIX

LEVELS = ("auto", "bwrap", "process")

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
    #: ``--data`` paths: (real host path, path inside), bound read-only under bwrap
    data: tuple[tuple[str, str], ...] = ()

    def to_env(self) -> dict[str, str]:
        import json

        env = {
            ENV_PREFIX + "DATA": json.dumps([list(m) for m in self.data]),
            ENV_PREFIX + "LEVEL": self.level,
            ENV_PREFIX + "NETWORK": "1" if self.network else "0",
            ENV_PREFIX + "WORKSPACE": self.workspace,
            ENV_PREFIX + "CGROUP": self.cgroup,
        }
        for name in confine.LIMIT_NAMES:  # only what the launcher reads
            env[ENV_PREFIX + "LIMIT_" + name.upper()] = str(getattr(self.limits, name))
        return env


# -- bubblewrap ------------------------------------------------------------------------------


def bwrap_argv(
    cfg: SandboxConfig,
    command: list[str],
    *,
    data_fds: dict[str, int] | None = None,
    extra_rw: tuple[str, ...] = (),
) -> list[str]:
    """The bwrap command that runs ``command`` isolated (see ``confine.bwrap_argv``)."""
    return confine.bwrap_argv(
        command,
        workspace=cfg.workspace,
        network=cfg.network,
        tmp_size=cfg.limits.tmp_size,
        data_fds=data_fds,
        extra_rw=extra_rw,
        ro_binds=cfg.data,
    )


def data_mounts(paths: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """``--data`` paths as (real host path, ``/data/NAME``) pairs; a missing path is a
    ``ValueError`` (said to the user before any sandbox starts). Names that repeat get ``-2``...
    """
    out: list[tuple[str, str]] = []
    used: set[str] = set()
    for raw in paths:
        host = os.path.realpath(os.path.expanduser(str(raw)))
        if not os.path.exists(host):
            raise ValueError(f"--data {raw}: no such file or folder")
        base = os.path.basename(host) or "root"
        base = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip(".") or "data"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        out.append((host, f"{confine.DATA_ROOT}/{name}"))
    return tuple(out)


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


def scrubbed_launch_env(cfg: SandboxConfig) -> dict[str, str]:
    """What the parent passes to the launcher: the sandbox settings and a bare minimum, no secret.

    jupyter_client would otherwise copy the whole parent environment (API keys included) into the
    kernel process, where ``/proc/self/environ`` keeps it even after the launcher drops it.
    """
    env = {k: os.environ[k] for k in confine.KEEP_ENV if k in os.environ}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    env.update(cfg.to_env())
    return env
