"""Edits that must land on the frame they were made on, and only when there is something to make them from
(GUI audit 6): the real window under Xvfb, real files, real mouse and keys."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets
from PySide6.QtTest import QTest

from app.core.edits import fill_polygon
from app.core.project import ReviewStatus
from app.editing import Tool
from model.detectors import FrameResult
from tests.gui_review_helpers import (click, committed, double_click, drag, open_project, predict_ground_truth,
                                      viewport_point)

pytestmark = pytest.mark.gui


def _key(window, qtbot, key, modifier=QtCore.Qt.NoModifier) -> None:
    """A key pressed on the frame view; the window's shortcuts take it once the window is active."""
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activeWindow() is window, timeout=5000)
    qtbot.keyClick(window.frame_view.graphics, key, modifier)


def _labels_file(window, index: int):
    return window.session.project.folder / "labels" / f"{window.session.stem(index)}.png"


# --- 1. Add all (Ctrl+A) on a frame with no proposal ---------------------------------------------------


def test_add_all_on_a_frame_not_detected_is_refused_and_writes_nothing(window, fresh_sequence, qtbot):
    """Ctrl+A on a frame ahead of detection committed an all-zero label and marked the frame corrected: it
    left the unreviewed queue and exported an empty mask over its real targets."""
    predict_ground_truth(fresh_sequence, frames=[0])
    open_project(window, qtbot, fresh_sequence)
    window.timeline.go_to(1)
    assert window.session.ground_truth.mask(window.session.stem(1)).any()  # a frame with targets
    _key(window, qtbot, QtCore.Qt.Key_A, QtCore.Qt.ControlModifier)
    assert window.session.status(1) is ReviewStatus.UNREVIEWED
    assert committed(window, 1) is None and not _labels_file(window, 1).exists()
    assert not window.review_tools.editing.editor.can_undo(1)
    assert "Frame 2 has no proposal to add yet" in window.statusBar().message()
    window.review_tools.palette.accept_all.trigger()  # the tool bar's button: the same
    assert committed(window, 1) is None and window.session.status(1) is ReviewStatus.UNREVIEWED
    assert window.review_tools.review_panel.counts.text().startswith(f"unreviewed {len(window.session)} ")

    window.timeline.go_to(0)  # a detected frame still adds its targets
    _key(window, qtbot, QtCore.Qt.Key_A, QtCore.Qt.ControlModifier)
    assert np.array_equal(committed(window, 0), window.layers.prediction)
    assert window.session.status(0) is ReviewStatus.CORRECTED


def test_add_all_on_a_frame_whose_proposal_is_empty_is_refused(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence)
    open_project(window, qtbot, fresh_sequence)
    session = window.session
    session.project.save_prediction(session.stem(2), FrameResult(np.full(session.frame(2).shape, -5, np.float32)))
    session.record_result(2)
    window.timeline.go_to(2)
    _key(window, qtbot, QtCore.Qt.Key_A, QtCore.Qt.ControlModifier)
    assert committed(window, 2) is None and session.status(2) is ReviewStatus.UNREVIEWED
    assert "proposal has no target to add" in window.statusBar().message()


# --- 2. an unfinished polygon or stroke when the frame changes ------------------------------------------


def test_changing_frame_drops_an_unfinished_polygon(review, qtbot):
    """Two vertices on frame 3, D, then a click and a double-click on frame 4 filled a triangle on frame 4
    whose first two vertices were placed on frame 3."""
    editing = review.review_tools.editing
    review.timeline.go_to(2)
    review.review_tools.palette.set_tool(Tool.POLYGON)
    click(review, 20, 20)
    click(review, 60, 20)
    assert len(editing.polygon) == 2 and editing.polygon_line.isVisible()
    _key(review, qtbot, QtCore.Qt.Key_D)
    assert review.index == 3
    assert editing.polygon == [] and not editing.polygon_line.isVisible()
    assert "unfinished polygon of frame 3 was dropped" in review.statusBar().message()
    click(review, 40, 60)
    double_click(review, 40, 60)  # one vertex on this frame: nothing to fill
    assert committed(review, 2) is None and committed(review, 3) is None
    assert review.session.status(3) is ReviewStatus.UNREVIEWED

    # a polygon drawn on one frame is still filled there
    for x, y in ((20, 20), (60, 20)):
        click(review, x, y)
    double_click(review, 40, 60)
    expected = fill_polygon(review.layers.prediction.copy(), [(20.5, 20.5), (60.5, 20.5), (40.5, 60.5)], True)
    assert np.array_equal(committed(review, 3), expected)


def test_a_polygon_survives_showing_its_own_frame_again(review, qtbot):
    """Re-showing the same frame (a status, a new result) keeps the polygon being drawn."""
    editing = review.review_tools.editing
    review.review_tools.palette.set_tool(Tool.POLYGON)
    click(review, 20, 20)
    click(review, 60, 20)
    review.show_frame(review.index)
    assert len(editing.polygon) == 2
    double_click(review, 40, 60)
    assert committed(review, 0) is not None and committed(review, 0)[40, 40]


def test_changing_frame_while_the_brush_is_held_drops_the_stroke(review, qtbot):
    """Pressed on frame 11, D with the button down, released: the stroke was written to frame 12."""
    editing = review.review_tools.editing
    review.review_tools.palette.brush_size.setValue(3)
    review.review_tools.palette.set_tool(Tool.BRUSH)
    review.timeline.go_to(10)
    viewport = review.frame_view.graphics.viewport()
    p0, p1 = viewport_point(review, 20, 40), viewport_point(review, 60, 40)
    QTest.mouseMove(viewport, p0)
    QTest.mousePress(viewport, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, p0)
    assert editing.stroke
    _key(review, qtbot, QtCore.Qt.Key_D)
    assert review.index == 11 and not editing.stroke and not editing.preview.isVisible()
    assert "unfinished brush stroke of frame 11 was dropped" in review.statusBar().message()
    move = QtGui.QMouseEvent(QtCore.QEvent.MouseMove, QtCore.QPointF(p1), viewport.mapToGlobal(QtCore.QPointF(p1)),
                             QtCore.Qt.NoButton, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier)
    QtWidgets.QApplication.sendEvent(viewport, move)
    QTest.mouseRelease(viewport, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, p1)
    assert committed(review, 10) is None and committed(review, 11) is None
    assert review.session.status(11) is ReviewStatus.UNREVIEWED

    drag(review, [(20, 40), (30, 40)])  # the next stroke, on one frame, is painted
    assert committed(review, 11)[40, 20:31].all()
