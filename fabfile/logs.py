"""`fab logs HOST|GROUP`: the fleet's logs, from the log server (logic: fetchfleet.logs)."""

from invoke import task
from invoke.exceptions import Exit

from fetchfleet.errors import FleetError
from fetchfleet.inventory import InventoryError, load_fleet
from fetchfleet.logs import DEFAULT_LINES, Query, check_query, read_logs, resolve


@task(
    help={
        "target": "a host or a group of the inventory (web1, web, all)",
        "env": "inventory (default: lab)",
        "since": "from this time: '2026-01-31 12:00', '-1h', '30 min ago', 'today'",
        "unit": "only this systemd unit (nginx, ssh, supervisor)",
        "grep": "only entries whose message matches this pattern (PCRE, case-insensitive if lower-case)",
        "lines": f"the last N entries (default {DEFAULT_LINES}, or all with --since; 0: all)",
    },
)
def logs(c, target, env="lab", since=None, unit=None, grep=None, lines=None):
    """Read the logs of a host or group as the log server received them."""
    try:
        count = int(lines) if lines is not None else (0 if since else DEFAULT_LINES)
        fleet = load_fleet(env)
        hosts = tuple(h.name for h in resolve(fleet, target))
        query = check_query(Query(hosts, since=since, unit=unit, grep=grep, lines=count))
        print(read_logs(fleet, query), end="")
    except (FleetError, InventoryError) as err:
        raise Exit(f"logs: {err}", code=1) from err
    except ValueError as err:
        raise Exit(f"logs: --lines {lines!r} is not a number", code=1) from err
