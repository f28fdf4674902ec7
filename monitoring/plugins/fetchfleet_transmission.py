#!/usr/bin/python3
"""fetchfleet_transmission: torrents by state, errored ones, and transfer rates (workers).

Asks the local transmission-daemon over its RPC (HTTP, with authentication and the CSRF
session id dance: a first 409 carries the X-Transmission-Session-Id to repeat the call with).
A local error (disk full, permissions) pages; tracker errors are graphed only, since a dead
tracker is the torrent's problem, not the fleet's.

    [fetchfleet_transmission]
    env.url http://127.0.0.1:9091/transmission/rpc
    env.username cloudfetch
    env.password ...

Magic markers (munin-node-configure):
#%# family=auto
#%# capabilities=autoconf
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.request
from typing import Any, ClassVar

from muninplugin import Field, Graph, Plugin, Unavailable, Values, main

# Transmission 3.00 RPC: torrent status and error codes.
STATUS = {
    0: "stopped",
    1: "checking",
    2: "checking",
    3: "queued",
    4: "downloading",
    5: "queued",
    6: "seeding",
}
LOCAL_ERROR = 3
FIELDS = ["id", "status", "error", "errorString", "rateDownload", "rateUpload"]
STATES = ("downloading", "seeding", "queued", "checking", "stopped")


class RpcClient:
    def __init__(self, url: str, username: str, password: str, timeout: float = 10) -> None:
        self.url, self.timeout, self.session = url, timeout, ""
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.auth = f"Basic {token}"

    def call(self, method: str, arguments: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps({"method": method, "arguments": arguments}).encode()
        for _ in range(2):
            request = urllib.request.Request(self.url, data=body, method="POST")
            request.add_header("Authorization", self.auth)
            request.add_header("Content-Type", "application/json")
            request.add_header("X-Transmission-Session-Id", self.session)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    answer = json.load(response)
            except urllib.error.HTTPError as err:
                if err.code == 409 and err.headers.get("X-Transmission-Session-Id"):
                    self.session = err.headers["X-Transmission-Session-Id"]
                    continue
                raise Unavailable(f"{self.url}: HTTP {err.code} {err.reason}") from err
            except (OSError, ValueError) as err:
                raise Unavailable(f"{self.url}: {err}") from err
            if answer.get("result") != "success":
                raise Unavailable(f"{self.url}: {method}: {answer.get('result')!r}")
            return answer["arguments"]
        raise Unavailable(f"{self.url}: the daemon kept refusing the session id")


def summarize(torrents: list[dict[str, Any]]) -> dict[str, int]:
    """Counts per state, errored and locally errored torrents, and summed rates (bytes/s)."""
    figures = dict.fromkeys((*STATES, "errored", "local_errors", "download", "upload"), 0)
    for torrent in torrents:
        figures[STATUS.get(torrent["status"], "checking")] += 1
        figures["errored"] += int(torrent["error"] != 0)
        figures["local_errors"] += int(torrent["error"] == LOCAL_ERROR)
        figures["download"] += torrent["rateDownload"]
        figures["upload"] += torrent["rateUpload"]
    return figures


class Transmission(Plugin):
    name = "fetchfleet_transmission"
    service = "Transmission RPC"
    up_category = "transmission"
    alerts: ClassVar[dict[str, str]] = {
        "fetchfleet_transmission_up": "transmission-daemon does not answer its RPC on this worker",
        "fetchfleet_transmission_torrents": "a torrent on this worker stopped on a local error",
    }

    def collect(self) -> dict[str, int]:
        client = RpcClient(
            self.setting("url", "http://127.0.0.1:9091/transmission/rpc"),
            self.setting("username", "cloudfetch"),
            self.setting("password", ""),
        )
        return summarize(client.call("torrent-get", {"fields": FIELDS})["torrents"])

    def graphs(self, snapshot: dict[str, int] | None) -> list[Graph]:
        counts = (
            *(Field(state, state, min=0, draw="AREASTACK") for state in STATES),
            Field("errored", "with an error", min=0, info="tracker or local error"),
            Field(
                "local_errors",
                "local errors",
                min=0,
                warning="0",
                info="stopped on a local error: disk full, permissions (pages)",
            ),
        )
        rates = (
            Field("download", "download", min=0, info="bytes per second, all torrents"),
            Field("upload", "upload", min=0, info="bytes per second, all torrents"),
        )
        return [
            Graph(
                "fetchfleet_transmission_torrents",
                "Transmission torrents",
                "torrents",
                "transmission",
                counts,
            ),
            Graph(
                "fetchfleet_transmission_rates",
                "Transmission transfer rates",
                "bytes per second",
                "transmission",
                rates,
                args="--base 1024 -l 0",
            ),
        ]

    def values(self, snapshot: dict[str, int]) -> Values:
        rates = ("download", "upload")
        return {
            "fetchfleet_transmission_torrents": {
                k: v for k, v in snapshot.items() if k not in rates
            },
            "fetchfleet_transmission_rates": {k: snapshot[k] for k in rates},
        }


if __name__ == "__main__":
    sys.exit(main(Transmission))
