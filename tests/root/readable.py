"""Directory trees another user may read: the tests here that run something as `nobody` copy
what it needs into one (pytest's tmp_path is private to root, and so may be the checkout)."""

from __future__ import annotations

import os


def readable_copy(path: os.PathLike[str] | str) -> None:
    """Open a directory tree to every user, for the tests that run something as `nobody`."""
    os.chmod(path, 0o755)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            full = os.path.join(root, name)
            os.chmod(full, 0o755 if os.access(full, os.X_OK) else 0o644)
