"""fetchfleet.release: what identifies a release and when a cached build is reused."""

from __future__ import annotations

import json
import subprocess
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
