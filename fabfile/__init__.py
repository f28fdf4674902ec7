"""fab tasks: operate the fleet as one unit. Hosts always come from the inventory.

fab lab.up | lab.down | lab.status | lab.ssh HOST | lab.reset HOST | lab.destroy HOST
fab lab.stop HOST | lab.kill HOST | lab.start HOST | lab.cut HOST | lab.heal HOST
fab lab.fill-disk HOST | lab.free-disk HOST | lab.url
fab converge [--env lab] [--limit GROUP]
fab deploy [--env lab] [--ref REF] [--message M] | deploy.lock | deploy.unlock | deploy.status
fab rollback [--to RELEASE] | releases | status | restart | maintenance.on | maintenance.off
"""

from invoke import Collection

from fabfile import lab
from fabfile.converge import converge
from fabfile.deploy import deploy_ns, maintenance_ns, releases, restart, rollback, status

ns = Collection(lab, converge, deploy_ns, maintenance_ns, rollback, releases, status, restart)
