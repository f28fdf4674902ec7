"""Releases of the app: built once on the control machine, shipped as one artifact, installed offline.

A release is the app's wheel plus a wheelhouse of its pinned dependencies (app/requirements.lock,
every file checked against the lock's hashes) and a lock of that wheelhouse, packed as
`<id>.tar.gz` under the release cache (/var/lib/fetchfleet/releases). The id is the UTC
build time and the last git commit of app/: `20250101T120000Z-abc1234`. A second build of the same source
reuses the cached artifact (looked up by source key: the commit, plus a digest of app/'s
uncommitted changes if any), so every host of every deploy of a commit installs the same bytes.

    python -m fetchfleet.release build [--json]   # build or reuse; prints the release
    python -m fetchfleet.release list             # cached releases, newest first
    python -m fetchfleet.release show ID [--json] # one cached release, its artifact checked

`by_id` is how a pipeline deploys the artifact it built, by id, to staging and then production
(`fab deploy --release ID`); `prune` keeps the cache from growing by one artifact per build.

`fab deploy` (fetchfleet.deploy) builds through `build()`, then ships, installs, migrates and switches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from fetchfleet.inventory import REPO

CACHE = Path(os.environ.get("FETCHFLEET_RELEASE_CACHE", "/var/lib/fetchfleet/releases"))
APP = REPO / "app"
LOCK = "requirements.lock"
# The one definition of a release id, shared with roles/app (which checks ids before installing).
RELEASE_ID = re.compile(
    yaml.safe_load((REPO / "roles/app/vars/main.yml").read_text())["__app_release_id_pattern"]
)


class ReleaseError(Exception):
    """A release could not be built; the message says which step and how to look closer."""


@dataclass(frozen=True)
class Release:
    id: str
    source_key: str
    commit: str
    built_at: str
    python: str
    artifact: str
    wheels: list[str]
    build_seconds: float
    reused: bool = False


def _git(*args: str, repo: Path = REPO) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def source_key(repo: Path = REPO) -> tuple[str, str]:
    """(short commit, key): the key is the last commit that changed app/ (commits elsewhere in the
    repository do not change the release), plus a digest of app/'s uncommitted changes so an
    edited tree never reuses the artifact of its commit."""
    commit = _git("log", "-1", "--format=%h", "--abbrev=7", "--", "app", repo=repo).strip()
    if not commit:
        raise ReleaseError("app/ has no commit yet: commit the app before building a release")
    dirty = _git("status", "--porcelain", "--untracked-files=all", "--", "app", repo=repo)
    relevant = [line[3:] for line in dirty.splitlines()]
    if not relevant:
        return commit, commit
    digest = hashlib.sha256(_git("diff", "HEAD", "--", "app", repo=repo).encode())
    for name in sorted(relevant):
        path = repo / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return commit, f"{commit}-dirty{digest.hexdigest()[:8]}"


def release_id(key: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    rid = f"{stamp}-{key}"
    if not RELEASE_ID.match(rid):
        raise ReleaseError(
            f"{rid!r} would not be a release id (roles/app __app_release_id_pattern)"
        )
    return rid


def cached(key: str, cache: Path = CACHE) -> Release | None:
    """The newest cached release built from this source key, if its artifact is intact."""
    for manifest in sorted(cache.glob(f"*-{key}.json"), reverse=True):
        release = Release(**json.loads(manifest.read_text()))
        if release.source_key == key and Path(release.artifact).is_file():
            return Release(**{**asdict(release), "reused": True})
    return None


def releases(cache: Path = CACHE) -> list[Release]:
    return [
        Release(**json.loads(p.read_text())) for p in sorted(cache.glob("*.json"), reverse=True)
    ]


def by_id(rid: str, cache: Path = CACHE) -> Release:
    """The cached release `rid`, exactly as built: its manifest, and its artifact still there."""
    if not RELEASE_ID.match(rid or ""):
        raise ReleaseError(
            f"{rid!r} is not a release id (YYYYMMDDTHHMMSSZ-commit; see: python -m fetchfleet.release list)"
        )
    manifest = cache / f"{rid}.json"
    if not manifest.is_file():
        known = ", ".join(r.id for r in releases(cache)[:5]) or "none"
        raise ReleaseError(
            f"release {rid} is not in the release cache {cache} (newest: {known}); "
            "build it again from its commit (fab deploy --ref COMMIT) or pick a cached one"
        )
    release = Release(**json.loads(manifest.read_text()))
    if release.id != rid:
        raise ReleaseError(f"{manifest} describes release {release.id}, not {rid}")
    if not Path(release.artifact).is_file():
        raise ReleaseError(f"release {rid}: its artifact {release.artifact} is gone")
    return release


def select_prunable(
    found: list[Release], keep: int, keep_days: float, now: datetime | None = None
) -> list[Release]:
    """Cached releases that may go: beyond the newest `keep` and older than `keep_days`
    (a release a pipeline built this week may still be on its way to production)."""
    if keep < 1:
        raise ReleaseError(f"keep={keep}: the newest release must always stay (keep >= 1)")
    now = now or datetime.now(UTC)
    newest_first = sorted(found, key=lambda r: r.id, reverse=True)
    old = []
    for release in newest_first[keep:]:
        age_days = (now - datetime.fromisoformat(release.built_at)).total_seconds() / 86400
        if age_days > keep_days:
            old.append(release)
    return old


def prune(
    keep: int = 10, keep_days: float = 14, cache: Path = CACHE, now: datetime | None = None
) -> list[Release]:
    """Remove the prunable releases' artifacts and manifests (manifest first: a release without
    one is not in the cache, so a half-removed release is never offered)."""
    doomed = select_prunable(releases(cache), keep, keep_days, now)
    for release in doomed:
        (cache / f"{release.id}.json").unlink(missing_ok=True)
        Path(release.artifact).unlink(missing_ok=True)
    return doomed


def export(release: Release, out: Path) -> list[Path]:
    """Put a release where a CI server archives from: `release.id`, `release.json` and the
    artifact itself (a hard link when the cache is on the same filesystem)."""
    out.mkdir(parents=True, exist_ok=True)
    artifact = Path(release.artifact)
    target = out / artifact.name
    target.unlink(missing_ok=True)
    try:
        os.link(artifact, target)
    except OSError:
        shutil.copy2(artifact, target)
    (out / "release.json").write_text(json.dumps(asdict(release), indent=2) + "\n")
    (out / "release.id").write_text(release.id + "\n")
    return [out / "release.id", out / "release.json", target]


def _run(step: str, argv: list[str], cwd: Path) -> None:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
        raise ReleaseError(f"{step} failed (exit {proc.returncode}): {' '.join(argv)}\n{output}")


def wheelhouse_lock(rid: str, wheelhouse: Path) -> str:
    """The lock a release ships: one pin per wheel in its wheelhouse, with that wheel's sha256.

    Not app/requirements.lock itself: a package PyPI has only as an sdist (pysolr) is a wheel
    built here, whose hash no index knows. Its sdist was checked against app/requirements.lock
    when it was fetched; the hosts check every wheel against this file when they install."""
    lines = [
        f"# Release {rid}: every wheel in wheelhouse/ with its sha256, written by",
        "# fetchfleet.release from app/requirements.lock (whose hashes the build verified).",
    ]
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


def build(
    repo: Path = REPO, cache: Path = CACHE, python: str = sys.executable, force: bool = False
) -> Release:
    """Build the release of the current source, or return the cached one."""
    commit, key = source_key(repo)
    if not force and (hit := cached(key, cache)):
        return hit
    t0 = time.monotonic()
    rid = release_id(key)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="release-", dir=cache) as tmp:
        root = Path(tmp) / rid
        wheelhouse = root / "wheelhouse"
        wheelhouse.mkdir(parents=True)
        pip = [python, "-m", "pip", "--disable-pip-version-check", "wheel", "-q"]
        # Every file checked against the lock's hashes, before anything else is built: a
        # tampered file, a changed hash or a lock without hashes stops the build here.
        _run(
            "dependency wheelhouse",
            [*pip, "--require-hashes", "-w", str(wheelhouse), "-r", str(repo / "app" / LOCK)],
            cwd=repo,
        )
        # "./app", never "app": a bare name is a requirement, and PyPI has an unrelated "app".
        _run("app wheel", [*pip, "--no-deps", "-w", str(wheelhouse), "./app"], cwd=repo)
        (root / LOCK).write_text(wheelhouse_lock(rid, wheelhouse))
        (root / "RELEASE").write_text(rid + "\n")
        wheels = sorted(p.name for p in wheelhouse.glob("*.whl"))
        if not any(w.startswith("cloudfetch-") for w in wheels):
            raise ReleaseError(f"no cloudfetch wheel in the wheelhouse: {wheels}")
        partial = cache / f".{rid}.tar.gz.part"
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(root, arcname=rid)
        artifact = cache / f"{rid}.tar.gz"
        partial.rename(artifact)
    version = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    release = Release(
        id=rid,
        source_key=key,
        commit=commit,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        python=version,
        artifact=str(artifact),
        wheels=wheels,
        build_seconds=round(time.monotonic() - t0, 1),
    )
    # The manifest is written last: a release without one is not in the cache.
    (cache / f"{rid}.json").write_text(json.dumps(asdict(release), indent=2) + "\n")
    return release


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fetchfleet.release")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the current source's release, or reuse the cached one")
    b.add_argument("--json", action="store_true", help="print the release as JSON")
    b.add_argument("--force", action="store_true", help="build even if cached")
    b.add_argument("--python", default=sys.executable, help="interpreter whose pip builds")
    sub.add_parser("list", help="cached releases, newest first")
    s = sub.add_parser("show", help="one cached release, its artifact checked")
    s.add_argument("id")
    s.add_argument("--json", action="store_true", help="print the release as JSON")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for r in releases():
                print(f"{r.id}  python {r.python}  {len(r.wheels)} wheels  {r.artifact}")
            return 0
        if args.command == "show":
            found = by_id(args.id)
            print(json.dumps(asdict(found)) if args.json else f"{found.id} -> {found.artifact}")
            return 0
        t0 = time.monotonic()
        release = build(python=args.python, force=args.force)
    except ReleaseError as err:
        print(f"release: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(release)))
    else:
        how = "reused" if release.reused else f"built in {release.build_seconds}s"
        print(f"release {release.id}: {how} ({time.monotonic() - t0:.1f}s) -> {release.artifact}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
