"""The fork's provider: the recorded step replayed first, then the real provider, whose facts
(the demo flag, the request budget) stay the run's (a fork of a demo run said demo: false, and its
replayed step was stamped before the run began)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from k2lab.agent.fork import ForkProvider
from k2lab.events import StepEnd
from k2lab.providers.openai_compat import OpenAICompatProvider


def test_a_fork_keeps_the_inner_providers_facts_and_stamps_the_replayed_step_now() -> None:
    inner = OpenAICompatProvider(
        base_url="http://127.0.0.1:9/v1",
        api_key="",
        model="m",
        model_label="offline demo model (scripted)",
        demo=True,
        max_tokens=1234,
    )
    recorded = StepEnd(step=4, content="", reasoning="r", tool_calls=[])
    recorded.ts = 1.0  # the parent run's time
    fork = ForkProvider(inner, recorded)
    assert fork.demo is True and fork.max_tokens == 1234  # type: ignore[attr-defined]

    async def first() -> list[Any]:
        return [ev async for ev in fork.stream(None, [], step=1)]  # type: ignore[arg-type]

    before = time.time()
    (ev,) = asyncio.run(first())
    assert ev.step == 1 and ev.ts >= before
