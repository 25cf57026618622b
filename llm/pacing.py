"""Smooth pacing against a provider's windowed limits.

A provider limit is "at most ``count`` per ``window`` seconds" (10 requests/s, 2,400
requests/min, 300,000 tokens/min), checked over a sliding window. A :class:`Pacer`
spaces calls evenly at ``count / (window + jitter) * safety`` (the generic cell rate algorithm,
GCRA: a token bucket kept as the theoretical arrival time of the next unit). A call
may go up to half the safety slack of its window early; the dispatcher wakes at
that early point, so its own lateness costs no throughput, and any window still holds
at most ``1 + (window + tolerance) * rate < count + 1`` calls: no bursts that trip a
per-second check.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    count: float
    window_s: float


class Pacer:
    def __init__(self, limit: Limit, safety: float = 0.995, share: float = 1.0, jitter_s: float = 0.025) -> None:
        self.limit = limit
        self.safety = safety
        self.jitter_s = jitter_s
        self._tat = 0.0
        self.set_share(share)

    def set_share(self, share: float) -> None:
        """This process's fraction of the limit (1 / live workers)."""
        self.share = share
        # The window is stretched by the jitter calls may meet on the way (scheduling,
        # network): it matters for per-second limits, hardly for per-minute ones.
        self.rate = self.limit.count / (self.limit.window_s + self.jitter_s) * self.safety * share
        self.tolerance = self.limit.window_s * (1.0 - self.safety) / 2

    def ready_at(self, now: float) -> float:
        """Earliest time a call conforms. Its cost is charged afterwards (``take``), so a
        call bigger than a whole window's budget still passes, then waits it off."""
        return max(now, self._tat - self.tolerance)

    def take(self, now: float, cost: float = 1.0) -> None:
        self._tat = max(self._tat, now) + cost / self.rate

    def adjust(self, delta_cost: float) -> None:
        """Correct an estimate afterwards (actual tokens known only after the call)."""
        self._tat += delta_cost / self.rate
