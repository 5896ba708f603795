"""Property-based test of the REST API against its own description (``k2lab/server/openapi.yaml``)
with schemathesis: a real ``jupyter server`` subprocess with the k2lab extension, cases generated
from the OpenAPI file (valid and invalid bodies, path ids that exist and that do not). Every answer
must be free of 5xx and conform to the description (status codes, content types, schemas).

Bounded: ``K2LAB_FUZZ_EXAMPLES`` cases per operation (default 100, about 1,000 cases in all), so it
takes well under 2 min (about 15 s here).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
import requests  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from k2lab.sandbox.managers import KERNEL_NAME, write_kernelspec  # noqa: E402

SPEC = Path(__file__).resolve().parents[2] / "k2lab" / "server" / "openapi.yaml"
TOKEN = "fuzz-token-0123456789"
EXAMPLES = int(os.environ.get("K2LAB_FUZZ_EXAMPLES", "100"))

schema = schemathesis.openapi.from_path(str(SPEC))
#: ids of sessions that exist on the server, so per-session routes are reached too
SEEDED: list[str] = []


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    if not isinstance(path_parameters, dict) or "id" not in path_parameters or not SEEDED:
        return st.just(path_parameters)
    ids = st.sampled_from([*SEEDED, path_parameters["id"]])
    return ids.map(lambda sid: {**path_parameters, "id": sid})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {TOKEN}"}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz")
    data = root / "data"
    write_kernelspec(data / "kernels" / KERNEL_NAME)
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("K2LAB_") and not k.endswith("_API_KEY")
    }
    env.update(
        JUPYTER_DATA_DIR=str(data),
        JUPYTER_CONFIG_DIR=str(root / "config"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        K2LAB_SESSIONS_DIR=str(root / "sessions"),
        K2LAB_ISOLATION="process",
    )
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ip=127.0.0.1",
             "--no-browser", "--allow-root", f"--IdentityProvider.token={TOKEN}",
             "--ServerApp.jpserver_extensions={'k2lab': True}", f"--ServerApp.root_dir={root}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/k2lab/api"
    server = Server(url, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/info", headers=server.headers, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        for title in ("seeded a", "seeded b", "seeded c"):
            r = requests.post(f"{url}/sessions", json={"title": title}, headers=server.headers)
            SEEDED.append(r.json()["id"])
        yield server
    finally:
        SEEDED.clear()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.mark.timeout(240)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,  # no .hypothesis directory in the tree
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_description(case: Any, fuzz_server: Server) -> None:
    case.call_and_validate(
        base_url=fuzz_server.url,
        headers=fuzz_server.headers,
        timeout=30,
        excluded_checks=_server_state_checks(case),
    )


def _server_state_checks(case: Any) -> list[Any]:
    """A new session's data paths must exist on the server: schema-valid settings the server
    rightly refuses (400 with the reason, tests/server/test_scaling.py), so "valid data is
    accepted" is not checked for them."""
    body = case.body if isinstance(case.body, dict) else {}
    settings = body.get("settings")
    if case.path == "/sessions" and isinstance(settings, dict) and settings.get("data"):
        from schemathesis.specs.openapi.checks import positive_data_acceptance

        return [positive_data_acceptance]
    return []
