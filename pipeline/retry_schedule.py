"""The heap of delayed retries and the backoff that spaces them; polling-thread-only.

A transiently failed job waits here until its delay (exponential backoff with full jitter, see
pipeline/retry.py) is over; the runner then takes it back and resubmits it. Only the polling thread
calls in here, so the heap needs no lock.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pipeline.retry import Backoff

J = TypeVar("J")


@dataclass(order=True)
class _Retry(Generic[J]):
    due: float
    seq: int  # breaks ties on `due` in scheduling order, so jobs themselves are never compared
    job: J = field(compare=False)


class RetrySchedule(Generic[J]):
    """Jobs waiting for their next attempt, earliest due first."""

    def __init__(self, backoff: Backoff, clock: Callable[[], float]) -> None:
        self._backoff = backoff
        self._clock = clock
        self._heap: list[_Retry[J]] = []
        self._seq = itertools.count()

    def exhausted(self, attempts: int) -> bool:
        """True once `attempts` failed attempts are all the backoff allows."""
        return self._backoff.exhausted(attempts)

    def add(self, job: J, attempts: int) -> float:
        """Schedule the next attempt of `job` after `attempts` failed ones; returns its delay in seconds."""
        delay = self._backoff.delay(attempts)
        heapq.heappush(self._heap, _Retry(self._clock() + delay, next(self._seq), job))
        return delay

    def next_due(self) -> float | None:
        """When the earliest retry is due (on the runner's clock); None when nothing is scheduled."""
        return self._heap[0].due if self._heap else None

    def pop_due(self, now: float) -> J | None:
        """The earliest job due by `now`, taken off the schedule; None when none is."""
        if self._heap and self._heap[0].due <= now:
            return heapq.heappop(self._heap).job
        return None

    def drop(self, doomed: Callable[[J], bool]) -> None:
        """Unschedule the jobs `doomed` picks (those of revoked or lost partitions)."""
        self._heap = [r for r in self._heap if not doomed(r.job)]
        heapq.heapify(self._heap)
