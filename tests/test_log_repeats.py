"""A Kafka client's repeated error is logged once per window, with a count of the rest."""
from __future__ import annotations

import logging

from streamapp.log_repeats import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_an_identical_client_error_passes_once_per_window_then_says_how_many_were_held_back():
    clock = Clock()
    repeats = RepeatFilter(window_s=30, clock=clock)
    error = ("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "Connect call failed")
    assert repeats.filter(record(*error))
    passed = []
    for _ in range(99):
        clock.now += 0.1
        passed.append(repeats.filter(record(*error)))
    assert not any(passed)
    clock.now = 31
    later = record(*error)
    assert repeats.filter(later)
    assert later.getMessage() == "Unable connect to node with id 1: Connect call failed (99 more like this in the last 31 s)"
    clock.now = 62
    quiet = record(*error)
    assert repeats.filter(quiet)
    assert "more like this" not in quiet.getMessage()


def test_different_errors_and_application_warnings_all_pass():
    repeats = RepeatFilter(clock=Clock())
    assert repeats.filter(record("aiokafka.conn", "Unable connect to node with id %s", 1))
    assert repeats.filter(record("aiokafka.conn", "Unable connect to node with id %s", 2))
    for _ in range(3):
        assert repeats.filter(record("agents.assessor", "task %s failed", "t1", level=logging.WARNING))


def test_old_messages_are_forgotten_so_the_filter_stays_small():
    clock = Clock()
    repeats = RepeatFilter(window_s=1, clock=clock)
    for n in range(5000):
        clock.now = n
        repeats.filter(record("aiokafka.conn", "error %s", n))
    assert repeats.tracked <= 1000
