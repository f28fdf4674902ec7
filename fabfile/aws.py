"""`fab aws.*`: an environment's instances and security groups on EC2 (see fetchfleet.aws).

fab aws.plan ENV | aws.apply ENV [--restart] [--replace HOST] | aws.status ENV | aws.destroy ENV [--confirm ENV] [--production]
"""

from invoke import task
from invoke.exceptions import Exit

from fetchfleet.aws import AwsError
from fetchfleet.aws.apply import apply as apply_plan
from fetchfleet.aws.destroy import DestroyRefused, preview
from fetchfleet.aws.destroy import destroy as destroy_env
from fetchfleet.aws.plan import plan as make_plan
from fetchfleet.aws.status import status as env_status
from fetchfleet.inventory import InventoryError
from fetchfleet.output import table

ENV_HELP = "the environment: inventory/ENV with group_vars/all/aws.yml and aws_ec2.yml"


def _do(what, func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except DestroyRefused as err:
        raise Exit(f"{what}: {err}", code=3) from err
    except (AwsError, InventoryError) as err:
        raise Exit(f"{what}: {err}", code=1) from err


REPLACE_HELP = "terminate this host and launch it anew as declared (repeatable)"


@task(positional=["env"], help={"env": ENV_HELP, "replace": REPLACE_HELP}, iterable=["replace"])
def plan(c, env, replace=None):
    """What `fab aws.apply` would change, instances and security group rules; changes nothing."""
    the_plan, _ = _do("aws.plan", make_plan, env, replace=tuple(replace or ()))
    for line in the_plan.lines():
        print(line)
    print(the_plan.summary())


@task(
    positional=["env"],
    help={
        "env": ENV_HELP,
        "restart": "allow stop/start to change an instance type",
        "replace": REPLACE_HELP,
    },
    iterable=["replace"],
)
def apply(c, env, restart=False, replace=None):
    """Make EC2 match the declaration (shows the plan first); a second run changes nothing."""
    report = _do("aws.apply", apply_plan, env, restart=restart, replace=tuple(replace or ()))
    if report.rows:
        print()
        print(report.table())


@task(positional=["env"], help={"env": ENV_HELP})
def status(c, env):
    """One row per instance (declared or not), security groups, the offsite bucket."""
    result = _do("aws.status", env_status, env)
    print(table(result.rows))
    for note in result.notes:
        print(note)


@task(
    positional=["env"],
    help={
        "env": ENV_HELP,
        "confirm": "the environment's name, typed back (else you are asked)",
        "production": "allow destroying a production environment",
    },
)
def destroy(c, env, confirm=None, production=False):
    """Terminate every instance and delete every security group of the environment (not its bucket)."""
    if confirm is None:
        target, actual = _do("aws.destroy", preview, env)
        for instance in actual.instances:
            print(f"  {instance.name:<12} {instance.id}  {instance.state}  {instance.private_ip}")
        for group in actual.groups.values():
            print(f"  {group.name}  {group.id}")
        prompt = (
            f"Destroy {target.environment}: {len(actual.instances)} instance(s), "
            f"{len(actual.groups)} security group(s)? Type the environment's name to confirm: "
        )
        confirm = input(prompt).strip()
    report = _do("aws.destroy", destroy_env, env, confirm, production=production)
    if report.rows:
        print()
        print(report.table())
