"""munin_alerts MUNIN_CONF PAGER_SPOOL: what the Munin master knows of every alert now. Runs on a
monitoring host with the system python3; prints one JSON object.

munin-limits (Debian's 2.0.73, Munin::Master::LimitsOld) writes its state after every run to
DBDIR/limits, a text file of `GROUP;HOST;SERVICE;FIELD;ATTRIBUTE VALUE` lines (`state` ok,
warning, critical or unknown, and the text of that state, e.g. "Value is 0.00. Critical range
(1:) exceeded"), and the same as limits.storable. DBDIR is munin.conf's `dbdir`. The pager's
state (what it last did per dedup key, and when) is PAGER_SPOOL/state.json. Both are read as
they are: fab parses them (fetchfleet/monitoring/alerts.py).
"""

import json
import os
import sys
import time

DEFAULT_DBDIR = "/var/lib/munin"  # munin's own default when munin.conf does not say


def dbdir(munin_conf):
    try:
        with open(munin_conf) as fh:
            for line in fh:
                key, _, value = line.strip().partition(" ")
                if key == "dbdir" and value.strip():
                    return value.strip()
    except FileNotFoundError:
        return None
    return DEFAULT_DBDIR


def read(path):
    try:
        with open(path) as fh:
            return fh.read(), os.stat(path).st_mtime
    except FileNotFoundError:
        return None, None


def count(directory):
    try:
        return len([n for n in os.listdir(directory) if n.endswith(".json")])
    except FileNotFoundError:
        return None


def waiting_keys(queue, limit=2000):
    """The dedup keys of the events the pager has spooled and not sent yet."""
    keys = []
    try:
        names = sorted(n for n in os.listdir(queue) if n.endswith(".json"))[:limit]
    except FileNotFoundError:
        return keys
    for name in names:
        try:
            with open(os.path.join(queue, name)) as fh:
                keys.append(json.load(fh)["event"].get("dedup_key"))
        except (OSError, ValueError, KeyError):
            continue  # sent and removed meanwhile, or being written
    return keys


def main(munin_conf, spool):
    db = dbdir(munin_conf)
    limits, mtime = read(os.path.join(db, "limits")) if db else (None, None)
    state, _ = read(os.path.join(spool, "state.json"))
    now = time.time()
    return {
        "now": now,
        "munin_conf": munin_conf if db else None,
        "dbdir": db,
        "limits": limits,
        "limits_age": None if mtime is None else now - mtime,
        "pager_state": json.loads(state) if state else {},
        "pager_waiting": count(os.path.join(spool, "queue")),
        "pager_waiting_keys": waiting_keys(os.path.join(spool, "queue")),
        "pager_rejected": count(os.path.join(spool, "rejected")),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
