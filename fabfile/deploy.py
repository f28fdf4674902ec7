"""`fab deploy` and friends: releases of the app on the fleet (logic: fetchfleet.deploy).

fab deploy [--env lab] [--ref REF] [--message M]   build once, install everywhere, rolling switch
fab deploy.lock [--message M] | deploy.unlock | deploy.status
fab rollback [--to RELEASE] | releases | status | restart | maintenance.on | maintenance.off
fab lb.drain HOST | lb.undrain HOST
"""

from invoke import Collection, task
from invoke.exceptions import Exit

from fetchfleet import deploy as D
from fetchfleet.errors import FleetError
from fetchfleet.inventory import InventoryError
from fetchfleet.playbook import PlaybookError
from fetchfleet.release import ReleaseError

ERRORS = (FleetError, InventoryError, PlaybookError, ReleaseError)


def _do(what, func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except D.LockHeld as err:
        raise Exit(f"{what}: {err}", code=3) from err
    except ERRORS as err:
        raise Exit(f"{what}: {err}", code=1) from err


def _report(what, func, *args, **kwargs):
    """Run a fleet action; print its summary table whether it worked or not."""
    try:
        report = func(*args, **kwargs)
    except D.LockHeld as err:
        raise Exit(f"{what}: {err}", code=3) from err
    except ERRORS as err:
        raise Exit(f"{what}: FAILED\n{err}", code=1) from err
    print()
    print(D.summary(report))
    return report


@task(
    default=True,
    help={
        "env": "inventory (default: lab)",
        "ref": "git ref to deploy (default: the working tree)",
        "message": "why (recorded in the lock and the audit log)",
        "batch-size": "web hosts switched at a time (default: deploy_batch_size or 1)",
        "keep": "releases kept per host (default 5; never current or previous)",
        "fresh": "build anew even if this source was built: a new release id of the same code",
        "release": "deploy this already-built release from the cache (no build): e.g. the id a "
        "pipeline deployed to staging",
    },
)
def deploy(
    c,
    env="lab",
    ref=None,
    message="",
    batch_size=None,
    keep=D.KEEP_RELEASES,
    fresh=False,
    release=None,
):
    """Build once, ship and install everywhere, migrate once, switch host by host behind a gate."""
    size = int(batch_size) if batch_size is not None else None
    _report(
        "deploy",
        D.deploy,
        env=env,
        ref=ref,
        message=message,
        batch_size=size,
        keep=int(keep),
        force_build=fresh,
        release=release,
    )


@task(help={"env": "inventory (default: lab)", "message": "why the lock is held"})
def lock(c, env="lab", message=""):
    """Hold the deploy lock by hand (nobody can deploy until deploy.unlock)."""
    info = _do("deploy.lock", D.hold_lock, env, message)
    print(f"deploy lock of {env} held: {D.describe_lock(info)}")


@task(help={"env": "inventory (default: lab)"})
def unlock(c, env="lab"):
    """Remove the deploy lock, whoever holds it (check deploy.status first)."""
    held = _do("deploy.unlock", D.unlock, env)
    print(f"removed the lock of {D.describe_lock(held)}" if held else f"{env}: no deploy lock")


@task(name="status", help={"env": "inventory (default: lab)"})
def lock_status(c, env="lab"):
    """Who holds the deploy lock, since when, for what; whether it is stale."""
    info, stale = _do("deploy.status", D.lock_status, env)
    if info is None:
        print(f"{env}: not locked")
    else:
        print(f"{env}: {'STALE: ' + stale if stale else 'locked'}\n  {D.describe_lock(info)}")


@task(
    help={
        "env": "inventory (default: lab)",
        "to": "release id (default: the previous one)",
        "message": "why",
    }
)
def rollback(c, env="lab", to=None, message=""):
    """Switch back to an installed release (no build, no install), rolling and health-gated."""
    _report("rollback", D.rollback, env=env, to=to, message=message)


@task(help={"env": "inventory (default: lab)", "message": "why"})
def restart(c, env="lab", message=""):
    """Rolling restart of the current release, host by host, drained and health-gated."""
    _report("restart", D.restart, env=env, message=message)


@task(help={"env": "inventory (default: lab)"})
def releases(c, env="lab"):
    """Installed releases per app host, newest first; which is current and previous."""
    print(D.table(_do("releases", D.installed_releases, env)))


@task(help={"env": "inventory (default: lab)"})
def status(c, env="lab"):
    """One row per app host: release, health, process states, load balancer state."""
    print(D.table(_do("status", D.status, env)))


@task(name="on", help={"env": "inventory (default: lab)"})
def maintenance_on(c, env="lab"):
    """Every request through the load balancers gets the maintenance page (503)."""
    names = _do("maintenance.on", D.maintenance, env, True)
    print(f"maintenance ON on {', '.join(names)}")


@task(name="off", help={"env": "inventory (default: lab)"})
def maintenance_off(c, env="lab"):
    """The load balancers serve the app again."""
    names = _do("maintenance.off", D.maintenance, env, False)
    print(f"maintenance off on {', '.join(names)}")


@task(name="drain", positional=["host"], help={"env": "inventory (default: lab)", "message": "why"})
def lb_drain(c, host, env="lab", message=""):
    """Take a web host out of every load balancer (kept by deploys and converges until undrained)."""
    waited = _do("lb.drain", D.drain, env, host, True, message)
    print(f"{host} drained on every load balancer (requests in flight done after {waited:.1f}s)")


@task(
    name="undrain", positional=["host"], help={"env": "inventory (default: lab)", "message": "why"}
)
def lb_undrain(c, host, env="lab", message=""):
    """Put a drained web host back into every load balancer."""
    _do("lb.undrain", D.drain, env, host, False, message)
    print(f"{host} back in every load balancer")


deploy_ns = Collection("deploy", deploy, lock, unlock, lock_status)
lb_ns = Collection("lb", lb_drain, lb_undrain)
maintenance_ns = Collection("maintenance", maintenance_on, maintenance_off)
