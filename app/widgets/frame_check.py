"""Review > Check frames on disk: compares every frame the project worked on with the pixels it recorded
(`ReviewSession.check_frames`), in a worker thread, and marks the frames replaced on disk since."""
from __future__ import annotations

import threading
import time

from PySide6 import QtCore

from app.widgets.workers import WorkerRunner

PROGRESS_INTERVAL_S = 0.2  # between the status bar's progress updates


class FrameCheckWorker(QtCore.QObject):
    """Runs `session.check_frames` in the worker thread; `cancel()` stops it between frames."""

    progress = QtCore.Signal(int, int)
    finished = QtCore.Signal(object, object)  # {index: FrameChange} of the changed frames, error message or None

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()

    @QtCore.Slot()
    def run(self) -> None:
        last = [0.0]

        def progress(done: int, total: int) -> None:  # a few updates a second, not one per frame
            now = time.monotonic()
            if done == total or now - last[0] >= PROGRESS_INTERVAL_S:
                last[0] = now
                self.progress.emit(done, total)

        try:
            result, error = self.session.check_frames(progress, self.cancelled), None
        except Exception as exc:  # reported in the status bar
            result, error = None, f"{type(exc).__name__}: {exc}"
        self.finished.emit(result, error)


class FrameCheck(QtCore.QObject):
    """The check's runner and what the window shows of its outcome."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.runner = WorkerRunner(self)

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def start(self) -> None:
        session = self.window.session
        if session is None:
            return
        if session.project is None:
            self.window.statusBar().showMessage("Nothing to check: no frame of this sequence has been worked on.",
                                                8000)
            return
        worker = FrameCheckWorker(session)
        worker.progress.connect(self._progress)
        worker.finished.connect(self._finished)
        self.runner.start(worker)

    def stop(self) -> None:
        """Cancel a running check and wait for it (a new sequence, or the window closing)."""
        self.runner.stop()

    def _progress(self, done: int, total: int) -> None:
        self.window.statusBar().showMessage(f"Checking the frames worked on against the files on disk: "
                                            f"{done}/{total}")

    def _finished(self, changed, error) -> None:
        worker = self.sender()
        if worker is None or worker is not self.runner.worker:
            return
        self.runner.release_if_done(worker)
        if error:
            self.window.statusBar().showMessage(f"Checking the frames failed: {error}", 15000)
            return
        if worker.cancelled.is_set():
            return
        if not changed:
            message = "Every frame worked on still holds the pixels its masks and statuses were made on."
        else:
            again = sum(change.review or change.mask for change in changed.values())
            detect = sum(change.proposal for change in changed.values())
            parts = ([f"{again} to review again (export skips them until their status is set again)"] if again
                     else []) + ([f"{detect} with a proposal to detect again"] if detect else [])
            message = (f"{len(changed)} frames changed on disk since they were worked on (pink in the timeline): "
                       + "; ".join(parts) + ".")
        self.window.statusBar().showMessage(message, 30000)
        self.window.changed_frames_found()
