"""fetchfleet_nginx against an access log written by a real nginx 1.22.1 (Debian 12's) in the
fleet's `fetchfleet` log format (roles/nginx): static answers, a redirect, proxied 200/404/500,
a 502 from a dead upstream socket, a failover between two upstreams, an X-Accel download, a
POST, and a referer with quotes. Rotation is done the way logrotate does it (rename, new file).
Lab test for the lead: on web1, requests through lb1 show up in fetchfleet_nginx_requests, and
with gunicorn stopped the web host's 5xx share climbs past the critical threshold."""

from __future__ import annotations

import os
import re
from pathlib import Path

import fetchfleet_nginx as plugin
from conftest import RECORDED
from munin_run import run

LOG = (RECORDED / "nginx" / "access.log").read_text()


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    pid = tmp_path / "nginx.pid"
    pid.write_text(f"{os.getpid()}\n")
    return {
        "access_log": str(tmp_path / "access.log"),
        "MUNIN_STATEFILE": str(tmp_path / "state"),
        "pid_file": str(pid),
        **extra,
    }


def test_every_line_of_the_real_format_parses() -> None:
    traffic = plugin.tally(LOG.splitlines(), re.compile(r"(^|/)download$"))
    assert traffic.unparsed == 0
    assert traffic.classes == {"2xx": 9, "3xx": 1, "4xx": 1, "5xx": 2}
    assert len(traffic.latencies_ms) == 12  # the X-Accel download is left out
    assert max(traffic.latencies_ms) == 301.0


def test_first_run_starts_at_the_end_then_counts_what_is_appended(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(LOG)
    first = run(plugin.Nginx, env=env(tmp_path, min_requests="5"))
    assert first.values["fetchfleet_nginx_up"] == {"up": "1"}
    assert first.values["fetchfleet_nginx_requests"] == {f"status_{c}": "0" for c in plugin.CLASSES}
    assert first.values["fetchfleet_nginx_errors"] == {"server_error_percent": "U"}
    with log.open("a") as f:
        f.write(LOG)
    second = run(plugin.Nginx, env=env(tmp_path, min_requests="5"))
    assert second.values["fetchfleet_nginx_requests"] == {
        "status_2xx": "9",
        "status_3xx": "1",
        "status_4xx": "1",
        "status_5xx": "2",
    }
    assert (
        second.values["fetchfleet_nginx_errors"]["server_error_percent"] == "15.384615"
    )  # 2 of 13
    latency = second.values["fetchfleet_nginx_latency"]
    assert float(latency["p95"]) == 301.0 and 20 < float(latency["mean"]) < 50
    third = run(plugin.Nginx, env=env(tmp_path, min_requests="5"))
    assert third.values["fetchfleet_nginx_latency"] == {"mean": "0", "p95": "0"}
    assert third.values["fetchfleet_nginx_requests"]["status_2xx"] == "9"  # a counter (DERIVE)


def test_a_partial_last_line_waits_for_the_next_run(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    run(plugin.Nginx, env=env(tmp_path))
    lines = LOG.splitlines(keepends=True)
    log.write_text(lines[0] + lines[1][:30])
    assert (
        run(plugin.Nginx, env=env(tmp_path)).values["fetchfleet_nginx_requests"]["status_2xx"]
        == "1"
    )
    with log.open("a") as f:
        f.write(lines[1][30:])
    assert (
        run(plugin.Nginx, env=env(tmp_path)).values["fetchfleet_nginx_requests"]["status_2xx"]
        == "2"
    )


def test_rotation_reads_the_rest_of_the_old_file_first(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines = LOG.splitlines(keepends=True)
    log.write_text("")
    run(plugin.Nginx, env=env(tmp_path))
    log.write_text("".join(lines[:3]))
    run(plugin.Nginx, env=env(tmp_path))
    with log.open("a") as f:
        f.write("".join(lines[3:6]))  # written before the rotation, read after it
    log.rename(tmp_path / "access.log.1")
    log.write_text("".join(lines[6:8]))  # /gone (502) and /failover (200)
    out = run(plugin.Nginx, env=env(tmp_path))
    assert out.values["fetchfleet_nginx_requests"] == {
        "status_2xx": "4",
        "status_3xx": "1",
        "status_4xx": "1",
        "status_5xx": "2",
    }


def test_a_truncated_log_is_read_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(LOG)
    run(plugin.Nginx, env=env(tmp_path))
    log.write_text(LOG.splitlines(keepends=True)[0])  # copytruncate, then one request
    out = run(plugin.Nginx, env=env(tmp_path))
    assert out.values["fetchfleet_nginx_requests"]["status_2xx"] == "1"


def test_nginx_not_running_is_down(tmp_path: Path) -> None:
    (tmp_path / "access.log").write_text("")
    settings = env(tmp_path)
    Path(settings["pid_file"]).write_text("999999999\n")
    assert run(plugin.Nginx, env=settings).values["fetchfleet_nginx_up"] == {"up": "0"}
    Path(settings["pid_file"]).unlink()
    assert run(plugin.Nginx, env=settings).values["fetchfleet_nginx_up"] == {"up": "0"}


def test_a_bad_exclusion_pattern_is_a_setting_error(tmp_path: Path) -> None:
    out = run(plugin.Nginx, env=env(tmp_path, latency_exclude="(download"))
    assert out.code == 1 and "env.latency_exclude" in out.stderr and out.stdout == ""
