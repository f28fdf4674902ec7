"""The PagerDuty stand-in, driven by the real `pagerduty` client over TLS from a CA made at run
time: it must answer as the Events API v2 documents (202 with the dedup key, 400 with errors on
invalid events, 429/5xx when a test plans them) and record what it accepted."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pagerduty
import pytest
from conftest import ROUTING_KEY

from fetchfleet.pagerduty_standin import StandIn, validate_event


def client(standin: StandIn, tls, key: str = ROUTING_KEY) -> pagerduty.EventsApiV2Client:
    events = pagerduty.EventsApiV2Client(
        key, base_url=standin.url, verify=ssl.create_default_context(cafile=str(tls.ca_cert))
    )
    events.retry = {}
    return events


def post(standin: StandIn, tls, body: dict) -> tuple[int, dict]:
    """A raw POST to /v2/enqueue: the client would add its own routing key and retry a 429."""
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    request = urllib.request.Request(standin.url + "/v2/enqueue", data=json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, context=context) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_trigger_and_resolve_are_accepted_and_recorded(standin: StandIn, tls) -> None:
    with client(standin, tls) as events:
        key = events.trigger(
            "web1: something", "web1", dedup_key="munin/web1/x/y", severity="warning"
        )
        assert key == "munin/web1/x/y"
        generated = events.trigger("no key given", "web1")
        assert len(generated) == 32 and generated != key
        assert events.resolve(key) == key
    accepted = standin.events
    assert [e["event_action"] for e in accepted] == ["trigger", "trigger", "resolve"]
    assert accepted[0]["routing_key"] == ROUTING_KEY
    assert accepted[0]["payload"] == {
        "summary": "web1: something",
        "source": "web1",
        "severity": "warning",
    }


def test_the_202_body_is_the_documented_one(standin: StandIn, tls) -> None:
    with client(standin, tls) as events:
        response = events.post("/v2/enqueue", json={"event_action": "resolve", "dedup_key": "k"})
    assert response.status_code == 202
    assert response.json() == {"status": "success", "message": "Event processed", "dedup_key": "k"}


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {"routing_key": "short", "event_action": "resolve", "dedup_key": "k"},
            "Length of 'routing_key' is incorrect (should be 32 characters)",
        ),
        ({"event_action": "page", "dedup_key": "k"}, "'event_action' is invalid"),
        ({"event_action": "resolve"}, "'dedup_key' is required for event_action resolve"),
        ({"event_action": "trigger"}, "'payload' is missing"),
        (
            {"event_action": "trigger", "payload": {"source": "h", "severity": "critical"}},
            "'payload.summary' is missing or blank",
        ),
        (
            {"event_action": "trigger", "payload": {"summary": "s", "severity": "critical"}},
            "'payload.source' is missing or blank",
        ),
        (
            {
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "h", "severity": "fatal"},
            },
            "'payload.severity' is invalid",
        ),
        (
            {
                "event_action": "trigger",
                "payload": {"summary": "s" * 1025, "source": "h", "severity": "info"},
            },
            "'payload.summary' is longer than 1024 characters",
        ),
        (
            {"event_action": "resolve", "dedup_key": "k" * 256},
            "'dedup_key' must be a string of 1 to 255 characters",
        ),
        (
            {"event_action": "resolve", "dedup_key": "k", "links": [{"text": "no href"}]},
            "'links' must be a list of objects each with 'href'",
        ),
    ],
)
def test_invalid_events_get_400_with_the_reason(
    standin: StandIn, tls, event: dict, error: str
) -> None:
    status, answer = post(standin, tls, {"routing_key": ROUTING_KEY, **event})
    assert status == 400
    assert (answer["status"], answer["message"]) == ("invalid event", "Event object is invalid")
    assert any(e.startswith(error) for e in answer["errors"]), answer["errors"]
    assert standin.events == [] and standin.requests[0].status == 400


def test_the_client_raises_on_a_400(standin: StandIn, tls) -> None:
    with (
        client(standin, tls, key="not-32-characters") as events,
        pytest.raises(pagerduty.HttpError) as err,
    ):
        events.trigger("s", "h")
    assert err.value.response.status_code == 400


def test_planned_failures_come_first_then_events_are_processed(standin: StandIn, tls) -> None:
    standin.plan(500, 429)
    event = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "k"}
    assert [post(standin, tls, event)[0] for _ in range(3)] == [500, 429, 202]
    assert [r.status for r in standin.requests] == [500, 429, 202]
    assert len(standin.events) == 1


def test_the_client_needs_https_and_the_labs_ca(standin: StandIn, tls) -> None:
    with pytest.raises(pagerduty.UrlError):
        pagerduty.EventsApiV2Client(ROUTING_KEY, base_url=standin.url.replace("https", "http"))
    untrusting = pagerduty.EventsApiV2Client(ROUTING_KEY, base_url=standin.url)
    untrusting.max_network_attempts = 0
    with untrusting, pytest.raises(pagerduty.Error, match="network error"):
        untrusting.trigger("s", "h")
    assert standin.requests == []


def test_control_endpoints_for_a_standin_in_another_process(standin: StandIn, tls) -> None:
    context = ssl.create_default_context(cafile=str(tls.ca_cert))

    def call(path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(
            urllib.request.Request(standin.url + path, data=data), context=context
        ) as r:
            return json.load(r)

    call("/_standin/plan", {"statuses": [503]})
    with client(standin, tls) as events:
        assert (
            events.post(
                "/v2/enqueue", json={"event_action": "resolve", "dedup_key": "a"}
            ).status_code
            == 503
        )
        events.resolve("b")
    assert [e["dedup_key"] for e in call("/_standin/events")["events"]] == ["b"]
    assert [r["status"] for r in call("/_standin/requests")["requests"]] == [503, 202]
    call("/_standin/reset", {})
    assert call("/_standin/requests") == {"requests": []}


def test_validation_of_a_complete_trigger() -> None:
    assert (
        validate_event(
            {
                "routing_key": ROUTING_KEY,
                "event_action": "trigger",
                "dedup_key": "munin/db1/fetchfleet_postgres_streaming/db2",
                "payload": {
                    "summary": "s",
                    "source": "db1",
                    "severity": "critical",
                    "custom_details": {"value": 0},
                },
                "links": [{"href": "https://ops1/runbooks/x.md", "text": "Runbook"}],
            }
        )
        == []
    )


def test_the_labs_ca_is_made_once_and_kept(tmp_path) -> None:
    from fetchfleet.pagerduty_standin import ensure_ca, main

    first = ensure_ca(tmp_path / "ca", ["10.77.0.1"])
    pem = first.ca_cert.read_bytes()
    assert main(["--make-ca", "--dir", str(tmp_path / "ca"), "--name", "10.77.0.1"]) == 0
    assert ensure_ca(tmp_path / "ca", ["other"]).ca_cert.read_bytes() == pem
    assert first.key.stat().st_mode & 0o077 == 0
