"""jenkins/jobs rendered offline by the real Jenkins Job Builder (`jenkins-jobs test`), and the
XML read back: triggers, schedules, timeouts, locks, the command each job runs, the page on
failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from fetchfleet.jenkins.jobs import MANAGED, JobsError, digest_of, render, render_raw

SITE = {"repo-url": "https://git.test.invalid/ops/fetchfleet.git", "production": "prod-eu"}

# job: (schedule, fab command, lockable resource or None) — what jenkins/jobs is meant to say.
OPS = {
    "fetchfleet-backup-db": (
        "H 0 * * *",
        "backup.run --what db --env prod-eu",
        "fetchfleet-backup-prod-eu",
    ),
    "fetchfleet-backup-dump": (
        "H 1 * * *",
        "backup.run --what dump --env prod-eu",
        "fetchfleet-backup-prod-eu",
    ),
    "fetchfleet-backup-files": (
        "H */6 * * *",
        "backup.run --what files --env prod-eu",
        "fetchfleet-backup-prod-eu",
    ),
    "fetchfleet-backup-offsite": (
        "H 4 * * *",
        "backup.run --what offsite --env prod-eu",
        "fetchfleet-backup-prod-eu",
    ),
    "fetchfleet-backup-status": ("H * * * *", "backup.status --env prod-eu", None),
    "fetchfleet-restore-drill": (
        "H 5 * * 0",
        "backup.drill --env prod-eu",
        "fetchfleet-backup-prod-eu",
    ),
    "fetchfleet-drift-check": ("H 3 * * *", "converge --check --env prod-eu", "fetchfleet-prod-eu"),
    "fetchfleet-switchover-drill": (
        "H 10 1 * *",
        "db.switchover --env staging",
        "fetchfleet-staging",
    ),
    "fetchfleet-release-cleanup": ("H 6 * * 1", "release.prune", None),
}


@pytest.fixture(scope="module")
def jobs():
    return {name: job.element() for name, job in render(SITE).items()}


def text(root: ET.Element, path: str) -> str | None:
    node = root.find(path)
    return None if node is None else (node.text or "")


def shell_commands(node: ET.Element | None) -> list[str]:
    if node is None:
        return []
    return [c.text or "" for c in node.iter("hudson.tasks.Shell") for c in c.iter("command")]


def test_every_job_renders_and_nothing_else(jobs):
    assert set(jobs) == {*OPS, "fetchfleet-pipeline"}


def test_site_values_reach_every_job(jobs):
    for name, root in jobs.items():
        urls = {u.text for u in root.iter("url")}
        assert urls == {SITE["repo-url"]}, name
        assert "git.example.invalid" not in ET.tostring(root, encoding="unicode"), name


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_job_schedule_timeout_lock_and_command(jobs, name):
    schedule, command, lock = OPS[name]
    root = jobs[name]
    assert text(root, "triggers/hudson.triggers.TimerTrigger/spec") == schedule
    assert text(root, "concurrentBuild") == "false"
    assert text(root, "assignedNode") == "built-in"
    minutes = text(root, ".//hudson.plugins.build__timeout.BuildTimeoutWrapper//timeoutMinutes")
    assert minutes is not None and 0 < int(minutes) <= 240, f"{name}: timeout {minutes}"
    assert root.find(".//hudson.plugins.build__timeout.operations.FailOperation") is not None
    builders = shell_commands(root.find("builders"))
    assert len(builders) == 1
    lines = [ln for ln in builders[0].splitlines() if ln and not ln.startswith("#")]
    assert lines == ["make setup", f".venv/bin/fab {command}"]
    resources = text(
        root, ".//org.jenkins.plugins.lockableresources.RequiredResourcesProperty/resourceNames"
    )
    assert resources == lock
    assert text(root, ".//jenkins.model.BuildDiscarderProperty//daysToKeep") == "90"
    binding = root.find(".//org.jenkinsci.plugins.credentialsbinding.impl.FileBinding")
    assert binding is not None and text(binding, "variable") == "ANSIBLE_VAULT_PASSWORD_FILE"


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_job_pages_on_failure_and_resolves_on_success(jobs, name):
    steps = jobs[name].findall(".//org.jenkinsci.plugins.postbuildscript.model.PostBuildStep")
    by_result = {tuple(s.text for s in step.iter("string")): shell_commands(step) for step in steps}
    assert set(by_result) == {("FAILURE",), ("SUCCESS",)}
    (trigger,) = by_result[("FAILURE",)]
    (resolve,) = by_result[("SUCCESS",)]
    env = "staging" if name == "fetchfleet-switchover-drill" else "prod-eu"
    assert trigger.startswith(f".venv/bin/fab monitor.page --env {env} --action trigger ")
    assert '--dedup-key "jenkins-$JOB_NAME"' in trigger and '--link "$BUILD_URL"' in trigger
    assert resolve.strip() == (
        f'.venv/bin/fab monitor.page --env {env} --action resolve --dedup-key "jenkins-$JOB_NAME"'
    )
    assert (
        text(
            jobs[name],
            ".//org.jenkinsci.plugins.postbuildscript.PostBuildScript//markBuildUnstable",
        )
        == "true"
    )


def test_jobs_that_touch_the_backup_server_never_overlap(jobs):
    backup = {n for n, (_, _, lock) in OPS.items() if lock == "fetchfleet-backup-prod-eu"}
    assert backup == {
        "fetchfleet-backup-db",
        "fetchfleet-backup-dump",
        "fetchfleet-backup-files",
        "fetchfleet-backup-offsite",
        "fetchfleet-restore-drill",
    }


def test_pipeline_job_runs_the_jenkinsfile_on_push_with_polling_fallback(jobs):
    root = jobs["fetchfleet-pipeline"]
    assert root.tag == "flow-definition"
    definition = root.find("definition")
    assert definition is not None
    assert definition.get("class") == "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"
    assert text(definition, "scriptPath") == "jenkins/Jenkinsfile"
    assert text(definition, ".//hudson.plugins.git.BranchSpec/name") == "main"
    triggers = root.find(
        ".//org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty/triggers"
    )
    assert triggers is not None
    assert [t.tag for t in triggers] == [
        "com.cloudbees.jenkins.GitHubPushTrigger",
        "hudson.triggers.SCMTrigger",
    ]
    assert text(triggers, "hudson.triggers.SCMTrigger/spec") == "H/15 * * * *"
    props = root.find("properties")
    assert props is not None
    assert (
        props.find(
            "org.jenkinsci.plugins.workflow.job.properties.DisableConcurrentBuildsJobProperty"
        )
        is not None
    )


def test_every_job_is_marked_managed_with_the_digest_of_its_rendered_xml():
    raw = render_raw(SITE)
    for name, job in render(SITE).items():
        assert job.xml != raw[name]
        assert digest_of(job.xml) == job.digest
        desc = ET.fromstring(job.xml).find("description")
        assert desc is not None and (desc.text or "").endswith(MANAGED), name


def test_a_changed_job_gets_a_new_digest_and_the_others_keep_theirs():
    before = render(SITE)
    after = render({**SITE, "production": "prod-us"})
    changed = {n for n in before if before[n].digest != after[n].digest}
    # The switchover drill runs on staging; every other ops job names production.
    assert changed == set(OPS) - {"fetchfleet-switchover-drill"}


def test_unknown_site_value_is_refused_naming_it():
    with pytest.raises(JobsError, match="repo_url"):
        render({"repo_url": "https://x.invalid/r.git"})
