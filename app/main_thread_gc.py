"""Python's cyclic garbage collection, moved to the GUI thread.

The collector runs in whichever thread happens to allocate when a generation threshold is crossed. In the
review app that is often a worker (detection and comparison QThreads, the read-ahead threads), and a
collection there frees whatever cyclic garbage exists at that moment: wrappers of closed windows, their
widgets, actions, graphics items and GL views. Qt objects must be destroyed in the GUI thread; destroyed
in a worker while it holds the GIL, they can deadlock the whole process (seen on CI: the suite hung with
no Python-level timeout able to fire). `MainThreadGarbageCollector` turns automatic collection off and
runs the same generational collections from a timer in the GUI thread instead.
"""
from __future__ import annotations

import gc

from PySide6 import QtCore

CHECK_INTERVAL_MS = 500


class MainThreadGarbageCollector(QtCore.QObject):
    """While started, cyclic garbage is collected only in the thread that owns this object (the GUI thread).

    Checks every `interval_ms` with the interpreter's own thresholds: generation 0 when its count is over
    the first threshold, the older generations when theirs are too. `stop()` collects once more and gives
    automatic collection back (tests start and stop one per window)."""

    def __init__(self, parent: QtCore.QObject | None = None, interval_ms: int = CHECK_INTERVAL_MS):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.collections = 0
        self._was_enabled = False
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)

    @property
    def active(self) -> bool:
        return self.timer.isActive()

    def start(self) -> None:
        if self.active:
            return
        self._was_enabled = gc.isenabled()
        gc.disable()
        self.timer.start()

    def stop(self) -> None:
        if not self.active:
            return
        self.timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()

    def check(self) -> None:
        count0, count1, count2 = gc.get_count()
        threshold0, threshold1, threshold2 = self.thresholds
        if count0 <= threshold0:
            return
        generation = 0
        if count1 > threshold1:
            generation = 2 if count2 > threshold2 else 1
        gc.collect(generation)
        self.collections += 1
