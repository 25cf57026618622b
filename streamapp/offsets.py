"""Which offset of a partition a worker may commit.

Kafka's committed offset says "everything below this is done". With several actors
per agent, messages finish out of order, so the offset to commit is the lowest one
delivered and not yet acknowledged; when nothing is outstanding, the one after the
last delivered. Offsets never delivered (transaction markers, compacted records) are
never outstanding, so they need no special case.
"""
from __future__ import annotations

from collections import deque
from typing import Optional


class PartitionProgress:
    """Delivered offsets of one partition, in order, and which of them are acknowledged."""

    __slots__ = ("_pending", "_acked", "_next")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._acked: set[int] = set()
        self._next: Optional[int] = None

    def delivered(self, offset: int) -> None:
        if self._next is not None and offset < self._next:
            # A seek back: what is delivered again is outstanding again.
            while self._pending and self._pending[-1] >= offset:
                self._acked.discard(self._pending.pop())
        self._pending.append(offset)
        self._next = offset + 1

    def acked(self, offset: int) -> None:
        self._acked.add(offset)

    def committable(self) -> Optional[int]:
        """The offset to commit, or None before anything was delivered."""
        pending, acked = self._pending, self._acked
        while pending and pending[0] in acked:
            acked.discard(pending.popleft())
        if not pending:
            # Acks left over are of deliveries from before a seek back; nothing waits on them.
            acked.clear()
            return self._next
        return pending[0]
