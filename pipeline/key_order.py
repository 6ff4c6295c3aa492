"""Per-key ordering of a runner's jobs: which keys are busy and the jobs waiting behind them; polling-thread-only.

Kafka orders a partition, but the runner processes several of its messages at once, so two events of
one key (one photo) could otherwise race. A job runs only once the job before it with the same key in
the same partition has finished. Only the polling thread calls in here, so nothing is locked.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

from pipeline.stage import Received

TP = tuple[str, int]
Slot = tuple[TP, bytes]


class Keyed(Protocol):
    """What ordering needs of a job: the message it carries."""

    @property
    def message(self) -> Received: ...


J = TypeVar("J", bound=Keyed)


class KeyOrder(Generic[J]):
    """Lets one job per (partition, key) run at a time; the others wait, in arrival order."""

    def __init__(self) -> None:
        self._busy: dict[Slot, deque[J]] = {}  # busy keys and the jobs waiting behind them

    def admit(self, job: J) -> bool:
        """True if `job` may run now (its key was free and is now busy); else it waits behind its key."""
        slot = _slot(job.message)
        waiting = self._busy.get(slot)
        if waiting is not None:
            waiting.append(job)
            return False
        self._busy[slot] = deque()
        return True

    def release(self, job: J) -> J | None:
        """`job` finished: the next job of its key, which now holds the key; None when the key is free again."""
        slot = _slot(job.message)
        waiting = self._busy.get(slot)
        if waiting:
            return waiting.popleft()
        self._busy.pop(slot, None)
        return None

    def forget(self, gone: set[TP]) -> None:
        """Drop the keys of partitions no longer assigned, with the jobs waiting on them."""
        self._busy = {slot: q for slot, q in self._busy.items() if slot[0] not in gone}


def _slot(message: Received) -> Slot:
    # Keyless messages carry no order promise: each gets a slot of its own.
    key = message.key if message.key is not None else b"\x00offset:%d" % message.offset
    return ((message.topic, message.partition), key)
