"""Fixtures for the sandbox tests: one real sandbox kernel per isolation level, small limits.

Every test runs on both levels; "bwrap" is skipped only where bubblewrap cannot create
namespaces on this machine (the reason is printed in the skip).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from k2lab.sandbox.base import Limits
from k2lab.sandbox.isolation import bwrap_status
from k2lab.sandbox.kernel import SandboxKernel

LEVELS = ["bwrap", "process"]
#: Seconds a faulty call may take beyond its timeout (interrupt grace + restart + slack).
MARGIN = 6.0


def small_limits() -> Limits:
    return Limits(
        memory=768 * 1024**2,
        cpu_seconds=120,
        file_size=64 * 1024**2,
        processes=64,
        workspace_size=160 * 1024**2,
        tmp_size=64 * 1024**2,
        model_chars=4000,
        display_bytes=256 * 1024,
        interrupt_grace=1.0,
        transfer_bytes=8 * 1024**2,
    )


def skip_unavailable(level: str) -> None:
    if level == "bwrap":
        ok, why = bwrap_status()
        if not ok:
            pytest.skip(f"bwrap level unavailable on this machine: {why}")


@pytest.fixture(params=LEVELS)
def level(request: pytest.FixtureRequest) -> str:
    skip_unavailable(request.param)
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=LEVELS)
async def shared(request: pytest.FixtureRequest) -> AsyncIterator[SandboxKernel]:
    """A sandbox per level shared by a module's tests (each test also checks the next call)."""
    skip_unavailable(request.param)
    sk = SandboxKernel(isolation=request.param, limits=small_limits())
    await sk.start()
    assert sk.isolation == request.param
    try:
        yield sk
    finally:
        await sk.shutdown()
