"""The inference engine: one loop for every command (labels, threshold, batches, prefetch, errors)."""

from __future__ import annotations

import threading
import time

import pytest

from sketchkit.inference.engine import prefetch


def test_prefetch_keeps_order_and_loads_ahead():
    loaded_third = threading.Event()

    def load(item):
        if item == 3:
            loaded_third.set()
        return item * 10

    stream = prefetch(range(5), load, depth=2)
    assert next(stream) == 0
    # while the consumer holds item 0, the loader fills its queue of 2 and starts on item 3
    assert loaded_third.wait(timeout=10)
    assert list(stream) == [10, 20, 30, 40]


def test_prefetch_reraises_where_the_load_failed():
    def load(item):
        if item == 2:
            raise ValueError("bad item 2")
        return item

    got = []
    with pytest.raises(ValueError, match="bad item 2"):
        for value in prefetch(range(5), load):
            got.append(value)
    assert got == [0, 1]


def test_prefetch_stops_its_thread_when_closed_early():
    started = []

    def load(item):
        started.append(item)
        return item

    before = threading.active_count()
    stream = prefetch(range(1000), load, depth=1)
    assert next(stream) == 0
    stream.close()
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    assert len(started) < 1000
