"""The web tier in the lab: nginx (load balancer, web hosts, workers' storage), supervisor, the app
runtime, and the first deploy — used the way a person would, through the load balancer.

Runs on the session's converged lab (site.yml imports web.yml), deploys once (fab deploy), then:
sign up, a URL transfer fetched by Celery on the worker from a lab host, list, search (Solr),
download (bytes from the worker's storage through nginx's internal location, not gunicorn), two
users fetching the lab seeder's torrent from a real peer through the app, a dead web host,
maintenance switch, auth rate limit, firewall, bad variables (its second converge is site.yml's, in test_site_idempotence).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from fetchfleet import api
from fetchfleet import deploy as D
from fetchfleet import lab as L
from fetchfleet.api import Response
from fetchfleet.inventory import REPO, load_fleet
from fetchfleet.playbook import Recap, run_playbook

from badvars import assert_refused_before_any_change
from torrents import (
    SEEDER,
    SEEDER_DATA,
    TORRENT_NAME,
    file_digests,
    fixture_torrent,
    fresh_seeder,
    info_hash,
    remote,
    worker_drops,
)

FLEET = load_fleet("lab")
LB = FLEET.group("loadbalancers")[0]
BASE = f"http://{LB.address}"
WEB = [h.name for h in FLEET.group("web")]
WORKER = FLEET.group("workers")[0]
INCOMING = "/srv/cloudfetch/shared/storage/.incoming"
URL_PORT = 8099  # lab-only rule in inventory/lab/group_vars/loadbalancers/nginx.yml


def http(
    method: str, path: str, token: str | None = None, data: dict | None = None, timeout=15.0
) -> Response:
    """One request through the load balancer."""
    return api.call(BASE, method, path, token, data, timeout)


def wait_for_transfer(token: str, transfer_id: int, bound: float) -> dict:
    """The transfer once it has completed or failed, or as it stands after `bound` seconds."""
    deadline = time.monotonic() + bound
    while True:
        transfer = http("GET", f"/api/transfers/{transfer_id}", token).json()
        if transfer["state"] in ("completed", "failed") or time.monotonic() > deadline:
            return transfer
        time.sleep(1)


@pytest.fixture(scope="module")
def deployed(lab, converged) -> dict:
    """A release deployed by `fab deploy`'s code, as `make lab` does (build cached per commit)."""
    report = D.deploy(message="test_web: first deploy", out=print)
    assert report.result == "ok", report
    print(f"\nFIGURE first deploy (fab deploy): {report.seconds:.1f}s, steps {report.steps}")
    version = http("GET", "/version")
    assert version.status == 200, version
    assert version.json()["release"] == report.release
    return {"release": report.release, "report": report}


@pytest.fixture(scope="module")
def user(deployed) -> str:
    """A fresh user's API token, signed up through the load balancer."""
    email = f"web-{secrets.token_hex(4)}@example.com"
    resp = http("POST", "/api/signup", data={"email": email, "password": secrets.token_hex(12)})
    assert resp.status == 201, resp
    return resp.json()["token"]


# python3's http.server, plus `?seconds=S` on a URL: the file is sent in 50 slices over S seconds,
# so a transfer's task is still running when a test kills the worker.
URL_SERVER = """
import functools, http.server, sys, time, urllib.parse

class Handler(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, source, outputfile):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        seconds = float(query.get("seconds", ["0"])[0])
        data = source.read()
        step = max(1, len(data) // 50) if seconds else len(data) or 1
        for start in range(0, len(data), step):
            outputfile.write(data[start : start + step])
            outputfile.flush()
            time.sleep(seconds / 50)

port, address, directory = int(sys.argv[1]), sys.argv[2], sys.argv[3]
handler = functools.partial(Handler, directory=directory)
http.server.ThreadingHTTPServer((address, port), handler).serve_forever()
"""


@pytest.fixture(scope="module")
def url_server(lab) -> Iterator[tuple[str, bytes]]:
    """A file served over HTTP by a lab host (lb1) for a bounded time: (url, its bytes)."""
    payload = secrets.token_bytes(1_500_000)
    directory = f"/tmp/test-web-{secrets.token_hex(4)}"
    name = "Big Buck Bunny sample.bin"
    L.run_on(
        lab,
        LB.name,
        f"mkdir -p {directory}/files && base64 -d > {shlex.quote(directory + '/files/' + name)}",
        stdin=base64.b64encode(payload).decode(),
    )
    L.run_on(lab, LB.name, f"cat > {directory}/serve.py", stdin=URL_SERVER)
    unit = f"test-web-url-{secrets.token_hex(3)}"
    L.run_on(
        lab,
        LB.name,
        f"systemd-run --collect --unit={unit} --property=RuntimeMaxSec=1200 python3 "
        f"{directory}/serve.py {URL_PORT} {LB.address} {directory}/files",
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


def test_healthz_sees_every_component_through_its_authenticated_client(deployed):
    """Database (scram via pgbouncer), broker (the app's RabbitMQ user), search (Solr's app user,
    which may ping: pysolr asks /admin/ping/)."""
    health = http("GET", "/healthz")
    assert health.status == 200, health
    components = health.json()["components"]
    assert {name: c["status"] for name, c in components.items()} == {
        "database": "ok",
        "broker": "ok",
        "search": "ok",
    }, components


def test_static_files_come_from_the_release_through_nginx_not_gunicorn(lab, deployed):
    stylesheet = (REPO / "app/src/cloudfetch/static/cloudfetch.css").read_bytes()
    probes: dict[str, str] = {}  # web host -> a probe it answered
    for _ in range(8):  # round robin: both web hosts answer
        probe = secrets.token_hex(8)
        css = http("GET", f"/static/cloudfetch.css?probe={probe}")
        assert css.status == 200 and css.body == stylesheet, css
        assert css.headers["content-type"].startswith("text/css")
        probes[css.headers["x-cloudfetch-web"]] = probe
    assert sorted(probes) == sorted(WEB)
    # gunicorn logs every request it sees (the control request shows it) and saw none of these.
    control = secrets.token_hex(8)
    answered = http("GET", f"/version?probe={control}").headers["x-cloudfetch-web"]
    logs = {web: L.run_on(lab, web, "cat /var/log/cloudfetch/gunicorn.log").stdout for web in WEB}
    assert control in logs[answered], "gunicorn's access log did not show the control request"
    for web, probe in probes.items():
        assert probe not in logs[web], f"{web}'s gunicorn served /static/"


def test_use_the_app_through_the_load_balancer(lab, deployed, user, url_server):
    """Add a URL transfer, wait until the worker completes it, list, search, download."""
    url, payload = url_server
    added = http("POST", "/api/transfers", user, {"url": url})
    assert added.status == 202, added
    transfer = wait_for_transfer(user, added.json()["id"], 90)
    assert transfer["state"] == "completed", f"transfer ended {transfer['state']}: {transfer}"

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


def test_two_users_fetch_a_real_torrent_through_the_app(lab, deployed, user):
    """End to end with a real peer: two users upload the seeded .torrent through the load
    balancer; the worker's Transmission fetches it once from seed1 (the second user joins the
    first one's download); both get every file, byte for byte, through nginx."""
    data = fixture_torrent(lab)
    L.run_on(lab, WORKER.name, f"cat > /tmp/{TORRENT_NAME}.torrent", stdin=data)
    torrent = info_hash(lab, f"/tmp/{TORRENT_NAME}.torrent")
    worker_drops(lab, torrent)  # the app's own download, not one left by test_transmission
    fresh_seeder(lab, torrent)
    seeded = file_digests(lab, SEEDER, f"{SEEDER_DATA}/{TORRENT_NAME}")

    second = http(
        "POST",
        "/api/signup",
        data={"email": f"web-{secrets.token_hex(4)}@example.com", "password": "x" * 16},
    )
    assert second.status == 201, second
    tokens = [user, second.json()["token"]]
    t0 = time.monotonic()
    transfers = []
    for token in tokens:
        added = api.upload(
            BASE, "/api/transfers", token, "torrent", f"{TORRENT_NAME}.torrent", data
        )
        assert added.status == 202, added
        transfers.append((token, added.json()["id"]))

    deadline = t0 + 180
    states = {
        tid: wait_for_transfer(token, tid, max(0.0, deadline - time.monotonic()))["state"]
        for token, tid in transfers
    }
    assert set(states.values()) == {"completed"}, states
    print(f"\nFIGURE two users' torrent through the app: completed in {time.monotonic() - t0:.1f}s")

    for token, _ in transfers:
        listing = http("GET", f"/api/files?path={TORRENT_NAME}", token).json()
        files = {f["name"]: f for f in listing["files"]}
        assert sorted(files) == sorted(seeded), listing
        for name, digest in seeded.items():
            download = http("GET", f"/api/files/{files[name]['id']}/download", token)
            assert download.status == 200, download
            assert hashlib.sha256(download.body).hexdigest() == digest, name
            assert f"{WORKER.address}:8081" in download.headers.get("x-cloudfetch-storage", "")
    # The app finished with the torrent: Transmission no longer holds it, and the transfers'
    # directories in the incoming tree are gone.
    assert torrent not in remote(lab, "-l").stdout
    incoming = L.run_on(lab, WORKER.name, f"ls -A {INCOMING}", check=False).stdout.split()
    assert not {str(tid) for _, tid in transfers} & set(incoming), incoming
    for token, _ in transfers:
        for f in http("GET", f"/api/files?path={TORRENT_NAME}", token).json()["files"]:
            assert http("DELETE", f"/api/files/{f['id']}", token).status == 204


# Long work survives what the queue is there for (durable queues, persistent messages, late acks,
# reject_on_worker_lost; app/README): a worker killed mid-task, a broker restarted with work waiting.

WORKER_PROGRAM = "cloudfetch-worker"
BROKER = FLEET.group("rabbitmq")[0].name
CELERY_WORKER = "[c]elery.*worker.*-Q transfers"  # the worker, not beat; [c]: not the shell itself


def assert_fetched_once(token: str, transfer: dict, payload: bytes) -> None:
    """Completed, with exactly one file for the transfer holding exactly the served bytes."""
    assert transfer["state"] == "completed", transfer
    listing = http("GET", "/api/files", token).json()["files"]
    files = [f for f in listing if f["transfer_id"] == transfer["id"]]
    assert len(files) == 1, files
    body = http("GET", f"/api/files/{files[0]['id']}/download", token).body
    assert hashlib.sha256(body).digest() == hashlib.sha256(payload).digest()
    assert http("DELETE", f"/api/files/{files[0]['id']}", token).status == 204


def worker_pids(lab) -> set[str]:
    out = L.run_on(lab, WORKER.name, f"pgrep -f {shlex.quote(CELERY_WORKER)}", check=False)
    return set(out.stdout.split())


@pytest.mark.parametrize("victim", ["pool process", "whole worker"])
def test_a_worker_killed_mid_transfer_loses_nothing(lab, deployed, user, url_server, victim):
    """SIGKILL in the middle of a download: the pool process running the task (the master
    requeues it: reject_on_worker_lost), or every worker process at once, as the OOM killer or a
    crash would (the broker requeues the unacked message; supervisor starts a new worker)."""
    url, payload = url_server
    added = http("POST", "/api/transfers", user, {"url": f"{url}?seconds=12"})
    assert added.status == 202, added
    transfer_id = added.json()["id"]
    deadline = time.monotonic() + 30
    while http("GET", f"/api/transfers/{transfer_id}", user).json()["progress"] <= 0:
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.5)
    before = worker_pids(lab)
    if victim == "pool process":  # the children of the worker's master
        command = f"pkill -KILL -P $(pgrep -o -f {shlex.quote(CELERY_WORKER)})"
    else:
        command = f"pkill -KILL -f {shlex.quote(CELERY_WORKER)}"
    L.run_on(lab, WORKER.name, command)
    t0 = time.monotonic()
    transfer = wait_for_transfer(user, transfer_id, 120)
    print(f"\nFIGURE {victim} killed mid-transfer: completed {time.monotonic() - t0:.1f}s later")
    assert before - worker_pids(lab), "no worker process was replaced: nothing was killed"
    assert_fetched_once(user, transfer, payload)
    status = L.run_on(lab, WORKER.name, f"supervisorctl status {WORKER_PROGRAM}").stdout
    assert "RUNNING" in status, status


def test_a_broker_restart_loses_no_waiting_task(lab, deployed, user, url_server):
    """With the worker stopped, a transfer's task waits in RabbitMQ; the broker restarts; the
    task is still there and runs when the worker is back. The web hosts publish again after the
    restart without an error (their connections to the old broker died with it)."""
    url, payload = url_server
    queued = "rabbitmqctl list_queues -p cloudfetch --silent --formatter json name messages"

    def waiting() -> int:
        queues = json.loads(L.run_on(lab, BROKER, queued).stdout)
        return next(q["messages"] for q in queues if q["name"] == "transfers")

    L.run_on(lab, WORKER.name, f"supervisorctl stop {WORKER_PROGRAM}")
    try:
        added = http("POST", "/api/transfers", user, {"url": url})
        assert added.status == 202, added
        assert waiting() >= 1
        t0 = time.monotonic()
        L.run_on(lab, BROKER, "systemctl restart rabbitmq-server && rabbitmqctl await_startup")
        print(f"\nFIGURE rabbitmq-server restart: {time.monotonic() - t0:.1f}s")
        assert waiting() >= 1, "the waiting task did not survive the broker's restart"
    finally:
        L.run_on(lab, BROKER, "systemctl start rabbitmq-server", check=False)
        L.run_on(lab, WORKER.name, f"supervisorctl start {WORKER_PROGRAM}", check=False)
    assert_fetched_once(user, wait_for_transfer(user, added.json()["id"], 90), payload)
    published: set[str] = set()
    for _ in range(20):  # until every web host has published once more
        again = http("POST", "/api/transfers", user, {"url": url})
        assert again.status == 202, again
        assert_fetched_once(user, wait_for_transfer(user, again.json()["id"], 90), payload)
        published.add(again.headers["x-cloudfetch-web"])
        if published == set(WEB):
            break
    assert published == set(WEB), published


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


def test_reinstalling_the_same_release_changes_nothing(deployed):
    """The install step of a deploy of the release already installed (cached build) changes
    nothing on any host: what `fab deploy` of an unchanged tree ships and installs."""
    rel = D.build_release()
    assert rel.reused and rel.id == deployed["release"]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump({"app_release": dataclasses.asdict(rel)}, f)
        f.flush()
        recap: Recap = run_playbook("release-install.yml", extra=["-e", f"@{f.name}"], echo=False)
    assert recap.ok, recap.output[-3000:]
    print(f"\nFIGURE install of the installed release again: {recap.seconds:.1f}s")
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
    assert_refused_before_any_change("web.yml", extra, variable, limit=limit)


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
