"""fetchfleet_supervisor against `supervisorctl status` output recorded from a real supervisord
(4.2.5, the version in Debian 12) with a running, a starting, a stopped, a fatal and an exited
program. Lab: on web1 `supervisorctl stop cloudfetch-web`, then `munin-run fetchfleet_supervisor`
must report cloudfetch_web 0."""

from __future__ import annotations

from pathlib import Path

import fetchfleet_supervisor as plugin
from conftest import RECORDED
from munin_run import replay, run

SUPERVISOR = RECORDED / "supervisor"


def test_parses_every_state_of_a_real_status() -> None:
    assert plugin.parse_status((SUPERVISOR / "status-mixed-rc3.txt").read_text()) == {
        "cloudfetch-beat": "STOPPED",
        "cloudfetch-web": "RUNNING",
        "cloudfetch-worker": "FATAL",
        "oneshot": "EXITED",
    }


def test_programs_not_running_are_zero_and_critical(tmp_path: Path) -> None:
    ctl = replay(tmp_path, "supervisorctl", SUPERVISOR / "status-mixed-rc3.txt", code=3)
    config = run(plugin.Supervisor, "config", env={"supervisorctl": ctl})
    fetch = run(plugin.Supervisor, env={"supervisorctl": ctl})
    assert config.code == fetch.code == 0 and fetch.stderr == ""
    assert fetch.values["fetchfleet_supervisor_up"] == {"up": "1"}
    assert fetch.values["fetchfleet_supervisor_programs"] == {
        "cloudfetch_beat": "0",
        "cloudfetch_web": "1",
        "cloudfetch_worker": "0",
        "oneshot": "0",
    }
    programs = config.config["fetchfleet_supervisor_programs"]
    assert programs["cloudfetch_web.label"] == "cloudfetch-web"
    assert programs["cloudfetch_worker.critical"] == "1:"


def test_an_expected_program_that_is_missing_is_down(tmp_path: Path) -> None:
    ctl = replay(tmp_path, "supervisorctl", SUPERVISOR / "status-running-rc0.txt")
    env = {"supervisorctl": ctl, "programs": "cloudfetch-web cloudfetch-worker"}
    fetch = run(plugin.Supervisor, env=env)
    assert fetch.values["fetchfleet_supervisor_programs"] == {
        "cloudfetch_beat": "1",
        "cloudfetch_web": "1",
        "cloudfetch_worker": "0",
    }


def test_supervisord_down_reports_down_and_unknowns(tmp_path: Path) -> None:
    ctl = replay(tmp_path, "supervisorctl", SUPERVISOR / "status-down-rc4.txt", code=4)
    fetch = run(plugin.Supervisor, env={"supervisorctl": ctl, "programs": "cloudfetch-web"})
    assert fetch.code == 0
    assert fetch.values["fetchfleet_supervisor_up"] == {"up": "0"}
    assert fetch.values["fetchfleet_supervisor_programs"] == {"cloudfetch_web": "U"}
    assert "no such file" in fetch.stderr and fetch.stdout.count("U") == 1
