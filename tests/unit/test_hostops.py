"""The runbooks' one-host commands against test_silence's recorded fleet (app hosts, a load
balancer running the real drain program, a broker, a monitoring host): app.restart-program,
host.prune (real du, find and df on each host's own directory) and service.restart (systemd
and `nginx -t` answered as a converged host answers them)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from test_rollout import R1, RecordedHost, audit_dir, audit_records
from test_silence import MonitoredFleet

from fetchfleet import hostops
from fetchfleet.deploy import MANUAL, DeployError, DeployLock, LockHeld, LockInfo
from fetchfleet.remote import Local, Result

__all__ = ["audit_dir"]


def restart(fleet: MonitoredFleet, host: str, program: str, said: list[str] | None = None):  # type: ignore[no-untyped-def]
    out = said.append if said is not None else (lambda _: None)
    return hostops.restart_program(fleet.env, host, program, hosts=fleet.d_hosts(), out=out)


def supervisor_calls(fleet: MonitoredFleet) -> dict[str, list[str]]:
    return {n: [c for c in h.log if "supervisorctl" in c] for n, h in fleet.hosts.items() if h.log}


# --- app.restart-program ------------------------------------------------------------------------------


def test_a_worker_program_restarts_on_its_host_alone_silenced_and_audited(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    said: list[str] = []
    report = restart(fleet, "worker1", "cloudfetch_worker", said)  # the alert's field name
    assert report.result == "ok" and [(h.host, h.result) for h in report.hosts] == [
        ("worker1", "ok")
    ]
    calls = {n: c for n, c in supervisor_calls(fleet).items() if c}
    assert list(calls) == ["worker1"] and "cloudfetch-worker" in calls["worker1"][0]
    assert fleet.lb_events() == [], "a worker is not in the load balancer"
    [held] = fleet.monitor.silences()
    assert held["hosts"] == ["worker1", "mq1"] and held["lifted"]
    record = audit_records(audit_dir, fleet)[-1]
    assert (record["action"], record["release"], record["result"]) == ("restart-program", R1, "ok")
    assert any("cloudfetch-worker RUNNING" in line for line in said)


def test_the_web_program_goes_through_the_drained_gated_restart_of_that_host(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=3)
    report = restart(fleet, "web2", "cloudfetch-web")
    assert report.action == "restart" and [h.host for h in report.hosts] == ["web2"]
    assert fleet.lb_events() == [("drain", "web2"), ("undrain", "web2")]
    assert [n for n, c in supervisor_calls(fleet).items() if c] == ["web2"]
    assert fleet.monitor.silences()[0]["hosts"] == ["web2"]


def test_a_program_that_does_not_come_back_fails_at_its_gate_with_the_log(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    fleet.hosts["worker1"].broken.add(R1)  # its programs come up FATAL
    with pytest.raises(DeployError) as err:
        restart(fleet, "worker1", "cloudfetch-worker")
    assert (err.value.host, err.value.step) == ("worker1", "gate")
    assert "FATAL" in str(err.value) and "worker1 log:" in str(err.value)
    assert audit_records(audit_dir, fleet)[-1]["result"] == "failed"
    assert fleet.monitor.silences()[0]["lifted"], "lifted however it ended"


@pytest.mark.parametrize(
    ("host", "program", "error"),
    [
        (
            "worker1",
            "cloudfetch-beat",
            "cloudfetch-beat is not a program of worker1 (it runs cloudfetch-worker)",
        ),
        ("lb1", "cloudfetch-web", "lb1 is not an app host"),
        ("web9", "cloudfetch-web", "no host 'web9'"),
    ],
)
def test_a_wrong_host_or_program_is_refused_with_nothing_restarted(
    tmp_path: Path, audit_dir: Path, host: str, program: str, error: str
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    with pytest.raises(Exception, match=error.replace("(", r"\(").replace(")", r"\)")):
        restart(fleet, host, program)
    assert not any(supervisor_calls(fleet).values())


def test_a_held_lock_refuses_it(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    (tmp_path / "locks").mkdir()
    DeployLock(Local(), str(tmp_path / "locks/deploy.lock"), "inv").acquire(
        LockInfo.new("inv", MANUAL, "", "incident 7")
    )
    with pytest.raises(LockHeld, match="incident 7"):
        restart(fleet, "worker1", "cloudfetch-worker")


# --- host.prune ------------------------------------------------------------------------------------


def aged(path: Path, days: float, size: int = 1000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - days * 86400
    os.utime(path, (then, then))
    return path


def releases_and_logs(fleet: MonitoredFleet, tmp_path: Path) -> list[str]:
    old = [f"202610{d:02d}T100000Z-old{d:04d}" for d in range(1, 5)]
    rec = fleet.hosts["web1"]
    for rid in old:
        rec.install(rid)
        (rec.root / "releases" / rid / "venv").write_bytes(b"v" * 4096)
    log = tmp_path / "hosts/web1/log"
    aged(log / "gunicorn.log", 20)  # the live log, however old: never
    aged(log / "gunicorn.log.1", 1)
    aged(log / "gunicorn.log.9.gz", 9)
    aged(log / "celery-worker.log.12.gz", 12)
    return old


def test_prune_removes_releases_beyond_keep_and_old_rotated_logs(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    old = releases_and_logs(fleet, tmp_path)
    report = hostops.prune(
        fleet.env, "web1", keep=3, log_days=7, hosts=fleet.d_hosts(), out=lambda _: None
    )
    # Newest 3 of old1..old4 + R1 are old3, old4, R1; R1 is current and old4 its previous.
    assert fleet.hosts["web1"].installed() == sorted([old[2], old[3], R1])
    assert [r["name"] for r in report.removed if r["what"] == "release"] == old[:2]
    logs = sorted(p.name for p in (tmp_path / "hosts/web1/log").iterdir())
    assert logs == ["gunicorn.log", "gunicorn.log.1"]
    assert sorted(Path(r["name"]).name for r in report.removed if r["what"] == "log") == [
        "celery-worker.log.12.gz", "gunicorn.log.9.gz",
    ]  # fmt: skip
    assert report.freed >= 2 * 4096 + 2 * 1000 and report.free_after is not None
    record = audit_records(audit_dir, fleet)[-1]
    assert record["action"] == "prune" and record["host"] == "web1" and old[0] in record["detail"]
    assert not (tmp_path / "locks/deploy.lock").exists()
    assert fleet.hosts["web2"].log == [], "only the pruned host is touched"


def test_a_dry_run_prunes_nothing_and_says_what_would_go(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    old = releases_and_logs(fleet, tmp_path)
    report = hostops.prune(
        fleet.env,
        "web1",
        keep=3,
        log_days=7,
        dry_run=True,
        hosts=fleet.d_hosts(),
        out=lambda _: None,
    )
    assert report.dry_run and len(report.removed) == 4 and report.freed > 0
    assert fleet.hosts["web1"].installed() == sorted([*old, R1])
    assert len(list((tmp_path / "hosts/web1/log").iterdir())) == 4
    assert all(r["action"] != "prune" for r in audit_records(audit_dir, fleet))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"keep": 1}, "at least 2"),
        ({"log_days": 0}, "--log-days must be at least 1"),
        ({"host": "mq1"}, "mq1 is not an app host"),
    ],
)
def test_prune_refuses_bad_arguments_before_any_host_is_asked(
    tmp_path: Path, audit_dir: Path, kwargs: dict, error: str
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    args = {"host": "web1", **kwargs}
    with pytest.raises(DeployError, match=error):
        hostops.prune(fleet.env, hosts=fleet.d_hosts(), out=lambda _: None, **args)
    assert fleet.journal == []


# --- service.restart ---------------------------------------------------------------------------------


class SystemdHost(RecordedHost):
    """Answers systemd and nginx as a converged host does; `units`: name -> active state."""

    def __init__(self, rec: RecordedHost, units: dict[str, str]) -> None:
        super().__init__(rec.host, rec.root, set())
        self.units, self.nginx_ok, self.dies = units, True, False
        self.looks = 0

    def answer(self, command: str, stdin) -> Result | None:
        def ok(out: str = "", code: int = 0) -> Result:
            return Result(self.host.name, command, code, out, "" if code == 0 else "failed", 0.0)

        words = command.split()
        if words[:2] == ["systemctl", "show"]:
            return ok("loaded" if words[-1] in self.units else "not-found")
        if words[:2] == ["systemctl", "is-active"]:
            self.looks += 1
            state = "failed" if self.dies and self.looks > 1 else self.units[words[-1]]
            return ok(state, 0 if state == "active" else 3)
        if words[0] == "systemctl":
            self.units[words[-1]] = "active"
            return ok()
        if command == "nginx -t":
            return ok(
                "syntax is ok" if self.nginx_ok else "unexpected '}' in sites-enabled/x:3",
                0 if self.nginx_ok else 1,
            )
        if words[0] == "journalctl":
            return ok(f"{words[2]}: Main process exited, code=exited, status=1/FAILURE")
        return super().answer(command, stdin)


def systemd(fleet: MonitoredFleet, name: str, units: dict[str, str]) -> SystemdHost:
    host = SystemdHost(fleet.hosts[name], units)
    host.run = fleet._journaled(host, host.run)  # type: ignore[method-assign]
    fleet.hosts[name] = host
    return host


def service(fleet: MonitoredFleet, host: str, name: str) -> dict:
    return hostops.restart_service(
        fleet.env, host, name, "runbook", fleet.d_hosts(), lambda _: None
    )


def test_rabbitmq_restarts_silenced_locked_and_audited(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    mq = systemd(fleet, "mq1", {"rabbitmq-server": "active"})
    done = service(fleet, "mq1", "rabbitmq-server")
    assert (done["did"], done["state"]) == ("restart", "active")
    assert "systemctl restart rabbitmq-server" in mq.log
    [held] = fleet.monitor.silences()
    assert (held["hosts"], held["alerts"]) == (["mq1"], ["fetchfleet_celery_*"]) and held["lifted"]
    restart_at = fleet.index(lambda h, c: c == "systemctl restart rabbitmq-server")[0]
    writes = fleet.index(lambda h, c: h == "ops1" and "/silences.json " in c)
    assert writes[0] < restart_at < writes[1]
    record = audit_records(audit_dir, fleet)[-1]
    assert (record["action"], record["host"], record["result"]) == (
        "restart rabbitmq-server",
        "mq1",
        "ok",
    )
    assert not (tmp_path / "locks/deploy.lock").exists()


def test_nginx_is_checked_first_and_reloaded(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    lb = systemd(fleet, "lb1", {"nginx": "active"})
    lb.nginx_ok = False
    with pytest.raises(DeployError, match="nginx -t failed, nothing restarted") as err:
        service(fleet, "lb1", "nginx")
    assert "unexpected '}'" in str(err.value)
    assert not any(
        c.startswith("systemctl reload") or c.startswith("systemctl restart") for c in lb.log
    )
    lb.nginx_ok = True
    assert service(fleet, "lb1", "nginx")["did"] == "reload-or-restart"
    assert lb.log.index("nginx -t") < lb.log.index("systemctl reload-or-restart nginx")


def test_a_service_that_dies_after_starting_fails_with_its_journal(
    tmp_path: Path, audit_dir: Path
) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    worker = systemd(fleet, "worker1", {"transmission-daemon": "active"})
    worker.dies = True
    with pytest.raises(DeployError, match="transmission-daemon is failed") as err:
        service(fleet, "worker1", "transmission-daemon")
    assert "status=1/FAILURE" in str(err.value) and "systemctl status transmission-daemon" in str(
        err.value
    )
    assert audit_records(audit_dir, fleet)[-1]["result"] == "failed"


def test_unknown_or_absent_services_are_refused(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    mq = systemd(fleet, "mq1", {"rabbitmq-server": "active"})
    with pytest.raises(DeployError, match="'postgresql' is not a service this restarts"):
        service(fleet, "mq1", "postgresql")
    with pytest.raises(DeployError, match=r"no pgbouncer on mq1 \(systemd: not-found\)"):
        service(fleet, "mq1", "pgbouncer")
    assert not any(c.startswith("systemctl restart") for c in mq.log)
    assert json.dumps(fleet.monitor.silences()) == "[]"


def test_munin_node_needs_no_silence(tmp_path: Path, audit_dir: Path) -> None:
    fleet = MonitoredFleet(tmp_path, webs=2)
    systemd(fleet, "web1", {"munin-node": "active"})
    assert service(fleet, "web1", "munin-node")["state"] == "active"
    assert fleet.monitor.silences() == []
