"""The contact pipe for real: Debian's munin-limits 2.0.73 (unpacked by `make setup`) reads a
datafile built from the plugins' own `config` output and states holding their values, checks the
thresholds and pipes its messages, expanded from monitoring/pager/munin-contact.txt (the text
roles/munin writes into munin.conf), to the real pager, which pages the stand-in over TLS.

munin-update (the node protocol, RRD files) is not run here: the datafile and state files it
would write are made directly. The lab runs the whole chain (see monitoring/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import fetchfleet_celery
import fetchfleet_supervisor
import pytest
from conftest import RECORDED, REPO, write_pager_config
from munin_run import Output, replay, run

from fetchfleet.pagerduty_standin import StandIn

MUNIN = Path(os.environ.get("FETCHFLEET_MUNIN_ROOT", "/var/lib/fetchfleet/munin-2.0.73-1"))
CONTACT_TEXT = (REPO / "monitoring" / "pager" / "munin-contact.txt").read_text()

# What munin-update keeps per field (state-GROUP-HOST.storable): the last two values, by RRD file.
STATE_WRITER = r"""
use strict; use warnings; use Storable; use JSON::PP;
use Munin::Master::Utils;
my ($conf, $json) = @ARGV;
munin_readconfig_base($conf);
my $config = munin_readconfig_part("datafile", 0);
my $now = time;
my $values = decode_json($json);
for my $gh (keys %$values) {
    my ($group, $host) = split /;/, $gh;
    my %state;
    for my $service (keys %{$values->{$gh}}) {
        for my $field (keys %{$values->{$gh}{$service}}) {
            my $node = munin_get_node($config, [$group, $host, $service, $field])
                or die "no field $gh $service $field in the datafile\n";
            my $value = $values->{$gh}{$service}{$field};
            $state{value}{munin_get_rrd_filename($node) . ":42"} =
                {previous => [$now - 60, $value], current => [$now, $value]};
        }
    }
    Storable::nstore(\%state, "$config->{dbdir}/state-$group-$host.storable");
}
"""


class Master:
    """A munin master directory with one contact, `pagerduty`, running the pager."""

    def __init__(self, root: Path, pager_config: Path) -> None:
        if not (MUNIN / "usr/share/munin/munin-limits").exists():
            pytest.fail(
                f"munin-limits not unpacked in {MUNIN}: run `make setup` (scripts/unpack-munin.sh)"
            )
        self.root = root
        for sub in ("db", "run", "log", "www"):
            (root / sub).mkdir()
        self.starts = root / "pager-starts"
        self.exits = root / "pager-exits"
        # A script, not an inline `sh -c`: munin-limits expands the command like the text, and
        # loops forever on a `$` that does not start `${...}` (2.0.73's message_expand).
        self.command = root / "pager-contact"
        self.command.write_text(
            f"#!/bin/sh\necho start >> {self.starts}\n{sys.executable} -m pager --config {pager_config}\n"
            f"echo $? >> {self.exits}\n"
        )
        self.command.chmod(0o755)
        self.conf = root / "munin.conf"
        self.conf.write_text(
            f"dbdir {root}/db\nhtmldir {root}/www\nlogdir {root}/log\nrundir {root}/run\n"
            f"contact.pagerduty.command {self.command}\n"
            f"contact.pagerduty.text {CONTACT_TEXT}\n"
            "[lab;web1]\n    address 10.77.0.21\n[lab;mq1]\n    address 10.77.0.51\n"
        )
        self.env = {
            **os.environ,
            "PERL5LIB": f"{MUNIN}/usr/share/perl5",
            "PYTHONPATH": str(REPO / "monitoring"),
        }

    def datafile(self, configs: dict[str, dict[str, dict[str, str]]]) -> None:
        """configs: 'group;host' -> graph -> {attribute: value}, as the plugins declared them."""
        lines = ["version 2.0.73"]
        for host, graphs in configs.items():
            for graph, attrs in graphs.items():
                lines.extend(f"{host}:{graph}.{key} {value}" for key, value in attrs.items())
        (self.root / "db" / "datafile").write_text("\n".join(lines) + "\n")
        # Converted beside, then moved in: reading the text datafile removes a storable next to it.
        converted = self.root / "datafile.storable"
        with open(converted, "wb") as out:
            self._perl(
                [
                    str(MUNIN / "usr/share/munin/munin-datafile2storable"),
                    str(self.root / "db" / "datafile"),
                ],
                stdout=out,
            )
        converted.replace(self.root / "db" / "datafile.storable")

    def values(self, values: dict[str, dict[str, dict[str, str]]]) -> None:
        writer = self.root / "state.pl"
        writer.write_text(STATE_WRITER)
        self._perl([str(writer), str(self.conf), json.dumps(values)])

    def limits(self) -> None:
        runs = len(self._lines(self.exits))
        self._perl(
            [
                str(MUNIN / "usr/share/munin/munin-limits"),
                "--config",
                str(self.conf),
                "--force-run-as-root",
            ]
        )
        # munin-limits does not wait for its contact; the pager's exit is written by its shell.
        deadline = time.monotonic() + 60
        while len(self._lines(self.exits)) == runs:
            assert time.monotonic() < deadline, f"the pager did not finish: {self.root}/log"
            time.sleep(0.1)

    def limits_unread(self) -> None:
        """A run whose pager dies before it reads the pipe (as the unit's end once killed it):
        munin-limits' state moves on all the same, and this run's messages are lost."""
        pager = self.command.read_text()
        self.command.write_text(f"#!/bin/sh\ncat >/dev/null\necho killed >> {self.exits}\n")
        try:
            self.limits()
        finally:
            self.command.write_text(pager)

    def _perl(self, argv: list[str], **kwargs) -> None:  # type: ignore[no-untyped-def]
        done = subprocess.run(
            ["perl", *argv], env=self.env, stderr=subprocess.PIPE, text=True, **kwargs
        )
        assert done.returncode == 0, done.stderr

    @staticmethod
    def _lines(path: Path) -> list[str]:
        return path.read_text().split() if path.exists() else []


@pytest.fixture
def master(tmp_path: Path, standin: StandIn, tls) -> Master:
    pager_config = write_pager_config(
        tmp_path,
        standin,
        tls,
        runbook_url="https://ops1.lab.internal/runbooks",
        munin_url="https://ops1.lab.internal/munin",
    )
    (tmp_path / "master").mkdir()
    return Master(tmp_path / "master", pager_config)


def plugin_output(tmp_path: Path, web_status: Path, queues: str):  # type: ignore[no-untyped-def]
    supervisor = {"supervisorctl": replay(tmp_path, "supervisorctl", web_status, code=3)}
    celery = {"rabbitmqctl": replay(tmp_path, "rabbitmqctl", queues)}
    return (
        run(
            fetchfleet_supervisor.Supervisor,
            "config",
            env={**supervisor, "MUNIN_CAP_DIRTYCONFIG": "1"},
        ),
        run(fetchfleet_celery.Celery, "config", env={**celery, "MUNIN_CAP_DIRTYCONFIG": "1"}),
    )


def feed(master: Master, tmp_path: Path, web_status: Path, queues: str) -> tuple[Output, Output]:
    """plugin_output's web1 and mq1 in the master's datafile and states; returns that output."""
    web, mq = plugin_output(tmp_path, web_status, queues)
    master.datafile({"lab;web1": web.config, "lab;mq1": mq.config})
    master.values({"lab;web1": web.values, "lab;mq1": mq.values})
    return web, mq


def test_munin_limits_pages_through_one_pipe_and_resolves(
    master: Master, standin: StandIn, tmp_path: Path
) -> None:
    web, _ = feed(
        master,
        tmp_path,
        RECORDED / "supervisor" / "status-mixed-rc3.txt",
        "transfers\t3\t0\t0\nmedia\t0\t0\t1\nindex\t0\t0\t1\n",
    )
    master.limits()
    assert master._lines(master.starts) == ["start"], "one pipe for every message of a run"
    triggers = {e["dedup_key"]: e for e in standin.events if e["event_action"] == "trigger"}
    assert set(triggers) == {
        "munin/web1/fetchfleet_supervisor_programs/cloudfetch_beat",
        "munin/web1/fetchfleet_supervisor_programs/cloudfetch_worker",
        "munin/web1/fetchfleet_supervisor_programs/oneshot",
        "munin/mq1/fetchfleet_celery_consumers/transfers",
    }
    page = triggers["munin/mq1/fetchfleet_celery_consumers/transfers"]
    assert page["payload"]["severity"] == "critical"
    assert (
        page["payload"]["summary"]
        == "mq1: Celery consumers per queue (cloudfetch): transfers is 0 (critical: below 1)"
    )
    assert page["payload"]["custom_details"]["critical"] == "1:"
    assert (
        page["links"][0]["href"]
        == "https://ops1.lab.internal/runbooks/fetchfleet_celery_consumers.md"
    )

    # The worker is back: munin-limits sends the recovered field, the pager resolves it.
    standin.reset()
    _, mq = plugin_output(
        tmp_path,
        RECORDED / "supervisor" / "status-mixed-rc3.txt",
        "transfers\t0\t0\t1\nmedia\t0\t0\t1\nindex\t0\t0\t1\n",
    )
    master.values({"lab;web1": web.values, "lab;mq1": mq.values})
    master.limits()
    assert [(e["event_action"], e["dedup_key"]) for e in standin.events] == [
        ("resolve", "munin/mq1/fetchfleet_celery_consumers/transfers")
    ]
