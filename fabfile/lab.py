"""`fab lab.*`: the lab fleet of real Debian hosts on this machine (see fetchfleet.lab)."""

import os

from invoke import task
from invoke.exceptions import Exit

from fetchfleet import lab as L
from fetchfleet.inventory import InventoryError, load_fleet


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
    lab = _lab()
    (lab.state_dir / L.MAKE_LAB_MARK).unlink(missing_ok=True)  # make lab marks it after this
    _do(L.up, lab, host or None)


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


def _on_host(host, action, done=None, *args):
    """Run a lab action on one inventory host; say `done` when it worked."""
    lab = _lab()
    name = _do(lab.host, host).name
    result = _do(action, lab, name, *args)
    if done:
        L.say(done, name)
    return result


@task(positional=["host"])
def destroy(c, host):
    """Power a host off and delete its disk: the next lab.up creates it anew."""
    _on_host(host, L.destroy_host, "destroyed")


@task(positional=["host"])
def reset(c, host):
    """Give HOST a fresh, empty root on the base image and boot it (the 'fresh box')."""
    _on_host(host, L.reset)


@task(positional=["host"])
def stop(c, host):
    """Fault: clean poweroff of HOST."""
    _on_host(host, L.stop_host, "stopped")


@task(positional=["host"])
def kill(c, host):
    """Fault: pull HOST's power (SIGKILL to its PID 1)."""
    _on_host(host, L.kill_host, "killed")


@task(positional=["host"])
def start(c, host):
    """Boot a stopped or killed HOST again."""
    _do(L.up, _lab(), [host])


@task(positional=["host"])
def cut(c, host):
    """Fault: cut HOST off the network (its link to the bridge goes down)."""
    _on_host(host, L.cut_network, "cut off the network")


@task(positional=["host"])
def heal(c, host):
    """Reconnect HOST to the network."""
    _on_host(host, L.heal_network, "network healed")


@task(positional=["host"], help={"leave": "bytes to leave free (default 0)"})
def fill_disk(c, host, leave=0):
    """Fault: fill HOST's disk."""
    written = _on_host(host, L.fill_disk, None, int(leave))
    L.say(f"disk filled ({written / 2**20:.0f} MiB written)", host)


@task(positional=["host"])
def free_disk(c, host):
    """Undo lab.fill-disk."""
    _on_host(host, L.free_disk, "disk fill removed")


@task
def url(c):
    """The app's address: the lab's load balancer (from the inventory's loadbalancers group)."""
    try:
        fleet = load_fleet("lab")
    except InventoryError as err:
        raise Exit(str(err), code=2) from err
    balancers = fleet.group("loadbalancers")
    if not balancers:
        raise Exit("inventory lab has no loadbalancers host", code=2)
    port = balancers[0].vars.get("nginx_lb_port", 80)
    suffix = "" if int(port) == 80 else f":{port}"
    print(f"cloudfetch is at http://{balancers[0].address}{suffix}/")
