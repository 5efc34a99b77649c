"""A bad or missing setting stops start-up with a message naming the variable."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from pydantic import Field, SecretStr, model_validator

from dalal_shared.embedded import free_port
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


@pytest.mark.parametrize(
    "url", ["notaurl", "http://127.0.0.1:6379/0", "redis://:xx@/0", "redis://h:port/0"]
)
def test_a_redis_url_that_is_not_one_is_named(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DALAL_REDIS_URL", url)
    with pytest.raises(ConfigError) as exc:
        load_settings(DalalSettings)
    assert exc.value.message.startswith("invalid configuration: DALAL_REDIS_URL: ")


def test_the_read_only_key_is_kept_as_a_digest_and_presented_to_other_services(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DALAL_API_KEY_SHA256", hashlib.sha256(b"x" * 20).hexdigest())
    monkeypatch.setenv("DALAL_READ_API_KEY", "r" * 20)
    settings = load_settings(DalalSettings)
    assert settings.read_key_digest() == hashlib.sha256(b"r" * 20).hexdigest()
    assert settings.client_api_key() == "r" * 20  # no plain API key: the read key
    assert settings.read_key_required is True
    assert "r" * 20 not in repr(settings)


class _Paired(DalalSettings):
    session_key: SecretStr = SecretStr("dev-session-key-000000")

    @model_validator(mode="after")
    def _long_enough(self) -> _Paired:
        if len(self.session_key.get_secret_value()) < 16:
            raise ValueError("DALAL_SESSION_KEY must be at least 16 characters")
        return self


def test_a_check_across_fields_reports_its_own_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALAL_SESSION_KEY", "short")
    with pytest.raises(ConfigError) as exc:
        load_settings(_Paired)
    assert exc.value.message == (
        "invalid configuration: DALAL_SESSION_KEY must be at least 16 characters"
    )


def _unreachable_postgres() -> str:
    return f"postgresql://dalal:pw-not-shown@127.0.0.1:{free_port()}/dalal"


BAD_SETTINGS = [
    ("dalal_broker", "DALAL_REDIS_URL", "notaurl"),
    ("dalal_broker", "DALAL_DATABASE_URL", "unreachable-postgres"),
    ("dalal_broker", "DALAL_DATABASE_URL", "notaurl"),
    ("dalal_broker", "DALAL_SESSION_KEY", "short"),
    ("dalal_broker", "DALAL_MAX_BODY_BYTES", "tiny"),
    ("dalal_data", "DALAL_SESSION_KEY", "short"),
    ("dalal_data", "DALAL_READ_KEY_REQUIRED", "perhaps"),
    ("dalal_portfolio", "DALAL_DATABASE_URL", "unreachable-postgres"),
    ("dalal_portfolio", "DALAL_READ_API_KEY", "short"),
    ("dalal_engine", "DALAL_DATABASE_URL", "unreachable-postgres"),
    ("dalal_engine", "DALAL_REDIS_URL", "redis://localhost:notaport/0"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "variable", "value"), BAD_SETTINGS)
def test_a_bad_setting_stops_the_service_with_one_line_naming_it(
    module: str, variable: str, value: str, tmp_path
) -> None:
    if value == "unreachable-postgres":
        value = _unreachable_postgres()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DALAL_PORT": str(free_port()),
        "DALAL_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DALAL_LOG_FORMAT": "json",
        "DALAL_CACHE_DIR": str(tmp_path / "cache"),
        "DALAL_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        variable: value,
    }
    proc = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    naming = [line for line in proc.stderr.splitlines() if variable in line]
    assert len(naming) == 1, proc.stderr[-2000:]
    assert naming[0].startswith(f"dalal-{module.removeprefix('dalal_')}: ")
    assert "pw-not-shown" not in proc.stderr


class _Linked(DalalSettings):
    broker_url: str = "http://127.0.0.1:8001"
    data_url: str | None = None


@pytest.mark.parametrize(
    "value", ["not-valid-\x01", "http://broker:80 01", "broker:8001", "http://h:x/"]
)
def test_every_url_setting_must_be_a_url(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DALAL_BROKER_URL", value)
    with pytest.raises(ConfigError) as exc:
        load_settings(_Linked)
    assert exc.value.message.startswith("invalid configuration: DALAL_BROKER_URL: ")
    assert "\x01" not in exc.value.message


def test_a_good_url_setting_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALAL_DATA_URL", "http://data:8002")
    assert load_settings(_Linked).data_url == "http://data:8002"
