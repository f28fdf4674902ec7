"""The checks `fab lab.up` makes before it changes anything, against the real machine: an address
or network another interface holds, the NAT rules nftables would load, a user who is not root,
missing tools. (The lab's shape from an inventory is tested without root: tests/unit/test_lab_spec.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchfleet import lab as L
from fetchfleet.inventory import Fleet, Host

from readable import readable_copy

SETTINGS = {
    "lab_bridge": "fftest0",
    "lab_network": "10.199.0.0/24",
    "lab_gateway": "10.199.0.1",
    "lab_domain": "test.internal",
    "lab_disk_size": "1G",
    "lab_boot_timeout": 5,
}


@pytest.fixture
def lab(tmp_path: Path) -> L.Lab:
    """A two-host lab on 10.199.0.0/24, bridge fftest0: nothing the real lab uses."""
    hosts = (
        Host("a1", "10.199.0.11", ("web",), {}),
        Host("b1", "10.199.0.12", ("db_primary",), {}),
    )
    settings = {**SETTINGS, "lab_state_dir": str(tmp_path / "state")}
    return L.Lab.from_fleet(Fleet("test", tmp_path, hosts, settings))


@pytest.fixture
def interface() -> Iterator[str]:
    """A real interface of this machine (a bridge with no ports), deleted afterwards."""
    name = "ffdummy0"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "delete", name], check=True)


def test_address_taken_by_another_interface_is_refused(lab, interface):
    """Another interface holds a lab host's address: lab.up must refuse, naming both."""
    subprocess.run(["ip", "addr", "add", "10.199.0.12/32", "dev", interface], check=True)
    with pytest.raises(
        L.LabError, match=rf"b1: address 10.199.0.12 is already taken by .*{interface}"
    ):
        L.check_addresses(lab)


def test_overlapping_network_is_refused(lab, interface):
    subprocess.run(["ip", "addr", "add", "10.199.0.200/16", "dev", interface], check=True)
    with pytest.raises(L.LabError, match=rf"overlaps 10.199.0.0/16 on {interface}"):
        L.check_addresses(lab)


def test_nat_rules_name_the_lab_network_and_bridge(lab):
    rules = L._nft_rules(lab)
    assert 'ip saddr 10.199.0.0/24 oifname != "fftest0" masquerade' in rules
    check = subprocess.run(["nft", "-c", "-f", "-"], input=rules, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def _preflight_as(env: dict[str, str], user: str | None = None) -> subprocess.CompletedProcess:
    code = "from fetchfleet import lab\ntry:\n    lab.preflight()\nexcept lab.LabError as e:\n    print(e)\n    raise SystemExit(3)\n"
    if not user:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    # `user` may not read the checkout or the venv; fetchfleet.lab's preflight needs only the
    # stdlib, so a world-readable copy of the package and Debian's python3 are enough.
    with tempfile.TemporaryDirectory() as copy:
        shutil.copytree(Path(L.__file__).parent.parent, Path(copy) / "fetchfleet")
        readable_copy(copy)
        argv = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"]
        return subprocess.run(
            [*argv, "/usr/bin/python3", "-c", code],
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": copy},
            cwd=copy,
        )


def test_not_root_is_refused_with_the_command_to_run():
    proc = _preflight_as(dict(os.environ), user="nobody")
    assert proc.returncode == 3, proc.stderr
    assert "needs root" in proc.stdout
    assert "sudo fab lab.up" in proc.stdout


def test_missing_tools_are_named_with_the_fix(tmp_path):
    proc = _preflight_as({**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 3, proc.stderr
    assert "missing tools: debootstrap" in proc.stdout
    assert "make setup" in proc.stdout
    assert "systemd-container" in proc.stdout
