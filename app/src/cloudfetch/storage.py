"""The storage tree: <storage_root>/u<user id>/<relative path>, plain files a backup server
can pull.

Every path that comes from a user, a torrent or a remote server goes through safe_relative_path
before it touches the filesystem."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path, PurePosixPath

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafePath(ValueError):
    pass


def safe_relative_path(raw: str) -> str:
    """Return raw as a normalised relative path, or raise UnsafePath for anything that could
    leave the directory it is joined to (absolute, '..', empty or control characters)."""
    if not raw or _CONTROL.search(raw) or "\\" in raw:
        raise UnsafePath(raw)
    path = PurePosixPath(raw)
    if path.is_absolute():
        raise UnsafePath(raw)
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafePath(raw)
    return "/".join(parts)


def safe_file_name(raw: str, fallback: str = "download") -> str:
    """A single path component made from an untrusted name (URL path, Content-Disposition)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = _CONTROL.sub("", name).strip().lstrip(".")
    return name[:200] or fallback


def resolve_inside(root: Path, relative: str) -> Path:
    """Join a checked relative path to root and make sure symlinks do not lead outside it."""
    target = (root / safe_relative_path(relative)).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafePath(relative)
    return target


def unique_destination(directory: Path, name: str) -> Path:
    """directory/name, or 'name (2).ext' etc. when taken: a new download never overwrites."""
    candidate = directory / name
    stem, dot, suffix = name.partition(".") if not name.startswith(".") else (name, "", "")
    number = 2
    while candidate.exists():
        candidate = directory / f"{stem} ({number}){dot}{suffix}"
        number += 1
    return candidate


def move_into(source: Path, destination: Path) -> None:
    """Move with a rename: the file appears whole or not at all (same filesystem required)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, destination)


def link_tree(source: Path, destination: Path) -> None:
    """Copy a file or directory tree as hard links: the bytes are stored once. A file the kernel
    will not link (another owner's, under fs.protected_hardlinks) is copied instead."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        _link_or_copy(source, destination)
        return
    for directory, _, files in os.walk(source):
        target = destination / Path(directory).relative_to(source)
        target.mkdir(exist_ok=True)
        for name in files:
            _link_or_copy(Path(directory) / name, target / name)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except PermissionError:
        shutil.copy2(source, destination)


def remove_file(root: Path, relative: str) -> None:
    """Delete one stored file and the directories it leaves empty (up to root)."""
    target = resolve_inside(root, relative)
    target.unlink(missing_ok=True)
    top = root.resolve()
    parent = target.parent
    while parent != top and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
