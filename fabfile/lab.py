"""`fab lab.*`: the lab fleet of real Debian hosts on this machine (see fetchfleet.lab)."""

import os

from invoke import task
from invoke.exceptions import Exit

from fetchfleet import lab as L
from fetchfleet.inventory import InventoryError


def _lab():
    try:
        return L.load_lab()
    except (InventoryError, L.LabError) as err:
        raise Exit(str(err), code=2) from err


def _do(action, *args):
    try:
        return action(*args)
    except L.LabError as err:
        raise Exit(str(err), code=1) from err


@task(help={"host": "only this host (default: every host in inventory/lab)"}, iterable=["host"])
def up(c, host=None):
    """Bring the lab up: base image (cached), bridge + NAT, every host booted and answering SSH."""
    _do(L.up, _lab(), host or None)


@task
def down(c):
    """Power every lab host off; remove mounts, the bridge and the nft table (disks are kept)."""
    _do(L.down, _lab())


@task
def status(c):
    """One row per lab host: state, address, SSH, network, disk, groups."""
    print(L.table(_do(L.status, _lab())))


@task(positional=["host"])
def ssh(c, host):
    """Open a shell on a lab host with the lab's key and pinned host keys."""
    lab = _lab()
    argv = L.ssh_argv(lab, _do(lab.host, host), batch=False)
    os.execvp(argv[0], argv)


@task(positional=["host"])
def destroy(c, host):
    """Power a host off and delete its disk: the next lab.up creates it anew."""
    lab = _lab()
    _do(L.destroy_host, lab, _do(lab.host, host).name)
    L.say("destroyed", host)


@task(positional=["host"])
def reset(c, host):
    """Give HOST a fresh, empty root on the base image and boot it (the 'fresh box')."""
    lab = _lab()
    _do(L.reset, lab, _do(lab.host, host).name)


@task(positional=["host"])
def stop(c, host):
    """Fault: clean poweroff of HOST."""
    lab = _lab()
    _do(L.stop_host, lab, _do(lab.host, host).name)
    L.say("stopped", host)


@task(positional=["host"])
def kill(c, host):
    """Fault: pull HOST's power (SIGKILL to its PID 1)."""
    lab = _lab()
    _do(L.kill_host, lab, _do(lab.host, host).name)
    L.say("killed", host)


@task(positional=["host"])
def start(c, host):
    """Boot a stopped or killed HOST again."""
    _do(L.up, _lab(), [host])


@task(positional=["host"])
def cut(c, host):
    """Fault: cut HOST off the network (its link to the bridge goes down)."""
    lab = _lab()
    _do(L.cut_network, lab, _do(lab.host, host).name)
    L.say("cut off the network", host)


@task(positional=["host"])
def heal(c, host):
    """Reconnect HOST to the network."""
    lab = _lab()
    _do(L.heal_network, lab, _do(lab.host, host).name)
    L.say("network healed", host)


@task(positional=["host"], help={"leave": "bytes to leave free (default 0)"})
def fill_disk(c, host, leave=0):
    """Fault: fill HOST's disk."""
    lab = _lab()
    written = _do(L.fill_disk, lab, _do(lab.host, host).name, int(leave))
    L.say(f"disk filled ({written / 2**20:.0f} MiB written)", host)


@task(positional=["host"])
def free_disk(c, host):
    """Undo lab.fill-disk."""
    lab = _lab()
    _do(L.free_disk, lab, _do(lab.host, host).name)
    L.say("disk fill removed", host)
