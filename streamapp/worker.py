"""The worker process: Faust's, with a deadline on stopping and repeated Kafka client
errors logged once per window (`streamapp.log_repeats`).

On SIGTERM or SIGINT Faust commits offsets, flushes the producer and closes the tables.
With the broker gone the commit and the flush wait for it, so a worker ignored SIGTERM
until something killed it. What it has not committed is read again by whichever worker
takes its partitions next (at-least-once), so giving up loses nothing that waiting would
have saved: after the app's `shutdown_timeout_s` the process says why and exits with
status 1.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import faust

from streamapp.log_repeats import RepeatFilter

log = logging.getLogger(__name__)


class Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        repeats = RepeatFilter()
        for handler in logger.handlers:
            handler.addFilter(repeats)

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        if not self._signal_stop_time:
            timeout = self.app.shutdown_timeout_s
            watchdog = threading.Timer(timeout, _give_up, args=(timeout,))
            watchdog.daemon = True
            watchdog.start()
        super()._schedule_shutdown(sig)


def _give_up(timeout: float) -> None:
    log.critical("worker did not stop within %.0f s (is the broker reachable?); exiting without a clean "
                 "shutdown: uncommitted messages are read again by the next owner of their partitions", timeout)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(1)
