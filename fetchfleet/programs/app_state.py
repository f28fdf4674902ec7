"""app_state APP_ROOT: which release is current, which are installed, the app's programs under
supervisor with the release each process runs (from its environment), and whether a converge
changed the configuration since the last restart (roles/app's restart.pending). Runs on an app
host with the system python3; prints one JSON object."""

import json
import os
import subprocess
import sys

# roles/app's __app_restart_pending, under APP_ROOT
RESTART_PENDING = "restart.pending"


def release_of(pid):
    """CLOUDFETCH_RELEASE from a process's environment, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            entries = fh.read().split(b"\0")
    except OSError:
        return None
    for entry in entries:
        if entry.startswith(b"CLOUDFETCH_RELEASE="):
            return entry.split(b"=", 1)[1].decode()
    return None


def programs(status_output):
    """`supervisorctl status` lines of the app's programs -> {name: {state, pid, release}}."""
    found = {}
    for line in status_output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("cloudfetch-"):
            pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
            found[parts[0]] = {
                "state": parts[1],
                "pid": pid,
                "release": release_of(pid) if pid else None,
            }
    return found


def state(root):
    try:
        current = os.path.basename(os.readlink(os.path.join(root, "current")))
    except OSError:
        current = None
    rel = os.path.join(root, "releases")
    installed = []
    if os.path.isdir(rel):
        installed = sorted(
            d for d in os.listdir(rel) if os.path.exists(os.path.join(rel, d, ".installed"))
        )
    try:
        out = subprocess.run(["supervisorctl", "status"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        out = ""
    return {
        "current": current,
        "installed": installed,
        "programs": programs(out),
        "restart_pending": os.path.exists(os.path.join(root, RESTART_PENDING)),
    }


if __name__ == "__main__":
    print(json.dumps(state(sys.argv[1])))
