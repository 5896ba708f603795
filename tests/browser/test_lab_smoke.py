"""The harness itself: JupyterLab starts and its UI loads in Chromium."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser


def test_lab_loads(jupyterlab: Any, page: Any) -> None:
    page.goto(jupyterlab.lab_url())
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    assert jupyterlab.api("api/status")["started"]
