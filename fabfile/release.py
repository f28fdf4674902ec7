"""`fab release.*`: the release cache on the control machine (logic: fetchfleet.release).

fab release.build [--out DIR] [--fresh]   build the working tree's release once, or reuse it
fab release.list | release.show ID | release.prune [--keep N] [--keep-days D]
"""

from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit

from fetchfleet import release as R
from fetchfleet.output import table


def _do(what, func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except R.ReleaseError as err:
        raise Exit(f"{what}: {err}", code=1) from err


@task(
    help={
        "out": "also put release.id, release.json and the artifact in DIR (what CI archives)",
        "fresh": "build anew even if this source was built: a new release id of the same code",
    }
)
def build(c, out=None, fresh=False):
    """Build the working tree's release once (or reuse the cached build of the same source)."""
    rel = _do("release.build", R.build, force=fresh)
    how = "reused the cached build" if rel.reused else f"built in {rel.build_seconds}s"
    print(f"release {rel.id}: {how} -> {rel.artifact}")
    if out:
        for path in _do("release.build", R.export, rel, Path(out)):
            print(f"  {path}")


@task(name="list")
def list_(c):
    """The cached releases, newest first."""
    rows = [
        {"release": r.id, "built": r.built_at, "python": r.python, "wheels": len(r.wheels)}
        for r in R.releases()
    ]
    print(table(rows))


@task(positional=["rid"])
def show(c, rid):
    """One cached release: its commit, build time and artifact (checked to be there)."""
    rel = _do("release.show", R.by_id, rid)
    print(f"{rel.id}: commit {rel.commit}, built {rel.built_at}, python {rel.python}")
    print(f"  {rel.artifact} ({len(rel.wheels)} wheels)")


@task(
    help={
        "keep": "newest releases always kept (default 10)",
        "keep-days": "releases built within this many days are kept too (default 14)",
    }
)
def prune(c, keep=10, keep_days=14):
    """Remove old releases from the control machine's cache (hosts keep their own 5)."""
    gone = _do("release.prune", R.prune, int(keep), float(keep_days))
    for rel in gone:
        print(f"removed {rel.id} (built {rel.built_at})")
    print(f"release.prune: {len(gone)} removed, {len(R.releases())} kept in {R.CACHE}")


release_ns = Collection("release", build, list_, show, prune)
