"""The release artefact: a wheel carrying migrations, templates and static files, and a complete
lock file."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

APP_DIR = Path(__file__).resolve().parents[1]


def test_wheel_contains_migrations_templates_static_files_and_the_command(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(tmp_path),
            str(APP_DIR),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("cloudfetch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "cloudfetch/migrations/env.py",
        "cloudfetch/migrations/script.py.mako",
        "cloudfetch/migrations/versions/0001_initial.py",
        "cloudfetch/templates/home.html",
        "cloudfetch/static/cloudfetch.css",
        "cloudfetch/wsgi.py",
    ):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cloudfetch = cloudfetch.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) from a lock in pip's hash-checking format."""
    found = {}
    for line in lock.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s=;]+)", requirement)
        assert match, f"{lock.name}: not pinned with ==: {line}"
        hashes = [o.removeprefix("--hash=") for o in options]
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (
            f"{lock.name}: {requirement} needs --hash=sha256:... (and nothing else): {line}"
        )
        found[canonical(match.group(1))] = (match.group(2), sorted(hashes))
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_both_locks_pin_and_hash_everything_and_agree() -> None:
    """`make setup` installs the two together with --require-hashes: every line must carry its
    hashes, and a package in both must be the same pin."""
    runtime = pins(APP_DIR / "requirements.lock")
    test = pins(APP_DIR / "requirements-test.txt")
    assert "pytest" in test and "flask" in runtime
    shared = set(runtime) & set(test)
    assert {name: runtime[name] for name in shared} == {name: test[name] for name in shared}


def test_lock_pins_every_runtime_dependency() -> None:
    pinned = pins(APP_DIR / "requirements.lock")
    # Walk the installed dependency closure of cloudfetch: each one must be in the lock.
    seen: set[str] = set()
    todo = ["cloudfetch"]
    while todo:
        name = todo.pop()
        for raw in requires(name) or []:
            req = Requirement(raw)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            key = canonical(req.name)
            if key not in seen:
                seen.add(key)
                todo.append(req.name)
                if key == "psycopg":
                    seen.add("psycopg-binary")
    missing = sorted(seen - set(pinned))
    assert missing == [], f"runtime dependencies missing from requirements.lock: {missing}"
