"""The lab's shape from an inventory, and the errors that stop it before anything changes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from fetchfleet import lab as L
from fetchfleet.inventory import InventoryError, load_fleet
from fetchfleet.playbook import parse_recap

LAB_VARS = """
lab_state_dir: {state}
lab_bridge: fftest0
lab_network: 10.199.0.0/24
lab_gateway: 10.199.0.1
lab_domain: test.internal
lab_disk_size: 1G
lab_boot_timeout: 5
"""


def inventory(tmp_path: Path, hosts: str, lab_vars: str = LAB_VARS) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(textwrap.dedent(hosts))
    (inv / "group_vars" / "all" / "lab.yml").write_text(lab_vars.format(state=tmp_path / "state"))
    return inv


TWO_HOSTS = """
all:
  hosts:
    a1: {ansible_host: 10.199.0.11}
    b1: {ansible_host: 10.199.0.12}
  children:
    web: {hosts: {a1: }}
    db_primary: {hosts: {b1: }}
"""


def test_the_repository_lab_inventory_describes_the_fleet():
    fleet = load_fleet("lab")
    groups = {g for h in fleet.hosts for g in h.groups}
    for needed in ("loadbalancers", "web", "workers", "db_primary", "db_replicas", "rabbitmq"):
        assert needed in groups
    assert len(fleet.group("web")) == 2
    separate = [fleet.group(g)[0].name for g in ("web", "db_primary", "db_replicas", "backup")]
    assert len(set(separate)) == 4, "web, db_primary, db_replicas and backup are separate hosts"
    lab = L.Lab.from_fleet(fleet)
    assert 8 <= len(lab.hosts) <= 10


def test_lab_reads_hosts_groups_and_settings(tmp_path):
    lab = L.Lab.from_fleet(load_fleet(str(inventory(tmp_path, TWO_HOSTS))))
    assert [(h.name, h.address) for h in lab.hosts] == [
        ("a1", "10.199.0.11"),
        ("b1", "10.199.0.12"),
    ]
    assert lab.host("a1").groups == ("web",)
    assert str(lab.gateway) == "10.199.0.1"
    assert lab.root("a1") == tmp_path / "state" / "hosts" / "a1" / "root"


def test_unknown_host_names_the_known_ones(tmp_path):
    lab = L.Lab.from_fleet(load_fleet(str(inventory(tmp_path, TWO_HOSTS))))
    with pytest.raises(L.LabError, match=r"no lab host 'zz'.*a1, b1"):
        lab.host("zz")


def test_address_outside_the_lab_network_is_refused(tmp_path):
    hosts = TWO_HOSTS.replace("10.199.0.12", "10.200.0.12")
    with pytest.raises(L.LabError, match=r"b1: address 10.200.0.12 is not a usable host address"):
        L.Lab.from_fleet(load_fleet(str(inventory(tmp_path, hosts))))


def test_two_hosts_with_one_address_are_refused(tmp_path):
    hosts = TWO_HOSTS.replace("10.199.0.12", "10.199.0.11")
    with pytest.raises(L.LabError, match=r"b1: address 10.199.0.11 is also given to a1"):
        L.Lab.from_fleet(load_fleet(str(inventory(tmp_path, hosts))))


def test_missing_lab_setting_names_it(tmp_path):
    lab_vars = LAB_VARS.replace("lab_bridge: fftest0\n", "")
    with pytest.raises(InventoryError, match="lab_bridge"):
        L.Lab.from_fleet(load_fleet(str(inventory(tmp_path, TWO_HOSTS, lab_vars))))


def test_unknown_environment_is_named():
    with pytest.raises(InventoryError, match=r"unknown environment 'nowhere'.*lab"):
        load_fleet("nowhere")


def test_address_taken_by_another_interface_is_refused(tmp_path):
    """A real dummy interface holds a lab host's address: lab.up must refuse, naming both."""
    lab = L.Lab.from_fleet(load_fleet(str(inventory(tmp_path, TWO_HOSTS))))
    subprocess.run(["ip", "link", "add", "ffdummy0", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.199.0.12/32", "dev", "ffdummy0"], check=True)
        with pytest.raises(
            L.LabError, match=r"b1: address 10.199.0.12 is already taken by .*ffdummy0"
        ):
            L.check_addresses(lab)
    finally:
        subprocess.run(["ip", "link", "delete", "ffdummy0"], check=True)


def test_overlapping_network_is_refused(tmp_path):
    lab = L.Lab.from_fleet(load_fleet(str(inventory(tmp_path, TWO_HOSTS))))
    subprocess.run(["ip", "link", "add", "ffdummy1", "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.199.0.200/16", "dev", "ffdummy1"], check=True)
        with pytest.raises(L.LabError, match=r"overlaps 10.199.0.0/16 on ffdummy1"):
            L.check_addresses(lab)
    finally:
        subprocess.run(["ip", "link", "delete", "ffdummy1"], check=True)


def _preflight_as(env: dict[str, str], user: str | None = None) -> subprocess.CompletedProcess:
    code = "from fetchfleet import lab\ntry:\n    lab.preflight()\nexcept lab.LabError as e:\n    print(e)\n    raise SystemExit(3)\n"
    if not user:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    # `user` may not read the checkout or the venv; fetchfleet.lab needs only the stdlib, so a
    # world-readable copy of the package and Debian's python3 are enough.
    with tempfile.TemporaryDirectory() as copy:
        os.chmod(copy, 0o755)
        shutil.copytree(Path(L.__file__).parent, Path(copy) / "fetchfleet")
        for path in Path(copy).rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
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


def test_base_image_id_follows_its_recipe():
    recipe = L.base_recipe()
    assert L.base_id(recipe) == L.base_id(dict(recipe))
    assert L.base_id({**recipe, "packages": [*recipe["packages"], "vim"]}) != L.base_id(recipe)


def test_recap_is_read_per_host():
    output = textwrap.dedent("""\
        TASK [x] ***
        ok: [a1]
        PLAY RECAP *********************************************************************
        a1                         : ok=20   changed=0    unreachable=0    failed=0    skipped=1    rescued=0    ignored=0
        b1                         : ok=3    changed=2    unreachable=1    failed=1    skipped=0    rescued=0    ignored=0
        """)
    hosts = parse_recap(output)
    assert hosts["a1"]["changed"] == 0 and hosts["a1"]["ok"] == 20
    assert hosts["b1"] == {
        "ok": 3, "changed": 2, "unreachable": 1, "failed": 1, "skipped": 0, "rescued": 0, "ignored": 0,
    }  # fmt: skip


def test_nat_rules_name_the_lab_network_and_bridge(tmp_path):
    lab = L.Lab.from_fleet(load_fleet(str(inventory(tmp_path, TWO_HOSTS))))
    rules = L._nft_rules(lab)
    assert 'ip saddr 10.199.0.0/24 oifname != "fftest0" masquerade' in rules
    check = subprocess.run(["nft", "-c", "-f", "-"], input=rules, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
