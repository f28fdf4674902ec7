"""`fab lab.status`: one row per host."""

from __future__ import annotations

from fetchfleet.lab.faults import disk_usage
from fetchfleet.lab.host import _ssh_ready
from fetchfleet.lab.model import Lab
from fetchfleet.lab.network import _link_state
from fetchfleet.lab.procs import host_state
from fetchfleet.output import table as output_table


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
    """The lab's tables: column names in capitals."""
    return output_table(rows, upper=True)
