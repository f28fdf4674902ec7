"""Settings: only from CLOUDFETCH_* environment variables and one optional env-style file.

The file named by CLOUDFETCH_CONFIG holds `CLOUDFETCH_KEY=value` lines, the same names as the
environment, so the Ansible role can template one file that systemd also reads as an
EnvironmentFile. A variable set in the environment wins over the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PREFIX = "CLOUDFETCH_"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it and says what is expected."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    solr_url: str
    transmission_url: str
    transmission_username: str
    transmission_password: str
    storage_root: Path
    incoming_dir: Path
    secret_key: str
    release: str = "unreleased"
    accel_prefix: str = "/_protected"
    max_upload_bytes: int = 2 * 1024 * 1024
    max_download_bytes: int = 10 * 1024**3
    dev_send_file: bool = False
    allow_private_urls: bool = False
    metrics_flush_seconds: float = 10.0
    # Solr's BasicAuth user (both or neither); never in solr_url, whose text shows in errors.
    solr_username: str | None = None
    solr_password: str | None = None

    @property
    def solr_auth(self) -> tuple[str, str] | None:
        if self.solr_username and self.solr_password:
            return (self.solr_username, self.solr_password)
        return None

    def user_dir(self, user_id: int) -> Path:
        return self.storage_root / f"u{user_id}"


def read_config_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"CLOUDFETCH_CONFIG: cannot read {path}: {exc.strerror}") from exc
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.startswith(PREFIX):
            raise ConfigError(
                f"CLOUDFETCH_CONFIG: {path}:{number}: expected CLOUDFETCH_NAME=value, got {raw!r}"
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or (parts.scheme != "memory" and not parts.hostname):
        raise ConfigError(
            f"{name}: expected a URL with scheme {' or '.join(schemes)}, got {value!r}"
        )
    return value


def _int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{name}: must be positive, got {number}")
    return number


def _bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _path(name: str, value: str) -> Path:
    path = Path(value)
    if not path.is_absolute():
        raise ConfigError(f"{name}: expected an absolute path, got {value!r}")
    return path


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment (and CLOUDFETCH_CONFIG); raise ConfigError naming
    the first missing or malformed setting."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, str] = {}
    if env.get(f"{PREFIX}CONFIG"):
        values.update(read_config_file(Path(env[f"{PREFIX}CONFIG"])))
    values.update({k: v for k, v in env.items() if k.startswith(PREFIX)})

    def required(key: str) -> str:
        name = PREFIX + key
        value = values.get(name, "").strip()
        if not value:
            raise ConfigError(f"{name}: required setting is missing")
        return value

    def optional(key: str) -> str | None:
        value = values.get(PREFIX + key, "").strip()
        return value or None

    database_url = _url(
        "CLOUDFETCH_DATABASE_URL",
        required("DATABASE_URL"),
        ("postgresql", "postgresql+psycopg"),
    )
    # SQLAlchemy's bare postgresql:// means psycopg2; this app ships psycopg 3.
    database_url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    secret_key = required("SECRET_KEY")
    if len(secret_key) < 32:
        raise ConfigError("CLOUDFETCH_SECRET_KEY: must be at least 32 characters")
    storage_root = _path("CLOUDFETCH_STORAGE_ROOT", required("STORAGE_ROOT"))
    incoming = optional("INCOMING_DIR")
    accel_prefix = optional("ACCEL_PREFIX") or "/_protected"
    if not accel_prefix.startswith("/") or accel_prefix.endswith("/"):
        raise ConfigError(
            f"CLOUDFETCH_ACCEL_PREFIX: expected a path like /_protected, got {accel_prefix!r}"
        )
    flush = optional("METRICS_FLUSH_SECONDS")
    try:
        flush_seconds = float(flush) if flush is not None else 10.0
    except ValueError:
        raise ConfigError(
            f"CLOUDFETCH_METRICS_FLUSH_SECONDS: expected a number of seconds, got {flush!r}"
        ) from None
    upload = optional("MAX_UPLOAD_BYTES")
    download = optional("MAX_DOWNLOAD_BYTES")
    solr_url = _url("CLOUDFETCH_SOLR_URL", required("SOLR_URL"), ("http", "https")).rstrip("/")
    if urlsplit(solr_url).username is not None:
        raise ConfigError(
            "CLOUDFETCH_SOLR_URL: put Solr's user in CLOUDFETCH_SOLR_USERNAME and "
            "CLOUDFETCH_SOLR_PASSWORD, not in the URL (the URL shows in error messages)"
        )
    solr_username, solr_password = optional("SOLR_USERNAME"), optional("SOLR_PASSWORD")
    if (solr_username is None) != (solr_password is None):
        missing = (
            "CLOUDFETCH_SOLR_PASSWORD" if solr_password is None else "CLOUDFETCH_SOLR_USERNAME"
        )
        raise ConfigError(
            f"{missing}: required with the other one (Solr's BasicAuth user: both or neither)"
        )
    return Settings(
        database_url=database_url,
        broker_url=_url("CLOUDFETCH_BROKER_URL", required("BROKER_URL"), ("amqp", "memory")),
        solr_url=solr_url,
        solr_username=solr_username,
        solr_password=solr_password,
        transmission_url=_url(
            "CLOUDFETCH_TRANSMISSION_URL", required("TRANSMISSION_URL"), ("http", "https")
        ),
        transmission_username=required("TRANSMISSION_USERNAME"),
        transmission_password=required("TRANSMISSION_PASSWORD"),
        storage_root=storage_root,
        # Same filesystem as the storage root by default, so finished downloads move in with an
        # atomic rename; backups skip it because it starts with a dot.
        incoming_dir=(
            _path("CLOUDFETCH_INCOMING_DIR", incoming) if incoming else storage_root / ".incoming"
        ),
        secret_key=secret_key,
        release=optional("RELEASE") or "unreleased",
        accel_prefix=accel_prefix,
        max_upload_bytes=(
            _int("CLOUDFETCH_MAX_UPLOAD_BYTES", upload) if upload else Settings.max_upload_bytes
        ),
        max_download_bytes=(
            _int("CLOUDFETCH_MAX_DOWNLOAD_BYTES", download)
            if download
            else Settings.max_download_bytes
        ),
        dev_send_file=_bool("CLOUDFETCH_DEV_SEND_FILE", optional("DEV_SEND_FILE") or "false"),
        allow_private_urls=_bool(
            "CLOUDFETCH_ALLOW_PRIVATE_URLS", optional("ALLOW_PRIVATE_URLS") or "false"
        ),
        metrics_flush_seconds=flush_seconds,
    )
