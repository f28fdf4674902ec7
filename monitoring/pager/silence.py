"""Silences: planned work (a deploy, a switchover, a person fixing a host) says which alerts it
expects to cause, and the pager holds their triggers while it lasts.

The file (`silence_file` in the pager's configuration, by default SPOOL/silences.json) is written
only by fetchfleet's `silences` program over SSH (`fab deploy` and friends, `fab monitor.silence`);
the pager only reads it:

    {"version": 1,
     "silences": [{"id": "deploy-20261202T060750Z-1a2b",
                   "hosts": ["web1", "worker*"],          # shell patterns of munin host names
                   "alerts": ["fetchfleet_supervisor_*"], # shell patterns of alerts (services)
                   "start": "2026-12-02T06:07:50+00:00", "until": "2026-12-02T07:07:50+00:00",
                   "reason": "fab deploy 20261202T060000Z-abc1234", "who": "alice@ctl",
                   "lifted": null}]}                      # when lifted: until is then moved to
                                                          # a short grace after it

A trigger for HOST/ALERT that an active silence matches is not sent: it is held in the pager's
state with the silence that held it. When no silence matches any more (it expired, or was
lifted and its grace passed) and the alert is still open, the trigger goes out, its
custom_details saying which silence held it. Resolves are always sent. A file that cannot be
read silences nothing (and says so): a broken silence must never swallow a page.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

Silence = dict[str, Any]


def load(path: Path, log: TextIO | None = None) -> list[Silence]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        if log is not None:
            log.write(f"fetchfleet-pager: silences unreadable, none applied: {path}: {err}\n")
        return []
    silences = data.get("silences", []) if isinstance(data, dict) else []
    return [s for s in silences if isinstance(s, dict) and _valid(s)]


def _valid(silence: Silence) -> bool:
    try:
        _until(silence)
    except (KeyError, TypeError, ValueError):
        return False
    return isinstance(silence.get("hosts"), list) and isinstance(silence.get("alerts"), list)


def _until(silence: Silence) -> datetime.datetime:
    return datetime.datetime.fromisoformat(str(silence["until"]))


def active(silences: Iterable[Silence], now: datetime.datetime) -> list[Silence]:
    return [s for s in silences if _until(s) > now]


def matching(
    silences: Iterable[Silence], host: str, alert: str, now: datetime.datetime
) -> Silence | None:
    """The active silence that covers HOST/ALERT (the one lasting longest), or None."""
    found = [
        s
        for s in active(silences, now)
        if any(fnmatch.fnmatchcase(host, str(p)) for p in s["hosts"])
        and any(fnmatch.fnmatchcase(alert, str(p)) for p in s["alerts"])
    ]
    return max(found, key=_until) if found else None


def summary(silence: Silence) -> dict[str, str]:
    """What a held alert keeps of the silence that held it."""
    return {k: str(silence.get(k) or "") for k in ("id", "reason", "who", "start", "until")}


def describe(silence: Silence) -> str:
    who = f" ({silence['who']})" if silence.get("who") else ""
    return f"{silence.get('reason') or silence.get('id')}{who}"
