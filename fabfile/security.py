"""`fab security.report`: what is enforced on every host and what knowingly is not, the ports the
firewall data opens, and a port scan compared against it (logic: fetchfleet.security)."""

from invoke import Collection, task
from invoke.exceptions import Exit

from fetchfleet.aws import AwsError
from fetchfleet.errors import FleetError
from fetchfleet.inventory import InventoryError, load_fleet
from fetchfleet.playbook import PlaybookError
from fetchfleet.security import build_report, render


@task(
    help={
        "env": "inventory (default: lab)",
        "scan-from": "host to scan the others from (default: the first lab_seeders host)",
    }
)
def report(c, env="lab", scan_from=None):
    """Security report of the fleet; exits 1 when a control drifted or a port is open that the
    firewall data does not allow."""
    try:
        result = build_report(load_fleet(env), scan_from)
    except (AwsError, FleetError, InventoryError, PlaybookError) as err:
        raise Exit(f"security.report: {err}", code=1) from err
    print()
    print(render(result))
    if not result.clean:
        raise Exit(code=1)


security_ns = Collection("security", report)
