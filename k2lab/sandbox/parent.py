"""Hiding the engine's own secrets from same-user processes (the "process" isolation level).

Without namespaces, sandbox code runs as the same user as the engine and can read
``/proc/<engine pid>/environ`` and ``cmdline``: the exec-time environment (API keys included)
stays there for the life of the process, whatever ``os.environ`` says later. This module
overwrites secret values in those two memory areas of the engine process with ``*`` (Python has
already copied the environment into ``os.environ``, which keeps working), and marks the process
non-dumpable so other non-root processes of the same user cannot read its memory or environ.

Side effects on the engine process, accepted for the "process" level only: C code calling
``getenv`` for a secret variable sees stars; debuggers (gdb, py-spy) need root to attach.
"""

from __future__ import annotations

import ctypes
import os
import re

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)
_PR_SET_DUMPABLE = 4


def secret_values(extra: tuple[str, ...] = ()) -> list[str]:
    """Values of environment variables whose names look secret, plus ``extra`` (e.g. the key)."""
    vals = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8}
    vals.update(v for v in extra if v and len(v) >= 8)
    return sorted(vals, key=len, reverse=True)


def _areas() -> list[tuple[int, int]]:
    with open("/proc/self/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # man proc: fields 48-51 (arg_start, arg_end, env_start, env_end); fields[0] is field 3
    arg_start, arg_end, env_start, env_end = (int(x) for x in fields[45:49])
    return [(arg_start, arg_end), (env_start, env_end)]


def hide_parent_secrets(extra: tuple[str, ...] = ()) -> int:
    """Blank secrets in this process's /proc environ and cmdline; returns how many were found.

    Best effort: returns 0 where /proc or the memory file is unavailable (not Linux).
    """
    values = [v.encode() for v in secret_values(extra)]
    count = 0
    try:
        count = _blank(values)
    finally:
        # after the rewrite: a non-dumpable process's /proc files belong to root, itself included
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return count


def _blank(values: list[bytes]) -> int:
    count = 0
    if not values:
        return 0
    try:
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            for start, end in _areas():
                if end <= start:
                    continue
                mem.seek(start)
                block = mem.read(end - start)
                new = block
                for v in values:
                    count += new.count(v)
                    new = new.replace(v, b"*" * len(v))
                if new != block:
                    mem.seek(start)
                    mem.write(new)
    except (OSError, ValueError):
        return count
    return count
