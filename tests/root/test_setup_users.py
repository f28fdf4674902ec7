"""`make setup` needs root only to install Debian packages: a user (a Jenkins controller's own)
sets up a machine whose packages are there, and is refused, before anything changes, with the
command to run when one is missing. Runs the real scripts/setup.sh on a copy of what it reads."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchfleet.inventory import REPO

from readable import readable_copy

AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")


@pytest.fixture
def checkout() -> Iterator[Path]:
    """scripts/, requirements/ and Debian 12's os-release in a directory every user may read
    (pytest's tmp_path is not, nor, in CI, maybe the checkout), plus a package list naming one
    package no machine has."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp)
        shutil.copytree(REPO / "scripts", copy / "scripts")
        shutil.copytree(REPO / "requirements", copy / "requirements")
        shutil.copy(REPO / "tests/unit/recorded/os-release/debian-12", copy / "os-release")
        (copy / "missing").mkdir()
        (copy / "missing/apt.txt").write_text("bash\nfetchfleet-no-such-package\n")
        readable_copy(copy)
        yield copy


def setup(checkout: Path, *argv: str, lists: str = "requirements", user: tuple[str, ...] = ()):
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/nonexistent",
        "FETCHFLEET_APT_LISTS": str(checkout / lists),
        "FETCHFLEET_OS_RELEASE": str(checkout / "os-release"),
    }
    return subprocess.run(
        [*user, str(checkout / "scripts/setup.sh"), *argv],
        env=env,
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_user_is_refused_only_when_a_package_is_missing_and_told_what_to_run(checkout):
    proc = setup(checkout, lists="missing", user=AS_NOBODY)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Debian packages missing: fetchfleet-no-such-package; installing them needs root" in (
        proc.stderr
    )
    assert "run `sudo make setup`" in proc.stderr
    assert "apt-get install fetchfleet-no-such-package`, then `make setup` as nobody" in proc.stderr
    assert not (checkout / ".venv").exists(), "setup went on past its checks"


def test_a_user_passes_when_every_package_is_there(checkout):
    proc = setup(checkout, "--check", user=AS_NOBODY)
    assert proc.returncode == 0, proc.stderr
    assert "as nobody" in proc.stdout and "Debian packages present" in proc.stdout


def test_root_is_told_what_would_be_installed(checkout):
    proc = setup(checkout, "--check", lists="missing")
    assert proc.returncode == 0, proc.stderr
    assert "setup: would install Debian packages: fetchfleet-no-such-package\n" in proc.stdout
    assert not (checkout / ".venv").exists()
