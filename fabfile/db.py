"""`fab db.status`: the data tier, one row per database host (logic: fetchfleet.dbstatus)."""

from invoke import Collection, task
from invoke.exceptions import Exit

from fetchfleet import dbstatus as D
from fetchfleet.errors import FleetError
from fetchfleet.inventory import InventoryError, load_fleet


@task(help={"env": "inventory (default: lab)"})
def status(c, env="lab"):
    """Role, timeline, WAL position, replication state and lag, pgbouncer's target per database
    host; exits 1 when the databases disagree with the inventory or a replica does not stream."""
    try:
        fleet = load_fleet(env)
        result = D.status(D.db_hosts(fleet), {h.address: h.name for h in fleet.hosts})
    except (FleetError, InventoryError) as err:
        raise Exit(f"db.status: {err}", code=1) from err
    print(D.render(result))
    if result.problems:
        raise Exit(code=1)


db_ns = Collection("db", status)
