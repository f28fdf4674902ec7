"""tests/lab/labguard.py: the lab tests refuse a running lab they did not start, and name the two
ways on. A host counts as running when its recorded systemd-nspawn process is alive (pid and
start time, as fetchfleet.lab records them): here the records name real processes, this test's
own (alive) and one that has exited."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fetchfleet import lab as L
from fetchfleet.inventory import REPO, Fleet, Host

# tests/lab is not a package; its helper is imported the way its own tests import it.
sys.path.insert(0, str(REPO / "tests" / "lab"))
import labguard

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
    hosts = tuple(Host(n, f"10.199.0.{11 + i}", ("web",), {}) for i, n in enumerate(("a1", "b1")))
    return L.Lab.from_fleet(
        Fleet("test", tmp_path, hosts, {**SETTINGS, "lab_state_dir": str(tmp_path)})
    )


def record(lab: L.Lab, name: str, pid: int) -> None:
    """What fetchfleet.lab writes when it boots a host: its nspawn's pid and start time."""
    proc = L.Proc.of(pid)
    assert proc is not None
    lab.host_dir(name).mkdir(parents=True, exist_ok=True)
    (lab.host_dir(name) / "run.json").write_text(
        json.dumps({"nspawn": {"pid": proc.pid, "start": proc.start}})
    )


def test_no_lab_state_means_nothing_to_refuse(lab):
    assert labguard.running_hosts(lab) == []
    assert labguard.refusal(lab, "fresh") is None


def test_a_running_host_is_refused_with_both_ways_on(lab):
    record(lab, "b1", os.getpid())
    assert labguard.running_hosts(lab) == ["b1"]
    reason = labguard.refusal(lab, "fresh")
    assert reason and "1 of the lab's 2 hosts are running (b1)" in reason
    assert "FETCHFLEET_LAB_KEEP=1 make test" in reason
    assert "FETCHFLEET_LAB_REPLACE=1 make test" in reason and "fab lab.down" in reason


def test_keep_or_replace_takes_the_running_lab(lab):
    record(lab, "a1", os.getpid())
    assert labguard.refusal(lab, "keep") is None
    assert labguard.refusal(lab, "replace") is None


def test_a_host_whose_process_has_exited_is_not_running(lab):
    """A lab left by a machine that rebooted, or by `fab lab.down`: records of dead processes."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        record(lab, "a1", child.pid)
        assert labguard.running_hosts(lab) == ["a1"]
    finally:
        child.kill()
        child.wait()
    assert labguard.running_hosts(lab) == []
    assert labguard.refusal(lab, "fresh") is None


@pytest.mark.parametrize(
    ("env", "how"),
    [
        ({}, "fresh"),
        ({"FETCHFLEET_LAB_KEEP": "1"}, "keep"),
        ({"FETCHFLEET_LAB_REPLACE": "1"}, "replace"),
    ],
)
def test_the_mode_comes_from_the_environment(monkeypatch, env, how):
    for name in ("FETCHFLEET_LAB_KEEP", "FETCHFLEET_LAB_REPLACE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert labguard.mode() == how


def test_keep_and_replace_together_are_refused(monkeypatch):
    monkeypatch.setenv("FETCHFLEET_LAB_KEEP", "1")
    monkeypatch.setenv("FETCHFLEET_LAB_REPLACE", "1")
    with pytest.raises(L.LabError, match="contradict each other"):
        labguard.mode()


def test_the_script_exits_2_and_says_why_on_a_refusal():
    """`make lab-free` runs the script: a refusal is exit 2 with its reason on stderr (here the
    contradiction, which is refused whatever this machine's lab is doing)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests/lab/labguard.py")],
        capture_output=True,
        text=True,
        env={**os.environ, "FETCHFLEET_LAB_KEEP": "1", "FETCHFLEET_LAB_REPLACE": "1"},
        check=False,
    )
    assert proc.returncode == 2 and "contradict each other" in proc.stderr, proc.stderr
