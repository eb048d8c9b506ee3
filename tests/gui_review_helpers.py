"""Helpers of the review-tool GUI tests: a project whose predictions are the ground truth, and real mouse
input on the frame view (hover first, then press, moves carrying the held button, release)."""
from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtTest import QTest

from app.session import ReviewSession
from model.detectors import FrameResult


def predict_ground_truth(sequence_dir, frames=None) -> None:
    """Save each frame's ground truth as its prediction (logits +-5), as if a detector had run."""
    session = ReviewSession.open(sequence_dir)
    project = session.ensure_project()
    for i in range(len(session)) if frames is None else frames:
        stem = session.stem(i)
        truth = session.ground_truth.mask(stem)
        project.save_prediction(stem, FrameResult(np.where(truth, 5.0, -5.0).astype(np.float32)))
    project.flush_detections()
    session.close()


def open_project(window, qtbot, path) -> None:
    assert window.open_path(path)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    window.activateWindow()
    window.frame_view.graphics.setFocus()


def viewport_point(window, x: float, y: float) -> QtCore.QPoint:
    """Where the centre of image pixel (x, y) is on the frame view's viewport."""
    view = window.frame_view
    scene = view.view.mapViewToScene(QtCore.QPointF(x + 0.5, y + 0.5))
    return view.graphics.mapFromScene(scene)


def _viewport(window) -> QtWidgets.QWidget:
    return window.frame_view.graphics.viewport()


def drag(window, pixels) -> None:
    """A left-button drag through the centres of `pixels` (x, y): only these positions are sent."""
    viewport = _viewport(window)
    points = [viewport_point(window, x, y) for x, y in pixels]
    QTest.mouseMove(viewport, points[0])
    QTest.mousePress(viewport, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, points[0])
    for p in points[1:]:
        local = QtCore.QPointF(p)
        event = QtGui.QMouseEvent(QtCore.QEvent.MouseMove, local, viewport.mapToGlobal(local), QtCore.Qt.NoButton,
                                  QtCore.Qt.LeftButton, QtCore.Qt.NoModifier)
        QtWidgets.QApplication.sendEvent(viewport, event)
    QTest.mouseRelease(viewport, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, points[-1])


def click(window, x: int, y: int) -> None:
    viewport = _viewport(window)
    point = viewport_point(window, x, y)
    QTest.mouseMove(viewport, point)
    QTest.mouseClick(viewport, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, point)


def double_click(window, x: int, y: int) -> None:
    viewport = _viewport(window)
    point = viewport_point(window, x, y)
    QTest.mouseMove(viewport, point)
    QTest.mouseDClick(viewport, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, point)


def committed(window, index: int | None = None) -> np.ndarray | None:
    session = window.session
    return session.project.committed_mask(session.stem(window.index if index is None else index))
