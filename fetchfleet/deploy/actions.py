"""Deploy, rollback and restart: one locked-action skeleton, three bodies.

Every action: check its arguments → preflight (every host answers; nothing changes) → take the
environment's lock (a refusal is audited) → heartbeat while it runs → put back hosts an
interrupted deploy left drained → its body, with the alerts it is expected to cause silenced
(fetchfleet.monitoring.silence) → one audit record, whatever the result (ok, failed, rolled
back, interrupted) → lift the silence → release the lock. A fab task prints the report's summary either way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fetchfleet import release as R
from fetchfleet.deploy.audit import audit, audit_record
from fetchfleet.deploy.build import build_release, check_clean, resolve_ref
from fetchfleet.deploy.errors import DeployError
from fetchfleet.deploy.hosts import Hosts
from fetchfleet.deploy.install import install
from fetchfleet.deploy.lock import DeployLock, Heartbeat, LockHeld, LockInfo, describe_lock
from fetchfleet.deploy.plan import Plan, plan
from fetchfleet.deploy.releases import (
    KEEP_RELEASES,
    rollback_target,
    select_removals,
    validate_release_id,
)
from fetchfleet.deploy.rollout import Report, Rollout, preflight, switch, timed
from fetchfleet.errors import FleetError
from fetchfleet.inventory import REPO, Fleet, load_fleet
from fetchfleet.monitoring.silence import rollout_silence
from fetchfleet.output import Clock, Progress
from fetchfleet.remote import parallel


def fleet_lock(plan_: Plan, hosts: Hosts) -> DeployLock:
    return DeployLock(hosts.connect(plan_.lock_host), plan_.lock_file, plan_.env)


@contextlib.contextmanager
def holding(
    plan_: Plan, hosts: Hosts, action: str, release: str = "", message: str = ""
) -> Iterator[tuple[DeployLock, LockInfo]]:
    """The environment's lock for the duration, with a heartbeat. A refusal is itself audited
    (who tried what while whom held it)."""
    lock = fleet_lock(plan_, hosts)
    lock.runner.run(f"mkdir -p $(dirname {plan_.lock_file})", timeout=30)
    try:
        info = lock.acquire(LockInfo.new(plan_.env, action, release, message))
    except LockHeld as err:
        detail = f"lock {'STALE' if err.stale else 'held'}: {describe_lock(err.info)}"
        audit(
            plan_.env,
            audit_record(plan_.env, action, release, "refused", None, message, detail=detail),
            plan_.app_hosts,
            hosts.connect,
        )
        raise
    try:
        with Heartbeat(lock, info):
            yield lock, info
    finally:
        lock.release(info)


class Action:
    """The skeleton; subclasses say what to check, what to target and what to do."""

    name = "action"

    def __init__(
        self,
        env: str = "lab",
        message: str = "",
        out: Progress | None = None,
        hosts: Hosts | None = None,
        fleet: Fleet | None = None,
        batch_size: int | None = None,
    ):
        self.env, self.message = env, message
        self.clock = Clock(out)
        self.hosts = hosts or Hosts()
        self.fleet = fleet or load_fleet(env)
        self.plan = plan(self.fleet, batch_size)
        self.report = Report(self.plan.env, self.name, "")
        self.previous: str | None = None

    def check(self) -> None:
        """Arguments, before any host is asked."""

    def prepare(self, states: dict[str, dict]) -> str:
        """What the lock and audit name (a release); may refuse, from what preflight saw."""
        return ""

    def body(self, states: dict[str, dict], lock: DeployLock, info: LockInfo) -> None:
        raise NotImplementedError

    def rollout(self, targets: dict[str, str], states: dict[str, dict], lock, info) -> None:
        kept = {
            address
            for lb in self.plan.loadbalancers
            for address, reason in self.hosts.drained(lb).items()
            if reason != "deploy"
        }
        rollout = Rollout(
            self.hosts, self.plan, targets, states, self.clock, lambda: lock.heartbeat(info), kept
        )
        switch(rollout, self.report, f"{self.name} of {self.report.release}")

    def silenced(self, who: str) -> contextlib.AbstractContextManager[object]:
        """Hold the alerts the action is expected to cause; lifted when it ends, however."""
        reason = f"fab {self.name} of {self.report.release} on {self.plan.env}"
        return rollout_silence(
            self.fleet, self.plan, reason, self.hosts.connect, self.clock.say, who
        )

    def run(self, held: tuple[DeployLock, LockInfo] | None = None) -> Report:
        """Run the action; with `held`, inside a lock its caller holds (fab converge's restart)."""
        t0 = time.monotonic()
        self.check()
        states = preflight(self.hosts, self.plan, self.clock)
        self.previous = states[self.plan.app_hosts[0].name]["current"]
        self.report.release = self.prepare(states)
        taking = (
            contextlib.nullcontext(held)
            if held
            else holding(self.plan, self.hosts, self.name, self.report.release, self.message)
        )
        with taking as (lock, info), self.silenced(info.who):
            try:
                if left := self.hosts.undrain_interrupted(self.plan):
                    self.clock.say(
                        f"{', '.join(left)} were left drained by an interrupted run: back in"
                    )
                self.body(states, lock, info)
            except FleetError as err:
                if self.report.result == "ok":
                    self.report.result, self.report.error = "failed", str(err)
                raise
            except BaseException:
                self.report.result = "interrupted"
                raise
            finally:
                self.report.seconds = time.monotonic() - t0
                record = audit_record(
                    self.plan.env,
                    self.name,
                    self.report.release,
                    self.report.result,
                    self.previous,
                    self.message,
                    seconds=self.report.seconds,
                    detail=self.report.error,
                )
                audit(self.plan.env, record, self.plan.app_hosts, self.hosts.connect)
        return self.report


class Deploy(Action):
    name = "deploy"

    def __init__(
        self,
        env: str = "lab",
        ref: str | None = None,
        message: str = "",
        repo: Path = REPO,
        force_build: bool = False,
        keep: int = KEEP_RELEASES,
        release: str | None = None,
        cache: Path = R.CACHE,
        build: Callable[..., R.Release] = build_release,
        install_release: Callable[[str, R.Release], dict[str, float]] = install,
        **kwargs,
    ):
        super().__init__(env, message, **kwargs)
        self.ref, self.repo, self.force_build, self.keep = ref, repo, force_build, keep
        self.release, self.build, self.install_release = release, build, install_release
        self.cache = cache

    def check(self) -> None:
        select_removals([], None, self.keep)  # keep < 2 is refused before anything
        if self.release is not None:
            if self.ref is not None or self.force_build:
                raise DeployError("--release deploys a built release: not with --ref or --fresh")
            self.artifact = R.by_id(
                self.release, self.cache
            )  # the pipeline's "same artifact to production"
        if self.ref is not None:
            resolve_ref(self.repo, self.ref)
            check_clean(self.repo, self.ref)

    def prepare(self, states: dict[str, dict]) -> str:
        return self.release or self.ref or "working tree"

    def _release(self) -> R.Release:
        if self.release is not None:
            self.clock.say(
                f"release {self.release} from the release cache (built before, not again)"
            )
            return self.artifact
        self.clock.say(f"build {self.ref or 'the working tree'}")
        return self.build(self.repo, self.ref, self.cache, self.force_build)

    def body(self, states: dict[str, dict], lock: DeployLock, info: LockInfo) -> None:
        say, steps = self.clock.say, self.report.steps
        rel = timed(steps, "build", self._release)
        self.report.release = info.release = rel.id
        say(f"release {rel.id} ({'cached' if rel.reused else f'built in {rel.build_seconds}s'})")
        lock.heartbeat(info)
        say("ship, install offline on every app host, migrate once (playbooks/release-install.yml)")
        steps.update(self.install_release(self.env, rel))
        try:
            self.rollout({h.name: rel.id for h in self.plan.app_hosts}, states, lock, info)
        except FleetError:
            if self.report.result == "rolled back":
                # Capistrano's cleanup_rollback: a release that failed its gate is not left where
                # a later bare `fab rollback` would pick it (its build stays in the release cache).
                discard(self.hosts, self.plan, rel.id, say)
            raise
        timed(steps, "cleanup", self.cleanup, states)

    def cleanup(self, states: dict[str, dict]) -> dict[str, list[str]]:
        """Keep the newest `keep` releases per host; never current, previous, or what ran before."""

        def one(h) -> tuple[str, list[str]]:
            state = self.hosts.state(h)
            doomed = select_removals(
                state["installed"], state["current"], self.keep, [states[h.name]["current"] or ""]
            )
            self.hosts.remove_releases(h, doomed)
            return h.name, doomed

        return dict(parallel(one, self.plan.app_hosts))


class Rollback(Action):
    name = "rollback"

    def __init__(self, env: str = "lab", to: str | None = None, message: str = "", **kwargs):
        super().__init__(env, message, **kwargs)
        self.to = to

    def check(self) -> None:
        if self.to is not None:
            validate_release_id(self.to)

    def prepare(self, states: dict[str, dict]) -> str:
        first = states[self.plan.app_hosts[0].name]
        target = rollback_target(first["installed"], first["current"], self.to)
        missing = [n for n, s in states.items() if target not in s["installed"]]
        if missing:
            raise DeployError(
                f"release {target} is not installed on {', '.join(missing)}", step="preflight"
            )
        return target

    def body(self, states: dict[str, dict], lock: DeployLock, info: LockInfo) -> None:
        self.rollout(dict.fromkeys(states, self.report.release), states, lock, info)


class Restart(Action):
    """Rolling restart of the current release, drained and health-gated like a deploy; of every
    app host, or `only` some (those a converge changed). Clears their restart.pending notes."""

    name = "restart"

    def __init__(self, env: str = "lab", only: set[str] | None = None, **kwargs):
        super().__init__(env, **kwargs)
        if only is not None:
            self.plan = self.plan.only(only)

    def prepare(self, states: dict[str, dict]) -> str:
        if none := [n for n, s in states.items() if not s["current"]]:
            raise DeployError(f"no release deployed on {', '.join(none)}", step="preflight")
        self.targets = {n: s["current"] for n, s in states.items()}
        return ",".join(sorted(set(self.targets.values())))

    def body(self, states: dict[str, dict], lock: DeployLock, info: LockInfo) -> None:
        self.rollout(self.targets, states, lock, info)
        parallel(self.hosts.clear_restart_pending, self.plan.app_hosts)


def discard(hosts: Hosts, plan: Plan, release: str, say: Callable[[str], None]) -> list[str]:
    """Remove `release` from every app host that does not run it; returns those hosts."""

    def one(h) -> str | None:
        state = hosts.state(h)
        if release in state["installed"] and state["current"] != release:
            hosts.remove_releases(h, [release])
            return h.name
        return None

    removed = [n for n in parallel(one, plan.app_hosts) if n]
    if removed:
        say(f"release {release} removed from {', '.join(removed)}: it failed, and no bare "
            "`fab rollback` may pick it (fab deploy --release ID brings it back)")  # fmt: skip
    return removed


def discard_release(env: str, release: str, out: Progress = print) -> list[str]:
    return discard(Hosts(), plan(load_fleet(env)), release, out)


def deploy(env: str = "lab", **kwargs) -> Report:
    return Deploy(env, **kwargs).run()


def rollback(env: str = "lab", **kwargs) -> Report:
    return Rollback(env, **kwargs).run()


def restart(env: str = "lab", **kwargs) -> Report:
    return Restart(env, **kwargs).run()
