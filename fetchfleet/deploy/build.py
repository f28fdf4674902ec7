"""The release to deploy: the working tree's, or a git ref's built from a clean clone of it."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from fetchfleet import release as R
from fetchfleet.deploy.errors import DeployError
from fetchfleet.inventory import REPO


def resolve_ref(repo: Path, ref: str) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DeployError(f"unknown ref {ref!r} in {repo} (try: git log --oneline, git branch -a)")
    return proc.stdout.strip()


def dirty_paths(repo: Path) -> list[str]:
    """Uncommitted changes to app/, the only part of the tree a release is built from."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "app"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line[3:] for line in proc.stdout.splitlines()]


def check_clean(repo: Path, ref: str) -> None:
    if dirty := dirty_paths(repo):
        raise DeployError(
            f"the working tree has uncommitted changes ({', '.join(dirty[:5])}); commit or stash "
            f"them before deploying --ref {ref}"
        )


def build_release(
    repo: Path = REPO, ref: str | None = None, cache: Path = R.CACHE, force: bool = False
) -> R.Release:
    """The working tree's release, or REF's (built from a clean clone of that commit). Deploying a
    ref from a dirty tree is refused: the operator may think the edits are in it."""
    if ref is None:
        return R.build(repo=repo, cache=cache, force=force)
    sha = resolve_ref(repo, ref)
    check_clean(repo, ref)
    with tempfile.TemporaryDirectory(prefix="fetchfleet-ref-") as tmp:
        subprocess.run(
            ["git", "clone", "--quiet", "--shared", "--no-checkout", str(repo), tmp],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["git", "checkout", "--quiet", sha], cwd=tmp, check=True, capture_output=True
        )
        return R.build(repo=Path(tmp), cache=cache, force=force)
