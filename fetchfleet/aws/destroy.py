"""Remove an environment from EC2: every instance and security group carrying its tag.

Refused, before any API call, unless the environment's name is typed back; refused for a
production environment (declared `aws_production: true`, or any of its resources tagged so)
unless `production` is passed as well. The offsite backups' bucket is never touched: backups
outlive the fleet they came from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fetchfleet.aws import AwsError
from fetchfleet.aws.ec2 import Actual, calling, ec2_client, shutting_down, snapshot
from fetchfleet.aws.spec import PRODUCTION_TAG, Target, load_target
from fetchfleet.output import Clock, Progress, table

_WAIT = {"Delay": 2, "MaxAttempts": 300}  # up to 10 minutes


class DestroyRefused(AwsError):
    """Nothing was destroyed: the confirmation or the production flag is missing."""


@dataclass
class DestroyReport:
    environment: str
    rows: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        return table(self.rows)


def preview(env: str) -> tuple[Target, Actual]:
    """What destroy would remove (for the prompt)."""
    target = load_target(env)
    return target, snapshot(ec2_client(target), target)


def destroy(
    env: str, confirm: str, production: bool = False, out: Progress | None = None
) -> DestroyReport:
    target = load_target(env)
    if confirm != target.environment:
        raise DestroyRefused(
            f"destroy {target.environment}: the confirmation {confirm!r} is not the environment's "
            f"name; nothing was destroyed (type {target.environment!r} to confirm)"
        )
    if target.production and not production:
        raise DestroyRefused(_production(target, "is declared production (aws_production: true)"))
    ec2 = ec2_client(target)
    actual = snapshot(ec2, target)
    tagged = [i.name for i in actual.instances if i.tags.get(PRODUCTION_TAG) == "true"]
    tagged += [g.name for g in actual.groups.values() if g.tags.get(PRODUCTION_TAG) == "true"]
    if tagged and not production:
        raise DestroyRefused(
            _production(target, f"has resources tagged production: {', '.join(tagged)}")
        )
    clock = Clock(out)
    report = DestroyReport(target.environment)
    t0 = time.monotonic()
    with calling("terminating the instances", target):
        ids = [i.id for i in actual.instances]
        if ids:
            ec2.terminate_instances(InstanceIds=ids)
            clock.say(f"terminating {len(ids)} instance(s)")
        # Also those an earlier apply or destroy left terminating: they still hold their groups.
        waiting = sorted(set(ids) | set(shutting_down(ec2, target)))
        if waiting:
            ec2.get_waiter("instance_terminated").wait(InstanceIds=waiting, WaiterConfig=_WAIT)
        for instance in actual.instances:
            clock.say(f"terminated {instance.id}", instance.name)
            report.rows.append(_row(instance.name, instance.id, t0))
    # Rules first: a group another group's rule refers to cannot be deleted.
    with calling("revoking the security groups' rules", target):
        for group in actual.groups.values():
            if group.rules:
                ec2.revoke_security_group_ingress(
                    GroupId=group.id, SecurityGroupRuleIds=[r.id for r in group.rules]
                )
    for group in actual.groups.values():
        t0 = time.monotonic()
        with calling(f"deleting security group {group.name}", target):
            ec2.delete_security_group(GroupId=group.id)
        clock.say(f"deleted {group.id}", group.name)
        report.rows.append(_row(group.name, group.id, t0))
    report.seconds = clock.elapsed()
    clock.say(
        f"{target.environment}: destroyed {len(actual.instances)} instance(s) and "
        f"{len(actual.groups)} security group(s) in {report.seconds:.1f}s; the offsite backups' "
        "bucket is kept"
    )
    return report


def _production(target: Target, why: str) -> str:
    return (
        f"destroy {target.environment}: it {why}; nothing was destroyed\n"
        f"  -> if you really mean it: fab aws.destroy --env {target.inventory.name} --production"
    )


def _row(what: str, ident: str, t0: float) -> dict[str, str]:
    return {
        "what": what,
        "id": ident,
        "action": "destroyed",
        "seconds": f"{time.monotonic() - t0:.1f}",
    }
