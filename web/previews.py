"""Joins each verdict with its frame's preview image, for the browsers.

The preview is the one heavy part of a frame the page needs. It stays on
detection-results, where the detector put it: the relay reads it from there, and no
agent, table or later topic copies it (the fan-out, the aggregator's changelog and
camera-verdicts would otherwise each carry it once more per frame). The preview
normally arrives long before the verdict (three hops later); a verdict whose preview
has not arrived waits a short while, then goes without one rather than not at all.
Both sides are bounded: the oldest preview, and the oldest waiting verdict, go first.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Optional, TypeVar

V = TypeVar("V")
Ready = list[tuple[V, Optional[str]]]


class PreviewJoin(Generic[V]):
    """Pairs verdicts (by frame id) with previews; returns what is ready to send."""

    def __init__(self, capacity: int, wait_s: float) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.previews: OrderedDict[str, str] = OrderedDict()
        self.waiting: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self.without_preview = 0

    def preview(self, frame_id: str, preview: str) -> Ready:
        parked = self.waiting.pop(frame_id, None)
        if parked is not None:
            return [(parked[1], preview)]
        self.previews[frame_id] = preview
        if len(self.previews) > self.capacity:
            self.previews.popitem(last=False)
        return []

    def verdict(self, frame_id: str, verdict: V, now: float) -> Ready:
        preview = self.previews.pop(frame_id, None)
        if preview is not None:
            return [(verdict, preview)]
        self.waiting[frame_id] = (now + self.wait_s, verdict)
        if len(self.waiting) > self.capacity:
            _, (_, oldest) = self.waiting.popitem(last=False)
            return self._without([oldest])
        return []

    def expire(self, now: float) -> Ready:
        """Verdicts that waited long enough: they go without their preview."""
        due = []
        while self.waiting:
            frame_id, (deadline, verdict) = next(iter(self.waiting.items()))
            if deadline > now:
                break
            del self.waiting[frame_id]
            due.append(verdict)
        return self._without(due)

    def clear(self) -> None:
        """Nobody is watching: forget the previews and the waiting verdicts."""
        self.previews.clear()
        self.waiting.clear()

    def _without(self, verdicts: list[V]) -> Ready:
        self.without_preview += len(verdicts)
        return [(v, None) for v in verdicts]
