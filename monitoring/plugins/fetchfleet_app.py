#!/usr/bin/python3
"""fetchfleet_app: the app's own figures, from `cloudfetch metrics` (one web host).

Runs the live release's `cloudfetch metrics` through cloudfetch-run (as the app's user: it reads
the app's configuration). The figures are fleet-wide (every gunicorn worker adds its request
counts to the database), so one host of the web group runs this plugin. Requests are graphed per
minute by status class from the app's counters; the 5xx share is computed here, over a window
of at least `min_requests` requests (state between runs), so one failed request on a quiet
minute does not page. Latency is measured where requests pass: fetchfleet_nginx on each host.

    [fetchfleet_app]
    user cloudfetch
    env.command /usr/local/bin/cloudfetch-run cloudfetch metrics
    env.signup_window_minutes 60
    env.min_requests 20

Magic markers (munin-node-configure):
#%# family=manual
#%# capabilities=autoconf
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from typing import Any, ClassVar

from muninplugin import Field, Graph, Plugin, Unavailable, Values, main, windowed_percent

NEEDED = ("requests_total", "responses_4xx_total", "responses_5xx_total", "transfers")


class App(Plugin):
    name = "fetchfleet_app"
    service = "the app's metrics (cloudfetch metrics)"
    up_category = "app"
    alerts: ClassVar[dict[str, str]] = {
        "fetchfleet_app_up": "`cloudfetch metrics` fails: the app cannot read its database",
        "fetchfleet_app_errors": "the app answers too many requests with a 5xx",
        "fetchfleet_app_transfers": "transfers are piling up in the queued state",
    }

    def collect(self) -> dict[str, Any]:
        command = shlex.split(
            self.setting("command", "/usr/local/bin/cloudfetch-run cloudfetch metrics")
        )
        window = int(self.number_setting("signup_window_minutes", 60))
        argv = [*command, "--interval-minutes", str(window)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise Unavailable(f"{' '.join(command)}: {err}") from err
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise Unavailable(f"{' '.join(command)} exited {done.returncode}: {lines[-1]}")
        try:
            figures = json.loads(done.stdout)
        except json.JSONDecodeError as err:
            raise Unavailable(f"{' '.join(command)} printed no JSON: {err}") from err
        missing = [key for key in NEEDED if key not in figures]
        if missing:
            raise Unavailable(f"{' '.join(command)}: no {', '.join(missing)} in its output")
        return figures

    def graphs(self, snapshot: dict[str, Any] | None) -> list[Graph]:
        window = int(self.number_setting("signup_window_minutes", 60))
        per_minute = {"type": "DERIVE", "min": 0}
        return [
            Graph(
                "fetchfleet_app_requests",
                "App requests by status class",
                "requests per ${graph_period}",
                "app",
                (
                    Field("ok", "2xx/3xx", draw="AREA", **per_minute),
                    Field("client_errors", "4xx", draw="STACK", **per_minute),
                    Field("server_errors", "5xx", draw="STACK", **per_minute),
                ),
                period="minute",
                info="Every response of every gunicorn worker, from the app's counters.",
            ),
            Graph(
                "fetchfleet_app_errors",
                "App 5xx share",
                "% of requests",
                "app",
                (
                    Field(
                        "server_error_percent",
                        "5xx",
                        min=0,
                        max=100,
                        warning="5",
                        critical="20",
                        info="share of 5xx answers over the last window of at least min_requests requests",
                    ),
                ),
                args="--base 1000 -l 0 -u 100",
            ),
            Graph(
                "fetchfleet_app_signups",
                f"Sign-ups in the last {window} minutes",
                "users",
                "app",
                (Field("signups", "sign-ups", min=0),),
            ),
            Graph(
                "fetchfleet_app_transfers",
                "Transfers",
                "transfers",
                "app",
                (
                    Field(
                        "queued",
                        "queued",
                        min=0,
                        warning="50",
                        critical="200",
                        info="accepted, not picked up by a worker yet",
                    ),
                    Field("active", "downloading", min=0),
                    Field("broker_backlog", "tasks waiting in the broker", min=0),
                ),
            ),
            Graph(
                "fetchfleet_app_transfer_failures",
                "Transfers failed",
                "failures per ${graph_period}",
                "app",
                (Field("failed", "failed", type="DERIVE", min=0),),
                period="hour",
            ),
        ]

    def values(self, snapshot: dict[str, Any]) -> Values:
        total = snapshot["requests_total"]
        client, server = snapshot["responses_4xx_total"], snapshot["responses_5xx_total"]
        state = self.load_state()
        minimum = int(self.number_setting("min_requests", 20))
        percent = windowed_percent(state, "5xx", server, total, minimum)
        self.save_state(state)
        transfers = snapshot["transfers"]
        return {
            "fetchfleet_app_requests": {
                "ok": total - client - server,
                "client_errors": client,
                "server_errors": server,
            },
            "fetchfleet_app_errors": {"server_error_percent": percent},
            "fetchfleet_app_signups": {"signups": snapshot.get("signups_last_interval")},
            "fetchfleet_app_transfers": {
                "queued": transfers.get("queued"),
                "active": transfers.get("downloading"),
                "broker_backlog": snapshot.get("queue_depth"),
            },
            "fetchfleet_app_transfer_failures": {"failed": transfers.get("failed")},
        }


if __name__ == "__main__":
    sys.exit(main(App))
