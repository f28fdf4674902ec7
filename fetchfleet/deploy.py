"""`fab deploy`: build once, install everywhere, switch host by host behind a health gate.

The pieces it builds on: `fetchfleet.release` builds (or reuses) the release artifact on the control
machine; `playbooks/release-install.yml` (roles/app's `install` and `migrate` steps) ships it to every
app host in parallel, installs it offline into `releases/<id>` and migrates once. Nothing live has
changed at that point. Then this module switches the fleet, one batch of web hosts at a time
(`deploy_batch_size`, default 1):

1. drain: the load balancers stop sending the batch requests (`down` on its upstream line, nginx
   reloaded gracefully) and we wait until the old nginx workers, and with them every request in
   flight to the batch, are gone — so a restart can never cut a request;
2. switch `current` (an atomic rename of the link), restart the programs (gunicorn's graceful stop);
3. gate: `/version` over the host's gunicorn socket names the new release and `/healthz` answers 200;
4. undrain. Then the next batch; the workers last (Celery's warm shutdown: running tasks finish).

A host failing its gate sends every switched host back to the release it ran before (drained while
it happens), and the deploy fails naming the host, the step and the last lines of its log.

One deploy per environment: a lock file on the lock host (the first web host, or
`deploy_lock_host`) says who holds it, since when, for which release and why; the holder refreshes
a heartbeat, so a lock whose holder died is reported stale. Every action is appended to an audit
log on each host (`<app_root>/revisions.log`) and on the control machine.
"""

from __future__ import annotations

import contextlib
import getpass
import inspect
import json
import os
import re
import secrets
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from fetchfleet import release as R
from fetchfleet.inventory import REPO, Fleet, Host, load_fleet
from fetchfleet.playbook import run_playbook

RELEASE_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-z][0-9a-z-]*$")
AUDIT_DIR = Path(os.environ.get("FETCHFLEET_AUDIT_DIR", "/var/lib/fetchfleet/audit"))
DEFAULT_APP_ROOT = "/srv/cloudfetch"
DEFAULT_SOCKET = "/run/cloudfetch/gunicorn.sock"
DEFAULT_LOG_DIR = "/var/log/cloudfetch"
LB_SITE = "/etc/nginx/sites-available/cloudfetch-loadbalancer.conf"
DEFAULT_MAINTENANCE_FLAG = "/var/lib/nginx/maintenance.on"
# A lock whose heartbeat is older than this is stale (the holder refreshes it every HEARTBEAT s).
STALE_AFTER = 90.0
HEARTBEAT = 10.0
KEEP_RELEASES = 5
MANUAL = "manual lock"
HEALTH_TIMEOUT = 90.0  # until /version names the new release (gunicorn preloads the app)
HEALTH_GRACE = 10.0  # then until /healthz answers 200
DRAIN_TIMEOUT = 60.0  # until the load balancer's old workers have finished their requests


class DeployError(Exception):
    """What failed, on which host, at which step, with the last log lines to look closer."""

    def __init__(self, what: str, host: str | None = None, step: str | None = None, log: str = ""):
        self.what, self.host, self.step, self.log = what, host, step, log
        where = " ".join(x for x in (host and f"{host}:", step and f"[{step}]") if x)
        text = f"{where} {what}" if where else what
        if log:
            text += "\n  last log lines:\n" + "\n".join("    " + ln for ln in log.splitlines())
        super().__init__(text)


class LockHeld(DeployError):
    def __init__(self, info: LockInfo, stale: str | None, env: str):
        self.info, self.stale = info, stale
        state = f"STALE ({stale})" if stale else "held"
        super().__init__(
            f"deploy lock of {env} {state}: {describe_lock(info)}"
            + (f"\n  -> if that deploy is dead: fab deploy.unlock --env {env}" if stale else ""),
            step="lock",
        )


# --- running commands on a host ------------------------------------------------------------------


class Runner(Protocol):
    name: str

    def run(
        self, script: str, stdin: str | None = None, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess: ...


def _finish(name: str, script: str, proc: subprocess.CompletedProcess, check: bool):
    if check and proc.returncode != 0:
        out = (proc.stdout[-1200:] + proc.stderr[-1200:]).strip()
        raise DeployError(f"`{script[:120]}` exited {proc.returncode}: {out}", host=name)
    return proc


@dataclass
class Local:
    """Runs scripts with sh on this machine (the lock and audit code paths, tested without hosts)."""

    name: str = "local"

    def run(self, script, stdin=None, check=True, timeout=600):
        proc = subprocess.run(
            ["sh", "-c", script], input=stdin, capture_output=True, text=True, timeout=timeout
        )
        return _finish(self.name, script, proc, check)


@dataclass
class Remote:
    """Runs scripts on an inventory host over ssh, with the inventory's connection variables."""

    host: Host

    @property
    def name(self) -> str:
        return self.host.name

    def argv(self, script: str) -> list[str]:
        v = self.host.vars
        args = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
        args += ["-o", "ControlMaster=auto", "-o", "ControlPersist=30"]
        args += ["-o", "ControlPath=/tmp/.fetchfleet-ssh-%C"]
        if key := v.get("ansible_ssh_private_key_file"):
            args += ["-i", str(key)]
        args += shlex.split(str(v.get("ansible_ssh_common_args", "")))
        if port := v.get("ansible_port"):
            args += ["-p", str(port)]
        return [*args, f"{v.get('ansible_user', 'root')}@{self.host.address}", script]

    def run(self, script, stdin=None, check=True, timeout=600):
        try:
            proc = subprocess.run(
                self.argv(script), input=stdin, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as err:
            raise DeployError(f"`{script[:80]}` timed out after {timeout:.0f}s", self.name) from err
        if proc.returncode == 255:
            raise DeployError(f"unreachable over ssh: {proc.stderr.strip()[-300:]}", self.name)
        return _finish(self.name, script, proc, check)


def python_on(runner: Runner, source: str, *args: str, timeout: float = 600) -> dict:
    """Run a Python program (source sent on stdin) on the host; it prints one JSON object."""
    cmd = "python3 - " + " ".join(shlex.quote(a) for a in args)
    proc = runner.run(cmd, stdin=source, timeout=timeout)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as err:
        raise DeployError(f"unexpected output: {proc.stdout[-300:]!r}", runner.name) from err


# --- release ids and which releases to keep ------------------------------------------------------


def validate_release_id(rid: str) -> str:
    if not RELEASE_ID.match(rid or ""):
        raise DeployError(
            f"{rid!r} is not a release id (YYYYMMDDTHHMMSSZ-commit, e.g. from fab releases)"
        )
    return rid


def release_ids(names: Iterable[str]) -> list[str]:
    """The release ids among directory names, oldest first (ids sort by build time)."""
    return sorted(n for n in names if RELEASE_ID.match(n))


def previous_release(installed: Iterable[str], current: str | None) -> str | None:
    """The newest installed release older than current (Capistrano's rule)."""
    older = [r for r in release_ids(installed) if current is None or r < current]
    return older[-1] if older else None


def rollback_target(installed: Iterable[str], current: str | None, to: str | None = None) -> str:
    installed = release_ids(installed)
    if to is not None:
        validate_release_id(to)
        if to not in installed:
            raise DeployError(f"release {to} is not installed (installed: {', '.join(installed)})")
        if to == current:
            raise DeployError(f"release {to} is already current")
        return to
    target = previous_release(installed, current)
    if target is None:
        raise DeployError(f"no release older than {current} is installed to roll back to")
    return target


def select_removals(
    installed: Iterable[str],
    current: str | None,
    keep: int = KEEP_RELEASES,
    also_keep: Iterable[str] = (),
) -> list[str]:
    """Releases to delete: all but the newest `keep`, never current, its previous, or also_keep."""
    if keep < 2:
        raise DeployError(f"keep must be at least 2 (current and previous), got {keep}")
    ids = release_ids(installed)
    kept = set(ids[-keep:]) | set(also_keep) | {current, previous_release(ids, current)}
    return [r for r in ids if r not in kept]


# --- planning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    env: str
    web_batches: list[list[Host]]
    workers: list[Host]
    loadbalancers: list[Host]
    lock_host: Host
    drain: bool

    @property
    def app_hosts(self) -> list[Host]:
        return [h for batch in self.web_batches for h in batch] + self.workers


def plan(fleet: Fleet, batch_size: int | None = None) -> Plan:
    web, workers = fleet.group("web"), fleet.group("workers")
    if not web:
        raise DeployError(f"inventory {fleet.name} has no host in group web")
    size = batch_size if batch_size is not None else fleet.group_vars.get("deploy_batch_size", 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise DeployError(f"deploy_batch_size must be a whole number >= 1, got {size!r}")
    if len(web) > 1 and size >= len(web):
        raise DeployError(
            f"deploy_batch_size={size} would take all {len(web)} web hosts out of the load "
            f"balancer at once; use at most {len(web) - 1}"
        )
    lock_name = fleet.group_vars.get("deploy_lock_host")
    lock_host = fleet.host(lock_name) if lock_name else web[0]
    batches = [web[i : i + size] for i in range(0, len(web), size)]
    return Plan(fleet.name, batches, workers, fleet.group("loadbalancers"), lock_host, len(web) > 1)


def app_root(host: Host) -> str:
    return str(host.vars.get("app_root", DEFAULT_APP_ROOT))


# --- the lock ------------------------------------------------------------------------------------


def who() -> str:
    return os.environ.get("FETCHFLEET_DEPLOYER") or f"{getpass.getuser()}@{socket.gethostname()}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class LockInfo:
    env: str
    who: str
    action: str
    release: str
    message: str
    control_host: str
    pid: int
    started: str
    heartbeat: str
    token: str = field(default_factory=lambda: secrets.token_hex(8))

    @classmethod
    def new(cls, env: str, action: str, release: str = "", message: str = "") -> LockInfo:
        t = now_iso()
        return cls(env, who(), action, release, message, socket.gethostname(), os.getpid(), t, t)


def describe_lock(info: LockInfo) -> str:
    what = f"{info.action} {info.release}".strip()
    msg = f' "{info.message}"' if info.message else ""
    return (
        f"{info.who} since {info.started} ({what}{msg}; pid {info.pid} on {info.control_host}, "
        f"heartbeat {info.heartbeat})"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(
    info: LockInfo,
    now: datetime | None = None,
    this_host: str | None = None,
    pid_alive: Callable[[int], bool] = _pid_alive,
    stale_after: float = STALE_AFTER,
) -> str | None:
    """Why the lock's holder is dead, or None while it looks alive."""
    if info.action == MANUAL:
        return None  # held by a person until deploy.unlock: no process, no heartbeat to miss
    now = now or datetime.now(UTC)
    this_host = this_host or socket.gethostname()
    if info.control_host == this_host and not pid_alive(info.pid):
        return f"process {info.pid} on {this_host} is gone"
    age = (now - datetime.fromisoformat(info.heartbeat)).total_seconds()
    if age > stale_after:
        return f"no heartbeat for {age:.0f}s (stale after {stale_after:.0f}s)"
    return None


@dataclass
class DeployLock:
    runner: Runner
    path: str
    env: str

    def read(self) -> LockInfo | None:
        proc = self.runner.run(f"cat {shlex.quote(self.path)} 2>/dev/null", check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            return None
        try:
            return LockInfo(**json.loads(proc.stdout))
        except (TypeError, json.JSONDecodeError) as err:
            raise DeployError(
                f"unreadable deploy lock {self.path}: {proc.stdout[:200]!r}", self.runner.name
            ) from err

    def acquire(self, info: LockInfo) -> LockInfo:
        # noclobber: the shell creates the file with O_EXCL, so exactly one of two racers wins.
        proc = self.runner.run(
            f"set -C; cat > {shlex.quote(self.path)}", stdin=json.dumps(asdict(info)), check=False
        )
        if proc.returncode == 0:
            return info
        held = self.read()
        if held is None:
            raise DeployError(
                f"cannot create the deploy lock {self.path}: {proc.stderr.strip()}",
                self.runner.name,
                "lock",
            )
        raise LockHeld(held, stale_reason(held), self.env)

    def heartbeat(self, info: LockInfo) -> None:
        held = self.read()
        if held is None or held.token != info.token:
            return
        info.heartbeat = now_iso()
        tmp = shlex.quote(self.path + ".new")
        self.runner.run(
            f"cat > {tmp} && mv -f {tmp} {shlex.quote(self.path)}", stdin=json.dumps(asdict(info))
        )

    def release(self, info: LockInfo) -> bool:
        held = self.read()
        if held is None or held.token != info.token:
            return False
        self.runner.run(f"rm -f {shlex.quote(self.path)}")
        return True

    def force_release(self) -> LockInfo | None:
        held = self.read()
        self.runner.run(f"rm -f {shlex.quote(self.path)}")
        return held


def fleet_lock(plan_: Plan) -> DeployLock:
    path = str(
        plan_.lock_host.vars.get("deploy_lock_file", f"{app_root(plan_.lock_host)}/deploy.lock")
    )
    return DeployLock(Remote(plan_.lock_host), path, plan_.env)


class Heartbeat:
    """Refreshes the lock's heartbeat in the background while a deploy runs."""

    def __init__(self, lock: DeployLock, info: LockInfo, every: float = HEARTBEAT):
        self.lock, self.info, self.every = lock, info, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            # A missed beat only brings staleness closer; the deploy goes on.
            with contextlib.suppress(DeployError):
                self.lock.heartbeat(self.info)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- audit log -----------------------------------------------------------------------------------


def audit_record(
    env: str,
    action: str,
    release: str,
    result: str,
    previous: str | None = None,
    message: str = "",
    host: str | None = None,
    seconds: float | None = None,
    detail: str = "",
) -> dict:
    record = {
        "time": now_iso(),
        "env": env,
        "who": who(),
        "action": action,
        "release": release,
        "previous": previous,
        "result": result,
        "message": message,
    }
    if host:
        record["host"] = host
    if seconds is not None:
        record["seconds"] = round(seconds, 1)
    if detail:
        record["detail"] = detail[-500:]
    return record


def append_audit(runner: Runner, path: str, record: dict) -> None:
    runner.run(f"cat >> {shlex.quote(path)}", stdin=json.dumps(record) + "\n")


def control_audit_path(env: str, directory: Path | None = None) -> Path:
    return (directory or AUDIT_DIR) / f"{env}.jsonl"


def read_audit(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def audit_everywhere(plan_: Plan, record: dict, hosts: Iterable[Host]) -> None:
    path = control_audit_path(plan_.env)
    path.parent.mkdir(parents=True, exist_ok=True)
    append_audit(Local(), str(path), record)
    _parallel(
        lambda h: append_audit(
            Remote(h), f"{app_root(h)}/revisions.log", {**record, "host": h.name}
        ),
        list(hosts),
    )


# --- building a ref ------------------------------------------------------------------------------


def resolve_ref(repo: Path, ref: str) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DeployError(f"unknown ref {ref!r} in {repo} (try: git log --oneline, git branch -a)")
    return proc.stdout.strip()


def dirty_paths(repo: Path) -> list[str]:
    """Uncommitted changes to app/, the only part of the tree a release is built from."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "app"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line[3:] for line in proc.stdout.splitlines()]


def check_clean(repo: Path, ref: str) -> None:
    if dirty := dirty_paths(repo):
        raise DeployError(
            f"the working tree has uncommitted changes ({', '.join(dirty[:5])}); commit or stash "
            f"them before deploying --ref {ref}"
        )


def build_release(
    repo: Path = REPO, ref: str | None = None, cache: Path = R.CACHE, force: bool = False
) -> R.Release:
    """The working tree's release, or REF's (built from a clean clone of that commit). Deploying a
    ref from a dirty tree is refused: the operator may think the edits are in it."""
    if ref is None:
        return R.build(repo=repo, cache=cache, force=force)
    sha = resolve_ref(repo, ref)
    check_clean(repo, ref)
    with tempfile.TemporaryDirectory(prefix="fetchfleet-ref-") as tmp:
        subprocess.run(
            ["git", "clone", "--quiet", "--shared", "--no-checkout", str(repo), tmp],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["git", "checkout", "--quiet", sha], cwd=tmp, check=True, capture_output=True
        )
        return R.build(repo=Path(tmp), cache=cache, force=force)


# --- programs on the hosts -----------------------------------------------------------------------

STATE_PY = r"""
import json, os, subprocess, sys
root = sys.argv[1]
try:
    current = os.path.basename(os.readlink(root + "/current"))
except OSError:
    current = None
rel = root + "/releases"
installed = sorted(d for d in os.listdir(rel) if os.path.exists(f"{rel}/{d}/.installed")) if os.path.isdir(rel) else []
programs = {}
out = subprocess.run(["supervisorctl", "status"], capture_output=True, text=True).stdout
for line in out.splitlines():
    parts = line.split()
    if len(parts) >= 2 and parts[0].startswith("cloudfetch-"):
        pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
        release = None
        if pid:
            try:
                env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
                release = next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"CLOUDFETCH_RELEASE=")), None)
            except OSError:
                pass
        programs[parts[0]] = {"state": parts[1], "pid": pid, "release": release}
print(json.dumps({"current": current, "installed": installed, "programs": programs}))
"""

PROBE_PY = r"""
import http.client, json, socket, sys
path = sys.argv[1]
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
out = {}
for url in ("/version", "/healthz"):
    try:
        conn = Unix("localhost")
        conn.request("GET", url)
        resp = conn.getresponse()
        out[url] = {"status": resp.status, "body": resp.read().decode(errors="replace")[:400]}
    except Exception as err:
        out[url] = {"status": 0, "body": f"{type(err).__name__}: {err}"}
print(json.dumps(out))
"""


def mark_down(config: str, address: str, down: bool) -> str:
    """The load balancer's site with `down` set or cleared on the upstream server at address."""
    import re as _re

    pattern = _re.compile(
        r"^(\s*server\s+" + _re.escape(address) + r"(?::\d+)?\b[^;]*?)(\s+down)?;", _re.M
    )
    if not pattern.search(config):
        raise ValueError(f"no upstream server {address} in the load balancer's site")
    return pattern.sub(lambda m: m.group(1) + (" down;" if down else ";"), config)


DRAIN_PY = (
    inspect.getsource(mark_down)
    + r"""
import json, os, subprocess, sys, time
site, mode, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
addresses = sys.argv[4:]
text = open(site).read()
new = text
for address in addresses:
    new = mark_down(new, address, mode == "drain")
waited = 0.0
if new != text:
    master = open("/run/nginx.pid").read().strip()
    old = subprocess.run(["pgrep", "-P", master], capture_output=True, text=True).stdout.split()
    tmp = site + ".fetchfleet"
    with open(tmp, "w") as f:
        f.write(new)
    os.chmod(tmp, os.stat(site).st_mode)
    os.replace(tmp, site)
    check = subprocess.run(["nginx", "-t", "-q"], capture_output=True, text=True)
    if check.returncode != 0:
        open(site, "w").write(text)
        print(json.dumps({"error": "nginx -t: " + check.stderr.strip()}))
        sys.exit(0)
    subprocess.run(["kill", "-HUP", master], check=True)
    # Old workers exit once their requests (and with them every request in flight to a drained
    # host) are done: then nothing reaches the drained host any more.
    t0 = time.monotonic()
    while any(os.path.exists(f"/proc/{p}") for p in old) and time.monotonic() - t0 < timeout:
        time.sleep(0.1)
    waited = time.monotonic() - t0
print(json.dumps({"changed": new != text, "waited": round(waited, 2)}))
"""
)


def _parallel(func: Callable, items: list) -> list:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(func, items))


def host_state(host: Host) -> dict:
    return python_on(Remote(host), STATE_PY, app_root(host), timeout=30)


def set_drain(plan_: Plan, hosts: list[Host], drain: bool) -> float:
    """Drain (or undrain) hosts on every load balancer; returns how long draining waited."""
    addresses = [h.address for h in hosts]
    results = _parallel(
        lambda lb: python_on(
            Remote(lb),
            DRAIN_PY,
            str(lb.vars.get("deploy_lb_site", LB_SITE)),
            "drain" if drain else "undrain",
            str(DRAIN_TIMEOUT),
            *addresses,
        ),
        plan_.loadbalancers,
    )
    for lb, res in zip(plan_.loadbalancers, results, strict=True):
        if "error" in res:
            raise DeployError(res["error"], lb.name, "drain" if drain else "undrain")
    return max((r.get("waited", 0.0) for r in results), default=0.0)


def drained_addresses(lb: Host) -> list[str]:
    site = shlex.quote(str(lb.vars.get("deploy_lb_site", LB_SITE)))
    proc = Remote(lb).run(f"grep -E '^\\s*server .* down;' {site} || true")
    return [line.split()[1].split(":")[0] for line in proc.stdout.splitlines()]


def switch_link(host: Host, release: str) -> None:
    root = app_root(host)
    target = f"{root}/releases/{release}"
    Remote(host).run(
        f"test -f {target}/.installed && ln -sfn {target} {root}/.current.new "
        f"&& mv -T {root}/.current.new {root}/current"
    )


def programs_of(host: Host, state: dict) -> list[str]:
    return sorted(state["programs"])


def restart_programs(host: Host, programs: list[str]) -> None:
    if not programs:
        raise DeployError(
            "no cloudfetch program declared to supervisor (converge web.yml)", host.name, "restart"
        )
    # The output is captured on the host first: if this control machine dies mid-restart, a closed
    # ssh pipe must not kill supervisorctl between its stop and its start.
    # stop, then start, judged by start alone: on a first deploy the programs are not running,
    # and `supervisorctl restart` then says "ERROR (not running)" and exits 1 though it started
    # them. A program that fails to come up still shows as an ERROR from start.
    names = " ".join(shlex.quote(p) for p in programs)
    proc = Remote(host).run(
        f"out=$( (supervisorctl stop {names} >/dev/null 2>&1; supervisorctl start {names}) 2>&1);"
        f' rc=$?; echo "$out"; exit $rc',
        check=False,
        timeout=700,
    )
    if proc.returncode != 0 or "ERROR" in proc.stdout:
        raise DeployError(
            f"supervisorctl stop/start: {proc.stdout.strip()} {proc.stderr.strip()}",
            host.name,
            "restart",
            last_log(host),
        )


def is_web(host: Host) -> bool:
    return "web" in host.groups


def last_log(host: Host, lines: int = 15) -> str:
    log_dir = host.vars.get("app_log_dir", DEFAULT_LOG_DIR)
    name = "gunicorn.log" if is_web(host) else "celery-worker.log"
    proc = Remote(host).run(f"tail -n {lines} {log_dir}/{name}", check=False, timeout=20)
    return proc.stdout.strip()


def gate(
    host: Host, release: str, timeout: float = HEALTH_TIMEOUT, grace: float = HEALTH_GRACE
) -> dict:
    """Wait until the host runs `release` and is healthy; raise with what was seen otherwise."""
    t0 = time.monotonic()
    seen: dict = {}
    since_version: float | None = None
    sock = str(host.vars.get("app_gunicorn_socket", DEFAULT_SOCKET))
    while True:
        if is_web(host):
            seen = python_on(Remote(host), PROBE_PY, sock, timeout=30)
            try:
                running = json.loads(seen["/version"]["body"]).get("release")
            except (json.JSONDecodeError, AttributeError):
                running = None
            healthy = seen["/healthz"]["status"] == 200
        else:
            state = host_state(host)
            seen = state["programs"]
            running = (
                release if seen and all(p["release"] == release for p in seen.values()) else None
            )
            healthy = bool(seen) and all(p["state"] == "RUNNING" for p in seen.values())
        if running == release:
            since_version = since_version or time.monotonic()
            if healthy:
                return seen
            if time.monotonic() - since_version > grace:
                raise DeployError(
                    f"runs {release} but is not healthy: {seen}",
                    host.name,
                    "health",
                    last_log(host),
                )
        if time.monotonic() - t0 > timeout:
            raise DeployError(
                f"did not report release {release} within {timeout:.0f}s: {seen}",
                host.name,
                "health",
                last_log(host),
            )
        time.sleep(0.5)


# --- the rolling switch --------------------------------------------------------------------------


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


Progress = Callable[[str], None]


class _Clock:
    def __init__(self, out: Progress):
        self.t0, self.out = time.monotonic(), out

    def say(self, msg: str, host: str | None = None) -> None:
        self.out(f"[{time.monotonic() - self.t0:6.1f}s] {host + ': ' if host else ''}{msg}")


def _timed(steps: dict[str, float], name: str, func: Callable, *args):
    t0 = time.monotonic()
    try:
        return func(*args)
    finally:
        steps[name] = steps.get(name, 0.0) + time.monotonic() - t0


def _switch_host(
    host: Host, res: HostResult, release: str, programs: list[str], clock: _Clock
) -> None:
    clock.say(f"switch {res.before} -> {release}", host.name)
    if res.before != release:
        _timed(res.steps, "switch", switch_link, host, release)
    res.after = release
    _timed(res.steps, "restart", restart_programs, host, programs)
    _timed(res.steps, "gate", gate, host, release)
    clock.say(f"healthy on {release} ({sum(res.steps.values()):.1f}s)", host.name)


def roll(
    plan_: Plan,
    targets: dict[str, str],
    states: dict[str, dict],
    results: dict[str, HostResult],
    clock: _Clock,
    on_batch: Callable[[], None] = lambda: None,
) -> None:
    """Switch (or restart) every app host to targets[host], batch by batch. Raises DeployError on
    the first failure; results[host].after tells which hosts were switched."""
    for batch in plan_.web_batches:
        names = ", ".join(h.name for h in batch)
        if plan_.drain:
            clock.say(f"drain {names} on the load balancer")
            waited = _timed(results[batch[0].name].steps, "drain", set_drain, plan_, batch, True)
            for h in batch[1:]:
                results[h.name].steps["drain"] = results[batch[0].name].steps["drain"]
            clock.say(f"drained {names} (in-flight requests done after {waited:.1f}s)")
        _parallel(
            lambda h: _switch_host(
                h, results[h.name], targets[h.name], programs_of(h, states[h.name]), clock
            ),
            batch,
        )
        for h in batch:
            results[h.name].result = "ok"
        if plan_.drain:
            _timed(results[batch[0].name].steps, "undrain", set_drain, plan_, batch, False)
            clock.say(f"{names} back in the load balancer")
        on_batch()
    if plan_.workers:
        _parallel(
            lambda h: _switch_host(
                h, results[h.name], targets[h.name], programs_of(h, states[h.name]), clock
            ),
            plan_.workers,
        )
        for h in plan_.workers:
            results[h.name].result = "ok"


def roll_back(
    plan_: Plan, results: dict[str, HostResult], states: dict[str, dict], clock: _Clock
) -> list[str]:
    """Every switched host back to the release it ran before; returns problems (best effort)."""
    problems: list[str] = []
    by_name = {h.name: h for h in plan_.app_hosts}
    switched = [
        by_name[n] for n, r in results.items() if r.after and r.after != r.before and r.before
    ]
    web = [h for h in switched if is_web(h)]
    if plan_.drain and web:
        try:
            set_drain(plan_, web, True)
        except DeployError as err:
            problems.append(str(err))

    def back(h: Host) -> None:
        res = results[h.name]
        try:
            clock.say(f"roll back to {res.before}", h.name)
            _timed(res.steps, "rollback", _back, h, res.before, programs_of(h, states[h.name]))
            res.after, res.result = res.before, "rolled back"
        except DeployError as err:
            res.result = "ROLLBACK FAILED"
            problems.append(str(err))

    _parallel(back, switched)
    if plan_.drain:
        try:
            set_drain(plan_, [h for b in plan_.web_batches for h in b], False)
        except DeployError as err:
            problems.append(str(err))
    return problems


def _back(host: Host, release: str, programs: list[str]) -> None:
    switch_link(host, release)
    restart_programs(host, programs)
    gate(host, release)


def preflight(plan_: Plan, clock: _Clock) -> dict[str, dict]:
    """Every app host answers and has the app's runtime; load balancers answer. Nothing changes."""
    hosts = plan_.app_hosts

    def check(h: Host) -> tuple[str, dict | DeployError]:
        try:
            return h.name, host_state(h)
        except DeployError as err:
            return h.name, err

    states = dict(_parallel(check, hosts))
    errors = [f"{n}: {s}" for n, s in states.items() if isinstance(s, DeployError)]
    for lb in plan_.loadbalancers:
        try:
            Remote(lb).run("true", timeout=20)
        except DeployError as err:
            errors.append(str(err))
    if errors:
        raise DeployError(
            "hosts not ready, nothing was changed:\n  " + "\n  ".join(errors), step="preflight"
        )
    clock.say("preflight: " + ", ".join(f"{n} on {s['current']}" for n, s in states.items()))
    return states  # type: ignore[return-value]


def _run_switch(
    action: str,
    plan_: Plan,
    release: str,
    targets: dict[str, str],
    states: dict[str, dict],
    report: Report,
    clock: _Clock,
    lock: DeployLock,
    info: LockInfo,
) -> None:
    results = {
        h.name: HostResult(h.name, "web" if is_web(h) else "worker", states[h.name]["current"])
        for h in plan_.app_hosts
    }
    report.hosts = list(results.values())
    t0 = time.monotonic()
    try:
        roll(plan_, targets, states, results, clock, on_batch=lambda: lock.heartbeat(info))
    except DeployError as err:
        report.steps["switch"] = time.monotonic() - t0
        clock.say(f"FAILED: {err}")
        failed = err.host
        if failed in results:
            results[failed].result = f"FAILED at {err.step}"
        clock.say("rolling every switched host back")
        t1 = time.monotonic()
        problems = roll_back(plan_, results, states, clock)
        report.steps["auto-rollback"] = time.monotonic() - t1
        report.result = "rolled back" if not problems else "ROLLBACK INCOMPLETE"
        report.error = str(err) + ("\n" + "\n".join(problems) if problems else "")
        raise DeployError(
            f"{action} of {release} failed and was rolled back"
            + ("" if not problems else " INCOMPLETELY: " + "; ".join(problems)),
            err.host,
            err.step,
            err.log,
        ) from err
    report.steps["switch"] = time.monotonic() - t0


def _finish_report(
    report: Report, plan_: Plan, t0: float, previous: str | None, message: str
) -> None:
    report.seconds = time.monotonic() - t0
    record = audit_record(
        plan_.env,
        report.action,
        report.release,
        report.result,
        previous,
        message,
        seconds=report.seconds,
        detail=report.error,
    )
    _audit(plan_, record)


def _audit(plan_: Plan, record: dict) -> None:
    """On the control machine always; on the app hosts when they answer."""
    try:
        audit_everywhere(plan_, record, plan_.app_hosts)
    except DeployError:
        append_audit(
            Local(), str(control_audit_path(plan_.env)), {**record, "audit": "hosts unreachable"}
        )


def _locked(plan_: Plan, action: str, release: str, message: str) -> tuple[DeployLock, LockInfo]:
    """Take the environment's lock; a refusal is itself audited (who tried what while whom held it)."""
    lock = fleet_lock(plan_)
    try:
        info = lock.acquire(LockInfo.new(plan_.env, action, release, message))
    except LockHeld as err:
        detail = f"lock {'STALE' if err.stale else 'held'}: {describe_lock(err.info)}"
        _audit(
            plan_, audit_record(plan_.env, action, release, "refused", None, message, detail=detail)
        )
        raise
    return lock, info


def undrain_all(plan_: Plan) -> list[str]:
    """Hosts left drained (an interrupted deploy) go back into the load balancers."""
    left = sorted({a for lb in plan_.loadbalancers for a in drained_addresses(lb)})
    hosts = [h for b in plan_.web_batches for h in b if h.address in left]
    if hosts:
        set_drain(plan_, hosts, False)
    return [h.name for h in hosts]


def deploy(
    env: str = "lab",
    ref: str | None = None,
    message: str = "",
    repo: Path = REPO,
    force_build: bool = False,
    batch_size: int | None = None,
    keep: int = KEEP_RELEASES,
    out: Progress = print,
) -> Report:
    clock = _Clock(out)
    t0 = time.monotonic()
    fleet = load_fleet(env)
    plan_ = plan(fleet, batch_size)
    if ref is not None:
        resolve_ref(repo, ref)
        check_clean(repo, ref)
    states = preflight(plan_, clock)
    lock, info = _locked(plan_, "deploy", ref or "working tree", message)
    report = Report(env, "deploy", "")
    previous = states[plan_.app_hosts[0].name]["current"]
    try:
        with Heartbeat(lock, info):
            left = undrain_all(plan_)
            if left:
                clock.say(f"{', '.join(left)} were left drained by an interrupted run: back in")
            clock.say(f"build {ref or 'the working tree'}")
            rel = _timed(report.steps, "build", build_release, repo, ref, R.CACHE, force_build)
            report.release = info.release = rel.id
            clock.say(
                f"release {rel.id} ({'cached' if rel.reused else f'built in {rel.build_seconds}s'})"
            )
            lock.heartbeat(info)
            clock.say(
                "ship, install offline on every app host, migrate once (playbooks/release-install.yml)"
            )
            report.steps.update(install(env, rel))
            targets = {h.name: rel.id for h in plan_.app_hosts}
            _run_switch("deploy", plan_, rel.id, targets, states, report, clock, lock, info)
            _timed(report.steps, "cleanup", cleanup, plan_, keep, states)
    except DeployError as err:
        if report.result == "ok":
            report.result, report.error = "failed", str(err)
        raise
    finally:
        _finish_report(report, plan_, t0, previous, message)
        lock.release(info)
    return report


# Which of release-install.yml's tasks (roles/app install and migrate) make which deploy step.
INSTALL_STEPS = {
    "Unpack the release artifact": "ship",
    "Create the release's virtualenv": "venv",
    "Install the app and its pinned dependencies": "venv",
    "Migrate the database once": "migrate",
}


def install_steps(task_seconds: dict[str, float], total: float) -> dict[str, float]:
    """ship / venv / migrate seconds out of a profiled release-install.yml run; the rest of the
    run (facts, checks, Ansible's own start) is "install other"."""
    steps = {"ship": 0.0, "venv": 0.0, "migrate": 0.0}
    for task, seconds in task_seconds.items():
        name = task.split(" : ", 1)[-1]
        step = next((s for prefix, s in INSTALL_STEPS.items() if name.startswith(prefix)), None)
        if step:
            steps[step] += seconds
    steps["install other"] = max(0.0, total - sum(steps.values()))
    return steps


def install(env: str, rel: R.Release) -> dict[str, float]:
    """Ship, install and migrate (playbooks/release-install.yml); returns the seconds per step."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="release-") as f:
        json.dump({"app_release": asdict(rel)}, f)
        f.flush()
        recap = run_playbook(
            "release-install.yml", env=env, extra=["-e", f"@{f.name}"], echo=False, profile=True
        )
    if not recap.ok:
        failed = [n for n, c in recap.hosts.items() if c.get("failed") or c.get("unreachable")]
        tail = "\n".join(
            line for line in recap.output.splitlines() if "fatal:" in line or "msg" in line
        )[-1500:]
        raise DeployError(
            f"install failed (nothing was switched): {tail}", ",".join(failed) or None, "install"
        )
    return install_steps(recap.task_seconds, recap.seconds)


def cleanup(plan_: Plan, keep: int, states: dict[str, dict]) -> dict[str, list[str]]:
    def one(h: Host) -> tuple[str, list[str]]:
        state = host_state(h)
        doomed = select_removals(
            state["installed"], state["current"], keep, [states[h.name]["current"] or ""]
        )
        if doomed:
            rel = f"{app_root(h)}/releases/"
            Remote(h).run("rm -rf " + " ".join(shlex.quote(rel + r) for r in doomed))
        return h.name, doomed

    return dict(_parallel(one, plan_.app_hosts))


def rollback(
    env: str = "lab", to: str | None = None, message: str = "", out: Progress = print
) -> Report:
    clock = _Clock(out)
    t0 = time.monotonic()
    plan_ = plan(load_fleet(env))
    if to is not None:
        validate_release_id(to)
    states = preflight(plan_, clock)
    first = plan_.app_hosts[0].name
    target = rollback_target(states[first]["installed"], states[first]["current"], to)
    missing = [n for n, s in states.items() if target not in s["installed"]]
    if missing:
        raise DeployError(
            f"release {target} is not installed on {', '.join(missing)}", step="preflight"
        )
    lock, info = _locked(plan_, "rollback", target, message)
    report = Report(env, "rollback", target)
    try:
        with Heartbeat(lock, info):
            undrain_all(plan_)
            _run_switch(
                "rollback",
                plan_,
                target,
                dict.fromkeys(states, target),
                states,
                report,
                clock,
                lock,
                info,
            )
    except DeployError as err:
        if report.result == "ok":
            report.result, report.error = "failed", str(err)
        raise
    finally:
        _finish_report(report, plan_, t0, states[first]["current"], message)
        lock.release(info)
    return report


def restart(env: str = "lab", message: str = "", out: Progress = print) -> Report:
    """Rolling restart of the current release, drained and health-gated like a deploy."""
    clock = _Clock(out)
    t0 = time.monotonic()
    plan_ = plan(load_fleet(env))
    states = preflight(plan_, clock)
    none = [n for n, s in states.items() if not s["current"]]
    if none:
        raise DeployError(f"no release deployed on {', '.join(none)}", step="preflight")
    targets = {n: s["current"] for n, s in states.items()}
    lock, info = _locked(plan_, "restart", "", message)
    report = Report(env, "restart", ",".join(sorted(set(targets.values()))))
    try:
        with Heartbeat(lock, info):
            undrain_all(plan_)
            _run_switch(
                "restart", plan_, report.release, targets, states, report, clock, lock, info
            )
    finally:
        _finish_report(report, plan_, t0, None, message)
        lock.release(info)
    return report


# --- read-only views -----------------------------------------------------------------------------


def status(env: str = "lab") -> list[dict]:
    plan_ = plan(load_fleet(env))
    drained = {
        a for lb in plan_.loadbalancers for a in _safe(lambda lb=lb: drained_addresses(lb), [])
    }

    def one(h: Host) -> dict:
        try:
            state = host_state(h)
        except DeployError as err:
            return {
                "host": h.name,
                "release": "?",
                "health": f"unreachable: {err.what[:60]}",
                "processes": "",
                "lb": "",
            }
        health = ""
        if is_web(h):
            probe = python_on(
                Remote(h),
                PROBE_PY,
                str(h.vars.get("app_gunicorn_socket", DEFAULT_SOCKET)),
                timeout=30,
            )
            health = str(probe["/healthz"]["status"] or probe["/healthz"]["body"][:40])
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                health += " " + json.loads(probe["/healthz"]["body"]).get("status", "")
        procs = " ".join(
            f"{n.removeprefix('cloudfetch-')}={p['state']}"
            + ("" if p["release"] in (None, state["current"]) else f"({p['release']})")
            for n, p in state["programs"].items()
        )
        lb = ("drained" if h.address in drained else "in") if is_web(h) and plan_.drain else ""
        return {
            "host": h.name,
            "release": state["current"] or "-",
            "health": health.strip() or "-",
            "processes": procs,
            "lb": lb,
        }

    return _parallel(one, plan_.app_hosts)


def _safe(func: Callable, default):
    try:
        return func()
    except DeployError:
        return default


def installed_releases(env: str = "lab") -> list[dict]:
    plan_ = plan(load_fleet(env))
    states = _parallel(lambda h: (h.name, host_state(h)), plan_.app_hosts)
    rows = []
    for name, st in states:
        prev = previous_release(st["installed"], st["current"])
        for rid in reversed(st["installed"]):
            mark = "current" if rid == st["current"] else ("previous" if rid == prev else "")
            rows.append({"host": name, "release": rid, "": mark})
    return rows


def lock_status(env: str = "lab") -> tuple[LockInfo | None, str | None]:
    lock = fleet_lock(plan(load_fleet(env)))
    info = lock.read()
    return info, (stale_reason(info) if info else None)


def hold_lock(env: str, message: str) -> LockInfo:
    """`fab deploy.lock`: hold the lock by hand (e.g. during an incident) until deploy.unlock;
    never reported stale."""
    plan_ = plan(load_fleet(env))
    info = LockInfo.new(env, MANUAL, "", message)
    info.pid = 0
    return fleet_lock(plan_).acquire(info)


def unlock(env: str) -> LockInfo | None:
    plan_ = plan(load_fleet(env))
    held = fleet_lock(plan_).force_release()
    if held:
        record = audit_record(
            env, "unlock", held.release, "ok", message=f"lock of {describe_lock(held)} removed"
        )
        audit_everywhere(plan_, record, [])
    return held


def maintenance(env: str, on: bool) -> list[str]:
    plan_ = plan(load_fleet(env))
    if not plan_.loadbalancers:
        raise DeployError(f"inventory {env} has no loadbalancers")

    def one(lb: Host) -> str:
        flag = shlex.quote(str(lb.vars.get("nginx_maintenance_flag", DEFAULT_MAINTENANCE_FLAG)))
        Remote(lb).run(f"touch {flag}" if on else f"rm -f {flag}")
        return lb.name

    names = _parallel(one, plan_.loadbalancers)
    audit_everywhere(
        plan_, audit_record(env, "maintenance " + ("on" if on else "off"), "", "ok"), []
    )
    return names


# --- output --------------------------------------------------------------------------------------


def table(rows: list[dict]) -> str:
    if not rows:
        return "(nothing)"
    cols = list(rows[0])
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


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
