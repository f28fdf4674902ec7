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


def test_lock_pins_every_runtime_dependency() -> None:
    lines = [
        line.strip()
        for line in (APP_DIR / "requirements.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pinned = {}
    for line in lines:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s=]+)", line)
        assert match, f"not pinned with ==: {line}"
        pinned[match.group(1).lower().replace("_", "-")] = match.group(2)
    # Walk the installed dependency closure of cloudfetch: each one must be in the lock.
    seen: set[str] = set()
    todo = ["cloudfetch"]
    while todo:
        name = todo.pop()
        for raw in requires(name) or []:
            req = Requirement(raw)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            key = req.name.lower().replace("_", "-")
            if key not in seen:
                seen.add(key)
                todo.append(req.name)
                if key == "psycopg":
                    seen.add("psycopg-binary")
    missing = sorted(seen - set(pinned))
    assert missing == [], f"runtime dependencies missing from requirements.lock: {missing}"
