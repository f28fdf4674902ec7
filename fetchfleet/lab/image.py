"""The base image every lab host sits on: Debian minbase by debootstrap, made host-neutral, and
cached under a hash of its recipe (rebuilt only when the recipe changes)."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from fetchfleet.lab.model import Lab, LabError, run, say

# Bump when the image recipe below changes in a way the hash of its inputs cannot see.
RECIPE_VERSION = 1
SUITE = "bookworm"
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "ca-certificates",
    "sudo",
    "procps",
)


def _host_apt_files() -> dict[str, str]:
    """The machine's apt sources and the settings it reaches the registry with: hosts fetch
    packages the same way it does, and nothing else of its apt setup comes along."""
    files = {}
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file() and path.suffix in (".list", ".sources"):
            files[str(path)] = path.read_text()
    for path in sorted(Path("/etc/apt/apt.conf.d").glob("*")):
        if path.is_file() and _reaches_the_registry(path.name, path.read_text()):
            files[str(path)] = path.read_text()
    return files


def _reaches_the_registry(name: str, text: str) -> bool:
    """A settings file of only `Acquire::` options (proxies, certificates, date checks), and not
    one of a Docker image's space savers: those (`docker-clean` turns off apt's binary cache, so
    every apt run and every Ansible apt task re-parses the package lists, 0.8 s a time instead of
    0.25 s; `docker-gzip-indexes` keeps the lists compressed) are not how a Debian server is set
    up. Nor are the machine's desktop hooks (packagekit, appstream), which are not `Acquire::`."""
    if name.startswith("docker-"):
        return False
    settings = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("#", "//"))
    ]
    return bool(settings) and all(line.startswith("Acquire::") for line in settings)


def _nameservers() -> list[str]:
    servers = []
    for line in Path("/etc/resolv.conf").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            servers.append(parts[1])
    return servers or ["1.1.1.1"]


def _mirror(apt_files: dict[str, str]) -> str:
    for text in apt_files.values():
        for line in text.splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
            if line.startswith("deb ") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def base_recipe() -> dict:
    apt_files = _host_apt_files()
    return {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "packages": list(BASE_PACKAGES),
        "mirror": _mirror(apt_files),
        "apt": apt_files,
        "nameservers": _nameservers(),
        "customize": hashlib.sha256(inspect.getsource(_customize_base).encode()).hexdigest(),
    }


def base_id(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _customize_base(root: Path, recipe: dict) -> None:
    """Make the debootstrapped tree a bootable, host-neutral image."""
    # debootstrap writes its own sources.list; the machine's sources replace it, not add to it.
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    for path, text in recipe["apt"].items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    # dpkg without an fsync per file, as Debian's own container images install: a lab host's disk
    # is thrown away, never recovered, and ten hosts installing at once wait on the machine's disk.
    (root / "etc/dpkg/dpkg.cfg.d/lab-unsafe-io").write_text("force-unsafe-io\n")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text(
        "".join(f"nameserver {ns}\n" for ns in recipe["nameservers"])
    )
    # Every host gets its own machine-id and SSH host keys at creation, never the image's.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").unlink(missing_ok=True)
    run("chroot", str(root), "systemctl", "enable", "systemd-networkd.service", "ssh.service")
    # nspawn's default network file asks for DHCP on host0; the lab's static 10-lab.network wins.
    # The image's package lists would be stale on every host; drop them and date the directory
    # to the epoch so that the first apt run (cache_valid_time and all) updates them.
    run("chroot", str(root), "apt-get", "clean")
    lists = root / "var/lib/apt/lists"
    for path in lists.glob("*_*"):
        path.unlink()
    os.utime(lists, (0, 0))


def ensure_base(lab: Lab) -> Path:
    """The cached base image for the current recipe; built (about a minute) only when missing."""
    recipe = base_recipe()
    ident = base_id(recipe)
    base = lab.state_dir / "base" / ident
    if (base / "etc/os-release").exists():
        return base
    building = base.with_name(f"{ident}.building")
    if building.exists():
        shutil.rmtree(building)  # a build cut off by a killed process
    building.mkdir(parents=True)
    say(f"building base image {ident} (debootstrap {SUITE}, cached afterwards)")
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(recipe['packages'])}",
            SUITE,
            str(building),
            recipe["mirror"],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        log = lab.state_dir / "base" / f"{ident}.debootstrap.log"
        log.write_text(proc.stdout + proc.stderr)
        tail = (
            (building / "debootstrap/debootstrap.log").read_text()[-800:]
            if (building / "debootstrap/debootstrap.log").exists()
            else proc.stderr[-800:]
        )
        raise LabError(f"debootstrap failed:\n{tail}", hint=f"full log: {log}")
    _customize_base(building, recipe)
    (building / ".recipe.json").write_text(json.dumps(recipe, indent=1, sort_keys=True))
    building.rename(base)
    say(f"base image {ident} built in {time.monotonic() - t0:.1f}s")
    _drop_unused_bases(lab, keep=base)
    return base


def _drop_unused_bases(lab: Lab, keep: Path) -> None:
    """Older images stay while a host still sits on them (until `lab.reset HOST`)."""
    used = {keep.name}
    for marker in (lab.state_dir / "hosts").glob("*/base"):
        used.add(marker.read_text().strip())
    for old in (lab.state_dir / "base").iterdir():
        if old.is_dir() and old.name not in used:
            shutil.rmtree(old)
            say(f"removed unused base image {old.name}")
