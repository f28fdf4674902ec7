"""`fab deploy` and friends: build once, install everywhere, switch batch by batch behind a gate.

The pieces: `fetchfleet.release` builds (or reuses) the release artifact on the control machine;
`playbooks/release-install.yml` (roles/app's `install` and `migrate` steps) ships it to every app
host in parallel, installs it offline into `releases/<id>` and migrates once (nothing live has
changed then). The rollout then switches one batch of web hosts at a time (`deploy_batch_size`,
default 1): drain on the load balancers until every request in flight to the batch is done, switch
`current` (an atomic rename), restart, gate (`/version` names the new release, `/healthz` 200),
undrain; the workers last. A failed gate sends every switched host back. One lock per environment
(shared with converges), an audit record per action.

Modules, one job each: `plan` (who takes part), `lock`, `audit`, `releases` (ids, rollback target,
keep-N), `build` (working tree or a ref), `install`, `hosts` (the steps on hosts, over one
injectable connect), `rollout` (the rolling switch and its rollback), `actions` (the locked-action
skeleton: deploy, rollback, restart), `converge`, `views` (status, releases, lock, maintenance,
drain, the summary table).
"""

from fetchfleet.deploy.actions import (
    Deploy,
    Restart,
    Rollback,
    deploy,
    discard_release,
    fleet_lock,
    holding,
    restart,
    rollback,
)
from fetchfleet.deploy.audit import (
    AUDIT_DIR,
    append_audit,
    audit,
    audit_record,
    control_audit_path,
    read_audit,
)
from fetchfleet.deploy.build import build_release, check_clean, resolve_ref
from fetchfleet.deploy.converge import converge
from fetchfleet.deploy.errors import DeployError
from fetchfleet.deploy.hosts import LB_UPSTREAM, Hosts, is_web
from fetchfleet.deploy.install import INSTALL_STEPS, install, install_steps
from fetchfleet.deploy.lock import (
    MANUAL,
    STALE_AFTER,
    DeployLock,
    Heartbeat,
    LockHeld,
    LockInfo,
    describe_lock,
    stale_reason,
)
from fetchfleet.deploy.plan import Plan, plan
from fetchfleet.deploy.releases import (
    KEEP_RELEASES,
    previous_release,
    release_ids,
    rollback_target,
    select_removals,
    validate_release_id,
)
from fetchfleet.deploy.rollout import HostResult, Report, Rollout, preflight
from fetchfleet.deploy.views import (
    drain,
    hold_lock,
    installed_releases,
    lock_status,
    maintenance,
    status,
    summary,
    unlock,
)
from fetchfleet.output import table

__all__ = [
    "AUDIT_DIR",
    "INSTALL_STEPS",
    "KEEP_RELEASES",
    "LB_UPSTREAM",
    "MANUAL",
    "STALE_AFTER",
    "Deploy",
    "DeployError",
    "DeployLock",
    "Heartbeat",
    "HostResult",
    "Hosts",
    "LockHeld",
    "LockInfo",
    "Plan",
    "Report",
    "Restart",
    "Rollback",
    "Rollout",
    "append_audit",
    "audit",
    "audit_record",
    "build_release",
    "check_clean",
    "control_audit_path",
    "converge",
    "deploy",
    "describe_lock",
    "discard_release",
    "drain",
    "fleet_lock",
    "hold_lock",
    "holding",
    "install",
    "install_steps",
    "installed_releases",
    "is_web",
    "lock_status",
    "maintenance",
    "plan",
    "preflight",
    "previous_release",
    "read_audit",
    "release_ids",
    "resolve_ref",
    "restart",
    "rollback",
    "rollback_target",
    "select_removals",
    "stale_reason",
    "status",
    "summary",
    "table",
    "unlock",
    "validate_release_id",
]
