"""The one way the suite reaches hosts: Fabric connections from the inventory, a parallel map
with per-host outcomes, and Python programs shipped as real files.

    from fetchfleet import remote
    web1 = remote.connect(fleet.host("web1"))
    web1.run("supervisorctl status", check=False).stdout
    remote.parallel(lambda h: remote.connect(h).run("uptime"), fleet.group("web"))
    remote.run_program(web1, "app_state", "/srv/cloudfetch")
"""

from fetchfleet.errors import RemoteError
from fetchfleet.remote.parallel import Outcome, each, parallel
from fetchfleet.remote.programs import program_source, run_program
from fetchfleet.remote.runner import Local, Result, Runner, checked, short
from fetchfleet.remote.ssh import SSH, Target, close_all, connect, forget, ssh_options

__all__ = [
    "SSH",
    "Local",
    "Outcome",
    "RemoteError",
    "Result",
    "Runner",
    "Target",
    "checked",
    "close_all",
    "connect",
    "each",
    "forget",
    "parallel",
    "program_source",
    "run_program",
    "short",
    "ssh_options",
]
