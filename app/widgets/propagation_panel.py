"""Propagation of the current frame's target into the next (or previous) frames, run in a worker thread.

The search (`app.core.propagation.propagate`) only reads; the result is written on the GUI thread with
`apply_propagation`, one undoable edit per frame. Reviewed frames are never overwritten: propagation
stops in front of them and says so. Cancelling (a threading.Event checked before each frame is read)
drops the whole run: nothing is written.
"""
from __future__ import annotations

import threading

import numpy as np
from PySide6 import QtCore, QtWidgets

from app.core.propagation import MODES, CancellableSource, PropagationResult, propagate
from app.widgets.workers import CancellableCallWorker, WorkerRunner

PROMPT = "Select a target (or none: the whole committed mask) and propagate."


class PropagationPanel(QtWidgets.QWidget):
    propagateRequested = QtCore.Signal(int)  # direction: +1 forward, -1 backward
    cancelRequested = QtCore.Signal()
    goToStopRequested = QtCore.Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.backward = QtWidgets.QPushButton("\u25c0 Backward")
        self.forward = QtWidgets.QPushButton("Forward \u25b6")
        self.backward.setToolTip("Carry this frame's committed target into the previous frames (Ctrl+Left)")
        self.forward.setToolTip("Carry this frame's committed target into the next frames (Ctrl+Right)")
        self.backward.clicked.connect(lambda: self.propagateRequested.emit(-1))
        self.forward.clicked.connect(lambda: self.propagateRequested.emit(1))
        self.cancel = QtWidgets.QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(self.cancelRequested)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(MODES)
        self.mode.setToolTip("track: re-detect the target in each frame; copy: shift the mask by the motion")
        self.max_frames = QtWidgets.QSpinBox()
        self.max_frames.setRange(1, 10000)
        self.max_frames.setValue(50)
        self.result = QtWidgets.QLabel(PROMPT)
        self.result.setWordWrap(True)
        self.go_to_stop = QtWidgets.QPushButton("Go to the stop")
        self.go_to_stop.setEnabled(False)
        self.go_to_stop.clicked.connect(lambda: self.goToStopRequested.emit(self.stop_index))
        self.stop_index = -1

        buttons = QtWidgets.QHBoxLayout()
        buttons.addWidget(self.backward)
        buttons.addWidget(self.forward)
        buttons.addWidget(self.cancel)
        options = QtWidgets.QHBoxLayout()
        options.addWidget(QtWidgets.QLabel("Mode"))
        options.addWidget(self.mode, 1)
        options.addWidget(QtWidgets.QLabel("at most"))
        options.addWidget(self.max_frames)
        options.addWidget(QtWidgets.QLabel("frames"))
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addLayout(options)
        layout.addWidget(self.result)
        layout.addWidget(self.go_to_stop)

    def set_running(self, running: bool) -> None:
        self.forward.setEnabled(not running)
        self.backward.setEnabled(not running)
        self.cancel.setEnabled(running)
        if running:
            self.result.setText("Propagating...")
            self.go_to_stop.setEnabled(False)

    def show_result(self, text: str, stop_index: int | None) -> None:
        self.result.setText(text)
        self.stop_index = -1 if stop_index is None else stop_index
        self.go_to_stop.setEnabled(stop_index is not None)

    def clear_result(self) -> None:
        """No result shown, no stop to go to: another sequence was opened (frame numbers are its own)."""
        self.show_result(PROMPT, None)


class Propagation(QtCore.QObject):
    """Runs `propagate` for the window's current frame in a worker; `finished(result, error)` on the GUI thread."""

    finished = QtCore.Signal(object, object)  # PropagationResult (None: cancelled or failed), error message or None

    def __init__(self, parent=None):
        super().__init__(parent)
        self.runner = WorkerRunner(self)

    @property
    def busy(self) -> bool:
        return self.runner.busy

    def start(self, session, index: int, target_mask: np.ndarray, direction: int, mode: str, max_frames: int,
              detector=None) -> None:
        """`detector`: proposes targets on frames with no stored prediction (None: re-segmentation there);
        nothing else may run it until propagation ends."""
        project, stem = session.project, session.stem(index)
        cancelled = threading.Event()
        source = CancellableSource(session.source, cancelled)
        worker = CancellableCallWorker(lambda: propagate(project, source, session.normalization, stem, direction,
                                                     target_mask=target_mask, detector=detector,
                                                     max_frames=max_frames, mode=mode),
                                   cancelled)
        worker.finished.connect(self._done)
        self.runner.start(worker)

    def cancel(self) -> None:
        self.runner.cancel()

    def stop(self) -> None:
        self.runner.stop()

    def _done(self, result: PropagationResult | None, error) -> None:
        worker = self.sender()
        # None: the run was stopped (`stop`) and its worker dropped before this queued call arrived
        if worker is None or worker is not self.runner.worker:
            return
        self.runner.release_if_done(worker)
        if worker.cancelled.is_set():
            result, error = None, None
        self.finished.emit(result, error)
