"""fab tasks: operate the fleet as one unit. Hosts always come from the inventory.

fab lab.up | lab.down | lab.status | lab.ssh HOST | lab.reset HOST | lab.destroy HOST
fab lab.stop HOST | lab.kill HOST | lab.start HOST | lab.cut HOST | lab.heal HOST
fab lab.fill-disk HOST | lab.free-disk HOST | lab.url
fab converge [--env lab] [--limit GROUP] [--check]
fab deploy [--env lab] [--ref REF] [--message M] | deploy.lock | deploy.unlock | deploy.status
fab rollback [--to RELEASE] | releases | status | restart | maintenance.on | maintenance.off
fab lb.drain HOST | lb.undrain HOST
fab app.restart-program HOST PROGRAM | host.prune HOST | service.restart HOST SERVICE
fab release.build [--out DIR] | release.list | release.show ID | release.prune
fab pipeline [--staging E] [--production E] [--skip-tests] | pipeline.rollback | smoke [--env E]
fab jenkins.sync | jenkins.status | jenkins.render
fab aws.plan ENV | aws.apply ENV | aws.status ENV | aws.destroy ENV
fab monitor.page | monitor.flush | monitor.test-page | monitor.status | monitor.silence | monitor.unsilence
fab logs HOST|GROUP [--since T] [--unit U] [--grep P] [--lines N] | security.report
fab db.status
"""

from invoke import Collection

from fabfile import aws, lab
from fabfile.ci import jenkins_ns
from fabfile.converge import converge
from fabfile.db import db_ns
from fabfile.deploy import deploy_ns, lb_ns, maintenance_ns, releases, restart, rollback, status
from fabfile.hostops import app_ns, host_ns, service_ns
from fabfile.logs import logs
from fabfile.monitor import monitor_ns
from fabfile.pipeline import pipeline_ns, smoke_test
from fabfile.release import release_ns
from fabfile.security import security_ns

ns = Collection(
    lab,
    aws,
    converge,
    deploy_ns,
    maintenance_ns,
    lb_ns,
    rollback,
    releases,
    status,
    restart,
    release_ns,
    pipeline_ns,
    smoke_test,
    jenkins_ns,
    monitor_ns,
    app_ns,
    host_ns,
    service_ns,
    logs,
    security_ns,
    db_ns,
)
