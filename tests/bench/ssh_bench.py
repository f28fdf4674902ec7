"""The SSH layer on the deploy's hot path: Fabric (fetchfleet.remote) against multiplexed OpenSSH,
as fetchfleet.deploy used it before, in the same run on the same lab host.

Measured per call (median of N): a bare command (`true`), the app-state program shipped on
stdin (what preflight, the gate and cleanup run), and N commands to 3 hosts in parallel; plus the
first connection (Fabric's handshake vs an OpenSSH master). Figures, not pass/fail.

    python tests/bench/ssh_bench.py [--calls 30] [--smoke]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import time
from collections.abc import Callable

from fetchfleet import remote
from fetchfleet.inventory import Host, load_fleet
from fetchfleet.remote import parallel
from fetchfleet.remote.programs import program_source
from fetchfleet.settings import setting


def openssh(host: Host, control: str) -> Callable[[str, str | None], str]:
    v = host.vars
    base = ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", "ControlPersist=60"]
    base += ["-o", f"ControlPath={control}", "-i", str(v["ansible_ssh_private_key_file"])]
    base += shlex.split(str(v.get("ansible_ssh_common_args", "")))
    base += [f"{v.get('ansible_user', 'root')}@{host.address}"]

    def run(command: str, stdin: str | None = None) -> str:
        return subprocess.run(
            [*base, command], input=stdin, capture_output=True, text=True, check=True
        ).stdout

    return run


def fabric(host: Host) -> Callable[[str, str | None], str]:
    runner = remote.connect(host)
    return lambda command, stdin=None: runner.run(command, stdin=stdin).stdout


def median_ms(func: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="3 calls: checks the bench runs")
    args = parser.parse_args()
    calls = 3 if args.smoke else args.calls
    fleet = load_fleet("lab")
    web = fleet.group("web")[0]
    app_hosts = fleet.group("web") + fleet.group("workers")
    state = program_source("app_state")
    root = str(setting(web, "app_root"))
    rows = []
    for name, make in (
        ("openssh (ControlMaster)", lambda h: openssh(h, f"/tmp/.ssh-bench-{h.name}-%C")),
        ("fabric (fetchfleet.remote)", fabric),
    ):
        remote.close_all()
        subprocess.run(["sh", "-c", "rm -f /tmp/.ssh-bench-*"], check=False)
        t = time.perf_counter()
        run = make(web)
        run("true", None)
        first = (time.perf_counter() - t) * 1000
        bare = median_ms(lambda run=run: run("true", None), calls)
        prog = median_ms(lambda run=run: run(f"python3 - {root}", state), calls)
        runners = [make(h) for h in app_hosts]
        for r in runners:
            r("true", None)
        fan = median_ms(
            lambda runners=runners: parallel(lambda one: one("true", None), runners), calls
        )
        rows.append((name, first, bare, prog, fan))
    print(f"SSH layer, {calls} calls each, median ms, on {web.name} ({len(app_hosts)} for fan-out)")
    print(f"{'runner':28} {'first':>8} {'true':>8} {'program':>8} {'3 hosts':>8}")
    for name, first, bare, prog, fan in rows:
        print(f"{name:28} {first:8.1f} {bare:8.1f} {prog:8.1f} {fan:8.1f}")
    base = rows[0]
    print(
        "fabric / openssh: "
        + "  ".join(
            f"{k} {f / o:.2f}x"
            for k, f, o in zip(("true", "program", "3 hosts"), rows[1][2:], base[2:], strict=True)
        )
    )
    subprocess.run(["sh", "-c", "rm -f /tmp/.ssh-bench-*"], check=False)


if __name__ == "__main__":
    main()
