"""A local AWS for the unit tests (fixtures imported by conftest.py): moto's standalone server, speaking the real EC2 and S3 APIs.

One server per test session on 127.0.0.1 (a free port), its state reset and its request log
emptied for each test that asks for it; boto3 and the aws_ec2 inventory plugin talk to it over
HTTP with fake credentials, never to AWS.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import pytest

REGION = "eu-west-1"


@dataclass
class Moto:
    url: str
    log: Path

    def post(self, path: str) -> None:
        request = urllib.request.Request(self.url + path, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, f"moto {path}: {response.status}"

    def reset(self) -> None:
        """Empty state and an empty request log, recording from now on."""
        self.post("/moto-api/reset")
        self.post("/moto-api/recorder/reset-recording")
        self.post("/moto-api/recorder/start-recording")

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def actions(self) -> list[str]:
        """The API actions received since the last reset: EC2's Action=…, S3's METHOD /path."""
        found = []
        for entry in self.requests():
            if entry["url"].split("?")[0].rstrip("/").endswith("/moto-api/reset"):
                continue
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", "replace")
            action = parse_qs(body).get("Action")
            found.append(action[0] if action else f"{entry['method']} {entry['url']}")
        return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    tool = Path(sys.executable).parent / "moto_server"
    if not tool.exists():
        pytest.fail(
            f"moto's server is not installed ({tool}): run `make setup` (requirements/control.txt)"
        )
    work = tmp_path_factory.mktemp("moto")
    log = work / "requests.jsonl"
    port = _free_port()
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(log)}
    stderr = (work / "server.log").open("w")
    proc = subprocess.Popen(
        [str(tool), "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=stderr, stderr=stderr
    )
    moto = Moto(f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"moto_server exited ({proc.returncode}): {(work / 'server.log').read_text()}"
            )
        try:
            moto.post("/moto-api/reset")
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not answer on {moto.url} within 90 s")
            time.sleep(0.3)
    yield moto
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    stderr.close()


@pytest.fixture(scope="session")
def aws_credentials() -> Iterator[None]:
    """Fake credentials through boto3's own chain (the environment); nothing real is read."""
    fake = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/fetchfleet-tests",
        "AWS_CONFIG_FILE": "/nonexistent/fetchfleet-tests",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    dropped = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_URL")
    saved = {k: os.environ.get(k) for k in (*fake, *dropped)}
    os.environ.update(fake)
    for key in dropped:
        os.environ.pop(key, None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def moto(moto_server: Moto, aws_credentials: None) -> Moto:
    """The local AWS, empty, with an empty request log."""
    moto_server.reset()
    return moto_server
