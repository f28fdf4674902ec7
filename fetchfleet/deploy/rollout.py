"""The rolling switch: batch by batch of web hosts (drained on the load balancers while they
restart, so no request in flight is cut), then the workers; a failed gate sends every switched
host back to the release it ran before."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fetchfleet.deploy.errors import DeployError
from fetchfleet.deploy.hosts import Hosts, is_web
from fetchfleet.deploy.plan import Plan
from fetchfleet.errors import FleetError
from fetchfleet.inventory import Host
from fetchfleet.output import Clock
from fetchfleet.remote import each, parallel


@dataclass
class HostResult:
    host: str
    kind: str
    before: str | None
    after: str | None = None
    result: str = "pending"
    steps: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    env: str
    action: str
    release: str
    result: str = "ok"
    steps: dict[str, float] = field(default_factory=dict)
    hosts: list[HostResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


def timed(steps: dict[str, float], name: str, func: Callable, *args: Any) -> Any:
    t0 = time.monotonic()
    try:
        return func(*args)
    finally:
        steps[name] = steps.get(name, 0.0) + time.monotonic() - t0


def preflight(hosts: Hosts, plan: Plan, clock: Clock) -> dict[str, dict]:
    """Every app host answers with its releases and programs; every load balancer answers.
    Nothing changes; any host that does not answer stops the action here."""
    outcomes = each(hosts.state, plan.app_hosts)
    errors = [str(o.error) for o in outcomes if not o.ok]
    errors += [
        str(o.error)
        for o in each(lambda lb: hosts.connect(lb).run("true", timeout=20), plan.loadbalancers)
        if not o.ok
    ]
    if errors:
        raise DeployError(
            "hosts not ready, nothing was changed:\n  " + "\n  ".join(errors), step="preflight"
        )
    states = {h.name: o.value for h, o in zip(plan.app_hosts, outcomes, strict=True)}
    clock.say("preflight: " + ", ".join(f"{n} on {s['current']}" for n, s in states.items()))
    return states  # type: ignore[return-value]


class Rollout:
    """Switches (or restarts) the plan's hosts to targets[host]; records per-host results."""

    def __init__(
        self,
        hosts: Hosts,
        plan: Plan,
        targets: dict[str, str],
        states: dict[str, dict],
        clock: Clock,
        on_batch: Callable[[], None] = lambda: None,
        kept_drained: set[str] = frozenset(),
    ):
        self.hosts, self.plan, self.targets, self.states = hosts, plan, targets, states
        self.clock, self.on_batch = clock, on_batch
        # Addresses an operator drained (fab lb.drain): switched like the others, never undrained.
        self.kept_drained = kept_drained
        self.results = {
            h.name: HostResult(h.name, "web" if is_web(h) else "worker", states[h.name]["current"])
            for h in plan.app_hosts
        }
        self.drained: list[Host] = []

    def programs(self, host: Host) -> list[str]:
        return sorted(self.states[host.name]["programs"])

    def _switch(self, host: Host) -> None:
        res, release = self.results[host.name], self.targets[host.name]
        self.clock.say(f"switch {res.before} -> {release}", host.name)
        if res.before != release:
            timed(res.steps, "switch", self.hosts.switch_link, host, release)
        res.after = release
        timed(res.steps, "restart", self.hosts.restart, host, self.programs(host))
        timed(res.steps, "gate", self.hosts.gate, host, release)
        self.clock.say(f"healthy on {release} ({sum(res.steps.values()):.1f}s)", host.name)

    def _drain(self, batch: list[Host], drain: bool) -> float:
        batch = [h for h in batch if h.address not in self.kept_drained]
        if not batch:
            return 0.0
        names = ", ".join(h.name for h in batch)
        step = "drain" if drain else "undrain"
        if drain:
            self.clock.say(f"drain {names} on the load balancer")
            self.drained += batch
        t0 = time.monotonic()
        waited = self.hosts.set_drain(self.plan, batch, drain)
        for h in batch:
            self.results[h.name].steps[step] = time.monotonic() - t0
        if drain:
            self.clock.say(f"drained {names} (in-flight requests done after {waited:.1f}s)")
        else:
            self.drained = [h for h in self.drained if h not in batch]
            self.clock.say(f"{names} back in the load balancer")
        return waited

    def run(self) -> None:
        """Raises DeployError on the first failure; results[host].after says who was switched."""
        for batch in self.plan.web_batches:
            if self.plan.drain:
                self._drain(batch, True)
            parallel(self._switch, batch)
            for h in batch:
                self.results[h.name].result = "ok"
            if self.plan.drain:
                self._drain(batch, False)
            self.on_batch()
        if self.plan.workers:
            parallel(self._switch, self.plan.workers)
            for h in self.plan.workers:
                self.results[h.name].result = "ok"

    def roll_back(self) -> list[str]:
        """Every switched host back to the release it ran before; returns the problems met (best
        effort: every host is tried). Rolling, like the deploy: the batch that failed (drained
        already) first, then each earlier batch drained in turn, so the web hosts that serve
        are never all out at once; the workers last."""
        problems: list[str] = []
        switched = {
            n for n, r in self.results.items() if r.after and r.after != r.before and r.before
        }
        batches = [[h for h in b if h.name in switched] for b in self.plan.web_batches]
        failed = [h for h in self.drained if h.name in switched]
        earlier = [b for b in reversed(batches) if b and not set(b) & set(failed)]
        for batch in ([failed] if failed else []) + earlier:
            try:
                if self.plan.drain and any(h not in self.drained for h in batch):
                    self._drain([h for h in batch if h not in self.drained], True)
                parallel(lambda h: self._back(h, problems), batch)
            except FleetError as err:
                problems.append(str(err))
                continue  # a host that did not come back stays drained
            if self.plan.drain and not any(
                self.results[h.name].result == "ROLLBACK FAILED" for h in batch
            ):
                try:
                    self._drain(batch, False)
                except FleetError as err:
                    problems.append(str(err))
        parallel(
            lambda h: self._back(h, problems), [h for h in self.plan.workers if h.name in switched]
        )
        if self.plan.drain and self.drained and not problems:
            try:
                self._drain(list(self.drained), False)  # drained, never switched: nothing to undo
            except FleetError as err:
                problems.append(str(err))
        return problems

    def _back(self, host: Host, problems: list[str]) -> None:
        res = self.results[host.name]
        try:
            self.clock.say(f"roll back to {res.before}", host.name)
            t0 = time.monotonic()
            self.hosts.switch_link(host, res.before)
            self.hosts.restart(host, self.programs(host))
            self.hosts.gate(host, res.before)
            res.steps["rollback"] = time.monotonic() - t0
            res.after, res.result = res.before, "rolled back"
        except FleetError as err:
            res.result = "ROLLBACK FAILED"
            problems.append(str(err))


def switch(rollout: Rollout, report: Report, what: str) -> None:
    """Run the rollout into the report; on failure roll back and raise naming host and step."""
    report.hosts = list(rollout.results.values())
    t0 = time.monotonic()
    try:
        rollout.run()
    except FleetError as err:
        report.steps["switch"] = time.monotonic() - t0
        rollout.clock.say(f"FAILED: {err}")
        if err.host in rollout.results:
            rollout.results[err.host].result = f"FAILED at {err.step}"
        rollout.clock.say("rolling every switched host back")
        t1 = time.monotonic()
        problems = rollout.roll_back()
        report.steps["auto-rollback"] = time.monotonic() - t1
        report.result = "rolled back" if not problems else "ROLLBACK INCOMPLETE"
        report.error = str(err) + ("\n" + "\n".join(problems) if problems else "")
        raise DeployError(
            f"{what} failed and was rolled back"
            + ("" if not problems else " INCOMPLETELY: " + "; ".join(problems)),
            err.host,
            err.step,
            err.log,
        ) from err
    report.steps["switch"] = time.monotonic() - t0
