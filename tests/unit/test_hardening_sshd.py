"""roles/hardening's sshd settings against a real sshd (Debian's OpenSSH 9.2, started on a free
loopback port as root) and the suite's real clients: paramiko 5.1 through fetchfleet.remote (what
fab and the deploy use) and OpenSSH's ssh (what ansible and testinfra use). The lab tests check
the same settings with `sshd -T` on every converged host."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import free_port
from hardening_render import render_hardening

from fetchfleet.programs.hardening_state import matches, sshd_settings
from fetchfleet.remote import SSH, Target

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not Path(SSHD).exists():
        pytest.fail("sshd is needed (Debian's openssh-server: make setup installs it)")
    return render_hardening(tmp_path_factory.mktemp("hardening"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sshd-keys")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "client.pub").read_text())
    return {
        "host": d / "host",
        "client": d / "client",
        "authorized": d / "authorized_keys",
        "dir": d,
    }


class Server:
    def __init__(self, config: Path, keys: dict[str, Path]):
        self.port = free_port()
        self.keys = keys
        self.known_hosts = keys["dir"] / f"known_hosts-{self.port}"
        host_pub = (keys["dir"] / "host.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        # The rendered drop-in is the whole configuration; only what a test server needs is
        # added on the command line (sshd keeps the first value, and -o comes first).
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config), "-h", str(keys["host"]),
             "-o", f"ListenAddress=127.0.0.1:{self.port}",
             "-o", f"AuthorizedKeysFile={keys['authorized']}",
             "-o", "StrictModes=no", "-o", f"PidFile={keys['dir']}/sshd-{self.port}.pid"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4) == b"SSH-":
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"sshd did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")

    def ssh(self, *extra: str, user: str = "root") -> subprocess.CompletedProcess:
        argv = ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.keys["client"]),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", *extra, f"{user}@127.0.0.1", "echo ok"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def lab_sshd(rendered: dict[str, Path], keys: dict[str, Path]) -> Iterator[Server]:
    server = Server(rendered["lab"] / "sshd.conf", keys)
    yield server
    server.stop()


def effective(config: Path, keys: dict[str, Path]) -> dict[str, list[str]]:
    out = subprocess.run(
        [SSHD, "-T", "-f", str(config), "-h", str(keys["host"]), "-C", "user=ops,host=web1,addr=10.77.0.1"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sshd_settings(out)


@pytest.mark.parametrize("variant", ["lab", "real"])
def test_sshd_accepts_the_config_and_its_effective_settings_are_the_recorded_ones(
    rendered: dict[str, Path], keys: dict[str, Path], variant: str
) -> None:
    config = rendered[variant] / "sshd.conf"
    check = subprocess.run(
        [SSHD, "-t", "-f", str(config), "-h", str(keys["host"])], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    settings = effective(config, keys)
    record = json.loads((rendered[variant] / "hardening.json").read_text())
    expected = [c for c in record["controls"] if c["kind"] == "sshd"]
    assert len(expected) >= 20
    for control in expected:
        # The same comparison fab security.report makes on every host.
        assert matches("sshd", control["expect"], settings.get(control["key"], [])), (
            control["key"], control["expect"], settings.get(control["key"]))  # fmt: skip
    want_root = "without-password" if variant == "lab" else "no"
    assert settings["permitrootlogin"] == [want_root]
    assert ("root" in settings["allowgroups"]) == (variant == "lab")


def test_the_suites_paramiko_client_connects_with_strong_algorithms(
    lab_sshd: Server, keys: dict
) -> None:
    target = Target(
        name="loopback", address="127.0.0.1", port=lab_sshd.port, user="root",
        key=str(keys["client"]), known_hosts=str(lab_sshd.known_hosts),
    )  # fmt: skip
    runner = SSH(target)
    try:
        assert runner.run("echo ok").stdout.strip() == "ok"
        transport = runner._connection().transport
        assert transport.agreed_on_strict_kex, "no strict KEX: the connection is open to Terrapin"
        assert transport.local_cipher in {
            "aes128-ctr",
            "aes192-ctr",
            "aes256-ctr",
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
        }
        assert transport.host_key_type == "ssh-ed25519"
    finally:
        runner.close()


def test_openssh_connects_and_weak_algorithms_are_refused(lab_sshd: Server) -> None:
    ok = lab_sshd.ssh()
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stderr
    for options, what in [
        (["Ciphers=aes128-cbc"], "no matching cipher"),
        (["KexAlgorithms=diffie-hellman-group14-sha1"], "no matching key exchange"),
        (["Ciphers=aes128-ctr", "MACs=hmac-sha1"], "no matching MAC"),
        (["HostKeyAlgorithms=ecdsa-sha2-nistp256"], "no matching host key type"),
    ]:
        weak = lab_sshd.ssh(*[arg for option in options for arg in ("-o", option)])
        assert weak.returncode != 0 and what in weak.stderr, (options, weak.stderr)


def test_only_keys_are_offered_and_nothing_is_forwarded(lab_sshd: Server, keys: dict) -> None:
    transport = paramiko.Transport(("127.0.0.1", lab_sshd.port))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("root", "any-password")
        assert refused.value.allowed_types == ["publickey"]
        transport.auth_publickey(
            "root", paramiko.Ed25519Key.from_private_key_file(str(keys["client"]))
        )
        with pytest.raises(paramiko.ChannelException) as prohibited:
            transport.open_channel("direct-tcpip", ("127.0.0.1", lab_sshd.port), ("127.0.0.1", 0))
        assert prohibited.value.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    finally:
        transport.close()


def test_the_default_refuses_root_even_with_its_key(rendered: dict[str, Path], keys: dict) -> None:
    if os.geteuid() != 0:
        pytest.fail("the sshd tests run sshd as root (as CI does)")
    server = Server(rendered["real"] / "sshd.conf", keys)
    try:
        refused = server.ssh()
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    finally:
        server.stop()
