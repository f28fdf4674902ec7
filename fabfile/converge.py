"""`fab converge`: Ansible converges state (playbooks/site.yml) on an environment."""

from invoke import task
from invoke.exceptions import Exit

from fetchfleet.inventory import InventoryError
from fetchfleet.playbook import PlaybookError, run_playbook


@task(help={"env": "inventory to converge (default: lab)", "limit": "only these hosts/groups"})
def converge(c, env="lab", limit=None):
    """Converge the fleet to the state the roles describe (playbooks/site.yml)."""
    try:
        recap = run_playbook("site.yml", env=env, limit=limit)
    except (InventoryError, PlaybookError) as err:
        raise Exit(f"converge: {err}", code=2) from err
    changed = recap.total("changed")
    print(f"converge: {len(recap.hosts)} hosts, changed={changed}, {recap.seconds:.1f}s")
    if not recap.ok:
        raise Exit(f"converge failed (ansible-playbook exit {recap.returncode})", code=1)
