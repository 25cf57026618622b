"""Smooth pacing against a provider's windowed limits.

A provider limit is "at most ``count`` per ``window`` seconds" (10 requests/s, 2,400
requests/min, 300,000 tokens/min), checked over a sliding window. A :class:`Pacer`
spaces calls evenly at ``rate = safety * count / (window + jitter)`` (the generic cell
rate algorithm, GCRA: a token bucket kept as the theoretical arrival time of the next
unit). A call may go up to ``tolerance = window * (1 - safety)`` early; the dispatcher
wakes at that early point, so a late wake-up (a busy event loop) is caught up instead
of lost. Any window, stretched by up to ``jitter`` on the way to the provider, still
holds at most ``1 + rate * (window + tolerance + jitter) < count + 1`` calls: nothing
that trips a per-second check, and a per-minute quota used to ``safety``.
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
        self.tolerance = self.limit.window_s * (1.0 - self.safety)

    def ready_at(self, now: float) -> float:
        """Earliest time a call conforms. Its cost is charged afterwards (``take``), so a
        call bigger than a whole window's budget still passes, then waits it off."""
        return max(now, self._tat - self.tolerance)

    def take(self, now: float, cost: float = 1.0) -> None:
        self._tat = max(self._tat, now) + cost / self.rate

    def adjust(self, delta_cost: float) -> None:
        """Correct an estimate afterwards (actual tokens known only after the call)."""
        self._tat += delta_cost / self.rate
