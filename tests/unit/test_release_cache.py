"""fetchfleet.release's cache by id: what `fab deploy --release ID` takes, what CI archives, and
what `fab release.prune` may remove."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fetchfleet import release as R

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def cached(cache: Path, days_old: float, commit: str) -> R.Release:
    """A release in the cache as build() leaves it: the artifact, then its manifest."""
    built = NOW - timedelta(days=days_old)
    rid = R.release_id(commit, built)
    artifact = cache / f"{rid}.tar.gz"
    artifact.write_bytes(b"artifact of " + rid.encode())
    release = R.Release(
        rid, commit, commit, built.isoformat(timespec="seconds"), "3.11", str(artifact), [], 1.0
    )
    (cache / f"{rid}.json").write_text(json.dumps(asdict(release)))
    return release


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path


def test_by_id_returns_the_release_as_built(cache):
    rel = cached(cache, 1, "abc1234")
    assert R.by_id(rel.id, cache) == rel


def test_by_id_refuses_what_is_not_a_release_id(cache):
    with pytest.raises(R.ReleaseError, match="'latest' is not a release id"):
        R.by_id("latest", cache)


def test_by_id_names_the_cache_and_the_newest_releases_when_missing(cache):
    known = cached(cache, 1, "abc1234")
    with pytest.raises(R.ReleaseError) as err:
        R.by_id("20261101T000000Z-0000000", cache)
    assert str(cache) in str(err.value) and known.id in str(err.value)


def test_by_id_refuses_a_release_whose_artifact_is_gone(cache):
    rel = cached(cache, 1, "abc1234")
    Path(rel.artifact).unlink()
    with pytest.raises(R.ReleaseError, match=r"its artifact .* is gone"):
        R.by_id(rel.id, cache)


def test_prune_keeps_the_newest_and_the_recent(cache):
    old = [cached(cache, 30 + i, f"old{i:04d}") for i in range(4)]
    recent = [cached(cache, i + 0.5, f"new{i:04d}") for i in range(3)]
    gone = R.prune(keep=2, keep_days=14, cache=cache, now=NOW)
    assert sorted(r.id for r in gone) == sorted(r.id for r in old)
    assert sorted(r.id for r in R.releases(cache)) == sorted(r.id for r in recent)
    assert all(not Path(r.artifact).exists() for r in old)
    assert all(Path(r.artifact).exists() for r in recent)


def test_prune_never_removes_the_newest_even_when_old(cache):
    rels = [cached(cache, 100 + i, f"rel{i:04d}") for i in range(3)]
    gone = R.prune(keep=1, keep_days=0, cache=cache, now=NOW)
    assert [r.id for r in R.releases(cache)] == [rels[0].id]
    assert len(gone) == 2


def test_prune_refuses_to_keep_nothing(cache):
    cached(cache, 100, "abc1234")
    with pytest.raises(R.ReleaseError, match="keep=0"):
        R.prune(keep=0, cache=cache, now=NOW)
    assert len(R.releases(cache)) == 1


def test_export_puts_what_ci_archives_beside_the_checkout(cache, tmp_path):
    rel = cached(cache, 1, "abc1234")
    out = tmp_path / "build"
    files = R.export(rel, out)
    assert [p.name for p in files] == ["release.id", "release.json", f"{rel.id}.tar.gz"]
    assert (out / "release.id").read_text() == rel.id + "\n"
    assert json.loads((out / "release.json").read_text())["id"] == rel.id
    assert (out / f"{rel.id}.tar.gz").read_bytes() == Path(rel.artifact).read_bytes()
    R.export(rel, out)  # again: replaces, never fails on what the last run left
    assert (out / f"{rel.id}.tar.gz").stat().st_ino == Path(rel.artifact).stat().st_ino
