"""/healthz, /version, metrics, migrations and the HTML UI."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from cloudfetch import cli, metrics, migrate, services
from cloudfetch.config import Settings
from cloudfetch.models import Base, StoredFile
from cloudfetch.web import create_app
from conftest import User, closed_port_url, create_database, queued
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, inspect


def test_healthz_is_degraded_with_only_postgresql(client: FlaskClient) -> None:
    # Broker reachable (in-memory), Solr not: the app still serves, and says so.
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["components"]["database"]["status"] == "ok"
    assert body["components"]["broker"]["status"] == "ok"
    assert body["components"]["search"]["status"] == "down"
    assert body["release"] == "test-release-1"


def test_healthz_reports_a_dead_broker(settings: Settings) -> None:
    app = create_app(replace(settings, broker_url=closed_port_url("amqp")))
    body = app.test_client().get("/healthz").get_json()
    assert body["status"] == "degraded"
    assert body["components"]["broker"]["status"] == "down"
    assert body["components"]["broker"]["seconds"] < 3


def test_healthz_is_503_without_the_database(settings: Settings) -> None:
    dead = closed_port_url("postgresql+psycopg", "/cloudfetch")
    app = create_app(replace(settings, database_url=dead))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "down"
    assert body["components"]["database"]["status"] == "down"
    assert "error" in body["components"]["database"]


def test_version_is_the_release_set_at_deploy(client: FlaskClient) -> None:
    assert client.get("/version").get_json() == {"release": "test-release-1"}


def test_metrics_for_munin(
    app: Flask,
    client: FlaskClient,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, bob = User(client, "alice@example.org"), User(client, "bob@example.org")
    client.post("/api/transfers", json={"url": "https://example.org/a"}, headers=alice.headers)
    client.post("/api/transfers", json={"url": "https://example.org/b"}, headers=bob.headers)
    client.get("/api/me")  # 401
    with services.current().sessions() as s:
        s.add_all(
            [
                StoredFile(user_id=alice.id, path="a", size=1000),
                StoredFile(user_id=bob.id, path="b", size=234),
            ]
        )
        s.commit()
    # A second app in this process stands in for a second gunicorn worker: its counts are added
    # to the same database rows.
    other = create_app(settings).test_client()
    other.get("/version")
    other.get("/api/files/1")  # 401
    for key, value in {
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        "SOLR_URL": settings.solr_url,
        "TRANSMISSION_URL": settings.transmission_url,
        "TRANSMISSION_USERNAME": "u",
        "TRANSMISSION_PASSWORD": "p",
        "STORAGE_ROOT": str(settings.storage_root),
        "SECRET_KEY": settings.secret_key,
    }.items():
        monkeypatch.setenv(f"CLOUDFETCH_{key}", value)
    assert cli.main(["metrics", "--interval-minutes", "10"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["users"] == 2
    assert figures["signups_last_interval"] == 2
    assert figures["transfers"] == {"queued": 2, "downloading": 0, "completed": 0, "failed": 0}
    assert figures["files"] == 2 and figures["bytes_stored"] == 1234
    assert figures["queue_depth"] == 2  # the two fetch_url messages waiting in the broker
    # 2 signups + 2 transfers + 1 failed /api/me, then /version + /api/files/1 on the other app.
    assert figures["requests_total"] == 7
    assert figures["responses_4xx_total"] == 2
    assert figures["responses_5xx_total"] == 0
    queued()


def test_queue_depth_is_unknown_without_a_broker() -> None:
    assert metrics.queue_depth(closed_port_url("amqp")) is None


def test_migrations_round_trip_and_match_the_models(pg_server: str) -> None:
    url = create_database(pg_server, "cloudfetch_migrations")
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.head_revision()
    migrate.upgrade(url)  # a second deploy's run changes nothing
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    migrate.downgrade(url, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    migrate.upgrade(url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrate_command_from_the_environment(
    pg_server: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
) -> None:
    url = create_database(pg_server, "cloudfetch_cli")
    for key, value in {
        "DATABASE_URL": url,
        "BROKER_URL": "amqp://mq/",
        "SOLR_URL": "http://solr/solr/f",
        "TRANSMISSION_URL": "http://tx/transmission/rpc",
        "TRANSMISSION_USERNAME": "u",
        "TRANSMISSION_PASSWORD": "p",
        "STORAGE_ROOT": "/srv/x",
        "SECRET_KEY": "s" * 32,
    }.items():
        monkeypatch.setenv(f"CLOUDFETCH_{key}", value)
    assert cli.main(["migrate"]) == 0
    assert f"database at {migrate.head_revision()} (was None)" in capsys.readouterr().out


# The HTML UI


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "form without CSRF token"
    return match.group(1)


def test_ui_signup_add_transfer_and_list(client: FlaskClient) -> None:
    assert client.get("/").status_code == 302
    form = client.get("/signup").get_data(as_text=True)
    response = client.post(
        "/signup",
        data={"email": "erin@example.org", "password": "long enough", "csrf_token": csrf_of(form)},
    )
    assert response.status_code == 302
    home = client.get("/").get_data(as_text=True)
    assert "erin@example.org" in home and "No transfers yet." in home
    added = client.post(
        "/transfers",
        data={"url": "https://example.org/movie.mkv", "csrf_token": csrf_of(home)},
    )
    assert added.status_code == 302
    assert "https://example.org/movie.mkv" in client.get("/").get_data(as_text=True)
    assert [name for name, _ in queued()] == ["cloudfetch.fetch_url"]
    bad = client.post("/transfers", data={"url": "ftp://x", "csrf_token": csrf_of(home)})
    assert bad.status_code == 400
    assert "only absolute http" in bad.get_data(as_text=True)


def test_ui_pages_link_the_stylesheet_from_static(client: FlaskClient) -> None:
    page = client.get("/signup").get_data(as_text=True)
    match = re.search(r'<link rel="stylesheet" href="([^"]+)">', page)
    assert match and match.group(1) == "/static/cloudfetch.css"
    # The development fallback; behind nginx the web host's nginx serves this path itself.
    css = client.get(match.group(1))
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert b"font-family" in css.get_data()


def test_ui_forms_need_the_csrf_token(client: FlaskClient, alice: User) -> None:
    client.get("/login")
    response = client.post("/login", data={"email": alice.email, "password": "correct horse"})
    assert response.status_code == 400
    response = client.post(
        "/login",
        data={"email": alice.email, "password": "correct horse", "csrf_token": "forged"},
    )
    assert response.status_code == 400
    assert client.get("/").status_code == 302  # still not logged in


def test_errors_are_pages_in_the_ui_and_json_everywhere_else(
    client: FlaskClient, alice: User
) -> None:
    """The UI's blueprint renders its own errors; the app-wide handler answers JSON."""
    client.get("/login")
    refused = client.post("/login", data={"email": alice.email, "password": "correct horse"})
    assert (refused.status_code, refused.mimetype) == (400, "text/html")
    assert "the form expired" in refused.get_data(as_text=True)
    anonymous = client.get("/files/1/download")
    assert (anonymous.status_code, anonymous.mimetype) == (401, "text/html")
    assert "log in first" in anonymous.get_data(as_text=True)
    for method, path, status, code in [
        ("get", "/api/files/999", 404, "not_found"),
        ("get", "/api/files", 401, "missing_token"),
        ("get", "/no/such/page", 404, "not_found"),
        ("delete", "/api/me", 405, "method_not_allowed"),
        ("post", "/version", 405, "method_not_allowed"),
    ]:
        headers = alice.headers if path == "/api/files/999" else {}
        response = getattr(client, method)(path, headers=headers)
        assert (response.status_code, response.mimetype) == (status, "application/json"), path
        assert response.get_json()["error"] == code, path


def test_ui_login_download_and_logout(client: FlaskClient, settings: Settings, alice: User) -> None:
    with services.current().sessions() as s:
        row = StoredFile(user_id=alice.id, path="song.ogg", size=3)
        s.add(row)
        s.commit()
    page = client.get("/login").get_data(as_text=True)
    wrong = client.post(
        "/login", data={"email": alice.email, "password": "nope nope", "csrf_token": csrf_of(page)}
    )
    assert wrong.status_code == 401
    ok = client.post(
        "/login",
        data={"email": alice.email, "password": "correct horse", "csrf_token": csrf_of(page)},
    )
    assert ok.status_code == 302
    home = client.get("/").get_data(as_text=True)
    assert "song.ogg" in home
    download = client.get(f"/files/{row.id}/download")
    assert download.headers["X-Accel-Redirect"] == f"/_protected/u{alice.id}/song.ogg"
    searched = client.get("/search?q=song")
    assert searched.status_code == 503  # Solr is not on this machine
    client.post("/logout", data={"csrf_token": csrf_of(home)})
    assert client.get("/").status_code == 302
    assert client.get(f"/files/{row.id}/download").status_code == 401
