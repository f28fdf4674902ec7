"""port_scan TARGETS_JSON [TIMEOUT]: a TCP connect scan from this host. TARGETS_JSON maps a name
to {"address": A, "ports": [P, ...]}; every port is tried with a full connect (no raw sockets:
plain python3, nothing installed), many at once, each bounded by TIMEOUT seconds (a port the
firewall drops answers nothing and costs the whole timeout). Prints one JSON object:
{"open": {name: [ports]}, "tried": N, "seconds": S}. UDP is not scanned."""

import json
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

THREADS = 128


def is_open(address, port, timeout):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        return s.connect_ex((address, port)) == 0


def scan(targets, timeout=1.0):
    t0 = time.monotonic()
    jobs = [
        (name, spec["address"], int(port))
        for name, spec in sorted(targets.items())
        for port in spec["ports"]
    ]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        answers = list(pool.map(lambda job: is_open(job[1], job[2], timeout), jobs))
    found = {name: [] for name in targets}
    for (name, _, port), answer in zip(jobs, answers, strict=True):
        if answer:
            found[name].append(port)
    return {
        "open": {name: sorted(ports) for name, ports in found.items()},
        "tried": len(jobs),
        "seconds": round(time.monotonic() - t0, 2),
    }


if __name__ == "__main__":
    print(
        json.dumps(scan(json.loads(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1.0))
    )
