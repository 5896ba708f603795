"""Fixtures shared by every test area. Keep this file small: fixtures only.

``fake_model``: a fake OpenAI-compatible K2 server over real HTTP (see
``tests/fixtures/fake_server.py`` for the ``Turn`` / ``Call`` script API).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.fake_server import FakeModel


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    """A scripted fake model: ``fake_model.script([...])``, ``.base_url``, ``.requests``."""
    server = FakeModel()
    try:
        yield server
    finally:
        server.close()
