"""Server start-up and memory with a big panel session on disk (issue 8, item 9).

    .venv/bin/python benchmarks/bench_server_sessions.py [--mb 300] [--sessions 20]

Writes a sessions directory holding one session with ``--mb`` MB of reasoning (as the red team's:
the reasoning arrives as 1 KB ``reasoning.delta`` events, then the step's ``step.end`` carries it
all again, so the file is about twice ``--mb``) and ``--sessions`` small ones, then measures in a
fresh process each:

- ``list``: ``SessionManager.load()`` (what a server start does) and the RSS after it;
- ``open``: then opening the big session's events (what ``GET sessions/{id}`` does first);
- ``eager``: reading every file whole, as ``load()`` did before (``store.read_session``);
- ``get``: what ``GET sessions/{id}`` does for the big one (open, then the body in a thread), with
  the longest event-loop stall a 10 ms ticker sees meanwhile.

Run it with ``PYTHONPATH=<an old checkout>`` and ``--only eager`` to compare an older k2lab.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

mode, directory = sys.argv[1], Path(sys.argv[2])
base = rss_mb()
t0 = time.perf_counter()
if mode == "eager":
    from k2lab.server.store import read_session
    kept = [read_session(p) for p in sorted(directory.glob("*.jsonl"))]
    out = {"seconds": time.perf_counter() - t0}
else:
    from k2lab.server.sessions import SessionManager
    m = SessionManager(directory, factory=None, config=None)
    n = m.load()
    out = {"sessions": n, "list_seconds": time.perf_counter() - t0, "rss_after_list_mb": rss_mb()}
    if mode == "open":
        big = max(m.sessions.values(), key=lambda s: s.meta()["n_events"])
        t1 = time.perf_counter()
        events = big.log
        out["open_seconds"] = time.perf_counter() - t1
        out["events"] = len(events)
        out["cached_events"] = len(events._cache)
if mode == "get":
    import asyncio
    from k2lab.server.sessions import SessionManager
    from k2lab.server.store import dumps_text
    m = SessionManager(directory, factory=None, config=None)
    m.load()
    big = max(m.sessions.values(), key=lambda s: s.meta()["n_events"])

    async def main():
        lags = []
        stop = False

        async def ticker():
            while not stop:
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - t - 0.01)

        tick = asyncio.ensure_future(ticker())
        t1 = time.perf_counter()
        events = await big.opened()  # what the GET handler does, then its body in a thread
        body = await asyncio.to_thread(lambda: dumps_text({"events": events.slice(0)}))
        took = time.perf_counter() - t1
        stop = True
        await tick
        return took, max(lags), len(body)

    took, lag, n = asyncio.run(main())
    out = {"get_seconds": took, "max_loop_lag_seconds": lag, "body_mb": n / 1e6}
out["rss_base_mb"] = base
out["rss_mb"] = rss_mb()
print(json.dumps(out))
"""


def write_big(path: Path, sid: str, mb: int) -> None:
    header = {"k2lab_trace": 1, "k2lab_session": 1, "created": "", "run_id": None,
              "model_label": "", "session_id": sid, "title": "big", "settings": {}}  # fmt: skip
    piece = "x" * 1000
    n = mb * 1000
    with open(path, "w") as f:
        f.write(json.dumps(header) + "\n")
        f.write(json.dumps({"seq": 0, "ts": 1.0, "type": "run.start", "run_id": "r",
                            "prompt": "think"}) + "\n")  # fmt: skip
        f.write(json.dumps({"seq": 1, "ts": 1.0, "type": "step.start", "step": 1}) + "\n")
        line = json.dumps({"seq": 2, "ts": 1.0, "type": "reasoning.delta", "step": 1,
                           "text": piece}) + "\n"  # fmt: skip
        for _ in range(n):
            f.write(line)
        f.write('{"seq":3,"ts":2.0,"type":"step.end","step":1,"content":"","reasoning":"')
        for _ in range(n):
            f.write(piece)
        f.write('","tool_calls":[]}\n')
        f.write(json.dumps({"seq": 4, "ts": 3.0, "type": "run.end", "stop_reason": "error",
                            "answer": "", "steps": 1, "tool_calls": 0}) + "\n")  # fmt: skip


def write_small(path: Path, sid: str) -> None:
    header = {"k2lab_trace": 1, "k2lab_session": 1, "created": "", "run_id": None,
              "model_label": "", "session_id": sid, "title": "", "settings": {}}  # fmt: skip
    evs = [{"seq": 0, "ts": 1.0, "type": "run.start", "run_id": "r", "prompt": "hi"},
           {"seq": 1, "ts": 2.0, "type": "run.end", "stop_reason": "completed", "answer": "ok",
            "steps": 1, "tool_calls": 0}]  # fmt: skip
    path.write_text("\n".join(json.dumps(e) for e in [header, *evs]) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--only", choices=("list", "open", "eager", "get"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_big(d / "000000000000.jsonl", "000000000000", args.mb)
        for i in range(args.sessions):
            write_small(d / f"{i + 1:012d}.jsonl", f"{i + 1:012d}")
        size = sum(p.stat().st_size for p in d.glob("*.jsonl")) / 1e6
        print(f"{args.sessions + 1} sessions, {size:.0f} MB on disk")
        for mode in [args.only] if args.only else ["list", "open", "get", "eager"]:
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", CHILD, mode, str(d)], capture_output=True,
                               text=True, check=False)  # fmt: skip
            wall = time.perf_counter() - t
            if r.returncode:
                print(f"{mode}: failed\n{r.stderr[-2000:]}")
                continue
            out = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{mode:6s} wall {wall:6.2f} s  {json.dumps(out)}")
            if mode == "list":  # the second start lists from the summary files
                t = time.perf_counter()
                r = subprocess.run([sys.executable, "-c", CHILD, mode, str(d)],
                                   capture_output=True, text=True, check=False)  # fmt: skip
                print(f"list2  wall {time.perf_counter() - t:6.2f} s  {r.stdout.strip()}")


if __name__ == "__main__":
    main()
