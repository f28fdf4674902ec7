"""The steps an action takes on hosts: read a host's releases and programs, switch `current`,
restart, gate on health, drain a web host on the load balancers, remove old releases.

Every command goes through `connect(host)` (fetchfleet.remote by default), so the rollout can be
unit-tested against a recorded fleet, and every path and socket comes from the roles' defaults or
the inventory (fetchfleet.settings), never from a copy here.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from typing import Any

from fetchfleet import remote
from fetchfleet.deploy.errors import DeployError
from fetchfleet.deploy.plan import Plan
from fetchfleet.inventory import Host
from fetchfleet.programs.app_state import RESTART_PENDING
from fetchfleet.remote import Runner, parallel, run_program
from fetchfleet.settings import setting

HEALTH_TIMEOUT = 90.0  # until /version names the new release (gunicorn preloads the app)
HEALTH_GRACE = 10.0  # then until /healthz answers 200
DRAIN_TIMEOUT = 60.0  # until the load balancer's old workers have finished their requests
# Installed by roles/nginx (files/usr/local/sbin/); the only writer of the upstream's drain state.
LB_UPSTREAM = "/usr/local/sbin/cloudfetch-lb-upstream"


def is_web(host: Host) -> bool:
    return "web" in host.groups


class Hosts:
    """Rollout steps over one connect function (and clock, for tests)."""

    def __init__(
        self,
        connect: Callable[[Host], Runner] = remote.connect,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.connect, self.sleep, self.monotonic = connect, sleep, monotonic
        self._settings: dict[tuple[str, str], Any] = {}

    def setting(self, host: Host, name: str) -> Any:
        key = (host.name, name)
        if key not in self._settings:
            self._settings[key] = setting(host, name)
        return self._settings[key]

    def app_root(self, host: Host) -> str:
        return str(self.setting(host, "app_root"))

    # --- reading ---------------------------------------------------------------------------------

    def state(self, host: Host) -> dict:
        """{current, installed, programs: {name: {state, pid, release}}} (programs/app_state.py)."""
        return run_program(self.connect(host), "app_state", self.app_root(host), timeout=30)

    def probe(self, host: Host) -> dict:
        sock = str(self.setting(host, "app_gunicorn_socket"))
        return run_program(self.connect(host), "app_probe", sock, timeout=30)

    def last_log(self, host: Host, lines: int = 15) -> str:
        name = "gunicorn.log" if is_web(host) else "celery-worker.log"
        log = f"{self.setting(host, 'app_log_dir')}/{name}"
        proc = self.connect(host).run(
            f"tail -n {lines} {shlex.quote(log)}", check=False, timeout=20
        )
        return proc.stdout.strip()

    # --- changing --------------------------------------------------------------------------------

    def switch_link(self, host: Host, release: str) -> None:
        """`current` -> releases/RELEASE by an atomic rename (only an installed release)."""
        root = shlex.quote(self.app_root(host))
        target = f"{root}/releases/{shlex.quote(release)}"
        self.connect(host).run(
            f"test -f {target}/.installed && ln -sfn {target} {root}/.current.new "
            f"&& mv -T {root}/.current.new {root}/current"
        )

    def restart(self, host: Host, programs: list[str]) -> None:
        if not programs:
            raise DeployError(
                "no cloudfetch program declared to supervisor (converge web.yml)",
                host.name,
                "restart",
            )
        # The output is captured on the host first: if this control machine dies mid-restart, a
        # closed ssh pipe must not kill supervisorctl between its stop and its start.
        # stop, update, start: `update` applies a definition a converge changed but left to this
        # restart (roles/supervisor's supervisor_changed_note), and starts the program itself
        # when it did; `start` then says "already started", which is no error. On a first deploy
        # nothing runs, and `restart` would say "ERROR (not running)" though it starts them.
        names = " ".join(shlex.quote(p) for p in programs)
        proc = self.connect(host).run(
            f"out=$( (supervisorctl stop {names} >/dev/null 2>&1; supervisorctl update {names}"
            f' >/dev/null 2>&1; supervisorctl start {names}) 2>&1); rc=$?; echo "$out"; exit $rc',
            check=False,
            timeout=700,
        )
        errors = [
            line
            for line in proc.stdout.splitlines()
            if "ERROR" in line and "already started" not in line
        ]
        if errors or (proc.returncode != 0 and not proc.stdout.strip()):
            raise DeployError(
                f"supervisorctl stop/update/start: {proc.stdout.strip()} {proc.stderr.strip()}",
                host.name,
                "restart",
                self.last_log(host),
            )

    def gate(
        self,
        host: Host,
        release: str,
        timeout: float = HEALTH_TIMEOUT,
        grace: float = HEALTH_GRACE,
    ) -> dict:
        """Wait until the host runs `release` and is healthy; raise with what was seen otherwise."""
        t0 = self.monotonic()
        seen: dict = {}
        since_version: float | None = None
        while True:
            if is_web(host):
                seen = self.probe(host)
                try:
                    running = json.loads(seen["/version"]["body"]).get("release")
                except (json.JSONDecodeError, AttributeError):
                    running = None
                healthy = seen["/healthz"]["status"] == 200
            else:
                seen = self.state(host)["programs"]
                running = (
                    release
                    if seen and all(p["release"] == release for p in seen.values())
                    else None
                )
                healthy = bool(seen) and all(p["state"] == "RUNNING" for p in seen.values())
            if running == release:
                since_version = since_version or self.monotonic()
                if healthy:
                    return seen
                if self.monotonic() - since_version > grace:
                    raise DeployError(
                        f"runs {release} but is not healthy: {seen}",
                        host.name,
                        "health",
                        self.last_log(host),
                    )
            if self.monotonic() - t0 > timeout:
                raise DeployError(
                    f"did not report release {release} within {timeout:.0f}s: {seen}",
                    host.name,
                    "health",
                    self.last_log(host),
                )
            self.sleep(0.5)

    def clear_restart_pending(self, host: Host) -> None:
        self.connect(host).run(f"rm -f {shlex.quote(self.app_root(host))}/{RESTART_PENDING}")

    def remove_releases(self, host: Host, releases: list[str]) -> None:
        if releases:
            base = f"{self.app_root(host)}/releases/"
            self.connect(host).run("rm -rf " + " ".join(shlex.quote(base + r) for r in releases))

    # --- the load balancers ----------------------------------------------------------------------

    def _upstream(self, lb: Host, *args: str, step: str) -> dict:
        command = " ".join([LB_UPSTREAM, *(shlex.quote(a) for a in args)])
        proc = self.connect(lb).run(command, check=False, timeout=DRAIN_TIMEOUT + 30)
        try:
            answer = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            answer = {"error": f"exit {proc.returncode}: {proc.tail(400)}"}
        if "error" in answer:
            raise DeployError(
                answer["error"], lb.name, step, hint=f"look closer on {lb.name}: {command}"
            )
        return answer

    def set_drain(
        self, plan: Plan, hosts: list[Host], drain: bool, reason: str = "deploy"
    ) -> float:
        """Drain (or undrain) hosts on every load balancer; returns how long draining waited for
        the requests in flight to them."""
        args = [a for h in hosts for a in (("--drain" if drain else "--undrain"), h.address)]
        args += ["--reason", reason, "--reload", "--wait", str(DRAIN_TIMEOUT)]
        step = "drain" if drain else "undrain"
        answers = parallel(lambda lb: self._upstream(lb, *args, step=step), plan.loadbalancers)
        return max((a.get("waited", 0.0) for a in answers), default=0.0)

    def drained(self, lb: Host) -> dict[str, str]:
        """{address: reason} of the web hosts this load balancer has drained."""
        return self._upstream(lb, "--show", step="lb state")["drained"]

    def undrain_interrupted(self, plan: Plan) -> list[str]:
        """Hosts an interrupted deploy left drained go back in; manual drains stay."""
        left = {
            a for lb in plan.loadbalancers for a, r in self.drained(lb).items() if r == "deploy"
        }
        hosts = [h for h in plan.web if h.address in left]
        if hosts:
            args = ["--undrain-reason", "deploy", "--reload", "--wait", str(DRAIN_TIMEOUT)]
            parallel(lambda lb: self._upstream(lb, *args, step="undrain"), plan.loadbalancers)
        return [h.name for h in hosts]
