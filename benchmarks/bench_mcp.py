"""MCP tool servers: start-up time of one and of four stdio servers, and the cost of one call.

Run: ``.venv/bin/python benchmarks/bench_mcp.py [--calls 50]`` (about ten seconds).

Setup. The test server ``tests/fixtures/mcp_servers/tools_server.py`` (the SDK's ``MCPServer``)
over stdio, started by ``MCPToolSet`` as a run would start it. Method. Wall time of entering the
set (spawn, handshake, ``tools/list``) for one server and for four configured together (they start
concurrently, so four should cost about one, on an idle machine), then the median wall time of
``--calls`` sequential calls of ``add`` through ``ToolRegistry.check`` (the ``jsonschema`` check)
and ``ToolRegistry.call``, and of the check alone. Machine load changes these numbers; compare
runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from k2lab.tools.mcp import MCPToolSet  # noqa: E402
from k2lab.tools.mcp_config import parse_mcp_config  # noqa: E402
from k2lab.tools.registry import ToolRegistry  # noqa: E402

SERVER = (
    Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mcp_servers" / "tools_server.py"
)


def spec() -> dict[str, object]:
    return {"command": sys.executable, "args": [str(SERVER), "stdio"]}


async def main(calls: int) -> None:
    for n in (1, 4):
        cfg = parse_mcp_config({"mcpServers": {f"s{i}": spec() for i in range(n)}})
        t0 = time.perf_counter()
        async with MCPToolSet(cfg, timeout=30) as ts:
            started = time.perf_counter() - t0
            assert len({t.server.name for t in ts.tools}) == n
            reg = ToolRegistry(list(ts.tools))
            call_ms, check_us = [], []
            for i in range(calls):
                t1 = time.perf_counter()
                checked = reg.check("mcp__s0__add", f'{{"a": {i}, "b": 1}}')
                t2 = time.perf_counter()
                assert not isinstance(checked, str)
                out = await reg.call(*checked)
                t3 = time.perf_counter()
                assert out.output == str(i + 1)
                check_us.append((t2 - t1) * 1e6)
                call_ms.append((t3 - t1) * 1e3)
        print(
            f"{n} server(s): start {started:.2f} s; "
            f"call median {statistics.median(call_ms):.2f} ms "
            f"(argument check {statistics.median(check_us):.0f} us) over {calls} calls"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=50)
    asyncio.run(main(ap.parse_args().calls))
