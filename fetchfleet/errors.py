"""The one error shape of the suite: what failed, on which host, at which step, how to look closer.

Every action (deploy, lab, backups, failover, …) raises a subclass, so a `fab` task prints the same
kind of message whatever failed, and callers can catch `FleetError` for anything a host did.
"""

from __future__ import annotations


class FleetError(Exception):
    """`[prefix: ]host: [step] what`, then the command, the last log lines and a hint."""

    prefix = ""

    def __init__(
        self,
        what: str,
        host: str | None = None,
        step: str | None = None,
        log: str = "",
        hint: str | None = None,
        command: str | None = None,
    ):
        self.what, self.host, self.step, self.log = what, host, step, log
        self.hint, self.command = hint, command
        where = " ".join(x for x in (host and f"{host}:", step and f"[{step}]") if x)
        text = f"{where} {what}" if where else what
        if self.prefix:
            text = f"{self.prefix}: {text}"
        if log:
            text += "\n  last log lines:\n" + "\n".join("    " + ln for ln in log.splitlines())
        if hint:
            text += f"\n  -> {hint}"
        super().__init__(text)


class RemoteError(FleetError):
    """A command on a host failed, timed out, or the host did not answer over SSH."""
