"""Configuration: a missing or malformed setting stops start-up with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cloudfetch import cli
from cloudfetch.config import ConfigError, load_settings
from cloudfetch.web import create_app

GOOD = {
    "CLOUDFETCH_DATABASE_URL": "postgresql://cloudfetch@db.internal/cloudfetch",
    "CLOUDFETCH_BROKER_URL": "amqp://cloudfetch:pw@mq.internal:5672/cloudfetch",
    "CLOUDFETCH_SOLR_URL": "http://solr.internal:8983/solr/files/",
    "CLOUDFETCH_TRANSMISSION_URL": "http://127.0.0.1:9091/transmission/rpc",
    "CLOUDFETCH_TRANSMISSION_USERNAME": "cloudfetch",
    "CLOUDFETCH_TRANSMISSION_PASSWORD": "rpc-secret",
    "CLOUDFETCH_STORAGE_ROOT": "/srv/cloudfetch/storage",
    "CLOUDFETCH_SECRET_KEY": "x" * 40,
}
REQUIRED = list(GOOD)


def test_complete_environment_loads_with_defaults() -> None:
    settings = load_settings(GOOD)
    # psycopg 3 is the driver the wheel ships, whatever the URL says.
    assert settings.database_url == "postgresql+psycopg://cloudfetch@db.internal/cloudfetch"
    assert settings.solr_url == "http://solr.internal:8983/solr/files"
    assert settings.incoming_dir == Path("/srv/cloudfetch/storage/.incoming")
    assert settings.release == "unreleased"
    assert settings.accel_prefix == "/_protected"
    assert settings.dev_send_file is False


@pytest.mark.parametrize("key", REQUIRED)
def test_each_missing_setting_is_named(key: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises(ConfigError, match=rf"^{key}: required setting is missing"):
        load_settings(env)


@pytest.mark.parametrize(
    ("key", "value", "complaint"),
    [
        ("CLOUDFETCH_DATABASE_URL", "mysql://db/x", "scheme postgresql"),
        ("CLOUDFETCH_BROKER_URL", "redis://localhost", "scheme amqp"),
        ("CLOUDFETCH_SOLR_URL", "solr.internal:8983", "scheme http"),
        ("CLOUDFETCH_STORAGE_ROOT", "relative/dir", "absolute path"),
        ("CLOUDFETCH_SECRET_KEY", "short", "at least 32"),
        ("CLOUDFETCH_MAX_UPLOAD_BYTES", "ten", "whole number"),
        ("CLOUDFETCH_MAX_DOWNLOAD_BYTES", "-5", "positive"),
        ("CLOUDFETCH_DEV_SEND_FILE", "maybe", "true or false"),
        ("CLOUDFETCH_ACCEL_PREFIX", "_protected/", "path like"),
        ("CLOUDFETCH_METRICS_FLUSH_SECONDS", "soon", "seconds"),
    ],
)
def test_each_malformed_setting_is_named(key: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: .*{complaint}"):
        load_settings({**GOOD, key: value})


def test_solr_user_is_optional_and_comes_in_pairs() -> None:
    assert load_settings(GOOD).solr_auth is None
    both = {**GOOD, "CLOUDFETCH_SOLR_USERNAME": "cloudfetch", "CLOUDFETCH_SOLR_PASSWORD": "pw"}
    assert load_settings(both).solr_auth == ("cloudfetch", "pw")
    for alone, missing in [
        ("CLOUDFETCH_SOLR_USERNAME", "CLOUDFETCH_SOLR_PASSWORD"),
        ("CLOUDFETCH_SOLR_PASSWORD", "CLOUDFETCH_SOLR_USERNAME"),
    ]:
        with pytest.raises(ConfigError, match=rf"^{missing}: required with the other one"):
            load_settings({**GOOD, alone: "x"})


def test_solr_credentials_in_the_url_are_refused() -> None:
    """pysolr puts the URL in its error messages, and those reach logs and /healthz."""
    url = "http://cloudfetch:secret@solr.internal:8983/solr/files"
    with pytest.raises(ConfigError, match=r"^CLOUDFETCH_SOLR_URL: put Solr's user in") as err:
        load_settings({**GOOD, "CLOUDFETCH_SOLR_URL": url})
    assert "secret" not in str(err.value)


def test_config_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "cloudfetch.env"
    lines = [f"{k}={v}" for k, v in GOOD.items() if k != "CLOUDFETCH_SECRET_KEY"]
    config.write_text(
        "# managed by Ansible\n"
        + "\n".join(lines)
        + f'\nCLOUDFETCH_SECRET_KEY="{"y" * 40}"\nCLOUDFETCH_RELEASE=from-file\n'
    )
    settings = load_settings({"CLOUDFETCH_CONFIG": str(config), "CLOUDFETCH_RELEASE": "r42"})
    assert settings.secret_key == "y" * 40  # quotes stripped
    assert settings.release == "r42"
    assert settings.transmission_password == "rpc-secret"


def test_malformed_config_file_line_is_named(tmp_path: Path) -> None:
    config = tmp_path / "cloudfetch.env"
    config.write_text("CLOUDFETCH_RELEASE=1\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"cloudfetch.env:2: expected CLOUDFETCH_NAME=value"):
        load_settings({**GOOD, "CLOUDFETCH_CONFIG": str(config)})


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^CLOUDFETCH_CONFIG: cannot read"):
        load_settings({"CLOUDFETCH_CONFIG": str(tmp_path / "absent.env")})


def test_app_does_not_start_without_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in REQUIRED:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("CLOUDFETCH_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="CLOUDFETCH_DATABASE_URL"):
        create_app()


def test_check_config_command_names_the_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in {**GOOD, "CLOUDFETCH_MAX_UPLOAD_BYTES": "lots"}.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["check-config"]) == 2
    assert "CLOUDFETCH_MAX_UPLOAD_BYTES" in capsys.readouterr().err
    monkeypatch.setenv("CLOUDFETCH_MAX_UPLOAD_BYTES", "1000")
    assert cli.main(["check-config"]) == 0
    assert "config ok" in capsys.readouterr().out
