"""A bad or missing setting stops start-up with a message naming the variable."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from pydantic import Field, SecretStr

from dalal_shared.errors import ConfigError
from dalal_shared.settings import DalalSettings, load_settings


class _Needy(DalalSettings):
    kite_api_secret: SecretStr = Field(description="required secret")
    max_order_value_rupees: int = 100_000


def test_missing_required_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DALAL_KITE_API_SECRET", raising=False)
    with pytest.raises(ConfigError) as exc:
        load_settings(_Needy)
    assert "DALAL_KITE_API_SECRET" in exc.value.message


def test_bad_value_is_named_and_the_secret_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALAL_KITE_API_SECRET", "s3cr3t-value-xyz")
    monkeypatch.setenv("DALAL_MAX_ORDER_VALUE_RUPEES", "lots")
    monkeypatch.setenv("DALAL_API_KEY", "short")
    with pytest.raises(ConfigError) as exc:
        load_settings(_Needy)
    assert "DALAL_MAX_ORDER_VALUE_RUPEES" in exc.value.message
    assert "DALAL_API_KEY" in exc.value.message
    assert "short" not in exc.value.message
    assert "s3cr3t-value-xyz" not in exc.value.message


def test_api_key_is_kept_as_a_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALAL_API_KEY", "k" * 20)
    settings = load_settings(DalalSettings)
    assert settings.api_key_digest() == hashlib.sha256(b"k" * 20).hexdigest()
    assert "k" * 20 not in repr(settings)


def test_bad_digest_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALAL_API_KEY_SHA256", "abc")
    with pytest.raises(ConfigError, match="DALAL_API_KEY_SHA256"):
        load_settings(DalalSettings)


@pytest.mark.parametrize("module", ["dalal_broker", "dalal_engine"])
def test_service_refuses_to_start_naming_the_variable(module: str) -> None:
    env = {"DALAL_PORT": "not-a-port", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "DALAL_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr
