"""Which releases a host has, which one a rollback goes to, and which ones cleanup removes."""

from __future__ import annotations

from collections.abc import Iterable

from fetchfleet.deploy.errors import DeployError
from fetchfleet.release import RELEASE_ID

KEEP_RELEASES = 5


def validate_release_id(rid: str) -> str:
    if not RELEASE_ID.match(rid or ""):
        raise DeployError(
            f"{rid!r} is not a release id (YYYYMMDDTHHMMSSZ-commit, e.g. from fab releases)"
        )
    return rid


def release_ids(names: Iterable[str]) -> list[str]:
    """The release ids among directory names, oldest first (ids sort by build time)."""
    return sorted(n for n in names if RELEASE_ID.match(n))


def previous_release(installed: Iterable[str], current: str | None) -> str | None:
    """The newest installed release older than current (Capistrano's rule)."""
    older = [r for r in release_ids(installed) if current is None or r < current]
    return older[-1] if older else None


def rollback_target(installed: Iterable[str], current: str | None, to: str | None = None) -> str:
    installed = release_ids(installed)
    if to is not None:
        validate_release_id(to)
        if to not in installed:
            raise DeployError(f"release {to} is not installed (installed: {', '.join(installed)})")
        if to == current:
            raise DeployError(f"release {to} is already current")
        return to
    target = previous_release(installed, current)
    if target is None:
        raise DeployError(f"no release older than {current} is installed to roll back to")
    return target


def select_removals(
    installed: Iterable[str],
    current: str | None,
    keep: int = KEEP_RELEASES,
    also_keep: Iterable[str] = (),
) -> list[str]:
    """Releases to delete: all but the newest `keep`, never current, its previous, or also_keep."""
    if keep < 2:
        raise DeployError(f"keep must be at least 2 (current and previous), got {keep}")
    ids = release_ids(installed)
    kept = set(ids[-keep:]) | set(also_keep) | {current, previous_release(ids, current)}
    return [r for r in ids if r not in kept]
