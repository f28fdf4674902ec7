"""The pager honours silences: a trigger a silence covers is held (not sent, named in the log),
a resolve always goes out, and a trigger still open when its silence ends is sent then, marked
"silenced by <reason>". The silences are written by the real remote program, the events go
through the real `pagerduty` client to the stand-in over TLS, and the munin-limits tests run
Debian's real munin-limits through the pager's pipe (test_munin_limits's master): during a
silence, and when a repair's OK never reached the pager after the silence paged (the pager then
resolves from munin-limits' state file, and from nothing when it cannot read that file)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import RECORDED, write_pager_config
from pager import cli
from test_munin_limits import Master, feed

from fetchfleet.pagerduty_standin import StandIn
from fetchfleet.remote import Local, run_program

PROGRAMS = "fetchfleet_supervisor_programs"


def message(host: str, state: str, field: str = "cloudfetch_web", value: str = "0.00") -> str:
    return (
        f"FETCHFLEET-ALERT 1\ngroup lab\nhost {host}\nplugin {PROGRAMS}\n"
        "title Supervisor programs running\ncategory supervisor\n"
        f"field {state}\t{field}\t{value}\t:\t1:\t{field}\nFETCHFLEET-END\n"
    )


@pytest.fixture
def pager(tmp_path: Path, standin: StandIn, tls) -> Path:
    config = write_pager_config(
        tmp_path, standin, tls, runbook_url="https://ops1/runbooks", munin_url="https://ops1/munin"
    )
    (tmp_path / "spool").mkdir()
    return config


def silences(config: Path, *args: str) -> dict:
    """The remote program, run here on the file the pager's configuration names."""
    path = cli.load_config(config).silence_file
    return run_program(Local(), "silences", str(path), *args)


def add(config: Path, hosts: list[str], reason: str = "fab deploy of R2 on lab") -> dict:
    spec = {"id": "s-test", "hosts": hosts, "alerts": ["fetchfleet_supervisor_*"], "minutes": 30}
    return silences(config, "add", json.dumps({**spec, "reason": reason, "who": "alice@ctl"}))


def pipe(config: Path, text: str) -> str:
    log = io.StringIO()
    assert cli.main(["--config", str(config)], stdin=io.StringIO(text), log=log) == 0
    return log.getvalue()


def flush(config: Path) -> str:
    out, log = io.StringIO(), io.StringIO()
    assert cli.main(["--config", str(config), "flush", "--now"], out=out, log=log) == 0
    return log.getvalue() + out.getvalue()


def test_the_default_silence_file_is_in_the_spool(pager: Path, tmp_path: Path) -> None:
    assert cli.load_config(pager).silence_file == tmp_path / "spool" / "silences.json"


def test_a_silenced_trigger_is_held_and_others_go_out(pager: Path, standin: StandIn) -> None:
    add(pager, ["web1"])
    log = pipe(pager, message("web1", "critical") + message("web2", "critical"))
    assert [e["dedup_key"] for e in standin.events] == [f"munin/web2/{PROGRAMS}/cloudfetch_web"]
    assert (
        "silenced by fab deploy of R2 on lab (alice@ctl) until " in log
        and f"munin/web1/{PROGRAMS}/cloudfetch_web (CRITICAL) not sent, held" in log
    )
    out = io.StringIO()
    cli.main(["--config", str(pager), "status"], out=out)
    status = out.getvalue()
    assert "open alerts: 1" in status and "held by a silence: 1" in status
    assert "active silences: 1" in status and "s-test" in status


def test_a_resolve_always_goes_out_and_drops_the_hold(pager: Path, standin: StandIn) -> None:
    add(pager, ["web1"])
    pipe(pager, message("web1", "critical"))
    log = pipe(pager, message("web1", "ok", value="1.00"))
    assert [(e["event_action"], e["dedup_key"]) for e in standin.events] == [
        ("resolve", f"munin/web1/{PROGRAMS}/cloudfetch_web")
    ]
    assert "recovered while silenced by fab deploy" in log
    silences(pager, "lift", "s-test", "0")
    flush(pager)
    assert len(standin.events) == 1, "a recovered alert never pages after the silence"


def test_a_trigger_still_open_when_the_silence_ends_pages_marked_silenced(
    pager: Path, standin: StandIn
) -> None:
    add(pager, ["web*"])
    pipe(pager, message("web1", "warning", value="0.50"))
    pipe(pager, message("web1", "critical"))  # worse meanwhile: the hold keeps the latest
    assert flush(pager).endswith("sent 0, rejected 0, waiting 0\n") and standin.events == []
    silences(pager, "lift", "s-test", "0")
    log = flush(pager)
    [event] = standin.events
    assert event["event_action"] == "trigger" and event["payload"]["severity"] == "critical"
    note = event["payload"]["custom_details"]["silenced"]
    assert note.startswith("silenced by fab deploy of R2 on lab (alice@ctl) from ")
    assert note.endswith("still CRITICAL when the silence ended")
    assert "the silence is over, paging now" in log
    assert flush(pager).endswith("sent 0, rejected 0, waiting 0\n") and len(standin.events) == 1


def test_another_silence_keeps_holding_when_the_first_ends(pager: Path, standin: StandIn) -> None:
    add(pager, ["web1"])
    pipe(pager, message("web1", "critical"))
    spec = {"id": "s-later", "hosts": ["*"], "alerts": ["*"], "minutes": 30, "reason": "incident"}
    silences(pager, "add", json.dumps(spec))
    silences(pager, "lift", "s-test", "0")
    flush(pager)
    assert standin.events == []
    silences(pager, "lift", "s-later", "0")
    flush(pager)
    [event] = standin.events
    assert event["payload"]["custom_details"]["silenced"].startswith("silenced by incident from")


def test_a_broken_silence_file_silences_nothing(pager: Path, standin: StandIn) -> None:
    cli.load_config(pager).silence_file.write_text("[broken")
    log = pipe(pager, message("web1", "critical"))
    assert len(standin.events) == 1 and "silences unreadable, none applied" in log


def test_munin_limits_during_a_silence_pages_only_after_it(
    tmp_path: Path, pager: Path, standin: StandIn
) -> None:
    (tmp_path / "master").mkdir()
    master = Master(tmp_path / "master", pager)
    feed(
        master,
        tmp_path,
        RECORDED / "supervisor" / "status-mixed-rc3.txt",
        "transfers\t3\t0\t0\nmedia\t0\t0\t1\nindex\t0\t0\t1\n",
    )
    add(pager, ["web1"])
    master.limits()
    # web1's programs are held; mq1's consumers are not covered by the silence. (The OK
    # fields' resolves go out as always.)
    assert triggers(standin) == ["munin/mq1/fetchfleet_celery_consumers/transfers"]
    sent = len(standin.events)
    silences(pager, "lift", "s-test", "0")
    flush(pager)
    paged = {e["dedup_key"]: e for e in standin.events[sent:]}
    assert set(paged) == {
        f"munin/web1/{PROGRAMS}/cloudfetch_beat",
        f"munin/web1/{PROGRAMS}/cloudfetch_worker",
        f"munin/web1/{PROGRAMS}/oneshot",
    }
    for event in paged.values():
        assert event["event_action"] == "trigger"
        assert "silenced by fab deploy" in event["payload"]["custom_details"]["silenced"]


def triggers(standin: StandIn) -> list[str]:
    return [e["dedup_key"] for e in standin.events if e["event_action"] == "trigger"]


def test_a_held_outage_keeps_its_plugins_unknowns_quiet(pager: Path, standin: StandIn) -> None:
    """While a plugin's _up alert is held, the UNKNOWNs of its other graphs there are the same
    outage: not paged, not held either."""
    add(pager, ["web1"])
    up = message("web1", "critical", field="up").replace(PROGRAMS, "fetchfleet_supervisor_up")
    log = pipe(pager, up + message("web1", "unknown", value="unknown"))
    assert standin.events == [] and log.count("not sent, held") == 1
    state = json.loads((cli.load_config(pager).spool_dir / "state.json").read_text())
    assert state[f"munin/web1/{PROGRAMS}/cloudfetch_web"]["action"] == "suppressed"


@pytest.fixture
def reconciling(tmp_path: Path, standin: StandIn, tls) -> tuple[Path, Master]:
    """A pager that reads the state file of its own master (the real munin-limits)."""
    (tmp_path / "master").mkdir()
    config = write_pager_config(
        tmp_path,
        standin,
        tls,
        runbook_url="https://ops1/runbooks",
        munin_url="https://ops1/munin",
        munin_limits_file=str(tmp_path / "master" / "db" / "limits"),
    )
    (tmp_path / "spool").mkdir()
    return config, Master(tmp_path / "master", config)


QUEUES = "transfers\t0\t0\t1\nmedia\t0\t0\t1\nindex\t0\t0\t1\n"
WORKER = f"munin/web1/{PROGRAMS}/cloudfetch_worker"


def released_then_repaired_unread(config: Path, master: Master, tmp_path: Path) -> Path:
    """web1's worker fails under a silence (held), the silence ends while it is down (paged,
    marked), then it is repaired in a munin-limits run whose messages the pager never read.
    Returns the recorded status of the failure, to fail again with."""
    down = RECORDED / "supervisor" / "status-mixed-rc3.txt"
    repaired = tmp_path / "status-worker-running.txt"
    repaired.write_text(
        down.read_text().replace(
            "FATAL     Exited too quickly (process log may have details)",
            "RUNNING   pid 29340, uptime 0:00:03",
        )
    )
    add(config, ["web1"])
    feed(master, tmp_path, down, QUEUES)
    master.limits()
    silences(config, "lift", "s-test", "0")
    assert "the silence is over, paging now" in flush(config)
    feed(master, tmp_path, repaired, QUEUES)
    master.limits_unread()
    return down


def test_an_ok_the_pager_never_read_is_resolved_from_munin_limits_state_and_the_next_fault_pages(
    reconciling: tuple[Path, Master], standin: StandIn, tmp_path: Path
) -> None:
    config, master = reconciling
    down = released_then_repaired_unread(config, master, tmp_path)
    [paged] = [e for e in standin.events if e["dedup_key"] == WORKER]
    assert paged["payload"]["custom_details"]["silenced"].endswith(
        "still CRITICAL when the silence ended"
    )
    sent = len(standin.events)
    log = flush(config)  # the timer's run after munin-limits
    # Only the worker: beat and oneshot are still CRITICAL by munin-limits, and stay open.
    assert [(e["event_action"], e["dedup_key"]) for e in standin.events[sent:]] == [
        ("resolve", WORKER)
    ]
    assert f"fetchfleet-pager: {WORKER}: munin-limits says OK, the pager had it open since " in log
    assert "; resolving\n" in log
    assert flush(config).endswith("sent 0, rejected 0, waiting 0\n"), "resolved once"

    sent = len(standin.events)
    feed(master, tmp_path, down, QUEUES)  # the worker fails again: a new page, not deduplicated
    master.limits()
    [again] = [e for e in standin.events[sent:] if e["dedup_key"] == WORKER]
    assert (
        again["event_action"] == "trigger" and "silenced" not in again["payload"]["custom_details"]
    )


def test_a_state_file_that_cannot_be_read_resolves_nothing(
    reconciling: tuple[Path, Master], standin: StandIn, tmp_path: Path
) -> None:
    config, master = reconciling
    released_then_repaired_unread(config, master, tmp_path)
    (tmp_path / "master" / "db" / "limits").rename(tmp_path / "limits.away")
    sent = len(standin.events)
    log = flush(config)
    assert standin.events[sent:] == []
    missing = tmp_path / "master" / "db" / "limits"
    assert f"munin-limits' state unreadable, nothing reconciled: {missing}: " in log
    state = json.loads((cli.load_config(config).spool_dir / "state.json").read_text())
    assert state[WORKER]["action"] == "trigger", "left open: no data is no OK"
