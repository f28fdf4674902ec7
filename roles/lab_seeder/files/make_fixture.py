#!/usr/bin/env python3
"""Write the lab seeder's fixture files with deterministic content (managed by Ansible,
fetchfleet role lab_seeder; local edits are overwritten).

Usage: make_fixture.py DIR NAME:SIZE_KIB ...
Each file's bytes are a SHA-256 counter stream seeded by its name. A file that already has the
right bytes is left alone; prints "wrote NAME" for each file it (re)wrote.
"""

import hashlib
import os
import sys


def content(name: str, size: int) -> bytes:
    seed = name.encode()
    blocks = (hashlib.sha256(seed + i.to_bytes(8, "big")).digest() for i in range(size // 32 + 1))
    return b"".join(blocks)[:size]


def main(directory: str, specs: list[str]) -> None:
    os.makedirs(directory, exist_ok=True)
    for spec in specs:
        name, size_kib = spec.rsplit(":", 1)
        path = os.path.join(directory, name)
        want = content(name, int(size_kib) * 1024)
        try:
            with open(path, "rb") as f:
                if f.read() == want:
                    continue
        except FileNotFoundError:
            pass
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(want)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        print(f"wrote {name}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
