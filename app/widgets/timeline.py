"""Timeline: slider, play/pause at a chosen rate, frame number entry, and a status strip painted from arrays."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

# strip colours (RGB): detection row, then review-status row
NOT_RUN = (70, 70, 78)
NO_TARGET = (40, 110, 60)
HAS_TARGET = (230, 120, 30)
BAD_FRAME = (200, 30, 30)
STATUS_COLORS = {
    0: (70, 70, 78),  # unreviewed
    1: (40, 170, 70),  # accepted
    2: (60, 130, 230),  # corrected
    3: (210, 50, 50),  # rejected
    4: (150, 90, 200),  # negative (confirmed: no target)
    5: (255, 105, 180),  # CHANGED_ON_DISK
}
CHANGED_ON_DISK = 5  # strip code of a frame replaced on disk since its status or mask was made: to review again
STOP_MARKER = (255, 220, 0)  # where the last propagation stopped: a diamond across both rows
STOP_MARKER_HALF_WIDTH = 5  # pixels; also how near the mouse must be for the marker's tooltip


def strip_rgb(detections: np.ndarray, statuses: np.ndarray) -> np.ndarray:
    """(2, n, 3) uint8: row 0 from per-frame detection counts (-1 not run, -2 unreadable), row 1 from status codes."""
    top = np.empty((len(detections), 3), np.uint8)
    top[:] = NOT_RUN
    top[detections == 0] = NO_TARGET
    top[detections > 0] = HAS_TARGET
    top[detections == -2] = BAD_FRAME
    palette = np.array([STATUS_COLORS.get(k, NOT_RUN) for k in range(max(STATUS_COLORS) + 1)], np.uint8)
    bottom = palette[np.clip(statuses, 0, len(palette) - 1)]
    return np.ascontiguousarray(np.stack([top, bottom]))


class StatusStrip(QtWidgets.QWidget):
    """Whole-sequence overview: one QImage (2 rows x n frames) scaled to the widget; click or drag to seek."""

    seek = QtCore.Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(18)
        self.setMaximumHeight(22)
        self.setSizePolicy(QtWidgets.QSizePolicy.Expanding, QtWidgets.QSizePolicy.Fixed)
        self.setToolTip("Top: detections (orange = targets, green = none, grey = not run).\n"
                        "Bottom: review status (pink: the frame changed on disk since it was worked on).\n"
                        "Yellow diamond: where the last propagation stopped.")
        self._pixels = np.zeros((2, 1, 3), np.uint8)
        self._image = QtGui.QImage()
        self.count = 0
        self.current = 0
        self.stop_marker: tuple[int, str, bool] | None = None  # (frame index, why propagation ended there, stopped)

    def set_arrays(self, detections: np.ndarray, statuses: np.ndarray) -> None:
        self.count = len(detections)
        self._pixels = strip_rgb(np.asarray(detections), np.asarray(statuses))
        h, w, _ = self._pixels.shape
        self._image = QtGui.QImage(self._pixels.data, w, h, 3 * w, QtGui.QImage.Format_RGB888)
        self.update()

    def set_current(self, index: int) -> None:
        self.current = index
        self.update()

    def set_stop_marker(self, index: int | None, reason: str = "", stopped: bool = True) -> None:
        """Mark the last frame of a propagation (None: no marker). `stopped`: it refused to go on there
        (a reviewed or unreadable frame, a lost target); else it ran to its frame limit or the end."""
        self.stop_marker = None if index is None else (index, reason, stopped)
        self.update()

    def stop_tooltip(self) -> str:
        if self.stop_marker is None:
            return ""
        index, reason, stopped = self.stop_marker
        return f"Propagation {'stopped' if stopped else 'ended'} at frame {index + 1}: {reason}"

    def frame_x(self, index: int) -> int:
        """x of the centre of a frame's column."""
        return round((index + 0.5) * self.width() / max(self.count, 1))

    def paintEvent(self, event):
        painter = QtGui.QPainter(self)
        rect = self.rect()
        if not self._image.isNull():
            # fast transform: each frame stays a crisp column even when the strip is wider than the sequence
            painter.drawImage(rect, self._image)
        if self.count:
            x = self.frame_x(self.current)
            painter.setPen(QtGui.QPen(QtGui.QColor(255, 255, 255), 2))
            painter.drawLine(x, 0, x, rect.height())
        if self.count and self.stop_marker is not None:
            self._paint_stop_marker(painter, self.frame_x(self.stop_marker[0]), rect.height())
        painter.end()

    @staticmethod
    def _paint_stop_marker(painter: QtGui.QPainter, x: int, height: int) -> None:
        half, middle = STOP_MARKER_HALF_WIDTH, height / 2
        diamond = QtGui.QPolygonF([QtCore.QPointF(x, 0), QtCore.QPointF(x + half, middle),
                                   QtCore.QPointF(x, height), QtCore.QPointF(x - half, middle)])
        painter.setRenderHint(QtGui.QPainter.Antialiasing)
        painter.setPen(QtGui.QPen(QtGui.QColor(0, 0, 0), 1))
        painter.setBrush(QtGui.QColor(*STOP_MARKER))
        painter.drawPolygon(diamond)

    def event(self, event):
        if event.type() == QtCore.QEvent.ToolTip and self.count and self.stop_marker is not None:
            near = abs(event.pos().x() - self.frame_x(self.stop_marker[0])) <= STOP_MARKER_HALF_WIDTH
            if near:
                QtWidgets.QToolTip.showText(event.globalPos(), self.stop_tooltip(), self)
                return True
        return super().event(event)

    def _index_at(self, x: float) -> int:
        return int(np.clip(x * self.count / max(self.width(), 1), 0, max(self.count - 1, 0)))

    def mousePressEvent(self, event):
        if self.count:
            self.seek.emit(self._index_at(event.position().x()))

    def mouseMoveEvent(self, event):
        if self.count and event.buttons() & QtCore.Qt.LeftButton:
            self.seek.emit(self._index_at(event.position().x()))


class Timeline(QtWidgets.QWidget):
    """Frame navigation. Emits `frameRequested(index)`; the window calls `set_current` once it shows a frame."""

    frameRequested = QtCore.Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.count = 0
        self.play_button = QtWidgets.QToolButton()
        self.play_button.setCheckable(True)
        self.play_button.setIcon(self.style().standardIcon(QtWidgets.QStyle.SP_MediaPlay))
        self.play_button.setToolTip("Play / pause (Shift+Space)")
        self.play_button.toggled.connect(self._toggle_play)
        self.fps = QtWidgets.QSpinBox()
        self.fps.setRange(1, 120)
        self.fps.setValue(25)
        self.fps.setSuffix(" fps")
        self.fps.valueChanged.connect(lambda v: self._timer.setInterval(round(1000 / v)))
        self.slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.slider.setFocusPolicy(QtCore.Qt.NoFocus)  # arrow keys belong to the window's shortcuts
        self.slider.valueChanged.connect(self.frameRequested)
        self.frame_entry = QtWidgets.QSpinBox()
        self.frame_entry.setKeyboardTracking(False)
        self.frame_entry.setToolTip("Frame number (1-based)")
        self.frame_entry.valueChanged.connect(lambda v: self.frameRequested.emit(v - 1))
        self.total = QtWidgets.QLabel("/ 0")
        self.strip = StatusStrip()
        self.strip.seek.connect(self.frameRequested)

        row = QtWidgets.QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for w in (self.play_button, self.fps):
            row.addWidget(w)
        row.addWidget(self.slider, 1)
        row.addWidget(self.frame_entry)
        row.addWidget(self.total)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        layout.addWidget(self.strip)
        layout.addLayout(row)

        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(round(1000 / self.fps.value()))
        self._timer.timeout.connect(self._advance)
        self.set_count(0)

    @property
    def current(self) -> int:
        return self.slider.value()

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def set_count(self, count: int) -> None:
        self.count = count
        self.play_button.setChecked(False)
        with QtCore.QSignalBlocker(self.slider), QtCore.QSignalBlocker(self.frame_entry):
            self.slider.setRange(0, max(count - 1, 0))
            self.slider.setValue(0)
            self.frame_entry.setRange(1, max(count, 1))
            self.frame_entry.setValue(1)
        self.total.setText(f"/ {count}")
        self.strip.set_stop_marker(None)
        self.setEnabled(count > 0)

    def set_current(self, index: int) -> None:
        with QtCore.QSignalBlocker(self.slider), QtCore.QSignalBlocker(self.frame_entry):
            self.slider.setValue(index)
            self.frame_entry.setValue(index + 1)
        self.strip.set_current(index)

    def step(self, delta: int) -> None:
        if self.count:
            self.frameRequested.emit(int(np.clip(self.current + delta, 0, self.count - 1)))

    def go_to(self, index: int) -> None:
        if self.count:
            self.frameRequested.emit(int(np.clip(index, 0, self.count - 1)))

    def toggle_play(self) -> None:
        self.play_button.toggle()

    def _toggle_play(self, on: bool) -> None:
        icon = QtWidgets.QStyle.SP_MediaPause if on else QtWidgets.QStyle.SP_MediaPlay
        self.play_button.setIcon(self.style().standardIcon(icon))
        if on and self.count > 1:
            self._timer.start()
        else:
            self._timer.stop()
            if on:
                self.play_button.setChecked(False)

    def _advance(self) -> None:
        # loops, so a short clip can be watched repeatedly
        self.frameRequested.emit((self.current + 1) % self.count)
