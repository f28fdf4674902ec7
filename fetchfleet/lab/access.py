"""Reaching lab hosts: commands through the suite's one SSH layer (fetchfleet.remote, with the
inventory's key and pinned host keys), a TCP probe between hosts, the lab's generated secrets,
and the ssh command line for a person at a terminal."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path

from fetchfleet import remote
from fetchfleet.inventory import load_fleet
from fetchfleet.lab.model import Lab, LabError, LabHost
from fetchfleet.remote import Result

# A lab host answers at once or not at all: a short connect bound keeps boot polling quick.
CONNECT_TIMEOUT = 3


def ssh_argv(lab: Lab, host: LabHost, *command: str, batch: bool = True) -> list[str]:
    """ssh with the lab's key and pinned host keys; batch=False for a person at a terminal."""
    return [
        "ssh",
        "-i",
        str(lab.ssh_key),
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"BatchMode={'yes' if batch else 'no'}",
        "-o",
        "ConnectTimeout=3",
        # Batch: the login banner (roles/hardening) would go to stderr, into every result.
        *(["-o", "LogLevel=ERROR"] if batch else []),
        f"root@{host.address}",
        *command,
    ]


def run_on(
    lab: Lab,
    name: str,
    command: str,
    stdin: str | bytes | None = None,
    check: bool = True,
    timeout: float = 600,
) -> Result:
    """Run a shell command on a lab host (stdin keeps secrets off the command line); with check,
    a failure raises a LabError with its output. Without check, a host that does not answer
    gives exit 255 (as ssh does), so probes can ask "does it answer?" without a try."""
    host = lab.host(name)
    try:
        result = remote.connect(host.inventory, CONNECT_TIMEOUT).run(
            command, stdin=stdin, check=False, timeout=timeout
        )
    except remote.RemoteError as err:
        if check:
            raise LabError(err.what, name, err.hint) from err
        return Result(name, command, 255, "", err.what, 0.0)
    if check and result.returncode != 0:
        raise LabError(f"`{command}` exited {result.returncode}:\n{result.tail(1500)}", name)
    return result


def tcp_open(lab: Lab, source: str, target: str, port: int, timeout: float = 2.0) -> bool:
    """Can lab host `source` open a TCP connection to lab host `target` on `port`?"""
    probe = (
        "import socket, sys\n"
        f"s = socket.socket(); s.settimeout({timeout})\n"
        f"sys.exit(0 if s.connect_ex(({lab.host(target).address!r}, {port})) == 0 else 1)\n"
    )
    proc = run_on(lab, source, f"python3 -c {shlex.quote(probe)}", check=False)
    # 0 or 1 is the answer; anything else, or a traceback, means the probe itself failed.
    if proc.returncode not in (0, 1) or proc.stderr.strip():
        raise LabError(f"TCP probe to {target}:{port} failed: {proc.stderr.strip()}", source)
    return proc.returncode == 0


@functools.cache
def _secret_dir(env: str) -> Path:
    return Path(str(load_fleet(env).var("lab_secret_dir")))


def secret(name: str, env: str = "lab") -> str:
    """A secret the lab generated (inventory/lab/group_vars/all/secrets.yml), by file name."""
    path = _secret_dir(env) / name
    try:
        return path.read_text().split()[0]
    except OSError as err:
        raise LabError(
            f"lab secret {name!r} does not exist yet ({path})", hint="converge first"
        ) from err
