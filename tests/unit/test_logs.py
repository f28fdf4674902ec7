"""fetchfleet.logs: the journalctl command `fab logs` sends to the log server, refused on bad input
before anything runs, and run here by sh against real journal files that Debian's
systemd-journal-remote wrote (named as Debian 12's names them: remote-<sender's address>.journal)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fetchfleet.logs import LogsError, Query, check_since, journalctl_command

REMOTE = Path("/lib/systemd/systemd-journal-remote")
# web1's address is a prefix of web10's: a glob too loose would read web10's files as web1's.
SENDERS = {"web1": "10.77.0.2", "web10": "10.77.0.21", "db1": "10.77.0.41", "web2": "10.77.0.22"}


def journal(directory: Path, host: str, messages: list[tuple[str, str]]) -> None:
    """A journal file for `host`, made by journal-remote from the export format."""
    if not REMOTE.exists():
        pytest.fail("systemd-journal-remote is needed (requirements/apt-hardening.txt)")
    now = int(time.time() * 1e6)
    export = "".join(
        f"__REALTIME_TIMESTAMP={now + i}\n__MONOTONIC_TIMESTAMP={i + 1}\n_BOOT_ID={'ab' * 16}\n"
        f"_HOSTNAME={host}\n_SYSTEMD_UNIT={unit}\nSYSLOG_IDENTIFIER={unit.split('.')[0]}\nMESSAGE={text}\n\n"
        for i, (unit, text) in enumerate(messages)
    )
    subprocess.run(
        [str(REMOTE), f"--output={directory}/remote-{SENDERS[host]}.journal", "-"],
        input=export,
        text=True,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("remote")
    journal(
        d,
        "web1",
        [
            ("nginx.service", "GET / 200"),
            ("ssh.service", "Accepted publickey for ops"),
            ("nginx.service", "GET /x 404"),
        ],
    )
    journal(d, "web10", [("nginx.service", "GET / from web10")])
    journal(d, "db1", [("postgresql@15-main.service", "checkpoint complete")])
    return d


def command(query: Query, store: Path | None = None) -> str:
    return journalctl_command(query, SENDERS, *([str(store)] if store else []))


def run(command: str) -> subprocess.CompletedProcess:
    if not shutil.which("journalctl"):
        pytest.fail("journalctl is needed (systemd)")
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)


def test_one_hosts_logs_filtered_by_unit_and_pattern(store: Path) -> None:
    out = run(command(Query(("web1",), unit="nginx", grep="404", lines=0), store))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].endswith("web1 nginx: GET /x 404")
    assert "200" not in out.stdout and "web10" not in out.stdout


def test_a_group_interleaves_its_hosts_and_names_one_that_sent_nothing(store: Path) -> None:
    out = run(command(Query(("web1", "db1", "web2"), lines=0), store))
    assert out.returncode == 0, out.stderr
    assert "web1 sshd" in out.stdout or "web1 ssh" in out.stdout
    assert "db1 postgresql" in out.stdout
    assert "no journal from web2 (10.77.0.22)" in out.stderr


def test_a_host_without_an_address_is_refused_naming_it() -> None:
    with pytest.raises(LogsError, match="host web1 has no IP address"):
        journalctl_command(Query(("web1",)), {"web1": "web1.internal"})


def test_no_journal_at_all_is_exit_3(store: Path) -> None:
    assert run(command(Query(("web2",)), store)).returncode == 3


def test_lines_and_since(store: Path) -> None:
    last = run(command(Query(("web1",), lines=1), store))
    assert len(last.stdout.splitlines()) == 1 and "404" in last.stdout
    later = run(command(Query(("web1",), since="tomorrow", lines=0), store))
    assert "404" not in later.stdout


@pytest.mark.parametrize(
    ("query", "named"),
    [
        (Query(("web1",), since="last tuesday-ish"), "--since 'last tuesday-ish'"),
        (Query(("web1",), unit="nginx; rm -rf /"), "--unit"),
        (Query(("web1",), grep="two\nlines"), "--grep"),
        (Query(("web1",), lines=-1), "--lines -1"),
        (Query(("web 1",)), "host 'web 1'"),
        (Query(()), "no hosts"),
    ],
)
def test_bad_input_is_refused_naming_it(query: Query, named: str) -> None:
    with pytest.raises(LogsError, match=named.replace("\n", "")[:8]) as refused:
        command(query)
    assert named.split()[0] in str(refused.value)


@pytest.mark.parametrize(
    "since",
    [
        "2026-01-31",
        "2026-01-31 12:00",
        "12:00:01",
        "-1h",
        "30 min ago",
        "2 hours ago",
        "today",
        "yesterday",
    ],
)
def test_times_journalctl_takes_are_accepted(since: str) -> None:
    assert check_since(since) == since
    assert (
        run(
            f"journalctl --file=/dev/null --since='{since}' -n0 2>&1 | grep -c 'Failed to parse' || true"
        ).stdout.strip()
        == "0"
    )


def test_values_reach_journalctl_quoted(store: Path) -> None:
    out = run(command(Query(("web1",), grep="it's $HOME", lines=0), store))
    assert out.returncode == 1 or out.stdout.strip() in ("", "-- No entries --"), (
        out.stdout + out.stderr
    )
