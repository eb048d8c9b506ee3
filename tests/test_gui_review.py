"""The review workflow in the real window under Xvfb: statuses and keys, the queue dock, propagation,
export, shortcuts, damaged projects and the fine-tune dialog."""
from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtTest, QtWidgets

from app.core.export import read_exported_dataset
from app.core.finetune import FineTuneJob
from app.core.project import ReviewProject, ReviewStatus
from app.editing import FrameEditor, Tool
from app.session import NOT_RUN, STATUS_CODES
from model.detectors import FrameResult
from app.widgets.finetune_dialog import SEQUENCE_CLOSED
from tests.datasets import write_sirst_dataset
from tests.gui_review_helpers import click, committed, drag, open_project, predict_ground_truth

pytestmark = pytest.mark.gui


def _key(window, qtbot, key, modifier=QtCore.Qt.NoModifier) -> None:
    qtbot.keyClick(window.frame_view.graphics, key, modifier)


def _status(window, index: int) -> ReviewStatus:
    return window.session.status(index)


def test_status_keys_accept_and_next_and_strip(review, qtbot):
    panel = review.review_tools.review_panel
    assert panel.model.rowCount() == 60
    assert "unreviewed 60" in panel.counts.text()
    _key(review, qtbot, QtCore.Qt.Key_Space)  # accept and next
    assert _status(review, 0) is ReviewStatus.ACCEPTED and review.index == 1
    _key(review, qtbot, QtCore.Qt.Key_0)  # negative, stays
    assert _status(review, 1) is ReviewStatus.NEGATIVE and review.index == 1
    assert "marked negative: it will export an empty mask, not the" in review.statusBar().message()
    _key(review, qtbot, QtCore.Qt.Key_R)
    assert _status(review, 1) is ReviewStatus.REJECTED
    _key(review, qtbot, QtCore.Qt.Key_C)  # corrected commits what is shown
    assert _status(review, 1) is ReviewStatus.CORRECTED and committed(review, 1) is not None
    assert panel.status_buttons[ReviewStatus.CORRECTED].isChecked()
    review.timeline.go_to(0)
    _key(review, qtbot, QtCore.Qt.Key_N)  # next unreviewed skips frame 1
    assert review.index == 2
    panel.status_buttons[ReviewStatus.REJECTED].click()
    assert _status(review, 2) is ReviewStatus.REJECTED
    codes = review.session.status_codes
    assert list(codes[:4]) == [STATUS_CODES[s] for s in (ReviewStatus.ACCEPTED, ReviewStatus.CORRECTED,
                                                         ReviewStatus.REJECTED, ReviewStatus.UNREVIEWED)]
    assert "accepted 1" in panel.counts.text() and "unreviewed 57" in panel.counts.text()
    # Space on the last unreviewed frames wraps to the first one left
    review.timeline.go_to(59)
    _key(review, qtbot, QtCore.Qt.Key_Space)
    assert review.index == 3


def test_a_status_change_brings_another_instances_statuses_into_the_queue_and_its_counts(review, qtbot):
    panel = review.review_tools.review_panel
    other = ReviewProject.open(review.session.project.folder)  # a second window on the same project
    for i, status in ((1, ReviewStatus.ACCEPTED), (2, ReviewStatus.ACCEPTED), (3, ReviewStatus.REJECTED)):
        other.set_status(review.session.stem(i), status)
    _key(review, qtbot, QtCore.Qt.Key_R)  # this window's own change on frame 0 reads them in
    assert [_status(review, i) for i in range(4)] == [ReviewStatus.REJECTED, ReviewStatus.ACCEPTED,
                                                      ReviewStatus.ACCEPTED, ReviewStatus.REJECTED]
    assert [panel.model.summaries[i].status for i in range(4)] == [_status(review, i) for i in range(4)]
    assert panel.counts.text().startswith("unreviewed 56  accepted 2  corrected 0  rejected 2")
    panel.status_filter.setCurrentIndex(panel.status_filter.findData(ReviewStatus.UNREVIEWED))
    assert [s.index for s in panel.model.rows[:2]] == [4, 5]  # frames 1-3 are no longer queued as unreviewed
    _key(review, qtbot, QtCore.Qt.Key_N)
    assert review.index == 4


def test_space_and_n_follow_the_queue_as_sorted_and_filtered(review, qtbot):
    """GUI audit 17: with the queue sorted by peak score, Space went 24 -> 25 -> 26 in frame order and skipped the
    frames the analyst had sorted to the top."""
    session, panel = review.session, review.review_tools.review_panel
    for index in range(len(session)):  # the peak scores fall with the frame number, the other way round from it
        mask = session.project.prediction_mask(session.stem(index))
        session.project.save_prediction(session.stem(index),
                                        FrameResult(np.where(mask, 1.0 + 0.1 * index, -5.0).astype(np.float32)))
    review.review_tools.refresh_queue()
    panel.status_filter.setCurrentIndex(panel.status_filter.findData(ReviewStatus.UNREVIEWED))
    panel.sort_combo.setCurrentText("peak score")
    panel.descending.setChecked(True)
    queue = [s.index for s in panel.model.rows]
    assert queue[:3] == [59, 58, 57]
    review.timeline.go_to(59)
    _key(review, qtbot, QtCore.Qt.Key_Space)  # accepted: it leaves the filtered queue, and the next row is shown
    assert _status(review, 59) is ReviewStatus.ACCEPTED and review.index == 58
    _key(review, qtbot, QtCore.Qt.Key_N)
    assert review.index == 57
    _key(review, qtbot, QtCore.Qt.Key_N, QtCore.Qt.ShiftModifier)
    assert review.index == 58
    panel.status_filter.setCurrentIndex(panel.status_filter.findData(ReviewStatus.ACCEPTED))
    _key(review, qtbot, QtCore.Qt.Key_N)  # no unreviewed frame in this queue: frame order
    assert review.index == 0  # after 58 (59 is accepted), wrapping round


def test_next_unreviewed_on_the_last_unreviewed_frame_says_it_is_the_one_shown(review, qtbot):
    tools = review.review_tools
    for index in range(len(review.session)):
        if index != 10:
            review.session.set_status(index, ReviewStatus.ACCEPTED)
    review.timeline.go_to(10)
    tools.next_unreviewed(1)
    assert review.index == 10
    assert review.statusBar().message() == "Frame 11, shown, is the last unreviewed frame."
    assert tools.set_status(ReviewStatus.ACCEPTED)
    tools.next_unreviewed(-1)
    assert review.statusBar().message() == "No unreviewed frame left."


def test_a_detection_rerun_keeps_the_accepted_mask(review, qtbot):
    accepted = review.session.project.prediction_mask(review.session.stem(0))
    _key(review, qtbot, QtCore.Qt.Key_Space)  # accepted as predicted
    assert committed(review, 0) is None
    combo = review.detection_panel.detector_combo
    combo.setCurrentIndex(next(i for i in range(combo.count())
                             if combo.itemData(i) is not None and combo.itemData(i).method == "mpcm"))
    review.timeline.go_to(0)
    review.run_detection("frame")
    qtbot.waitUntil(lambda: not review.detection_runner.busy and review.detection_panel.run_all.isEnabled(),
                    timeout=10000)
    assert "1 accepted frame(s) keep the mask they were accepted with" in review.statusBar().message()
    assert not np.array_equal(review.session.project.prediction_mask(review.session.stem(0)), accepted)
    np.testing.assert_array_equal(committed(review, 0), accepted)
    review.show_frame(0)
    np.testing.assert_array_equal(review.layers.committed, accepted)  # the view is not left on a stale layer


def test_queue_filters_and_sorts_and_seeks(review, qtbot):
    panel, session = review.review_tools.review_panel, review.session
    for index in range(10, 20):  # no detection on frames 10-19, weaker ones on 20-29
        session.project.save_prediction(session.stem(index), FrameResult(np.full(session.source.shape, -5, np.float32)))
    for index in range(20, 30):
        mask = session.project.prediction_mask(session.stem(index))
        session.project.save_prediction(session.stem(index), FrameResult(np.where(mask, 2.0, -5.0).astype(np.float32)))
    assert FrameEditor(session).delete_component(5, *_first_target_pixel(review, 5))  # frame 5: corrected
    review.review_tools.refresh_queue()
    panel.status_filter.setCurrentIndex(panel.status_filter.findData(ReviewStatus.CORRECTED))
    assert [s.index for s in panel.model.rows] == [5]
    panel.status_filter.setCurrentIndex(0)
    panel.sort_combo.setCurrentText("detections")
    panel.descending.setChecked(True)
    detections = [s.n_detections for s in panel.model.rows]
    assert detections == sorted(detections, reverse=True)
    assert detections[-1] == 0 and detections[0] > 0
    panel.min_detections.setValue(1)
    assert len(panel.model.rows) == 50
    panel.sort_combo.setCurrentText("peak score")
    scores = [s.peak_score for s in panel.model.rows]
    assert scores == sorted(scores, reverse=True) and scores[-1] == 2.0
    panel.min_change.setValue(1)  # targets appear on frame 20 (frame 1 has none before it; frame 10, where they
    assert sorted(s.index for s in panel.model.rows) == [20]  # vanish, has none)
    panel.min_change.setValue(0)
    row = panel.model.rows[3]
    panel.table.clicked.emit(panel.model.index(3, 0))
    assert review.index == row.index
    # the queue's selection follows the frame once it has stayed (scrubbing does not move it per frame)
    qtbot.waitUntil(lambda: [r.row() for r in panel.table.selectionModel().selectedRows()] == [3], timeout=2000)
    # keys moving the queue's row (it has the focus after a click) go to that row's frame, so the status keys
    # act on the frame highlighted (keyboard audit 25: the highlight moved, the frame shown stayed)
    panel.table.setFocus()
    panel.table.setCurrentIndex(panel.model.index(3, 0))
    for key, row in ((QtCore.Qt.Key_Down, 4), (QtCore.Qt.Key_Down, 5), (QtCore.Qt.Key_Up, 4)):
        QtTest.QTest.keyClick(panel.table, key)
        qtbot.waitUntil(lambda: review.index == panel.model.rows[row].index, timeout=2000)
    qtbot.waitUntil(lambda: [r.row() for r in panel.table.selectionModel().selectedRows()] == [4], timeout=2000)
    # a key moves from the frame shown, though its row is selected only once it settles (review audit 25: Down
    # right after a jump went to the row under the old highlight)
    review.timeline.go_to(panel.model.rows[30].index)
    QtTest.QTest.keyClick(panel.table, QtCore.Qt.Key_Down)
    qtbot.waitUntil(lambda: review.index == panel.model.rows[31].index, timeout=2000)
    # Tab leaves the table rather than walking its cells into the next row; any other key that moves the table's
    # row (Ctrl+End: the last row) shows that row's frame
    QtTest.QTest.keyClick(panel.table, QtCore.Qt.Key_Tab)
    assert review.index == panel.model.rows[31].index and not panel.table.hasFocus()
    panel.table.setFocus()
    QtTest.QTest.keyClick(panel.table, QtCore.Qt.Key_End, QtCore.Qt.ControlModifier)
    qtbot.waitUntil(lambda: review.index == panel.model.rows[-1].index, timeout=2000)


def _settle(window, qtbot, index):
    window.timeline.go_to(index)
    qtbot.waitUntil(lambda: window.index == index and not window.panels_timer.isActive(), timeout=5000)


def _spin(ms: int = 300) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(ms, loop.quit)
    loop.exec()


def test_a_key_that_does_not_move_the_queue_row_goes_to_no_frame(review, qtbot):
    """Review audit 25: with the frame shown filtered out of the queue, a bare Ctrl (about to be Ctrl+Z) or Ctrl+C
    in the queue jumped to the row the table still had as current, and the undo that followed hit that frame."""
    panel = review.review_tools.review_panel
    _settle(review, qtbot, 3)
    review.review_tools.set_status(ReviewStatus.ACCEPTED)
    panel.status_filter.setCurrentIndex(panel.status_filter.findData(ReviewStatus.UNREVIEWED))
    _settle(review, qtbot, 5)
    panel.table.setFocus()
    _settle(review, qtbot, 3)  # accepted: not in the queue; the table's current row stays frame 5's
    assert panel.model.row_of(3) is None
    QtTest.QTest.keyPress(panel.table, QtCore.Qt.Key_Control)
    QtTest.QTest.keyRelease(panel.table, QtCore.Qt.Key_Control)
    QtTest.QTest.keyClick(panel.table, QtCore.Qt.Key_C, QtCore.Qt.ControlModifier)
    _spin()
    assert review.index == 3


def test_down_in_the_queue_steps_past_an_unreadable_frame(review, fresh_sequence, qtbot):
    """Review audit 25: an unreadable frame was never the queue's frame shown, so Down on it went back to it."""
    panel = review.review_tools.review_panel
    files = sorted((fresh_sequence / "images").iterdir())
    _settle(review, qtbot, 0)
    files[7].write_bytes(b"garbage" * 10)
    review.session.source.forget([7])
    _settle(review, qtbot, 6)
    panel.table.setFocus()
    QtTest.QTest.keyClick(panel.table, QtCore.Qt.Key_Down)
    qtbot.waitUntil(lambda: review.index == 7 and review.frame is None, timeout=3000)
    _spin()
    QtTest.QTest.keyClick(panel.table, QtCore.Qt.Key_Down)
    qtbot.waitUntil(lambda: review.index == 8, timeout=3000)


def test_queue_keeps_the_current_frame_wholly_in_view(review, qtbot):
    panel = review.review_tools.review_panel
    table, viewport = panel.table, panel.table.viewport()
    # a short queue, five and a half rows high: its last row is cut off at the bottom edge
    row_height = table.rowHeight(0)
    table.setFixedHeight(table.height() - viewport.height() + 5 * row_height + row_height // 2)
    qtbot.waitUntil(lambda: viewport.height() == 5 * row_height + row_height // 2, timeout=2000)

    def wholly_visible(frame: int) -> bool:
        return viewport.rect().contains(table.visualRect(panel.model.index(panel.model.row_of(frame), 0)))

    for frame in (0, 1, 30, 31, 59, 58, 12):
        review.timeline.go_to(frame)
        qtbot.waitUntil(lambda: [r.row() for r in table.selectionModel().selectedRows()] == [frame], timeout=2000)
        assert wholly_visible(frame), frame
    # the row cut off at the bottom edge is brought into view, with rows after it
    bottom = table.rowAt(viewport.height() - 1)
    assert not wholly_visible(bottom)
    review.timeline.go_to(bottom)
    qtbot.waitUntil(lambda: wholly_visible(bottom), timeout=2000)
    assert table.rowAt(viewport.height() - 1) > bottom
    # a row already wholly in view does not scroll the table
    top = table.rowAt(0)
    review.timeline.go_to(top + 1)
    qtbot.waitUntil(lambda: [r.row() for r in table.selectionModel().selectedRows()] == [top + 1], timeout=2000)
    assert table.rowAt(0) == top


def test_the_current_row_is_not_under_the_edge_of_a_dock_too_short_for_the_queue(review, qtbot):
    """Keyboard audit 25: at 1024x700 the review panel was 17 px taller than its dock, and the frame shown, scrolled
    to the table's bottom row, sat half under the dock's edge."""
    panel = review.review_tools.review_panel
    area = review.review_tools.review_dock.widget()
    area.setFixedHeight(area.widget().minimumSizeHint().height() - 17)
    qtbot.waitUntil(lambda: area.verticalScrollBar().maximum() > 0, timeout=2000)
    table = panel.table

    def in_the_docks_view(frame: int) -> bool:
        rect = table.visualRect(panel.model.index(panel.model.row_of(frame), 0))
        top_left = table.viewport().mapTo(area.viewport(), rect.topLeft())
        return area.viewport().rect().contains(QtCore.QRect(top_left, rect.size()))

    for frame in (0, 20, 40, 59, 3):
        review.timeline.go_to(frame)
        qtbot.waitUntil(lambda: [r.row() for r in table.selectionModel().selectedRows()] == [frame], timeout=2000)
        qtbot.waitUntil(lambda: in_the_docks_view(frame), timeout=2000)


def _first_target_pixel(window, index: int) -> tuple[int, int]:
    prediction = window.session.project.prediction_mask(window.session.stem(index))
    ys, xs = np.nonzero(prediction)
    return int(xs[0]), int(ys[0])


def test_propagation_stops_at_a_reviewed_frame(review, qtbot):
    session, project = review.session, review.session.project
    editor = FrameEditor(session)
    assert editor.paint(0, [(60.5, 30.5)], size=3)  # a 3x3 square on frame 0
    review.show_frame(0)
    review.timeline.go_to(3)
    review.review_tools.set_status(ReviewStatus.ACCEPTED)
    review.timeline.go_to(0)
    panel = review.review_tools.propagation_panel
    panel.mode.setCurrentText("copy")
    _key(review, qtbot, QtCore.Qt.Key_Right, QtCore.Qt.ControlModifier)
    qtbot.waitUntil(lambda: panel.forward.isEnabled() and not review.review_tools.propagation.busy, timeout=10000)
    for index in (1, 2):
        assert committed(review, index)[29:32, 59:62].all()
        assert _status(review, index) is ReviewStatus.UNREVIEWED  # the analyst confirms each one
    assert committed(review, 3) is None  # the reviewed frame is never overwritten
    assert "frame 4" in panel.result.text() and "reviewed" in panel.result.text()
    assert "reviewed" in review.statusBar().message()
    assert review.review_tools.review_panel.model.marked == {3: "frame already reviewed: accepted"}
    panel.go_to_stop.click()
    assert review.index == 3
    # backward from frame 2: frame 1 is unreviewed and taken, frame 0 (corrected by the brush) stops it
    review.timeline.go_to(2)
    _key(review, qtbot, QtCore.Qt.Key_Left, QtCore.Qt.ControlModifier)
    qtbot.waitUntil(lambda: panel.forward.isEnabled() and not review.review_tools.propagation.busy, timeout=10000)
    assert "frame 1" in panel.result.text() and "corrected" in panel.result.text()
    assert len(project.history(session.stem(0))) == 1


def test_propagation_cancel_changes_nothing(review, qtbot, monkeypatch):
    source = review.session.source
    read = source.frame

    def slow_frame(index):
        QtCore.QThread.msleep(100)
        return read(index)

    monkeypatch.setattr(source, "frame", slow_frame)
    labels = review.session.project.folder / "labels"
    panel = review.review_tools.propagation_panel
    panel.forward.click()  # track mode, carrying frame 0's two predicted targets
    assert panel.cancel.isEnabled()
    assert review.review_tools.export_dialog() is None  # propagation writes the project meanwhile
    assert "export when it is done" in review.statusBar().message()
    qtbot.wait(150)
    panel.cancel.click()
    qtbot.waitUntil(lambda: panel.forward.isEnabled(), timeout=5000)
    assert "Cancelled" in panel.result.text()
    assert not labels.exists() or not any(labels.iterdir())


def test_export_dialog_writes_a_dataset_that_reads_back(review, qtbot, tmp_path):
    session, tools = review.session, review.review_tools
    editor = FrameEditor(session)
    statuses = {0: ReviewStatus.ACCEPTED, 2: ReviewStatus.NEGATIVE, 3: ReviewStatus.REJECTED}
    for index, status in statuses.items():
        session.set_status(index, status)
    assert editor.paint(1, [(10.5, 10.5), (20.5, 10.5)], size=1)  # frame 1: corrected
    dialog = tools.export_dialog()
    dialog.folder.setText(str(tmp_path / "export"))
    dialog.layout_combo.setCurrentText("dnanet")
    dialog.split_combo.setCurrentText("test")
    dialog.coco.setChecked(True)
    dialog.export_button.click()
    assert not dialog.export_button.isEnabled()  # until the export, in its worker thread, has ended
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=30000)
    assert "3 frames exported" in dialog.result.toPlainText()
    assert "57 frames skipped" in dialog.result.toPlainText()
    samples = read_exported_dataset(tmp_path / "export", "dnanet")
    project = session.project
    expected = {
        0: project.prediction_mask(session.stem(0)),
        1: project.committed_mask(session.stem(1)),
        2: np.zeros(project.frame_shape, bool),
    }
    assert [stem for stem, *_ in samples] == [f"sequence_{session.stem(i)}" for i in expected]
    for (stem, image, mask, split), (index, truth) in zip(samples, expected.items()):
        assert split == "test"
        assert np.array_equal(mask, truth)
        assert np.array_equal(image, session.normalization.apply(session.frame(index)))
    assert (tmp_path / "export" / "annotations" / "instances_test.json").exists()
    dialog.export_button.click()  # again into the same folder: refused, said so, nothing lost
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=30000)
    assert dialog.result.toPlainText() == (f"Export failed: {tmp_path / 'export'} already holds a data set: "
                                           "choose another folder, or add to it")  # no Python class name
    assert len(read_exported_dataset(tmp_path / "export", "dnanet")) == 3
    dialog.close()

    dialog = tools.export_dialog()  # adding to it: the formats it has are ticked, the sequence name can change
    dialog.folder.setText(str(tmp_path / "export"))
    dialog.layout_combo.setCurrentText("dnanet")
    assert not dialog.coco.isChecked()
    dialog.append.setChecked(True)
    assert dialog.coco.isChecked() and not dialog.yolo.isChecked() and not dialog.raw.isChecked()
    assert dialog.sequence.text() == "sequence"
    dialog.sequence.setText("renamed")
    assert dialog.saved_as.text() == f"frames are saved as renamed_{session.stem(0)}.png, ..."
    dialog.export_button.click()
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=30000)
    assert "as sequence 'sequence'" in dialog.result.toPlainText()  # the same frames twice: refused
    dialog.sequence.setText("sequence")
    dialog.export_button.click()
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=30000)
    assert "3 frames exported" in dialog.result.toPlainText()
    assert "Also written: COCO annotations" in dialog.result.toPlainText()
    # the split left "as before": the sequence stays on the test side it was exported to
    assert [split for *_, split in read_exported_dataset(tmp_path / "export", "dnanet")] == ["test"] * 3
    dialog.close()


def hold_worker_reads(source, monkeypatch, first: int = 0) -> threading.Event:
    """Frames from index `first` on, read by any thread but the GUI's, wait until the returned event is set."""
    read = source.frame
    release = threading.Event()

    def frame_held_in_workers(index):
        if index >= first and threading.current_thread() is not threading.main_thread():
            release.wait(timeout=60)
        return read(index)

    monkeypatch.setattr(source, "frame", frame_held_in_workers)
    return release


def test_export_runs_in_a_worker_showing_progress_while_the_window_stays_live(review, qtbot, tmp_path,
                                                                            monkeypatch):
    session = review.session
    for index in range(3):
        session.set_status(index, ReviewStatus.ACCEPTED)
    release = hold_worker_reads(session.source, monkeypatch, first=1)  # the export waits after frame 0
    dialog = review.review_tools.export_dialog()
    assert dialog.windowModality() == QtCore.Qt.WindowModal
    assert QtWidgets.QApplication.activeModalWidget() is dialog  # the main window takes no edits meanwhile
    dialog.folder.setText(str(tmp_path / "export"))
    timer_fired_during_export = []
    QtCore.QTimer.singleShot(0, lambda: timer_fired_during_export.append(dialog.exporting))
    dialog.export_button.click()
    qtbot.waitUntil(lambda: dialog.progress.text() == "Exporting... 1 / 3 frames", timeout=10000)
    assert timer_fired_during_export == [True]
    assert dialog.exporting and dialog.progress.isVisible()
    assert not any(w.isEnabled() for w in (*dialog.options, dialog.export_button, dialog.close_button))
    qtbot.keyClick(dialog, QtCore.Qt.Key_Escape)  # refused: the export would be cut short
    assert dialog.isVisible() and dialog.exporting

    release.set()
    qtbot.waitUntil(dialog.export_button.isEnabled, timeout=10000)
    assert "3 frames exported" in dialog.result.toPlainText() and dialog.report is not None
    assert not dialog.progress.isVisible() and all(w.isEnabled() for w in (*dialog.options, dialog.close_button))
    assert len(read_exported_dataset(tmp_path / "export", "sirst")) == 3
    dialog.close_button.click()
    assert not dialog.isVisible()


def test_dialogs_opened_again_and_again_do_not_pile_up(review, qtbot):
    """Long-session audit 25: every export left its dialog, and the project and sequence it was opened on, alive
    under the window for the rest of the session (6 exports: 6 ExportDialogs, about 10 MB each)."""
    from app.widgets.export_dialog import ExportDialog
    from app.widgets.finetune_dialog import FineTuneDialog
    from app.widgets.normalization_dialog import NormalizationDialog
    from app.widgets.shortcuts_dialog import ShortcutsDialog

    for _ in range(3):
        review.review_tools.export_dialog().reject()
        review.review_tools.edit_shortcuts().reject()
        review.choose_normalization().reject()
    for _ in range(3):
        review.review_tools.finetune_dialog_open().close()
    for kind in (ExportDialog, ShortcutsDialog, NormalizationDialog, FineTuneDialog):
        qtbot.waitUntil(lambda kind=kind: len(review.findChildren(kind)) == 1, timeout=2000)
    assert review.review_tools.latest_export_dialog in review.findChildren(ExportDialog)


def test_shortcut_edit_with_conflict_then_saved_and_applied(review, qtbot, private_shortcuts):
    tools = review.review_tools
    brush = tools.palette.tool_actions[Tool.BRUSH]
    assert brush.toolTip() == "Paint target pixels; one stroke = one undo step (B)"
    assert tools.palette.undo.toolTip().endswith("(Ctrl+Z)")
    dialog = tools.edit_shortcuts()
    ok = dialog.buttons.button(dialog.buttons.StandardButton.Ok)
    dialog.edits["tool_brush"].setKeySequence(QtGui.QKeySequence("N"))
    assert dialog.conflicts.text() == "N is bound to Next unreviewed and Tool: Brush. Only one of them can keep it."
    assert not ok.isEnabled()
    # the app's fixed shortcuts (menus, frame steps) are taken too
    # (and Tab, which moves the focus between controls: keyboard audit 25 found it accepted)
    for keys, fixed in (("Ctrl+R", "Run on this frame"), ("Right", "Forward 1 frame"), ("Ctrl+O", "Open folder..."),
                        ("Tab", "Next control (focus)"), ("Shift+Backtab", "Previous control (focus)")):
        dialog.edits["tool_brush"].setKeySequence(QtGui.QKeySequence(keys))
        keys = keys.replace("Backtab", "Tab")  # how Shift+Tab arrives, named as pressed
        assert dialog.conflicts.text() == (f"{keys} is bound to {fixed} and Tool: Brush. {fixed} is fixed, so choose "
                                           "another key for Tool: Brush.")
        assert not ok.isEnabled()
    dialog.edits["tool_brush"].setKeySequence(QtGui.QKeySequence("Ctrl+B"))
    assert dialog.conflicts.text() == "" and ok.isEnabled()
    ok.click()
    assert json.loads(private_shortcuts.read_text())["shortcuts"] == {"tool_brush": "Ctrl+B"}
    assert tools.shortcuts.actions["tool_brush"].shortcut().toString() == "Ctrl+B"
    assert brush.toolTip() == "Paint target pixels; one stroke = one undo step (Ctrl+B)"
    _key(review, qtbot, QtCore.Qt.Key_B)
    assert tools.palette.tool.value == "navigate"
    _key(review, qtbot, QtCore.Qt.Key_B, QtCore.Qt.ControlModifier)
    assert tools.palette.tool.value == "brush"
    _key(review, qtbot, QtCore.Qt.Key_H)  # back to panning, from the keyboard
    assert tools.palette.tool.value == "navigate"


def test_enter_and_esc_in_a_key_field_close_the_shortcuts_dialog_and_are_never_bound(review, qtbot, private_shortcuts):
    """GUI audit 17: typing 9 for Mark negative and Enter to confirm bound it to Return (the 9 lost), and Esc
    bound the field to Esc instead of closing; saved, "next_frame": "Return" took D away for good."""
    tools = review.review_tools
    dialog = tools.edit_shortcuts()
    field = dialog.edits["mark_negative"]
    field.setFocus()
    qtbot.keyClick(field, QtCore.Qt.Key_9)
    assert field.keySequence().toString() == "9"
    with qtbot.waitSignal(dialog.accepted, timeout=2000):
        qtbot.keyClick(field, QtCore.Qt.Key_Return)
    assert field.keySequence().toString() == "9"
    assert json.loads(private_shortcuts.read_text())["shortcuts"] == {"mark_negative": "9"}

    dialog = tools.edit_shortcuts()
    field = dialog.edits["next_frame"]
    assert field.keySequence().toString() == "D"
    with qtbot.waitSignal(dialog.rejected, timeout=2000):
        qtbot.keyClick(field, QtCore.Qt.Key_Escape)
    assert field.keySequence().toString() == "D"
    assert tools.shortcuts.actions["next_frame"].shortcut().toString() == "D"

    dialog = tools.edit_shortcuts()  # Enter with keys bound twice: the dialog stays, with the conflict listed
    dialog.edits["tool_brush"].setKeySequence(QtGui.QKeySequence("N"))
    qtbot.keyClick(dialog.edits["tool_brush"], QtCore.Qt.Key_Enter, QtCore.Qt.KeypadModifier)
    assert dialog.result() == 0 and dialog.isVisible() and "N is bound to" in dialog.conflicts.text()
    assert dialog.edits["tool_brush"].keySequence().toString() == "N"
    dialog.reject()


def test_enter_or_esc_in_a_number_box_gives_the_keys_back_to_the_frame(review, qtbot):
    """GUI audit 17: after a jump by frame number the focus stayed in the box: Space, D, R did nothing, 0 was
    typed into it, and only a click on the frame gave the keys back."""
    entry = review.timeline.frame_entry
    QtTest.QTest.mouseClick(entry, QtCore.Qt.LeftButton)
    entry.selectAll()
    qtbot.keyClicks(entry, "25")
    qtbot.keyClick(entry, QtCore.Qt.Key_Return)
    assert review.index == 24
    qtbot.waitUntil(lambda: not entry.hasFocus(), timeout=2000)
    assert review.frame_view.graphics.hasFocus()
    qtbot.keyClick(QtWidgets.QApplication.focusWidget(), QtCore.Qt.Key_0)  # Negative, not typed into the box
    assert _status(review, 24) is ReviewStatus.NEGATIVE and entry.value() == 25

    fps = review.timeline.fps
    QtTest.QTest.mouseClick(fps, QtCore.Qt.LeftButton)
    assert fps.hasFocus()
    qtbot.keyClick(fps, QtCore.Qt.Key_Escape)
    assert review.frame_view.graphics.hasFocus()
    qtbot.keyClick(QtWidgets.QApplication.focusWidget(), QtCore.Qt.Key_D)
    assert review.index == 25


def test_esc_in_a_number_box_of_a_floating_dock_gives_the_keys_back_to_the_frame(review, qtbot):
    """GUI audit 18: in the floated Detection dock, Enter or Esc in the Range box kept the focus there: D did
    nothing and 0 was typed into the box."""
    dock = review.detection_dock
    dock.setFloating(True)
    qtbot.waitUntil(dock.isFloating, timeout=2000)
    box = review.detection_panel.range_from
    dock.activateWindow()
    QtTest.QTest.mouseClick(box, QtCore.Qt.LeftButton)
    qtbot.waitUntil(box.hasFocus, timeout=2000)
    qtbot.keyClick(box, QtCore.Qt.Key_Escape)
    qtbot.waitUntil(review.frame_view.graphics.hasFocus, timeout=2000)
    qtbot.keyClick(QtWidgets.QApplication.focusWidget(), QtCore.Qt.Key_D)
    assert review.index == 1
    dock.setFloating(False)


def test_add_target_diff_and_every_overlay_have_a_key(review, qtbot):
    """GUI audit 17: the Add target tool, the Diff and the heatmap, ground-truth and bad-pixel overlays had no key,
    and could not be given one in the shortcuts dialog."""
    tools, toggles = review.review_tools, review.overlay_panel.toggles
    _key(review, qtbot, QtCore.Qt.Key_T)
    assert tools.palette.tool is Tool.ACCEPT_TARGET
    assert tools.palette.tool_actions[Tool.ACCEPT_TARGET].toolTip().endswith("(T)")
    for key, overlay in ((QtCore.Qt.Key_5, "probability"), (QtCore.Qt.Key_6, "truth"), (QtCore.Qt.Key_7, "bad_pixels")):
        before = toggles[overlay].isChecked()
        _key(review, qtbot, key)
        assert toggles[overlay].isChecked() is not before, overlay
    _key(review, qtbot, QtCore.Qt.Key_8)
    assert tools.editing.diff_shown and tools.palette.diff.toolTip().endswith("(8)")
    _key(review, qtbot, QtCore.Qt.Key_8)
    assert not tools.editing.diff_shown
    dialog = tools.edit_shortcuts()
    assert {"tool_accept_target", "toggle_diff", "toggle_truth_overlay"} <= set(dialog.edits)
    assert dialog.conflicts.text() == ""
    dialog.reject()


def test_the_frame_zooms_in_and_out_and_back_to_the_whole_frame_from_the_keyboard(review, qtbot):
    """Keyboard audit 25: the zoom had no key; once zoomed on a target, only the mouse got the whole frame back."""
    view = review.frame_view
    height, width = review.frame.shape[:2]
    assert view.zoomed_rect() is None
    _key(review, qtbot, QtCore.Qt.Key_Plus)
    x, y, w, h = view.zoomed_rect()
    assert w == pytest.approx(width / 1.5, rel=0.05) and x + w / 2 == pytest.approx(width / 2, abs=1)
    _key(review, qtbot, QtCore.Qt.Key_Plus)
    assert view.zoomed_rect()[2] == pytest.approx(width / 2.25, rel=0.05)
    _key(review, qtbot, QtCore.Qt.Key_Minus)
    assert view.zoomed_rect()[2] == pytest.approx(width / 1.5, rel=0.05)
    for _ in range(3):  # out no further than the whole frame
        _key(review, qtbot, QtCore.Qt.Key_Minus)
    (x0, x1), (y0, y1) = view.view.viewRange()
    # the whole frame, fitting the view's width or height (the other has room to spare: the pixels stay square)
    assert view.zoomed_rect() is None and min((x1 - x0) / width, (y1 - y0) / height) < 1.05
    view.center_on(10, 10)  # zoomed on a target, as a click in the Targets list does
    assert view.zoomed_rect() is not None
    _key(review, qtbot, QtCore.Qt.Key_Z)
    assert view.zoomed_rect() is None
    # Z on no frame (an unreadable one is shown, keeping the zoom for the next): the next frame comes whole
    _key(review, qtbot, QtCore.Qt.Key_Plus)
    view.clear(keep_zoom=True)
    _key(review, qtbot, QtCore.Qt.Key_Z)
    review.timeline.go_to(review.index + 1)
    qtbot.waitUntil(lambda: view.frame is not None, timeout=2000)
    assert view.zoomed_rect() is None
    zoom_in = review.review_tools.shortcuts.actions["zoom_in"]
    view_menu = next(a.menu() for a in review.menuBar().actions() if a.text() == "&View")
    assert zoom_in in view_menu.actions()


def test_the_shortcuts_dialog_lists_the_fixed_keys_too(review, qtbot):
    """It listed only the editable map: Left/Right, PgUp/PgDown, Shift+Space (play), Ctrl+O, Ctrl+R... were nowhere."""
    dialog = review.review_tools.edit_shortcuts()
    rows = {dialog.table.item(row, 0).text(): row for row in range(dialog.table.rowCount())}
    assert "Tool: Navigate" in rows and dialog.edits["tool_navigate"].keySequence().toString() == "H"
    for title, keys in (("Forward 1 frame", "Right"), ("Back 10 frames", "PgUp"), ("Play / pause", "Shift+Space"),
                        ("Open folder...", "Ctrl+O"), ("Run on this frame", "Ctrl+R")):
        row = rows[title]
        assert dialog.table.item(row, 1).text() == f"{keys}  (fixed)"
        assert not dialog.table.item(row, 1).flags() & QtCore.Qt.ItemIsEditable
        assert dialog.table.cellWidget(row, 1) is None
    assert len(rows) == len(dialog.edits) + len(review.review_tools.fixed_shortcuts())
    dialog.reject()


def test_damaged_project_lists_the_frames(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence)
    session_dir = fresh_sequence.parent / f"{fresh_sequence.name}.irsam-review"
    stem = sorted((session_dir / "masks").glob("*.png"))[4].stem
    (session_dir / "labels").mkdir(exist_ok=True)
    (session_dir / "labels" / f"{stem}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    open_project(window, qtbot, fresh_sequence)
    qtbot.waitUntil(lambda: any("Damaged" in m or "could not be read" in m for m in window.messages), timeout=5000)
    assert any(f"labels/{stem}.png" in m for m in window.messages)


def _wait_training_started(dialog, qtbot) -> None:
    """The run is prepared in a worker first (the export); training starts when it is done."""
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled() or dialog.cancel_button.isEnabled(), timeout=30000)
    assert dialog.job is not None and not dialog.failure.isVisible(), (dialog.status.text(),
                                                                       dialog.failure.toPlainText())


def _window_system_key(window, qtbot, key) -> None:
    """A key press as the window system delivers it to the window: refused while a modal dialog blocks it."""
    window.frame_view.graphics.setFocus()
    qtbot.keyClick(window.windowHandle(), key)


def test_finetune_starts_from_the_shipped_weights_when_a_classical_method_is_selected(review, qtbot):
    from app.paths import DEFAULT_WEIGHTS

    panel = review.detection_panel
    panel.detector_combo.setCurrentIndex(next(i for i in range(panel.detector_combo.count())
                                              if getattr(panel.detector_combo.itemData(i), "method", None) == "mpcm"))
    dialog = review.review_tools.finetune_dialog_open()
    assert dialog.weights.text() == str(DEFAULT_WEIGHTS)  # not empty: that trains from scratch
    dialog.reject()


def test_finetune_dialog_starts_and_cancels_training(review, qtbot):
    session = review.session
    dialog = review.review_tools.finetune_dialog_open()
    assert dialog.start()  # nothing reviewed yet: the export finds nothing, no training starts
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10000)
    assert dialog.job is None and dialog.status.text().startswith("No reviewed frames to train on")
    for index in range(8):
        session.set_status(index, ReviewStatus.ACCEPTED)
    dialog.config.setCurrentText("tiny")
    dialog.weights.setText("")  # the shipped paper weights do not fit a tiny model (refused by --init)
    dialog.device.setCurrentText("cpu")
    dialog.epochs.setValue(200)
    dialog.extra.setText("--crop 64 --batch-size 2 --workers 0 --precision fp32")
    assert dialog.start(), dialog.status.text()
    assert not dialog.start_button.isEnabled() and dialog.status.text() == "Exporting the reviewed frames..."
    assert QtWidgets.QApplication.activeModalWidget() is dialog  # the export reads the project
    _wait_training_started(dialog, qtbot)
    job = dialog.job
    assert job.running and dialog.cancel_button.isEnabled() and not dialog.start_button.isEnabled()
    assert "Training on" in dialog.status.text()
    qtbot.waitUntil(lambda: "epoch 1/200" in job.log_path.read_text(), timeout=60000)  # it does train
    assert len(list((Path(dialog.folder.text()) / "data" / "images").glob("*.png"))) == 8
    dialog.cancel_button.click()
    assert not job.running and job.returncode is not None
    assert dialog.start_button.isEnabled() and "Cancelled" in dialog.status.text()
    dialog.close()


def test_finetune_dialog_waits_for_a_detection_run_and_closed_while_exporting_starts_no_training(review, qtbot,
                                                                                                  monkeypatch):
    session, panel = review.session, review.detection_panel
    for index in range(3):
        session.set_status(index, ReviewStatus.ACCEPTED)
    panel.detector_combo.setCurrentIndex(next(i for i in range(panel.detector_combo.count())
                                              if getattr(panel.detector_combo.itemData(i), "method", None) == "mpcm"))
    qtbot.waitUntil(lambda: not review.detection_runner.busy, timeout=10000)
    release = hold_worker_reads(session.source, monkeypatch)
    assert review.start_detection([5]) is None  # held at its frame read: it runs on
    dialog = review.review_tools.finetune_dialog_open()
    assert dialog.windowModality() == QtCore.Qt.NonModal
    assert not dialog.start()  # its export would read the project the run writes
    assert dialog.status.text() == "Detection, propagation or an import is running; start fine-tuning when it is done."
    release.set()
    qtbot.waitUntil(lambda: not review.detection_runner.busy, timeout=30000)
    release.clear()
    assert dialog.start()
    assert dialog.windowModality() == QtCore.Qt.WindowModal  # the window takes no edits while it exports
    review.activateWindow()  # refused, as is the key: a modal dialog blocks the window
    qtbot.wait(200)
    assert QtWidgets.QApplication.activeWindow() is dialog
    _window_system_key(review, qtbot, QtCore.Qt.Key_Right)
    assert review.index == 0
    qtbot.keyClick(dialog, QtCore.Qt.Key_Escape)  # refused while the export runs
    assert dialog.isVisible() and dialog.export_runner.busy
    threading.Timer(0.2, release.set).start()
    dialog.done(0)  # closed from code: waits for the export, then starts nothing
    qtbot.wait(100)  # the export's queued end arrives
    assert not dialog.isVisible() and dialog.job is None and not dialog.timer.isActive()


def test_finetune_one_tiny_epoch_compares_and_redetects(window, tmp_path, tiny_checkpoint, qtbot):
    from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence

    config = SyntheticConfig(n_frames=10, height=64, width=80, n_targets=(1, 1), empty_fraction=0.0)
    sequence = write_sequence(generate_sequence(config, seed=1), tmp_path / "small")
    predict_ground_truth(sequence)
    open_project(window, qtbot, sequence)
    for index in range(8):
        window.session.set_status(index, ReviewStatus.ACCEPTED)
    dialog = window.review_tools.finetune_dialog_open()
    dialog.weights.setText(str(tiny_checkpoint))
    dialog.epochs.setValue(1)
    dialog.device.setCurrentText("cpu")
    dialog.extra.setText("--crop 64 --batch-size 2 --workers 0 --precision fp32")
    assert dialog.start(), dialog.status.text()
    _wait_training_started(dialog, qtbot)
    qtbot.waitUntil(lambda: dialog.use_button.isEnabled(), timeout=120000)
    assert dialog.job.returncode == 0, dialog.job.log_tail()
    assert len(dialog.loss_curve.getData()[0]) == 1 and dialog.progress.value() == 100
    assert dialog.comparison.item(0, 0) is not None and dialog.comparison.item(1, 0) is not None
    headers = [dialog.comparison.horizontalHeaderItem(c).text() for c in range(4)]
    assert headers == ["IoU %", "nIoU %", "Pd %", "Fa x1e-6"]  # as irsam eval prints them
    for row in range(2):
        assert 0 <= float(dialog.comparison.item(row, 0).text()) <= 100
    project = window.session.project
    origin = lambda i: project.prediction(window.session.stem(i))[1]  # noqa: E731
    assert all(origin(i) is None for i in range(10))  # predict_ground_truth records no detector
    dialog.use_button.click()
    best = str(dialog.job.best_path)
    assert window.detection_panel.choice().weights == best
    assert "Re-detecting 2 unreviewed frames" in window.statusBar().message()
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=60000)
    assert all(origin(i) is None for i in range(8))  # reviewed frames were not detected again
    assert all(origin(i).method == "irsam" and origin(i).weights == Path(best).name for i in (8, 9))


# Stands in for `irsam train`: logs model/train.py's CPU fallback line, waits for the test, writes one epoch
FAKE_TRAINING_ON_CPU = """
import json, pathlib, sys, time
gate, metrics = map(pathlib.Path, sys.argv[1:3])
print("warning: training on the CPU: CUDA error: broken driver", flush=True)
while not gate.exists():
    time.sleep(0.02)
metrics.write_text(json.dumps({"epoch": 1, "loss": 0.5, "val_iou": 0.25, "seconds": 150.0}) + "\\n")
for last_gate in map(pathlib.Path, sys.argv[3:]):  # optional: stays "running" until this file exists
    while not last_gate.exists():
        time.sleep(0.02)
"""


def test_finetune_dialog_shows_a_cpu_fallback_while_training_and_after_success(review, qtbot, tmp_path,
                                                                               monkeypatch):
    gate = tmp_path / "finish_training"
    monkeypatch.setattr(FineTuneJob, "command", lambda job: [sys.executable, "-c", FAKE_TRAINING_ON_CPU,
                                                             str(gate), str(job.metrics_path)])
    for index in range(8):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    dialog = review.review_tools.finetune_dialog_open()
    dialog.folder.setText(str(tmp_path / "finetune"))
    dialog.weights.setText("")
    dialog.epochs.setValue(1)
    assert dialog.start(), dialog.status.text()
    _wait_training_started(dialog, qtbot)
    assert not dialog.warnings.isVisible()
    line = "warning: training on the CPU: CUDA error: broken driver"
    qtbot.waitUntil(dialog.warnings.isVisible, timeout=10000)
    assert dialog.warnings.text() == line and dialog.job.running
    gate.touch()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10000)
    assert dialog.job.returncode == 0 and dialog.progress.value() == 100
    assert dialog.status.text().startswith("Training done")
    assert dialog.warnings.isVisible() and dialog.warnings.text() == line
    dialog.close()


def test_finetune_dialog_trains_on_a_base_data_set_too_and_remembers_it(review, qtbot, tmp_path, monkeypatch):
    gate, exit_gate = tmp_path / "write_epoch", tmp_path / "exit"
    monkeypatch.setattr(FineTuneJob, "command", lambda job: [sys.executable, "-c", FAKE_TRAINING_ON_CPU,
                                                             str(gate), str(job.metrics_path), str(exit_gate)])
    for index in range(8):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    base = write_sirst_dataset(tmp_path / "base")
    wide = shutil.copytree(base, tmp_path / "wide")  # 16-bit images: training reads 8-bit ones only
    for path in (wide / "images").glob("*.png"):
        cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257)
    dialog = review.review_tools.finetune_dialog_open()
    dialog.folder.setText(str(tmp_path / "finetune"))
    for refused, says in ((tmp_path / "not_a_data_set", "no such folder or split file"),
                          (wide, "cannot be trained on: syn_000.png (I;16), syn_001.png (I;16), syn_002.png (I;16) "
                                 "and 9 more. Training reads 8-bit images only")):
        dialog.base_data.setText(str(refused))
        assert dialog.start()
        qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10000)
        assert dialog.job is None and dialog.status.text() == "Training not started:"
        assert dialog.failure.toPlainText().startswith(f"Also train on: {refused}: ")
        assert says in dialog.failure.toPlainText()
    assert not (tmp_path / "finetune").exists()  # refused before exporting anything
    split = base / "train.txt"  # 8 of its 12 frames
    dialog.base_data.setText(str(split))
    assert dialog.start(), dialog.status.text()
    _wait_training_started(dialog, qtbot)
    assert dialog.job.base_data == [split] and dialog.job.base_frames == 8
    assert f"plus 8 of {split}" in dialog.status.text()
    dialog.job.epochs = 5  # one 150 s epoch of five written by the fake training: four left
    gate.touch()
    qtbot.waitUntil(lambda: dialog.progress.format() == "epoch 1/5, about 10 min left", timeout=10000)
    exit_gate.touch()  # a run that ends early (cancelled elsewhere, or --max-minutes) no longer counts down
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10000)
    assert dialog.progress.format() == "epoch 1/5"
    dialog.close()
    again = review.review_tools.finetune_dialog_open()
    assert again.base_data.text() == str(split)  # remembered in the window's settings
    again.reject()


def test_finetune_leaves_the_window_free_asks_before_stopping_and_resumes_in_its_folder(review, fresh_sequence, qtbot,
                                                                                        tmp_path, monkeypatch):
    gate, exit_gate = tmp_path / "write_epoch", tmp_path / "exit"
    monkeypatch.setattr(FineTuneJob, "command", lambda job: [sys.executable, "-c", FAKE_TRAINING_ON_CPU,
                                                             str(gate), str(job.metrics_path), str(exit_gate)])
    answers = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", lambda *a, **k: answers.pop(0))
    for index in range(8):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    folder = tmp_path / "finetune"

    def start_dialog():
        dialog = review.review_tools.finetune_dialog_open()
        dialog.folder.setText(str(folder))
        dialog.weights.setText("")
        dialog.epochs.setValue(3)
        assert dialog.start(), dialog.status.text()
        _wait_training_started(dialog, qtbot)
        return dialog

    dialog = start_dialog()
    assert dialog.windowModality() == QtCore.Qt.NonModal and QtWidgets.QApplication.activeModalWidget() is None
    assert review.review_tools.finetune_dialog_open() is dialog  # one at a time
    review.activateWindow()  # the analyst goes on reviewing while it trains
    qtbot.waitUntil(review.isActiveWindow, timeout=5000)
    _window_system_key(review, qtbot, QtCore.Qt.Key_Right)
    qtbot.waitUntil(lambda: review.index == 1, timeout=5000)
    gate.touch()  # epoch 1 of 3 ends: its record, and the resume state irsam train keeps
    save_resume_state(dialog.job, epoch=0)
    qtbot.waitUntil(lambda: dialog.progress.format().startswith("epoch 1/3"), timeout=10000)
    answers.append(QtWidgets.QMessageBox.No)
    qtbot.keyClick(dialog, QtCore.Qt.Key_Escape)  # asked, and kept training
    assert dialog.isVisible() and dialog.job.running and not answers
    answers.append(QtWidgets.QMessageBox.No)
    assert not review.close()  # quitting asks too: No keeps the window and the training
    assert review.isVisible() and dialog.isVisible() and dialog.job.running and not answers
    answers.append(QtWidgets.QMessageBox.Yes)
    dialog.close()  # the title bar's close: asked, and stopped
    assert not dialog.isVisible() and not dialog.job.running and not answers
    assert dialog.status.text().startswith(f"Cancelled after epoch 1 of 3. Start resumes it from {folder / 'run'}")

    dialog = start_dialog()  # a new dialog on the same folder, settings and reviewed frames
    assert dialog.job.out_dir == folder / "run"
    assert dialog.status.text().startswith(f"Resuming the run in {folder / 'run'} after epoch 1 of 3.\nTraining on")
    assert len(read_exported_dataset(folder / "data", "sirst")) == 8  # exported again, replacing the first export
    exit_gate.touch()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10000)
    save_resume_state(dialog.job, epoch=2)  # all three epochs done: nothing left to resume
    exit_gate.unlink()
    assert dialog.start()
    _wait_training_started(dialog, qtbot)
    assert dialog.job.out_dir == folder / "run-2"
    assert dialog.status.text().startswith(f"The run in {folder / 'run'} had done all its 3 epochs: this one starts "
                                           f"afresh in {folder / 'run-2'}.")
    exit_gate.touch()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10000)
    open_project(review, qtbot, fresh_sequence)  # the window opens a sequence again: the dialog's one is closed
    assert not dialog.start() and dialog.status.text() == SEQUENCE_CLOSED
    renewed = review.review_tools.finetune_dialog_open()  # as the message says: a new one, over the sequence open
    assert renewed is not dialog and not dialog.isVisible() and renewed.session is review.session
    renewed.close()


def save_resume_state(job: FineTuneJob, epoch: int) -> None:
    """What irsam train keeps in last.pt after epoch `epoch` + 1, as far as a resume reads it: the epoch and
    the run's record (the model config was not stored by the oldest runs, so it is left out)."""
    import torch

    from model.train import run_record
    from model.train_config import train_config_of_command

    run = run_record(train_config_of_command(job.train_arguments()), 1, job.holdout.train, job.holdout.val)
    torch.save({"epoch": epoch, "run": json.dumps(run)}, job.last_path)


# Stands in for an `irsam train` that fails with a long line (model/train.py lists every unusable file)
FAKE_FAILING_TRAINING = """
import sys
print("ValueError: 500 unusable training or validation file(s): " + "; ".join(
    f"/data/base/images/{i:06d}.png: I;16 image is not 8-bit; normalise it to 8 bits first" for i in range(500)))
sys.exit(1)
"""


def test_a_training_failure_shows_in_a_bounded_box_and_start_in_the_same_folder_trains(review, qtbot, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setattr(FineTuneJob, "command", lambda job: [sys.executable, "-c", FAKE_FAILING_TRAINING])
    for index in range(8):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    dialog = review.review_tools.finetune_dialog_open()
    folder = tmp_path / "finetune"
    dialog.folder.setText(str(folder))
    dialog.weights.setText("")
    dialog.epochs.setValue(1)
    height, plot_height = dialog.height(), dialog.plot.height()
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.job is not None and dialog.start_button.isEnabled(), timeout=30000)
    assert dialog.status.text() == f"Training failed (exit 1); the end of {dialog.job.log_path}:"
    assert dialog.failure.isVisible() and "500 unusable" in dialog.failure.toPlainText()
    assert dialog.failure.height() <= dialog.failure.maximumHeight()
    assert dialog.failure.verticalScrollBar().maximum() > 0  # the rest scrolls
    assert dialog.height() == height and dialog.plot.height() > plot_height / 2  # the layout holds

    gate = tmp_path / "write_epoch"
    gate.touch()
    monkeypatch.setattr(FineTuneJob, "command", lambda job: [sys.executable, "-c", FAKE_TRAINING_ON_CPU,
                                                             str(gate), str(job.metrics_path)])
    assert dialog.start()  # again in the same folder: its data set is replaced
    _wait_training_started(dialog, qtbot)
    assert dialog.job.out_dir == folder / "run" and not dialog.failure.isVisible()  # nothing there to resume
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10000)
    assert dialog.job.returncode == 0 and dialog.status.text().startswith("Training done")
    dialog.close()


# Stands in for an `irsam train` that ends at once, leaving the given checkpoint as its best.pt
FAKE_TRAINING_DONE = """
import json, shutil, sys
weights, best, metrics = sys.argv[1:4]
shutil.copy(weights, best)
open(metrics, "w").write(json.dumps({"epoch": 1, "loss": 0.5, "val_iou": 0.25, "seconds": 1.0}) + "\\n")
"""


def test_closing_the_dialog_while_it_compares_the_weights_stops_the_comparison_at_once(review, qtbot, tmp_path,
                                                                                       monkeypatch, tiny_checkpoint):
    from model.predictor import Predictor

    monkeypatch.setattr(FineTuneJob, "command", lambda job: [sys.executable, "-c", FAKE_TRAINING_DONE,
                                                             str(tiny_checkpoint), str(job.best_path),
                                                             str(job.metrics_path)])
    images_scored = []

    def slow_detect(predictor, images, features=False):  # 12 held-out frames x 2 checkpoints: 12 s in all
        images_scored.append(len(images))
        time.sleep(0.5)  # (no network run beside it: under load one took up to 3 s, and closing waits for it)
        return [FrameResult(np.full(image.shape, -3.0, np.float32)) for image in images]

    monkeypatch.setattr(Predictor, "detect", slow_detect)
    for index in range(60):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    dialog = review.review_tools.finetune_dialog_open()
    dialog.folder.setText(str(tmp_path / "finetune"))
    dialog.weights.setText(str(tiny_checkpoint))
    dialog.epochs.setValue(1)
    assert dialog.start()
    _wait_training_started(dialog, qtbot)
    qtbot.waitUntil(lambda: len(images_scored) > 0, timeout=30000)
    assert dialog.compare_runner.busy and dialog.status.text().startswith("Training done. Comparing")
    started = time.perf_counter()
    dialog.close()
    assert time.perf_counter() - started < 2.0 and not dialog.compare_runner.busy and len(images_scored) < 4
    qtbot.wait(100)  # the cancelled comparison's end arrives, and is dropped
    assert dialog.comparison.item(0, 0) is None and not dialog.use_button.isEnabled()


def test_queue_lists_every_frame_before_a_project_exists(window, fresh_sequence, qtbot):
    open_project(window, qtbot, fresh_sequence)
    assert window.session.project is None
    panel = window.review_tools.review_panel
    n = len(window.session)
    assert [s.index for s in panel.model.summaries] == list(range(n))
    assert panel.counts.text().startswith(f"unreviewed {n}")
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)  # window shortcuts need the active window
    _key(window, qtbot, QtCore.Qt.Key_Space)  # accept and next: nothing detected yet is nothing to accept
    assert window.session.project is None and window.index == 0
    assert "Frame 1 has no proposal to accept yet" in window.statusBar().message()
    _key(window, qtbot, QtCore.Qt.Key_0)  # negative: the first status creates the project
    assert window.session.project is not None and _status(window, 0) is ReviewStatus.NEGATIVE
    assert panel.counts.text().startswith(f"unreviewed {n - 1}  accepted 0") and "negative 1" in panel.counts.text()


def test_a_frame_ahead_of_a_detection_run_is_accepted_only_once_the_run_has_proposed(window, fresh_sequence, qtbot,
                                                                                      monkeypatch):
    open_project(window, qtbot, fresh_sequence)
    source, tools = window.session.source, window.review_tools
    read = source.frame

    def slow_frame(index):
        QtCore.QThread.msleep(30)
        return read(index)

    monkeypatch.setattr(source, "frame", slow_frame)
    combo = window.detection_panel.detector_combo
    combo.setCurrentIndex(next(i for i in range(combo.count())
                               if combo.itemData(i) is not None and combo.itemData(i).method == "mpcm"))
    window.run_detection("all")
    qtbot.waitUntil(lambda: window.detection_panel.progress.value() >= 1, timeout=30000)
    ahead = len(window.session) - 1
    window.timeline.go_to(ahead)
    assert window.session.detection_counts[ahead] == NOT_RUN
    _key(window, qtbot, QtCore.Qt.Key_Space)
    assert window.index == ahead and _status(window, ahead) is ReviewStatus.UNREVIEWED
    assert f"Frame {ahead + 1} has no proposal to accept yet" in window.statusBar().message()
    tools.review_panel.status_buttons[ReviewStatus.ACCEPTED].click()
    assert _status(window, ahead) is ReviewStatus.UNREVIEWED
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=60000)
    _key(window, qtbot, QtCore.Qt.Key_Space)
    assert _status(window, ahead) is ReviewStatus.ACCEPTED
    assert committed(window, ahead) is None  # accepted as proposed: export takes the proposal, not an empty mask


def test_a_status_change_saves_the_stroke_whose_save_failed_first(review, qtbot):
    tools, project = review.review_tools, review.session.project
    labels = project.folder / "labels"
    labels.write_text("not a folder")  # no committed mask can be written
    tools.palette.brush_size.setValue(1)
    tools.palette.set_tool(Tool.BRUSH)
    drag(review, [(3, 90), (12, 90)])
    assert any("Not saved" in m for m in review.messages)
    review.messages.clear()
    assert not tools.set_status(ReviewStatus.ACCEPTED)  # it would accept the proposal, not the stroke shown
    assert any("Not saved" in m for m in review.messages) and _status(review, 0) is ReviewStatus.UNREVIEWED
    assert not (project.folder / "review.json").exists()
    labels.unlink()
    assert tools.set_status(ReviewStatus.ACCEPTED)
    mask = committed(review, 0)
    assert mask[90, 3:13].all() and (mask >= project.prediction_mask(review.session.stem(0))).all()
    assert _status(review, 0) is ReviewStatus.ACCEPTED and not tools.editing.editor.unsaved
    np.testing.assert_array_equal(review.layers.committed, mask)


def test_edits_and_status_changes_wait_for_the_project_to_be_read(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence)
    assert window.open_path(fresh_sequence)  # the project is read in a worker from here on
    tools = window.review_tools
    assert not tools.set_status(ReviewStatus.ACCEPTED)
    assert "earlier results" in window.statusBar().message()
    assert not tools.review_panel.accept_next.isEnabled()
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    assert tools.review_panel.accept_next.isEnabled() and tools.editing.blocked is None
    assert "earlier results" not in window.statusBar().message()
    assert tools.set_status(ReviewStatus.ACCEPTED)
    assert window.session.status(0) is ReviewStatus.ACCEPTED


def test_a_message_about_a_frame_goes_when_another_frame_is_shown(review, qtbot):
    """"Frame 1 marked negative ..." stayed for its 8 s on the frames scrubbed to after it, and hid their IoU / Pd."""
    bar = review.statusBar()
    assert review.review_tools.set_status(ReviewStatus.NEGATIVE)
    assert bar.currentMessage().startswith("Frame 1 marked negative: it will export an empty mask")
    assert review.metrics_label.isHidden()
    review.show_frame(0)  # shown again (a new result, an edit): still about this frame
    assert bar.currentMessage().startswith("Frame 1 marked negative")
    review.timeline.go_to(3)
    assert bar.currentMessage() == "" and not review.metrics_label.isHidden()
    assert review.metrics_label.text().startswith("IoU")
    bar.showMessage("Opened the sequence: 2 unreadable files", 15000)  # not about one frame: it stays
    review.timeline.go_to(4)
    assert bar.currentMessage() == "Opened the sequence: 2 unreadable files"


def test_a_message_about_a_frame_status_goes_when_the_status_changes(review, qtbot):
    """"Frame 1 marked negative ..." stayed for its 8 s after the frame was accepted, and hid its IoU / Pd."""
    bar = review.statusBar()
    assert review.review_tools.set_status(ReviewStatus.NEGATIVE)
    assert bar.currentMessage().startswith("Frame 1 marked negative")
    assert review.review_tools.set_status(ReviewStatus.ACCEPTED)
    assert bar.currentMessage() == "" and not review.metrics_label.isHidden()
    assert review.review_tools.set_status(ReviewStatus.NEGATIVE)
    assert review.review_tools.set_status(ReviewStatus.NEGATIVE)  # marked again: said again
    assert bar.currentMessage().startswith("Frame 1 marked negative")
    bar.showMessage("Opened the sequence: 2 unreadable files", 15000)  # not about the frame: it stays
    assert review.review_tools.set_status(ReviewStatus.REJECTED)
    assert bar.currentMessage() == "Opened the sequence: 2 unreadable files"


def test_a_slip_on_a_negative_frame_and_its_undo_leave_it_negative_as_it_was(review, qtbot):
    """GUI audit 17: B and one click on a frame marked negative committed the proposal with the click and made
    the frame corrected; Ctrl+Z took back the click only, and "marked negative: it will export an empty mask"
    stayed in the status bar over a frame that would now export the proposal."""
    bar = review.statusBar()
    _key(review, qtbot, QtCore.Qt.Key_0)
    assert bar.currentMessage().startswith("Frame 1 marked negative")
    review.review_tools.palette.brush_size.setValue(1)
    _key(review, qtbot, QtCore.Qt.Key_B)
    click(review, 2, 2)  # empty sky, away from the proposal's target
    assert _status(review, 0) is ReviewStatus.CORRECTED
    assert committed(review, 0).sum() == 1  # the click alone: none of the proposal
    assert bar.currentMessage() == ""
    _key(review, qtbot, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)
    assert _status(review, 0) is ReviewStatus.NEGATIVE
    proposal = review.session.project.prediction_mask(review.session.stem(0))
    np.testing.assert_array_equal(review.session.project.shown_mask(review.session.stem(0)), proposal)
    assert review.review_tools.review_panel.status_buttons[ReviewStatus.NEGATIVE].isChecked()
    _key(review, qtbot, QtCore.Qt.Key_Z, QtCore.Qt.ControlModifier)  # nothing left: said, not silent
    assert bar.currentMessage() == "Frame 1: nothing to undo."


def test_a_project_folder_taken_by_a_file_refuses_each_save_with_a_message_and_keeps_the_stroke(
        window, fresh_sequence, qtbot):
    """A sequence whose project cannot be made (its folder's name is a file's; as on read-only media, which root
    cannot make): marking a status raised NotADirectoryError out of the slot, and nothing was said."""
    taken = fresh_sequence.with_name(fresh_sequence.name + ".irsam-review")
    taken.write_bytes(b"someone else's file")
    open_project(window, qtbot, fresh_sequence)
    tools = window.review_tools
    assert not tools.set_status(ReviewStatus.NEGATIVE)
    assert window.messages[-1].startswith(f"Not saved: could not write to {taken}: a file of that name is there")
    assert window.session.status(0) is ReviewStatus.UNREVIEWED
    tools.palette.brush_size.setValue(1)
    tools.palette.set_tool(Tool.BRUSH)
    drag(window, [(3, 40), (12, 40)])
    assert "a file of that name is there" in window.messages[-1]
    assert tools.editing.editor.unsaved[0][40, 3:13].all()  # the stroke stays in memory, shown
    assert window.layers.committed is not None and window.layers.committed[40, 3:13].all()
    panel = window.detection_panel
    panel.detector_combo.setCurrentIndex(next(
        i for i in range(panel.detector_combo.count())
        if panel.detector_combo.itemData(i) is not None and panel.detector_combo.itemData(i).method == "tophat"))
    panel.choiceChanged.emit(panel.choice())
    window.run_detection("frame")
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=10000)
    assert "a file of that name is there" in window.statusBar().message()
    assert taken.read_bytes() == b"someone else's file"  # never written over
    assert not tools.set_status(ReviewStatus.NEGATIVE)  # each attempt refused the same way, nothing raised
    tools.editing.editor.unsaved.clear()  # (the window asks about unsaved edits when it closes)


def test_an_export_added_to_a_data_set_keeps_the_sequence_on_its_side_unless_another_is_chosen(
        review, qtbot, tmp_path):
    """The dialog's split started at "train": adding a test sequence again moved it into training, unsaid."""
    session, tools = review.session, review.review_tools
    for index in range(3):
        session.set_status(index, ReviewStatus.ACCEPTED)
    out = tmp_path / "export"

    def export(split_text, append):
        dialog = tools.export_dialog()
        dialog.folder.setText(str(out))
        dialog.split_combo.setCurrentText(split_text)
        dialog.append.setChecked(append)
        dialog.export_button.click()
        qtbot.waitUntil(dialog.export_button.isEnabled, timeout=30000)
        text = dialog.result.toPlainText()
        dialog.close()
        return text

    assert "(sirst, test split)" in export("test", append=False)
    text = export("as before (a new sequence: train)", append=True)
    assert "(sirst, test split)" in text and "moved" not in text
    assert len((out / "test.txt").read_text().split()) == 3 and not (out / "trainval.txt").read_text().split()
    text = export("train", append=True)
    assert "3 frames of this sequence were on the test side before: they moved to train." in text
    assert len((out / "trainval.txt").read_text().split()) == 3
