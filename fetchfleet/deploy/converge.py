"""`fab converge`: site.yml on an environment, under the same lock as deploys.

A converge re-renders the load balancers' upstream (keeping every drain: the drain state is a file
only the deploy changes) and restarts nothing a deploy is switching, yet two at once would still
race for supervisor and nginx reloads; so a converge waits for no one: it is refused while a
deploy, rollback, restart or another converge holds the lock, naming the holder.

A converge that changed an app host's configuration restarts nothing itself (roles/app leaves a
restart.pending note): still holding the lock, this runs the deploy's rolling restart of exactly
those hosts, drained and health-gated, so a configuration change loses no request either.

`check` is the drift check: Ansible's check mode with --diff changes nothing, so it takes no lock
(a nightly check must not fail because a deploy runs; the Jenkins job serialises the two itself).
"""

from __future__ import annotations

import dataclasses
import time

from fetchfleet.deploy.actions import Restart, holding
from fetchfleet.deploy.audit import audit, audit_record
from fetchfleet.deploy.hosts import Hosts
from fetchfleet.deploy.lock import DeployLock, LockInfo
from fetchfleet.deploy.plan import plan
from fetchfleet.deploy.rollout import Report
from fetchfleet.inventory import load_fleet
from fetchfleet.output import Progress
from fetchfleet.playbook import Recap, run_playbook
from fetchfleet.remote import parallel


def converge(
    env: str = "lab",
    limit: str | None = None,
    extra: list[str] | None = None,
    message: str = "",
    echo: bool = True,
    hosts: Hosts | None = None,
    playbook: str = "site.yml",
    check: bool = False,
    out: Progress | None = None,
) -> Recap:
    hosts = hosts or Hosts()
    plan_ = plan(load_fleet(env))
    t0 = time.monotonic()
    if check:
        recap = run_playbook(
            playbook, env=env, limit=limit, extra=["--check", "--diff", *(extra or [])], echo=echo
        )
    else:
        with holding(plan_, hosts, "converge", limit or "", message) as held:
            recap = run_playbook(playbook, env=env, limit=limit, extra=extra, echo=echo)
            if recap.ok:
                recap = dataclasses.replace(recap, restart=restart_pending(env, hosts, held, out))
    changed = recap.total("changed")
    record = audit_record(
        plan_.env,
        "drift check" if check else "converge",
        limit or "",
        "ok" if recap.ok else "failed",
        message=message,
        seconds=time.monotonic() - t0,
        detail=f"{playbook}: {len(recap.hosts)} hosts, changed={changed}",
    )
    audit(plan_.env, record, connect=hosts.connect)
    return recap


def restart_pending(
    env: str, hosts: Hosts, held: tuple[DeployLock, LockInfo], out: Progress | None
) -> Report | None:
    """The rolling restart of the app hosts whose configuration the converge changed."""
    plan_ = plan(load_fleet(env))
    states = parallel(hosts.state, plan_.app_hosts)
    pending = {
        h.name for h, s in zip(plan_.app_hosts, states, strict=True) if s.get("restart_pending")
    }
    if not pending:
        return None
    say = out or print
    say(f"configuration changed on {', '.join(sorted(pending))}: rolling restart")
    return Restart(env, only=pending, hosts=hosts, out=out, message="after a converge").run(held)
