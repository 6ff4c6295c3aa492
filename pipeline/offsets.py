"""Per-partition bookkeeping: which offset is safe to commit while work finishes out of order."""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Tracks received offsets of one partition and finds the lowest unfinished one.

    Work on a partition finishes out of order (different keys run in parallel), but a commit says
    "everything before this offset is done", so it may only move up to the lowest offset still running.
    """

    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # received, in arrival order (= offset order)
        self._finished: set[int] = set()  # finished but not yet at the head of `_pending`
        self._next: int | None = None  # offset to commit when nothing is pending
        self.committed: int | None = None

    def received(self, offset: int) -> None:
        """Record an offset handed to the runner."""
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} received out of order after {self._pending[-1]}")
        self._pending.append(offset)

    def finished(self, offset: int) -> None:
        """Record that an offset's outputs are durable (or that it was skipped or dead-lettered)."""
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            head = self._pending.popleft()
            self._finished.discard(head)
            self._next = head + 1

    def committable(self, resend: bool = False) -> int | None:
        """The offset to commit now (Kafka's convention: the next offset to read), or None if nothing new.

        `resend` returns it even when it equals the last one committed (an asynchronous commit may
        have failed unseen; the final commit makes sure).
        """
        candidate = self._pending[0] if self._pending else self._next
        if candidate is None or (not resend and self.committed is not None and candidate <= self.committed):
            return None
        if self._next is None:
            return None  # nothing finished yet
        return candidate

    @property
    def in_flight(self) -> int:
        """Offsets received and not yet finished."""
        return len(self._pending) - len(self._finished)
