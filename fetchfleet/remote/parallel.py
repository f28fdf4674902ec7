"""Fan-out over hosts: one thread per host (bounded), results in the hosts' order.

The deploy runs a different command or program per host and ships programs on stdin, which
Fabric's ThreadingGroup cannot do (it runs one command, with one shared input stream, on every
host); so the fan-out is this small pool over the same per-host Fabric connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from fetchfleet.errors import FleetError

T = TypeVar("T")
R = TypeVar("R")
MAX_THREADS = 16


def parallel(func: Callable[[T], R], items: Iterable[T], limit: int = MAX_THREADS) -> list[R]:
    """func over items at once; the first exception (in item order) is raised after all finish."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        futures = [pool.submit(func, item) for item in items]
        return [f.result() for f in futures]


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """One item's result, or the FleetError it raised."""

    value: R | None = None
    error: FleetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def each(func: Callable[[T], R], items: Iterable[T], limit: int = MAX_THREADS) -> list[Outcome[R]]:
    """Like parallel, but a host's FleetError is its outcome, not the caller's: the other hosts'
    results are still there (a status table, a backup of every source that answers)."""

    def one(item: T) -> Outcome[R]:
        try:
            return Outcome(value=func(item))
        except FleetError as err:
            return Outcome(error=err)

    return parallel(one, items, limit)
