"""`fab pipeline` and `fab smoke`: jenkins/Jenkinsfile's stages on this machine (fetchfleet.pipeline).

fab pipeline [--staging lab] [--production lab] [--skip-tests] [--page]
fab pipeline.rollback --env E --release ID   undo ID on E if E runs it (what a failed stage runs)
fab smoke [--env E] [--release ID] [--allow-degraded]
"""

from invoke import Collection, task
from invoke.exceptions import Exit

from fetchfleet import pipeline as P
from fetchfleet.deploy import DeployError
from fetchfleet.inventory import InventoryError, load_fleet
from fetchfleet.jenkins import commands as C
from fetchfleet.smoke import SmokeError, balancer_url, smoke, summary


@task(
    default=True,
    help={
        "staging": "inventory deployed first and smoke-tested (default: lab)",
        "production": "inventory that gets the same release next (default: lab)",
        "skip-tests": "skip lint, unit and app tests (make test ran them)",
        "page": "on failure, page as Jenkins does (fab monitor.page)",
    },
)
def run(c, staging="lab", production="lab", skip_tests=False, page=False):
    """Run the Jenkinsfile's stages here: build once, staging, smoke, production, smoke."""
    problems = C.missing([cmd for line in P.commands(page) for cmd in C.parse(line)])
    if problems:
        raise Exit("pipeline: commands it needs do not exist yet:\n  " + "\n  ".join(problems), 2)
    report = P.run(staging, production, skip_tests=skip_tests, page=page)
    print()
    print(P.summary(report))
    if report.failed:
        raise Exit(f"pipeline failed at {report.failed}", code=1)


@task(
    name="rollback",
    help={"env": "inventory the release failed on", "release": "the release id that failed"},
)
def rollback_release(c, env, release):
    """Undo RELEASE on ENV: back to what ENV ran before it; nothing if no host runs it."""
    try:
        P.rollback_release(env, release)
    except (P.PipelineError, DeployError, InventoryError) as err:
        raise Exit(f"pipeline.rollback: {err}", code=1) from err


@task(
    name="smoke",
    help={
        "env": "inventory whose load balancer is tested (default: lab)",
        "release": "release id /version must name (default: whatever runs)",
        "allow-degraded": "accept /healthz 'degraded' (broker or search down)",
    },
)
def smoke_test(c, env="lab", release=None, allow_degraded=False):
    """The service answers a user through the load balancer: version, health, sign-up, log-in, files."""
    try:
        base = balancer_url(load_fleet(env))
    except InventoryError as err:
        raise Exit(f"smoke: {err}", code=2) from err
    try:
        checks = smoke(base, release=release, allow_degraded=allow_degraded)
    except SmokeError as err:
        raise Exit(str(err), code=1) from err
    print(f"\nsmoke test of {base}: ok\n{summary(checks)}")


pipeline_ns = Collection("pipeline", run, rollback_release)
