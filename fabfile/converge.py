"""`fab converge`: Ansible converges state (playbooks/site.yml) on an environment, under the
environment's deploy lock (fetchfleet.deploy.converge).

fab converge [--env E] [--limit L]          change the fleet to what the roles describe
fab converge --check [--env E] [--limit L]  drift check: what would change (check mode, --diff),
                                            exit 1 when anything would (the nightly Jenkins job)
"""

from invoke import task
from invoke.exceptions import Exit

from fetchfleet import deploy as D
from fetchfleet.errors import FleetError
from fetchfleet.inventory import InventoryError
from fetchfleet.output import table
from fetchfleet.playbook import PlaybookError


@task(
    help={
        "env": "inventory to converge (default: lab)",
        "limit": "only these hosts/groups",
        "check": "change nothing: report what would change (diffs shown) and fail if anything would",
        "message": "why (recorded in the lock and the audit log)",
    }
)
def converge(c, env="lab", limit=None, check=False, message=""):
    """Converge the fleet to the state the roles describe (playbooks/site.yml), under the lock."""
    try:
        recap = D.converge(env=env, limit=limit, check=check, message=message)
    except D.LockHeld as err:
        raise Exit(f"converge: refused, {err}", code=3) from err
    except (FleetError, InventoryError, PlaybookError) as err:
        raise Exit(f"converge: {err}", code=2) from err
    if recap.restart is not None:
        print()
        print(D.summary(recap.restart))
    changed = recap.total("changed")
    what = "drift check" if check else "converge"
    print(f"{what}: {len(recap.hosts)} hosts, changed={changed}, {recap.seconds:.1f}s")
    if not recap.ok:
        raise Exit(f"{what} failed (ansible-playbook exit {recap.returncode})", code=1)
    if check and changed:
        rows = [
            {"host": host, "would change": task}
            for host, tasks in sorted(recap.changed_tasks.items())
            for task in tasks
        ]
        print(table(rows))
        hosts = ", ".join(sorted(recap.changed))
        raise Exit(
            f"drift on {hosts}: {changed} tasks would change (diffs above); "
            f"`fab converge --env {env}` puts them back, or fix the role if the change is wanted",
            code=1,
        )
