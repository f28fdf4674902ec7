"""Deploy benchmark (prints figures; not a pass/fail test). Lab only; load only to the load balancer.

Side by side in one run, each with the same steady mixed load (reads and writes) through the load
balancer for the whole action:
  1. `fab deploy` of a new release (fetchfleet.deploy.deploy): wall time, per-step times, requests
  2. a naive deploy of another new release: stop every app program, install, switch, start
  3. `fab rollback` (fetchfleet.deploy.rollback)
  4. the venv of a release on one web host: pip from the index (the baseline), pip and uv offline
     from the shipped wheelhouse (uv as fab deploy runs it, and without byte-compiling)

    python tests/bench/deploy_bench.py [--rate 40] [--venv-only] [--smoke]

--smoke (run by `make test`, tests/lab/test_benches.py, so the bench cannot rot): every row
once, with a tiny load (5 req/s) and no new builds: `fab rollback` to the previous installed
release, `fab deploy` of the release HEAD builds (cached after its first build), the naive deploy
of that same release, and one venv per offline method (the pip-from-index baseline, 15 s and the
package index from a lab host, is left to the full run). Needs a current release and an older
one installed on every app host. About a minute and a half; the figures mean little.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from fetchfleet import deploy as D
from fetchfleet import release as R
from fetchfleet import remote
from fetchfleet.inventory import REPO, load_fleet
from fetchfleet.loadgen import Load, Stats
from fetchfleet.remote import parallel

HOSTS = D.Hosts()


def quiet(_: str) -> None:
    pass


def naive_deploy(plan: D.Plan, rel: R.Release) -> dict[str, float]:
    """Stop everything, install, switch, start: what a simple script does."""
    steps: dict[str, float] = {}
    hosts = plan.app_hosts
    states = {h.name: HOSTS.state(h) for h in hosts}
    t = time.monotonic()
    parallel(
        lambda h: remote.connect(h).run(
            "supervisorctl stop " + " ".join(states[h.name]["programs"])
        ),
        hosts,
    )
    steps["stop"] = time.monotonic() - t
    t = time.monotonic()
    D.install(plan.env, rel)
    steps["install"] = time.monotonic() - t
    t = time.monotonic()
    parallel(lambda h: HOSTS.switch_link(h, rel.id), hosts)
    parallel(
        lambda h: remote.connect(h).run(
            "supervisorctl start " + " ".join(states[h.name]["programs"])
        ),
        hosts,
    )
    parallel(lambda h: HOSTS.gate(h, rel.id), hosts)
    steps["start+gate"] = time.monotonic() - t
    return steps


UV = "/usr/local/bin/uv"  # roles/app puts it there


def venv_install(host, rel_id: str, method: str) -> float:
    """Seconds for one release venv on HOST by METHOD (all byte-compile but the last):
    pip-index (pip from the package index, no cache), pip-offline (pip from the wheelhouse),
    uv (fab deploy's way: uv from the wheelhouse, a fresh cache on the venv's filesystem),
    uv-no-compile (the same without byte-compiling: what the .pyc cost)."""
    root = f"{HOSTS.app_root(host)}/releases/{rel_id}"
    tmp, cache = f"{HOSTS.app_root(host)}/.bench-venv", f"{HOSTS.app_root(host)}/.bench-uv-cache"
    lock = f"-r {root}/requirements.lock"
    wheelhouse = f"--no-index --find-links {root}/wheelhouse"
    if method == "pip-index":
        # The registry is reached through this machine's TLS-inspecting proxy: its CA bundle.
        remote.connect(host).run(
            "cat > /tmp/bench-ca.crt", stdin=Path("/etc/ssl/certs/ca-certificates.crt").read_text()
        )
        # The index serves sources (pysolr) whose hashes only the repository's lock knows; the
        # release's own lock pins the wheels built from them. The app itself comes from the release.
        remote.connect(host).run(
            "cat > /tmp/bench-index.lock", stdin=(REPO / "app/requirements.lock").read_text()
        )
        pip = f"PIP_CERT=/tmp/bench-ca.crt {tmp}/bin/pip install -q --disable-pip-version-check"
        script = (
            f"python3 -m venv {tmp} && {pip} --no-cache-dir -r /tmp/bench-index.lock"
            f" && {pip} --no-deps {root}/wheelhouse/cloudfetch-*.whl"
        )
    elif method == "pip-offline":
        # The release's lock lists every wheel of its wheelhouse with its hash, cloudfetch too.
        pip = f"{tmp}/bin/pip install -q --disable-pip-version-check --require-hashes"
        script = f"python3 -m venv {tmp} && {pip} {wheelhouse} {lock}"
    else:
        compile_ = "" if method == "uv-no-compile" else "--compile-bytecode"
        script = (
            f"{UV} venv -q --python /usr/bin/python3 {tmp} && {UV} pip install -q --offline "
            f"{compile_} --cache-dir {cache} --python {tmp}/bin/python {wheelhouse} {lock} cloudfetch"
            f" && rm -rf {cache}"
        )
    remote.connect(host).run(f"rm -rf {tmp} {cache}")
    t = time.monotonic()
    remote.connect(host).run(f"sh -c {shlex.quote(script)}", timeout=900)
    seconds = time.monotonic() - t
    remote.connect(host).run(f"rm -rf {tmp}")
    return seconds


def under_load(base: str, rate: float, action, settle: float = 2.0):
    """ACTION's result, wall time and the load's stats, the load running SETTLE seconds on
    either side of it."""
    with Load(base, rate=rate, threads=4) as load:
        time.sleep(settle)
        t = time.monotonic()
        result = action()
        wall = time.monotonic() - t
        time.sleep(settle)
    return result, wall, load.stats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, in total")
    parser.add_argument("--venv-only", action="store_true", help="only the venv install figures")
    parser.add_argument("--smoke", action="store_true", help="every row once, tiny load, no builds")
    args = parser.parse_args()
    fleet = load_fleet("lab")
    if args.venv_only:
        venv_figures(fleet)
        return
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as tmp:
        # A clone of HEAD: other people's uncommitted app/ edits stay out of the releases.
        clean = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(clean)], check=True)
        if args.smoke:
            rows = smoke_rows(fleet, clean, rate=5.0)
            rate = 5.0
        else:
            rows = full_rows(fleet, clean, args.rate)
            rate = args.rate
    print()
    print(
        f"load: {rate:.0f} req/s mixed (GET /version, /api/me, /api/files, POST+GET+DELETE /api/tokens)"
    )
    print(
        f"{'action':28} {'wall s':>7} {'sent':>6} {'failed':>6} {'lost':>5} {'app500':>6}  steps (s)"
    )
    for name, wall, stats, steps in rows:
        detail = ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
        print(
            f"{name:28} {wall:7.1f} {stats.sent:6d} {stats.failed:6d} {stats.lost:5d} "
            f"{stats.app_errors:6d}  {detail}"
        )
        for failure in stats.failures[:3]:
            print(f"{'':30}{failure}")
    if args.smoke:
        venv_figures(fleet, runs=1, methods=("pip-offline", "uv", "uv-no-compile"))
    else:
        venv_figures(fleet)


Row = tuple[str, float, Stats, dict[str, float]]


def full_rows(fleet, clean: Path, rate: float) -> list[Row]:
    """A new release by fab deploy, another by the naive way, then fab rollback."""
    base = f"http://{fleet.group('loadbalancers')[0].address}"
    rows: list[Row] = []
    report, wall, stats = under_load(
        base, rate, lambda: D.deploy(repo=clean, force_build=True, message="bench", out=quiet)
    )
    print(D.summary(report))
    rows.append(("fab deploy (new release)", wall, stats, report.steps))

    rel = R.build(repo=clean, force=True)
    steps, wall, stats = under_load(base, rate, lambda: naive_deploy(D.plan(fleet), rel))
    rows.append(("naive stop-install-start", wall, stats, steps))

    report, wall, stats = under_load(base, rate, lambda: D.rollback(message="bench", out=quiet))
    print(D.summary(report))
    rows.append(("fab rollback", wall, stats, report.steps))
    return rows


def smoke_rows(fleet, clean: Path, rate: float) -> list[Row]:
    """Each action once on releases already built: rollback, deploy of HEAD's build, naive."""
    base = f"http://{fleet.group('loadbalancers')[0].address}"
    rows: list[Row] = []
    report, wall, stats = under_load(
        base, rate, lambda: D.rollback(message="bench --smoke", out=quiet), settle=0.5
    )
    rows.append(("fab rollback", wall, stats, report.steps))

    report, wall, stats = under_load(
        base, rate, lambda: D.deploy(repo=clean, message="bench --smoke", out=quiet), settle=0.5
    )
    rows.append(("fab deploy (cached build)", wall, stats, report.steps))

    rel = R.build(repo=clean)  # the release just deployed, from the cache
    steps, wall, stats = under_load(
        base, rate, lambda: naive_deploy(D.plan(fleet), rel), settle=0.5
    )
    rows.append(("naive stop-install-start", wall, stats, steps))
    return rows


METHODS = ("pip-index", "pip-offline", "uv", "uv-no-compile")


def venv_figures(fleet, runs: int = 3, methods: tuple[str, ...] = METHODS) -> None:
    """Median of RUNS per method, one method after the other, with the ratio to the first."""
    web = fleet.group("web")[0]
    current = HOSTS.state(web)["current"]
    medians = {}
    for method in methods:
        times = sorted(venv_install(web, current, method) for _ in range(runs))
        medians[method] = times[len(times) // 2]
        print(f"venv {method:12} on {web.name}: " + ", ".join(f"{t:.2f}" for t in times) + " s")
    base = medians[methods[0]]
    print(f"venv of release {current} on {web.name}, median of {runs}:")
    for method in methods:
        print(
            f"  {method:12} {medians[method]:6.2f} s   {base / medians[method]:5.1f}x {methods[0]}"
        )


if __name__ == "__main__":
    main()
