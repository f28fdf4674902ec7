"""What long work prints: one timestamped progress line per host and step, and the one table."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

Progress = Callable[[str], None]

_print_lock = threading.Lock()


def _print(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


class Clock:
    """Progress lines `[  12.3s] web1     message`: seconds since the clock started, the host."""

    def __init__(self, out: Progress | None = None):
        self.t0 = time.monotonic()
        self.out = out or _print

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, message: str, host: str | None = None) -> None:
        where = f"{host:<8} " if host else ""
        self.out(f"[{self.elapsed():6.1f}s] {where}{message}")


def table(rows: list[dict], upper: bool = False) -> str:
    """Columns from the first row's keys, left-aligned; `(nothing)` for no rows."""
    if not rows:
        return "(nothing)"
    cols = list(rows[0])
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    heads = [c.upper() if upper else c for c in cols]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def warn(message: str) -> None:
    with _print_lock:
        print(message, file=sys.stderr, flush=True)
