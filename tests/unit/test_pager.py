"""monitoring/pager: the contact pipe's format, events per field, the spool, and delivery with
the real `pagerduty` client to the stand-in over TLS: 202, a 500 then a 202 (the event arrives
once, late, nothing lost), a 429 that stays (retries capped: the client gives up after one
retry and the event waits, in order), no network, and an invalid event (kept aside)."""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path

import pytest
from conftest import RECORDED, ROUTING_KEY, write_pager_config
from pager import cli, deliver, events, limits, message
from pager.spool import Spool

from fetchfleet.pagerduty_standin import StandIn

NOW = datetime.datetime(2026, 12, 2, 4, 54, tzinfo=datetime.UTC)
LINKS = events.Links("https://ops1.lab.internal/runbooks", "https://ops1.lab.internal/munin")
REAL_PIPE = (RECORDED / "munin-limits" / "two-messages-one-pipe.txt").read_text()


def text(host: str, plugin: str, *fields: str, title: str = "A graph") -> str:
    lines = [
        "FETCHFLEET-ALERT 1",
        "group lab",
        f"host {host}",
        f"plugin {plugin}",
        f"title {title}",
        "category c",
    ]
    return "\n".join([*lines, *(f"field {f}" for f in fields), "FETCHFLEET-END"]) + "\n"


def parsed(stream: str) -> tuple[list[message.Message], str]:
    log = io.StringIO()
    return list(message.parse(io.StringIO(stream), log)), log.getvalue()


# --- the pipe's format --------------------------------------------------------------------------


def test_reads_what_the_real_munin_limits_wrote_through_one_pipe() -> None:
    msgs, log = parsed(REAL_PIPE)
    assert log == ""
    assert [(m.host, m.plugin) for m in msgs] == [
        ("db1", "fetchfleet_pg_lag_seconds"),
        ("web1", "fetchfleet_supervisor_programs"),
    ]
    lag, programs = msgs
    assert lag.fields == [message.FieldState("warning", "db2", 45.5, ":30", ":300", "db2")]
    assert programs.title == "Supervisor programs running" and programs.category == "supervisor"
    assert programs.fields[0] == message.FieldState(
        "critical", "cloudfetch_web", 0.0, ":", "1:", "cloudfetch-web"
    )
    assert programs.fields[1].label == 'other: with "quotes" and {braces}'


def test_broken_framing_is_logged_and_skipped_the_rest_is_read() -> None:
    good = text(
        "web2",
        "fetchfleet_supervisor_programs",
        "critical\tcloudfetch_web\t0.00\t:\t1:\tcloudfetch-web",
    )
    stream = (
        "stray text before any message\n"
        "FETCHFLEET-ALERT 1\nhost web1\nplugin x\n"  # never ended: a new one begins
        + good
        + "FETCHFLEET-ALERT 1\nhost h\nfield bogus line\nplugin p\nFETCHFLEET-END\n"
        + "FETCHFLEET-ALERT 1\ngroup lab\nFETCHFLEET-END\n"  # no host, no plugin
        + "FETCHFLEET-ALERT 1\nhost cut\nplugin short"  # the pipe closed mid-message
    )
    msgs, log = parsed(stream)
    assert [(m.host, m.plugin, len(m.fields)) for m in msgs] == [
        ("web2", "fetchfleet_supervisor_programs", 1),
        ("h", "p", 0),
    ]
    for complaint in (
        "outside any message",
        "before the last ended",
        "not understood",
        "without host, plugin",
        "closed inside a message for cut/short",
    ):
        assert complaint in log


def test_a_label_with_tabs_stays_whole() -> None:
    [msg], _ = parsed(text("h", "p", "unknown\tf\tunknown\t:5\t:9\ta\tlabel\twith tabs"))
    assert msg.fields[0].label == "a\tlabel\twith tabs" and msg.fields[0].value is None


# --- events ---------------------------------------------------------------------------------------


def test_trigger_carries_key_severity_summary_details_and_the_runbook_link() -> None:
    [msg], _ = parsed(
        text(
            "db1",
            "fetchfleet_postgres_lag_seconds",
            "critical\tdb2\t412.00\t:30\t:300\tdb2",
            title="Replica replay lag",
        )
    )
    [event] = events.events_for(msg, {}, LINKS, NOW)
    assert event["dedup_key"] == "munin/db1/fetchfleet_postgres_lag_seconds/db2"
    payload = event["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "db1"
    assert payload["summary"] == "db1: Replica replay lag: db2 is 412 (critical: above 300)"
    assert payload["custom_details"] == {
        "host": "db1",
        "munin_group": "lab",
        "service": "fetchfleet_postgres_lag_seconds",
        "graph": "Replica replay lag",
        "field": "db2",
        "label": "db2",
        "state": "CRITICAL",
        "value": 412.0,
        "warning": ":30",
        "critical": ":300",
    }
    assert event["links"][0] == {
        "href": "https://ops1.lab.internal/runbooks/fetchfleet_postgres_lag_seconds.md",
        "text": "Runbook: fetchfleet_postgres_lag_seconds",
    }
    assert event["links"][1]["href"] == "https://ops1.lab.internal/munin/lab/db1/index.html"


def test_state_changes_make_events_repeats_do_not() -> None:
    state: dict = {}
    key = "munin/web1/fetchfleet_supervisor_programs/cloudfetch_web"

    def run(line: str) -> list[dict]:
        [msg], _ = parsed(text("web1", "fetchfleet_supervisor_programs", line))
        return events.events_for(msg, state, LINKS, NOW)

    assert [e["event_action"] for e in run("ok\tcloudfetch_web\t1.00\t:\t1:\tweb")] == [
        "resolve"
    ]  # unknown to us: resolve
    assert run("ok\tcloudfetch_web\t1.00\t:\t1:\tweb") == []
    assert [e["payload"]["severity"] for e in run("warning\tcloudfetch_web\t0.00\t1:\t:\tweb")] == [
        "warning"
    ]
    assert run("warning\tcloudfetch_web\t0.00\t1:\t:\tweb") == []
    assert [
        e["payload"]["severity"] for e in run("critical\tcloudfetch_web\t0.00\t:\t1:\tweb")
    ] == ["critical"]
    assert [
        e["payload"]["severity"] for e in run("unknown\tcloudfetch_web\tunknown\t:\t1:\tweb")
    ] == ["error"]
    assert [
        (e["event_action"], e["dedup_key"]) for e in run("ok\tcloudfetch_web\t1.00\t:\t1:\tweb")
    ] == [("resolve", key)]


def test_unknowns_during_an_outage_of_the_same_plugin_are_not_paged() -> None:
    state: dict = {}
    [down], _ = parsed(
        text(
            "worker1",
            "fetchfleet_transmission_up",
            "critical\tup\t0.00\t:\t1:\tTransmission RPC answers",
        )
    )
    assert len(events.events_for(down, state, LINKS, NOW)) == 1
    [blind], _ = parsed(
        text(
            "worker1",
            "fetchfleet_transmission_torrents",
            "unknown\tlocal_errors\tunknown\t:0\t:\tlocal errors",
        )
    )
    assert events.events_for(blind, state, LINKS, NOW) == []
    [elsewhere], _ = parsed(
        text(
            "worker1",
            "fetchfleet_nginx_errors",
            "unknown\tserver_error_percent\tunknown\t:5\t:20\t5xx",
        )
    )
    assert len(events.events_for(elsewhere, state, LINKS, NOW)) == 1  # another plugin: paged
    [back], _ = parsed(
        text(
            "worker1",
            "fetchfleet_transmission_torrents",
            "ok\tlocal_errors\t0.00\t:0\t:\tlocal errors",
        )
    )
    assert events.events_for(back, state, LINKS, NOW) == []  # nothing was sent, nothing to resolve


# munin-limits' state file as the real munin-limits 2.0.73 wrote it (test_munin_limits's master,
# after mq1's consumers came back): mq1 all OK; web1's worker, beat and oneshot CRITICAL.
LIMITS = (RECORDED / "munin-limits" / "limits-web1-mq1.txt").read_text()


def test_reconcile_resolves_only_what_munin_limits_found_ok_since() -> None:
    munin = limits.Limits(limits.parse(LIMITS), written=NOW)
    before, after = (NOW - datetime.timedelta(minutes=36)).isoformat(), NOW.isoformat()
    held = {"action": "held", "severity": "critical", "at": before, "event": {}}
    held["silence"] = {"reason": "fab deploy", "who": "alice@ctl"}
    programs = "munin/web1/fetchfleet_supervisor_programs"
    state = {
        f"{programs}/cloudfetch_web": {"action": "trigger", "severity": "critical", "at": before},
        "munin/mq1/fetchfleet_celery_consumers/transfers": held,
        # munin-limits finds it CRITICAL still
        f"{programs}/cloudfetch_worker": {
            "action": "trigger",
            "severity": "critical",
            "at": before,
        },
        # a host, a service, a field munin-limits did not check: not its to judge
        "munin/db1/fetchfleet_postgres_streaming/db2": {"action": "trigger", "at": before},
        "munin/web1/fetchfleet_app_errors/server_error_percent": {
            "action": "trigger",
            "at": before,
        },
        f"{programs}/gone": {"action": "trigger", "at": before},
        # decided when munin-limits had already written its view
        "munin/mq1/fetchfleet_celery_up/up": {"action": "trigger", "at": after},
        "munin/mq1/fetchfleet_celery_queue_depth/media": {"action": "suppressed", "at": before},
        "munin/mq1/fetchfleet_celery_queue_depth/index": {"action": "resolve", "at": before},
        "fab/ctl/123": {"action": "trigger", "at": before},
    }
    untouched = {k: dict(v) for k, v in state.items()}
    log = io.StringIO()
    decided = events.reconcile(state, munin, NOW + datetime.timedelta(seconds=5), log)
    assert decided == [
        {"event_action": "resolve", "dedup_key": "munin/mq1/fetchfleet_celery_consumers/transfers"},
        {"event_action": "resolve", "dedup_key": f"{programs}/cloudfetch_web"},
    ]
    for key in untouched:
        if key not in {e["dedup_key"] for e in decided}:
            assert state[key] == untouched[key], key
        else:
            assert state[key]["action"] == "resolve", key
    assert log.getvalue() == (
        f"fetchfleet-pager: munin/mq1/fetchfleet_celery_consumers/transfers: munin-limits says OK, "
        f"the pager had it held (silenced by fab deploy (alice@ctl)) since {before}; resolving\n"
        f"fetchfleet-pager: {programs}/cloudfetch_web: munin-limits says OK, the pager had it "
        f"open since {before}; resolving\n"
    )


def test_a_state_file_read_mid_write_says_only_what_munin_wrote() -> None:
    """munin-limits rewrites the file in place: a line cut short is left out, never read as a
    state (nor is a prefix of "state critical" ever "ok")."""
    key = ("web1", "fetchfleet_supervisor_programs", "cloudfetch_web")
    whole = "version 2.0.73\nlab;web1;fetchfleet_supervisor_programs;cloudfetch_web;state ok\n"
    assert limits.parse(whole) == {key: frozenset({"ok"})}
    assert limits.parse(whole[:-1]) == {} and limits.parse(whole[:-3]) == {}
    twice = whole + "other;web1;fetchfleet_supervisor_programs;cloudfetch_web;state critical\n"
    assert not limits.Limits(limits.parse(twice), NOW).says_ok(*key), "a host in two groups"


@pytest.mark.parametrize(
    ("limits", "words"),
    [(":300", "above 300"), ("1:", "below 1"), ("10:20", "outside 10 to 20"), ("92", "above 92")],
)
def test_ranges_in_words(limits: str, words: str) -> None:
    assert events._describe(limits) == words


# --- spool and delivery, real client against the stand-in -------------------------------------------


def target(standin: StandIn, tls) -> deliver.Target:
    return deliver.Target(standin.url, ROUTING_KEY, tls.ca_cert, timeout=5)


def trigger(n: int) -> dict:
    return {
        "event_action": "trigger",
        "dedup_key": f"munin/h/p/f{n}",
        "payload": {"summary": f"event {n}", "source": "h", "severity": "warning"},
    }


def flush(spool: Spool, standin: StandIn, tls, force: bool = True) -> deliver.Outcome:
    return deliver.flush(
        spool, lambda: deliver.client(target(standin, tls)), io.StringIO(), force=force
    )


def test_spooled_events_go_out_in_order(tmp_path: Path, standin: StandIn, tls) -> None:
    spool = Spool(tmp_path)
    for n in range(3):
        spool.put(trigger(n))
    assert flush(spool, standin, tls) == deliver.Outcome(sent=3)
    assert [e["dedup_key"] for e in standin.events] == [f"munin/h/p/f{n}" for n in range(3)]
    assert standin.events[0]["routing_key"] == ROUTING_KEY and spool.pending() == []


def test_a_500_then_202_arrives_once_late_nothing_lost(
    tmp_path: Path, standin: StandIn, tls
) -> None:
    spool = Spool(tmp_path)
    spool.put(trigger(1))
    spool.put(trigger(2))
    standin.plan(500, 500)  # the client's one retry fails too: the event stays spooled
    first = flush(spool, standin, tls)
    assert (first.sent, first.left) == (0, 2) and "HTTP 500" in first.error
    assert flush(spool, standin, tls, force=False).waiting_until is not None  # backing off
    assert flush(spool, standin, tls) == deliver.Outcome(sent=2)
    assert [r.status for r in standin.requests] == [500, 500, 202, 202]
    assert [e["dedup_key"] for e in standin.events] == ["munin/h/p/f1", "munin/h/p/f2"]


def test_a_429_is_retried_once_by_the_client_then_waits_in_the_spool(
    tmp_path: Path, standin: StandIn, tls
) -> None:
    spool = Spool(tmp_path)
    spool.put(trigger(1))
    standin.plan(429, 429, 429, 429)
    outcome = flush(spool, standin, tls)
    assert len(standin.requests) == 2  # capped: the client alone would retry a 429 forever
    assert "HTTP 429" in outcome.error and outcome.left == 1
    assert flush(spool, standin, tls).left == 1 and len(standin.requests) == 4
    assert flush(spool, standin, tls).sent == 1 and len(standin.events) == 1


def test_no_network_keeps_everything(tmp_path: Path, tls) -> None:
    spool = Spool(tmp_path)
    spool.put(trigger(1))
    with StandIn(tls) as gone:
        url = gone.url
    outcome = deliver.flush(
        spool,
        lambda: deliver.client(deliver.Target(url, ROUTING_KEY, tls.ca_cert)),
        io.StringIO(),
        force=True,
    )
    assert outcome.left == 1 and "will retry" in outcome.error
    assert spool.backoff()["failures"] == 1


def test_an_invalid_event_is_kept_aside_and_the_next_goes_out(
    tmp_path: Path, standin: StandIn, tls
) -> None:
    spool = Spool(tmp_path)
    spool.put(
        {
            "event_action": "trigger",
            "dedup_key": "bad",
            "payload": {"summary": "", "source": "h", "severity": "warning"},
        }
    )
    spool.put(trigger(2))
    assert flush(spool, standin, tls) == deliver.Outcome(sent=1, rejected=1)
    [kept] = spool.rejected.glob("*.json")
    assert "payload.summary" in json.loads(kept.read_text())["reason"]


def test_one_sender_at_a_time(tmp_path: Path, standin: StandIn, tls) -> None:
    spool = Spool(tmp_path)
    spool.put(trigger(1))
    with spool.sender() as mine:
        assert mine
        assert Spool(tmp_path).sender().__enter__() is False
        assert flush(Spool(tmp_path), standin, tls).busy
    assert standin.requests == []


# --- the contact command ---------------------------------------------------------------------------


def config(tmp_path: Path, standin: StandIn, tls, key: str = ROUTING_KEY) -> Path:
    return write_pager_config(
        tmp_path,
        standin,
        tls,
        key + "\n",
        runbook_url=LINKS.runbook_url,
        munin_url=LINKS.munin_url,
    )


def test_the_contact_command_pages_what_munin_limits_pipes(
    tmp_path: Path, standin: StandIn, tls
) -> None:
    log = io.StringIO()
    assert (
        cli.main(
            ["--config", str(config(tmp_path, standin, tls))], stdin=io.StringIO(REAL_PIPE), log=log
        )
        == 0
    )
    assert [(e["event_action"], e["dedup_key"]) for e in standin.events] == [
        ("trigger", "munin/db1/fetchfleet_pg_lag_seconds/db2"),
        ("trigger", "munin/web1/fetchfleet_supervisor_programs/cloudfetch_web"),
        ("resolve", "munin/web1/fetchfleet_supervisor_programs/other"),
    ]
    assert "3 event(s) from munin-limits; 0 waiting" in log.getvalue()
    out = io.StringIO()
    cli.main(["--config", str(tmp_path / "pager.json"), "status"], out=out)
    assert "open alerts: 2" in out.getvalue() and "spooled: 0" in out.getvalue()


def test_a_bad_routing_key_loses_nothing(tmp_path: Path, standin: StandIn, tls) -> None:
    path = config(tmp_path, standin, tls, key="too-short")
    log = io.StringIO()
    assert cli.main(["--config", str(path)], stdin=io.StringIO(REAL_PIPE), log=log) == 0
    assert "has 9 characters, not 32" in log.getvalue() and standin.requests == []
    (tmp_path / "key").write_text(ROUTING_KEY)
    out = io.StringIO()
    assert cli.main(["--config", str(path), "flush", "--now"], out=out, log=io.StringIO()) == 0
    assert out.getvalue() == "sent 3, rejected 0, waiting 0\n" and len(standin.events) == 3


def test_an_http_events_url_is_a_config_error(tmp_path: Path, standin: StandIn, tls) -> None:
    path = config(tmp_path, standin, tls)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "events_url": "http://events.example"}))
    log = io.StringIO()
    assert cli.main(["--config", str(path), "flush"], log=log) == 2
    assert "must be an https:// URL" in log.getvalue()


def test_test_page_triggers_and_resolves(tmp_path: Path, standin: StandIn, tls) -> None:
    out = io.StringIO()
    assert (
        cli.main(
            ["--config", str(config(tmp_path, standin, tls)), "test", "--source", "ops1"], out=out
        )
        == 0
    )
    trigger_event, resolve = standin.events
    assert (
        trigger_event["payload"]["severity"] == "info"
        and resolve["dedup_key"] == trigger_event["dedup_key"]
    )
    assert trigger_event["links"][0]["href"].endswith("/runbooks/test_page.md")


def test_the_contact_text_never_has_a_bare_dollar() -> None:
    """munin-limits 2.0.73 loops forever expanding a `$` that does not open `${...}`."""
    contact = (Path(message.__file__).parent / "munin-contact.txt").read_text()
    assert "\n" not in contact  # one munin.conf line
    assert all(contact[i + 1] == "{" for i, c in enumerate(contact) if c == "$")
    assert contact.count("${loop<") == len(message.STATES)


def test_flush_waits_for_a_pager_that_is_still_sending(
    tmp_path: Path, standin: StandIn, tls
) -> None:
    """The timer's last step waits for the pager munin-limits started, then sends what is left."""
    import threading

    spool = Spool(tmp_path)
    spool.put(trigger(1))
    held, release = threading.Event(), threading.Event()

    def other_pager() -> None:
        with Spool(tmp_path).sender() as mine:
            assert mine
            held.set()
            release.wait(5)

    thread = threading.Thread(target=other_pager)
    thread.start()
    held.wait(5)
    assert flush(spool, standin, tls).busy  # no wait: leave it to the other one
    threading.Timer(0.3, release.set).start()
    outcome = deliver.flush(
        spool, lambda: deliver.client(target(standin, tls)), io.StringIO(), force=True, wait=30
    )
    thread.join()
    assert outcome.sent == 1 and len(standin.events) == 1
