"""Cyclic garbage is freed in the GUI thread, never in a worker that happens to cross a GC threshold."""
from __future__ import annotations

import gc
import threading

import pytest

from app.main_thread_gc import MainThreadGarbageCollector

pytestmark = [pytest.mark.gui, pytest.mark.own_gc_collector]


class _Cycle:
    """A reference cycle that records the thread that frees it."""

    freed_in: list[str] = []

    def __init__(self):
        self.me = self

    def __del__(self):
        _Cycle.freed_in.append(threading.current_thread().name)


def _cycle_then_allocation_in_a_worker(n_objects: int) -> list:
    """Make a garbage cycle, then containers (kept) in a worker thread: they count towards generation 0's
    threshold. The main thread allocates next to nothing in between (its count starts from a collection),
    so a collection can only start in the worker."""
    made = []

    def churn():
        made.extend([] for _ in range(n_objects))

    worker = threading.Thread(target=churn, name="worker")
    gc.collect()
    _Cycle()
    worker.start()
    worker.join()
    return made


@pytest.fixture
def clean_gc():
    enabled, thresholds = gc.isenabled(), gc.get_threshold()
    gc.collect()
    _Cycle.freed_in.clear()
    yield
    gc.set_threshold(*thresholds)
    gc.enable() if enabled else gc.disable()


def test_without_the_collector_a_worker_frees_the_garbage(clean_gc):
    gc.enable()
    gc.set_threshold(100, 1, 1)  # the next collection is a full one, as when CI hung
    _cycle_then_allocation_in_a_worker(1000)
    assert _Cycle.freed_in == ["worker"]


def test_collector_frees_garbage_only_in_the_gui_thread(qtbot, clean_gc):
    gc.enable()
    gc.set_threshold(100, 1, 1)
    collector = MainThreadGarbageCollector(interval_ms=20)
    collector.start()
    try:
        assert not gc.isenabled() and collector.active
        made = _cycle_then_allocation_in_a_worker(1000)
        assert _Cycle.freed_in == []  # the worker crossed the threshold and collected nothing
        qtbot.waitUntil(lambda: bool(_Cycle.freed_in), timeout=5000)
        assert _Cycle.freed_in == [threading.main_thread().name] and collector.collections >= 1
        del made
    finally:
        collector.stop()
    assert gc.isenabled() and not collector.active


def test_collector_runs_the_older_generations_when_their_counts_are_due(qtbot, clean_gc):
    collector = MainThreadGarbageCollector(interval_ms=10_000)
    collector.start()
    try:
        threshold0, threshold1, _ = collector.thresholds
        kept = []
        for _ in range(threshold1 + 2):  # enough young collections to make generation 1 due
            kept.append([[] for _ in range(threshold0 + 1)])
            collector.check()
        assert gc.get_count()[1] <= 1  # generation 1 was collected, which resets its count
    finally:
        collector.stop()


def test_stop_keeps_automatic_collection_off_when_it_was_off(clean_gc):
    gc.disable()
    collector = MainThreadGarbageCollector()
    collector.start()
    collector.stop()
    assert not gc.isenabled()
