"""The lab's network: a bridge with the gateway address, forwarding, NAT out through an nft table
of its own, and each host's veth on the bridge."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from fetchfleet.lab.model import Lab, LabError, run

NFT_TABLE = "fetchfleet_lab"


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


def _link_state(name: str) -> str | None:
    """up / down for a host's link to the bridge; None when it has none (not running)."""
    link = subprocess.run(["ip", "-j", "link", "show", veth(name)], capture_output=True, text=True)
    if link.returncode != 0:
        return None
    return "up" if "UP" in json.loads(link.stdout)[0]["flags"] else "down"


def _drop_link(name: str) -> None:
    """Remove the host's end of its veth. After a kill the kernel drops it only when it gets
    round to destroying the host's network namespace, which can be seconds later."""
    if _link_state(name) is not None:
        # check=False: the kernel may delete it between the look and the delete
        subprocess.run(["ip", "link", "delete", veth(name)], capture_output=True)
