"""jenkins/Jenkinsfile compiled by Groovy 2.4 (Jenkins' own Pipeline version) and its stages read
from the syntax tree, compared with fetchfleet.pipeline's — the stages `make pipeline` runs.

What an offline check cannot see (no Jenkins here): whether the declarative validator and the
controller's plugins accept every directive and step, credential ids, and run-time behaviour.
The local runner is exercised for real (real bash, real make) in a scratch checkout whose
`.venv/bin/fab` is a script standing in for the fleet: it records each call and fails where the
test says a deploy or smoke fails.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fetchfleet import pipeline as P
from fetchfleet.jenkins.jenkinsfile import JENKINSFILE, JenkinsfileError, outline


@pytest.fixture(scope="module")
def jf():
    return outline()


def stage(jf, name):
    (found,) = [s for s in jf.stages if s.name == name]
    return found


def test_stages_are_in_the_order_of_the_local_pipeline(jf):
    leaves = [s.name for s in jf.stages if s.name not in ("Staging", "Production")]
    assert leaves == list(P.JENKINS_ORDER)
    assert set(P.JENKINS_ONLY) <= set(leaves)


def test_each_stage_runs_exactly_the_command_of_the_local_pipeline(jf):
    for local in P.STAGES:
        remote = stage(jf, local.name)
        assert remote.commands == [local.command], local.name
        assert remote.post.get("failure", []) == ([local.on_failure] if local.on_failure else [])
    for name in P.JENKINS_ONLY:
        assert stage(jf, name).commands == []


def test_no_stage_holds_logic_of_its_own(jf):
    """Steps allowed: one sh, and Jenkins' own plumbing (checkout, archive, milestone, the id)."""
    allowed = {"sh", "checkout", "archiveArtifacts", "milestone", "script"}
    for s in jf.stages:
        assert set(s.steps) <= allowed, (s.name, s.steps)
        assert s.steps.count("sh") <= 1, s.name
    (build,) = [s for s in jf.stages if "script" in s.steps]
    assert build.name == "Build release"


def test_the_release_is_built_once_and_archived(jf):
    commands = [c for s in jf.stages for c in s.commands]
    assert [c for c in commands if "release.build" in c] == [
        ".venv/bin/fab release.build --out build"
    ]
    assert "archiveArtifacts" in stage(jf, "Build release").steps
    deploys = [c for c in commands if " deploy " in c]
    assert len(deploys) == 2 and all('--release "$RELEASE_ID"' in c for c in deploys)


def test_staging_and_production_are_locked_and_production_waits_for_a_person(jf):
    for parent, child in (("Staging", "Deploy to staging"), ("Production", "Deploy to production")):
        var = "STAGING_ENV" if parent == "Staging" else "PRODUCTION_ENV"
        assert stage(jf, parent).options == [
            {"call": "lock", "args": [{"resource": f"fetchfleet-$params.{var}"}]}
        ]
        assert stage(jf, child).path == (parent,)
    gate = stage(jf, "Approve production")
    assert gate.input == {"message": "Deploy this release to production?", "ok": "Deploy"}
    assert [w["call"] for w in gate.when] == ["beforeInput", "expression"]
    assert gate.milestones == [10]
    assert stage(jf, "Deploy to production").milestones == [20]
    assert stage(jf, "Deploy to production").steps == ["milestone", "sh"]
    params = {p["name"]: p for p in jf.parameters}
    assert params["CONFIRM_PRODUCTION"]["type"] == "booleanParam"
    assert params["CONFIRM_PRODUCTION"]["defaultValue"] is True


def test_pipeline_options_timeouts_and_notifications(jf):
    calls = [o["call"] for o in jf.options]
    assert {"disableConcurrentBuilds", "buildDiscarder", "timeout", "skipDefaultCheckout"} <= set(
        calls
    )
    for s in jf.stages:
        if s.commands:
            assert [o["call"] for o in s.options] == ["timeout"], s.name
    assert jf.post == {"failure": [P.NOTIFY_FAILURE], "success": [P.NOTIFY_SUCCESS]}


def test_a_syntax_error_is_reported_with_its_line(tmp_path):
    broken = tmp_path / "Jenkinsfile"
    lines = JENKINSFILE.read_text().splitlines()
    lines[40] += " {"  # one unbalanced brace
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(JenkinsfileError, match=r"does not compile:[\s\S]*line \d+"):
        outline(broken)


def test_a_scripted_pipeline_is_refused(tmp_path):
    scripted = tmp_path / "Jenkinsfile"
    scripted.write_text("node { sh 'make test' }\n")
    with pytest.raises(JenkinsfileError, match="not a declarative pipeline"):
        outline(scripted)


# --- the local runner, for real, against a stand-in fleet ---------------------------------------

FAKE_FAB = """#!/bin/bash
# Stand-in for the fleet: log the call with the pipeline's variables, fail where asked.
echo "$* | release=${RELEASE_ID:-} staging=$STAGING_ENV production=$PRODUCTION_ENV" >> calls.log
case "$1" in
  release.build) mkdir -p build; echo 20261202T010203Z-abc1234 > build/release.id ;;
esac
for pattern in "${FAIL_ON:-}" "${FAIL_TOO:-}"; do
  if [ -n "$pattern" ] && [[ "$*" == $pattern ]]; then echo "failing: $*" >&2; exit 3; fi
done
"""


@pytest.fixture
def checkout(tmp_path):
    (tmp_path / "Makefile").write_text(
        "".join(
            f"{t}:\n\t@echo make {t} >> calls.log\n" for t in ("setup", "lint", "unit", "app-test")
        )
    )
    fab = tmp_path / ".venv" / "bin" / "fab"
    fab.parent.mkdir(parents=True)
    fab.write_text(FAKE_FAB)
    fab.chmod(fab.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def calls(checkout: Path) -> list[str]:
    return (checkout / "calls.log").read_text().splitlines()


def test_local_run_builds_once_and_deploys_the_same_release_twice(checkout):
    report = P.run("stage1", "prod1", cwd=checkout, out=lambda _: None)
    assert report.failed is None and report.release == "20261202T010203Z-abc1234"
    assert [s.result for s in report.stages] == ["ok"] * len(P.STAGES)
    seen = calls(checkout)
    assert seen[:4] == ["make setup", "make lint", "make unit", "make app-test"]
    rel = "release=20261202T010203Z-abc1234 staging=stage1 production=prod1"
    assert seen[4:] == [
        "release.build --out build | release= staging=stage1 production=prod1",
        f"deploy --env stage1 --release 20261202T010203Z-abc1234 --message {report_message(seen[5])} | {rel}",
        f"smoke --env stage1 --release 20261202T010203Z-abc1234 | {rel}",
        f"deploy --env prod1 --release 20261202T010203Z-abc1234 --message {report_message(seen[7])} | {rel}",
        f"smoke --env prod1 --release 20261202T010203Z-abc1234 | {rel}",
    ]


def report_message(line: str) -> str:
    message = line.split("--message ", 1)[1].split(" | ")[0]
    assert message.startswith("pipeline ") and " by " in message
    return message


def test_a_broken_release_stops_at_staging_smoke_rolls_staging_back_and_spares_production(
    checkout, monkeypatch
):
    monkeypatch.setenv("FAIL_ON", "smoke --env stage1*")
    report = P.run("stage1", "prod1", skip_tests=True, cwd=checkout, out=lambda _: None)
    assert report.failed == "Smoke staging"
    results = {s.name: s.result for s in report.stages}
    assert results == {
        "Setup": "ok",
        "Lint": "skipped",
        "Unit tests": "skipped",
        "App tests": "skipped",
        "Build release": "ok",
        "Deploy to staging": "ok",
        "Smoke staging": "FAILED",
        "Deploy to production": "not run",
        "Smoke production": "not run",
    }
    seen = calls(checkout)
    assert seen[-1].startswith(
        "pipeline.rollback --env stage1 --release 20261202T010203Z-abc1234 |"
    )
    assert not [c for c in seen if "prod1 " in c.split("|")[0] or "--env prod1" in c]
    assert "rolled back" in next(s.note for s in report.stages if s.name == "Smoke staging")
    assert "FAILED at Smoke staging" in P.summary(report)


def test_a_failed_rollback_is_said_in_the_summary(checkout, monkeypatch):
    monkeypatch.setenv("FAIL_ON", "deploy --env prod1*")
    monkeypatch.setenv("FAIL_TOO", "pipeline.rollback*")
    report = P.run("stage1", "prod1", skip_tests=True, cwd=checkout, out=lambda _: None)
    assert report.failed == "Deploy to production"
    note = next(s.note for s in report.stages if s.name == "Deploy to production")
    assert note == "exit 3; ROLLBACK FAILED (exit 3)"


# --- which release a rollback goes back to ------------------------------------------------------

R0, R1, R2 = "20261201T000000Z-aaa0000", "20261202T000000Z-bbb1111", "20261203T000000Z-ccc2222"


def deploy(env, release, previous, result="ok"):
    return {
        "env": env,
        "action": "deploy",
        "release": release,
        "previous": previous,
        "result": result,
    }


def test_undo_goes_back_to_what_ran_before_the_deploy_not_to_the_older_id():
    # R2 ran, then the older R1 was deployed (a redeploy): undoing R1 means R2 again.
    audit = [deploy("staging", R2, R0), deploy("staging", R1, R2)]
    assert P.undo_target("staging", R1, {"web1": R1, "web2": R1}, audit) == R2


def test_undo_does_nothing_when_no_host_runs_the_release():
    audit = [deploy("staging", R1, R0, result="failed")]
    assert P.undo_target("staging", R1, {"web1": R0, "web2": R0}, audit) is None


def test_undo_of_a_half_switched_fleet_uses_the_audit_record():
    audit = [deploy("staging", R1, R0, result="failed")]
    assert P.undo_target("staging", R1, {"web1": R1, "web2": R0}, audit) == R0


def test_undo_without_a_record_refuses_and_says_what_to_run():
    audit = [deploy("staging", R2, R0)]
    with pytest.raises(
        P.PipelineError, match=r"web1 run .*fab rollback --env staging --to RELEASE"
    ):
        P.undo_target("staging", R1, {"web1": R1}, audit)
    with pytest.raises(P.PipelineError, match="no deploy of it"):
        P.undo_target("staging", R1, {"web1": R1}, [deploy("staging", R1, None)])
