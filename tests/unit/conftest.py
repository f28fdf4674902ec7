"""Fixtures shared by the unit tests: a local AWS (moto_fixtures.py), the monitoring code on sys.path (the plugins and the pager
are shipped to hosts as plain files, not as part of the fetchfleet package), free loopback
ports, and a real PostgreSQL 15 primary with a streaming replica (Debian's binaries).

PostgreSQL refuses to run as root and CI runs as root: the servers then run as `postgres`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto_fixtures import Moto, aws_credentials, moto, moto_server

__all__ = ["Moto", "aws_credentials", "moto", "moto_server"]  # fixtures for every unit test

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "monitoring" / "plugins"
RECORDED = Path(__file__).resolve().parent / "recorded"
for path in (PLUGINS, REPO / "monitoring"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

PG_BIN = Path(os.environ.get("FETCHFLEET_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_postgres(command), capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


@dataclass
class Server:
    name: str
    data: Path
    port: int
    socket_dir: Path
    log: Path

    def psql(self, *extra: str) -> list[str]:
        """psql's command and connection options for this server (superuser, Unix socket)."""
        return [str(PG_BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), *extra]

    def sql(self, statement: str, db: str = "postgres") -> str:
        done = subprocess.run(
            [*self.psql("-U", "postgres", "-d", db), "-X", "-A", "-t", "-c", statement],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-o",
                options,
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])


@dataclass
class Pair:
    primary: Server
    replica: Server
    slot: str

    def wait_streaming(self, seconds: float = 20.0) -> None:
        deadline = time.monotonic() + seconds
        query = f"SELECT state FROM pg_stat_replication WHERE application_name = '{self.slot}'"
        while self.primary.sql(query) != "streaming":
            if time.monotonic() > deadline:
                pytest.fail(f"replica {self.slot} did not stream within {seconds}s")
            time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_pair() -> Iterator[Pair]:
    """A primary and a hot standby cloned from it with pg_basebackup, streaming through a
    physical slot named like the lab's (after the replica)."""
    if not (PG_BIN / "pg_ctl").exists():
        pytest.fail(f"{PG_BIN}/pg_ctl missing: run `make setup` (requirements/apt-app.txt)")
    base = Path(tempfile.mkdtemp(prefix="fetchfleet-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    slot = "replica1"
    primary = Server("primary", base / "primary", free_port(), base, base / "primary.log")
    replica = Server("replica", base / "replica", free_port(), base, base / "replica.log")
    _run(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(primary.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
        ]
    )
    primary.start()
    _run(
        [
            str(PG_BIN / "pg_basebackup"),
            *("-h", str(base), "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(replica.data), "-R", "-C", "-S", slot, "-X", "stream"),
        ]
    )
    # The walreceiver's application_name names the replica on the primary, as in the lab.
    with open(replica.data / "postgresql.auto.conf", "a") as conf:
        conf.write(
            f"primary_conninfo = 'host={base} port={primary.port} user=postgres "
            f"application_name={slot}'\n"
        )
    if os.geteuid() == 0:
        shutil.chown(replica.data / "postgresql.auto.conf", "postgres", "postgres")
    replica.start()
    pair = Pair(primary, replica, slot)
    try:
        pair.wait_streaming()
        yield pair
    finally:
        for server in (replica, primary):
            subprocess.run(
                _as_postgres(
                    [str(PG_BIN / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"]
                ),
                capture_output=True,
            )
        shutil.rmtree(base, ignore_errors=True)


TRANSMISSION_USER, TRANSMISSION_PASSWORD = "cloudfetch", "test-rpc-password"


@pytest.fixture(scope="session")
def transmission_url() -> Iterator[str]:
    """A real transmission-daemon (Debian 3.00) with loopback RPC and authentication, no peers."""
    binary = shutil.which("transmission-daemon")
    if binary is None:
        pytest.fail("transmission-daemon missing: run `make setup` (requirements/apt-app.txt)")
    base = Path(tempfile.mkdtemp(prefix="fetchfleet-tx-"))
    (base / "downloads").mkdir()
    port = free_port()
    settings = {
        "rpc-enabled": True,
        "rpc-bind-address": "127.0.0.1",
        "rpc-port": port,
        "rpc-authentication-required": True,
        "rpc-username": TRANSMISSION_USER,
        "rpc-password": TRANSMISSION_PASSWORD,
        "rpc-whitelist-enabled": True,
        "rpc-whitelist": "127.0.0.1",
        "dht-enabled": False,
        "lpd-enabled": False,
        "pex-enabled": False,
        "utp-enabled": False,
        "port-forwarding-enabled": False,
        "peer-port": free_port(),
        "download-dir": str(base / "downloads"),
        "message-level": 1,
    }
    (base / "settings.json").write_text(json.dumps(settings))
    process = subprocess.Popen(
        [binary, "-f", "-g", str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"transmission-daemon did not start: {process.stderr.read()!r}")
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/transmission/rpc"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(base, ignore_errors=True)


ROUTING_KEY = "R0UT1NGKEY0F32CHARACTERSXXXXXXXX"  # 32 characters, as the Events API wants


def write_pager_config(
    tmp_path: Path, standin, tls, key: str = ROUTING_KEY, spool: str = "spool", **links: str
) -> Path:
    """tmp_path/pager.json sending to the stand-in over TLS, with the routing key written to
    tmp_path/key, the spool at tmp_path/<spool> (not created) and links such as runbook_url and
    munin_url."""
    (tmp_path / "key").write_text(key)
    path = tmp_path / "pager.json"
    path.write_text(
        json.dumps(
            {
                "events_url": standin.url,
                "routing_key_file": str(tmp_path / "key"),
                "ca_file": str(tls.ca_cert),
                "spool_dir": str(tmp_path / spool),
                **links,
            }
        )
    )
    return path


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory):
    from fetchfleet.pagerduty_standin import make_ca

    return make_ca(tmp_path_factory.mktemp("pagerduty-ca"))


@pytest.fixture
def standin(tls):
    from fetchfleet.pagerduty_standin import StandIn

    with StandIn(tls) as server:
        yield server
