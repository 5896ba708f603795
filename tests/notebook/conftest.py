"""The kernel the notebook face's end-to-end tests drive: one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.notebook.kernel import Kernel, fake_key_kernel


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with fake_key_kernel() as k:
        yield k
