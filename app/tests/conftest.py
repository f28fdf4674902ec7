"""Fixtures: a throwaway PostgreSQL cluster (Debian's binaries), the migrated schema, the Flask
app with an in-memory Celery broker whose queued messages tests can read, a local HTTP server,
a real transmission-daemon and a real Solr (solr_server.py).

The cluster is started by hand rather than with pytest-postgresql because PostgreSQL refuses to
run as root, and CI runs as root: here the server runs as the `postgres` user when needed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import http_source
import psycopg
import pysolr
import pytest
import solr_server
from argon2 import PasswordHasher
from cloudfetch import auth, migrate
from cloudfetch.bencode import encode
from cloudfetch.config import Settings
from cloudfetch.web import create_app
from flask import Flask
from flask.testing import FlaskClient
from http_source import Routes
from kombu import Connection
from solr_server import SolrCore, SolrUnavailable
from sqlalchemy import create_engine, text

PG_BIN = Path(os.environ.get("CLOUDFETCH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "cloudfetch"
MEMORY_BROKER = "memory://"
TABLES = ("files", "transfers", "api_tokens", "users", "counters")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port_url(scheme: str, path: str = "") -> str:
    """A loopback URL nobody listens on: connections are refused at once."""
    return f"{scheme}://127.0.0.1:{free_port()}{path}"


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashing() -> Iterator[None]:
    """Real argon2id, with the smallest cost: the suite hashes a password for every user it
    makes, and the production cost (64 MiB, 3 passes) would dominate its run time."""
    production = auth._hasher
    auth._hasher = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    yield
    auth._hasher = production


def _as_postgres(command: list[str]) -> list[str]:
    # PostgreSQL will not run as root; Debian's package creates the `postgres` user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL 15 cluster on a free loopback port; yields a URL without database name."""
    if not (PG_BIN / "pg_ctl").exists():
        pytest.fail(f"{PG_BIN}/pg_ctl missing: run `make setup` (requirements/apt-app.txt)")
    base = Path(tempfile.mkdtemp(prefix="cloudfetch-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "server.log"
    port = free_port()
    subprocess.run(
        _as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    plain = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


def wait_for_server(
    process: subprocess.Popen, probe: Callable[[], object], seconds: float, what: str
) -> None:
    """Poll until a server just started answers `probe`; fail with its output if it dies or
    does not answer within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            probe()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                output = process.stdout or process.stderr
                pytest.fail(f"{what} did not start:\n{output.read() if output else ''!r}")
            time.sleep(0.1)


def wait_for(found: Callable[[], T], seconds: float = 60.0) -> T:
    """Poll until found() gives something true, and return it. The deadline only stops a test
    that would otherwise hang; it is not a timing measure."""
    deadline = time.monotonic() + seconds
    while not (value := found()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds}s")
        time.sleep(0.1)
    return value


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> str:
    url = create_database(pg_server, "cloudfetch_test")
    migrate.upgrade(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    storage = tmp_path / "storage"
    storage.mkdir()
    return Settings(
        database_url=database_url,
        broker_url=MEMORY_BROKER,
        solr_url=closed_port_url("http", "/solr/files"),
        transmission_url=closed_port_url("http", "/transmission/rpc"),
        transmission_username="cloudfetch",
        transmission_password="not-used-here",
        storage_root=storage,
        incoming_dir=storage / ".incoming",
        secret_key="test-secret-key-that-is-long-enough-0123456789",
        release="test-release-1",
        max_upload_bytes=64 * 1024,
        max_download_bytes=1024 * 1024,
        allow_private_urls=True,
        metrics_flush_seconds=0,
    )


def _empty_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()


def _drain_memory_broker() -> None:
    with Connection(MEMORY_BROKER) as connection:
        channel = connection.channel()
        for queue in ("transfers", "media", "index"):
            # A queue nobody declared yet has nothing to purge.
            with contextlib.suppress(Exception):
                channel.queue_purge(queue)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    application.testing = True
    _drain_memory_broker()
    yield application
    _empty_tables(settings.database_url)
    _drain_memory_broker()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def queued(queue: str = "transfers") -> list[tuple[str, list[Any]]]:
    """Take every message from a queue of the in-memory broker: (task name, positional args)."""
    found = []
    with Connection(MEMORY_BROKER) as connection:
        channel = connection.channel()
        while True:
            try:
                message = channel.basic_get(queue, no_ack=True)
            except Exception:
                break
            if message is None:
                break
            args, _kwargs, _embed = json.loads(message.body)
            found.append((message.headers["task"], args))
    return found


class User:
    def __init__(self, client: FlaskClient, email: str, password: str = "correct horse") -> None:
        response = client.post("/api/signup", json={"email": email, "password": password})
        assert response.status_code == 201, response.get_json()
        body = response.get_json()
        self.id: int = body["user"]["id"]
        self.email = email
        self.token: str = body["token"]
        self.headers = {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def alice(client: FlaskClient) -> User:
    return User(client, "alice@example.org")


@pytest.fixture
def bob(client: FlaskClient) -> User:
    return User(client, "bob@example.org")


# A local HTTP server for URL transfers (tests/http_source.py).


@pytest.fixture
def http_server() -> Iterator[tuple[str, Routes]]:
    with http_source.serving() as served:
        yield served


# A real transmission-daemon (Debian), loopback RPC with authentication, no peer discovery.

TRANSMISSION_USER = "cloudfetch"
TRANSMISSION_PASSWORD = "test-rpc-password"


@pytest.fixture(scope="session")
def transmission_url() -> Iterator[str]:
    binary = shutil.which("transmission-daemon")
    if binary is None:
        pytest.fail("transmission-daemon missing: run `make setup` (requirements/apt-app.txt)")
    base = Path(tempfile.mkdtemp(prefix="cloudfetch-tx-"))
    (base / "downloads").mkdir()
    port = free_port()
    (base / "settings.json").write_text(
        json.dumps(
            {
                "rpc-enabled": True,
                "rpc-bind-address": "127.0.0.1",
                "rpc-port": port,
                "rpc-authentication-required": True,
                "rpc-username": TRANSMISSION_USER,
                "rpc-password": TRANSMISSION_PASSWORD,
                "rpc-whitelist-enabled": True,
                "rpc-whitelist": "127.0.0.1",
                "rpc-host-whitelist-enabled": False,
                "dht-enabled": False,
                "lpd-enabled": False,
                "pex-enabled": False,
                "utp-enabled": False,
                "port-forwarding-enabled": False,
                "peer-port": free_port(),
                "download-dir": str(base / "downloads"),
                "incomplete-dir-enabled": False,
                "start-added-torrents": True,
                "message-level": 1,
            }
        )
    )
    process = subprocess.Popen(
        [binary, "-f", "-g", str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}/transmission/rpc"
    wait_for_server(
        process,
        lambda: socket.create_connection(("127.0.0.1", port), timeout=0.5).close(),
        seconds=15,
        what="transmission-daemon",
    )
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tx_settings(settings: Settings, transmission_url: str) -> Settings:
    return replace(
        settings,
        transmission_url=transmission_url,
        transmission_username=TRANSMISSION_USER,
        transmission_password=TRANSMISSION_PASSWORD,
    )


# A real Solr with the role's cloudfetch core (tests/solr_server.py).


@pytest.fixture(scope="session")
def solr_core() -> Iterator[SolrCore]:
    try:
        with solr_server.running(free_port()) as core:
            yield core
    except SolrUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture
def solr_settings(settings: Settings, solr_core: SolrCore) -> Settings:
    """Settings whose search is the real core, emptied first: file ids restart in every test."""
    auth = (solr_core.username, solr_core.password)
    pysolr.Solr(solr_core.url, auth=auth, timeout=10).delete(q="*:*", commit=True)
    return replace(
        settings,
        solr_url=solr_core.url,
        solr_username=solr_core.username,
        solr_password=solr_core.password,
    )


def make_torrent(name: str, files: dict[str, bytes], piece_length: int = 16384) -> bytes:
    """Bencoded metadata for files (relative path -> content); one file when files has just
    the key name, else a directory called name."""
    single = list(files) == [name]
    data = b"".join(files[path] for path in files)
    pieces = b"".join(
        hashlib.sha1(data[i : i + piece_length]).digest()
        for i in range(0, max(len(data), 1), piece_length)
    )
    info: dict[str, Any] = {"name": name, "piece length": piece_length, "pieces": pieces}
    if single:
        info["length"] = len(files[name])
    else:
        info["files"] = [
            {"path": path.split("/")[1:], "length": len(content)} for path, content in files.items()
        ]
    # No reachable tracker: the tests never talk to peers (seeding is for the lab).
    return encode({"announce": "http://127.0.0.1:9/announce", "info": info})
