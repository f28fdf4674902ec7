"""The fleet's logs, read from one place: the log server that every host's journal-upload sends
to (roles/logs). `fab logs HOST|GROUP` is a thin task over `read_logs`.

journal-remote keeps each sending host's journal in files named after the address it connected
from (`remote-10.77.0.21.journal`, and `remote-10.77.0.21@….journal` once rotated: Debian 12's
journal-remote has no client-certificate checking, so it names no certificate subject). The files
a query reads are picked by the address the inventory gives the host, which the log server's
firewall admits from fleet hosts only, not by the host name the entries claim. The command
is built here, as data, and checked before anything runs: a bad time, unit or pattern is refused
naming the value.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from fetchfleet import remote
from fetchfleet.errors import FleetError
from fetchfleet.inventory import Fleet, Host
from fetchfleet.settings import setting

# What journalctl --since accepts that is worth typing: absolute dates and times, relative offsets
# ("-1h", "2 hours ago", "+5min"), and its words (systemd.time(7)).
_ABSOLUTE = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$|^\d{2}:\d{2}(:\d{2})?$")
_UNITS = "us|ms|s|sec|second|seconds|m|min|minute|minutes|h|hr|hour|hours|d|day|days|w|week|weeks|month|months|y|year|years"
_RELATIVE = re.compile(rf"^([-+]\s*)?(\d+\s*({_UNITS})\s*)+( ago)?$")
_WORDS = ("now", "today", "yesterday", "tomorrow")
# systemd unit names (systemd.unit(5)), with the globs journalctl -u takes.
_UNIT = re.compile(r"^[A-Za-z0-9:_.\\@*?\[\]-]{1,255}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
REMOTE_DIR = "/var/log/journal/remote"
DEFAULT_LINES = 200


class LogsError(FleetError):
    prefix = "logs"


@dataclass(frozen=True)
class Query:
    """What to read: hosts by inventory name, and journalctl's filters."""

    hosts: tuple[str, ...]
    since: str | None = None
    unit: str | None = None
    grep: str | None = None
    lines: int | None = DEFAULT_LINES


def check_since(value: str) -> str:
    text = " ".join(value.split())
    if text in _WORDS or _ABSOLUTE.match(text) or _RELATIVE.match(text):
        return text
    raise LogsError(
        f"--since {value!r} is not a time journalctl takes: use e.g. '2026-01-31 12:00', "
        "'-1h', '30 min ago', 'today' or 'yesterday'"
    )


def check_query(query: Query) -> Query:
    """The query with its values normalised; LogsError naming the first bad one."""
    if not query.hosts:
        raise LogsError("no hosts to read the logs of")
    for name in query.hosts:
        if not _HOSTNAME.match(name):
            raise LogsError(f"host {name!r} is not a host name")
    if query.unit is not None and not _UNIT.match(query.unit):
        raise LogsError(
            f"--unit {query.unit!r} is not a systemd unit name (e.g. nginx, ssh.service)"
        )
    if query.grep is not None and (not query.grep or "\n" in query.grep or "\0" in query.grep):
        raise LogsError(f"--grep {query.grep!r} must be a non-empty pattern on one line")
    if query.lines is not None and query.lines < 0:
        raise LogsError(f"--lines {query.lines} must be 0 (all) or more")
    since = check_since(query.since) if query.since is not None else None
    return Query(query.hosts, since, query.unit, query.grep, query.lines)


def journalctl_command(
    query: Query, senders: Mapping[str, str], directory: str = REMOTE_DIR
) -> str:
    """The shell command the log server runs: journalctl over the files of the query's hosts,
    found by each host's address (`senders`: inventory name -> address).

    A host whose journal never arrived is named on stderr (exit 3 if none of them has one), since
    journalctl refuses a --file that does not exist."""
    query = check_query(query)
    for name in query.hosts:
        try:
            ipaddress.ip_address(senders.get(name, ""))
        except ValueError:
            raise LogsError(
                f"host {name} has no IP address in the inventory ({senders.get(name)!r}); "
                "the log server names its files by the sender's address"
            ) from None
    args = ["journalctl", "--no-pager", "--output=short-iso"]
    if query.since is not None:
        args.append(f"--since={query.since}")
    if query.unit is not None:
        args.append(f"--unit={query.unit}")
    if query.grep is not None:
        args.append(f"--grep={query.grep}")
    if query.lines:
        args.append(f"--lines={query.lines}")
    pairs = " ".join(f"{shlex.quote(h)}={shlex.quote(senders[h])}" for h in query.hosts)
    return (
        f"cd {shlex.quote(directory)} || exit 2; set --; "
        f'for p in {pairs}; do h="${{p%%=*}}"; a="${{p#*=}}"; found=; '
        f'for f in "remote-$a.journal" "remote-$a"@*.journal; do '
        f'[ -f "$f" ] && found=1 && set -- "$@" "--file=$f"; done; '
        f'[ -n "$found" ] || echo "no journal from $h ($a) on this log server" >&2; done; '
        f'[ "$#" -gt 0 ] || exit 3; exec {shlex.join(args)} "$@"'
    )


def resolve(fleet: Fleet, target: str) -> list[Host]:
    """HOST or GROUP of the inventory."""
    hosts = fleet.group(target) or [h for h in fleet.hosts if h.name == target]
    if not hosts:
        groups = sorted({g for h in fleet.hosts for g in h.groups})
        raise LogsError(
            f"{target!r} is neither a host nor a group of inventory {fleet.name} "
            f"(groups: {', '.join(groups)})"
        )
    return hosts


def log_server(fleet: Fleet) -> Host:
    group = str(setting(fleet.hosts[0], "logs_server_group"))
    servers = fleet.group(group)
    if not servers:
        raise LogsError(f"inventory {fleet.name} has no host in logs_server_group {group!r}")
    return servers[0]


def read_logs(fleet: Fleet, query: Query) -> str:
    """The entries the query selects, as journalctl prints them on the log server."""
    command = journalctl_command(query, {h.name: h.address for h in fleet.hosts})
    server = log_server(fleet)
    result = remote.connect(server).run(command, check=False, timeout=120)
    if result.returncode == 3:
        raise LogsError(
            f"no journal from {', '.join(query.hosts)} has reached the log server",
            server.name,
            hint="look closer on the sending host: systemctl status systemd-journal-upload",
            command=command,
        )
    if result.returncode != 0:
        raise LogsError(
            f"journalctl exited {result.returncode}: {result.tail()}", server.name, command=command
        )
    return result.stdout + (f"\n{result.stderr.strip()}" if result.stderr.strip() else "")
