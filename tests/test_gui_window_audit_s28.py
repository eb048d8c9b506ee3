"""The review window after the analyst GUI audit 28, under Xvfb: C on a frame never detected, the feature maps
docked and while they compute, the IRSAM network kept while a classical method is chosen, clearing a target
selection, the 3D view's captions, the device and detector shown, the input-window dialog following another
window, and closing with an edit that can no longer be saved."""
from __future__ import annotations

import gc
import shutil
import weakref

import numpy as np
import pytest
from PySide6 import QtCore
from PySide6.QtTest import QTest

from app.core.normalization import NormalizationRequest
from app.core.project import ReviewStatus
from app.editing import Tool
from app.main_window import FEATURES_DOCKED_HEIGHT
from app.session import ReviewSession
from model.detectors import FrameResult
from model.size_gate import ungated
from tests.gui_review_helpers import drag, open_project, predict_ground_truth

pytestmark = pytest.mark.gui


def _choose(window, method: str | None = None, weights=None) -> None:
    """Pick a detector in the Detection panel's list as the analyst does (its `activated`)."""
    combo = window.detection_panel.detector_combo
    index = next(i for i in range(combo.count()) if combo.itemData(i) is not None
                 and (combo.itemData(i).method == method if weights is None
                      else combo.itemData(i).weights == str(weights)))
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def _press(window, key) -> None:
    QTest.keyClick(window.frame_view.graphics, key)


def _keys_to_the_window(window, qtbot) -> None:
    """The window active: its shortcuts (C, Space, 0) take the keys pressed on the frame view."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    window.frame_view.graphics.setFocus()


def _run_ended(window, qtbot) -> None:
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=30000)


def test_c_on_a_frame_never_detected_is_refused_like_accept_and_commits_nothing(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence, frames=[0])
    open_project(window, qtbot, fresh_sequence)
    window.timeline.go_to(1)
    project, stem = window.session.project, window.session.stem(1)
    _keys_to_the_window(window, qtbot)
    _press(window, QtCore.Qt.Key_C)
    assert window.statusBar().message() == ("Frame 2 has no proposal to mark corrected yet: detect it, draw "
                                                   "its targets, or mark it Negative.")
    assert window.session.status(1) is ReviewStatus.UNREVIEWED and not project.has_committed_mask(stem)
    _press(window, QtCore.Qt.Key_Space)  # accept (and next): refused as before, the frame still shown
    assert window.index == 1 and window.session.status(1) is ReviewStatus.UNREVIEWED
    assert window.statusBar().message().startswith("Frame 2 has no proposal to accept yet")
    _press(window, QtCore.Qt.Key_0)  # negative: the way to say it has no target
    assert window.session.status(1) is ReviewStatus.NEGATIVE


def test_the_feature_maps_docked_under_the_frame_leave_the_right_column_whole_and_the_frame_most_of_its_height(
        window, qtbot):
    dock = window.features_dock
    dock.show()
    dock.setFloating(False)
    qtbot.waitUntil(lambda: dock.height() == FEATURES_DOCKED_HEIGHT, timeout=5000)
    assert window.dockWidgetArea(dock) == QtCore.Qt.BottomDockWidgetArea
    column = window.detection_dock.geometry().united(window.overlays_dock.geometry())
    assert dock.geometry().right() < column.left()  # under the frame only, not under the right column
    assert column.bottom() >= dock.geometry().bottom()
    assert window.frame_view.height() > 1.5 * dock.height()


def test_the_feature_panel_shows_one_frames_input_and_maps_while_the_next_frames_compute(
        window, fresh_sequence, tiny_checkpoint, qtbot):
    open_project(window, qtbot, fresh_sequence)
    window.detection_panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: window.detector is not None and not window.detection_runner.busy, timeout=30000)
    panel = window.feature_panel
    window.features_dock.show()
    qtbot.waitUntil(lambda: not window.feature_runner.busy and panel.message.text().startswith("Feature maps of "
                                                                                               "frame 1 "),
                    timeout=30000)
    first_input = window.session.normalization.apply(window.frame)
    assert np.array_equal(panel.images["input"].image, first_input)

    window.timeline.step(1)
    window.update_panels()  # (what the settle timer calls): the maps of frame 2 are being computed
    assert window.feature_runner.busy or window.feature_runner.worker is not None
    assert np.array_equal(panel.images["input"].image, first_input)  # not frame 2's beside frame 1's maps
    assert panel.message.text() == "Computing the feature maps of frame 2... (those of frame 1 are shown until then)"
    qtbot.waitUntil(lambda: panel.message.text().startswith("Feature maps of frame 2 "), timeout=30000)
    assert np.array_equal(panel.images["input"].image, window.session.normalization.apply(window.frame))
    assert not np.array_equal(panel.images["input"].image, first_input)


def test_a_classical_method_keeps_the_loaded_irsam_which_comes_back_without_loading_again(
        window, fresh_sequence, tiny_checkpoint, tmp_path, qtbot):
    open_project(window, qtbot, fresh_sequence)
    window.detection_panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: window.detector is not None and not window.detection_runner.busy, timeout=30000)
    network = ungated(window.detector)
    loaded_description = window.detection_panel.info.text()

    _choose(window, "tophat")
    assert window.detector is None  # the classical method is built when it runs
    _choose(window, weights=tiny_checkpoint)
    assert not window.detection_runner.busy  # nothing loaded
    assert ungated(window.detector) is network and window.detection_panel.info.text() == loaded_description

    _choose(window, "tophat")
    window.run_detection("frame")
    _run_ended(window, qtbot)
    _choose(window, weights=tiny_checkpoint)  # after a classical run too
    assert not window.detection_runner.busy and ungated(window.detector) is network

    other = tmp_path / "other.pt"  # other weights: the network set aside is freed
    shutil.copyfile(tiny_checkpoint, other)
    _choose(window, "tophat")
    window.detection_panel.add_checkpoint(other)
    qtbot.waitUntil(lambda: window.detector is not None and not window.detection_runner.busy, timeout=30000)
    assert window.detection_panel.choice().weights == str(other)
    freed = weakref.ref(network)
    del network
    gc.collect()
    assert freed() is None


def _select_then_leave_for_a_frame_never_detected(window) -> None:
    window.timeline.go_to(0)
    window.update_panels()
    window.targets_dock.raise_()
    window.target_list.selectRow(0)
    assert window.selected is not None
    window.timeline.go_to(1)
    window.update_panels()
    assert window.selected is not None and window.target_list.rowCount() == 0
    assert window.surface_view.caption.text().startswith("where the selected target was")


@pytest.mark.parametrize("how", ["Esc on the frame", "Esc on the list", "click on the list"])
def test_a_selection_kept_on_a_frame_without_targets_is_cleared_and_the_3d_view_follows_the_cursor(
        window, fresh_sequence, qtbot, how):
    predict_ground_truth(fresh_sequence, frames=[0])
    open_project(window, qtbot, fresh_sequence)
    window.surface_dock.show()
    _select_then_leave_for_a_frame_never_detected(window)
    target_list = window.target_list
    if how == "Esc on the frame":
        _press(window, QtCore.Qt.Key_Escape)
    elif how == "Esc on the list":
        target_list.setFocus()
        QTest.keyClick(target_list, QtCore.Qt.Key_Escape)
    else:
        QTest.mouseClick(target_list.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, QtCore.QPoint(20, 20))
    assert window.selected is None
    assert not window.surface_view.caption.text().startswith("where the selected target was")
    viewport = window.frame_view.graphics.viewport()
    for point in (QtCore.QPoint(5, 5), viewport.rect().center()):  # (a move to where the pointer is sends nothing)
        QTest.mouseMove(viewport, point)
    qtbot.waitUntil(lambda: window.surface_view.caption.text().startswith("cursor ("), timeout=2000)


def test_a_click_below_the_targets_clears_the_selection_and_one_on_a_row_selects_it(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence, frames=[0])
    open_project(window, qtbot, fresh_sequence)
    window.targets_dock.raise_()
    window.update_panels()
    target_list = window.target_list
    qtbot.waitUntil(lambda: target_list.isVisible() and target_list.rowCount() == 2, timeout=2000)
    row = target_list.visualRect(target_list.model().index(1, 0)).center()
    QTest.mouseClick(target_list.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, row)
    assert window.selected is not None and window.selected in target_list.targets
    below = QtCore.QPoint(row.x(), target_list.viewport().height() - 3)
    QTest.mouseClick(target_list.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, below)
    assert window.selected is None and not target_list.selectionModel().selectedRows()


def test_the_3d_captions_tell_a_frame_not_detected_from_an_empty_proposal(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence, frames=[0])
    session = ReviewSession.open(fresh_sequence)
    session.ensure_project().save_prediction(session.stem(2), FrameResult(np.full((96, 128), -5.0, np.float32)))
    session.project.flush_detections()
    session.close()
    open_project(window, qtbot, fresh_sequence)
    window.surface_dock.show()
    captions = {}
    for index in (0, 1, 2):
        window.timeline.go_to(index)
        window.update_panels()
        captions[index] = window.surface_view.caption.text()
    assert "; outline: predicted mask" in captions[0]
    assert "; no outline: not detected yet" in captions[1] and "outline: predicted" not in captions[1]
    assert "; no outline: the proposal is empty" in captions[2] and "outline: predicted" not in captions[2]
    _select_then_leave_for_a_frame_never_detected(window)  # a selection kept from frame 1
    caption = window.surface_view.caption.text()
    assert caption.startswith("where the selected target was (") and ": frame 2 is not detected yet" in caption
    assert "none there" not in caption


def test_the_device_auto_runs_on_is_shown_before_the_first_run(window, qtbot):
    import torch

    expected = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    qtbot.waitUntil(lambda: window.device_label.text() != "device: auto", timeout=30000)
    assert window.device_label.text() == f"device: {expected}"
    assert window.device_label.toolTip().startswith("auto: ")
    window.detection_panel.device_combo.setCurrentText("cpu")
    assert window.device_label.text() == "device: cpu"
    window.detection_panel.device_combo.setCurrentText("auto")
    assert window.device_label.text() == f"device: {expected}"


def test_a_classical_methods_description_stays_whole_after_it_ran(window, fresh_sequence, qtbot):
    open_project(window, qtbot, fresh_sequence)
    _choose(window, "tophat")
    description = window.detection_panel.info.text()
    assert description.startswith("Top-Hat: classical method, runs on the CPU; suits targets up to ")
    window.run_detection("frame")
    _run_ended(window, qtbot)
    assert window.detector is not None and window.detection_panel.info.text() == description


def test_an_open_input_window_dialog_says_the_window_another_instance_chose(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence, frames=[0])
    open_project(window, qtbot, fresh_sequence)
    dialog = window.choose_normalization()
    assert not dialog.note.text().startswith("Now: window 10")
    other = ReviewSession.open(fresh_sequence)
    chosen = other.change_normalization(NormalizationRequest(window=(10.0, 2000.0)))
    other.close()
    window.take_up_disk_changes()
    assert window.session.normalization == chosen
    assert dialog.note.text().startswith(f"Now: {chosen}.")


def test_closing_with_an_unsaved_edit_on_a_frame_now_unreadable_says_so_and_saves_the_others(
        review, refusing_writes, monkeypatch, qtbot):
    project = review.session.project
    refusing = refusing_writes
    review.review_tools.palette.brush_size.setValue(3)
    review.review_tools.palette.set_tool(Tool.BRUSH)
    drawn = {}
    for index in (0, 1):
        review.timeline.go_to(index)
        drag(review, [(x, 40) for x in range(30, 60)])
        drawn[index] = review.review_tools.editing.editor.unsaved[index].copy()
    refusing.clear()  # the project can be written again, but frame 1 became unreadable meanwhile
    review.session.mark_unreadable(0)
    review.messages.clear()
    assert review.review_tools.save_unsaved_edits()
    assert review.messages == ["Frame 1: its edited mask, kept in memory since its save failed, is discarded: Frame 1 "
                               "is unreadable: it can only be marked rejected."]
    stems = review.session.stem(0), review.session.stem(1)
    assert np.array_equal(project.committed_mask(stems[1]), drawn[1])
    assert review.session.status(1) is ReviewStatus.CORRECTED
    assert project.committed_mask(stems[0]) is None
    assert not review.review_tools.editing.editor_with_unsaved_edits
    assert review.close()
