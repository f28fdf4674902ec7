"""`fab monitor.*`: pages, the alerts' state, silences (logic: fetchfleet.monitoring).

fab monitor.page --env E --action trigger|resolve [--severity S --summary TEXT] [--source S]
                 [--dedup-key K] [--link URL]       one PagerDuty event (Jenkins pages with it)
fab monitor.flush [--env E]                          send what this machine has spooled
fab monitor.test-page [--env E]                      a test trigger + resolve, every way pages go
fab monitor.status [--env E] [--problems]            every alert's state, from the Munin master
fab monitor.silence --host H --alert A --minutes M --reason R    hold those alerts' triggers
fab monitor.unsilence ID [--env E]                   end a silence
"""

from __future__ import annotations

import sys

from invoke import Collection, task
from invoke.exceptions import Exit

from fetchfleet.deploy.lock import who
from fetchfleet.errors import FleetError
from fetchfleet.inventory import InventoryError, load_fleet
from fetchfleet.monitoring import alerts, paging
from fetchfleet.monitoring import silence as S
from fetchfleet.output import table

ERRORS = (FleetError, InventoryError)


def _do(what, func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except ERRORS as err:
        raise Exit(f"{what}: {err}", code=1) from err


@task(
    help={
        "env": "inventory whose routing key and endpoint to use (default: lab)",
        "action": "trigger or resolve",
        "severity": "critical, error, warning or info (trigger)",
        "source": "what is affected (default: this machine's name)",
        "dedup-key": "the incident's key: a resolve closes the trigger with the same key",
        "summary": "what the person paged reads first (trigger)",
        "link": "a URL with the details (e.g. the Jenkins build)",
    }
)
def page(
    c,
    env="lab",
    action="trigger",
    severity=None,
    source=None,
    dedup_key=None,
    summary=None,
    link=None,
):
    """Send one PagerDuty event (spooled first: never lost; fails only if neither sent nor spooled)."""
    event = _do(
        "monitor.page",
        paging.build_event,
        action,
        severity=severity,
        source=source,
        dedup_key=dedup_key,
        summary=summary,
        link=link,
        env=env,
    )
    paged = _do("monitor.page", paging.page, env, event)
    key = paged.dedup_key
    if paged.status == "rejected":
        why = f"PagerDuty refused {action} {key}: {paged.detail}; kept in {paged.spool}"
        raise Exit(f"monitor.page: {why}", code=1)
    if paged.status == "spooled":
        print(
            f"monitor.page: {action} {key} NOT SENT YET ({paged.detail}); spooled in "
            f"{paged.spool}: the next page from this machine or `fab monitor.flush --env {env}` sends it",
            file=sys.stderr,
        )
        return
    note = f" ({paged.detail})" if paged.detail else ""
    earlier = f", and {paged.others_sent} spooled before it" if paged.others_sent else ""
    print(f"{action} {key} accepted by PagerDuty{earlier}{note}")


@task(help={"env": "inventory (default: lab)"})
def flush(c, env="lab"):
    """Send the events this machine spooled for the environment (in order)."""
    outcome = _do("monitor.flush", paging.flush, env)
    print(f"sent {outcome.sent}, rejected {outcome.rejected}, waiting {outcome.left}")
    if outcome.left and not outcome.busy:
        raise Exit(f"monitor.flush: {outcome.left} still spooled: {outcome.error}", code=1)


@task(name="test-page", help={"env": "inventory (default: lab)"})
def test_page(c, env="lab"):
    """A test trigger and its resolve from this machine and from each monitoring host's pager."""
    rows = _do("monitor.test-page", paging.test_page, env)
    print(table(rows))
    if any("FAILED" in r["trigger"] + r["resolve"] for r in rows):
        raise Exit("monitor.test-page: paging does not work every way (see detail)", code=1)


@task(
    help={
        "env": "inventory (default: lab)",
        "problems": "only the fields that are not OK",
    }
)
def status(c, env="lab", problems=False):
    """Every alert's state now, from the Munin master: state, value, since, paged, runbook."""
    fleet = _do("monitor.status", load_fleet, env)
    masters = _do("monitor.status", alerts.status, fleet)
    for master in masters:
        counts = master.counts()
        head = f"{master.host}: " + ", ".join(
            f"{n} {s}" for s, n in counts.items() if n or s == "ok"
        )
        if master.limits_age is not None:
            head += f"; munin-limits ran {master.limits_age:.0f}s ago"
        if master.pager_waiting:
            head += f"; the pager has {master.pager_waiting} event(s) waiting to be sent"
        if master.pager_rejected:
            head += f"; {master.pager_rejected} rejected by PagerDuty (fetchfleet-pager status)"
        print(head)
        if master.problem:
            print(f"  ! {master.problem}")
        shown = [r for r in master.rows if not problems or r["state"] != "OK"]
        if shown:
            print(table(shown))
    rows = _do("monitor.status", S.active, fleet)
    print(f"\nsilences: {len(rows)} active")
    if rows:
        print(table(rows))
    here = paging.spooled(fleet)
    if here["waiting"] or here["rejected"]:
        print(
            f"\nthis machine's pages: {here['waiting']} waiting (fab monitor.flush --env {env}), "
            f"{here['rejected']} rejected in {paging.spool_root() / fleet.name}/rejected"
        )
    if any(m.problem and not m.rows for m in masters):
        raise Exit("monitor.status: a monitoring host could not be read", code=1)


@task(
    iterable=["host", "alert"],
    help={
        "env": "inventory (default: lab)",
        "host": "a host or shell pattern (repeat for more)",
        "alert": "an alert (a runbook's name) or shell pattern, e.g. 'fetchfleet_postgres_*' (repeat)",
        "minutes": "how long (it may be lifted earlier: fab monitor.unsilence ID)",
        "reason": "why: the page says 'silenced by REASON' if the alert outlives the silence",
    },
)
def silence(c, host, alert, minutes=60, reason="", env="lab"):
    """Hold the triggers of these alerts on these hosts (resolves still go out)."""
    fleet = _do("monitor.silence", load_fleet, env)
    held = _do("monitor.silence", S.silence, fleet, host, alert, float(minutes), reason, who=who())
    print(f"silenced {held.describe()}")
    for problem in held.missing:
        print(f"  ! not on {problem}", file=sys.stderr)


@task(positional=["ident"], help={"env": "inventory (default: lab)", "ident": "the silence's id"})
def unsilence(c, ident, env="lab"):
    """End a silence (what still fails then pages within a few minutes, marked silenced)."""
    fleet = _do("monitor.unsilence", load_fleet, env)
    held, problems = _do("monitor.unsilence", S.lift_by_id, fleet, ident)
    for problem in problems:
        print(f"  ! {problem}", file=sys.stderr)
    print(f"silence {ident} ({held.reason}) ends in {S.LIFT_GRACE_SECONDS:.0f}s")


monitor_ns = Collection("monitor", page, flush, test_page, status, silence, unsilence)
