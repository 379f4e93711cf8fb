"""SEQGUARD_* / SEQGUARD_LT_* settings through pydantic-settings (seqguard.envsettings.EnvSettings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqguard.infra.loadtest.settings import LoadSettings, LoadSettingsError
from seqguard.service.settings import ServiceSettings, SettingsError


def test_variables_become_typed_fields_and_empty_ones_are_ignored() -> None:
    s = ServiceSettings.from_env({"SEQGUARD_REPO": "/srv/repo", "SEQGUARD_MAX_BATCH": "7",
                                  "SEQGUARD_API_KEYS": " k1, k2,,", "SEQGUARD_REDIS_URL": "",
                                  "SEQGUARD_SHADOW_REPO": "",
                                  # other programs' variables under the same prefix are not ours to refuse
                                  "SEQGUARD_PORT": "8080", "SEQGUARD_LT_MODE": "triton"})
    assert (s.repo, s.max_batch, s.api_keys, s.redis_url, s.shadow_repo) == (Path("/srv/repo"), 7, ("k1", "k2"),
                                                                             None, None)
    assert ServiceSettings.from_env({"SEQGUARD_API_KEYS": ""}).api_keys == ()


def test_the_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQGUARD_MAX_BATCH", "9")
    assert ServiceSettings.from_env().max_batch == 9
    assert ServiceSettings().max_batch == 9
    assert ServiceSettings(max_batch=3).max_batch == 3  # explicit arguments win over the environment
    assert ServiceSettings.from_env({}).max_batch == 32  # a given mapping replaces the environment


def test_every_bad_variable_is_named_with_its_reason() -> None:
    with pytest.raises(SettingsError) as err:
        ServiceSettings.from_env({"SEQGUARD_MAX_BATCH": "lots", "SEQGUARD_TRITON_RETRIES": "99",
                                  "SEQGUARD_BACKEND": "gpu"})
    text = str(err.value)
    assert "SEQGUARD_MAX_BATCH: Input should be a valid integer" in text
    assert "SEQGUARD_TRITON_RETRIES: Input should be less than or equal to 10" in text
    assert "SEQGUARD_BACKEND: Input should be 'embedded', 'triton' or 'local_triton'" in text
    with pytest.raises(SettingsError, match=r"SEQGUARD_\* settings: redis_url: required when state is redis"):
        ServiceSettings.from_env({"SEQGUARD_STATE": "redis"})


def test_load_settings_travel_as_json_for_lists() -> None:
    s = LoadSettings(mode="service", steps=(2, 4, 8), api_key="k")
    env = s.to_env()
    assert env["SEQGUARD_LT_STEPS"] == "[2, 4, 8]"
    assert LoadSettings.from_env(env) == s
    for bad, reason in (("[2, x", "SEQGUARD_LT_STEPS: Input should be a valid tuple"),
                        ("[0]", "steps: positive user counts")):
        with pytest.raises(LoadSettingsError, match=reason.replace("[", r"\[")):
            LoadSettings.from_env({"SEQGUARD_LT_STEPS": bad})
