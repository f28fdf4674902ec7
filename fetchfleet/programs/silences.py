"""silences FILE add SPEC_JSON | lift ID GRACE_SECONDS | list: the monitoring host's silences
(monitoring/pager/silence.py documents the file and how the pager honours it). Runs on the
monitoring host with the system python3; prints one JSON object.

This program is the file's only writer: it changes the file under an flock (FILE.lock), writes
a new file beside it, fsyncs and renames it into place, so the pager never reads half a file.
Times come from this host's clock, the one the pager compares them with. Silences that ended
more than a day ago are dropped at each change.
"""

import datetime
import fcntl
import json
import os
import sys

KEEP_ENDED = datetime.timedelta(days=1)


def now():
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def read(path):
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return []
    return list(data.get("silences", []))


def write(path, silences):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"version": 1, "silences": silences}, fh, indent=1, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)  # the pager runs as munin and must read it
    os.replace(tmp, path)


def ended_long_ago(silence, at):
    return datetime.datetime.fromisoformat(silence["until"]) < at - KEEP_ENDED


def add(silences, spec, at):
    minutes = float(spec["minutes"])
    silence = {
        "id": spec["id"],
        "hosts": list(spec["hosts"]),
        "alerts": list(spec["alerts"]),
        "start": at.isoformat(),
        "until": (at + datetime.timedelta(minutes=minutes)).isoformat(),
        "reason": spec["reason"],
        "who": spec.get("who", ""),
        "lifted": None,
    }
    silences = [s for s in silences if s["id"] != silence["id"]] + [silence]
    return silences, silence


def lift(silences, ident, grace, at):
    """The silence ends `grace` seconds from now (never later than it would have)."""
    for silence in silences:
        if silence["id"] == ident:
            end = min(
                datetime.datetime.fromisoformat(silence["until"]),
                at + datetime.timedelta(seconds=grace),
            )
            silence["until"] = end.isoformat()
            silence["lifted"] = at.isoformat()
            return silences, silence
    return silences, None


def main(argv):
    path, command, args = argv[0], argv[1], argv[2:]
    at = now()
    if command == "list":
        return {"now": at.isoformat(), "silences": read(path)}
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        return {"error": f"no directory {directory} (is the pager installed on this host?)"}
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        silences = [s for s in read(path) if not ended_long_ago(s, at)]
        if command == "add":
            silences, silence = add(silences, json.loads(args[0]), at)
        elif command == "lift":
            silences, silence = lift(silences, args[0], float(args[1]), at)
        else:
            return {"error": f"unknown command {command!r} (add, lift, list)"}
        write(path, silences)
    return {"now": at.isoformat(), "silence": silence}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
