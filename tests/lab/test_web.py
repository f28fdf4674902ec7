"""The web tier in the lab: nginx (load balancer, web hosts, workers' storage), supervisor, the app
runtime, and the first deploy — used the way a person would, through the load balancer.

Runs on the session's converged lab (site.yml imports web.yml), deploys once (deploy.yml), then:
sign up, a URL transfer fetched by Celery on the worker from a lab host, list, search (Solr),
download (bytes from the worker's storage through nginx's internal location, not gunicorn), a
dead web host, maintenance switch, auth rate limit, firewall, a second converge, bad variables.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from fetchfleet import lab as L
from fetchfleet.inventory import REPO, load_fleet
from fetchfleet.playbook import Recap, run_playbook

FLEET = load_fleet("lab")
LB = FLEET.group("loadbalancers")[0]
BASE = f"http://{LB.address}"
WEB = [h.name for h in FLEET.group("web")]
WORKER = FLEET.group("workers")[0]
URL_PORT = 8099  # lab-only rule in inventory/lab/group_vars/loadbalancers/nginx.yml


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def http(
    method: str, path: str, token: str | None = None, data: dict | None = None, timeout=15.0
) -> Response:
    """One request through the load balancer (urllib: no redirects followed for non-GET)."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(BASE + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(
                resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
            )
    except urllib.error.HTTPError as err:
        return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


@pytest.fixture(scope="module")
def deployed(lab, converged) -> dict:
    """A release deployed by playbooks/deploy.yml (build cached per app/ commit)."""
    recap = run_playbook("deploy.yml", echo=False)
    assert recap.ok, f"deploy.yml failed: {recap.hosts}\n{recap.output[-3000:]}"
    print(f"\nFIGURE deploy.yml: {recap.seconds:.1f}s, changed={recap.total('changed')}")
    version = http("GET", "/version")
    assert version.status == 200, version
    return {"release": version.json()["release"], "recap": recap}


@pytest.fixture(scope="module")
def user(deployed) -> str:
    """A fresh user's API token, signed up through the load balancer."""
    email = f"web-{secrets.token_hex(4)}@example.com"
    resp = http("POST", "/api/signup", data={"email": email, "password": secrets.token_hex(12)})
    assert resp.status == 201, resp
    return resp.json()["token"]


@pytest.fixture(scope="module")
def url_server(lab) -> Iterator[tuple[str, bytes]]:
    """A file served over HTTP by a lab host (lb1) for a bounded time: (url, its bytes)."""
    payload = secrets.token_bytes(1_500_000)
    directory = f"/tmp/test-web-{secrets.token_hex(4)}"
    name = "Big Buck Bunny sample.bin"
    L.run_on(
        lab,
        LB.name,
        f"mkdir -p {directory} && base64 -d > {shlex.quote(directory + '/' + name)}",
        stdin=base64.b64encode(payload).decode(),
    )
    unit = f"test-web-url-{secrets.token_hex(3)}"
    L.run_on(
        lab,
        LB.name,
        f"systemd-run --collect --unit={unit} --property=RuntimeMaxSec=300 python3 -m http.server "
        f"{URL_PORT} --bind {LB.address} --directory {directory}",
    )
    url = f"http://{LB.address}:{URL_PORT}/Big%20Buck%20Bunny%20sample.bin"
    probe = (
        "import sys, time, urllib.request\n"
        "for _ in range(50):\n"
        "    try:\n"
        f"        sys.exit(0 if len(urllib.request.urlopen({url!r}).read()) == {len(payload)} else 1)\n"
        "    except OSError:\n"
        "        time.sleep(0.1)\n"
        "sys.exit(1)\n"
    )
    ready = L.run_on(lab, LB.name, f"python3 -c {shlex.quote(probe)}", check=False)
    assert ready.returncode == 0, f"the test URL server on {LB.name} does not serve the file"
    yield url, payload
    L.run_on(lab, LB.name, f"systemctl stop {unit}; rm -rf {directory}", check=False)


def test_runtime_layout_on_the_hosts(deployed, host):
    """Programs under supervisor, gunicorn on a unix socket only, config 0640, current link."""
    for name in WEB:
        h = host(name)
        status = h.run("supervisorctl status cloudfetch-web")
        assert "RUNNING" in status.stdout, status.stdout
        assert h.socket("unix:///run/cloudfetch/gunicorn.sock").is_listening
        tcp = h.run("ss -Hltnp").stdout
        assert "gunicorn" not in tcp, f"gunicorn must not listen on TCP on {name}:\n{tcp}"
        conf = h.file("/etc/cloudfetch/cloudfetch.conf")
        assert conf.mode == 0o640 and conf.user == "root" and conf.group == "cloudfetch"
        current = h.file("/srv/cloudfetch/current")
        assert current.is_symlink and current.linked_to.endswith(deployed["release"])
        assert h.file("/etc/logrotate.d/cloudfetch").exists
        assert h.service("nginx").is_running and h.service("supervisor").is_enabled
    w = host(WORKER.name)
    status = w.run("supervisorctl status").stdout
    assert "cloudfetch-worker" in status and "cloudfetch-beat" in status, status
    assert status.count("RUNNING") == 2, status
    for name in WEB:  # exactly one beat in the fleet
        assert "cloudfetch-beat" not in host(name).run("supervisorctl status").stdout
    queues = w.run("ps -eo args | grep '[c]elery.*worker'").stdout
    assert "-Q transfers,media,index" in queues, queues


def test_use_the_app_through_the_load_balancer(lab, deployed, user, url_server):
    """Add a URL transfer, wait until the worker completes it, list, search, download."""
    url, payload = url_server
    added = http("POST", "/api/transfers", user, {"url": url})
    assert added.status == 202, added
    transfer_id = added.json()["id"]
    deadline = time.monotonic() + 90
    state = None
    while time.monotonic() < deadline:
        transfer = http("GET", f"/api/transfers/{transfer_id}", user).json()
        state = transfer["state"]
        if state in ("completed", "failed"):
            break
        time.sleep(1)
    assert state == "completed", f"transfer ended {state}: {transfer}"

    listing = http("GET", "/api/files", user).json()
    files = {f["name"]: f for f in listing["files"]}
    assert "Big Buck Bunny sample.bin" in files, listing
    stored = files["Big Buck Bunny sample.bin"]
    assert stored["size"] == len(payload)

    found: list = []
    for _ in range(30):  # indexing is a Celery task; Solr commits within a second
        found = http("GET", "/api/search?q=bunny", user).json()
        if found:
            break
        time.sleep(1)
    assert [f["id"] for f in found] == [stored["id"]], found

    download = http("GET", f"/api/files/{stored['id']}/download", user)
    assert download.status == 200, download
    assert hashlib.sha256(download.body).digest() == hashlib.sha256(payload).digest()
    # nginx's internal location fetched the bytes from the worker's storage site: the upstreams
    # were gunicorn's socket (the X-Accel-Redirect answer) and then the worker.
    storage = download.headers.get("x-cloudfetch-storage", "")
    assert f"{WORKER.address}:8081" in storage, download.headers
    assert "gunicorn.sock" in storage, download.headers
    assert "attachment" in download.headers["content-disposition"]
    # gunicorn answered that request with an X-Accel-Redirect and an empty body.
    web = download.headers["x-cloudfetch-web"]
    log = L.run_on(lab, web, "grep 'download HTTP' /var/log/cloudfetch/gunicorn.log | tail -1")
    assert f"/api/files/{stored['id']}/download" in log.stdout, log.stdout
    assert '200 0 accel="/_protected/u' in log.stdout, log.stdout

    # Deleting goes through a web host, but the bytes live on the worker: they must go there.
    user_dir = re.search(r'accel="/_protected/(u\d+)/', log.stdout).group(1)
    on_worker = f"/srv/cloudfetch/shared/storage/{user_dir}/{stored['path']}"
    assert (
        L.run_on(lab, WORKER.name, f"test -f {shlex.quote(on_worker)}", check=False).returncode == 0
    )
    assert http("DELETE", f"/api/files/{stored['id']}", user).status == 204
    gone = False
    for _ in range(30):
        if L.run_on(lab, WORKER.name, f"test -e {shlex.quote(on_worker)}", check=False).returncode:
            gone = True
            break
        time.sleep(1)
    assert gone, f"{on_worker} still on {WORKER.name} after the file was deleted"


def test_maintenance_switches_without_reload(lab, deployed):
    pid = L.run_on(lab, LB.name, "cat /run/nginx.pid").stdout.strip()
    workers = L.run_on(lab, LB.name, "pgrep -P " + pid + " | sort").stdout
    L.run_on(lab, LB.name, "touch /var/lib/nginx/maintenance.on")
    try:
        down = http("GET", "/version")
        assert down.status == 503 and b"maintenance" in down.body, down
        assert down.headers.get("retry-after") == "120"
    finally:
        L.run_on(lab, LB.name, "rm -f /var/lib/nginx/maintenance.on")
    assert http("GET", "/version").status == 200
    # Same master and the same worker processes: nothing was reloaded.
    assert L.run_on(lab, LB.name, "pgrep -P " + pid + " | sort").stdout == workers


def test_auth_endpoints_are_rate_limited(deployed):
    statuses = [
        http("POST", "/api/login", data={"email": "nobody@example.com", "password": "x"}).status
        for _ in range(30)
    ]
    assert 429 in statuses, statuses
    assert 401 in statuses, statuses  # the first ones reached the app


def test_firewall(lab, deployed):
    web1 = WEB[0]
    assert L.tcp_open(lab, LB.name, web1, 80), "the load balancer reaches the web hosts' nginx"
    assert not L.tcp_open(lab, "db1", web1, 80), "db1 must not reach the web hosts' nginx"
    assert L.tcp_open(lab, web1, WORKER.name, 8081), "web hosts reach the workers' storage"
    assert not L.tcp_open(lab, LB.name, WORKER.name, 8081), "lb1 must not reach the storage"
    assert not L.tcp_open(lab, "db1", WORKER.name, 8081)
    assert L.tcp_open(lab, "db1", LB.name, 80), "the load balancer is open to the lab"


def test_a_dead_web_host_does_not_break_gets(lab, deployed):
    victim = WEB[-1]
    L.kill_host(lab, victim)
    try:
        served_by = []
        t0 = time.monotonic()
        for _ in range(40):
            resp = http("GET", "/version")
            assert resp.status == 200, f"GET failed while {victim} is dead: {resp}"
            served_by.append(resp.headers["x-cloudfetch-web"])
        assert victim not in served_by
        print(f"\nFIGURE 40 GETs with {victim} dead: {time.monotonic() - t0:.1f}s")
    finally:
        L.up(lab, [victim])
    # supervisor starts gunicorn again at boot, and the load balancer uses the host again.
    deadline = time.monotonic() + 90
    seen: set[str] = set()
    while time.monotonic() < deadline and victim not in seen:
        resp = http("GET", "/version")
        if resp.status == 200:
            seen.add(resp.headers["x-cloudfetch-web"])
        time.sleep(0.5)
    assert victim in seen, f"{victim} did not serve again after boot (saw {seen})"


def test_second_converge_of_the_web_tier_changes_nothing(deployed):
    recap = run_playbook("web.yml", echo=False)
    assert recap.ok, recap.output[-3000:]
    print(f"\nFIGURE web.yml second converge: {recap.seconds:.1f}s")
    assert recap.total("changed") == 0, recap.changed


def test_redeploying_the_same_release_changes_nothing(deployed):
    recap: Recap = run_playbook("deploy.yml", echo=False)
    assert recap.ok, recap.output[-3000:]
    print(f"\nFIGURE deploy.yml again (cached build, installed release): {recap.seconds:.1f}s")
    assert recap.total("changed") == 0, recap.changed
    assert http("GET", "/version").json()["release"] == deployed["release"]


@pytest.mark.parametrize(
    ("limit", "extra", "variable"),
    [
        ("lb1", {"nginx_sites": ["balancer"]}, "nginx_sites"),
        ("lb1", {"nginx_lb_upstream_group": "webz"}, "nginx_lb_upstream_group"),
        (
            "web1",
            {"supervisor_programs": [{"name": "bad name", "command": "x"}]},
            "supervisor_programs",
        ),
        ("web1", {"app_secret_key": "too-short"}, "app_secret_key"),
    ],
)
def test_bad_variables_stop_before_any_change(deployed, limit, extra, variable):
    recap = run_playbook("web.yml", limit=limit, extra=["-e", json.dumps(extra)], echo=False)
    assert not recap.ok, f"web.yml accepted {extra}"
    assert recap.total("changed") == 0, recap.changed
    assert variable in recap.output, recap.output[-2000:]


def _supervisor_play(tmp_path, state: str) -> subprocess.CompletedProcess:
    """The supervisor role alone on web1 with one throwaway program (present or absent)."""
    play = tmp_path / f"supervisor-{state}.yml"
    program = {
        "name": "fetchfleet-test-sleep",
        "command": "/bin/sleep 3600",
        "user": "nobody",
        "state": state,
    }
    play.write_text(
        json.dumps(
            [
                {
                    "name": "supervisor programs as data",
                    "hosts": WEB[0],
                    "gather_facts": False,
                    "roles": [{"role": "supervisor", "supervisor_programs": [program]}],
                }
            ]
        )
    )
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "inventory/lab", str(play)],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_supervisor_programs_as_data_are_added_and_removed(deployed, host, tmp_path):
    h = host(WEB[0])
    added = _supervisor_play(tmp_path, "present")
    assert added.returncode == 0, added.stdout[-2000:]
    # supervisor reports STARTING until the program has stayed up for startsecs (3 s).
    status = ""
    for _ in range(20):
        status = h.run("supervisorctl status fetchfleet-test-sleep").stdout
        if "RUNNING" in status:
            break
        time.sleep(0.5)
    assert "RUNNING" in status, status
    assert "RUNNING" in h.run("supervisorctl status cloudfetch-web").stdout, "others untouched"
    removed = _supervisor_play(tmp_path, "absent")
    assert removed.returncode == 0, removed.stdout[-2000:]
    assert not h.file("/etc/supervisor/conf.d/fetchfleet-test-sleep.conf").exists
    assert "fetchfleet-test-sleep" not in h.run("supervisorctl status").stdout
    assert "RUNNING" in h.run("supervisorctl status cloudfetch-web").stdout
