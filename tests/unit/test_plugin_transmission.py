"""fetchfleet_transmission against a real transmission-daemon 3.00: its RPC's 409 session-id
handshake, authentication, and torrents in two states (magnet links with no peers: one started,
one added paused). Lab test for the lead: on worker1 `munin-run fetchfleet_transmission` counts
the lab's torrents, and `systemctl stop transmission-daemon` reports fetchfleet_transmission_up 0."""

from __future__ import annotations

import fetchfleet_transmission as plugin
import pytest
from conftest import TRANSMISSION_PASSWORD, TRANSMISSION_USER
from munin_run import run

MAGNETS = {
    False: "magnet:?xt=urn:btih:" + "1" * 40 + "&dn=started",
    True: "magnet:?xt=urn:btih:" + "2" * 40 + "&dn=paused",
}


@pytest.fixture
def client(transmission_url: str):
    rpc = plugin.RpcClient(transmission_url, TRANSMISSION_USER, TRANSMISSION_PASSWORD)
    ids = [
        rpc.call("torrent-add", {"filename": magnet, "paused": paused})["torrent-added"]["id"]
        for paused, magnet in MAGNETS.items()
    ]
    yield rpc
    rpc.call("torrent-remove", {"ids": ids, "delete-local-data": True})


def settings(url: str, password: str = TRANSMISSION_PASSWORD) -> dict[str, str]:
    return {"url": url, "username": TRANSMISSION_USER, "password": password}


def test_counts_torrents_by_state(client, transmission_url: str) -> None:
    fetch = run(plugin.Transmission, env=settings(transmission_url))
    assert fetch.code == 0 and fetch.stderr == ""
    torrents = fetch.values["fetchfleet_transmission_torrents"]
    assert (torrents["downloading"], torrents["stopped"]) == ("1", "1")
    assert (torrents["errored"], torrents["local_errors"]) == ("0", "0")
    assert fetch.values["fetchfleet_transmission_rates"] == {"download": "0", "upload": "0"}
    assert fetch.values["fetchfleet_transmission_up"] == {"up": "1"}


def test_local_errors_warn(transmission_url: str) -> None:
    limits = run(plugin.Transmission, "config", env=settings(transmission_url)).thresholded()
    assert limits["fetchfleet_transmission_torrents"] == {"local_errors": {"warning": "0"}}
    summary = plugin.summarize(
        [
            {"status": 0, "error": 3, "rateDownload": 0, "rateUpload": 0},
            {"status": 4, "error": 2, "rateDownload": 512, "rateUpload": 64},
        ]
    )
    assert (summary["stopped"], summary["errored"], summary["local_errors"]) == (1, 2, 1)
    assert (summary["download"], summary["upload"]) == (512, 64)


def test_a_wrong_password_or_no_daemon_is_down(transmission_url: str) -> None:
    wrong = run(plugin.Transmission, env=settings(transmission_url, password="wrong"))
    assert wrong.values["fetchfleet_transmission_up"] == {"up": "0"}
    assert "HTTP 401" in wrong.stderr
    closed = transmission_url.replace(transmission_url.split(":")[2].split("/")[0], "9")
    gone = run(plugin.Transmission, env=settings(closed))
    assert gone.values["fetchfleet_transmission_up"] == {"up": "0"} and "refused" in gone.stderr
