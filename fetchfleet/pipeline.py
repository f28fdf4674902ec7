"""The push-to-production pipeline as data: the stages jenkins/Jenkinsfile runs, runnable here too.

Each stage is one shell command, exactly the `sh` string of the Jenkinsfile stage of the same
name (tests/unit/test_jenkins_pipeline.py compares them through the Jenkinsfile's syntax tree).
`fab pipeline` (`make pipeline`) runs them in order on this machine with the variables Jenkins
would set (STAGING_ENV, PRODUCTION_ENV, RELEASE_ID, DEPLOY_MESSAGE, JOB_NAME, …):

    setup → lint → unit → app tests → build once → deploy staging → smoke staging
          → deploy production → smoke production

Only two things are Jenkins' own and have no command: the checkout, and the `input` gate before
production (no person waits at a terminal here). A failed deploy or smoke runs its rollback
command, `fab pipeline.rollback --env E --release ID`, which undoes exactly that release: it
rolls E back to what E ran before the deploy of ID (from the deploy's audit record), and does
nothing when no host runs ID (the deploy's own gate already rolled it back, or it never switched).
After the rollback, ID is removed from E's hosts, so no later bare `fab rollback` picks it.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fetchfleet.inventory import REPO
from fetchfleet.output import Clock, Progress, table

FAB = ".venv/bin/fab"
RELEASE_ID_FILE = "build/release.id"


class PipelineError(Exception):
    """A pipeline stage or its rollback failed; the message names it and what to run."""


def _deploy(var: str) -> str:
    return f'{FAB} deploy --env "${var}" --release "$RELEASE_ID" --message "$DEPLOY_MESSAGE"'


def _smoke(var: str) -> str:
    return f'{FAB} smoke --env "${var}" --release "$RELEASE_ID"'


def _rollback(var: str) -> str:
    return f'{FAB} pipeline.rollback --env "${var}" --release "$RELEASE_ID"'


@dataclass(frozen=True)
class Stage:
    name: str
    command: str
    tests: bool = False  # skipped by --skip-tests (make test already ran them)
    on_failure: str | None = None  # the Jenkinsfile stage's post { failure { sh … } }


STAGES: tuple[Stage, ...] = (
    Stage("Setup", "make setup"),
    Stage("Lint", "make lint", tests=True),
    Stage("Unit tests", "make unit", tests=True),
    Stage("App tests", "make app-test", tests=True),
    Stage("Build release", f"{FAB} release.build --out build"),
    Stage("Deploy to staging", _deploy("STAGING_ENV"), on_failure=_rollback("STAGING_ENV")),
    Stage("Smoke staging", _smoke("STAGING_ENV"), on_failure=_rollback("STAGING_ENV")),
    Stage(
        "Deploy to production", _deploy("PRODUCTION_ENV"), on_failure=_rollback("PRODUCTION_ENV")
    ),
    Stage("Smoke production", _smoke("PRODUCTION_ENV"), on_failure=_rollback("PRODUCTION_ENV")),
)
# Stages of the Jenkinsfile that only Jenkins can do: no command, nothing to run here.
JENKINS_ONLY = ("Checkout", "Approve production")
# The Jenkinsfile's order: where the Jenkins-only stages sit among STAGES.
JENKINS_ORDER = (
    "Checkout",
    *[s.name for s in STAGES[:7]],
    "Approve production",
    *[s.name for s in STAGES[7:]],
)
# The pipeline's post { failure/success }: a page, and its resolve once the pipeline is green.
NOTIFY_FAILURE = (
    f'{FAB} monitor.page --env "$PRODUCTION_ENV" --action trigger --severity error --source jenkins '
    '--dedup-key "jenkins-$JOB_NAME" --link "$BUILD_URL" --summary "Jenkins: $JOB_NAME #$BUILD_NUMBER failed"'
)
NOTIFY_SUCCESS = (
    f'{FAB} monitor.page --env "$PRODUCTION_ENV" --action resolve --dedup-key "jenkins-$JOB_NAME"'
)


def commands(page: bool = True) -> list[str]:
    """Every command the pipeline may run (stages, rollbacks and, with `page`, the notifications)."""
    found = [s.command for s in STAGES] + sorted({s.on_failure for s in STAGES if s.on_failure})
    return found + ([NOTIFY_FAILURE, NOTIFY_SUCCESS] if page else [])


@dataclass
class StageResult:
    name: str
    result: str  # ok | FAILED | skipped | not run
    seconds: float = 0.0
    note: str = ""


@dataclass
class Report:
    stages: list[StageResult] = field(default_factory=list)
    release: str = ""
    failed: str | None = None
    seconds: float = 0.0


def environment(
    staging: str, production: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """What Jenkins sets for the stages, filled in for a run on this machine."""
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return {
        **(base if base is not None else os.environ),
        "STAGING_ENV": staging,
        "PRODUCTION_ENV": production,
        "JOB_NAME": "fetchfleet-pipeline-local",
        "BUILD_NUMBER": stamp,
        "BUILD_URL": f"local run by {who}",
        "DEPLOY_MESSAGE": f"pipeline {stamp} by {who}",
    }


def shell(command: str, env: dict[str, str], cwd: Path) -> int:
    """One command as Jenkins' `sh` runs it (-e: the first failing line fails the step)."""
    return subprocess.run(["bash", "-ec", command], cwd=cwd, env=env, check=False).returncode


def run(
    staging: str = "lab",
    production: str = "lab",
    skip_tests: bool = False,
    page: bool = False,
    cwd: Path = REPO,
    out: Progress = print,
) -> Report:
    """Run STAGES in order; stop at the first failure, after its rollback (and a page)."""
    clock = Clock(out)
    env = environment(staging, production)
    report = Report()
    for index, stage in enumerate(STAGES):
        if stage.tests and skip_tests:
            report.stages.append(StageResult(stage.name, "skipped", note="--skip-tests"))
            continue
        clock.say(f"== {stage.name}: {stage.command}")
        t0 = time.monotonic()
        code = shell(stage.command, env, cwd)
        result = StageResult(stage.name, "ok" if code == 0 else "FAILED", time.monotonic() - t0)
        report.stages.append(result)
        if code == 0:
            if stage.name == "Build release":
                report.release = env["RELEASE_ID"] = (cwd / RELEASE_ID_FILE).read_text().strip()
                clock.say(f"release {report.release} for every later stage")
            continue
        report.failed = stage.name
        result.note = f"exit {code}"
        if stage.on_failure:
            clock.say(f"== {stage.name} failed: {stage.on_failure}")
            undo = shell(stage.on_failure, env, cwd)
            result.note += "; rolled back" if undo == 0 else f"; ROLLBACK FAILED (exit {undo})"
        if page:
            shell(NOTIFY_FAILURE, env, cwd)
        report.stages += [StageResult(s.name, "not run") for s in STAGES[index + 1 :]]
        break
    report.seconds = clock.elapsed()
    return report


def summary(report: Report) -> str:
    head = (
        f"pipeline {'FAILED at ' + report.failed if report.failed else 'ok'}"
        f"{' — release ' + report.release if report.release else ''} in {report.seconds:.1f}s"
    )
    rows = [
        {
            "stage": s.name,
            "result": s.result,
            "seconds": f"{s.seconds:.1f}" if s.result in ("ok", "FAILED") else "",
            "note": s.note,
        }
        for s in report.stages
    ]
    return f"{head}\n{table(rows)}"


# --- undoing one release on one environment -----------------------------------------------------


def undo_target(
    env: str, release: str, current: dict[str, str | None], audit: list[dict]
) -> str | None:
    """The release `env` should go back to after `release` failed there, or None when no host
    runs `release` (nothing to undo). What the environment ran before is the `previous` of the
    newest deploy of `release` to `env` in the audit log; without one the caller must choose."""
    if release not in current.values():
        return None
    for record in reversed(audit):
        if record.get("action") == "deploy" and record.get("release") == release:
            if record.get("env") == env and record.get("previous") not in (None, "", release):
                return str(record["previous"])
            break
    running = ", ".join(sorted(h for h, r in current.items() if r == release))
    raise PipelineError(
        f"{env}: {running} run {release}, and no deploy of it in the audit log says what ran "
        f"before; choose a release (fab releases --env {env}) and run: "
        f"fab rollback --env {env} --to RELEASE"
    )


def rollback_release(env: str, release: str, out: Progress = print) -> str | None:
    """Undo `release` on `env` (a rolling, gated `fab rollback` to what ran before it, then the
    release removed from the hosts). Returns the release rolled back to, or None when there was
    nothing to undo."""
    # Imported here: fetchfleet.deploy reaches hosts; the stage list above must stay cheap.
    from fetchfleet import deploy as D

    rows = D.installed_releases(env)
    current = {r["host"]: r["release"] for r in rows if r[""] == "current"}
    target = undo_target(env, release, current, D.read_audit(D.control_audit_path(env)))
    if target is None:
        out(f"{env}: no host runs {release}; nothing to roll back")
        return None
    out(f"{env}: rolling back from {release} to {target}")
    report = D.rollback(env=env, to=target, message=f"pipeline: {release} failed on {env}", out=out)
    out(D.summary(report))
    D.discard_release(env, release, out)
    return target
