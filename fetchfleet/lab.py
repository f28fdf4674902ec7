"""The lab: a fleet of real Debian 12 hosts booted with systemd-nspawn on this one machine.

Every host is a full Debian system (systemd as PID 1, sshd, networkd) on one Linux bridge with NAT
to the package registry. One base image is built by debootstrap and cached under a hash of its
recipe; each host is an overlayfs whose writable layer lives on the host's own ext4 disk image, so
a fresh host costs seconds and a host's disk can really fill up. The host list comes from the
inventory (`inventory/lab/`), never from this module.

Everything here is idempotent and recovers from a lab left half-up by a killed process: stale
mounts are reused or removed, the bridge and nft table are re-checked, dead hosts are booted again.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fetchfleet.inventory import Fleet, load_fleet

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
REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "nft": "nftables",
    "ip": "iproute2",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}
NFT_TABLE = "fetchfleet_lab"
STOP_TIMEOUT = 30.0


class LabError(Exception):
    """What failed, on which host, and what to run to look closer or fix it."""

    def __init__(self, what: str, host: str | None = None, hint: str | None = None):
        self.what, self.host, self.hint = what, host, hint
        where = f"{host}: " if host else ""
        super().__init__(f"lab: {where}{what}" + (f"\n  -> {hint}" if hint else ""))


# --- progress ------------------------------------------------------------------------------------

_print_lock = threading.Lock()
_started = time.monotonic()


def say(message: str, host: str | None = None) -> None:
    """One progress line: elapsed time, the host it is about, what happened."""
    where = f"{host:<8} " if host else ""
    with _print_lock:
        print(f"[{time.monotonic() - _started:6.1f}s] {where}{message}", flush=True)


# --- the lab's shape, from the inventory ---------------------------------------------------------


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Lab:
    state_dir: Path
    bridge: str
    network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    domain: str
    disk_size: str
    boot_timeout: float
    hosts: tuple[LabHost, ...]

    @classmethod
    def from_fleet(cls, fleet: Fleet) -> Lab:
        network = ipaddress.ip_network(str(fleet.var("lab_network")))
        gateway = ipaddress.ip_address(str(fleet.var("lab_gateway")))
        if gateway not in network:
            raise LabError(f"lab_gateway {gateway} is outside lab_network {network}")
        hosts = []
        for host in fleet.hosts:
            address = ipaddress.ip_address(host.address)
            if address not in network or address in (gateway, network.network_address):
                raise LabError(
                    f"address {address} is not a usable host address in {network}",
                    host.name,
                    f"fix ansible_host of {host.name} in {fleet.path}",
                )
            hosts.append(LabHost(host.name, host.address, host.groups))
        taken: dict[str, str] = {}
        for host in hosts:
            if host.address in taken:
                raise LabError(
                    f"address {host.address} is also given to {taken[host.address]}", host.name
                )
            taken[host.address] = host.name
        return cls(
            state_dir=Path(str(fleet.var("lab_state_dir"))),
            bridge=str(fleet.var("lab_bridge")),
            network=network,
            gateway=gateway,
            domain=str(fleet.var("lab_domain")),
            disk_size=str(fleet.var("lab_disk_size")),
            boot_timeout=float(fleet.var("lab_boot_timeout")),
            hosts=tuple(hosts),
        )

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise LabError(f"no lab host {name!r} (known: {known})", hint="see inventory/lab/hosts.yml")

    # paths
    @property
    def ssh_key(self) -> Path:
        return self.state_dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "ssh" / "known_hosts"

    def host_dir(self, name: str) -> Path:
        return self.state_dir / "hosts" / name

    def root(self, name: str) -> Path:
        return self.host_dir(name) / "root"

    def disk_mount(self, name: str) -> Path:
        return self.host_dir(name) / "disk"

    def disk_image(self, name: str) -> Path:
        return self.host_dir(name) / "disk.img"

    def console_log(self, name: str) -> Path:
        return self.host_dir(name) / "console.log"


def load_lab(env: str = "lab") -> Lab:
    return Lab.from_fleet(load_fleet(env))


# --- small system helpers ------------------------------------------------------------------------


def run(*argv: str, host: str | None = None, input: str | None = None) -> str:
    """Run a command; on failure raise a LabError that shows the command and its stderr."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise LabError(f"`{' '.join(argv)}` failed: {' / '.join(detail)}", host)
    return proc.stdout


def mounts() -> set[Path]:
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        points.add(Path(point))
    return points


def is_mounted(path: Path) -> bool:
    return path in mounts()


def preflight() -> None:
    """Refuse early, with the fix, when this machine cannot run the lab."""
    if os.geteuid() != 0:
        raise LabError(
            "needs root (it mounts overlays, creates a bridge and boots containers)",
            hint="run it as root: sudo fab lab.up (or sudo make lab)",
        )
    missing = {tool: pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None}
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise LabError(
            f"missing tools: {', '.join(sorted(missing))}",
            hint=f"run `make setup` (or: apt-get install {packages})",
        )


# --- processes: the nspawn supervisor of each host -----------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time (tells a reused pid apart); None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


@dataclass(frozen=True)
class Proc:
    pid: int
    start: str

    def alive(self) -> bool:
        return _start_time(self.pid) == self.start

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        start = _start_time(pid)
        return cls(pid, start) if start else None


def _record(lab: Lab, name: str) -> dict[str, Proc]:
    path = lab.host_dir(name) / "run.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: Proc(v["pid"], v["start"]) for k, v in data.items()}


def _save_record(lab: Lab, name: str, procs: dict[str, Proc]) -> None:
    path = lab.host_dir(name) / "run.json"
    path.write_text(json.dumps({k: {"pid": p.pid, "start": p.start} for k, p in procs.items()}))


def _live(lab: Lab, name: str) -> dict[str, Proc]:
    return {k: p for k, p in _record(lab, name).items() if p.alive()}


def host_state(lab: Lab, name: str) -> str:
    """absent (never created), stopped (disk exists, not running) or running."""
    if "nspawn" in _live(lab, name):
        return "running"
    return "stopped" if lab.disk_image(name).exists() else "absent"


# --- network -------------------------------------------------------------------------------------


def _links() -> list[dict]:
    return json.loads(run("ip", "-j", "addr", "show"))


def check_addresses(lab: Lab) -> None:
    """Refuse when another interface already holds the lab's network or one of its addresses."""
    ours = {str(lab.gateway)} | {h.address for h in lab.hosts}
    for link in _links():
        if link["ifname"] == lab.bridge:
            continue
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            iface = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            holder = next((h.name for h in lab.hosts if h.address == info["local"]), None)
            if info["local"] in ours:
                raise LabError(
                    f"address {info['local']} is already taken by interface {link['ifname']}",
                    holder,
                    "free it, or change lab_network / ansible_host in inventory/lab",
                )
            if iface.network.overlaps(lab.network):
                raise LabError(
                    f"lab_network {lab.network} overlaps {iface.network} on {link['ifname']}",
                    hint="choose a free lab_network in inventory/lab/group_vars/all/lab.yml",
                )


def _nft_rules(lab: Lab) -> str:
    return f"""table inet {NFT_TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {lab.network} oifname != "{lab.bridge}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{lab.bridge}" accept
        oifname "{lab.bridge}" ct state established,related accept
    }}
}}
"""


def network_up(lab: Lab) -> bool:
    """Bridge with the gateway address, forwarding, NAT out. Returns whether anything changed."""
    changed = False
    names = {link["ifname"]: link for link in _links()}
    if lab.bridge not in names:
        check_addresses(lab)
        run("ip", "link", "add", lab.bridge, "type", "bridge")
        changed = True
        names = {link["ifname"]: link for link in _links()}
    addrs = {i["local"] for i in names[lab.bridge].get("addr_info", []) if i["family"] == "inet"}
    if str(lab.gateway) not in addrs:
        run("ip", "addr", "add", f"{lab.gateway}/{lab.network.prefixlen}", "dev", lab.bridge)
        changed = True
    if "UP" not in names[lab.bridge].get("flags", []):
        run("ip", "link", "set", lab.bridge, "up")
        changed = True
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    if forward.read_text().strip() != "1":
        saved = lab.state_dir / "ip_forward.orig"
        if not saved.exists():
            saved.write_text(forward.read_text())
        forward.write_text("1\n")
        changed = True
    have = subprocess.run(
        ["nft", "list", "table", "inet", NFT_TABLE], capture_output=True, text=True, check=False
    )
    if have.returncode != 0 or f'oifname != "{lab.bridge}"' not in have.stdout:
        script = f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n" + _nft_rules(lab)
        run("nft", "-f", "-", input=script)
        changed = True
    return changed


def network_down(lab: Lab) -> None:
    if (
        subprocess.run(["nft", "list", "table", "inet", NFT_TABLE], capture_output=True).returncode
        == 0
    ):
        run("nft", "delete", "table", "inet", NFT_TABLE)
    if any(link["ifname"] == lab.bridge for link in _links()):
        run("ip", "link", "delete", lab.bridge)
    saved = lab.state_dir / "ip_forward.orig"
    if saved.exists():
        Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
        saved.unlink()


def veth(name: str) -> str:
    """The host-side end of a host's link to the bridge, as systemd-nspawn names it."""
    return f"vb-{name}"[:15]


# --- the base image ------------------------------------------------------------------------------


def _host_apt_files() -> dict[str, str]:
    """The machine's apt sources and settings: hosts reach the registry the same way it does."""
    files = {}
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.is_file() and path.suffix in (".list", ".sources"):
            files[str(path)] = path.read_text()
    for path in sorted(Path("/etc/apt/apt.conf.d").glob("*")):
        if path.is_file():
            files[str(path)] = path.read_text()
    return files


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


# --- one host ------------------------------------------------------------------------------------


def _hosts_file(lab: Lab) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback", ""]
    lines += [f"{h.address} {h.name}.{lab.domain} {h.name}" for h in lab.hosts]
    return "\n".join(lines) + "\n"


def _network_file(lab: Lab, host: LabHost) -> str:
    return (
        "# written by fetchfleet's lab at host creation\n"
        "[Match]\nName=host0\n\n"
        f"[Network]\nAddress={host.address}/{lab.network.prefixlen}\n"
        f"Gateway={lab.gateway}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )


def ensure_ssh_key(lab: Lab) -> None:
    if lab.ssh_key.exists():
        return
    lab.ssh_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    run(
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "fetchfleet-lab",
        "-f",
        str(lab.ssh_key),
    )
    say(f"generated the lab's SSH key {lab.ssh_key}")


def _mount_disk(lab: Lab, name: str) -> None:
    mnt = lab.disk_mount(name)
    if not is_mounted(mnt):
        mnt.mkdir(parents=True, exist_ok=True)
        run("mount", "-o", "loop", str(lab.disk_image(name)), str(mnt), host=name)


def _mount_root(lab: Lab, name: str) -> None:
    root, mnt = lab.root(name), lab.disk_mount(name)
    if is_mounted(root):
        return
    base = lab.state_dir / "base" / (lab.host_dir(name) / "base").read_text().strip()
    if not (base / "etc/os-release").exists():
        raise LabError(
            f"its base image {base.name} is gone",
            name,
            f"give it a fresh root: fab lab.reset {name}",
        )
    root.mkdir(parents=True, exist_ok=True)
    (mnt / "upper").mkdir(exist_ok=True)
    (mnt / "work").mkdir(exist_ok=True)
    options = f"lowerdir={base},upperdir={mnt / 'upper'},workdir={mnt / 'work'}"
    run("mount", "-t", "overlay", "overlay", "-o", options, str(root), host=name)


def create_host(lab: Lab, host: LabHost, base: Path) -> None:
    """A fresh host: an empty disk, the base image below it, its identity written on top."""
    hdir = lab.host_dir(host.name)
    hdir.mkdir(parents=True, exist_ok=True)
    (hdir / "base").write_text(base.name + "\n")
    image = lab.disk_image(host.name)
    partial = image.with_suffix(".partial")
    run("truncate", "-s", lab.disk_size, str(partial), host=host.name)
    run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", host.name, str(partial), host=host.name)
    partial.rename(image)
    _mount_disk(lab, host.name)
    _mount_root(lab, host.name)
    root = lab.root(host.name)
    (root / "etc/hostname").write_text(host.name + "\n")
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    (root / "etc/hosts").write_text(_hosts_file(lab))
    (root / "etc/systemd/network").mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/network/10-lab.network").write_text(_network_file(lab, host))
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(lab.ssh_key.with_suffix(".pub").read_text())
    keys.chmod(0o600)
    run("ssh-keygen", "-A", "-f", str(root), host=host.name)
    # Kept beside the disk too: known_hosts is rebuilt while some roots are not mounted.
    shutil.copy(root / "etc/ssh/ssh_host_ed25519_key.pub", hdir / "ssh_host_ed25519_key.pub")


def _host_key_line(lab: Lab, host: LabHost) -> str | None:
    pub = lab.host_dir(host.name) / "ssh_host_ed25519_key.pub"
    if not pub.exists():
        return None
    kind, key = pub.read_text().split()[:2]
    return f"{host.name},{host.name}.{lab.domain},{host.address} {kind} {key}"


def write_known_hosts(lab: Lab) -> None:
    lines = [line for h in lab.hosts if (line := _host_key_line(lab, h))]
    text = "\n".join(lines) + "\n"
    if not lab.known_hosts.exists() or lab.known_hosts.read_text() != text:
        lab.known_hosts.write_text(text)


def _leader(nspawn: Proc) -> Proc | None:
    """The host's PID 1: nspawn's child that lives in a PID namespace of its own."""
    ours = os.readlink("/proc/self/ns/pid")
    queue = _children(nspawn.pid)
    while queue:
        pid = queue.pop(0)
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/pid") != ours:
                return Proc.of(pid)
        queue += _children(pid)
    return None


def boot_host(lab: Lab, host: LabHost) -> None:
    name = host.name
    _mount_disk(lab, name)
    _mount_root(lab, name)
    log = lab.console_log(name).open("w")
    cmd = [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        f"--directory={lab.root(name)}",
        f"--machine={name}",
        "--register=no",
        "--keep-unit",
        f"--network-bridge={lab.bridge}",
        "--console=read-only",
        "--link-journal=no",
        "--resolv-conf=off",
        "--timezone=off",
    ]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    nspawn = Proc.of(proc.pid)
    if nspawn is None:
        raise LabError("systemd-nspawn exited at once", name, f"see {lab.console_log(name)}")
    _save_record(lab, name, {"nspawn": nspawn})


def _ssh_ready(lab: Lab, host: LabHost) -> bool:
    try:
        with socket.create_connection((host.address, 22), timeout=1) as conn:
            conn.settimeout(2)
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


# Run once SSH answers: wait for the boot to finish, give units that failed at boot one more
# start, and succeed only when unprivileged users may log in. Under load, nspawn hosts
# sometimes lose the race for a unit's cgroup ("Failed at step CGROUP", status 219): seen on
# systemd-user-sessions, which then leaves /run/nologin, so the admin users cannot log in.
_BOOT_SETTLED = """
timeout 30 systemctl is-system-running --wait >/dev/null 2>&1
failed=$(systemctl list-units --state=failed --no-legend --plain | awk '{print $1}')
if [ -n "$failed" ]; then
    echo "restarted units that failed at boot: $failed" >&2
    systemctl reset-failed
    systemctl restart $failed
fi
test ! -e /run/nologin
"""


def _note_leader(lab: Lab, name: str, record: dict[str, Proc], nspawn: Proc) -> dict[str, Proc]:
    """Record the host's PID 1 once it exists: kill_host and the orphan recovery need it."""
    if "leader" not in record and (leader := _leader(nspawn)):
        record = {**record, "leader": leader}
        _save_record(lab, name, record)
    return record


def wait_until_up(lab: Lab, host: LabHost, since: float) -> float:
    """Wait until the host answers SSH with its pinned key and its boot has settled (see
    _BOOT_SETTLED); returns seconds it took."""
    name = host.name
    deadline = since + lab.boot_timeout
    record: dict[str, Proc] = {}
    while time.monotonic() < deadline:
        record = _record(lab, name)
        nspawn = record.get("nspawn")
        if nspawn is None or not nspawn.alive():
            tail = lab.console_log(name).read_text()[-1500:]
            raise LabError(f"its systemd-nspawn exited during boot:\n{tail}", name)
        record = _note_leader(lab, name, record, nspawn)
        if (
            _ssh_ready(lab, host)
            and run_on(lab, host.name, _BOOT_SETTLED, check=False).returncode == 0
            and time.monotonic() <= deadline  # an attempt begun in time may end after it
        ):
            took = time.monotonic() - since
            # A fast boot can answer in the first round, begun before nspawn had forked PID 1.
            _note_leader(lab, name, record, nspawn)
            return took
        time.sleep(0.3)
    tail = lab.console_log(name).read_text()[-1500:]
    raise LabError(
        f"did not answer SSH within {lab.boot_timeout:.0f}s (lab_boot_timeout); console:\n{tail}",
        name,
        f"look closer: fab lab.status; less {lab.console_log(name)}",
    )


def ssh_argv(lab: Lab, host: LabHost, *command: str, batch: bool = True) -> list[str]:
    """ssh with the lab's key and pinned host keys; batch=False for a person at a terminal."""
    return [
        "ssh",
        "-i",
        str(lab.ssh_key),
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"BatchMode={'yes' if batch else 'no'}",
        "-o",
        "ConnectTimeout=3",
        f"root@{host.address}",
        *command,
    ]


def run_on(
    lab: Lab, name: str, command: str, stdin: str | bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a shell command on a lab host (stdin keeps secrets off the command line); with
    check, a failure raises with its output. Output is text; undecodable bytes are replaced."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    raw = subprocess.run(
        ssh_argv(lab, lab.host(name), command),
        input=data,
        capture_output=True,
        check=False,
        timeout=600,
    )
    proc = subprocess.CompletedProcess(
        raw.args,
        raw.returncode,
        raw.stdout.decode(errors="replace"),
        raw.stderr.decode(errors="replace"),
    )
    if check and proc.returncode != 0:
        output = (proc.stdout[-1500:] + proc.stderr[-1500:]).strip()
        raise LabError(f"`{command}` exited {proc.returncode}:\n{output}", name)
    return proc


def tcp_open(lab: Lab, source: str, target: str, port: int, timeout: float = 2.0) -> bool:
    """Can lab host `source` open a TCP connection to lab host `target` on `port`?"""
    probe = (
        "import socket, sys\n"
        f"s = socket.socket(); s.settimeout({timeout})\n"
        f"sys.exit(0 if s.connect_ex(({lab.host(target).address!r}, {port})) == 0 else 1)\n"
    )
    proc = run_on(lab, source, f"python3 -c {shlex.quote(probe)}", check=False)
    # 0 or 1 is the answer; anything else, or a traceback, means the probe itself failed.
    if proc.returncode not in (0, 1) or proc.stderr.strip():
        raise LabError(f"TCP probe to {target}:{port} failed: {proc.stderr.strip()}", source)
    return proc.returncode == 0


def secret(name: str, env: str = "lab") -> str:
    """A secret the lab generated (inventory/lab/group_vars/all/secrets.yml), by file name."""
    path = Path(str(load_fleet(env).var("lab_secret_dir"))) / name
    try:
        return path.read_text().split()[0]
    except OSError as err:
        raise LabError(
            f"lab secret {name!r} does not exist yet ({path})", hint="converge first"
        ) from err


def _signal_all(procs: Iterable[Proc], sig: signal.Signals) -> None:
    for proc in procs:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)


def _wait_dead(procs: Iterable[Proc], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    procs = list(procs)
    while time.monotonic() < deadline:
        if not any(p.alive() for p in procs):
            return True
        time.sleep(0.1)
    return not any(p.alive() for p in procs)


def kill_host(lab: Lab, name: str) -> None:
    """Pull the power: PID 1 of the host dies at once, and with it everything in the host."""
    procs = _live(lab, name)
    _signal_all([procs[k] for k in ("leader",) if k in procs], signal.SIGKILL)
    _signal_all(procs.values(), signal.SIGKILL)
    if not _wait_dead(procs.values(), 10):
        raise LabError("still running after SIGKILL", name, f"ps -p {procs['nspawn'].pid}")
    _drop_link(name)


def _drop_link(name: str) -> None:
    """Remove the host's end of its veth. After a kill the kernel drops it only when it gets
    round to destroying the host's network namespace, which can be seconds later."""
    if _link_state(name) is not None:
        # check=False: the kernel may delete it between the look and the delete
        subprocess.run(["ip", "link", "delete", veth(name)], capture_output=True)


def stop_host(lab: Lab, name: str, timeout: float = STOP_TIMEOUT) -> None:
    """A clean poweroff (SIGTERM to nspawn asks the host's systemd to shut down)."""
    procs = _live(lab, name)
    if "nspawn" in procs:
        _signal_all([procs["nspawn"]], signal.SIGTERM)
        if not _wait_dead(procs.values(), timeout):
            say(f"did not power off within {timeout:.0f}s; killing it", name)
            kill_host(lab, name)
    elif "leader" in procs:  # nspawn died (killed) but the host lives on: orphaned
        kill_host(lab, name)


def unmount_host(lab: Lab, name: str) -> None:
    for path in (lab.root(name), lab.disk_mount(name)):
        for _ in range(50):
            if not is_mounted(path):
                break
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                time.sleep(0.2)
        if is_mounted(path):
            raise LabError(f"{path} stays mounted (busy)", name, f"fuser -vm {path}")


def destroy_host(lab: Lab, name: str) -> None:
    stop_host(lab, name)
    unmount_host(lab, name)
    shutil.rmtree(lab.host_dir(name), ignore_errors=True)


# --- the fleet -----------------------------------------------------------------------------------


def _parallel(func: Callable, items: Iterable) -> list:
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(func, items))


def select(lab: Lab, names: Iterable[str] | None) -> list[LabHost]:
    return [lab.host(n) for n in names] if names else list(lab.hosts)


def _recover(lab: Lab, host: LabHost) -> None:
    """A host whose nspawn is gone: kill an orphaned PID 1 and drop a stale root mount."""
    live = _live(lab, host.name)
    if "nspawn" in live:
        return
    if "leader" in live:
        say("orphaned host (its nspawn was killed); killing it", host.name)
        kill_host(lab, host.name)
    if is_mounted(lab.root(host.name)):
        unmount_host(lab, host.name)
    _drop_link(host.name)


def up(lab: Lab, names: Iterable[str] | None = None) -> dict[str, float]:
    """Bring hosts up (all by default); returns the boot time of each host that was booted."""
    preflight()
    t0 = time.monotonic()
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    hosts = select(lab, names)
    to_boot = [h for h in hosts if host_state(lab, h.name) != "running"]
    _parallel(lambda h: _recover(lab, h), to_boot)
    if network_up(lab):
        say(f"network: bridge {lab.bridge} {lab.gateway}/{lab.network.prefixlen}, NAT out")
    for host in hosts:
        if host not in to_boot and _link_state(host.name) == "down":
            heal_network(lab, host.name)
            say("was cut off the network; healed", host.name)
    # Running but not answering (a boot cut short by a killed `lab.up`): wait for it, bounded.
    booting = [h for h in hosts if h not in to_boot and not _ssh_ready(lab, h)]
    if booting:
        since = time.monotonic()
        _parallel(lambda h: wait_until_up(lab, h, since), booting)
    if not to_boot:
        say(f"all {len(hosts)} hosts already running; nothing to do")
        return {}
    ensure_ssh_key(lab)
    fresh = [h for h in to_boot if host_state(lab, h.name) == "absent"]
    if fresh:
        base = ensure_base(lab)

        def create(host: LabHost) -> None:
            t = time.monotonic()
            create_host(lab, host, base)
            say(f"created on base {base.name} ({time.monotonic() - t:.1f}s)", host.name)

        _parallel(create, fresh)
    write_known_hosts(lab)
    started = time.monotonic()

    def boot(host: LabHost) -> float:
        boot_host(lab, host)
        took = wait_until_up(lab, host, started)
        say(f"up at {host.address} ({took:.1f}s)", host.name)
        return took

    times = dict(zip([h.name for h in to_boot], _parallel(boot, to_boot), strict=True))
    say(
        f"{len(to_boot)} hosts booted in {time.monotonic() - started:.1f}s "
        f"(lab.up {time.monotonic() - t0:.1f}s)"
    )
    return times


def down(lab: Lab) -> None:
    """Power every host off and leave no mounts, links, nft rules or processes behind."""
    preflight()

    def stop(host: LabHost) -> None:
        if host_state(lab, host.name) == "running" or _live(lab, host.name):
            stop_host(lab, host.name)
            say("powered off", host.name)
        unmount_host(lab, host.name)

    _parallel(stop, lab.hosts)
    network_down(lab)
    say("lab down: no hosts running, bridge and nft table removed")


def reset(lab: Lab, name: str) -> float:
    """Give a host a fresh, empty root (the 'fresh box' for restore drills) and boot it."""
    destroy_host(lab, name)
    say("destroyed; creating a fresh root", name)
    return up(lab, [name]).get(name, 0.0)


def cut_network(lab: Lab, name: str) -> None:
    run("ip", "link", "set", veth(name), "down", host=name)


def heal_network(lab: Lab, name: str) -> None:
    run("ip", "link", "set", veth(name), "up", host=name)


FILL_FILE = "var/tmp/lab-disk-fill"


def fill_disk(lab: Lab, name: str, leave_bytes: int = 0) -> int:
    """Fill the host's disk until only `leave_bytes` are free; returns bytes written."""
    stat = os.statvfs(lab.disk_mount(name))
    free = stat.f_bavail * stat.f_frsize - leave_bytes
    if free <= 0:
        return 0
    path = lab.root(name) / FILL_FILE
    # ENOSPC near the end is fine: the disk is then as full as it gets, which is the point.
    with path.open("ab") as fh, contextlib.suppress(OSError):
        os.posix_fallocate(fh.fileno(), path.stat().st_size, free)
    return free


def free_disk(lab: Lab, name: str) -> None:
    (lab.root(name) / FILL_FILE).unlink(missing_ok=True)


def disk_usage(lab: Lab, name: str) -> tuple[int, int] | None:
    if not is_mounted(lab.disk_mount(name)):
        return None
    stat = os.statvfs(lab.disk_mount(name))
    total = stat.f_blocks * stat.f_frsize
    return total - stat.f_bavail * stat.f_frsize, total


def _link_state(name: str) -> str | None:
    """up / down for a host's link to the bridge; None when it has none (not running)."""
    link = subprocess.run(["ip", "-j", "link", "show", veth(name)], capture_output=True, text=True)
    if link.returncode != 0:
        return None
    return "up" if "UP" in json.loads(link.stdout)[0]["flags"] else "down"


def status(lab: Lab) -> list[dict]:
    rows = []
    for host in lab.hosts:
        state = host_state(lab, host.name)
        usage = disk_usage(lab, host.name)
        link = _link_state(host.name) if state == "running" else None
        net = {"up": "up", "down": "CUT", None: "-"}[link]
        rows.append(
            {
                "host": host.name,
                "address": host.address,
                "state": state,
                "ssh": ("yes" if _ssh_ready(lab, host) else "NO") if state == "running" else "-",
                "net": net,
                "disk": f"{usage[0] / 2**30:.1f}/{usage[1] / 2**30:.0f}G" if usage else "-",
                "groups": ",".join(host.groups),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    if not rows:
        return "(nothing)"
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.upper().ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)
