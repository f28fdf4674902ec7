"""requirements/control.txt, the control machine's lock, against requirements/control.in.

`make setup` installs the lock with `pip install --require-hashes`: every line must carry its
hashes, and the lock must be what requirements/lock.sh makes of control.in, so a pin added to
control.in without running the lock script (or merged next to one) fails here, not on a fresh
machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from fetchfleet.inventory import REPO

REQUIREMENTS = REPO / "requirements"
# "name[extra]==version" with nothing else on the line but a comment.
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]+\])?==(?P<version>\S+)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def top_level_pins(path: Path) -> dict[str, str]:
    pins = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.name}:{number}: pin exactly (name==version): {raw!r}"
        name = canonical(match["name"])
        assert name not in pins, f"{path.name}:{number}: {name} is pinned twice"
        pins[name] = match["version"]
    return pins


def lock_entries(path: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    """name -> (version, sha256 hashes, what it is there for) from a lock in pip's hash format."""
    entries: dict[str, tuple[str, list[str], list[str]]] = {}
    current = None
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            continue
        if line.startswith("    #"):  # uv's "# via" block: the requirement above it
            assert current, line
            via = line.strip().removeprefix("#").strip().removeprefix("via").strip()
            if via:
                entries[current][2].append(via)
            continue
        requirement, *options = line.split()
        match = PIN.match(requirement)
        assert match, f"{path.name}: not pinned with ==: {line}"
        hashes = [o.removeprefix("--hash=") for o in options]
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (
            f"{path.name}: {requirement} needs --hash=sha256:... (and nothing else): {line}"
        )
        current = canonical(match["name"])
        entries[current] = (match["version"], hashes, [])
    return entries


def test_every_line_of_the_lock_is_pinned_with_hashes():
    entries = lock_entries(REQUIREMENTS / "control.txt")
    # The toolchain itself and the tools tests call by name are all in it.
    assert {"ansible-core", "fabric", "pytest", "ruff", "uv", "paramiko"} <= entries.keys()


def test_the_lock_holds_exactly_the_pins_of_control_in():
    wanted = top_level_pins(REQUIREMENTS / "control.in")
    entries = lock_entries(REQUIREMENTS / "control.txt")
    wrong = {
        name: (version, entries[name][0] if name in entries else "missing")
        for name, version in wanted.items()
        if entries.get(name, ("missing",))[0] != version
    }
    assert not wrong, f"control.in pin vs lock (run requirements/lock.sh): {wrong}"
    # A pin removed from control.in leaves the lock only when the lock is made again.
    direct = {name for name, (_, _, via) in entries.items() if "-r control.in" in via}
    assert direct == set(wanted), f"the lock's direct requirements differ: {direct ^ set(wanted)}"


def test_the_lock_is_what_the_lock_script_makes(tmp_path):
    """requirements/lock.sh run again (on a copy) changes nothing: the lock is up to date with
    control.in. Pins already in the lock are preferred, so this needs no newer release to hold."""
    copy = tmp_path / "requirements"
    shutil.copytree(REQUIREMENTS, copy)
    uv = Path(sys.executable).with_name("uv")
    proc = subprocess.run(
        [str(copy / "lock.sh")],
        env={**os.environ, "UV": str(uv)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    made, committed = (copy / "control.txt").read_text(), (REQUIREMENTS / "control.txt").read_text()
    assert made == committed, "requirements/control.txt is not what requirements/lock.sh makes"
