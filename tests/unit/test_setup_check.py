"""`make setup`'s first step (scripts/setup.sh): the machine is checked before anything changes.

The checks read the system through overridable inputs (FETCHFLEET_OS_RELEASE, PYTHON,
FETCHFLEET_APT_LISTS), so other systems are played here by their os-release files. Each refusal
runs the real script on a copy of the checkout's scripts/ and requirements/: a run that got past
its checks would make that copy's .venv, which the tests look for. Which packages it would
install, and the refusal of a user who is not root, live in tests/root (they run the script as
root and as another user).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fetchfleet.inventory import REPO

DEBIAN_12 = (REPO / "tests/unit/recorded/os-release/debian-12").read_text()


def checkout(tmp_path: Path) -> Path:
    """A copy of what setup.sh reads: its scripts and the requirement lists."""
    copy = tmp_path / "checkout"
    shutil.copytree(REPO / "scripts", copy / "scripts")
    shutil.copytree(REPO / "requirements", copy / "requirements")
    return copy


def setup(
    tmp_path: Path, *args: str, os_release: str | None = DEBIAN_12, **env: str
) -> subprocess.CompletedProcess:
    """scripts/setup.sh on a copy of the checkout; os_release None: this machine's own."""
    copy = checkout(tmp_path)
    environ = {k: v for k, v in os.environ.items() if k != "FETCHFLEET_OS_RELEASE"}
    if os_release is not None:
        release = tmp_path / "os-release"
        release.write_text(os_release)
        environ["FETCHFLEET_OS_RELEASE"] = str(release)
    environ.update(env)
    return subprocess.run(
        [str(copy / "scripts/setup.sh"), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def python_reporting(tmp_path: Path, version: str) -> str:
    """An interpreter that reports another Python version (only 3.11 is installed here)."""
    fake = tmp_path / f"python{version}"
    fake.write_text(f"#!/bin/sh\necho {version}\n")
    fake.chmod(0o755)
    return str(fake)


def assert_refused_before_any_change(proc: subprocess.CompletedProcess, tmp_path: Path) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot run fetchfleet yet (nothing was changed)" in proc.stderr, proc.stderr
    assert not (tmp_path / "checkout/.venv").exists(), "setup went on past its checks"
    assert "installing" not in proc.stdout, proc.stdout


def test_this_machine_passes_and_says_what_it_found(tmp_path):
    """The real /etc/os-release and python3: the suite runs on Debian 12 only."""
    proc = setup(tmp_path, "--check", os_release=None)
    assert proc.returncode == 0, proc.stderr
    assert "setup: Debian GNU/Linux 12 (bookworm), Python 3.11." in proc.stdout
    assert not (tmp_path / "checkout/.venv").exists(), "--check must change nothing"


@pytest.mark.parametrize(
    ("system", "shown"),
    [
        ("ubuntu-24.04", "Ubuntu 24.04.1 LTS"),
        ("debian-11", "Debian GNU/Linux 11 (bullseye)"),
        ("debian-13", "Debian GNU/Linux 13 (trixie)"),
    ],
)
def test_another_system_is_refused_before_any_change(tmp_path, system, shown):
    release = (REPO / "tests/unit/recorded/os-release" / system).read_text()
    proc = setup(tmp_path, os_release=release)
    assert_refused_before_any_change(proc, tmp_path)
    assert f"this machine runs {shown}" in proc.stderr, proc.stderr
    assert "fetchfleet needs Debian 12 (bookworm)" in proc.stderr


def test_an_unreadable_os_release_is_named(tmp_path):
    missing = tmp_path / "no-such-os-release"
    proc = setup(tmp_path, FETCHFLEET_OS_RELEASE=str(missing))
    assert_refused_before_any_change(proc, tmp_path)
    assert f"cannot read {missing}" in proc.stderr


@pytest.mark.parametrize("version", ["3.12.3", "3.10.12", "3.9.2"])
def test_another_python_is_refused_before_any_change(tmp_path, version):
    python = python_reporting(tmp_path, version)
    proc = setup(tmp_path, PYTHON=python)
    assert_refused_before_any_change(proc, tmp_path)
    assert f"{python} is Python {version}; fetchfleet needs Python 3.11" in proc.stderr


def test_a_python_that_does_not_run_is_named(tmp_path):
    proc = setup(tmp_path, PYTHON=str(tmp_path / "no-python"))
    assert_refused_before_any_change(proc, tmp_path)
    assert "no-python does not run; fetchfleet needs Python 3.11" in proc.stderr


def test_every_problem_is_listed_at_once(tmp_path):
    release = (REPO / "tests/unit/recorded/os-release/ubuntu-24.04").read_text()
    proc = setup(tmp_path, os_release=release, PYTHON=python_reporting(tmp_path, "3.12.3"))
    assert_refused_before_any_change(proc, tmp_path)
    problems = [line for line in proc.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 2, proc.stderr


def test_the_lists_name_what_a_stock_debian_lacks():
    """python3-venv (Debian ships venv apart from python3) and git (release ids) are installed
    by setup itself: on a stock Debian 12, `python3 -m venv` fails without the first."""
    listed = {
        word
        for path in (REPO / "requirements").glob("apt*.txt")
        for line in path.read_text().splitlines()
        for word in line.split("#")[0].split()
    }
    assert {"python3-venv", "git", "make"} <= listed
