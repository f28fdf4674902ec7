"""Who takes part in an action: batches of web hosts, the workers, the load balancers, the lock
host, all from the inventory's groups (`web`, `workers`, `loadbalancers`) and its deploy settings
(`deploy_batch_size`, `deploy_lock_host`, `deploy_lock_file` in group_vars/all)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from fetchfleet.deploy.errors import DeployError
from fetchfleet.deploy.lock import DEFAULT_LOCK_FILE
from fetchfleet.inventory import Fleet, Host


@dataclass(frozen=True)
class Plan:
    env: str
    web_batches: list[list[Host]]
    workers: list[Host]
    loadbalancers: list[Host]
    lock_host: Host
    lock_file: str
    drain: bool

    @property
    def web(self) -> list[Host]:
        return [h for batch in self.web_batches for h in batch]

    @property
    def app_hosts(self) -> list[Host]:
        return self.web + self.workers

    def only(self, names: set[str]) -> Plan:
        """The same plan for some of its app hosts (draining as the whole fleet would)."""
        batches = [b for b in ([h for h in b if h.name in names] for b in self.web_batches) if b]
        workers = [h for h in self.workers if h.name in names]
        return replace(self, web_batches=batches, workers=workers)


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
    lock_file = str(fleet.group_vars.get("deploy_lock_file", DEFAULT_LOCK_FILE))
    batches = [web[i : i + size] for i in range(0, len(web), size)]
    return Plan(
        fleet.name,
        batches,
        workers,
        fleet.group("loadbalancers"),
        lock_host,
        lock_file,
        len(web) > 1,
    )
