"""What a command run on a host gives back, and the runner on this machine (same interface)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from typing import Protocol

from fetchfleet.errors import RemoteError

Stdin = str | bytes | None


@dataclass(frozen=True)
class Result:
    """One command's outcome; `returncode`, `stdout`, `stderr` as subprocess names them."""

    host: str
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, chars: int = 1200) -> str:
        return (self.stdout[-chars:] + self.stderr[-chars:]).strip()


class Runner(Protocol):
    """Runs shell commands somewhere; every action talks to hosts through one of these."""

    name: str

    def run(
        self, command: str, stdin: Stdin = None, check: bool = True, timeout: float = 600
    ) -> Result: ...


def checked(result: Result, check: bool) -> Result:
    """Raise a RemoteError naming the host and the command when check and the command failed."""
    if check and result.returncode != 0:
        raise RemoteError(
            f"`{short(result.command)}` exited {result.returncode}: {result.tail()}",
            result.host,
            command=result.command,
        )
    return result


def short(command: str, limit: int = 120) -> str:
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class Local:
    """Runs commands with sh on this machine: the same interface as a host, for code paths
    (the control machine's audit log, tests of the lock) that need no SSH."""

    name = "local"

    def run(
        self, command: str, stdin: Stdin = None, check: bool = True, timeout: float = 600
    ) -> Result:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                ["sh", "-c", command], input=data, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as err:
            raise RemoteError(
                f"`{short(command)}` timed out after {timeout:.0f}s", self.name, command=command
            ) from err
        result = Result(
            self.name,
            command,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
            time.monotonic() - t0,
        )
        return checked(result, check)
