"""The key rule on the CLI (issue 8, item 7). The command line is the key owner's own, so
$K2LAB_API_KEY goes to the endpoint it names (``--base-url``); a provider's own variable
($MOONSHOT_API_KEY, $OPENROUTER_API_KEY) goes only to that provider, whatever the command names.
(Notebook options and panel sessions are stricter: tests/core/test_config.py, tests/server.)
The fake model records the Authorization header."""

from __future__ import annotations

from tests.cli.conftest import RunCli, clean_env
from tests.fixtures.fake_server import FakeModel, Turn

KEY = "sk-cli-rule-0123456789abcdef"
ARGS = ("--isolation", "process", "--approve", "auto")


def test_the_cli_sends_its_generic_key_to_the_endpoint_it_names_and_no_provider_key(
    run_cli: RunCli, fake_model: FakeModel
) -> None:
    fake_model.script([Turn(content="Hi.")] * 3)
    # the user's own command line names the endpoint: their K2LAB_API_KEY goes there
    r = run_cli("run", "--base-url", fake_model.base_url, *ARGS, "hello",
                env=clean_env(K2LAB_API_KEY=KEY))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert fake_model.headers[0]["authorization"] == f"Bearer {KEY}"
    # a Moonshot or OpenRouter key never goes to another endpoint
    for var in ("MOONSHOT_API_KEY", "OPENROUTER_API_KEY"):
        r = run_cli("run", "--base-url", fake_model.base_url, *ARGS, "hello",
                    env=clean_env(**{var: KEY}))  # fmt: skip
        assert r.returncode == 0, r.stderr
    assert all(KEY not in h.get("authorization", "") for h in fake_model.headers[1:])
    assert len(fake_model.headers) == 3
