"""Deploy, rollback and restart without hosts: the real actions (lock, audit, rollout, rollback,
cleanup) against a recorded fleet.

Each host is a `RecordedHost`: it answers what a converged app host answers to the rollout's
programs and supervisor commands (which release runs, whether /healthz is 200), and runs every
other command — the switch of `current`, release removal, the lock, the audit log — for real with
sh on a directory of its own. The load balancer runs the real drain program
(roles/nginx's cloudfetch-lb-upstream) on files of its own, with `true` as its nginx check.
Every command each host received is recorded, so the tests assert what was sent, in what order.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import shlex
import sys
from pathlib import Path

import pytest

from fetchfleet import deploy as D
from fetchfleet.inventory import REPO, Host, load_fleet
from fetchfleet.release import Release, ReleaseError
from fetchfleet.remote import Local, RemoteError, Result, program_source

R1, R2, R3 = "20261101T100000Z-aaa1111", "20261102T100000Z-bbb2222", "20261103T100000Z-ccc3333"
LB_PROGRAM = REPO / "roles/nginx/files/usr/local/sbin/cloudfetch-lb-upstream"


class RecordedHost:
    def __init__(self, host: Host, root: Path, broken: set[str]):
        self.host, self.root, self.broken = host, root, broken
        self.log: list[str] = []
        self.running: str | None = None
        self.unreachable = False

    @property
    def current(self) -> str | None:
        link = self.root / "current"
        return link.resolve().name if link.is_symlink() else None

    def installed(self) -> list[str]:
        rel = self.root / "releases"
        return sorted(p.name for p in rel.iterdir() if (p / ".installed").exists())

    def install(self, release: str) -> None:
        (self.root / "releases" / release).mkdir(parents=True, exist_ok=True)
        (self.root / "releases" / release / ".installed").touch()

    def programs(self) -> dict:
        names = ["cloudfetch-web"] if "web" in self.host.groups else ["cloudfetch-worker"]
        state = "FATAL" if self.running in self.broken else "RUNNING"
        return {n: {"state": state, "pid": 1234, "release": self.running} for n in names}

    def answer(self, command: str, stdin) -> Result | None:
        """What a converged host answers; None means: run it for real."""
        ok = lambda out="": Result(self.host.name, command, 0, out, "", 0.0)  # noqa: E731
        if stdin == program_source("app_state"):
            pending = (self.root / "restart.pending").exists()
            return ok(json.dumps({"current": self.current, "installed": self.installed(),
                                  "programs": self.programs(), "restart_pending": pending}))  # fmt: skip
        if stdin == program_source("app_probe"):
            health = 503 if self.running in self.broken else 200
            return ok(json.dumps({
                "/version": {"status": 200, "body": json.dumps({"release": self.running})},
                "/healthz": {"status": health, "body": "{}"},
            }))  # fmt: skip
        if "supervisorctl stop" in command:
            self.running = self.current
            return ok("started")
        if command.startswith("tail -n"):
            return ok(f"{self.host.name} log: {self.running} answers 503")
        if command.startswith(D.LB_UPSTREAM):
            args = shlex.split(command)[1:]
            files = self.root / "lb"
            argv = [sys.executable, str(LB_PROGRAM), "--servers", str(files / "servers.conf"),
                    "--output", str(files / "upstream.conf"), "--state", str(files / "drained.json"),
                    "--nginx-test", "true", "--pid-file", str(files / "none.pid"), *args]  # fmt: skip
            return Local().run(shlex.join(argv), check=False)
        return None

    def run(self, command: str, stdin=None, check: bool = True, timeout: float = 600) -> Result:
        if self.unreachable:
            raise RemoteError("unreachable over ssh: timed out", self.host.name)
        self.log.append(command)
        return self.answer(command, stdin) or Local().run(command, stdin, check, timeout)

    @property
    def name(self) -> str:
        return self.host.name


class RecordedFleet:
    """inventory + one RecordedHost per host, all on R1; `broken` releases fail their gate."""

    def __init__(self, tmp: Path, webs: int = 2, broken: dict[str, set[str]] | None = None):
        self.tmp = tmp
        inv = tmp / "inv"
        (inv / "group_vars" / "all").mkdir(parents=True)
        (inv / "host_vars").mkdir()
        web = "".join(
            f"        web{i}: {{ansible_host: 10.9.0.2{i}}}\n" for i in range(1, webs + 1)
        )
        (inv / "hosts.yml").write_text(
            "all:\n  children:\n    loadbalancers:\n      hosts:\n        lb1: {ansible_host: 10.9.0.11}\n"
            f"    web:\n      hosts:\n{web}    workers:\n      hosts:\n        worker1: {{ansible_host: 10.9.0.31}}\n"
        )
        (inv / "group_vars" / "all" / "deploy.yml").write_text(
            f"---\ndeploy_lock_file: {tmp}/locks/deploy.lock\n"
        )
        names = ["lb1", *(f"web{i}" for i in range(1, webs + 1)), "worker1"]
        for name in names:
            (inv / "host_vars" / f"{name}.yml").write_text(
                f"---\napp_root: {tmp}/hosts/{name}\napp_log_dir: {tmp}/hosts/{name}/log\n"
            )
        self.fleet = load_fleet(str(inv))
        self.env = str(inv)
        self.hosts: dict[str, RecordedHost] = {}
        for host in self.fleet.hosts:
            root = tmp / "hosts" / host.name
            (root / "releases").mkdir(parents=True)
            rec = RecordedHost(host, root, (broken or {}).get(host.name, set()))
            self.hosts[host.name] = rec
            if host.name != "lb1":
                rec.install(R1)
                (root / "current").symlink_to(root / "releases" / R1)
                rec.running = R1
        servers = "".join(
            f"server {h.address}:80 max_fails=1;  # {h.name}\n" for h in self.fleet.group("web")
        )
        (tmp / "hosts/lb1/lb").mkdir(parents=True)
        (tmp / "hosts/lb1/lb/servers.conf").write_text(servers)

    def connect(self, host: Host) -> RecordedHost:
        return self.hosts[host.name]

    def d_hosts(self) -> D.Hosts:
        clock = {"t": 0.0}

        def sleep(seconds: float) -> None:
            clock["t"] += seconds

        return D.Hosts(connect=self.connect, sleep=sleep, monotonic=lambda: clock["t"])

    def lb_events(self) -> list[tuple[str, str]]:
        """(drain|undrain, host) in the order the load balancer got them."""
        by_address = {h.address: h.name for h in self.fleet.hosts}
        events = []
        for command in self.hosts["lb1"].log:
            if not command.startswith(D.LB_UPSTREAM):
                continue
            args = shlex.split(command)
            for flag, address in itertools.pairwise(args):
                if flag in ("--drain", "--undrain"):
                    events.append((flag.strip("-"), by_address[address]))
        return events

    def drained(self) -> dict:
        path = self.tmp / "hosts/lb1/lb/drained.json"
        return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def audit_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(
        importlib.import_module("fetchfleet.deploy.audit"), "AUDIT_DIR", tmp_path / "audit"
    )
    return tmp_path / "audit"


def release(rid: str) -> Release:
    return Release(rid, rid, rid[-7:], "2026-11-02T10:00:00+00:00", "3.11", "/x.tar.gz", [], 0.1)


def deploy(fleet: RecordedFleet, rid: str = R2, **kwargs) -> D.Report:
    calls = []

    def build(*args):
        calls.append(args)
        return release(rid)

    def install(env, rel):
        for name, rec in fleet.hosts.items():
            if name != "lb1":
                rec.install(rel.id)
        return {"ship": 0.1, "venv": 0.2, "migrate": 0.1}

    action = D.Deploy(
        fleet.env, build=build, install_release=install, hosts=fleet.d_hosts(), out=lambda _: None,
        **kwargs,
    )  # fmt: skip
    try:
        return action.run()
    finally:
        fleet.build_calls = calls


def audit_records(audit_dir: Path, fleet: RecordedFleet) -> list[dict]:
    return D.read_audit(D.control_audit_path(Path(fleet.env).name, audit_dir))


def test_a_deploy_drains_switches_and_gates_one_web_host_at_a_time_then_the_workers(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=3)
    report = deploy(fleet, message="new upload limit")
    assert report.result == "ok"
    assert {n: h.current for n, h in fleet.hosts.items() if n != "lb1"} == dict.fromkeys(
        ["web1", "web2", "web3", "worker1"], R2
    )
    assert fleet.lb_events() == [
        ("drain", "web1"), ("undrain", "web1"), ("drain", "web2"), ("undrain", "web2"),
        ("drain", "web3"), ("undrain", "web3"),
    ]  # fmt: skip
    assert fleet.drained() == {}
    # The workers restart after every web host is back.
    worker_restart = next(
        i for i, c in enumerate(fleet.hosts["worker1"].log) if "supervisorctl stop" in c
    )
    assert "cloudfetch-worker" in fleet.hosts["worker1"].log[worker_restart]
    record = audit_records(audit_dir, fleet)[-1]
    assert (record["action"], record["release"], record["previous"], record["result"]) == (
        "deploy", R2, R1, "ok",
    )  # fmt: skip
    assert record["message"] == "new upload limit"
    for name in ("web1", "web2", "web3", "worker1"):
        line = (tmp_path / "hosts" / name / "revisions.log").read_text().splitlines()[-1]
        assert json.loads(line)["host"] == name
    assert not (tmp_path / "locks/deploy.lock").exists(), "the lock is released"


def test_a_failed_gate_on_the_second_batch_sends_the_first_back(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=2, broken={"web2": {R2}})
    with pytest.raises(D.DeployError) as err:
        deploy(fleet)
    assert err.value.host == "web2" and err.value.step == "health"
    assert "rolled back" in str(err.value)
    assert "web2 log:" in str(err.value), "the error carries the host's last log lines"
    assert {n: h.current for n, h in fleet.hosts.items() if n != "lb1"} == dict.fromkeys(
        ["web1", "web2", "worker1"], R1
    )
    assert fleet.hosts["web1"].running == R1 and fleet.hosts["web2"].running == R1
    # web2 is drained when it fails and goes back first; then web1, drained in its turn, so
    # one web host serves throughout.
    assert fleet.lb_events() == [
        ("drain", "web1"), ("undrain", "web1"), ("drain", "web2"), ("undrain", "web2"),
        ("drain", "web1"), ("undrain", "web1"),
    ]  # fmt: skip
    assert fleet.drained() == {}
    # The worker was never switched: the failure came before its turn.
    assert not any("supervisorctl stop" in c for c in fleet.hosts["worker1"].log)
    assert audit_records(audit_dir, fleet)[-1]["result"] == "rolled back"
    # The failed release is removed, so no later bare `fab rollback` can pick it.
    assert all(R2 not in h.installed() for n, h in fleet.hosts.items() if n != "lb1")
    assert all(R1 in h.installed() for n, h in fleet.hosts.items() if n != "lb1")
    assert not (tmp_path / "locks/deploy.lock").exists()


def test_an_unreachable_host_stops_the_deploy_in_preflight_with_nothing_changed(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=2)
    fleet.hosts["worker1"].unreachable = True
    with pytest.raises(D.DeployError, match="nothing was changed") as err:
        deploy(fleet)
    assert err.value.step == "preflight" and "worker1" in str(err.value)
    assert fleet.build_calls == [], "no build before preflight passed"
    for name, rec in fleet.hosts.items():
        sent = [c for c in rec.log if c != "true" and not c.startswith("python3 - ")]
        assert sent == [], f"{name} got {sent}"
    assert not (tmp_path / "locks").exists() and audit_records(audit_dir, fleet) == []


def test_a_held_lock_refuses_the_deploy_and_the_refusal_is_audited(
    tmp_path: Path, audit_dir: Path, monkeypatch
) -> None:
    fleet = RecordedFleet(tmp_path, webs=2)
    monkeypatch.setenv("FETCHFLEET_DEPLOYER", "carol@oncall")
    (tmp_path / "locks").mkdir()
    held = D.LockInfo.new("inv", D.MANUAL, "", "incident 42")
    D.DeployLock(Local(), str(tmp_path / "locks/deploy.lock"), "inv").acquire(held)
    with pytest.raises(D.LockHeld, match="incident 42"):
        deploy(fleet)
    assert all(h.current == R1 for n, h in fleet.hosts.items() if n != "lb1")
    record = audit_records(audit_dir, fleet)[-1]
    assert record["result"] == "refused" and "incident 42" in record["detail"]


def test_rollback_returns_every_host_to_the_previous_release(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=2)
    deploy(fleet)
    report = D.Rollback(fleet.env, hosts=fleet.d_hosts(), out=lambda _: None).run()
    assert report.result == "ok" and report.release == R1
    assert all(h.current == R1 and h.running == R1 for n, h in fleet.hosts.items() if n != "lb1")
    record = audit_records(audit_dir, fleet)[-1]
    assert (record["action"], record["release"], record["previous"]) == ("rollback", R1, R2)


def test_a_rollback_whose_target_fails_its_gate_goes_back_to_where_it_was(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=2, broken={"web1": {R1}})
    deploy(fleet)
    with pytest.raises(D.DeployError, match="rolled back") as err:
        D.Rollback(fleet.env, hosts=fleet.d_hosts(), out=lambda _: None).run()
    assert err.value.host == "web1"
    assert all(h.current == R2 for n, h in fleet.hosts.items() if n != "lb1")
    assert audit_records(audit_dir, fleet)[-1]["result"] == "rolled back"


def test_restart_keeps_every_host_on_its_release_and_marks_a_failure_in_the_audit(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=2)
    report = D.Restart(fleet.env, hosts=fleet.d_hosts(), out=lambda _: None).run()
    assert report.result == "ok"
    assert all(
        sum("supervisorctl stop" in c for c in h.log) == 1
        for n, h in fleet.hosts.items()
        if n != "lb1"
    )
    fleet.hosts["worker1"].broken.add(R1)  # its programs now come up FATAL
    with pytest.raises(D.DeployError):
        D.Restart(fleet.env, hosts=fleet.d_hosts(), out=lambda _: None).run()
    assert audit_records(audit_dir, fleet)[-1]["result"] in ("rolled back", "failed")
    assert audit_records(audit_dir, fleet)[-1]["action"] == "restart"


def test_a_deploy_puts_back_what_an_interrupted_one_drained_but_keeps_a_manual_drain(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=3)
    hosts = fleet.d_hosts()
    plan = D.plan(fleet.fleet)
    hosts.set_drain(plan, [fleet.fleet.host("web1")], True, reason="deploy")  # left by a kill
    hosts.set_drain(plan, [fleet.fleet.host("web3")], True, reason="manual")  # an operator's
    deploy(fleet)
    assert fleet.drained() == {"10.9.0.23": "manual"}
    assert ("undrain", "web3") not in fleet.lb_events()


def test_cleanup_keeps_the_newest_releases_and_never_what_ran_before(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=2)
    old = [f"202610{d:02d}T100000Z-old{d:04d}" for d in range(1, 6)]
    for rec in fleet.hosts.values():
        for rid in old:
            rec.install(rid)
    deploy(fleet, keep=3)
    for name, rec in fleet.hosts.items():
        if name != "lb1":
            assert rec.installed() == sorted([old[-1], R1, R2]), name


def test_bad_keep_is_refused_before_any_host_is_asked(tmp_path: Path, audit_dir: Path) -> None:
    fleet = RecordedFleet(tmp_path, webs=2)
    with pytest.raises(D.DeployError, match="at least 2"):
        deploy(fleet, keep=1)
    assert all(rec.log == [] for rec in fleet.hosts.values())


def test_a_built_release_is_deployed_by_id_without_a_build(tmp_path: Path, audit_dir: Path) -> None:
    """The pipeline's "same artifact to production": --release takes the cached build."""
    fleet = RecordedFleet(tmp_path, webs=2)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{R3}.tar.gz").write_bytes(b"artifact")
    manifest = {**dataclasses.asdict(release(R3)), "artifact": str(cache / f"{R3}.tar.gz")}
    (cache / f"{R3}.json").write_text(json.dumps(manifest))
    report = deploy(fleet, release=R3, cache=cache)
    assert report.result == "ok" and report.release == R3
    assert fleet.build_calls == [], "nothing was built"
    assert all(h.current == R3 for n, h in fleet.hosts.items() if n != "lb1")
    with pytest.raises(D.DeployError, match="not with --ref or --fresh"):
        deploy(fleet, release=R3, cache=cache, force_build=True)
    with pytest.raises(ReleaseError, match="is not in the release cache"):
        deploy(fleet, release=R1, cache=cache)


def test_a_restart_of_the_hosts_a_converge_changed_restarts_only_them_and_clears_their_notes(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = RecordedFleet(tmp_path, webs=3)
    (tmp_path / "hosts/web2/restart.pending").write_text("configuration changed\n")
    report = D.Restart(fleet.env, only={"web2"}, hosts=fleet.d_hosts(), out=lambda _: None).run()
    assert report.result == "ok" and [h.host for h in report.hosts] == ["web2"]
    restarted = [n for n, h in fleet.hosts.items() if any("supervisorctl stop" in c for c in h.log)]
    assert restarted == ["web2"]
    assert fleet.lb_events() == [("drain", "web2"), ("undrain", "web2")]
    assert not (tmp_path / "hosts/web2/restart.pending").exists()


def test_the_restart_note_is_where_roles_app_writes_it() -> None:
    from fetchfleet.programs.app_state import RESTART_PENDING

    role_vars = (REPO / "roles/app/vars/main.yml").read_text()
    assert f'__app_restart_pending: "{{{{ app_root }}}}/{RESTART_PENDING}"' in role_vars
