#!/usr/bin/python3
"""fetchfleet_supervisor: every supervisor program of this host, RUNNING or not (web, workers).

Reads `supervisorctl status` (runs as root: supervisor's socket is root's). A program counts as
up while RUNNING or STARTING (supervisor bringing it up, as during a deploy's restart); STOPPED,
BACKOFF, FATAL, EXITED, STOPPING and UNKNOWN count as down, and page.

    [fetchfleet_supervisor]
    user root
    env.supervisorctl /usr/bin/supervisorctl
    env.programs cloudfetch-web      # expected programs: reported (as down) even when missing

Magic markers (munin-node-configure):
#%# family=auto
#%# capabilities=autoconf
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from typing import ClassVar

from muninplugin import Field, Graph, Plugin, Unavailable, Values, main, unique_fieldnames

STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN")
UP_STATES = ("RUNNING", "STARTING")
# supervisorctl status exits 3 when some program is not running: the output is still complete.
_STATUS_OK = (0, 3)


def parse_status(text: str) -> dict[str, str]:
    """Program name (group:name for groups) -> state, from `supervisorctl status` output."""
    programs = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[1] in STATES:
            programs[parts[0]] = parts[1]
    return programs


class Supervisor(Plugin):
    name = "fetchfleet_supervisor"
    service = "supervisord"
    up_category = "supervisor"
    alerts: ClassVar[dict[str, str]] = {
        "fetchfleet_supervisor_up": "supervisord does not answer supervisorctl on this host",
        "fetchfleet_supervisor_programs": "a supervisor program on this host is not RUNNING",
    }

    def collect(self) -> dict[str, str]:
        command = shlex.split(self.setting("supervisorctl", "/usr/bin/supervisorctl"))
        try:
            done = subprocess.run([*command, "status"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise Unavailable(f"{' '.join(command)} status: {err}") from err
        programs = parse_status(done.stdout)
        if done.returncode not in _STATUS_OK or (done.returncode == 3 and not programs):
            detail = (done.stdout + done.stderr).strip() or f"exit status {done.returncode}"
            raise Unavailable(f"{' '.join(command)} status: {detail}")
        return programs

    def _names(self, snapshot: dict[str, str] | None) -> dict[str, str]:
        return unique_fieldnames(sorted({*self.list_setting("programs"), *(snapshot or {})}))

    def graphs(self, snapshot: dict[str, str] | None) -> list[Graph]:
        fields = tuple(
            Field(
                field,
                program,
                min=0,
                max=1,
                critical="1:",
                info=f"1 while supervisor's {program} is RUNNING or STARTING, 0 otherwise",
            )
            for program, field in self._names(snapshot).items()
        )
        return [
            Graph(
                "fetchfleet_supervisor_programs",
                "Supervisor programs running",
                "running (1) or not (0)",
                "supervisor",
                fields,
                info="Each program supervisor manages on this host; 0 pages (runbook: not RUNNING).",
                args="--base 1000 -l 0 -u 1",
            )
        ]

    def values(self, snapshot: dict[str, str]) -> Values:
        return {
            "fetchfleet_supervisor_programs": {
                field: int(snapshot.get(program) in UP_STATES)
                for program, field in self._names(snapshot).items()
            }
        }


if __name__ == "__main__":
    sys.exit(main(Supervisor))
