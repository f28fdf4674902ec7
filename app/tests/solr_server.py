"""A real Solr for the app tests: the server the lab's solr hosts run (roles/solr's `maven` install
source: Solr's engine from Maven Central, served by its JettySolrRunner), with the role's own
`cloudfetch` core config and BasicAuth on, on a free loopback port.

The server is built (or found in its cache) by `fetchfleet.solr_build` in the suite's control
venv, the same build the role ships to hosts; its first run fetches ~113 MB from Maven Central."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudfetch.search import FileIndex, SearchUnavailable

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "solr"
CONTROL_PYTHON = REPO / ".venv" / "bin" / "python"
LAUNCHER = "org.fetchfleet.solr.SolrServer"
CORE = "cloudfetch"
USER = "cloudfetch"
START_SECONDS = 180


class SolrUnavailable(Exception):
    """Solr could not be built or started here; the message says why and what to run."""


@dataclass(frozen=True)
class SolrCore:
    url: str
    username: str
    password: str


def role_solr_version() -> str:
    """The Solr version roles/solr installs (its default), so the tests run what hosts run."""
    defaults = (ROLE / "defaults" / "main.yml").read_text()
    match = re.search(r'^solr_version:\s*"?([0-9.]+)"?\s*$', defaults, re.MULTILINE)
    if not match:
        raise SolrUnavailable(f"no solr_version in {ROLE / 'defaults' / 'main.yml'}")
    return match.group(1)


def server_tarball(version: str) -> Path:
    if not CONTROL_PYTHON.exists():
        raise SolrUnavailable(f"{CONTROL_PYTHON} missing: run `make setup`")
    command = [str(CONTROL_PYTHON), "-m", "fetchfleet.solr_build", "--version", version, "--json"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SolrUnavailable(
            f"building the Solr server failed:\n{proc.stderr[-3000:]}\n  -> {' '.join(command)}"
        )
    return Path(json.loads(proc.stdout.strip().splitlines()[-1])["tarball"])


def stored_credential(password: str) -> str:
    """Solr's BasicAuthPlugin form: base64(sha256(sha256(salt + password))) base64(salt)."""
    salt = os.urandom(32)
    digest = hashlib.sha256(hashlib.sha256(salt + password.encode()).digest()).digest()
    return f"{base64.b64encode(digest).decode()} {base64.b64encode(salt).decode()}"


def write_home(home: Path, password: str) -> None:
    """Solr home as roles/solr lays it out: solr.xml, the core's conf/ and core.properties, and
    security.json giving the app's user the role's `app` permissions (read, update, health)."""
    core = home / CORE
    core.mkdir(parents=True)
    shutil.copy(ROLE / "files" / "home" / "solr.xml", home / "solr.xml")
    shutil.copytree(ROLE / "files" / "cores" / CORE / "conf", core / "conf")
    (core / "core.properties").write_text(f"name={CORE}\n")
    security = {
        "authentication": {
            "class": "solr.BasicAuthPlugin",
            "blockUnknown": True,
            "forwardCredentials": False,
            "credentials": {USER: stored_credential(password)},
        },
        "authorization": {
            "class": "solr.RuleBasedAuthorizationPlugin",
            "permissions": [
                {"name": "health", "role": ["app"]},
                {"name": "read", "role": ["app"]},
                {"name": "update", "role": ["app"]},
                {"name": "all", "role": "admin"},
            ],
            "user-role": {USER: ["app"]},
        },
    }
    (home / "security.json").write_text(json.dumps(security, indent=2))


@contextlib.contextmanager
def running(port: int) -> Iterator[SolrCore]:
    java = shutil.which("java")
    if java is None:
        raise SolrUnavailable("java missing: run `make setup` (requirements/apt-solr.txt)")
    tarball = server_tarball(role_solr_version())
    base = Path(tempfile.mkdtemp(prefix="cloudfetch-solr-"))
    try:
        with tarfile.open(tarball) as tar:
            # No filter=: Debian 12's python3 (3.11.2) predates extraction filters (3.11.4);
            # the archive is one this machine just built.
            tar.extractall(base)
        [server] = [p for p in base.iterdir() if p.is_dir()]
        password = secrets.token_urlsafe(24)
        write_home(base / "home", password)
        log = base / "solr.log"
        command = [
            *(java, "-Xms256m", "-Xmx256m", f"-Dsolr.log.dir={base}", "-cp", f"{server}/lib/*"),
            *(LAUNCHER, "--home", str(base / "home"), "--port", str(port), "--host", "127.0.0.1"),
        ]
        with open(log, "wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        core = SolrCore(f"http://127.0.0.1:{port}/solr/{CORE}", USER, password)
        try:
            _wait_until_up(process, core, log)
            yield core
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _wait_until_up(process: subprocess.Popen, core: SolrCore, log: Path) -> None:
    index = FileIndex(core.url, timeout=5, auth=(core.username, core.password))
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            index.ping()
            return
        except SearchUnavailable as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                tail = log.read_text(errors="replace")[-3000:]
                raise SolrUnavailable(f"Solr did not start ({exc}); its output:\n{tail}") from exc
        time.sleep(0.5)
