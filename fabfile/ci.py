"""`fab jenkins.*`: the environment's Jenkins controller (logic: fetchfleet.jenkins). This module is
not named jenkins.py: fab puts fabfile/ on sys.path, where it would hide python-jenkins.

fab jenkins.sync [--env E] [--dry-run]   jobs on the controller = jenkins/jobs (create/update/delete)
fab jenkins.status [--env E]             each job's schedule, last result, start and duration
fab jenkins.run JOB [--param K=V]        start one build, wait for it, print its console
fab jenkins.render [--out DIR]           the jobs' XML, rendered offline (jenkins-jobs test)
"""

from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit

from fetchfleet.inventory import InventoryError
from fetchfleet.jenkins import controller as J
from fetchfleet.jenkins.jobs import JobsError, render
from fetchfleet.output import table


def _connect(env):
    try:
        s = J.settings(env)
        return s, J.connect(s.url, s.user, s.token)
    except (InventoryError, J.ControllerError) as err:
        raise Exit(f"jenkins: {err}", code=2) from err


def _render(site):
    try:
        return render(site)
    except JobsError as err:
        raise Exit(f"jenkins: {err}", code=2) from err


@task(help={"env": "inventory whose jenkins host is synced (default: lab)", "dry-run": "only say"})
def sync(c, env="lab", dry_run=False):
    """Make the controller's jobs exactly jenkins/jobs: only changed jobs are sent."""
    s, server = _connect(env)
    wanted = _render(s.site)
    try:
        done = J.sync(server, wanted, dry_run=dry_run)
    except J.python_jenkins.JenkinsException as err:
        raise Exit(f"jenkins.sync: {s.url}: {err}", code=1) from err
    print(
        f"jenkins.sync {s.url}: {len(done.create)} created, {len(done.update)} updated, "
        f"{len(done.delete)} deleted, {len(done.unchanged)} unchanged"
        + (f", {len(done.unmanaged)} not ours" if done.unmanaged else "")
        + (" (dry run: nothing sent)" if dry_run else "")
    )


@task(help={"env": "inventory whose jenkins host is asked (default: lab)"})
def status(c, env="lab"):
    """Each job's schedule, last build, result, start time and duration."""
    s, server = _connect(env)
    print(table(J.status(server, _render(s.site))))


@task(
    positional=["job"],
    iterable=["param"],
    help={"env": "inventory (default: lab)", "param": "a build parameter K=V (repeatable)"},
)
def run(c, job, env="lab", param=None):
    """Start one build of JOB now, wait for it and print its console; fails when the build did."""
    _, server = _connect(env)
    params = dict(p.split("=", 1) for p in param or [])
    try:
        build, console = J.run_job(server, job, params)
    except (J.ControllerError, J.python_jenkins.JenkinsException) as err:
        raise Exit(f"jenkins.run: {err}", code=1) from err
    print(console)
    print(f"{job} #{build['number']}: {build['result']} ({build['url']})")
    if build["result"] != "SUCCESS":
        raise Exit(code=1)


@task(name="render", help={"out": "directory for JOB/config.xml (default: build/jenkins-jobs)"})
def render_jobs(c, out="build/jenkins-jobs"):
    """Render every job's XML offline (no controller), as sync would send it."""
    for name, job in _render(None).items():
        path = Path(out) / name / "config.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(job.xml)
        print(path)


jenkins_ns = Collection("jenkins", sync, status, run, render_jobs)
