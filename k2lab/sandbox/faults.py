"""Small helpers for reporting faults: how a kernel ended, how big the workspace has grown."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    sig = -code if code < 0 else code - 128 if code > 128 else 0
    if sig:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hints = {
            "SIGSEGV": "a segmentation fault",
            "SIGKILL": "killed",
            "SIGXCPU": "CPU time limit reached",
            "SIGABRT": "aborted",
            "SIGBUS": "a bus error",
        }
        return f"{name}, {hints[name]}" if name in hints else name
    return f"exit code {code}"


def dir_size(path: Path, stop_at: int) -> int:
    """Bytes under ``path`` (not following links); stops counting once past ``stop_at``."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                        elif e.is_file(follow_symlinks=False):
                            total += e.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
                    if total > stop_at:
                        return total
        except OSError:
            continue
    return total
