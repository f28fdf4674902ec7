"""The benchmarks (tests/bench/) in their smoke mode against this session's lab, so they cannot rot
unnoticed: each must run to its end and print every figure line it exists for. Their numbers are
not judged (tiny load, one round); only that they were measured and printed.

They run after the other lab tests (marker `last`), on the lab those leave: the app deployed,
with more than one release installed (the deploy bench rolls back first). About two minutes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from fetchfleet import deploy as D
from fetchfleet.inventory import REPO, load_fleet

pytestmark = pytest.mark.last

BENCH = REPO / "tests" / "bench"
FLEET = load_fleet("lab")
NUMBER = r"\d+(?:\.\d+)?"


def run_bench(name: str) -> str:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), "--smoke"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    print(proc.stdout)
    print(f"\nFIGURE {name} --smoke: {time.monotonic() - t0:.0f}s")
    assert proc.returncode == 0, (
        f"{name} --smoke failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )
    return proc.stdout


def assert_lines(output: str, patterns: list[str]) -> None:
    missing = [p for p in patterns if not re.search(p, output, re.MULTILINE)]
    assert not missing, f"figure lines missing: {missing}\n{output[-3000:]}"


def rollback_ready(states: dict[str, dict]) -> bool:
    return all(
        s["current"] and D.previous_release(s["installed"], s["current"]) for s in states.values()
    )


@pytest.fixture(scope="module")
def releases(lab, converged) -> dict[str, dict]:
    """Every app host runs a release and has an older one installed (what a rollback needs):
    deploys a fresh build when the session's lab has fewer, as on a lab of this module alone."""
    plan, hosts = D.plan(FLEET), D.Hosts()
    for _ in range(2):
        states = {h.name: hosts.state(h) for h in plan.app_hosts}
        if rollback_ready(states):
            return states
        report = D.deploy(force_build=True, message="test_benches: a release to roll back to")
        assert report.result == "ok", report
    states = {h.name: hosts.state(h) for h in plan.app_hosts}
    assert rollback_ready(states), f"no two releases on every app host after two deploys: {states}"
    return states


def test_ssh_bench_prints_both_runners(lab, converged):
    output = run_bench("ssh_bench.py")
    row = rf" +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}$"
    assert_lines(
        output,
        [
            r"^SSH layer, 3 calls each, median ms, on \S+",
            rf"^openssh \(ControlMaster\){row}",
            rf"^fabric \(fetchfleet\.remote\){row}",
            rf"^fabric / openssh: true {NUMBER}x  program {NUMBER}x  3 hosts {NUMBER}x$",
        ],
    )


def test_solr_bench_prints_index_and_query_figures(lab, converged):
    output = run_bench("solr_bench.py")
    assert_lines(
        output,
        [
            r"^  documents indexed +200$",
            rf"^  bulk index \(no commit\) {NUMBER} s \(\d+ docs/s\)$",
            rf"^  commit +{NUMBER} ms$",
            r"^  queries +20$",
            *(rf"^  query latency {q} +{NUMBER} ms$" for q in ("p50", "p95", "max")),
        ],
    )


def test_deploy_bench_prints_every_row_and_the_venv_figures(releases):
    output = run_bench("deploy_bench.py")
    row = rf" +{NUMBER} +(?P<sent>\d+) +\d+ +\d+ +\d+  "
    for action in ("fab rollback", "fab deploy \\(cached build\\)", "naive stop-install-start"):
        match = re.search(rf"^{action}{row}", output, re.MULTILINE)
        assert match, f"no row for {action}:\n{output[-3000:]}"
        assert int(match["sent"]) > 0, f"{action}: no load was sent during it"
    assert_lines(
        output,
        [
            *(rf"^venv {m} +on \S+: {NUMBER} s$" for m in ("pip-offline", "uv", "uv-no-compile")),
            r"^venv of release \S+ on \S+, median of 1:$",
        ],
    )
    # It ends on one release everywhere (HEAD's build), which the naive row's gate found healthy.
    after = {h.name: D.Hosts().state(h)["current"] for h in D.plan(FLEET).app_hosts}
    assert len(set(after.values())) == 1, f"the app hosts disagree after the bench: {after}"
