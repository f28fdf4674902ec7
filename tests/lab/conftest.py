"""Lab tests: real Debian hosts booted on this machine, converged with site.yml.

The session starts from fresh hosts (the base image stays cached), brings the lab up, converges
`playbooks/site.yml` once, runs every test, converges again (that run must report changed=0; it
runs last) and tears the lab down, checking that nothing is left behind. It never takes a lab
that is running without being told (tests/lab/labguard.py): it refuses, naming the two ways on.

    FETCHFLEET_LAB_KEEP=1        test the running lab and leave it up (while developing; never in CI)
    FETCHFLEET_LAB_REPLACE=1     destroy a running lab and start from fresh hosts
    FETCHFLEET_SKIP_CONVERGE=1   skip the first converge (iterating on tests only)

Needs root and the lab's tools; without them every test here fails loudly, it never skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable

import pytest
import testinfra

from fetchfleet import lab as L
from fetchfleet.playbook import Recap, run_playbook

import labguard

SKIP_CONVERGE = os.environ.get("FETCHFLEET_SKIP_CONVERGE") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "converge_again: runs after every other lab test")
    config.addinivalue_line(
        "markers", "last: runs after the other lab tests, before converge_again"
    )


_FIGURES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Tests print measurements as `FIGURE ...` lines; they are gathered for the summary.
    A test's teardown report carries the output of all its phases, so only that one is read."""
    if report.when != "teardown":
        return
    _FIGURES.extend(
        line.removeprefix("FIGURE ").strip()
        for line in report.capstdout.splitlines()
        if line.startswith("FIGURE ")
    )


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _FIGURES:
        terminalreporter.section("lab figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The second converge proves idempotence of everything the other tests left behind; the
    benchmarks' smoke runs (`last`) measure the lab the other tests leave, before it."""

    def order(item: pytest.Item) -> int:
        if item.get_closest_marker("converge_again"):
            return 2
        return 1 if item.get_closest_marker("last") else 0

    items.sort(key=order)


@pytest.fixture(scope="session")
def lab() -> L.Lab:
    """The lab, up. Fails (never skips) with the reason when it cannot come up here."""
    try:
        lab = L.load_lab()
        how = labguard.mode()
        if reason := labguard.refusal(lab, how):
            # One message for the whole session, not one error per test.
            pytest.exit(f"lab: refusing to start the lab tests: {reason}", returncode=2)
        if how != "keep":
            # Fresh boxes: the converge below is a cold one every run, whatever was left before.
            (lab.state_dir / labguard.MARK).unlink(missing_ok=True)
            L.preflight()
            for host in lab.hosts:
                L.destroy_host(lab, host.name)
        cached = (lab.state_dir / "base" / L.base_id(L.base_recipe())).exists()
        t0 = time.monotonic()
        booted = L.up(lab)
    except L.LabError as err:
        pytest.fail(f"the lab is needed for this test and could not come up:\n{err}")
    print(
        f"\nFIGURE lab.up: {time.monotonic() - t0:.1f}s (base image {'cached' if cached else 'built'}); "
        f"{len(booted)} hosts booted, slowest answered SSH after {max(booted.values(), default=0):.1f}s"
    )
    yield lab
    if how == "keep":
        return
    L.down(lab)
    assert_nothing_left(lab)


def assert_nothing_left(lab: L.Lab) -> None:
    """After lab.down: no mounts, links, nft table or processes of the lab remain."""
    state = str(lab.state_dir)
    stale_mounts = [p for p in L.mounts() if str(p).startswith(state)]
    assert not stale_mounts, f"mounts left behind: {stale_mounts}"
    links = [link["ifname"] for link in json.loads(L.run("ip", "-j", "link", "show"))]
    assert lab.bridge not in links, f"bridge {lab.bridge} left behind"
    assert not [n for n in links if n.startswith("vb-")], f"host links left behind: {links}"
    tables = L.run("nft", "list", "tables")
    assert L.NFT_TABLE not in tables, f"nft table {L.NFT_TABLE} left behind"
    procs = subprocess.run(["pgrep", "-f", "systemd-nspawn"], capture_output=True, text=True)
    assert procs.stdout.strip() == "", f"systemd-nspawn processes left behind: {procs.stdout}"


@pytest.fixture(scope="session")
def converged(lab: L.Lab) -> Recap | None:
    """site.yml converged on the whole lab once per session."""
    if SKIP_CONVERGE:
        return None
    recap = run_playbook("site.yml", echo=False)
    assert recap.ok, f"site.yml failed: {recap.hosts}"
    print(
        f"\nFIGURE cold converge of site.yml: {recap.seconds:.1f}s, changed={recap.total('changed')}"
    )
    return recap


@pytest.fixture(scope="session")
def host(lab: L.Lab) -> Callable[[str], testinfra.host.Host]:
    """host("web1") -> a testinfra host over the lab's SSH."""
    cache: dict[str, testinfra.host.Host] = {}

    def get(name: str) -> testinfra.host.Host:
        if name not in cache:
            address = lab.host(name).address
            cache[name] = testinfra.get_host(
                f"ssh://root@{address}",
                ssh_identity_file=str(lab.ssh_key),
                ssh_extra_args=f"-o UserKnownHostsFile={lab.known_hosts} "
                # LogLevel=ERROR: the hosts' login banner goes to stderr otherwise, into every result.
                "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o LogLevel=ERROR",
            )
        return cache[name]

    return get
