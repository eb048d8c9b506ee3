"""Propagation in the real window under Xvfb: the stop marker on the timeline strip, and edits refused
while the worker runs."""
from __future__ import annotations

import shutil
import threading

import cv2
import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.project import ReviewStatus
from app.editing import FrameEditor, Tool
from app.widgets.timeline import STOP_MARKER
from model.detectors import FrameResult
from tests.gui_review_helpers import (
    click,
    committed,
    drag,
    open_project,
    predict_ground_truth,
)

pytestmark = pytest.mark.gui


def _wait_done(window, qtbot) -> None:
    tools = window.review_tools
    qtbot.waitUntil(lambda: tools.propagation_panel.forward.isEnabled() and not tools.propagation.busy, timeout=15000)


def _strip_color(strip, x: int) -> tuple[int, int, int]:
    color = strip.grab().toImage().pixelColor(x, strip.height() // 2)
    return color.red(), color.green(), color.blue()


def _slow_frames(window, monkeypatch, ms: int) -> None:
    source = window.session.source
    read = source.frame

    def slow_frame(index):
        QtCore.QThread.msleep(ms)
        return read(index)

    monkeypatch.setattr(source, "frame", slow_frame)


def test_stop_marker_on_the_timeline_with_its_reason(review, qtbot):
    tools, strip = review.review_tools, review.timeline.strip
    assert FrameEditor(review.session).paint(0, [(60.5, 30.5)], size=3)
    review.timeline.go_to(3)
    tools.set_status(ReviewStatus.ACCEPTED)
    review.timeline.go_to(0)
    x = strip.frame_x(3)
    before = _strip_color(strip, x)
    tools.propagation_panel.mode.setCurrentText("copy")
    tools.propagation_panel.forward.click()
    _wait_done(review, qtbot)

    assert strip.stop_marker == (3, "frame already reviewed: accepted", True)
    assert strip.stop_tooltip() == "Propagation stopped at frame 4: frame already reviewed: accepted"
    assert _strip_color(strip, x) == STOP_MARKER != before
    assert _strip_color(strip, strip.frame_x(20)) != STOP_MARKER
    # the tooltip near the marker gives the reason; elsewhere the strip's own tooltip
    local = QtCore.QPoint(x + 2, strip.height() // 2)
    QtWidgets.QApplication.sendEvent(strip, QtGui.QHelpEvent(QtCore.QEvent.ToolTip, local, strip.mapToGlobal(local)))
    assert "frame 4: frame already reviewed" in QtWidgets.QToolTip.text()
    QtWidgets.QToolTip.hideText()

    # a new run clears the marker at once; this one (backward from frame 2) stops at the corrected frame 0
    review.timeline.go_to(2)
    tools.propagation_panel.backward.click()
    assert strip.stop_marker is None
    _wait_done(review, qtbot)
    assert strip.stop_marker == (0, "frame already reviewed: corrected", True)
    # opening another sequence drops it
    review.timeline.set_count(len(review.session))
    assert strip.stop_marker is None


def test_a_run_that_reaches_max_frames_marks_its_last_frame(review, qtbot):
    tools, strip = review.review_tools, review.timeline.strip
    assert FrameEditor(review.session).paint(0, [(60.5, 30.5)], size=3)
    review.show_frame(0)
    tools.propagation_panel.mode.setCurrentText("copy")
    tools.propagation_panel.max_frames.setValue(4)
    tools.propagation_panel.forward.click()
    _wait_done(review, qtbot)
    assert strip.stop_marker == (4, "frame limit reached", False)
    assert strip.stop_tooltip() == "Propagation ended at frame 5: frame limit reached"
    assert tools.propagation_panel.result.text() == ("Carried to 4 frames (4 masks changed, 0 already held the "
                                                     "target); ended at frame 5: frame limit reached")
    tools.propagation_panel.go_to_stop.click()
    assert review.index == 4
    tools.propagation_panel.max_frames.setValue(1)
    tools.propagation_panel.forward.click()
    _wait_done(review, qtbot)
    assert tools.propagation_panel.result.text() == ("Carried to 1 frame (1 mask changed, 0 already held the "
                                                     "target); ended at frame 6: frame limit reached")


def test_opening_another_sequence_clears_the_last_propagations_result(review, sequence_16bit, tmp_path, qtbot):
    from app.widgets.propagation_panel import PROMPT

    tools, strip = review.review_tools, review.timeline.strip
    panel, queue = tools.propagation_panel, tools.review_panel.model
    assert FrameEditor(review.session).paint(0, [(60.5, 30.5)], size=3)
    review.timeline.go_to(3)
    tools.set_status(ReviewStatus.NEGATIVE)
    review.timeline.go_to(0)
    panel.mode.setCurrentText("copy")
    panel.forward.click()
    _wait_done(review, qtbot)
    assert "stopped at frame 4: frame already reviewed: negative" in panel.result.text()
    assert panel.go_to_stop.isEnabled() and queue.marked == {3: "frame already reviewed: negative"}

    other = shutil.copytree(sequence_16bit, tmp_path / "other")  # the same frame numbers, another sequence
    predict_ground_truth(other)
    open_project(review, qtbot, other)
    qtbot.wait(100)
    # nothing of sequence 1's run is left: its text, its stop (frame 4 here is another frame), its markers
    assert panel.result.text() == PROMPT
    assert not panel.go_to_stop.isEnabled() and panel.stop_index == -1
    assert queue.marked == {} and strip.stop_marker is None
    cell = queue.data(queue.index(queue.row_of(3), 2))
    assert "stop" not in cell and queue.data(queue.index(queue.row_of(3), 2), QtCore.Qt.ToolTipRole) is None
    review.timeline.go_to(10)
    panel.go_to_stop.click()  # disabled: goes nowhere
    assert review.index == 10


def test_edits_and_statuses_are_refused_while_propagation_runs(review, qtbot, monkeypatch):
    tools, palette = review.review_tools, review.review_tools.palette
    _slow_frames(review, monkeypatch, 150)
    prediction = review.session.project.prediction_mask(review.session.stem(0))
    ys, xs = np.nonzero(prediction)
    target_pixel = int(xs[0]), int(ys[0])
    tools.propagation_panel.max_frames.setValue(8)
    tools.propagation_panel.forward.click()  # track mode, carrying frame 0's predicted targets
    assert tools.propagation.busy

    palette.set_tool(Tool.BRUSH)
    drag(review, [(10, 10), (14, 10), (18, 12)])
    palette.set_tool(Tool.DELETE_COMPONENT)
    click(review, *target_pixel)
    qtbot.keyClick(review.frame_view.graphics, QtCore.Qt.Key_R)  # mark rejected
    qtbot.keyClick(review.frame_view.graphics, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert tools.propagation.busy, "the run ended before the edits were tried: make the frames slower"
    assert committed(review, 0) is None
    assert review.session.status(0) is ReviewStatus.UNREVIEWED
    assert "Propagation is running" in review.statusBar().message()
    assert not palette.tool_actions[Tool.BRUSH].isEnabled() and not palette.accept_all.isEnabled()
    assert palette.tool_actions[Tool.NAVIGATE].isEnabled()
    assert not tools.review_panel.status_buttons[ReviewStatus.ACCEPTED].isEnabled()
    assert not any(action.isEnabled() for action in tools.status_actions)

    _wait_done(review, qtbot)
    assert all(action.isEnabled() for action in palette.tool_actions.values())
    assert tools.review_panel.status_buttons[ReviewStatus.ACCEPTED].isEnabled()
    assert all(action.isEnabled() for action in tools.status_actions)
    assert committed(review, 0) is None  # propagation writes the frames after the start only
    click(review, *target_pixel)  # the same click now deletes the target
    assert committed(review, 0) is not None and not committed(review, 0)[target_pixel[1], target_pixel[0]]
    assert review.session.status(0) is ReviewStatus.CORRECTED


def test_cancel_or_closing_the_session_reenables_editing(review, qtbot, monkeypatch):
    tools, palette = review.review_tools, review.review_tools.palette
    _slow_frames(review, monkeypatch, 100)
    tools.propagation_panel.forward.click()
    assert not palette.accept_all.isEnabled()
    tools.propagation_panel.cancel.click()
    _wait_done(review, qtbot)
    assert palette.accept_all.isEnabled()
    assert "Cancelled" in tools.propagation_panel.result.text()

    tools.propagation_panel.forward.click()
    assert not palette.accept_all.isEnabled()
    tools.stop()  # what the window does before opening another sequence or closing
    assert not tools.propagation.busy and palette.accept_all.isEnabled()
    assert tools.propagation_panel.forward.isEnabled()


class GroundTruthReplay:
    """A loaded detector that proposes the ground truth of frames 1, 2, ... in turn, counting its calls."""

    name, device = "replay", "cpu"

    def __init__(self, session):
        self.session, self.calls = session, 0
        self.gate = threading.Event()  # proposals wait for it: the run stays busy while a test looks at it
        self.gate.set()

    def detect(self, images, features=False):
        assert self.gate.wait(30), "the gate was never opened"
        results = []
        for _ in images:
            self.calls += 1
            truth = self.session.ground_truth.mask(self.session.stem(self.calls))
            results.append(FrameResult(np.where(truth, 5.0, -5.0).astype(np.float32)))
        return results


def test_frames_not_yet_detected_are_proposed_by_the_loaded_detector(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence, frames=[0])  # only the start frame was detected
    open_project(window, qtbot, fresh_sequence)
    session, tools = window.session, window.review_tools
    truth = [session.ground_truth.mask(session.stem(i)) for i in range(4)]
    count, labels = cv2.connectedComponents(truth[0].astype(np.uint8), connectivity=8)
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    session.commit_mask(0, labels == largest)  # the one target to carry
    window.show_frame(0)
    window.detector = replay = GroundTruthReplay(session)
    replay.gate.clear()  # (three small frames: on a loaded machine the run ended before the checks below)
    tools.propagation_panel.max_frames.setValue(3)
    tools.propagation_panel.forward.click()
    try:
        assert tools.propagation.busy
        window.run_detection("frame")  # refused: propagation holds the detector
        assert "Propagation is running" in window.statusBar().message()
    finally:
        replay.gate.set()
    _wait_done(window, qtbot)
    assert window.timeline.strip.stop_marker == (3, "frame limit reached", False)
    assert replay.calls == 3
    for i in (1, 2, 3):  # each frame gets the same target, whole, from the detector's proposal
        carried = committed(window, i)
        count, labels = cv2.connectedComponents(truth[i].astype(np.uint8), connectivity=8)
        hit = np.unique(labels[carried])
        assert len(hit) == 1 and hit[0] > 0
        np.testing.assert_array_equal(carried, labels == hit[0])


def test_a_long_propagation_result_keeps_all_its_lines_in_a_short_window(review, qtbot):
    """Keyboard audit 25: at 1024x700 the result under the Targets list was given fewer lines than it had, and
    lost its first and last ones; the dock now scrolls instead."""
    review.resize(1024, 700)
    review.targets_dock.raise_()
    label = review.review_tools.propagation_panel.result
    long = ("Carried to 45 frames (0 masks changed, 45 already held the target); stopped at frame 47: area jump: "
            "8 -> 22 px (re-segmentation, after the proposal: area jump: 8 -> 22 px) (target 4 of 4, last at "
            "(283, 145)). " * 2)
    label.setText(long)
    lines = label.fontMetrics().height()
    qtbot.waitUntil(lambda: label.width() > 0 and label.heightForWidth(label.width()) > 4 * lines,
                    timeout=2000)
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()), timeout=2000)
    area = review.targets_dock.widget()
    assert isinstance(area, QtWidgets.QScrollArea)
    area.ensureWidgetVisible(label)  # reachable: the dock scrolls to it
    qtbot.waitUntil(lambda: area.viewport().rect().contains(
        QtCore.QRect(label.mapTo(area.viewport(), QtCore.QPoint(0, 0)), label.size())), timeout=2000)
