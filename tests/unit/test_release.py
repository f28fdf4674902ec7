"""fetchfleet.release: what identifies a release, when a cached build is reused, and that a build
checks every dependency against the lock's hashes and ships the hashes of what it built."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fetchfleet import release as R


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "requirements.lock").write_text("flask==3.1.3\n")
    (tmp_path / "README.md").write_text("x\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "app")
    return tmp_path


def test_the_key_is_the_last_commit_of_app(repo: Path) -> None:
    app_commit = git(repo, "rev-parse", "--short=7", "HEAD")
    assert R.source_key(repo) == (app_commit, app_commit)
    (repo / "README.md").write_text("elsewhere\n")
    git(repo, "commit", "-qam", "not the app")
    assert R.source_key(repo) == (app_commit, app_commit), (
        "a commit outside app/ is the same release"
    )


def test_uncommitted_changes_in_app_give_a_new_key(repo: Path) -> None:
    commit, clean = R.source_key(repo)
    (repo / "app" / "requirements.lock").write_text("flask==3.1.4\n")
    _, dirty = R.source_key(repo)
    assert dirty.startswith(f"{commit}-dirty") and dirty != clean
    (repo / "app" / "requirements.lock").write_text("flask==3.1.5\n")
    assert R.source_key(repo)[1] != dirty, "a different edit is a different key"


def test_release_id_is_utc_time_and_key() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert R.release_id("abc1234", now) == "20260102T030405Z-abc1234"


def _manifest(cache: Path, rid: str, key: str, artifact: bool = True) -> None:
    path = cache / f"{rid}.tar.gz"
    if artifact:
        path.write_bytes(b"x")
    release = R.Release(
        id=rid,
        source_key=key,
        commit=key[:7],
        built_at="2026-01-01T00:00:00+00:00",
        python="3.11",
        artifact=str(path),
        wheels=["cloudfetch-0.1.0-py3-none-any.whl"],
        build_seconds=1.0,
    )
    (cache / f"{rid}.json").write_text(json.dumps(asdict(release)))


def test_cached_finds_the_newest_intact_build_of_the_key(tmp_path: Path) -> None:
    _manifest(tmp_path, "20260101T000000Z-abc1234", "abc1234")
    _manifest(tmp_path, "20260102T000000Z-abc1234", "abc1234")
    _manifest(tmp_path, "20260103T000000Z-abc1234", "abc1234", artifact=False)
    _manifest(tmp_path, "20260104T000000Z-def5678", "def5678")
    hit = R.cached("abc1234", tmp_path)
    assert hit is not None and hit.reused
    assert hit.id == "20260102T000000Z-abc1234", "newest build whose artifact exists"
    assert R.cached("abc1234-dirty00000000", tmp_path) is None
    assert R.cached("0000000", tmp_path) is None


def test_build_reuses_the_cache_without_running_pip(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    _, key = R.source_key(repo)
    _manifest(cache, f"20260101T000000Z-{key}", key)
    release = R.build(repo=repo, cache=cache, python="/nonexistent/python")
    assert release.reused and release.source_key == key


# Hash-checked builds, offline: a local wheelhouse stands in for the index (PIP_NO_INDEX,
# PIP_FIND_LINKS), and the app is built by a tiny in-tree backend that needs nothing installed.

BACKEND = """
import pathlib, shutil

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    here = pathlib.Path(__file__).parent
    (here.parent / "app-wheel-built").touch()
    [wheel] = (here / "prebuilt").glob("*.whl")
    shutil.copy(wheel, wheel_directory)
    return wheel.name
"""


def make_wheel(directory: Path, name: str, version: str, code: bytes = b"") -> Path:
    """A minimal pure-Python wheel, made by hand (no build tools, no network); `code` is its
    `__init__.py` (a zip's clock has two-second steps, so only content tells two wheels apart)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": code,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in files.items()
    )
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist_info}/RECORD", record + f"{dist_info}/RECORD,,\n")
    return wheel


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def offline_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    index = tmp_path / "index"
    make_wheel(index, "tinydep", "1.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    """A repository whose app/ builds offline into a cloudfetch wheel."""
    repo = tmp_path / "repo"
    app = repo / "app"
    make_wheel(app / "prebuilt", "cloudfetch", "0.1.0")
    (app / "backend.py").write_text(BACKEND)
    (app / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    git(repo, "init", "-q")
    return repo


def commit_lock(repo: Path, lock: str) -> None:
    (repo / "app" / "requirements.lock").write_text(lock)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "lock")


def test_a_tampered_hash_stops_the_build_before_anything_is_built(
    app_repo: Path, offline_index: Path, tmp_path: Path
) -> None:
    good = sha256(offline_index / "tinydep-1.0-py3-none-any.whl")
    tampered = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    commit_lock(app_repo, f"tinydep==1.0 --hash=sha256:{tampered}\n")
    cache = tmp_path / "cache"
    with pytest.raises(R.ReleaseError, match=r"^dependency wheelhouse failed") as error:
        R.build(repo=app_repo, cache=cache, python=sys.executable)
    assert "DO NOT MATCH THE HASHES" in str(error.value)
    assert good in str(error.value) and tampered in str(error.value)
    assert list(cache.iterdir()) == [], "no artifact, no manifest"
    assert not (app_repo / "app-wheel-built").exists(), "checked before the app was built"


def test_a_lock_without_hashes_is_refused(
    app_repo: Path, offline_index: Path, tmp_path: Path
) -> None:
    commit_lock(app_repo, "tinydep==1.0\n")
    with pytest.raises(R.ReleaseError, match=r"^dependency wheelhouse failed") as error:
        R.build(repo=app_repo, cache=tmp_path / "cache", python=sys.executable)
    assert "Hashes are required in --require-hashes mode" in str(error.value)


def test_a_release_ships_the_hash_of_every_wheel_it_holds(
    app_repo: Path, offline_index: Path, tmp_path: Path
) -> None:
    """The shipped lock names each wheel of the wheelhouse with its own hash, the app's wheel
    (built here, like any sdist-only dependency) included, and installs the way roles/app does:
    uv, offline, from the wheelhouse, checking every hash."""
    commit_lock(
        app_repo,
        f"tinydep==1.0 --hash=sha256:{sha256(offline_index / 'tinydep-1.0-py3-none-any.whl')}\n",
    )
    release = R.build(repo=app_repo, cache=tmp_path / "cache", python=sys.executable)
    assert release.wheels == ["cloudfetch-0.1.0-py3-none-any.whl", "tinydep-1.0-py3-none-any.whl"]
    unpacked = tmp_path / "unpacked"
    with tarfile.open(release.artifact) as tar:
        # No filter=: Debian 12's python3 (3.11.2) predates extraction filters (3.11.4);
        # the archive is one this machine just built.
        tar.extractall(unpacked)
    root = unpacked / release.id
    wheelhouse = root / "wheelhouse"
    pins = [line for line in (root / R.LOCK).read_text().splitlines() if not line.startswith("#")]
    assert pins == [
        f"cloudfetch==0.1.0 --hash=sha256:{sha256(wheelhouse / release.wheels[0])}",
        f"tinydep==1.0 --hash=sha256:{sha256(wheelhouse / release.wheels[1])}",
    ]
    uv = Path(sys.executable).parent / "uv"
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache")}
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, venv], check=True, env=env)
    # roles/app's command: uv checks every hash the lock gives (all of them here).
    install = [uv, "pip", "install", "-q", "--offline", "--no-index"]
    install += ["--find-links", wheelhouse, "--python", venv / "bin" / "python"]
    subprocess.run([*install, "-r", root / R.LOCK, "cloudfetch"], check=True, env=env)
    # A wheel changed after the build is refused on the host.
    tampered = make_wheel(tmp_path / "other", "tinydep", "1.0", b"changed = True\n")
    tampered.replace(wheelhouse / release.wheels[1])
    again = subprocess.run(
        [*install, "--reinstall", "-r", root / R.LOCK, "cloudfetch"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode != 0 and "Hash mismatch" in again.stderr, again.stderr
