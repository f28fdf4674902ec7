"""The load balancer's drain program (roles/nginx's cloudfetch-lb-upstream) against a real nginx on
this machine: two loopback backends behind an upstream, requests in flight while one is drained.

Needs nginx (requirements/apt.txt, installed by `make setup`); without it these tests fail, saying so.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fetchfleet.inventory import REPO

PROGRAM = REPO / "roles/nginx/files/usr/local/sbin/cloudfetch-lb-upstream"
A, B = "127.0.0.1", "127.0.0.2"


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@dataclass
class Backend:
    address: str
    port: int
    hits: list[str] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.hits.append(self.path)
                if self.path.startswith("/slow"):
                    time.sleep(1.5)
                body = backend.address.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((self.address, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Balancer:
    root: Path
    port: int
    backends: dict[str, Backend]

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    def program(self, *args: str, nginx_test: str | None = None) -> tuple[int, dict]:
        test = nginx_test or f"nginx -t -q -p {self.root} -c {self.conf}"
        argv = [
            sys.executable, str(PROGRAM),
            "--servers", str(self.root / "servers.conf"),
            "--output", str(self.root / "upstream.conf"),
            "--state", str(self.root / "state" / "drained.json"),
            "--pid-file", str(self.root / "nginx.pid"),
            "--nginx-test", test, *args,
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True)
        return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])

    def get(self, path: str = "/") -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
            return resp.read().decode()


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Balancer]:
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed: run `make setup` (requirements/apt.txt)")
    backends = {a: Backend(a, free_port(a)) for a in (A, B)}
    for b in backends.values():
        b.start()
    port = free_port()
    (tmp_path / "servers.conf").write_text(
        "".join(
            f"server {b.address}:{b.port} max_fails=1 fail_timeout=5s;  # {b.address}\n"
            for b in backends.values()
        )
    )
    (tmp_path / "nginx.conf").write_text(f"""
        pid {tmp_path}/nginx.pid;
        error_log {tmp_path}/error.log;
        worker_processes 1;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/body;
            proxy_temp_path {tmp_path}/proxy;
            upstream cloudfetch_web {{
                include {tmp_path}/upstream.conf;
            }}
            server {{
                listen 127.0.0.1:{port};
                location / {{ proxy_pass http://cloudfetch_web; }}
            }}
        }}
    """)
    lb = Balancer(tmp_path, port, backends)
    rc, answer = lb.program()  # the role's run: render before nginx starts
    assert rc == 0, answer
    subprocess.run(["nginx", "-p", str(tmp_path), "-c", str(lb.conf)], check=True)
    try:
        yield lb
    finally:
        subprocess.run(["nginx", "-p", str(tmp_path), "-c", str(lb.conf), "-s", "stop"])
        for b in backends.values():
            assert b.server is not None
            b.server.shutdown()


def test_the_first_run_renders_every_server_and_both_backends_serve(balancer: Balancer) -> None:
    text = (balancer.root / "upstream.conf").read_text()
    assert text.count("server 127.0.0") == 2 and " down;" not in text
    answers = {balancer.get() for _ in range(6)}
    assert answers == {A, B}


def test_a_drain_waits_for_the_requests_in_flight_and_then_nothing_reaches_the_host(
    balancer: Balancer,
) -> None:
    done: list[tuple[str, float]] = []

    def slow() -> None:
        done.append((balancer.get("/slow"), time.monotonic()))

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    while sum(h.startswith("/slow") for h in balancer.backends[A].hits) < 1:
        time.sleep(0.02)  # a slow request is in flight to A
    rc, answer = balancer.program("--drain", A, "--reason", "deploy", "--reload", "--wait", "30")
    returned = time.monotonic()
    for t in threads:
        t.join()
    assert rc == 0 and answer["changed"] and answer["drained"] == {A: "deploy"}
    assert len(done) == 4 and {a for a, _ in done} == {A, B}, "every request in flight answered"
    assert all(t <= returned for a, t in done if a == A), (
        "the program returned before the requests in flight to the drained host were done"
    )
    before = len(balancer.backends[A].hits)
    assert {balancer.get() for _ in range(8)} == {B}
    assert len(balancer.backends[A].hits) == before
    rc, answer = balancer.program("--undrain", A, "--reload", "--wait", "30")
    assert rc == 0 and answer["drained"] == {}
    assert A in {balancer.get() for _ in range(6)}


def test_the_roles_run_keeps_a_drain(balancer: Balancer) -> None:
    """A converge re-renders servers.conf and runs the program without arguments: the drained
    host stays down, and a second run changes nothing."""
    balancer.program("--drain", B, "--reload", "--wait", "30")
    servers = balancer.root / "servers.conf"
    servers.write_text(servers.read_text().replace("max_fails=1", "max_fails=2"))
    rc, answer = balancer.program("--reload", "--wait", "30")
    assert rc == 0 and answer["changed"] and answer["drained"] == {B: "manual"}
    text = (balancer.root / "upstream.conf").read_text()
    assert f"server {B}:" in text and text.count(" down;") == 1 and "max_fails=2" in text
    assert {balancer.get() for _ in range(6)} == {A}
    rc, answer = balancer.program()
    assert rc == 0 and not answer["changed"]


def test_unknown_hosts_and_draining_every_host_are_refused_with_nothing_changed(
    balancer: Balancer,
) -> None:
    before = (balancer.root / "upstream.conf").read_text()
    rc, answer = balancer.program("--drain", "127.0.0.9")
    assert rc == 1 and "no upstream server 127.0.0.9" in answer["error"]
    # 127.0.0 is a prefix of both addresses and must match neither.
    rc, answer = balancer.program("--drain", "127.0.0")
    assert rc == 1 and "no upstream server" in answer["error"]
    balancer.program("--drain", A)
    rc, answer = balancer.program("--drain", B)
    assert rc == 1 and "every web host" in answer["error"]
    rc, answer = balancer.program("--show")
    assert answer["drained"] == {A: "manual"}
    balancer.program("--undrain", A)
    assert (balancer.root / "upstream.conf").read_text() == before


def test_a_configuration_nginx_rejects_is_put_back(balancer: Balancer) -> None:
    before = (balancer.root / "upstream.conf").read_text()
    rc, answer = balancer.program("--drain", A, nginx_test="nginx -t -q -c /nonexistent")
    assert rc == 1 and answer["error"].startswith("nginx -t")
    assert (balancer.root / "upstream.conf").read_text() == before
    assert balancer.program("--show")[1]["drained"] == {}
    assert {balancer.get() for _ in range(6)} == {A, B}
