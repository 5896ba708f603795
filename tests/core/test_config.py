"""Settings resolution: layers, sources, and the key never in the public view."""

import json

import pytest

from k2lab.config import K2Lab, resolve_settings


def test_defaults_use_demo_model_without_key() -> None:
    s = resolve_settings(environ={})
    assert s.uses_demo_model
    assert s.model == "kimi-k2-thinking"
    assert s.temperature == 1.0 and s.max_tokens > 0


def test_key_order_and_never_public() -> None:
    env = {"K2LAB_API_KEY": "sk-k2lab-secret", "MOONSHOT_API_KEY": "sk-moon"}
    s = resolve_settings(environ=env)
    assert s.api_key == "sk-k2lab-secret"
    assert s.sources["api_key"] == "$K2LAB_API_KEY"
    assert "sk-k2lab-secret" not in json.dumps(s.public())
    assert s.public()["api_key_set"] is True
    assert resolve_settings(environ={"MOONSHOT_API_KEY": "m"}).api_key == "m"


def test_layers_and_sources() -> None:
    cfg = K2Lab()
    cfg.model = "from-config"
    cfg.max_steps = 7
    s = resolve_settings({"max_steps": 9}, config=cfg, environ={"K2LAB_APPROVE": "auto"})
    assert (s.model, s.sources["model"]) == ("from-config", "jupyter config")
    assert (s.max_steps, s.sources["max_steps"]) == (9, "option")
    assert (s.approve, s.sources["approve"]) == ("auto", "environment")


def test_presets() -> None:
    s = resolve_settings({"preset": "openrouter"}, environ={"OPENROUTER_API_KEY": "or"})
    assert s.base_url == "https://openrouter.ai/api/v1"
    assert s.model == "moonshotai/kimi-k2-thinking"
    assert s.api_key == "or"
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_settings({"preset": "nope"}, environ={})


def test_bad_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="approval policy"):
        resolve_settings({"approve": "maybe"}, environ={})


def test_moonshot_key_is_not_sent_to_another_provider() -> None:
    env = {"MOONSHOT_API_KEY": "moon", "OPENROUTER_API_KEY": "or"}
    assert resolve_settings({"preset": "openrouter"}, environ=env).api_key == "or"
    only_moon = resolve_settings({"preset": "openrouter"}, environ={"MOONSHOT_API_KEY": "moon"})
    assert only_moon.api_key == ""
    local = resolve_settings({"base_url": "http://gpu:8000/v1"}, environ={"MOONSHOT_API_KEY": "m"})
    assert local.api_key == ""
    assert resolve_settings(environ={"MOONSHOT_API_KEY": "m"}).api_key == "m"


# -- the key rule: a key goes only to the endpoint it belongs to (issue 8, item 7) ------------
OTHER = "http://127.0.0.1:9999/v1"


def test_the_configured_key_is_not_sent_to_an_endpoint_an_option_names() -> None:
    env = {"K2LAB_API_KEY": "sk-configured"}
    s = resolve_settings({"base_url": OTHER}, environ=env)
    assert s.api_key == "" and s.sources["api_key"].startswith("withheld")
    assert "sk-configured" not in s.sources["api_key"]
    # the same endpoint named explicitly (trailing slash, case) still gets it
    same = resolve_settings({"base_url": "HTTPS://api.moonshot.ai/v1/"}, environ=env)
    assert same.api_key == "sk-configured"
    # the configuration's own endpoint (K2LAB_BASE_URL) gets it, from an option too
    env_url = {**env, "K2LAB_BASE_URL": OTHER}
    assert resolve_settings(environ=env_url).api_key == "sk-configured"
    assert resolve_settings({"base_url": OTHER}, environ=env_url).api_key == "sk-configured"
    # Jupyter config's key follows the same rule
    cfg = K2Lab()
    cfg.api_key = "sk-from-config"
    assert resolve_settings({"base_url": OTHER}, config=cfg, environ={}).api_key == ""
    assert resolve_settings(None, config=cfg, environ={}).api_key == "sk-from-config"


def test_a_preset_server_key_stays_with_its_provider() -> None:
    env = {"K2LAB_PRESET": "openrouter", "OPENROUTER_API_KEY": "sk-or", "K2LAB_API_KEY": "sk-k"}
    assert resolve_settings(environ=env).api_key == "sk-k"
    s = resolve_settings({"base_url": OTHER}, environ=env)
    assert s.api_key == "" and s.base_url == OTHER
    only_or = {"K2LAB_PRESET": "openrouter", "OPENROUTER_API_KEY": "sk-or"}
    assert resolve_settings({"base_url": OTHER}, environ=only_or).api_key == ""
    # a provider's own variable goes to that provider whoever names it
    named = resolve_settings({"preset": "openrouter"}, environ={"OPENROUTER_API_KEY": "sk-or"})
    assert named.api_key == "sk-or"
    moon = resolve_settings({"preset": "moonshot-cn"}, environ={"MOONSHOT_API_KEY": "sk-m"})
    assert moon.api_key == "sk-m"


def test_an_administrator_can_allow_another_endpoint() -> None:
    cfg = K2Lab()
    cfg.allowed_key_endpoints = [OTHER + "/"]
    env = {"K2LAB_API_KEY": "sk-configured"}
    assert resolve_settings({"base_url": OTHER}, config=cfg, environ=env).api_key == "sk-configured"
    assert (
        resolve_settings({"base_url": "http://127.0.0.1:9998/v1"}, config=cfg, environ=env).api_key
        == ""
    )
    env2 = {**env, "K2LAB_ALLOWED_KEY_ENDPOINTS": f"http://x:1/v1, {OTHER}"}
    assert resolve_settings({"base_url": OTHER}, environ=env2).api_key == "sk-configured"
