"""Make EC2 match the declaration: the plan, carried out step by step, then checked.

Order: security groups first (instances are launched into them), surplus instances terminated,
missing ones launched, in-place changes, then, once every instance runs and has its address,
the security groups' rules (a rule "from host H" needs H's address), and last the security
groups no tier declares any more. A plan with nothing to do sends no write call at all.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fetchfleet.aws import AwsError
from fetchfleet.aws.ec2 import calling, shutting_down, snapshot
from fetchfleet.aws.firewall import Rule
from fetchfleet.aws.plan import Plan, RuleChange, Update, diff, instance_tags, plan
from fetchfleet.aws.security_groups import group_name, to_aws
from fetchfleet.aws.spec import Spec, Tier
from fetchfleet.output import Clock, Progress, table

_WAIT = {"Delay": 2, "MaxAttempts": 300}  # up to 10 minutes


@dataclass
class ApplyReport:
    environment: str
    changed: bool
    summary: str
    rules: dict[str, list[Rule]]  # the roles' firewall rules the security groups were made from
    rows: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> str:
        return table(self.rows)


def apply(
    env: str, restart: bool = False, out: Progress | None = None, replace: tuple[str, ...] = ()
) -> ApplyReport:
    """Carry out `fab aws.plan`'s changes; `restart` allows stopping instances to change their
    type; hosts in `replace` are terminated and launched anew."""
    clock = Clock(out)
    the_plan, ec2 = plan(env, out=clock.out, replace=replace)
    spec = the_plan.spec
    report = ApplyReport(
        spec.target.environment, bool(the_plan.changes), the_plan.summary(), the_plan.rules
    )
    for line in the_plan.lines():
        clock.say(line)
    if not the_plan.changes:
        clock.say(report.summary)
        return report
    restarts = [u for u in the_plan.updates if u.kind == "instance_type"]
    if restarts and not restart:
        hosts = ", ".join(f"{u.instance.name} ({u.before} -> {u.after})" for u in restarts)
        raise AwsError(
            f"changing an instance type stops and starts the instance: {hosts}; nothing was "
            "changed\n  -> run `fab aws.apply --restart` to allow it (one instance at a time)"
        )
    clock.say(the_plan.summary())
    ids = the_plan.actual.ids()
    rows = report.rows
    _create_groups(ec2, spec, the_plan.groups_create, ids, clock, rows)
    _terminate(ec2, the_plan, clock, rows)
    launched = _launch(ec2, the_plan, ids, clock, rows)
    for update in the_plan.updates:
        _update(ec2, spec, update, ids, clock, rows)
    if launched:
        clock.say(f"waiting for {len(launched)} instance(s) to run")
        with calling("waiting for instances to run", spec.target):
            ec2.get_waiter("instance_running").wait(InstanceIds=launched, WaiterConfig=_WAIT)
    # Addresses are known now: the rules, against what EC2 has at this point.
    after = diff(spec, snapshot(ec2, spec.target), the_plan.rules)
    _rules(ec2, spec, after.rules_add, after.rules_remove, after.actual.ids(), clock, rows)
    if after.groups_delete:
        _delete_groups(ec2, spec, after, clock, rows)
    final = diff(spec, snapshot(ec2, spec.target), the_plan.rules)
    if final.changes:
        raise AwsError(
            "apply finished, but EC2 still differs from the declaration:\n"
            + "\n".join("  " + line for line in final.lines())
            + "\n  -> `fab aws.plan` shows it; run `fab aws.apply` again"
        )
    report.seconds = clock.elapsed()
    clock.say(
        f"{spec.target.environment}: applied in {report.seconds:.1f}s; EC2 matches the declaration"
    )
    return report


def _create_groups(
    ec2: Any, spec: Spec, tiers: list[str], ids: dict[str, str], clock: Clock, rows: list
) -> None:
    for tier in tiers:
        name = group_name(spec.target.environment, tier)
        t0 = time.monotonic()
        tags = [{"Key": k, "Value": v} for k, v in {"Name": name, **spec.target.tags}.items()]
        with calling(f"creating security group {name}", spec.target):
            created = ec2.create_security_group(
                GroupName=name,
                # AWS allows few characters here (no quotes): a-z, 0-9, spaces and ._-:/()#,@[]+=&;{}!$*
                Description=f"fetchfleet {spec.target.environment} tier {tier}: inbound rules from the roles firewall data",
                VpcId=spec.vpc,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
            )
        ids[name] = created["GroupId"]
        clock.say(f"security group created ({ids[name]})", name)
        rows.append(_row(name, "created", ids[name], "", t0))


def _terminate(ec2: Any, the_plan: Plan, clock: Clock, rows: list) -> None:
    if not the_plan.terminates:
        return
    t0 = time.monotonic()
    ids = [t.instance.id for t in the_plan.terminates]
    with calling(f"terminating {', '.join(ids)}", the_plan.spec.target):
        ec2.terminate_instances(InstanceIds=ids)
    for item in the_plan.terminates:
        clock.say(f"terminating {item.instance.id}: {item.why}", item.instance.name)
        rows.append(_row(item.instance.name, "terminated", item.instance.id, item.why, t0))


def _launch(ec2: Any, the_plan: Plan, ids: dict[str, str], clock: Clock, rows: list) -> list[str]:
    spec = the_plan.spec
    # One token per host and apply: boto3's own retries of a timed-out call never launch twice.
    run = uuid.uuid4().hex[:12]
    launched = []
    for item in the_plan.creates:
        t0 = time.monotonic()
        kwargs = launch_arguments(spec, item.host, item.tier, the_plan.roots, ids)
        kwargs["ClientToken"] = f"fetchfleet-{run}-{item.host}"[:64]
        with calling(f"launching {item.host}", spec.target):
            instance = ec2.run_instances(**kwargs)["Instances"][0]
        launched.append(instance["InstanceId"])
        clock.say(f"launched {instance['InstanceId']} ({item.tier.instance_type})", item.host)
        rows.append(_row(item.host, "created", instance["InstanceId"], item.tier.instance_type, t0))
    return launched


def launch_arguments(
    spec: Spec, host: str, tier: Tier, roots: dict[str, str], ids: dict[str, str]
) -> dict[str, Any]:
    """run_instances' arguments for one declared host."""
    tags = [{"Key": k, "Value": v} for k, v in instance_tags(spec, host, tier).items()]
    group = ids[group_name(spec.target.environment, tier.name)]
    kwargs: dict[str, Any] = {
        "ImageId": tier.image,
        "InstanceType": tier.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "BlockDeviceMappings": [
            {
                "DeviceName": roots[tier.image],
                "Ebs": {
                    "VolumeSize": tier.volume_size,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
        # IMDSv2 only: a request forged through the app cannot read the instance's credentials.
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
    }
    if tier.public_ip:
        kwargs["NetworkInterfaces"] = [
            {
                "DeviceIndex": 0,
                "SubnetId": tier.subnet,
                "Groups": [group],
                "AssociatePublicIpAddress": True,
            }
        ]
    else:
        kwargs["SubnetId"] = tier.subnet
        kwargs["SecurityGroupIds"] = [group]
    if spec.key_name:
        kwargs["KeyName"] = spec.key_name
    if tier.instance_profile:
        kwargs["IamInstanceProfile"] = {"Name": tier.instance_profile}
    return kwargs


def _update(
    ec2: Any, spec: Spec, update: Update, ids: dict[str, str], clock: Clock, rows: list
) -> None:
    instance = update.instance
    t0 = time.monotonic()
    with calling(f"changing {update.kind} of {instance.name}", spec.target):
        if update.kind == "tags":
            want = update.value
            ec2.create_tags(
                Resources=[instance.id], Tags=[{"Key": k, "Value": v} for k, v in want.items()]
            )
            stale = [k for k in instance.tags if k.startswith("fetchfleet:") and k not in want]
            if stale:
                ec2.delete_tags(Resources=[instance.id], Tags=[{"Key": k} for k in stale])
        elif update.kind == "security_groups":
            ec2.modify_network_interface_attribute(
                NetworkInterfaceId=instance.interface, Groups=[ids[update.value]]
            )
        elif update.kind == "volume":
            ec2.modify_volume(VolumeId=instance.volume_id, Size=update.value)
        elif update.kind == "instance_type":
            # A stopped instance stays stopped: someone stopped it, apply only changes its type.
            running = instance.state != "stopped"
            if running:
                clock.say(f"stopping to change its type to {update.value}", instance.name)
                ec2.stop_instances(InstanceIds=[instance.id])
                ec2.get_waiter("instance_stopped").wait(
                    InstanceIds=[instance.id], WaiterConfig=_WAIT
                )
            ec2.modify_instance_attribute(
                InstanceId=instance.id, InstanceType={"Value": update.value}
            )
            if running:
                ec2.start_instances(InstanceIds=[instance.id])
                ec2.get_waiter("instance_running").wait(
                    InstanceIds=[instance.id], WaiterConfig=_WAIT
                )
    clock.say(f"{update.kind}: {update.before} -> {update.after}", instance.name)
    rows.append(_row(instance.name, f"changed {update.kind}", instance.id, update.after, t0))


def _rules(
    ec2: Any,
    spec: Spec,
    add: list[RuleChange],
    remove: list[RuleChange],
    ids: dict[str, str],
    clock: Clock,
    rows: list,
) -> None:
    for name in sorted({r.group for r in add} | {r.group for r in remove}):
        t0 = time.monotonic()
        adding = [r for r in add if r.group == name]
        removing = [r for r in remove if r.group == name]
        pending = [r for r in adding if r.permission.source.startswith("host:")]
        if pending:
            raise AwsError(
                f"{name}: no address yet for {', '.join(r.permission.text() for r in pending)}"
            )
        with calling(f"changing the rules of {name}", spec.target):
            if removing:
                ec2.revoke_security_group_ingress(
                    GroupId=ids[name], SecurityGroupRuleIds=[r.rule_id for r in removing]
                )
            if adding:
                ec2.authorize_security_group_ingress(
                    GroupId=ids[name],
                    IpPermissions=[to_aws(r.permission, r.description, ids) for r in adding],
                )
        for r in removing:
            clock.say(f"revoked {r.permission.text()}", name)
        for r in adding:
            clock.say(f"allowed {r.permission.text()} [{r.description}]", name)
        rows.append(_row(name, "rules", ids[name], f"+{len(adding)} -{len(removing)}", t0))


def _delete_groups(ec2: Any, spec: Spec, after: Plan, clock: Clock, rows: list) -> None:
    gone = [
        i.id
        for i in after.actual.instances
        if set(i.security_groups) & {g.id for g in after.groups_delete}
    ]
    if gone:
        raise AwsError(f"security groups no tier declares are still used by {', '.join(gone)}")
    with calling("waiting for terminated instances", spec.target):
        terminating = shutting_down(ec2, spec.target)
        if terminating:
            clock.say(f"waiting for {len(terminating)} instance(s) to terminate")
            ec2.get_waiter("instance_terminated").wait(InstanceIds=terminating, WaiterConfig=_WAIT)
    for group in after.groups_delete:
        t0 = time.monotonic()
        with calling(f"deleting security group {group.name}", spec.target):
            if group.rules:
                ec2.revoke_security_group_ingress(
                    GroupId=group.id, SecurityGroupRuleIds=[r.id for r in group.rules]
                )
            ec2.delete_security_group(GroupId=group.id)
        clock.say("security group deleted", group.name)
        rows.append(_row(group.name, "deleted", group.id, "", t0))


def _row(what: str, action: str, ident: str, detail: str, t0: float) -> dict[str, str]:
    return {
        "what": what,
        "action": action,
        "id": ident,
        "detail": detail,
        "seconds": f"{time.monotonic() - t0:.1f}",
    }
