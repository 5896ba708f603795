"""The key rule on the CLI (issue 8, item 7): $K2LAB_API_KEY goes to the endpoint it is configured
for ($K2LAB_BASE_URL, else Moonshot), not to whatever ``--base-url`` names, unless that endpoint is
allowed in $K2LAB_ALLOWED_KEY_ENDPOINTS. The fake model records the Authorization header."""

from __future__ import annotations

from tests.cli.conftest import RunCli, clean_env
from tests.fixtures.fake_server import FakeModel, Turn

KEY = "sk-cli-rule-0123456789abcdef"
ARGS = ("--isolation", "process", "--approve", "auto")


def test_the_key_is_not_sent_to_a_base_url_it_was_not_configured_for(
    run_cli: RunCli, fake_model: FakeModel
) -> None:
    fake_model.script([Turn(content="Hi.")] * 3)
    r = run_cli("run", "--base-url", fake_model.base_url, *ARGS, "hello",
                env=clean_env(K2LAB_API_KEY=KEY))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert KEY not in fake_model.headers[0].get("authorization", "")
    # configured for that endpoint: sent
    r = run_cli("run", "--base-url", fake_model.base_url, *ARGS, "hello",
                env=clean_env(K2LAB_API_KEY=KEY, K2LAB_BASE_URL=fake_model.base_url))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert fake_model.headers[1]["authorization"] == f"Bearer {KEY}"
    # allowed by the user's own environment: sent
    env = clean_env(K2LAB_API_KEY=KEY, K2LAB_ALLOWED_KEY_ENDPOINTS=fake_model.base_url)
    r = run_cli("run", "--base-url", fake_model.base_url, *ARGS, "hello", env=env)
    assert r.returncode == 0, r.stderr
    assert fake_model.headers[2]["authorization"] == f"Bearer {KEY}"
