"""fetchfleet.deploy's logic without hosts: lock, audit log, release ids, keep-N, batches, rollback
target, the summary table and the input checks. The lock and the audit log run their real shell
code paths on this machine (the Local runner, real files). The rollout itself: test_rollout.py; the
load balancer's drain program: test_lb_upstream.py."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from fetchfleet import deploy as D
from fetchfleet.inventory import REPO, InventoryError, load_fleet
from fetchfleet.remote import Local

R1, R2, R3, R4, R5, R6, R7 = (f"2026112{d}T120000Z-abc{d}def" for d in range(1, 8))


# --- lock ------------------------------------------------------------------------------------------


@pytest.fixture
def lock(tmp_path: Path) -> D.DeployLock:
    return D.DeployLock(Local(), str(tmp_path / "deploy.lock"), "lab")


def test_lock_records_who_when_release_message(lock: D.DeployLock, monkeypatch) -> None:
    monkeypatch.setenv("FETCHFLEET_DEPLOYER", "alice@laptop")
    info = lock.acquire(D.LockInfo.new("lab", "deploy", R1, "fix the upload limit"))
    held = lock.read()
    assert held == info
    assert (held.who, held.release, held.message, held.pid) == (
        "alice@laptop",
        R1,
        "fix the upload limit",
        os.getpid(),
    )
    assert datetime.fromisoformat(held.started) <= datetime.now(UTC)
    assert D.stale_reason(held) is None


def test_second_deploy_is_refused_and_told_who_holds_the_lock(lock: D.DeployLock) -> None:
    first = lock.acquire(D.LockInfo.new("lab", "deploy", R1, "first"))
    with pytest.raises(D.LockHeld) as err:
        lock.acquire(D.LockInfo.new("lab", "deploy", R2, "second"))
    assert err.value.info == first
    assert err.value.stale is None
    assert "first" in str(err.value) and R1 in str(err.value)
    assert lock.read() == first


def test_only_the_holder_releases_the_lock(lock: D.DeployLock) -> None:
    mine = lock.acquire(D.LockInfo.new("lab", "deploy", R1))
    other = D.LockInfo.new("lab", "deploy", R2)
    assert not lock.release(other)
    assert lock.read() == mine
    assert lock.release(mine)
    assert lock.read() is None
    lock.acquire(other)


def test_heartbeat_moves_forward_and_force_release_removes(lock: D.DeployLock) -> None:
    info = D.LockInfo.new("lab", "deploy", R1)
    info.heartbeat = (datetime.now(UTC) - timedelta(minutes=10)).isoformat(timespec="seconds")
    lock.acquire(info)
    assert "no heartbeat" in D.stale_reason(lock.read())
    lock.heartbeat(info)
    assert D.stale_reason(lock.read()) is None
    assert lock.force_release() == info
    assert lock.read() is None


def test_stale_when_the_holding_process_is_gone() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    info = D.LockInfo.new("lab", "deploy", R1)
    info.pid = dead.pid
    assert f"process {dead.pid}" in D.stale_reason(info)
    # Another control machine's pid says nothing here: only the heartbeat's age counts.
    info.control_host = "someone-elses-laptop"
    assert D.stale_reason(info) is None
    later = datetime.now(UTC) + timedelta(seconds=D.STALE_AFTER + 5)
    assert "no heartbeat" in D.stale_reason(info, now=later)


def test_a_manual_lock_is_never_stale() -> None:
    info = D.LockInfo.new("lab", D.MANUAL, "", "incident")
    later = datetime.now(UTC) + timedelta(hours=5)
    assert D.stale_reason(info, now=later, pid_alive=lambda _: False) is None


def test_lock_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    lock = D.DeployLock(Local(), str(tmp_path / "nope" / "deploy.lock"), "lab")
    with pytest.raises(D.DeployError, match="cannot create the deploy lock"):
        lock.acquire(D.LockInfo.new("lab", "deploy"))


# --- audit log -----------------------------------------------------------------------------------


def test_audit_log_appends_one_json_record_per_action(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FETCHFLEET_DEPLOYER", "bob@ops")
    path = D.control_audit_path("lab", tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    D.append_audit(
        Local(),
        str(path),
        D.audit_record("lab", "deploy", R2, "ok", R1, "new upload limit", seconds=12.34),
    )
    D.append_audit(
        Local(),
        str(path),
        D.audit_record("lab", "rollback", R1, "failed", R2, host="web1", detail="x" * 900),
    )
    first, second = D.read_audit(path)
    assert first["who"] == "bob@ops" and first["action"] == "deploy"
    assert (first["release"], first["previous"], first["result"], first["seconds"]) == (
        R2,
        R1,
        "ok",
        12.3,
    )
    assert first["message"] == "new upload limit" and "time" in first
    assert second["host"] == "web1" and len(second["detail"]) == 500


# --- release ids, keep-N, rollback target -----------------------------------------------------------


@pytest.mark.parametrize("rid", [R1, "20261122T200346Z-b9e8265-dirtyab12cd34"])
def test_release_ids_accepted(rid: str) -> None:
    assert D.validate_release_id(rid) == rid


@pytest.mark.parametrize(
    "rid",
    ["", "latest", "2026-11-22-abc", "20261122T200346Z-", "../../etc", "20261122T200346Z-a b"],
)
def test_bad_release_ids_refused(rid: str) -> None:
    with pytest.raises(D.DeployError, match="not a release id"):
        D.validate_release_id(rid)


def test_release_ids_ignore_other_directories_and_sort_by_build_time() -> None:
    assert D.release_ids([R3, ".current.new", R1, "lost+found", R2]) == [R1, R2, R3]


def test_keep_n_removes_the_oldest() -> None:
    assert D.select_removals([R1, R2, R3, R4, R5, R6, R7], R7, keep=5) == [R1, R2]


def test_keep_n_never_removes_current_or_previous() -> None:
    # Rolled back to R2: R1 (its previous) and R2 stay although they are the oldest.
    removals = D.select_removals([R1, R2, R3, R4, R5, R6, R7], R2, keep=3)
    assert R1 not in removals and R2 not in removals
    assert removals == [R3, R4]
    assert D.select_removals([R1, R2, R3, R4], R4, keep=2, also_keep=[R1]) == [R2]


def test_keep_below_two_refused() -> None:
    with pytest.raises(D.DeployError, match="at least 2"):
        D.select_removals([R1, R2], R2, keep=1)


def test_rollback_target_is_the_previous_release() -> None:
    assert D.rollback_target([R3, R1, R2], R3) == R2
    assert D.rollback_target([R1, R2, R3], R2) == R1


def test_rollback_to_a_named_release() -> None:
    assert D.rollback_target([R1, R2, R3], R3, to=R1) == R1


def test_rollback_to_unknown_or_current_or_nothing_older_is_refused() -> None:
    with pytest.raises(D.DeployError, match="not installed"):
        D.rollback_target([R1, R2], R2, to=R5)
    with pytest.raises(D.DeployError, match="not a release id"):
        D.rollback_target([R1, R2], R2, to="yesterday")
    with pytest.raises(D.DeployError, match="already current"):
        D.rollback_target([R1, R2], R2, to=R2)
    with pytest.raises(D.DeployError, match="no release older"):
        D.rollback_target([R1], R1)


# --- batches from the inventory ----------------------------------------------------------------------


def inventory(tmp_path: Path, webs: int, extra_vars: str = "") -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    web = "".join(f"        web{i}: {{ansible_host: 10.9.0.2{i}}}\n" for i in range(1, webs + 1))
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    loadbalancers:\n      hosts:\n        lb1: {ansible_host: 10.9.0.11}\n"
        f"    web:\n      hosts:\n{web}    workers:\n      hosts:\n        worker1: {{ansible_host: 10.9.0.31}}\n"
    )
    (inv / "group_vars" / "all" / "deploy.yml").write_text("---\n" + extra_vars)
    return inv


def test_default_batches_are_one_web_host_then_the_workers(tmp_path: Path) -> None:
    p = D.plan(load_fleet(str(inventory(tmp_path, 3))))
    assert [[h.name for h in b] for b in p.web_batches] == [["web1"], ["web2"], ["web3"]]
    assert [h.name for h in p.workers] == ["worker1"]
    assert [h.name for h in p.loadbalancers] == ["lb1"]
    assert p.lock_host.name == "web1" and p.drain
    assert [h.name for h in p.app_hosts] == ["web1", "web2", "web3", "worker1"]


def test_batch_size_from_the_inventory(tmp_path: Path) -> None:
    p = D.plan(
        load_fleet(str(inventory(tmp_path, 5, "deploy_batch_size: 2\ndeploy_lock_host: worker1\n")))
    )
    assert [[h.name for h in b] for b in p.web_batches] == [
        ["web1", "web2"],
        ["web3", "web4"],
        ["web5"],
    ]
    assert p.lock_host.name == "worker1"


@pytest.mark.parametrize("size", [0, -1, "two", True])
def test_bad_batch_size_refused(tmp_path: Path, size) -> None:
    fleet = load_fleet(str(inventory(tmp_path, 3, f"deploy_batch_size: {json.dumps(size)}\n")))
    with pytest.raises(D.DeployError, match="deploy_batch_size"):
        D.plan(fleet)


def test_a_batch_may_not_take_every_web_host_out(tmp_path: Path) -> None:
    with pytest.raises(D.DeployError, match="all 2 web hosts"):
        D.plan(load_fleet(str(inventory(tmp_path, 2))), batch_size=2)


def test_a_single_web_host_is_switched_without_draining(tmp_path: Path) -> None:
    p = D.plan(load_fleet(str(inventory(tmp_path, 1))))
    assert not p.drain and len(p.web_batches) == 1


def test_unknown_environment_is_refused_before_anything() -> None:
    with pytest.raises(InventoryError, match="unknown environment 'nowhere'"):
        D.deploy(env="nowhere", out=lambda _: None)


# --- refs and the working tree --------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "t")
    (repo / "app" / "x.py").write_text("x = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    return repo


def test_unknown_ref_refused(repo: Path) -> None:
    with pytest.raises(D.DeployError, match="unknown ref 'no-such-branch'"):
        D.build_release(repo, "no-such-branch", cache=repo / "cache")
    assert D.resolve_ref(repo, "main") == git(repo, "rev-parse", "HEAD").strip()


def test_deploying_a_ref_from_a_dirty_tree_is_refused(repo: Path) -> None:
    (repo / "app" / "x.py").write_text("x = 2\n")
    with pytest.raises(D.DeployError, match=r"uncommitted changes.*app/x\.py"):
        D.build_release(repo, "main", cache=repo / "cache")
    assert not (repo / "cache").exists()


# --- summary ------------------------------------------------------------------------------------------


def test_summary_has_a_row_per_host_with_step_times() -> None:
    report = D.Report("lab", "deploy", R2, seconds=42.0, steps={"build": 0.3, "switch": 30.0})
    report.hosts = [
        D.HostResult(
            "web1", "web", R1, R2, "ok", {"drain": 1.0, "switch": 0.1, "restart": 3.2, "gate": 2.0}
        ),
        D.HostResult(
            "web2", "web", R1, R1, "rolled back", {"restart": 3.0, "gate": 11.0, "rollback": 6.5}
        ),
        D.HostResult("worker1", "worker", R1, None, "pending"),
    ]
    text = D.summary(report)
    lines = text.splitlines()
    assert lines[0] == f"deploy {R2} on lab: ok in 42.0s"
    assert lines[1].split() == [
        "host",
        "kind",
        "from",
        "to",
        "result",
        "drain",
        "switch",
        "restart",
        "gate",
        "rollback",
    ]
    assert lines[2].split() == ["web1", "web", R1, R2, "ok", "1.0", "0.1", "3.2", "2.0"]
    assert "rolled back" in lines[3] and "6.5" in lines[3]
    assert lines[4].split()[:4] == ["worker1", "worker", R1, "-"]
    assert lines[-1] == "fleet steps: build 0.3s  switch 30.0s"


def test_the_load_generator_only_targets_the_lab() -> None:
    from fetchfleet.loadgen import Load

    with pytest.raises(ValueError, match="only sent to the lab"):
        Load("http://192.0.2.10/")
    assert Load("http://10.77.0.11/").base == "http://10.77.0.11"


# --- per-step timings of the install -------------------------------------------------------------


def test_every_install_step_names_a_task_of_the_app_role() -> None:
    """The deploy reads ship / venv / migrate times by task name: a renamed task must fail here,
    not silently report 0 s."""
    tasks = []
    for name in ("install", "migrate"):
        doc = yaml.safe_load((REPO / "roles/app/tasks" / f"{name}.yml").read_text())
        for task in doc:
            tasks += [task["name"], *(t["name"] for t in task.get("block", []))]
    for prefix in D.INSTALL_STEPS:
        assert sum(t.startswith(prefix) for t in tasks) == 1, (prefix, tasks)


def test_install_steps_add_up_to_the_run() -> None:
    steps = D.install_steps(
        {
            "app : Unpack the release artifact (wheelhouse, lock, id)": 2.0,
            "app : Create the release's virtualenv (without pip; uv installs into it)": 0.1,
            "app : Install the app and its pinned dependencies offline from the wheelhouse": 1.7,
            "app : Migrate the database once, with the new release": 3.0,
            "Gathering Facts": 1.0,
        },
        total=9.5,
    )
    assert steps == pytest.approx({"ship": 2.0, "venv": 1.8, "migrate": 3.0, "install other": 2.7})
