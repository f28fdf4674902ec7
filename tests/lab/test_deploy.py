"""`fab deploy` on the lab, under load through the load balancer: a new release rolls out with no
failed request; a broken one is rolled back by itself with /version unchanged everywhere; a held
lock refuses a second deploy; rollback; keep-N; a deploy killed mid-rollout leaves every host on a
working release and its lock reported stale.

    FETCHFLEET_LAB_KEEP=1 FETCHFLEET_SKIP_CONVERGE=1 pytest tests/lab/test_deploy.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fetchfleet import deploy as D
from fetchfleet import lab as L
from fetchfleet import remote
from fetchfleet.inventory import REPO, load_fleet
from fetchfleet.loadgen import Load

FLEET = load_fleet("lab")
HOSTS = D.Hosts()
LB = FLEET.group("loadbalancers")[0]
BASE = f"http://{LB.address}"
WEB = [h.name for h in FLEET.group("web")]
APP = WEB + [h.name for h in FLEET.group("workers")]


def quiet(_: str) -> None:
    pass


def versions_through_lb(n: int = 12) -> set[str]:
    """Releases the load balancer's answers name (round robin reaches every web host)."""
    import urllib.request

    seen = set()
    for _ in range(n):
        with urllib.request.urlopen(BASE + "/version", timeout=10) as resp:
            seen.add(json.loads(resp.read())["release"])
    return seen


def current_everywhere() -> dict[str, str | None]:
    return {h.name: HOSTS.state(h)["current"] for h in FLEET.hosts if h.name in APP}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """A clone of this repository's HEAD: other people's uncommitted app/ edits stay out."""
    clone = tmp_path_factory.mktemp("clean") / "repo"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(clone)], check=True)
    return clone


@pytest.fixture(scope="module")
def first_release(lab, converged, clean) -> str:
    """A release deployed to every app host (through fab deploy: builds or reuses the cache)."""
    HOSTS.undrain_interrupted(D.plan(FLEET))
    if D.lock_status("lab")[0] is not None:
        D.unlock("lab")
    report = D.deploy(repo=clean, message="test_deploy: baseline", out=print)
    return report.release


def test_a_new_release_rolls_out_with_no_failed_request(
    lab, first_release, clean, monkeypatch
) -> None:
    monkeypatch.setenv("FETCHFLEET_DEPLOYER", "test_deploy@lab")
    with Load(BASE, rate=30, threads=3) as load:
        time.sleep(2)
        report = D.deploy(repo=clean, force_build=True, message="a new release", out=print)
        time.sleep(2)
    stats = load.stats
    print(D.summary(report))
    print(
        f"FIGURE deploy under load: {report.seconds:.1f}s wall; {stats.line()}; steps {report.steps}"
    )
    assert report.release != first_release and report.result == "ok"
    assert stats.failed == 0, stats.failures  # neither lost nor answered with an error
    assert stats.sent > 100
    assert set(current_everywhere().values()) == {report.release}
    assert versions_through_lb() == {report.release}
    assert D.lock_status("lab") == (None, None)
    last = D.read_audit(D.control_audit_path("lab"))[-1]
    assert (last["action"], last["release"], last["result"], last["who"]) == (
        "deploy",
        report.release,
        "ok",
        "test_deploy@lab",
    )
    assert last["message"] == "a new release" and last["previous"] == first_release
    for name in APP:
        record = json.loads(L.run_on(lab, name, "tail -n 1 /srv/cloudfetch/revisions.log").stdout)
        assert (record["host"], record["release"], record["result"]) == (name, report.release, "ok")


@pytest.fixture(scope="module")
def broken_ref(tmp_path_factory) -> tuple[Path, str]:
    """A clone of this repository with one commit on top whose /healthz always answers 503."""
    clone = tmp_path_factory.mktemp("broken") / "repo"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(clone)], check=True)
    web = clone / "app" / "src" / "cloudfetch" / "ops.py"
    text = web.read_text()
    needle = "    body, code = health.health(context.services())\n"
    assert needle in text
    web.write_text(
        text.replace(needle, needle + "    code = 503  # test_deploy: a broken release\n")
    )
    git = ["git", "-c", "user.email=t@lab.invalid", "-c", "user.name=test"]
    subprocess.run([*git, "commit", "-qam", "broken healthz"], cwd=clone, check=True)
    subprocess.run(["git", "branch", "broken"], cwd=clone, check=True)
    return clone, "broken"


def test_a_broken_release_is_rolled_back_by_itself(first_release, broken_ref) -> None:
    repo, ref = broken_ref
    before = current_everywhere()
    with Load(BASE, rate=30, threads=3) as load:
        with pytest.raises(D.DeployError) as err:
            D.deploy(ref=ref, repo=repo, message="broken on purpose", out=print)
        time.sleep(1)
    stats = load.stats
    print(f"FIGURE broken release auto-rollback: {stats.line()}")
    text = str(err.value)
    assert err.value.host == WEB[0] and err.value.step == "health", text
    assert "rolled back" in text and "last log lines" in text
    assert current_everywhere() == before
    assert versions_through_lb() == {before[WEB[0]]}
    assert stats.failed == 0, stats.failures  # neither lost nor answered with an error
    assert D.lock_status("lab") == (None, None)
    last = D.read_audit(D.control_audit_path("lab"))[-1]
    assert last["result"] == "rolled back"
    # The failed release is gone from the hosts: no bare `fab rollback` can pick it later.
    assert all(last["release"] not in HOSTS.state(FLEET.host(n))["installed"] for n in APP)
    assert all(row["lb"] == "in" for row in D.status("lab") if row["host"] in WEB)


def test_a_held_lock_refuses_a_second_deploy() -> None:
    D.hold_lock("lab", "incident: db failover in progress")
    try:
        t0 = time.monotonic()
        with pytest.raises(D.LockHeld) as err:
            D.deploy(message="should not run", out=quiet)
        assert "incident: db failover in progress" in str(err.value)
        print(f"FIGURE deploy refused by a held lock after {time.monotonic() - t0:.1f}s")
        refused = D.read_audit(D.control_audit_path("lab"))[-1]
        assert (refused["action"], refused["result"], refused["message"]) == (
            "deploy",
            "refused",
            "should not run",
        )
        assert "incident: db failover in progress" in refused["detail"]
        for host in (FLEET.host(name) for name in APP):
            log = remote.connect(host).run(f"tail -n1 {HOSTS.app_root(host)}/revisions.log").stdout
            assert json.loads(log)["result"] == "refused", (host.name, log)
    finally:
        assert D.unlock("lab") is not None
    assert D.lock_status("lab") == (None, None)


def test_rollback_takes_seconds_and_then_forward_again() -> None:
    before = current_everywhere()
    current = before[WEB[0]]
    with Load(BASE, rate=30, threads=3) as load:
        report = D.rollback(message="test rollback", out=print)
    print(D.summary(report))
    print(f"FIGURE rollback under load: {report.seconds:.1f}s wall; {load.stats.line()}")
    assert report.release < current
    assert set(current_everywhere().values()) == {report.release}
    assert versions_through_lb() == {report.release}
    assert load.stats.failed == 0, load.stats.failures
    forward = D.rollback(to=current, message="forward again", out=quiet)
    assert set(current_everywhere().values()) == {forward.release} == {current}
    with pytest.raises(D.DeployError, match="not installed"):
        D.rollback(to="20000101T000000Z-0000000", out=quiet)


def test_keep_n_removes_old_releases_but_never_current_or_previous(lab) -> None:
    p = D.plan(FLEET)
    old = "20000101T000000Z-0000000"
    for name in APP:
        # An old installed release (a copy of one): keep-N must remove it.
        L.run_on(lab, name, f"cd /srv/cloudfetch/releases && cp -a $(ls | head -n 1) {old}")
    states = {h.name: HOSTS.state(h) for h in p.app_hosts}
    assert all(old in s["installed"] for s in states.values()), states
    removed = D.Deploy("lab", keep=2).cleanup({n: {"current": None} for n in states})
    for name, before in states.items():
        after = HOSTS.state(FLEET.host(name))
        previous = D.previous_release(before["installed"], before["current"])
        expected = sorted({*before["installed"][-2:], before["current"], previous})
        assert after["current"] == before["current"]
        assert after["installed"] == expected
        assert old in removed[name] and old not in after["installed"]


def test_a_killed_deploy_leaves_working_hosts_and_a_stale_lock() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fab = Path(sys.executable).with_name("fab")
    proc = subprocess.Popen(
        [str(fab), "deploy", "--ref", "HEAD", "--fresh", "--message", "killed on purpose"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "switch " in line:  # mid-rollout: the first web host is being switched
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any("switch " in line for line in seen), "".join(seen[-30:])
    time.sleep(3)
    info, stale = D.lock_status("lab")
    assert info is not None and info.message == "killed on purpose"
    assert stale is not None and "is gone" in stale
    # Every web host, switched or not, serves the release its `current` names, healthily, and that
    # release is installed on every app host; the load balancer answers only with those.
    serving = {}
    for name in WEB:
        host = FLEET.host(name)
        state = HOSTS.state(host)
        probe = HOSTS.gate(host, state["current"], timeout=60)
        serving[name] = json.loads(probe["/version"]["body"])["release"]
        assert serving[name] == state["current"], (name, serving[name], state)
    everywhere = set.intersection(*(set(HOSTS.state(FLEET.host(n))["installed"]) for n in APP))
    assert set(serving.values()) <= everywhere, (serving, everywhere)
    through_lb = versions_through_lb()
    assert through_lb and through_lb <= set(serving.values()), (through_lb, serving)
    D.unlock("lab")
    # The next run puts a host the killed one left drained back into the load balancer.
    report = D.restart(message="after the killed deploy", out=print)
    assert report.result == "ok"
    assert all(row["lb"] == "in" for row in D.status("lab") if row["host"] in WEB)


def test_an_unreachable_host_stops_the_deploy_before_anything_changes(lab) -> None:
    worker = FLEET.group("workers")[0].name
    before = current_everywhere()
    audit_before = len(D.read_audit(D.control_audit_path("lab")))
    L.cut_network(lab, worker)
    try:
        with pytest.raises(D.DeployError) as err:
            D.deploy(force_build=True, message="must not start", out=quiet)
    finally:
        L.heal_network(lab, worker)
    assert err.value.step == "preflight" and worker in str(err.value), str(err.value)
    assert "nothing was changed" in str(err.value)
    assert current_everywhere() == before
    assert D.lock_status("lab") == (None, None)
    assert len(D.read_audit(D.control_audit_path("lab"))) == audit_before


def test_maintenance_on_and_off_through_the_load_balancer() -> None:
    import urllib.error
    import urllib.request

    D.maintenance("lab", True)
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(BASE + "/version", timeout=10)
        assert err.value.code == 503 and err.value.headers["Retry-After"] == "120"
    finally:
        D.maintenance("lab", False)
    with urllib.request.urlopen(BASE + "/version", timeout=10) as resp:
        assert resp.status == 200
    actions = [r["action"] for r in D.read_audit(D.control_audit_path("lab"))[-2:]]
    assert actions == ["maintenance on", "maintenance off"]


def web_hosts_through_lb(n: int = 12) -> set[str]:
    """Which web hosts answered n requests through the load balancer (X-Cloudfetch-Web)."""
    import urllib.request

    seen = set()
    for _ in range(n):
        with urllib.request.urlopen(BASE + "/version", timeout=10) as resp:
            seen.add(resp.headers["X-Cloudfetch-Web"])
    return seen


def test_a_converge_while_a_host_is_drained_keeps_it_drained_and_fails_nothing() -> None:
    """One writer per file: the drain state is the deploy's (and `fab lb.drain`'s); a converge
    re-renders the load balancer's upstream from its servers and that state, so the drained host
    stays out while the converge runs and after, and no request fails meanwhile."""
    drained, other = WEB
    D.drain("lab", drained, True, "test: converge during a drain")
    try:
        assert web_hosts_through_lb() == {other}
        with Load(BASE, rate=30, threads=3) as load:
            recap = D.converge(limit="loadbalancers", message="during a drain", echo=False)
        assert recap.ok, recap.output[-3000:]
        print(f"FIGURE converge during a drain: {recap.seconds:.1f}s; {load.stats.line()}")
        assert load.stats.failed == 0, load.stats.failures
        assert web_hosts_through_lb() == {other}, "the converge undrained the host"
        row = next(r for r in D.status("lab") if r["host"] == drained)
        assert row["lb"] == "drained (manual)", row
    finally:
        D.drain("lab", drained, False)
    assert web_hosts_through_lb() == set(WEB)
    actions = [(r["action"], r.get("host")) for r in D.read_audit(D.control_audit_path("lab"))[-3:]]
    assert actions == [("drain", drained), ("converge", None), ("undrain", drained)]


def test_a_converge_is_refused_while_the_lock_is_held_and_names_the_holder() -> None:
    D.hold_lock("lab", "test: an incident")
    try:
        with pytest.raises(D.LockHeld, match="test: an incident"):
            D.converge(limit="loadbalancers", echo=False)
    finally:
        D.unlock("lab")
    refused = D.read_audit(D.control_audit_path("lab"))[-2]
    assert (refused["action"], refused["result"]) == ("converge", "refused")


def web_pids() -> dict[str, int]:
    return {n: HOSTS.state(FLEET.host(n))["programs"]["cloudfetch-web"]["pid"] for n in WEB}


def test_a_converge_that_changes_the_apps_configuration_restarts_it_rolling_and_fails_nothing() -> (
    None
):
    """roles/app restarts nothing itself; fab converge follows with the deploy's rolling restart
    of the hosts whose configuration changed (here gunicorn's, on the web hosts only)."""
    before = web_pids()
    worker = FLEET.group("workers")[0]
    worker_pid = HOSTS.state(worker)["programs"]["cloudfetch-worker"]["pid"]
    with Load(BASE, rate=30, threads=3) as load:
        recap = D.converge(
            limit="web",
            extra=["-e", '{"app_gunicorn_graceful_timeout": 31}'],
            echo=False,
            out=print,
        )
    print(
        f"FIGURE converge with a config change + rolling restart: {recap.seconds:.1f}s; {load.stats.line()}"
    )
    assert recap.ok, recap.output[-3000:]
    assert recap.restart is not None and recap.restart.result == "ok"
    assert sorted(h.host for h in recap.restart.hosts) == sorted(WEB)
    assert load.stats.failed == 0, load.stats.failures
    after = web_pids()
    assert all(after[n] != before[n] for n in WEB), (before, after)
    assert HOSTS.state(worker)["programs"]["cloudfetch-worker"]["pid"] == worker_pid
    assert not any(HOSTS.state(FLEET.host(n))["restart_pending"] for n in WEB)
    # Back to the inventory's value: the same again.
    recap = D.converge(limit="web", echo=False, out=print)
    assert recap.ok and recap.restart is not None and recap.restart.result == "ok"
