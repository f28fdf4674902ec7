"""Build the `maven` install source of roles/solr: a runnable Solr server from Maven Central.

Solr's release archive cannot be fetched everywhere, but its engine can: `solr-core` and
`solr-test-framework` (whose JettySolrRunner serves Solr's real HTTP API) are on Maven Central.
This resolves them once on the control machine with Maven (`roles/solr/files/maven/pom.xml`,
versions pinned), compiles the small launcher next to it with javac, and packs everything into one
tarball under /var/lib/fetchfleet/solr/ (outside the repository, never committed). The role ships
that tarball to hosts, so hosts never talk to Maven Central.

The tarball's name carries a key over everything that shapes it (Solr version, pom, launcher
source, this recipe's version): a second run with the same inputs finds it and does nothing.

    python -m fetchfleet.solr_build --version 9.10.1          # prints the tarball path
    python -m fetchfleet.solr_build --version 9.10.1 --json   # what roles/solr reads
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from fetchfleet.inventory import REPO

# Bump when the recipe below changes in a way the hash of its inputs cannot see.
RECIPE_VERSION = 1
SOURCE = REPO / "roles" / "solr" / "files" / "maven"
CACHE_DIR = Path("/var/lib/fetchfleet/solr")
# Pinned so the build does not drift with whatever Maven would pick as "latest".
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
LAUNCHER_JAR = "fetchfleet-solr-launcher.jar"
MARKER = "BUILD-INFO.json"
_VERSION = re.compile(r"^9\.\d+\.\d+$")


class SolrBuildError(Exception):
    """What failed, and the command to run to look closer."""


@dataclass(frozen=True)
class SolrServerBuild:
    version: str
    key: str
    name: str
    tarball: str
    built: bool
    seconds: float


def build_key(version: str, source: Path = SOURCE) -> str:
    """A short hash of every input that shapes the tarball."""
    digest = hashlib.sha256(f"recipe={RECIPE_VERSION}\nsolr={version}\n".encode())
    for path in sorted(_inputs(source)):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def ensure_server(
    version: str,
    source: Path = SOURCE,
    cache_dir: Path = CACHE_DIR,
    progress: Callable[[str], None] = lambda message: None,
) -> SolrServerBuild:
    """Return the cached server tarball for VERSION, building it first if it is not there."""
    if not _VERSION.match(version):
        raise SolrBuildError(f"solr_version {version!r} is not a Solr 9 release (like 9.10.1)")
    t0 = time.monotonic()
    key = build_key(version, source)
    name = f"fetchfleet-solr-{version}-{key}"
    tarball = cache_dir / f"{name}.tar"

    def result(built: bool) -> SolrServerBuild:
        return SolrServerBuild(version, key, name, str(tarball), built, time.monotonic() - t0)

    if tarball.exists():
        return result(built=False)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".build.lock"):
        if tarball.exists():  # another run built it while we waited for the lock
            return result(built=False)
        with tempfile.TemporaryDirectory(prefix=".build-", dir=cache_dir) as work:
            stage = Path(work) / name
            lib = stage / "lib"
            progress(f"resolving solr-core and solr-test-framework {version} with Maven")
            _run(
                [
                    _tool("mvn"),
                    "-B",
                    "-q",
                    "-f",
                    str(source / "pom.xml"),
                    f"-Dmaven.repo.local={cache_dir / 'm2'}",
                    f"-Dsolr.version={version}",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={lib}",
                    f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                ]
            )
            progress(f"compiling the launcher against {len(list(lib.glob('*.jar')))} jars")
            classes = Path(work) / "classes"
            sources = sorted(str(p) for p in (source / "src").rglob("*.java"))
            javac = [_tool("javac"), "--release", "17", "-d", str(classes), "-cp", f"{lib}/*"]
            _run([*javac, *sources])
            jar = lib / LAUNCHER_JAR
            _run([_tool("jar"), "--create", "--file", str(jar), "-C", str(classes), "."])
            # Written last and packed last: a host whose unarchive stopped half-way has no marker.
            info = {"solr_version": version, "key": key, "recipe": RECIPE_VERSION}
            (stage / MARKER).write_text(json.dumps(info, indent=2) + "\n")
            progress(f"packing {tarball.name}")
            partial = Path(work) / tarball.name
            with tarfile.open(partial, "w") as tar:
                # Jars are already compressed: a plain tar ships as fast and unpacks faster.
                tar.add(lib, arcname=f"{name}/lib")
                tar.add(stage / MARKER, arcname=f"{name}/{MARKER}")
            os.replace(partial, tarball)
    return result(built=True)


def _inputs(source: Path) -> list[Path]:
    if not (source / "pom.xml").is_file():
        raise SolrBuildError(f"no pom.xml in {source} (the maven install source's recipe)")
    return [source / "pom.xml", *(source / "src").rglob("*.java")]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise SolrBuildError(
            f"{Path(argv[0]).name} failed (exit {proc.returncode}):\n{tail}\n"
            f"  -> run it yourself to look closer: {' '.join(argv)}"
        )


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        jdk = "openjdk-17-jdk-headless"
        package = {"mvn": "maven", "javac": jdk, "jar": jdk}
        raise SolrBuildError(
            f"{name} is not installed on the control machine "
            f"-> apt-get install {package.get(name, name)}"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", required=True, help="Solr version (solr_version)")
    parser.add_argument("--source", type=Path, default=SOURCE, help="dir with pom.xml and src/")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    try:
        build = ensure_server(
            args.version,
            args.source,
            args.cache_dir,
            progress=lambda message: print(f"solr build: {message}", file=sys.stderr, flush=True),
        )
    except SolrBuildError as error:
        print(f"solr build: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(build)))
    else:
        state = "built" if build.built else "cached"
        print(f"{build.tarball} ({state} in {build.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
