"""One lab host's life: created on the base image (its own disk, identity and keys), booted with
systemd-nspawn, up once SSH answers and its boot has settled, powered off, killed, destroyed."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from fetchfleet import remote
from fetchfleet.lab.access import run_on
from fetchfleet.lab.model import Lab, LabError, LabHost, is_mounted, run, say
from fetchfleet.lab.network import _drop_link
from fetchfleet.lab.procs import (
    Proc,
    _leader,
    _live,
    _record,
    _save_record,
    _signal_all,
    _wait_dead,
)

STOP_TIMEOUT = 30.0


def _hosts_file(lab: Lab) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback", ""]
    lines += [f"{h.address} {h.name}.{lab.domain} {h.name}" for h in lab.hosts]
    return "\n".join(lines) + "\n"


def _network_file(lab: Lab, host: LabHost) -> str:
    return (
        "# written by fetchfleet's lab at host creation\n"
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={host.address}/{lab.network.prefixlen}\n"
        f"Gateway={lab.gateway}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )


def ensure_ssh_key(lab: Lab) -> None:
    if lab.ssh_key.exists():
        return
    lab.ssh_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    run(
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "fetchfleet-lab",
        "-f",
        str(lab.ssh_key),
    )
    say(f"generated the lab's SSH key {lab.ssh_key}")


def _mount_disk(lab: Lab, name: str) -> None:
    mnt = lab.disk_mount(name)
    if not is_mounted(mnt):
        mnt.mkdir(parents=True, exist_ok=True)
        run("mount", "-o", "loop", str(lab.disk_image(name)), str(mnt), host=name)


def _mount_root(lab: Lab, name: str) -> None:
    root, mnt = lab.root(name), lab.disk_mount(name)
    if is_mounted(root):
        return
    base = lab.state_dir / "base" / (lab.host_dir(name) / "base").read_text().strip()
    if not (base / "etc/os-release").exists():
        raise LabError(
            f"its base image {base.name} is gone",
            name,
            f"give it a fresh root: fab lab.reset {name}",
        )
    root.mkdir(parents=True, exist_ok=True)
    (mnt / "upper").mkdir(exist_ok=True)
    (mnt / "work").mkdir(exist_ok=True)
    options = f"lowerdir={base},upperdir={mnt / 'upper'},workdir={mnt / 'work'}"
    run("mount", "-t", "overlay", "overlay", "-o", options, str(root), host=name)


def create_host(lab: Lab, host: LabHost, base: Path) -> None:
    """A fresh host: an empty disk, the base image below it, its identity written on top."""
    hdir = lab.host_dir(host.name)
    hdir.mkdir(parents=True, exist_ok=True)
    (hdir / "base").write_text(base.name + "\n")
    image = lab.disk_image(host.name)
    partial = image.with_suffix(".partial")
    run("truncate", "-s", lab.disk_size, str(partial), host=host.name)
    run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", host.name, str(partial), host=host.name)
    partial.rename(image)
    _mount_disk(lab, host.name)
    _mount_root(lab, host.name)
    root = lab.root(host.name)
    (root / "etc/hostname").write_text(host.name + "\n")
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "etc/hosts").write_text(_hosts_file(lab))
    (root / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/network/10-lab.network").write_text(_network_file(lab, host))
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(lab.ssh_key.with_suffix(".pub").read_text())
    keys.chmod(0o600)
    run("ssh-keygen", "-A", "-f", str(root), host=host.name)
    # Kept beside the disk too: known_hosts is rebuilt while some roots are not mounted.
    shutil.copy(root / "etc/ssh/ssh_host_ed25519_key.pub", hdir / "ssh_host_ed25519_key.pub")


def _host_key_line(lab: Lab, host: LabHost) -> str | None:
    pub = lab.host_dir(host.name) / "ssh_host_ed25519_key.pub"
    if not pub.exists():
        return None
    kind, key = pub.read_text().split()[:2]
    return f"{host.name},{host.name}.{lab.domain},{host.address} {kind} {key}"


def write_known_hosts(lab: Lab) -> None:
    lines = [line for h in lab.hosts if (line := _host_key_line(lab, h))]
    text = "\n".join(lines) + "\n"
    if not lab.known_hosts.exists() or lab.known_hosts.read_text() != text:
        lab.known_hosts.write_text(text)


def boot_host(lab: Lab, host: LabHost) -> None:
    name = host.name
    remote.forget(host.address)  # a new boot (maybe with new host keys) needs new connections
    _mount_disk(lab, name)
    _mount_root(lab, name)
    log = lab.console_log(name).open("w")
    cmd = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        f"--directory={lab.root(name)}",
        f"--machine={name}",
        "--register=no",
        "--keep-unit",
        f"--network-bridge={lab.bridge}",
        "--console=read-only",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
    ]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    nspawn = Proc.of(proc.pid)
    if nspawn is None:
        raise LabError("systemd-nspawn exited at once", name, f"see {lab.console_log(name)}")
    _save_record(lab, name, {"nspawn": nspawn})


def _ssh_ready(lab: Lab, host: LabHost) -> bool:
    try:
        with socket.create_connection((host.address, 22), timeout=1) as conn:
            conn.settimeout(2)
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


# Run once SSH answers: wait for the boot to finish, give units that failed at boot another
# start, and succeed only when no unit is failed and unprivileged users may log in (else the
# caller runs it again, until the boot timeout). Under load, nspawn hosts sometimes lose the
# race for a unit's cgroup ("Failed at step CGROUP", status 219): seen on systemd-user-sessions
# (which then leaves /run/nologin, so the admin users cannot log in) and on
# systemd-networkd-wait-online. network-online.target is reached here, as part of the boot: a
# minbase host has no unit that wants it, so the first service that does (journal-upload) would
# start wait-online mid-converge, where a lost race leaves the host degraded for good.
_BOOT_SETTLED = """
timeout 30 systemctl start network-online.target >/dev/null 2>&1
timeout 30 systemctl is-system-running --wait >/dev/null 2>&1
failed=$(systemctl list-units --state=failed --no-legend --plain | awk '{print $1}')
if [ -n "$failed" ]; then
    echo "restarted units that failed at boot: $failed" >&2
    systemctl reset-failed
    systemctl restart $failed
fi
test -z "$(systemctl list-units --state=failed --no-legend --plain)" && test ! -e /run/nologin
"""


def _note_leader(lab: Lab, name: str, record: dict[str, Proc], nspawn: Proc) -> dict[str, Proc]:
    """Record the host's PID 1 once it exists: kill_host and the orphan recovery need it."""
    if "leader" not in record and (leader := _leader(nspawn)):
        record = {**record, "leader": leader}
        _save_record(lab, name, record)
    return record


def wait_until_up(lab: Lab, host: LabHost, since: float) -> float:
    """Wait until the host answers SSH with its pinned key and its boot has settled (see
    _BOOT_SETTLED); returns seconds it took."""
    name = host.name
    deadline = since + lab.boot_timeout
    record: dict[str, Proc] = {}
    while time.monotonic() < deadline:
        record = _record(lab, name)
        nspawn = record.get("nspawn")
        if nspawn is None or not nspawn.alive():
            tail = lab.console_log(name).read_text()[-1500:]
            raise LabError(f"its systemd-nspawn exited during boot:\n{tail}", name)
        record = _note_leader(lab, name, record, nspawn)
        if (
            _ssh_ready(lab, host)
            and run_on(lab, host.name, _BOOT_SETTLED, check=False, timeout=60).returncode == 0
            and time.monotonic() <= deadline  # an attempt begun in time may end after it
        ):
            took = time.monotonic() - since
            # A fast boot can answer in the first round, begun before nspawn had forked PID 1.
            _note_leader(lab, name, record, nspawn)
            return took
        time.sleep(0.3)
    tail = lab.console_log(name).read_text()[-1500:]
    raise LabError(
        f"did not answer SSH within {lab.boot_timeout:.0f}s (lab_boot_timeout); console:\n{tail}",
        name,
        f"look closer: fab lab.status; less {lab.console_log(name)}",
    )


def kill_host(lab: Lab, name: str) -> None:
    """Pull the power: PID 1 of the host dies at once, and with it everything in the host."""
    remote.forget(lab.host(name).address)  # a kept connection to a dead host would only hang
    procs = _live(lab, name)
    _signal_all([procs[k] for k in ("leader",) if k in procs], signal.SIGKILL)
    _signal_all(procs.values(), signal.SIGKILL)
    if not _wait_dead(procs.values(), 10):
        raise LabError("still running after SIGKILL", name, f"ps -p {procs['nspawn'].pid}")
    _drop_link(name)


def stop_host(lab: Lab, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """A clean poweroff (SIGTERM to nspawn asks the host's systemd to shut down)."""
    remote.forget(lab.host(name).address)
    procs = _live(lab, name)
    if "nspawn" in procs:
        _signal_all([procs["nspawn"]], signal.SIGTERM)
        if not _wait_dead(procs.values(), timeout):
            say(f"did not power off within {timeout:.0f}s; killing it", name)
            kill_host(lab, name)
    elif "leader" in procs:  # nspawn died (killed) but the host lives on: orphaned
        kill_host(lab, name)


def unmount_host(lab: Lab, name: str) -> None:
    for path in (lab.root(name), lab.disk_mount(name)):
        for _ in range(50):
            if not is_mounted(path):
                break
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                time.sleep(0.2)
        if is_mounted(path):
            raise LabError(f"{path} stays mounted (busy)", name, f"fuser -vm {path}")


def destroy_host(lab: Lab, name: str) -> None:
    stop_host(lab, name)
    unmount_host(lab, name)
    shutil.rmtree(lab.host_dir(name), ignore_errors=True)
