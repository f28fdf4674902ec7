"""What the fleet runs (status, releases, the lock), the report's summary table, and the small
operator actions around a deploy: the lock held by hand, maintenance, draining a web host."""

from __future__ import annotations

import contextlib
import json
import shlex

from fetchfleet.deploy.actions import fleet_lock
from fetchfleet.deploy.audit import audit, audit_record
from fetchfleet.deploy.errors import DeployError
from fetchfleet.deploy.hosts import Hosts, is_web
from fetchfleet.deploy.lock import MANUAL, LockInfo, describe_lock, stale_reason
from fetchfleet.deploy.plan import plan
from fetchfleet.deploy.releases import previous_release
from fetchfleet.deploy.rollout import Report
from fetchfleet.errors import FleetError
from fetchfleet.inventory import Host, load_fleet
from fetchfleet.output import table
from fetchfleet.remote import each, parallel


def status(env: str = "lab", hosts: Hosts | None = None) -> list[dict]:
    """One row per app host: release, health, programs, whether the load balancers send to it."""
    hosts = hosts or Hosts()
    plan_ = plan(load_fleet(env))
    drained: dict[str, str] = {}
    for outcome in each(hosts.drained, plan_.loadbalancers):
        drained.update(outcome.value or {})

    def one(h: Host) -> dict:
        try:
            state = hosts.state(h)
        except FleetError as err:
            return {
                "host": h.name,
                "release": "?",
                "health": f"unreachable: {err.what[:60]}",
                "processes": "",
                "lb": "",
            }
        health = ""
        if is_web(h):
            probe = hosts.probe(h)
            health = str(probe["/healthz"]["status"] or probe["/healthz"]["body"][:40])
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                health += " " + json.loads(probe["/healthz"]["body"]).get("status", "")
        procs = " ".join(
            f"{n.removeprefix('cloudfetch-')}={p['state']}"
            + ("" if p["release"] in (None, state["current"]) else f"({p['release']})")
            for n, p in state["programs"].items()
        )
        lb = ""
        if is_web(h) and plan_.drain:
            lb = f"drained ({drained[h.address]})" if h.address in drained else "in"
        if state.get("restart_pending"):
            procs += " (restart pending: fab restart)"
        return {
            "host": h.name,
            "release": state["current"] or "-",
            "health": health.strip() or "-",
            "processes": procs,
            "lb": lb,
        }

    return parallel(one, plan_.app_hosts)


def installed_releases(env: str = "lab", hosts: Hosts | None = None) -> list[dict]:
    hosts = hosts or Hosts()
    plan_ = plan(load_fleet(env))
    rows = []
    for h, st in zip(plan_.app_hosts, parallel(hosts.state, plan_.app_hosts), strict=True):
        prev = previous_release(st["installed"], st["current"])
        for rid in reversed(st["installed"]):
            mark = "current" if rid == st["current"] else ("previous" if rid == prev else "")
            rows.append({"host": h.name, "release": rid, "": mark})
    return rows


def lock_status(env: str = "lab") -> tuple[LockInfo | None, str | None]:
    info = fleet_lock(plan(load_fleet(env)), Hosts()).read()
    return info, (stale_reason(info) if info else None)


def hold_lock(env: str, message: str) -> LockInfo:
    """`fab deploy.lock`: hold the lock by hand (e.g. during an incident) until deploy.unlock;
    never reported stale."""
    plan_ = plan(load_fleet(env))
    info = LockInfo.new(plan_.env, MANUAL, "", message)
    info.pid = 0
    lock = fleet_lock(plan_, Hosts())
    lock.runner.run(f"mkdir -p $(dirname {shlex.quote(plan_.lock_file)})", timeout=30)
    held = lock.acquire(info)
    audit(plan_.env, audit_record(plan_.env, "lock", "", "ok", message=message))
    return held


def unlock(env: str) -> LockInfo | None:
    plan_ = plan(load_fleet(env))
    held = fleet_lock(plan_, Hosts()).force_release()
    if held:
        audit(
            plan_.env,
            audit_record(
                plan_.env,
                "unlock",
                held.release,
                "ok",
                message=f"lock of {describe_lock(held)} removed",
            ),
        )
    return held


def maintenance(env: str, on: bool, hosts: Hosts | None = None) -> list[str]:
    hosts = hosts or Hosts()
    plan_ = plan(load_fleet(env))
    if not plan_.loadbalancers:
        raise DeployError(f"inventory {env} has no loadbalancers")

    def one(lb: Host) -> str:
        flag = shlex.quote(str(hosts.setting(lb, "nginx_maintenance_flag")))
        hosts.connect(lb).run(f"touch {flag}" if on else f"rm -f {flag}")
        return lb.name

    names = parallel(one, plan_.loadbalancers)
    audit(plan_.env, audit_record(plan_.env, "maintenance " + ("on" if on else "off"), "", "ok"))
    return names


def drain(env: str, host: str, on: bool, message: str = "", hosts: Hosts | None = None) -> float:
    """`fab lb.drain HOST` / `lb.undrain HOST`: take a web host out of (or back into) every load
    balancer by hand. Such a drain is kept by converges and deploys until undrained."""
    hosts = hosts or Hosts()
    fleet = load_fleet(env)
    plan_ = plan(fleet)
    target = fleet.host(host)
    if not is_web(target):
        raise DeployError(f"{host} is not a web host (web: {', '.join(h.name for h in plan_.web)})")
    waited = hosts.set_drain(plan_, [target], on, reason="manual")
    audit(
        plan_.env,
        audit_record(plan_.env, "drain" if on else "undrain", "", "ok", message=message, host=host),
    )
    return waited


def summary(report: Report) -> str:
    """The end-of-run table: one row per host with its per-step seconds, then the fleet steps."""
    steps = [
        s
        for s in ("drain", "switch", "restart", "gate", "undrain", "rollback")
        if any(s in h.steps for h in report.hosts)
    ]
    rows = [
        {
            "host": h.host,
            "kind": h.kind,
            "from": h.before or "-",
            "to": h.after or "-",
            "result": h.result,
        }
        | {s: f"{h.steps[s]:.1f}" if s in h.steps else "" for s in steps}
        for h in report.hosts
    ]
    fleet = "  ".join(f"{k} {v:.1f}s" for k, v in report.steps.items())
    head = f"{report.action} {report.release} on {report.env}: {report.result} in {report.seconds:.1f}s"
    return "\n".join(
        x
        for x in (head, table(rows) if rows else "", f"fleet steps: {fleet}" if fleet else "")
        if x
    )
