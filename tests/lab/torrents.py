"""The lab's torrent fixture: transmission-remote on the worker and on the seeder (seed1).

Both daemons answer RPC on 127.0.0.1 only for these purposes (the worker's whitelist is the app
hosts; the seeder's RPC is loopback-only), so the commands run on the hosts themselves, with the
credentials on stdin.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time

from fetchfleet.lab import Lab, run_on, secret

WORKER, SEEDER = "worker1", "seed1"
RPC_USER = "cloudfetch"
DOWNLOAD_DIR = "/srv/cloudfetch/shared/transmission"
SEEDER_DATA = "/srv/lab-seeder/data"
TORRENT_NAME = "fetchfleet-fixture"


def _remote(lab: Lab, name: str, auth: str, args: tuple[str, ...], check: bool):
    command = (
        "read -r TR_AUTH; export TR_AUTH; transmission-remote 127.0.0.1:9091 --authenv "
        + shlex.join(args)
    )
    return run_on(lab, name, command, stdin=auth + "\n", check=check)


def remote(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """transmission-remote on the worker against its own daemon (127.0.0.1 is whitelisted)."""
    return _remote(lab, WORKER, f"{RPC_USER}:{secret('transmission_rpc')}", args, check)


def seeder_remote(lab: Lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """transmission-remote on the seeder against its own (loopback-only) daemon."""
    return _remote(lab, SEEDER, f"seeder:{secret('lab_seeder_rpc')}", args, check)


def fixture_torrent(lab: Lab) -> bytes:
    """The seeded .torrent, as the lab_seeder role fetched it to the control machine."""
    local = lab.state_dir / "seeder" / f"{TORRENT_NAME}.torrent"
    assert local.exists(), f"{local} missing: converge playbooks/lab_seeder.yml first"
    return local.read_bytes()


def info_hash(lab: Lab, path: str) -> str:
    shown = run_on(lab, WORKER, f"transmission-show {shlex.quote(path)}").stdout
    match = re.search(r"Hash: ([0-9a-f]{40})", shown)
    assert match, shown
    return match[1]


def file_digests(lab: Lab, name: str, directory: str) -> dict[str, str]:
    out = run_on(lab, name, f"cd {shlex.quote(directory)} && sha256sum -- *").stdout
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def worker_drops(lab: Lab, torrent: str) -> None:
    """The worker's daemon holds no copy of the torrent (removed with its data)."""
    remote(lab, "-t", torrent, "--remove-and-delete", check=False)
    deadline = time.monotonic() + 30
    while torrent in remote(lab, "-t", torrent, "-i").stdout:
        assert time.monotonic() < deadline, "old copy of the torrent was not removed"
        time.sleep(0.5)


def fresh_seeder(lab: Lab, torrent: str) -> None:
    """Make the seeder serve a worker that already fetched the torrent once.

    Transmission 3.00 remembers a peer that finished downloading as a seed, keyed by its address,
    for as long as the torrent's swarm lives; when it is a seed itself it then refuses every
    incoming handshake from that address ("another seed tried to reconnect"), and the worker,
    whose connections die mid-handshake, backs off for minutes. Measured in the lab: the worker's
    second fetch of the fixture stayed at 0% (uTP and TCP handshakes dropped by seed1) until the
    seeder's daemon restarted, then completed in seconds. A restart (not a stop/start of the
    torrent, which keeps the swarm) forgets; wait until the seeder has the whole torrent again.
    """
    run_on(lab, SEEDER, "systemctl restart transmission-daemon")
    deadline = time.monotonic() + 60
    while "Percent Done: 100%" not in seeder_remote(lab, "-t", torrent, "-i", check=False).stdout:
        assert time.monotonic() < deadline, "the seeder does not have the whole torrent"
        time.sleep(0.5)
