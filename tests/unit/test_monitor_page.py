"""`fab monitor.page`, `monitor.flush` and `monitor.test-page` against the PagerDuty stand-in over
TLS, with the real `pagerduty` client and the pager's own spool: the endpoint and CA come from a
throw-away inventory, the routing key from its vault variable (resolved by Ansible in the test
that runs `fab` as Jenkins does; from FETCHFLEET_PAGERDUTY_ROUTING_KEY in the others)."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, ROUTING_KEY, write_pager_config

from fetchfleet.inventory import Host
from fetchfleet.monitoring import paging
from fetchfleet.pagerduty_standin import StandIn
from fetchfleet.remote import Local, Result

FAB = Path(sys.executable).parent / "fab"


@pytest.fixture
def inventory(tmp_path: Path, standin: StandIn, tls, monkeypatch) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        web1: {ansible_host: 10.9.0.21}\n"
        "    monitoring:\n      hosts:\n        ops1: {ansible_host: 10.9.0.81}\n"
    )
    (inv / "group_vars" / "all" / "monitoring.yml").write_text(
        f"munin_pager_events_url: {standin.url}\nmunin_pager_ca_file: {tls.ca_cert}\n"
        f"vault_pagerduty_routing_key: {ROUTING_KEY}\n"
    )
    monkeypatch.setenv(paging.SPOOL_ENV, str(tmp_path / "spool"))
    monkeypatch.setenv(paging.ROUTING_KEY_ENV, ROUTING_KEY)
    return inv


def trigger(key: str = "jenkins-fetchfleet-backup-db", **kw) -> dict:
    args = {"severity": "critical", "source": "jenkins", "dedup_key": key}
    args |= {"summary": "Jenkins: fetchfleet-backup-db #7 failed", "link": "https://ci/job/7/"}
    return paging.build_event("trigger", **(args | kw))


def page(inventory: Path, event: dict) -> paging.Paged:
    return paging.page(str(inventory), event, io.StringIO())


def test_jenkins_command_line_pages_with_the_vaults_routing_key(
    inventory: Path, standin: StandIn, tmp_path: Path
) -> None:
    """Exactly what jenkins/jobs/defaults.yaml runs on a failure, then on the next success."""
    environ = {k: v for k, v in os.environ.items() if k != paging.ROUTING_KEY_ENV}
    trigger_line = (
        f"{FAB} monitor.page --env {inventory} --action trigger --severity critical "
        '--source jenkins --dedup-key "jenkins-fetchfleet-backup-db" --link "https://ci/job/7/" '
        '--summary "Jenkins: fetchfleet-backup-db #7 failed (db)"'
    )
    resolve_line = f'{FAB} monitor.page --env {inventory} --action resolve --dedup-key "jenkins-fetchfleet-backup-db"'
    for line in (trigger_line, resolve_line):
        done = subprocess.run(
            shlex.split(line), cwd=REPO, env=environ, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "accepted by PagerDuty" in done.stdout
    sent, resolved = standin.events
    assert sent["routing_key"] == ROUTING_KEY, "the key of the inventory's vault variable"
    assert sent["dedup_key"] == resolved["dedup_key"] == "jenkins-fetchfleet-backup-db"
    assert sent["payload"]["severity"] == "critical" and sent["payload"]["source"] == "jenkins"
    assert sent["payload"]["summary"] == "Jenkins: fetchfleet-backup-db #7 failed (db)"
    assert sent["links"] == [{"href": "https://ci/job/7/", "text": "Details"}]
    assert resolved["event_action"] == "resolve"


def test_a_500_spools_the_page_and_the_next_one_sends_both_in_order(
    inventory: Path, standin: StandIn
) -> None:
    standin.plan(500, 500)  # the client's one retry fails too
    first = page(inventory, trigger("k1"))
    assert first.status == "spooled" and "HTTP 500" in first.detail
    second = page(inventory, trigger("k2"))
    assert second.status == "sent" and second.others_sent == 1
    assert [e["dedup_key"] for e in standin.events] == ["k1", "k2"]
    assert [r.status for r in standin.requests] == [500, 500, 202, 202]


def test_a_429_is_retried_once_then_spooled_and_flush_sends_it(
    inventory: Path, standin: StandIn
) -> None:
    standin.plan(429, 429)
    assert page(inventory, trigger()).status == "spooled"
    assert len(standin.requests) == 2, "capped: the client alone would retry a 429 forever"
    outcome = paging.flush(str(inventory), io.StringIO())
    assert (outcome.sent, outcome.left) == (1, 0) and len(standin.events) == 1


def test_no_network_spools_and_loses_nothing(inventory: Path, tls, tmp_path: Path) -> None:
    with StandIn(tls) as gone:
        url = gone.url
    (inventory / "group_vars" / "all" / "monitoring.yml").write_text(
        f"munin_pager_events_url: {url}\nmunin_pager_ca_file: {tls.ca_cert}\n"
    )
    paged = page(inventory, trigger())
    assert paged.status == "spooled" and "will retry" in paged.detail
    assert len(list((tmp_path / "spool" / "inv" / "queue").glob("*.json"))) == 1


def test_a_bad_routing_key_spools_and_a_good_one_sends_later(
    inventory: Path, standin: StandIn, monkeypatch
) -> None:
    monkeypatch.setenv(paging.ROUTING_KEY_ENV, "too-short")
    paged = page(inventory, trigger())
    assert paged.status == "spooled" and "9 characters, not 32" in paged.detail
    assert standin.requests == []
    monkeypatch.setenv(paging.ROUTING_KEY_ENV, ROUTING_KEY)
    assert paging.flush(str(inventory), io.StringIO()).sent == 1


def test_an_event_pagerduty_refuses_is_kept_aside_and_is_a_failure(
    inventory: Path, standin: StandIn
) -> None:
    event = {**trigger(), "links": [{"text": "no href"}]}
    paged = page(inventory, event)
    assert paged.status == "rejected" and "links" in paged.detail
    assert len(list(paged.spool.glob("*.json"))) == 1


def test_neither_sent_nor_spooled_is_the_one_failure(
    inventory: Path, tls, tmp_path: Path, monkeypatch, standin: StandIn
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv(paging.SPOOL_ENV, str(blocker))
    sent = page(inventory, trigger("unspooled"))
    assert sent.status == "sent" and "not spooled" in sent.detail
    standin.plan(503, 503)
    with pytest.raises(paging.PageError, match=r"neither sent \(.*\) nor spooled \(cannot spool"):
        page(inventory, trigger("lost"))


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"action": "page"}, "--action 'page': one of trigger, resolve"),
        ({"action": "resolve"}, "--action resolve needs --dedup-key"),
        ({"severity": "high", "summary": "s"}, "--severity 'high': one of critical"),
        ({"severity": "info"}, "needs --summary"),
        ({"severity": "info", "summary": "x" * 1025}, "--summary is 1025 characters"),
        ({"severity": "info", "summary": "s", "link": "ci/job/7"}, "--link 'ci/job/7' must be"),
        (
            {"severity": "info", "summary": "s", "dedup_key": "k" * 256},
            "--dedup-key must be 1 to 255",
        ),
    ],
)
def test_bad_options_are_refused_naming_the_value(args: dict, error: str) -> None:
    action = args.pop("action", "trigger")
    with pytest.raises(paging.PageError, match=error.replace("(", r"\(")):
        paging.build_event(action, **args)


def test_a_trigger_without_a_key_gets_one_to_resolve_it_with(inventory: Path) -> None:
    event = paging.build_event("trigger", severity="warning", summary="disk", source="db1")
    assert event["dedup_key"].startswith("fab/db1/")
    assert event["payload"]["custom_details"]["sent_by"]


def test_the_fab_task_exits_non_zero_on_bad_input_and_sends_nothing(
    inventory: Path, standin: StandIn
) -> None:
    done = subprocess.run(
        [str(FAB), "monitor.page", "--env", str(inventory), "--action", "trigger", "--severity", "high"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1 and "--severity 'high'" in done.stderr
    assert standin.requests == []


class PagerHost:
    """A converged monitoring host: `fetchfleet-pager test` runs the real pager here."""

    def __init__(self, config: Path) -> None:
        self.config, self.name = config, "ops1"

    def run(self, command: str, stdin=None, check: bool = True, timeout: float = 600) -> Result:
        assert command.startswith(paging.PAGER_COMMAND + " test ")
        argv = command.removeprefix(paging.PAGER_COMMAND)
        real = f"PYTHONPATH={REPO / 'monitoring'} {sys.executable} -m pager --config {self.config}{argv}"
        return Local().run(real, check=check, timeout=timeout)


def test_test_page_goes_both_ways_and_resolves_each(
    inventory: Path, standin: StandIn, tls, tmp_path: Path
) -> None:
    config = write_pager_config(
        tmp_path, standin, tls, spool="ops1-spool", runbook_url="http://10.9.0.81/runbooks"
    )
    host = PagerHost(config)

    def connect(h: Host) -> PagerHost:
        assert h.name == "ops1"
        return host

    rows = paging.test_page(str(inventory), connect, io.StringIO())
    assert [r["way"].split(" ")[0] for r in rows] == ["this", "ops1's"]
    assert all(
        r["trigger"].startswith("accepted") and r["resolve"].startswith("accepted") for r in rows
    )
    keys = [r["dedup_key"] for r in rows]
    assert [(e["event_action"], e["dedup_key"]) for e in standin.events] == [
        ("trigger", keys[0]), ("resolve", keys[0]), ("trigger", keys[1]), ("resolve", keys[1]),
    ]  # fmt: skip
    assert standin.events[0]["links"][0]["href"] == "http://10.9.0.81/runbooks/test_page.md"


def test_test_page_names_a_way_that_fails(inventory: Path, standin: StandIn) -> None:
    class Broken:
        name = "ops1"

        def run(self, command: str, stdin=None, check: bool = True, timeout: float = 600) -> Result:
            return Result(
                "ops1", command, 2, "", "fetchfleet-pager: routing key: No such file", 0.1
            )

    rows = paging.test_page(str(inventory), lambda h: Broken(), io.StringIO())
    assert rows[0]["resolve"].startswith("accepted")
    assert rows[1]["trigger"] == "FAILED" and "routing key: No such file" in rows[1]["detail"]


def test_a_resolve_that_fails_after_the_test_trigger_is_spooled_not_lost(
    inventory: Path, standin: StandIn
) -> None:
    standin.plan(202, 500, 500, 500, 500)  # the resolve, its retry, and the spool's two tries

    class Absent:
        name = "ops1"

        def run(self, command: str, stdin=None, check: bool = True, timeout: float = 600) -> Result:
            return Result("ops1", command, 127, "", "fetchfleet-pager: not found", 0.0)

    here = paging.test_page(str(inventory), lambda h: Absent(), io.StringIO())[0]
    assert here["trigger"].startswith("accepted") and here["resolve"] == "FAILED, spooled"
    assert paging.flush(str(inventory), io.StringIO()).sent == 1
    assert [e["event_action"] for e in standin.events] == ["trigger", "resolve"]
