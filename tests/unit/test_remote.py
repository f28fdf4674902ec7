"""fetchfleet.remote without hosts: the inventory's connection settings, the fan-out, the local
runner, and the remote programs run for real on this machine (the lab runs them on hosts)."""

from __future__ import annotations

import http.server
import os
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fetchfleet.errors import FleetError
from fetchfleet.inventory import Host, load_fleet
from fetchfleet.programs import app_state
from fetchfleet.remote import Local, RemoteError, Target, each, parallel, run_program, ssh_options
from fetchfleet.remote.programs import program_source


def test_connection_settings_come_from_the_inventory_as_ansible_reads_them() -> None:
    fleet = load_fleet("lab")
    target = Target.of(fleet.host("web1"))
    assert (target.address, target.user, target.port) == ("10.77.0.21", "root", 22)
    assert target.key == "/var/lib/fetchfleet/lab/ssh/id_ed25519"
    assert target.known_hosts == "/var/lib/fetchfleet/lab/ssh/known_hosts"
    assert target.strict and not target.become


def test_become_wraps_only_a_non_root_user_and_options_parse_both_spellings() -> None:
    host = Host(
        "db9",
        "192.0.2.9",
        ("db",),
        {
            "ansible_user": "deploy",
            "ansible_become": True,
            "ansible_port": 2222,
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -oUserKnownHostsFile=/k",
        },
    )
    target = Target.of(host)
    assert target.become and target.port == 2222 and target.key is None
    assert target.known_hosts == "/k" and not target.strict
    assert ssh_options("-o 'ConnectTimeout 9' -o Foo=bar") == {"connecttimeout": "9", "foo": "bar"}


def test_the_local_runner_returns_output_and_names_the_failing_command() -> None:
    assert Local().run("printf hello").stdout == "hello"
    assert Local().run("cat", stdin=b"\x00\xffbytes").stdout.endswith("bytes")
    result = Local().run("echo oops >&2; exit 3", check=False)
    assert (result.returncode, result.stderr.strip()) == (3, "oops")
    with pytest.raises(RemoteError, match=r"`echo oops >&2; exit 3` exited 3: oops") as err:
        Local().run("echo oops >&2; exit 3")
    assert err.value.host == "local" and err.value.command == "echo oops >&2; exit 3"
    with pytest.raises(RemoteError, match="timed out after 0s"):
        Local().run("sleep 5", timeout=0.2)


def test_parallel_keeps_order_and_each_keeps_every_hosts_outcome() -> None:
    def slow_echo(n: int) -> int:
        time.sleep(0.05 * (5 - n))
        return n

    assert parallel(slow_echo, range(5)) == [0, 1, 2, 3, 4]

    def flaky(n: int) -> int:
        if n % 2:
            raise FleetError("does not answer", host=f"h{n}")
        return n * 10

    outcomes = each(flaky, range(4))
    assert [o.value for o in outcomes] == [0, None, 20, None]
    assert [o.error.host for o in outcomes if not o.ok] == ["h1", "h3"]
    with pytest.raises(FleetError, match="h1: does not answer"):
        parallel(flaky, range(4))


def test_app_state_reads_current_installed_and_supervisor_lines(tmp_path: Path) -> None:
    rel = tmp_path / "releases"
    for rid in ("20261101T100000Z-aaa1111", "20261102T100000Z-bbb2222"):
        (rel / rid).mkdir(parents=True)
        (rel / rid / ".installed").touch()
    (rel / "20261103T100000Z-half").mkdir()  # a failed install: no .installed
    (tmp_path / "current").symlink_to(rel / "20261102T100000Z-bbb2222")
    state = run_program(Local(), "app_state", str(tmp_path))
    assert state["current"] == "20261102T100000Z-bbb2222"
    assert state["installed"] == ["20261101T100000Z-aaa1111", "20261102T100000Z-bbb2222"]
    recorded = (
        "cloudfetch-web                   RUNNING   pid 1234, uptime 0:01:02\n"
        "cloudfetch-worker                FATAL     Exited too quickly (process log may have details)\n"
        "other                            RUNNING   pid 99, uptime 1:00:00\n"
    )
    programs = app_state.programs(recorded)
    assert programs["cloudfetch-web"]["state"] == "RUNNING"
    assert programs["cloudfetch-web"]["pid"] == 1234
    assert programs["cloudfetch-worker"] == {"state": "FATAL", "pid": None, "release": None}
    assert "other" not in programs
    # The release of a process comes from its environment: this test's own process has none,
    # a child started with CLOUDFETCH_RELEASE has it.
    assert app_state.release_of(os.getpid()) is None


def test_app_state_reads_the_release_from_a_process_environment() -> None:
    child = subprocess.Popen(["sleep", "5"], env={"CLOUDFETCH_RELEASE": "20261102T100000Z-bbb2222"})
    try:
        # Popen returns during the child's exec, possibly before its new environment is set up.
        environ = Path(f"/proc/{child.pid}/environ")
        deadline = time.monotonic() + 5
        while not environ.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert app_state.release_of(child.pid) == "20261102T100000Z-bbb2222"
    finally:
        child.kill()


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_app_probe_asks_gunicorns_socket_for_version_and_health(tmp_path: Path) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = (200, b'{"release": "R"}') if self.path == "/version" else (503, b"{}")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "unix"

        def log_message(self, *args) -> None:
            pass

    sock = tmp_path / "gunicorn.sock"
    server = _UnixHTTPServer(str(sock), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seen = run_program(Local(), "app_probe", str(sock))
    finally:
        server.shutdown()
    assert seen["/version"] == {"status": 200, "body": '{"release": "R"}'}
    assert seen["/healthz"]["status"] == 503
    gone = run_program(Local(), "app_probe", str(tmp_path / "missing.sock"))
    assert gone["/version"]["status"] == 0 and "FileNotFoundError" in gone["/version"]["body"]


def test_an_unknown_program_or_one_without_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match=r"no remote program 'nope'.*app_state"):
        program_source("nope")

    class Echo(Local):
        def run(self, command, stdin=None, check=True, timeout=600):
            return super().run("echo not json", check=check)

    with pytest.raises(RemoteError, match="printed no JSON"):
        run_program(Echo(), "app_state", str(tmp_path))
