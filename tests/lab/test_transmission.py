"""Transmission on the worker, fetching a real torrent from the lab's seeder (seed1).

Run: FETCHFLEET_LAB_KEEP=1 pytest tests/lab/test_transmission.py -s
The lab and the first converge (site.yml) come from tests/lab/conftest.py
(FETCHFLEET_SKIP_CONVERGE=1 skips that converge while iterating).

The worker's RPC answers only the app hosts (web, workers, 127.0.0.1), so the fetch is driven with
transmission-remote on worker1 against 127.0.0.1. The lab inventory (and only it) lets the lab's
gateway through the worker's firewall to 9091 without whitelisting it, so the whitelist itself is
seen refusing (403); db1 and lb1 are refused one layer earlier, by the firewall.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import time
import urllib.error
import urllib.request

import pytest

from fetchfleet.lab import Lab, run_on, secret, tcp_open
from fetchfleet.playbook import run_playbook

from badvars import assert_refused_before_any_change
from torrents import (
    DOWNLOAD_DIR,
    RPC_USER,
    SEEDER,
    SEEDER_DATA,
    TORRENT_NAME,
    WORKER,
    file_digests,
    fixture_torrent,
    fresh_seeder,
    info_hash,
    remote,
    worker_drops,
)

RPC_PORT = 9091
FETCH_BOUND = 180.0  # seconds for the worker to fetch the whole fixture (a few MiB in the lab)


def settings(lab: Lab, name: str) -> dict:
    return json.loads(run_on(lab, name, "cat /etc/transmission-daemon/settings.json").stdout)


def test_worker_settings(lab, converged):
    current = settings(lab, WORKER)
    app_hosts = [h.address for h in lab.hosts if {"web", "workers"} & set(h.groups)]
    assert sorted(current["rpc-whitelist"].split(",")) == sorted([*app_hosts, "127.0.0.1"])
    assert current["rpc-whitelist-enabled"] is True
    assert current["rpc-authentication-required"] is True
    assert current["rpc-username"] == RPC_USER
    # Stored salted and hashed, never the plain password.
    password = current["rpc-password"]
    assert re.fullmatch(r"\{[0-9a-f]{40}.{8}", password), password
    salt = password[41:]
    plain = secret("transmission_rpc")
    assert hashlib.sha1((plain + salt).encode()).hexdigest() == password[1:41]
    assert current["dht-enabled"] is False and current["lpd-enabled"] is False
    assert current["umask"] == 0o002  # the app's storage group may move and link downloads
    assert current["download-dir"] == DOWNLOAD_DIR


def test_settings_drift_is_corrected_while_stopped(lab, converged):
    """A setting changed behind the role's back (RPC, then saved by the daemon on exit) is put
    back by the next converge, and the daemon keeps it across its own rewrite on stop."""
    remote(lab, "--dht")
    run_on(lab, WORKER, "systemctl restart transmission-daemon")
    assert settings(lab, WORKER)["dht-enabled"] is True, "the daemon did not save the drift"
    recap = run_playbook("transmission.yml")
    assert recap.ok and recap.total("changed") > 0, recap.hosts
    assert settings(lab, WORKER)["dht-enabled"] is False
    # ...and the running daemon uses it (not only the file).
    assert "Distributed hash table enabled: No" in remote(lab, "-si").stdout
    run_on(lab, WORKER, "systemctl restart transmission-daemon")
    assert settings(lab, WORKER)["dht-enabled"] is False
    again = run_playbook("transmission.yml")
    assert again.ok and again.total("changed") == 0, again.changed


def test_worker_fetches_the_seeded_torrent(lab, converged):
    target = f"/tmp/{TORRENT_NAME}.torrent"
    run_on(lab, WORKER, f"cat > {target}", stdin=fixture_torrent(lab))
    torrent = info_hash(lab, target)
    # Start from nothing: a previous run's copy is removed together with its data.
    worker_drops(lab, torrent)
    assert run_on(lab, WORKER, f"test -e {DOWNLOAD_DIR}/{TORRENT_NAME}", check=False).returncode
    fresh_seeder(lab, torrent)

    t0 = time.monotonic()
    remote(lab, "-a", target)
    while True:
        info = remote(lab, "-t", torrent, "-i").stdout
        if "Percent Done: 100%" in info:
            break
        assert time.monotonic() - t0 < FETCH_BOUND, f"not complete in {FETCH_BOUND}s:\n{info}"
        time.sleep(0.5)
    seconds = time.monotonic() - t0
    print(f"\nFIGURE worker fetched the seeded torrent in {seconds:.1f}s")

    fetched = file_digests(lab, WORKER, f"{DOWNLOAD_DIR}/{TORRENT_NAME}")
    seeded = file_digests(lab, SEEDER, f"{SEEDER_DATA}/{TORRENT_NAME}")
    assert fetched == seeded and len(seeded) >= 2, (fetched, seeded)
    # Transmission holds a torrent once: leave it to the app's own fetch of it (test_web.py).
    remote(lab, "-t", torrent, "--remove-and-delete")


def test_the_app_may_move_and_link_what_the_daemon_writes(lab, converged):
    """A finished multi-file torrent is a directory the daemon's user created in the app's
    incoming tree. The app moves it into a user's storage (a directory can only change parent
    when its mover may write it) and hard-links its files for other users who added the same
    torrent (fs.protected_hardlinks: only with write access). With Transmission's default umask
    022 both fail (EACCES, EPERM); the role's transmission_umask makes them work."""
    umask = f"{settings(lab, WORKER)['umask']:03o}"
    storage = "/srv/cloudfetch/shared/storage"
    probe = f"{storage}/.incoming/probe-{os.getpid()}"
    user_dir = f"{storage}/u-probe-{os.getpid()}"
    run_on(lab, WORKER, f"runuser -u cloudfetch -- sh -c 'umask 002; mkdir -p {probe} {user_dir}'")
    try:
        run_on(
            lab,
            WORKER,
            f"runuser -u debian-transmission -- sh -c 'umask {umask}; mkdir {probe}/Show"
            f" && echo episode > {probe}/Show/e01.mkv'",
        )
        moved = run_on(
            lab,
            WORKER,
            "runuser -u cloudfetch -- python3 -c "
            + shlex.quote(
                "import os; "
                f"os.link('{probe}/Show/e01.mkv', '{user_dir}/e01-link.mkv'); "
                f"os.replace('{probe}/Show', '{user_dir}/Show')"
            ),
            check=False,
        )
        assert moved.returncode == 0, f"umask {umask}: {moved.stderr}"
        listing = run_on(lab, WORKER, f"stat -c '%h %n' {user_dir}/Show/e01.mkv").stdout
        assert listing.split()[0] == "2", listing  # one file, two names
    finally:
        run_on(lab, WORKER, f"rm -rf {probe} {user_dir}", check=False)


def rpc_request(url: str) -> int:
    """POST a session-get without credentials; the HTTP status the daemon answers with."""
    request = urllib.request.Request(url, data=b'{"method": "session-get"}', method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_rpc_whitelist_refuses_a_host_the_firewall_lets_through(lab, converged):
    """The lab gateway passes the worker's firewall (lab inventory only) but is not whitelisted."""
    address = lab.host(WORKER).address
    assert rpc_request(f"http://{address}:{RPC_PORT}/transmission/rpc") == 403


RPC_CLIENT = """
import base64, json, sys, urllib.error, urllib.request
url, auth = sys.argv[1], base64.b64encode(sys.stdin.readline().strip().encode()).decode()
def post(headers):
    req = urllib.request.Request(url, data=b'{"method": "session-get"}', headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""
codes = [post({})[0]]
status, headers, _ = post({"Authorization": "Basic " + auth})
codes.append(status)
sid = headers.get("X-Transmission-Session-Id", "")
status, _, body = post({"Authorization": "Basic " + auth, "X-Transmission-Session-Id": sid})
codes.append(status)
print(json.dumps({"codes": codes, "result": json.loads(body or b"{}").get("result")}))
"""


@pytest.mark.parametrize("source", ["web1", "web2"])
def test_rpc_serves_app_hosts_with_auth(lab, converged, source):
    url = f"http://{lab.host(WORKER).address}:{RPC_PORT}/transmission/rpc"
    out = run_on(
        lab,
        source,
        f"python3 -c {shlex.quote(RPC_CLIENT)} {url}",
        stdin=f"{RPC_USER}:{secret('transmission_rpc')}\n",
    ).stdout
    answer = json.loads(out)
    # No credentials: 401; credentials without the CSRF session id: 409; both: 200 success.
    assert answer == {"codes": [401, 409, 200], "result": "success"}, answer


@pytest.mark.parametrize("source", ["db1", "lb1"])
def test_rpc_unreachable_from_hosts_outside_the_app(lab, converged, source):
    assert not tcp_open(lab, source, WORKER, RPC_PORT)


def test_peer_port_and_tracker_reachable_in_the_lab(lab, converged):
    assert tcp_open(lab, WORKER, SEEDER, 51413)
    assert tcp_open(lab, WORKER, SEEDER, 6969)
    assert tcp_open(lab, SEEDER, WORKER, 51413)
    # The seeder's RPC is loopback-only.
    assert not tcp_open(lab, WORKER, SEEDER, RPC_PORT)


@pytest.mark.parametrize(
    ("playbook", "extra", "variable"),
    [
        ("transmission.yml", {"transmission_rpc_port": "rpc"}, "transmission_rpc_port"),
        (
            "transmission.yml",
            {"transmission_download_dir": "downloads"},
            "transmission_download_dir",
        ),
        ("transmission.yml", {"transmission_peer_port": 9091}, "transmission_peer_port"),
        (
            "transmission.yml",
            {"transmission_rpc_whitelist_groups": ["nosuchgroup"]},
            "transmission_rpc_whitelist_groups",
        ),
        ("transmission.yml", {"transmission_dht_enabled": "maybe"}, "transmission_dht_enabled"),
        ("transmission.yml", {"transmission_umask": "rw-rw-r--"}, "transmission_umask"),
        (
            "lab_seeder.yml",
            {"lab_seeder_forbidden_groups": ["lab_seeders"]},
            "lab_seeder_forbidden_groups",
        ),
        (
            "lab_seeder.yml",
            {"lab_seeder_files": [{"name": "../x", "size_kib": 1}]},
            "lab_seeder_files",
        ),
    ],
)
def test_bad_variables_stop_before_any_change(lab, converged, playbook, extra, variable):
    assert_refused_before_any_change(playbook, extra, variable)
