"""Small helpers for reporting faults: how a kernel ended (the workspace quota is ``quota``)."""

from __future__ import annotations

import signal


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
