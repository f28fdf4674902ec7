"""Every `fab`/`make` command a Jenkins job, the Jenkinsfile or `fab pipeline` runs exists in
`fab --list` (with every option it is given) or in the Makefile — or is PENDING: a command
another issue is adding. Empty PENDING as the commands land; the test says when one has."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fetchfleet import pipeline as P
from fetchfleet.jenkins import commands as C
from fetchfleet.jenkins.jenkinsfile import outline
from fetchfleet.jenkins.jobs import render

# Commands the jobs and the pipeline call that other work is adding (task, or "task --option").
PENDING = frozenset(
    {
        "backup.run",  # issue 11: fab backup.run --what db|dump|files|offsite
        "backup.status",  # issue 11
        "backup.drill",  # issue 11
        "db.switchover",  # issue 12
    }
)


def job_commands() -> list[C.Command]:
    found = []
    for job in render().values():
        for shell in job.element().iter("hudson.tasks.Shell"):
            found += C.parse(shell.findtext("command") or "")
    return found


def jenkinsfile_commands() -> list[C.Command]:
    o = outline()
    scripts = [c for s in o.stages for c in s.commands]
    scripts += [c for s in o.stages for cmds in s.post.values() for c in cmds]
    scripts += [c for cmds in o.post.values() for c in cmds]
    return [cmd for script in scripts for cmd in C.parse(script)]


@pytest.fixture(scope="module")
def everything() -> list[C.Command]:
    pipeline = [cmd for line in P.commands(page=True) for cmd in C.parse(line)]
    return job_commands() + jenkinsfile_commands() + pipeline


def test_every_command_exists_or_is_pending(everything):
    assert len(everything) > 20
    problems = C.missing(everything, PENDING)
    assert not problems, "commands that do not exist and are not PENDING:\n" + "\n".join(problems)


def test_pending_lists_only_commands_still_missing(everything):
    done = C.pending_done(everything, PENDING)
    assert not done, f"these exist now, remove them from PENDING: {done}"
    used = {key for cmd in everything for key in cmd.pending_keys()}
    unused = sorted(PENDING - used)
    assert not unused, f"PENDING names commands nothing calls: {unused}"


def test_what_is_pending_is_reported_by_name(everything):
    """The report a lead reads while the pending commands land."""
    problems = C.missing(everything)
    named = {p.split(":")[0] for p in problems}
    assert named == {
        "fab backup.run",
        "fab backup.status",
        "fab backup.drill",
        "fab db.switchover",
    }


def test_a_continued_line_is_one_command():
    (cmd,) = C.parse(
        '.venv/bin/fab monitor.page --env x \\\n  --severity warning \\\n  --summary "a b"\n'
    )
    assert cmd.name == "monitor.page" and cmd.options == ("--env", "--severity", "--summary")


def test_a_misspelt_command_or_option_is_caught():
    bad = C.parse(
        ".venv/bin/fab converge --chek --env x\nmake lintt\nfab backup.stat\n# fab not-a-command"
    )
    problems = C.missing(bad, PENDING)
    assert len(problems) == 3
    assert "fab converge: no option --chek" in problems[0]
    assert "make lintt: no such target" in problems[1]
    assert "fab backup.stat: no such task" in problems[2]


def test_parse_reads_tasks_options_and_targets():
    (fab, setup, lint, fab2) = C.parse(
        '#!/bin/bash -e\n.venv/bin/fab deploy --env "$E" --release=x --message "a b"\n'
        "make setup lint V=1\nfab smoke"
    )
    assert (fab.tool, fab.name, fab.options) == (
        "fab",
        "deploy",
        ("--env", "--release", "--message"),
    )
    assert [(c.tool, c.name) for c in (setup, lint)] == [("make", "setup"), ("make", "lint")]
    assert fab2.name == "smoke"


def test_the_task_list_is_what_fab_lists():
    """The in-process list is the one `fab --list` prints."""
    repo = Path(__file__).resolve().parents[2]
    fab = Path(sys.executable).parent / "fab"
    listed = subprocess.run(
        [str(fab), "--list", "--list-format", "json"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def names_of(collection: dict, prefix: str = "") -> set[str]:
        found = {prefix + t["name"] for t in collection["tasks"]}
        for sub in collection["collections"]:
            found |= names_of(sub, f"{prefix}{sub['name']}.")
        return found

    names = names_of(json.loads(listed))
    assert names <= set(C.fab_tasks())
    assert {"converge", "smoke", "pipeline.run", "jenkins.sync", "release.prune"} <= names
    assert "pipeline" in C.fab_tasks()  # the collection's default task, `fab pipeline`
    assert "--check" in C.fab_tasks()["converge"]
