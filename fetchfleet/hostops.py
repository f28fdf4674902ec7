"""One host at a time, as the runbooks need: restart one app program, prune old releases and
rotated logs, restart one allowed service. Each takes the environment's lock (a deploy or a
converge is never half-undone by one of these), silences the alerts it is expected to cause
(fetchfleet.monitoring.silence), and leaves an audit record, like `fab deploy`.

    fab app.restart-program HOST PROGRAM   the web program: the drained, gated restart of that host
    fab host.prune HOST [--keep N] [--log-days D] [--dry-run]
    fab service.restart HOST SERVICE       pgbouncer, rabbitmq-server, transmission-daemon,
                                           nginx (after `nginx -t`, reloaded when it runs), munin-node
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from fetchfleet.deploy import Hosts, Report, Restart, audit, audit_record, holding, plan
from fetchfleet.deploy.actions import Action
from fetchfleet.deploy.errors import DeployError
from fetchfleet.deploy.hosts import HEALTH_TIMEOUT, is_web
from fetchfleet.deploy.lock import DeployLock, LockInfo
from fetchfleet.deploy.releases import KEEP_RELEASES, select_removals
from fetchfleet.deploy.rollout import HostResult, timed
from fetchfleet.inventory import Fleet, Host, load_fleet
from fetchfleet.monitoring.silence import silenced
from fetchfleet.output import Clock, Progress

WEB_PROGRAM = "cloudfetch-web"
LOG_DAYS = 7
# Each allowed service, and the alerts its restart is expected to cause on its host.
SERVICES: dict[str, tuple[str, ...]] = {
    "pgbouncer": ("fetchfleet_pgbouncer_*", "fetchfleet_app_*"),
    "rabbitmq-server": ("fetchfleet_celery_*",),
    "transmission-daemon": ("fetchfleet_transmission_*",),
    "nginx": ("fetchfleet_nginx_*",),
    "munin-node": (),  # munin-update misses at most one run: no alert follows
}
SERVICE_MINUTES = 10
SETTLE_SECONDS = 3.0  # a service that dies right after starting is caught by a second look


def app_host(fleet: Fleet, name: str) -> Host:
    host = fleet.host(name)
    if not {"web", "workers"} & set(host.groups):
        apps = ", ".join(h.name for h in fleet.hosts if {"web", "workers"} & set(h.groups))
        raise DeployError(f"{name} is not an app host (web, workers: {apps})", name)
    return host


class RestartProgram(Action):
    """One supervisor program of the app on one host, restarted and waited for (RUNNING on the
    host's current release); the deploy's lock, preflight, silence and audit."""

    name = "restart-program"

    def __init__(self, env: str = "lab", host: str = "", program: str = "", **kwargs):
        super().__init__(env, **kwargs)
        self.host = app_host(self.fleet, host)
        self.program = program
        self.plan = self.plan.only({host})

    def prepare(self, states: dict[str, dict]) -> str:
        state = states[self.host.name]
        if self.program not in state["programs"]:
            runs = ", ".join(sorted(state["programs"])) or "nothing"
            raise DeployError(
                f"{self.program} is not a program of {self.host.name} (it runs {runs})",
                self.host.name,
                "preflight",
            )
        return state["current"] or ""

    def body(self, states: dict[str, dict], lock: DeployLock, info: LockInfo) -> None:
        h, release = self.host, self.report.release
        result = HostResult(h.name, "web" if is_web(h) else "worker", release, release)
        self.report.hosts.append(result)
        self.clock.say(f"restart {self.program}", h.name)
        try:
            timed(result.steps, "restart", self.hosts.restart, h, [self.program])
            timed(result.steps, "gate", self.wait_running, h, release)
        except DeployError as err:
            result.result = f"FAILED at {err.step}"
            raise
        result.result = "ok"
        self.clock.say(f"{self.program} RUNNING ({sum(result.steps.values()):.1f}s)", h.name)

    def wait_running(self, h: Host, release: str) -> None:
        t0 = self.hosts.monotonic()
        while True:
            seen = self.hosts.state(h)["programs"].get(self.program, {})
            if seen.get("state") == "RUNNING" and seen.get("release") in (release, None):
                return
            if self.hosts.monotonic() - t0 > HEALTH_TIMEOUT:
                raise DeployError(
                    f"{self.program} is {seen.get('state', 'gone')} {HEALTH_TIMEOUT:.0f}s after its restart",
                    h.name,
                    "gate",
                    self.hosts.last_log(h),
                )
            self.hosts.sleep(0.5)


def restart_program(env: str, host: str, program: str, **kwargs) -> Report:
    """`fab app.restart-program HOST PROGRAM`; PROGRAM as supervisor names it or as the alert's
    field does (cloudfetch_worker). The web program goes through the rolling restart of that
    host alone: drained on the load balancers, gated on /healthz."""
    fleet = kwargs.pop("fleet", None) or load_fleet(env)
    name = program.replace("_", "-")
    if name == WEB_PROGRAM and is_web(app_host(fleet, host)):
        return Restart(env, only={host}, fleet=fleet, **kwargs).run()
    return RestartProgram(env, host, name, fleet=fleet, **kwargs).run()


# --- prune ----------------------------------------------------------------------------------------


@dataclass
class Pruned:
    host: str
    dry_run: bool
    removed: list[dict[str, str]] = field(default_factory=list)  # what, name, bytes
    freed: int = 0
    free_before: int | None = None
    free_after: int | None = None


def _free(hosts: Hosts, h: Host, path: str) -> int | None:
    proc = hosts.connect(h).run(f"df -B1 --output=avail {shlex.quote(path)}", check=False)
    lines = proc.stdout.split()
    return int(lines[-1]) if proc.ok and lines and lines[-1].isdigit() else None


def prune(
    env: str,
    host: str,
    keep: int = KEEP_RELEASES,
    log_days: int = LOG_DAYS,
    dry_run: bool = False,
    hosts: Hosts | None = None,
    out: Progress | None = None,
) -> Pruned:
    """`fab host.prune HOST`: old releases beyond the newest `keep` (never current or previous:
    fetchfleet.deploy's own rule) and rotated app logs older than `log_days` days."""
    select_removals([], None, keep)  # keep < 2 is refused before anything
    if log_days < 1:
        raise DeployError(f"--log-days must be at least 1 (the logs of today stay), got {log_days}")
    hosts, clock = hosts or Hosts(), Clock(out)
    fleet = load_fleet(env)
    h = app_host(fleet, host)
    plan_ = plan(fleet).only({host})
    root, logs = hosts.app_root(h), str(hosts.setting(h, "app_log_dir"))
    report = Pruned(h.name, dry_run)
    with holding(plan_, hosts, "prune", message=f"keep {keep}, logs {log_days}d"):
        state = hosts.state(h)
        doomed = select_removals(state["installed"], state["current"], keep)
        runner = hosts.connect(h)
        report.free_before = _free(hosts, h, root)
        for rid in doomed:
            du = runner.run(f"du -sb {shlex.quote(f'{root}/releases/{rid}')}", check=False)
            report.removed.append(
                {"what": "release", "name": rid, "bytes": du.stdout.split("\t")[0]}
            )
        # Rotated by logrotate (NAME.log.1, NAME.log.2.gz, ...); the live NAME.log never.
        find = (
            f"find {shlex.quote(logs)} -maxdepth 1 -type f -name '*.log.*' "
            f"-mmin +{log_days * 1440} -printf '%s\\t%p\\n'"
        )
        listed = runner.run(find + ("" if dry_run else " -delete"), check=False)
        for line in listed.stdout.splitlines():
            size, _, path = line.partition("\t")
            report.removed.append({"what": "log", "name": path, "bytes": size})
        if not dry_run:
            hosts.remove_releases(h, doomed)
        report.freed = sum(int(r["bytes"]) for r in report.removed if r["bytes"].isdigit())
        report.free_after = _free(hosts, h, root)
        verb = "would free" if dry_run else "freed"
        clock.say(
            f"{len(doomed)} release(s), {len(report.removed) - len(doomed)} log(s): {verb} {report.freed} bytes",
            h.name,
        )
        if not dry_run:
            detail = " ".join(r["name"].rsplit("/", 1)[-1] for r in report.removed)
            record = audit_record(
                plan_.env, "prune", state["current"] or "", "ok", host=h.name, detail=detail
            )
            audit(plan_.env, record, [h], hosts.connect)
    return report


# --- services ---------------------------------------------------------------------------------------


def restart_service(
    env: str,
    host: str,
    service: str,
    message: str = "",
    hosts: Hosts | None = None,
    out: Progress | None = None,
) -> dict[str, str]:
    """`fab service.restart HOST SERVICE` for the allowed services; nginx is checked with
    `nginx -t` first and reloaded when it runs (started when it does not), so a load balancer
    drops no request. Returns what was done."""
    if service not in SERVICES:
        raise DeployError(
            f"{service!r} is not a service this restarts (allowed: {', '.join(SERVICES)})"
        )
    hosts, clock = hosts or Hosts(), Clock(out)
    fleet = load_fleet(env)
    h = fleet.host(host)
    runner = hosts.connect(h)
    unit = shlex.quote(service)
    loaded = runner.run(f"systemctl show -p LoadState --value {unit}", check=False).stdout.strip()
    if loaded != "loaded":
        raise DeployError(
            f"no {service} on {host} (systemd: {loaded or 'no answer'})", host, "preflight"
        )
    how = "restart"
    if service == "nginx":
        check = runner.run("nginx -t", check=False)
        if not check.ok:
            raise DeployError(
                "nginx -t failed, nothing restarted", host, "nginx -t", check.tail(800)
            )
        how = "reload-or-restart"
    plan_ = plan(fleet)
    expected = SERVICES[service]
    quiet = silenced(
        fleet,
        [h] if expected else [],
        expected,
        SERVICE_MINUTES,
        f"fab service.restart {host} {service}",
        hosts.connect,
        clock.say,
    )
    with holding(plan_, hosts, f"restart {service}", message=message), quiet:
        clock.say(f"systemctl {how} {service}", host)
        t0 = hosts.monotonic()
        done = runner.run(f"systemctl {how} {unit}", check=False, timeout=300)
        state = _active(runner, unit)
        if done.ok and state == "active":
            hosts.sleep(SETTLE_SECONDS)
            state = _active(runner, unit)
        seconds = hosts.monotonic() - t0
        result = "ok" if done.ok and state == "active" else "failed"
        record = audit_record(
            plan_.env,
            f"restart {service}",
            "",
            result,
            message=message,
            host=host,
            seconds=seconds,
            detail=done.tail(300),
        )
        audit(plan_.env, record, [], hosts.connect)
        if result != "ok":
            journal = runner.run(f"journalctl -u {unit} -n 15 --no-pager", check=False).stdout
            raise DeployError(
                f"{service} is {state} after systemctl {how}: {done.tail(300)}",
                host,
                "restart",
                journal,
                hint=f"look closer on {host}: systemctl status {service}",
            )
    clock.say(f"{service} active ({seconds:.1f}s)", host)
    return {
        "host": host,
        "service": service,
        "did": how,
        "state": state,
        "seconds": f"{seconds:.1f}",
    }


def _active(runner, unit: str) -> str:  # type: ignore[no-untyped-def]
    return runner.run(f"systemctl is-active {unit}", check=False).stdout.strip() or "unknown"
