"""fetchfleet.solr_build: the cache key and the cache, without running Maven."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fetchfleet.solr_build import SOURCE, SolrBuildError, build_key, ensure_server


@pytest.fixture
def source(tmp_path: Path) -> Path:
    copy = tmp_path / "maven"
    shutil.copytree(SOURCE, copy)
    return copy


def test_key_follows_every_input(source: Path):
    key = build_key("9.10.1", source)
    assert build_key("9.10.1", source) == key
    assert build_key("9.10.0", source) != key
    launcher = next((source / "src").rglob("*.java"))
    launcher.write_text(launcher.read_text() + "\n// changed\n")
    changed_launcher = build_key("9.10.1", source)
    assert changed_launcher != key
    (source / "pom.xml").write_text((source / "pom.xml").read_text() + "\n<!-- changed -->\n")
    assert build_key("9.10.1", source) not in (key, changed_launcher)


def test_cached_tarball_is_used_without_maven(source: Path, tmp_path: Path, monkeypatch):
    # No mvn, javac or jar on PATH: any attempt to build would fail, so a result proves the cache.
    (tmp_path / "no-tools").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    name = f"fetchfleet-solr-9.10.1-{build_key('9.10.1', source)}"
    (tmp_path / f"{name}.tar").write_bytes(b"")
    build = ensure_server("9.10.1", source, tmp_path)
    assert not build.built
    assert build.tarball == str(tmp_path / f"{name}.tar")


@pytest.mark.parametrize("version", ["8.11.2", "9.10", "latest", "9.10.1; rm -rf /"])
def test_only_solr_9_releases_are_built(version: str, tmp_path: Path):
    with pytest.raises(SolrBuildError, match="solr_version"):
        ensure_server(version, SOURCE, tmp_path)


def test_missing_recipe_is_named(tmp_path: Path):
    with pytest.raises(SolrBuildError, match=r"no pom\.xml"):
        build_key("9.10.1", tmp_path)
