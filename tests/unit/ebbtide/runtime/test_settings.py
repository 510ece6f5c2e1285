"""Settings from EBBTIDE_* variables: types, paths and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebbtide.runtime.settings import Settings, SettingsError
from ebbtide.streams.policy.stores import DEFAULT_STORES


def test_a_store_map_path_is_a_path(tmp_path: Path) -> None:
    settings = Settings.from_env({"EBBTIDE_STORE_MAP": str(DEFAULT_STORES)})
    assert settings.store_map == DEFAULT_STORES  # read by bootstrap.store_map (tests/unit/ebbtide)


def test_a_missing_store_map_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="EBBTIDE_STORE_MAP: no such file"):
        Settings.from_env({"EBBTIDE_STORE_MAP": str(tmp_path / "nope.toml")})


def test_the_signing_key_defaults_to_the_state_directory(tmp_path: Path) -> None:
    settings = Settings.from_env({"EBBTIDE_STATE_DIR": str(tmp_path)})
    assert settings.signing_key == tmp_path / "keys" / "certificate-signing.key"
    given = Settings.from_env({"EBBTIDE_CERTIFICATE_KEY": str(tmp_path / "k.pem")})
    assert given.signing_key == tmp_path / "k.pem"


def test_the_schema_registry_url_is_not_in_the_settings_repr() -> None:
    url = "https://svc:s3cret@registry.example:8081/apis/ccompat/v7"
    settings = Settings.from_env({"EBBTIDE_SCHEMA_REGISTRY_URL": url})
    assert settings.schema_registry_url == url
    assert "s3cret" not in repr(settings)
