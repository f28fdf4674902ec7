"""The app under real gunicorn (two workers) against the local PostgreSQL, without broker or
Solr: /healthz answers honestly "degraded", and a transfer is refused (503) with nothing left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudfetch.config import Settings
from cloudfetch.models import Transfer, User
from conftest import closed_port_url, free_port, wait_for_server
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

APP_DIR = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).parent / "gunicorn"


def environment(settings: Settings, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "CLOUDFETCH_BIND": f"127.0.0.1:{port}",
        "CLOUDFETCH_WORKERS": "2",
        "CLOUDFETCH_DATABASE_URL": settings.database_url,
        "CLOUDFETCH_BROKER_URL": closed_port_url("amqp"),
        "CLOUDFETCH_SOLR_URL": settings.solr_url,
        "CLOUDFETCH_TRANSMISSION_URL": settings.transmission_url,
        "CLOUDFETCH_TRANSMISSION_USERNAME": "cloudfetch",
        "CLOUDFETCH_TRANSMISSION_PASSWORD": "unused",
        "CLOUDFETCH_STORAGE_ROOT": str(settings.storage_root),
        "CLOUDFETCH_SECRET_KEY": settings.secret_key,
        "CLOUDFETCH_RELEASE": "r-gunicorn",
    }


def request(url: str, body: dict[str, object] | None = None, token: str | None = None):  # type: ignore[no-untyped-def]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def gunicorn(settings: Settings) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(GUNICORN), "-c", str(APP_DIR / "gunicorn.conf.py"), "cloudfetch.wsgi:app"],
        env=environment(settings, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_server(
        process,
        lambda: urllib.request.urlopen(base + "/version", timeout=2).close(),
        seconds=30,
        what="gunicorn",
    )
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        engine = create_engine(settings.database_url)
        with engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE users, transfers, api_tokens, counters CASCADE")
        engine.dispose()


def test_gunicorn_serves_and_reports_degraded(gunicorn: str, settings: Settings) -> None:
    status, body = request(gunicorn + "/healthz")
    assert status == 200
    assert body["status"] == "degraded"
    assert {k: v["status"] for k, v in body["components"].items()} == {
        "database": "ok",
        "broker": "down",
        "search": "down",
    }
    assert request(gunicorn + "/version") == (200, {"release": "r-gunicorn"})
    status, signup = request(
        gunicorn + "/api/signup", {"email": "gus@example.org", "password": "long enough"}
    )
    assert status == 201
    status, refused = request(
        gunicorn + "/api/transfers", {"url": "https://example.org/x"}, signup["token"]
    )
    assert (status, refused["error"]) == (503, "queue_unavailable")
    engine = create_engine(settings.database_url)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(Transfer)) == 0
        assert s.scalar(select(func.count()).select_from(User)) == 1
    engine.dispose()


def test_gunicorn_refuses_to_start_with_a_bad_setting(settings: Settings) -> None:
    env = environment(settings, free_port())
    env["CLOUDFETCH_MAX_UPLOAD_BYTES"] = "plenty"
    result = subprocess.run(
        [str(GUNICORN), "-c", str(APP_DIR / "gunicorn.conf.py"), "cloudfetch.wsgi:app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "CLOUDFETCH_MAX_UPLOAD_BYTES: expected a whole number" in result.stdout + result.stderr
