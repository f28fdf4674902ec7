"""`fab smoke` against the real app: cloudfetch under gunicorn (from .venv-app, as `make setup`
makes it) on a throwaway PostgreSQL 15 cluster, migrated with `cloudfetch migrate`. No broker
beyond kombu's in-memory transport and no Solr: /healthz honestly answers "degraded"."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchfleet.inventory import load_fleet
from fetchfleet.smoke import SmokeError, balancer_url, smoke, smoke_email

REPO = Path(__file__).resolve().parents[2]
APP_BIN = REPO / ".venv-app" / "bin"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RELEASE = "20261202T101010Z-smoke01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package makes the postgres user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    for tool in (PG_BIN / "pg_ctl", APP_BIN / "gunicorn"):
        if not tool.exists():
            pytest.fail(f"{tool} missing: run `make setup` (PostgreSQL 15 and .venv-app)")
    base = Path(tempfile.mkdtemp(prefix="smoke-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", free_port()
    initdb = [
        str(PG_BIN / "initdb"),
        "-D",
        str(data),
        "-U",
        "cloudfetch",
        "--auth=trust",
        "--no-sync",
    ]
    subprocess.run(as_postgres(initdb), check=True, capture_output=True)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "log"),
        "-w",
        "-o",
        options,
        "start",
    ]
    subprocess.run(as_postgres(start), check=True, capture_output=True)
    try:
        createdb = [str(PG_BIN.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
        subprocess.run(
            as_postgres([*createdb, "-U", "cloudfetch", "cloudfetch"]),
            check=True,
            capture_output=True,
        )
        yield f"postgresql://cloudfetch@127.0.0.1:{port}/cloudfetch"
    finally:
        stop = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(as_postgres(stop), capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)


def app_environment(database_url: str, storage: Path, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "CLOUDFETCH_BIND": f"127.0.0.1:{port}",
        "CLOUDFETCH_WORKERS": "2",
        "CLOUDFETCH_DATABASE_URL": database_url,
        "CLOUDFETCH_BROKER_URL": "memory://",
        "CLOUDFETCH_SOLR_URL": f"http://127.0.0.1:{free_port()}/solr/files",
        "CLOUDFETCH_TRANSMISSION_URL": f"http://127.0.0.1:{free_port()}/transmission/rpc",
        "CLOUDFETCH_TRANSMISSION_USERNAME": "cloudfetch",
        "CLOUDFETCH_TRANSMISSION_PASSWORD": "unused-here",
        "CLOUDFETCH_STORAGE_ROOT": str(storage),
        "CLOUDFETCH_SECRET_KEY": "smoke-test-secret-key-that-is-long-enough-0123",
        "CLOUDFETCH_RELEASE": RELEASE,
    }


@pytest.fixture(scope="module")
def app(database, tmp_path_factory) -> Iterator[str]:
    storage = tmp_path_factory.mktemp("storage")
    port = free_port()
    env = app_environment(database, storage, port)
    migrate = subprocess.run(
        [str(APP_BIN / "cloudfetch"), "migrate"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    gunicorn = subprocess.Popen(
        [
            str(APP_BIN / "gunicorn"),
            "-c",
            str(REPO / "app" / "gunicorn.conf.py"),
            "cloudfetch.wsgi:app",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/version", timeout=2).close()
            break
        except OSError:
            if gunicorn.poll() is not None or time.monotonic() > deadline:
                gunicorn.kill()
                pytest.fail(
                    f"gunicorn did not start:\n{gunicorn.stdout.read() if gunicorn.stdout else ''}"
                )
            time.sleep(0.2)
    try:
        yield base
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)


def test_smoke_passes_against_the_real_app_and_makes_a_user(app):
    said: list[str] = []
    checks = smoke(app, release=RELEASE, allow_degraded=True, out=said.append)
    assert [c.name for c in checks] == ["version", "health", "sign-up", "log-in", "files"]
    assert all(c.ok for c in checks)
    details = {c.name: c.detail for c in checks}
    assert details["version"] == f"{RELEASE} (6 answers)"
    assert details["health"].startswith("degraded (search down")
    assert details["files"] == "0 files, 0 directories"
    assert len(said) == 5 and all("ok" in line for line in said)


def test_each_run_is_a_new_user(app):
    first = smoke(app, allow_degraded=True, out=lambda _: None)
    second = smoke(app, allow_degraded=True, out=lambda _: None)
    assert first[2].detail != second[2].detail


def test_a_wrong_release_fails_naming_both(app):
    with pytest.raises(SmokeError) as err:
        smoke(app, release="20261202T000000Z-other00", allow_degraded=True, out=lambda _: None)
    text = str(err.value)
    assert "FAILED (version)" in text
    assert f"expected release 20261202T000000Z-other00, 6 answers named {RELEASE}" in text


def test_degraded_health_fails_unless_allowed(app):
    with pytest.raises(SmokeError) as err:
        smoke(app, release=RELEASE, out=lambda _: None)
    text = str(err.value)
    assert "FAILED (health)" in text and "search down" in text
    # The user checks still ran, so the table says what else works.
    assert "sign-up  ok" in text and "files    ok" in text


def test_nobody_answering_fails_every_check_and_stops_the_user_checks():
    with pytest.raises(SmokeError) as err:
        smoke(f"http://127.0.0.1:{free_port()}", out=lambda _: None)
    text = str(err.value)
    assert "FAILED (version, health, sign-up)" in text and "no answer" in text
    assert "log-in" not in text


def test_the_address_is_the_inventorys_first_load_balancer():
    assert balancer_url(load_fleet("lab")) == "http://10.77.0.11"


def test_smoke_users_are_recognisable_and_unique():
    a, b = smoke_email(), smoke_email()
    assert a != b and a.startswith("smoke-") and a.endswith("@smoke.invalid")
