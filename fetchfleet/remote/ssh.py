"""SSH to inventory hosts with Fabric: one `Connection` per host, reused by every command.

Connection settings come from the inventory, as Ansible reads them (`ansible_host`, `ansible_user`,
`ansible_port`, `ansible_ssh_private_key_file`, `UserKnownHostsFile`/`StrictHostKeyChecking` in
`ansible_ssh_common_args`, `ansible_become`), so `fab` and Ansible reach a host the same way.
Host keys are checked against the inventory's known_hosts (or the system's): Fabric's default of
adding unknown keys is turned off. A host that does not answer, a command that times out or a
connection lost mid-command is a RemoteError naming the host and the command.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote as FabricRemote
from invoke.exceptions import CommandTimedOut

from fetchfleet.errors import RemoteError
from fetchfleet.inventory import Host
from fetchfleet.remote.runner import Result, Stdin, checked, short

CONNECT_TIMEOUT = 5
# OpenSSH's MaxSessions is 10 by default: stay below it when threads share one connection.
MAX_CHANNELS = 8
KEEPALIVE = 10
# Opening a channel on a live connection takes milliseconds; paramiko waits an hour by default,
# which is how long a command to a host whose link was cut would hang before its own timeout.
CHANNEL_TIMEOUT = 15


class _Remote(FabricRemote):
    """Fabric's runner, with stdin sent whole and then closed, and a shorter poll while the
    command runs. Invoke reads a non-terminal stdin one byte per poll (bytes_to_read is 1 for
    anything but a tty), which made a 2 KB program take 6 s to ship."""

    read_chunk_size = 65536
    input_sleep = 0.002

    def handle_stdin(self, input_: Any, output: Any, echo: Any) -> None:
        data = input_.read()
        try:
            if data:
                self.write_proc_stdin(data)
            self.close_proc_stdin()
        except OSError:
            # The command ended before reading all of its input (`set -C; cat > LOCK` refused
            # at once when the lock exists): its exit status says what happened, and a write to
            # the channel it closed is not an error of the command (the deploy lock test failed
            # on "Socket is closed" when the refusal beat the write).
            pass


@dataclass(frozen=True)
class Target:
    """How to reach one host, read from its inventory variables."""

    name: str
    address: str
    user: str = "root"
    port: int = 22
    key: str | None = None
    known_hosts: str | None = None
    strict: bool = True
    become: bool = False
    connect_timeout: float = CONNECT_TIMEOUT

    @classmethod
    def of(cls, host: Host, connect_timeout: float = CONNECT_TIMEOUT) -> Target:
        v = host.vars
        options = ssh_options(str(v.get("ansible_ssh_common_args", "")))
        user = str(v.get("ansible_user", "root"))
        return cls(
            name=host.name,
            address=host.address,
            user=user,
            port=int(v.get("ansible_port", 22)),
            key=str(v["ansible_ssh_private_key_file"])
            if v.get("ansible_ssh_private_key_file")
            else None,
            known_hosts=options.get("userknownhostsfile"),
            strict=options.get("stricthostkeychecking", "yes").lower() not in ("no", "off"),
            become=_truthy(v.get("ansible_become", False)) and user != "root",
            connect_timeout=connect_timeout,
        )


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def ssh_options(args: str) -> dict[str, str]:
    """`-o Key=Value` / `-o Key Value` pairs of an ssh command line, keys lower-cased."""
    words = shlex.split(args)
    found = {}
    for i, word in enumerate(words):
        option = None
        if word == "-o" and i + 1 < len(words):
            option = words[i + 1]
        elif word.startswith("-o") and len(word) > 2:
            option = word[2:]
        if option:
            key, _, value = option.replace("=", " ", 1).partition(" ")
            found[key.strip().lower()] = value.strip()
    return found


class SSH:
    """Runs commands on one host over a Fabric Connection, opened on first use and kept."""

    def __init__(self, target: Target):
        self.target = target
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._channels = threading.BoundedSemaphore(MAX_CHANNELS)

    @property
    def name(self) -> str:
        return self.target.name

    def _connection(self) -> Connection:
        with self._lock:
            if self._conn is not None and self._conn.is_connected:
                return self._conn
            self._close_locked()
            t = self.target
            config = Config(overrides={"load_ssh_configs": False, "runners": {"remote": _Remote}})
            conn = Connection(
                host=t.address,
                user=t.user,
                port=t.port,
                config=config,
                connect_timeout=int(t.connect_timeout),
                connect_kwargs={
                    **({"key_filename": t.key} if t.key else {}),
                    "look_for_keys": t.key is None,
                    "allow_agent": t.key is None,
                    "banner_timeout": t.connect_timeout * 2,
                    "auth_timeout": t.connect_timeout * 2,
                },
            )
            policy = paramiko.RejectPolicy() if t.strict else paramiko.WarningPolicy()
            conn.client.set_missing_host_key_policy(policy)
            try:
                if t.known_hosts:
                    conn.client.load_host_keys(t.known_hosts)
                else:
                    conn.client.load_system_host_keys()
                conn.open()
            except (paramiko.SSHException, OSError, EOFError) as err:
                with contextlib.suppress(Exception):
                    conn.close()
                raise RemoteError(
                    f"unreachable over ssh ({t.user}@{t.address}:{t.port}): {_reason(err)}",
                    t.name,
                    hint=f"look closer: ssh {t.user}@{t.address}",
                ) from err
            conn.transport.set_keepalive(KEEPALIVE)
            conn.transport.channel_timeout = CHANNEL_TIMEOUT
            self._conn = conn
            return conn

    def _close_locked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _wrap(self, command: str) -> str:
        if self.target.become:
            return f"sudo -n -H -- sh -c {shlex.quote(command)}"
        return command

    def run(
        self, command: str, stdin: Stdin = None, check: bool = True, timeout: float = 600
    ) -> Result:
        conn = self._connection()
        binary = isinstance(stdin, bytes)
        # Bytes go through invoke's text pipe unchanged as latin-1 (one char per byte).
        encoding = "latin-1" if binary else "utf-8"
        # No stdin is an empty one, closed at once: a command that reads stdin must not hang.
        feed = io.StringIO(stdin.decode("latin-1") if binary else (stdin or ""))
        t0 = time.monotonic()
        try:
            with self._channels:
                res = conn.run(
                    self._wrap(command),
                    in_stream=feed,
                    hide=True,
                    warn=True,
                    timeout=timeout,
                    encoding=encoding,
                )
        except CommandTimedOut as err:
            self.close()
            raise RemoteError(
                f"`{short(command)}` timed out after {timeout:.0f}s", self.name, command=command
            ) from err
        except (paramiko.SSHException, OSError, EOFError) as err:
            self.close()
            raise RemoteError(
                f"lost the ssh connection running `{short(command)}`: {_reason(err)}",
                self.name,
                command=command,
            ) from err
        stdout, stderr = res.stdout, res.stderr
        if binary:
            stdout = stdout.encode("latin-1").decode(errors="replace")
            stderr = stderr.encode("latin-1").decode(errors="replace")
        if res.exited == -1:  # the channel closed without an exit status: the host went away
            self.close()
            raise RemoteError(
                f"the connection closed before `{short(command)}` finished",
                self.name,
                command=command,
            )
        return checked(
            Result(self.name, command, res.exited, stdout, stderr, time.monotonic() - t0), check
        )


def _reason(err: BaseException) -> str:
    if isinstance(err, socket.timeout | TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


_pool: dict[Target, SSH] = {}
_pool_lock = threading.Lock()


def connect(host: Host, connect_timeout: float = CONNECT_TIMEOUT) -> SSH:
    """The runner of this host, shared by every caller in this process."""
    target = Target.of(host, connect_timeout)
    with _pool_lock:
        if target not in _pool:
            _pool[target] = SSH(target)
        return _pool[target]


def forget(address: str) -> None:
    """Close and drop the connections to an address: its host was powered off, killed, reset
    (new host keys) or booted again, so a kept connection would be dead or wrong."""
    with _pool_lock:
        doomed = [t for t in _pool if t.address == address]
        runners = [_pool.pop(t) for t in doomed]
    for runner in runners:
        runner.close()


def close_all() -> None:
    with _pool_lock:
        runners = list(_pool.values())
        _pool.clear()
    for runner in runners:
        runner.close()
