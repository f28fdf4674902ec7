"""The lab's shape from an inventory, and the errors that stop it before anything changes.

Neither root nor the lab: the checks against the machine itself (addresses other interfaces hold,
nftables, another user) are in tests/root/test_lab_preflight.py."""

from __future__ import annotations

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


def test_hosts_take_the_machines_registry_settings_and_none_of_its_docker_image_savers():
    from fetchfleet.lab.image import _reaches_the_registry

    registry = 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n'
    proxy = '// the office proxy\nAcquire::http::Proxy "http://10.0.0.1:3142";\n'
    assert _reaches_the_registry("99artifact-registry", registry)
    assert _reaches_the_registry("30proxy", proxy)
    # Debian's Docker image: no binary cache (every apt run re-reads the lists), compressed lists.
    clean = 'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    assert not _reaches_the_registry("docker-clean", clean)
    assert not _reaches_the_registry("docker-gzip-indexes", 'Acquire::GzipIndexes "true";\n')
    # The machine's desktop hooks, and a file mixing fetch settings with anything else.
    assert not _reaches_the_registry("20packagekit", 'APT::Update::Pre-Invoke {"true";};\n')
    assert not _reaches_the_registry("50mixed", registry + 'APT::Install-Recommends "0";\n')
    assert not _reaches_the_registry("empty", "# nothing\n")
