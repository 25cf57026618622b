"""Repeated client errors, logged once per window.

With its broker gone, each Kafka client of a worker (Faust's consumer and producer, the
relay's readers, the key pool's reader and writer) logs the same connection error
several times a second. The first of a kind passes; identical ones within `window_s`
are held back and counted, and the next one after the window says how many there were.
Only the loggers named in `prefixes` are filtered: an application warning is never held back.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

MAX_TRACKED = 1000


class RepeatFilter(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka", "faust.transport"), window_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self.clock = clock
        # message -> (when it last passed, how many were held back since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        message = record.getMessage()
        key = (record.name, record.levelno, message)
        now = self.clock()
        passed, held = self._seen.get(key, (None, 0))
        if passed is not None and now - passed < self.window_s:
            self._seen[key] = (passed, held + 1)
            return False
        if held:
            record.msg, record.args = f"{message} ({held} more like this in the last {now - passed:.0f} s)", None
        if len(self._seen) >= MAX_TRACKED:
            self._forget_before(now - self.window_s)
        self._seen[key] = (now, 0)
        return True

    @property
    def tracked(self) -> int:
        return len(self._seen)

    def _forget_before(self, cutoff: float) -> None:
        self._seen = {k: v for k, v in self._seen.items() if v[0] >= cutoff}
