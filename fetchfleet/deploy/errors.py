"""What a deploy, rollback, restart or converge reports when it fails."""

from fetchfleet.errors import FleetError


class DeployError(FleetError):
    """What failed, on which host, at which step, with the last log lines to look closer."""
