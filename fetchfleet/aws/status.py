"""`fab aws.status`: one row per instance, declared or not, and the offsite bucket.

Read-only and quick (no firewall run): `fab aws.plan` gives the full diff, rules included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fetchfleet.aws import AwsError
from fetchfleet.aws.ec2 import Actual, calling, ec2_client, snapshot
from fetchfleet.aws.offsite import s3_client
from fetchfleet.aws.spec import Spec, SpecError, Target, load_spec, load_target


@dataclass
class Status:
    target: Target
    rows: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def status(env: str) -> Status:
    target = load_target(env)
    result = Status(target)
    spec: Spec | None
    try:
        spec = load_spec(env)
    except SpecError as err:
        spec = None
        result.notes.append(
            f"the declaration has problems (fab aws.plan lists them): {len(err.problems)}"
        )
    actual = snapshot(ec2_client(target), target)
    result.rows = rows(spec, actual)
    declared = spec.hosts if spec else {}
    missing = [h for h in declared if h not in {i.name for i in actual.instances}]
    extra = [i.name for i in actual.instances if i.name not in declared]
    result.notes.append(
        f"{target.environment}: {len(actual.instances)} instance(s), {len(declared)} declared, "
        f"{len(missing)} missing, {len(extra)} not declared, {len(actual.groups)} security group(s)"
    )
    if spec and spec.offsite:
        result.notes.append(
            f"offsite backups: s3://{spec.offsite.bucket} {_bucket_state(spec, target)}"
        )
    return result


def rows(spec: Spec | None, actual: Actual) -> list[dict[str, str]]:
    declared = spec.hosts if spec else {}
    found = []
    for instance in actual.instances:
        found.append(
            {
                "host": instance.name,
                "tier": instance.tier,
                "groups": ",".join(instance.groups),
                "state": instance.state,
                "instance": instance.id,
                "type": instance.instance_type,
                "private": instance.private_ip,
                "public": instance.public_ip or "-",
                "declared": "yes" if instance.name in declared else "NO",
            }
        )
    names = {i.name for i in actual.instances}
    for host, tier in declared.items():
        if host not in names:
            found.append(
                {
                    "host": host,
                    "tier": tier.name,
                    "groups": ",".join(tier.groups),
                    "state": "missing",
                    "instance": "-",
                    "type": tier.instance_type,
                    "private": "-",
                    "public": "-",
                    "declared": "yes",
                }
            )
    return sorted(found, key=lambda r: r["host"])


def _bucket_state(spec: Spec, target: Target) -> str:
    assert spec.offsite is not None
    s3: Any = s3_client(spec.offsite)
    try:
        with calling(f"looking at bucket {spec.offsite.bucket}", target):
            s3.head_bucket(Bucket=spec.offsite.bucket)
    except AwsError as err:
        return f"not usable: {str(err).splitlines()[0]}"
    return f"reachable ({spec.offsite.region}, encryption {spec.offsite.encryption})"
