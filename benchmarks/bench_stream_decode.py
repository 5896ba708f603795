"""CPU time to decode one 40 MB SSE line vs the same bytes in short lines (issue 8, item 9).

    .venv/bin/python benchmarks/bench_stream_decode.py [--mb 40] [--read 65536]

The body arrives in reads of ``--read`` bytes (what httpx hands the provider). Three pipelines:
``old`` is the decoder before the fix (``buffer + read``, then split: it rescans the whole
buffer per read, quadratic in a line's length); ``new`` is ``k2lab.providers.stream_state.
SSEDecoder`` (linear); ``new+state`` also parses each payload with ``StreamState`` (JSON, deltas),
i.e. the provider's whole per-byte work. The line cap is raised for the 40 MB case (by default
such a line is refused at 8 MB, which is the point of the cap).

``--cli`` also times ``k2lab run`` as a subprocess (CPU of the child, as the red team measured it)
against the fake server sending the same 40 MB of reasoning as one SSE line, then in short lines.
With the default caps both are refused (line cap 8 MB, step cap 4 Mi characters) with exit 1.
Run it with ``PYTHONPATH=<an old checkout>`` to time an older k2lab the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from k2lab.providers.stream_state import SSEDecoder, StreamState


class OldSSEDecoder:
    """The decoder as it was before the fix (k2lab 7db9fd7), kept here for comparison."""

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        lines = (self._buf + chunk).split(b"\n") if self._buf else chunk.split(b"\n")
        self._buf = lines.pop()
        out: list[str] = []
        for line in lines:
            self._line(line, out)
        return out

    def finish(self) -> list[str]:
        out: list[str] = []
        if self._buf:
            self._line(self._buf, out)
            self._buf = b""
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[str]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if self._data:
                out.append("\n".join(self._data))
                self._data = []
        elif line.startswith(b"data:"):
            value = line[6:] if line.startswith(b"data: ") else line[5:]
            self._data.append(value.decode("utf-8", errors="replace"))


def event(text: str) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"reasoning_content": text}}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def bodies(mb: float) -> dict[str, bytes]:
    n = int(mb * 1024 * 1024)
    one = event("x" * n)
    short = b"".join(event("x" * 1000) for _ in range(n // 1000))
    return {"one line": one, "short lines": short}


def run(make: Callable[[], object], body: bytes, read: int, parse: bool) -> float:
    dec = make()
    state = StreamState(1, max_chars=1 << 40) if parse else None
    t0 = time.process_time()
    for i in range(0, len(body), read):
        for data in dec.feed(body[i : i + read]):  # type: ignore[attr-defined]
            if state is not None:
                state.feed_data(data)
    dec.finish()  # type: ignore[attr-defined]
    return time.process_time() - t0


def cli(mb: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fixtures.fake_server import FakeModel, Turn

    n = int(mb * 1024 * 1024)
    k2lab = Path(sys.executable).parent / "k2lab"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    fake = FakeModel()
    print(f"k2lab run, {mb:g} MB of reasoning; CPU seconds of the CLI process, exit code")
    try:
        for name, chunk in (("one line", n), ("short lines", 1000)):
            fake.script([Turn(reasoning="x" * n, chunk=chunk)] * 4)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run(
                [str(k2lab), "run", "--base-url", fake.base_url, "--isolation", "process", "hi"],
                capture_output=True,
                text=True,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=900,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            print(f"{name:<12} {cpu:7.2f} s  exit {r.returncode}  {r.stderr.strip()[:150]}")
    finally:
        fake.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=float, default=40.0, help="megabytes of reasoning (default 40)")
    ap.add_argument("--read", type=int, default=65536, help="bytes per network read")
    ap.add_argument("--skip-old", action="store_true", help="do not time the old decoder")
    ap.add_argument("--cli", action="store_true", help="also time `k2lab run` as a subprocess")
    args = ap.parse_args()
    big = 1 << 40
    pipelines: list[tuple[str, Callable[[], object], bool]] = [
        ("new", lambda: SSEDecoder(max_line=big), False),
        ("new+state", lambda: SSEDecoder(max_line=big), True),
    ]
    if not args.skip_old:
        pipelines.insert(0, ("old", OldSSEDecoder, False))
    print(f"{args.mb:g} MB of reasoning, reads of {args.read} bytes; CPU seconds")
    print(f"{'pipeline':<10} {'one line':>10} {'short lines':>12}")
    for name, make, parse in pipelines:
        times = [run(make, body, args.read, parse) for body in bodies(args.mb).values()]
        print(f"{name:<10} {times[0]:>10.2f} {times[1]:>12.2f}")
    if args.cli:
        cli(args.mb)


if __name__ == "__main__":
    main()
