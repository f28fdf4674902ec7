#!/usr/bin/python3
"""fetchfleet_nginx: requests by status class, the 5xx share and latency, from nginx's access
log (every nginx host: load balancers, web hosts, workers), and whether nginx runs.

Reads the lines added to the log since the last run (offset and inode kept in the plugin's
state; after logrotate moved the file to access.log.1, the rest of the old file is read first).
The first run only notes where the log ends. The log must be in the fleet's `fetchfleet`
format (roles/nginx): `... "REQUEST" STATUS BYTES "REFERER" "AGENT" rt=SECONDS upstream=...`.
Latency is $request_time over this run's requests, leaving out downloads (paths ending in
/download), whose time is the transfer's, not the app's; 0 when there were no requests.

    [fetchfleet_nginx]
    group adm
    env.access_log /var/log/nginx/access.log
    env.min_requests 20                  # 5xx share: window of at least this many requests
    env.latency_exclude (^|/)download$   # paths (without query) left out of latency

Magic markers (munin-node-configure):
#%# family=auto
#%# capabilities=autoconf
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from muninplugin import Field, Graph, Plugin, PluginError, Values, main, windowed_percent

LINE = re.compile(
    r'^\S+ - \S+ \[[^\]]*\] "(?P<request>[^"]*)" (?P<status>\d{3}) \d+ "[^"]*" "[^"]*" '
    r"rt=(?P<rt>[\d.]+) "
)
CLASSES = ("2xx", "3xx", "4xx", "5xx")
MAX_READ = 256 * 1024 * 1024


@dataclass
class Reading:
    lines: list[str]
    inode: int | None
    offset: int


def read_new_lines(path: Path, inode: int | None, offset: int | None) -> Reading:
    """Complete lines appended to `path` since (inode, offset). offset None: the first run,
    which starts at the end of the log."""
    try:
        current = path.stat()
    except FileNotFoundError:
        return Reading([], None, 0)
    lines: list[str] = []
    if inode is not None and inode != current.st_ino:
        rotated = path.with_name(path.name + ".1")
        if rotated.exists() and rotated.stat().st_ino == inode:
            lines, _ = _read_from(rotated, offset or 0)
        offset = 0
    if offset is None:
        return Reading([], current.st_ino, current.st_size)
    if current.st_size < offset:
        offset = 0  # truncated in place (copytruncate)
    more, offset = _read_from(path, offset)
    return Reading(lines + more, current.st_ino, offset)


def _read_from(path: Path, offset: int) -> tuple[list[str], int]:
    with path.open("rb") as log:
        log.seek(offset)
        chunk = log.read(MAX_READ)
    complete = chunk[: chunk.rfind(b"\n") + 1]
    text = complete.decode("utf-8", "replace")
    return text.splitlines(), offset + len(complete)


@dataclass
class Traffic:
    classes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    latencies_ms: list[float] = field(default_factory=list)
    unparsed: int = 0


def tally(lines: list[str], latency_exclude: re.Pattern[str]) -> Traffic:
    traffic = Traffic()
    for line in lines:
        match = LINE.match(line)
        if match is None:
            traffic.unparsed += 1
            continue
        klass = match["status"][0] + "xx"
        if klass in traffic.classes:
            traffic.classes[klass] += 1
        parts = match["request"].split(" ")
        path = (parts[1] if len(parts) > 1 else "").split("?", 1)[0]
        if not latency_exclude.search(path):
            traffic.latencies_ms.append(float(match["rt"]) * 1000)
    return traffic


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 100))
    return ordered[int(rank) - 1]


class Nginx(Plugin):
    name = "fetchfleet_nginx"
    service = "nginx"
    up_category = "nginx"
    alerts: ClassVar[dict[str, str]] = {
        "fetchfleet_nginx_up": "nginx is not running on this host",
        "fetchfleet_nginx_errors": "nginx on this host answers too many requests with a 5xx",
        "fetchfleet_nginx_latency": "requests through nginx on this host are slow",
    }

    def collect(self) -> dict[str, Any]:
        path = Path(self.setting("access_log", "/var/log/nginx/access.log"))
        try:
            exclude = re.compile(self.setting("latency_exclude", r"(^|/)download$"))
        except re.error as err:
            raise PluginError(f"env.latency_exclude is not a regular expression: {err}") from err
        return {"path": path, "exclude": exclude}

    def is_up(self, snapshot: dict[str, Any]) -> bool:
        try:
            pid = int(Path(self.setting("pid_file", "/run/nginx.pid")).read_text().strip())
            os.kill(pid, 0)
        except PermissionError:
            return True  # it runs, as another user
        except (OSError, ValueError):
            return False
        return True

    def graphs(self, snapshot: dict[str, Any] | None) -> list[Graph]:
        per_minute = {"type": "DERIVE", "min": 0}
        return [
            Graph(
                "fetchfleet_nginx_requests",
                "nginx requests by status class",
                "requests per ${graph_period}",
                "nginx",
                tuple(Field(f"status_{c}", c, draw="AREASTACK", **per_minute) for c in CLASSES),
                period="minute",
            ),
            Graph(
                "fetchfleet_nginx_errors",
                "nginx 5xx share",
                "% of requests",
                "nginx",
                (
                    Field(
                        "server_error_percent",
                        "5xx",
                        min=0,
                        max=100,
                        warning="5",
                        critical="20",
                        info="share of 5xx over the last window of at least min_requests requests",
                    ),
                ),
                args="--base 1000 -l 0 -u 100",
            ),
            Graph(
                "fetchfleet_nginx_latency",
                "nginx request time",
                "milliseconds",
                "nginx",
                (
                    Field("mean", "mean", min=0),
                    Field("p95", "95th percentile", min=0, warning="2000", critical="10000"),
                ),
                info="$request_time of this interval's requests, downloads left out; 0 without requests.",
            ),
        ]

    def values(self, snapshot: dict[str, Any]) -> Values:
        state = self.load_state()
        reading = read_new_lines(snapshot["path"], state.get("inode"), state.get("offset"))
        traffic = tally(reading.lines, snapshot["exclude"])
        if traffic.unparsed:
            sys.stderr.write(
                f"{self.name}: {traffic.unparsed} lines not in the fetchfleet format\n"
            )
        counts = state.get("counts") or dict.fromkeys(CLASSES, 0)
        for klass, n in traffic.classes.items():
            counts[klass] = counts.get(klass, 0) + n
        minimum = int(self.number_setting("min_requests", 20))
        percent = windowed_percent(state, "5xx", counts["5xx"], sum(counts.values()), minimum)
        state.update(inode=reading.inode, offset=reading.offset, counts=counts)
        self.save_state(state)
        latencies = traffic.latencies_ms
        return {
            "fetchfleet_nginx_requests": {f"status_{c}": counts[c] for c in CLASSES},
            "fetchfleet_nginx_errors": {"server_error_percent": percent},
            "fetchfleet_nginx_latency": {
                "mean": sum(latencies) / len(latencies) if latencies else 0.0,
                "p95": percentile(latencies, 95),
            },
        }


if __name__ == "__main__":
    sys.exit(main(Nginx))
