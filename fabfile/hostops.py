"""One host at a time, as the runbooks need (logic: fetchfleet.hostops).

fab app.restart-program HOST PROGRAM [--env E]      e.g. worker1 cloudfetch-worker
fab host.prune HOST [--keep N] [--log-days D] [--dry-run]
fab service.restart HOST SERVICE                    pgbouncer rabbitmq-server transmission-daemon nginx munin-node
"""

from __future__ import annotations

from invoke import Collection, task

from fabfile.deploy import _do, _report
from fetchfleet import hostops
from fetchfleet.deploy import KEEP_RELEASES
from fetchfleet.output import table


@task(
    name="restart-program",
    positional=["host", "program"],
    help={
        "host": "an app host (web, workers)",
        "program": "cloudfetch-web, cloudfetch-worker or cloudfetch-beat (or as the alert names it: cloudfetch_worker)",
        "env": "inventory (default: lab)",
        "message": "why (the audit log)",
    },
)
def restart_program(c, host, program, env="lab", message=""):
    """Restart one app program on one host; the web program drained and health-gated."""
    _report("app.restart-program", hostops.restart_program, env, host, program, message=message)


@task(
    positional=["host"],
    help={
        "host": "an app host (web, workers)",
        "keep": f"releases kept (default {KEEP_RELEASES}; never current or previous)",
        "log-days": f"remove rotated app logs older than this many days (default {hostops.LOG_DAYS})",
        "dry-run": "only say what would go",
        "env": "inventory (default: lab)",
    },
)
def prune(c, host, keep=KEEP_RELEASES, log_days=hostops.LOG_DAYS, dry_run=False, env="lab"):
    """Free disk on an app host: old releases beyond keep-N and old rotated app logs."""
    report = _do("host.prune", hostops.prune, env, host, int(keep), int(log_days), dry_run)
    print(table(report.removed))
    free = "" if report.free_after is None else f"; {report.free_after / 2**20:.0f} MiB free now"
    verb = "would free" if report.dry_run else "freed"
    print(f"{host}: {verb} {report.freed / 2**20:.1f} MiB{free}")


@task(
    name="restart",
    positional=["host", "service"],
    help={
        "host": "the host",
        "service": ", ".join(hostops.SERVICES),
        "env": "inventory (default: lab)",
        "message": "why (the audit log)",
    },
)
def service_restart(c, host, service, env="lab", message=""):
    """Restart one allowed service on one host (nginx: checked, then reloaded if it runs)."""
    done = _do("service.restart", hostops.restart_service, env, host, service, message)
    print(table([done]))


app_ns = Collection("app", restart_program)
host_ns = Collection("host", prune)
service_ns = Collection("service", service_restart)
