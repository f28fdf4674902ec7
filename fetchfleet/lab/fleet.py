"""The lab as a whole: up (build, network, create, boot, wait; recovering whatever a killed run left
half-done), down (nothing left behind), and a fresh box for one host."""

from __future__ import annotations

import time
from collections.abc import Iterable

from fetchfleet.lab.faults import heal_network
from fetchfleet.lab.host import (
    _ssh_ready,
    boot_host,
    create_host,
    destroy_host,
    ensure_ssh_key,
    kill_host,
    stop_host,
    unmount_host,
    wait_until_up,
    write_known_hosts,
)
from fetchfleet.lab.image import ensure_base
from fetchfleet.lab.model import Lab, LabHost, is_mounted, preflight, say
from fetchfleet.lab.network import _drop_link, _link_state, network_down, network_up
from fetchfleet.lab.procs import _live, host_state
from fetchfleet.remote import parallel
from fetchfleet.tls import ensure_ca, ensure_host_cert


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


def ensure_tls(lab: Lab) -> None:
    """The lab's CA (the PagerDuty stand-in's, on the lab machine's address) and a certificate for
    every host, made once and renewed near their end (fetchfleet.tls); converges ship them."""
    ensure_ca(lab.ca_dir, [str(lab.gateway)])
    for host in lab.hosts:
        ensure_host_cert(lab.ca_dir, host.name, [f"{host.name}.{lab.domain}", host.address])


def up(lab: Lab, names: Iterable[str] | None = None) -> dict[str, float]:
    """Bring hosts up (all by default); returns the boot time of each host that was booted."""
    preflight()
    t0 = time.monotonic()
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_tls(lab)
    hosts = select(lab, names)
    to_boot = [h for h in hosts if host_state(lab, h.name) != "running"]
    parallel(lambda h: _recover(lab, h), to_boot)
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
        parallel(lambda h: wait_until_up(lab, h, since), booting)
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

        parallel(create, fresh)
    write_known_hosts(lab)
    started = time.monotonic()

    def boot(host: LabHost) -> float:
        boot_host(lab, host)
        took = wait_until_up(lab, host, started)
        say(f"up at {host.address} ({took:.1f}s)", host.name)
        return took

    times = dict(zip([h.name for h in to_boot], parallel(boot, to_boot), strict=True))
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

    parallel(stop, lab.hosts)
    network_down(lab)
    say("lab down: no hosts running, bridge and nft table removed")


def reset(lab: Lab, name: str) -> float:
    """Give a host a fresh, empty root (the 'fresh box' for restore drills) and boot it."""
    destroy_host(lab, name)
    say("destroyed; creating a fresh root", name)
    return up(lab, [name]).get(name, 0.0)
