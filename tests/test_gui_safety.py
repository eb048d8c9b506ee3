"""The window does not lose or change review work by accident, under Xvfb: an edit whose save failed is saved
(or asked about) before the sequence closes, and keys pressed on a focused control stay that control's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtWidgets

import app.core.project as project_module
from app.core.project import ReviewProject, ReviewStatus
from app.editing import Tool
from tests.gui_review_helpers import drag, open_project

pytestmark = pytest.mark.gui




@pytest.fixture
def refusing_status_writes(review, monkeypatch):
    """While the returned set holds True, review.json (and its backup) cannot be written; masks and their
    history can: a status save fails after its mask's succeeded."""
    write_json = project_module.atomic_write_json
    refusing = {True}

    def maybe_refuse(path, *args, **kwargs):
        if refusing and Path(path).name.startswith("review.json"):
            raise OSError("disk full (simulated)")
        return write_json(path, *args, **kwargs)

    monkeypatch.setattr(project_module, "atomic_write_json", maybe_refuse)
    return refusing


def _unsaved_stroke(window) -> np.ndarray:
    """Brush a stroke on frame 1 whose save fails; returns the mask kept in memory."""
    window.review_tools.palette.brush_size.setValue(3)
    window.review_tools.palette.set_tool(Tool.BRUSH)
    drag(window, [(x, 40) for x in range(30, 60)])
    unsaved = window.review_tools.editing.editor.unsaved
    assert list(unsaved) == [0] and any("disk full" in m for m in window.messages)
    return unsaved[0].copy()


def _answer_dialogs(qtbot, answers: list[tuple[str, object]]) -> list[str]:
    """Click `button` on each modal message box as it opens, after calling `before` (or None); the texts shown."""
    shown = []

    def answer():
        box = QtWidgets.QApplication.activeModalWidget()
        if isinstance(box, QtWidgets.QMessageBox) and box.isVisible():
            shown.append(f"{box.text()} {box.informativeText()}")
            button, before = answers.pop(0)
            if before:
                before()
            next(b for b in box.buttons() if b.text() == button).click()
        if answers:
            QtCore.QTimer.singleShot(20, answer)

    QtCore.QTimer.singleShot(20, answer)
    return shown


def _on_disk(folder, stem: str) -> tuple[ReviewStatus, np.ndarray | None]:
    project = ReviewProject.open(folder)
    return project.status(stem), project.committed_mask(stem)


def test_an_edit_kept_in_memory_is_saved_when_the_window_closes(review, refusing_writes):
    folder, stem = review.session.project.folder, review.session.stem(0)
    kept = _unsaved_stroke(review)
    refusing_writes.clear()  # the folder is writable again
    assert review.close()
    status, mask = _on_disk(folder, stem)
    assert status is ReviewStatus.CORRECTED and mask is not None and np.array_equal(mask, kept)


def test_an_edit_that_still_cannot_be_saved_is_asked_about_before_closing_or_opening_another(
        review, refusing_writes, sequence_16bit, qtbot):
    session, folder, stem = review.session, review.session.project.folder, review.session.stem(0)
    kept = _unsaved_stroke(review)
    review.review_tools.set_status(ReviewStatus.REJECTED)  # refused too: it says what became of it
    assert review.statusBar().message() == ("Not saved: disk full (simulated). Frame 1 stays unreviewed, its "
                                                   "edited mask is kept in memory; the files on disk are unchanged.")

    shown = _answer_dialogs(qtbot, [("Cancel", None)])
    assert not review.close()
    assert review.isVisible() and review.session is session and len(shown) == 1
    assert "frame 1 is still not saved: disk full" in shown[0] and "Cancel keeps this sequence open" in shown[0]
    shown = _answer_dialogs(qtbot, [("Cancel", None)])
    assert not review.open_path(sequence_16bit)
    assert review.session is session and len(shown) == 1 and 0 in review.review_tools.editing.editor.unsaved

    # tried again while the folder still refuses: asked again; then it is writable and the retry saves it
    shown = _answer_dialogs(qtbot, [("Save again", None), ("Save again", refusing_writes.clear)])
    assert review.open_path(sequence_16bit)
    assert len(shown) == 2 and review.session is not session
    status, mask = _on_disk(folder, stem)
    assert status is ReviewStatus.CORRECTED and np.array_equal(mask, kept)


@pytest.mark.parametrize("shown", [0, 2])
def test_another_instances_mask_over_an_unsaved_edit_is_said_and_comes_back_by_undo(review, refusing_writes, shown):
    """The edit kept in memory is the analyst's last word on the frame and replaces the other's mask when saved, so
    the window says so when the other's mask arrives, on the frame shown or another; Undo then brings it back."""
    folder, stem = review.session.project.folder, review.session.stem(0)
    kept = _unsaved_stroke(review)
    review.show_frame(shown)
    theirs = np.zeros_like(kept)
    theirs[5:9, 5:9] = True
    ReviewProject.open(folder).commit_edit(stem, theirs)
    review.take_up_disk_changes()
    assert review.statusBar().message() == (
        "Frame 1: another window or irsam command committed a mask over your edit that is not saved yet. Your edit "
        "replaces it when it is saved; Undo then brings theirs back.")
    review.show_frame(0)
    assert np.array_equal(review.layers.committed, kept)  # the edit is still what the frame shows
    refusing_writes.clear()
    assert review.close()
    project = ReviewProject.open(folder)
    assert np.array_equal(project.committed_mask(stem), kept) and np.array_equal(project.undo(stem), theirs)


def test_a_discarded_edit_closes_the_window_and_leaves_the_files_unchanged(review, refusing_writes, qtbot):
    folder, stem = review.session.project.folder, review.session.stem(0)
    _unsaved_stroke(review)
    shown = _answer_dialogs(qtbot, [("Discard", None)])
    assert review.close()
    assert len(shown) == 1 and _on_disk(folder, stem) == (ReviewStatus.UNREVIEWED, None)


def _press(window, qtbot, widget, key) -> None:
    """Focus `widget` and press `key` as the window system delivers it to the window."""
    widget.setFocus(QtCore.Qt.TabFocusReason)
    qtbot.waitUntil(widget.hasFocus, timeout=2000)
    qtbot.keyClick(window.windowHandle(), key)


def test_keys_on_a_focused_button_check_box_or_combo_box_stay_theirs(review, qtbot):
    review.activateWindow()
    qtbot.waitUntil(review.isActiveWindow, timeout=5000)
    edges = review.overlay_panel.toggles["edges"]
    _press(review, qtbot, edges, QtCore.Qt.Key_Space)
    assert edges.isChecked() and review.index == 0 and review.session.status(0) is ReviewStatus.UNREVIEWED
    _press(review, qtbot, review.review_tools.review_panel.next_unreviewed, QtCore.Qt.Key_Space)
    assert review.index == 1 and review.session.status(0) is ReviewStatus.UNREVIEWED  # pressed, not accepted
    for key in (QtCore.Qt.Key_B, QtCore.Qt.Key_R, QtCore.Qt.Key_0):  # brush, reject, negative: a combo box's search
        _press(review, qtbot, review.palette_combo, key)
    assert review.session.status(1) is ReviewStatus.UNREVIEWED and review.review_tools.palette.tool is Tool.NAVIGATE
    assert review.palette_combo.currentText() == "black-hot"
    _press(review, qtbot, review.frame_view.graphics, QtCore.Qt.Key_Space)  # the view leaves Space to the shortcut
    assert review.session.status(1) is ReviewStatus.ACCEPTED and review.index == 2


def test_opening_another_sequence_clears_the_selected_targets_box(review, sequence_16bit, qtbot):
    qtbot.waitUntil(lambda: review.target_list.rowCount() > 0, timeout=2000)
    review.target_list.selectRow(0)
    assert review.selected is not None and len(review.frame_view.selection.xData) > 0
    open_project(review, qtbot, sequence_16bit)
    xs = review.frame_view.selection.xData
    assert review.selected is None and (xs is None or len(xs) == 0)


def test_a_failed_edit_says_its_mask_is_kept_and_a_failed_undo_that_the_frame_is_as_it_was(review, refusing_writes):
    refusing_writes.clear()
    review.review_tools.palette.brush_size.setValue(3)
    review.review_tools.palette.set_tool(Tool.BRUSH)
    drag(review, [(x, 40) for x in range(30, 60)])  # saved
    editing = review.review_tools.editing
    saved = review.session.project.committed_mask(review.session.stem(0)).copy()
    assert editing.editor.can_undo(0) and editing.editor_with_unsaved_edits is None
    refusing_writes.add(True)
    editing.undo()
    assert review.statusBar().message() == ("Not saved: disk full (simulated). Frame 1 is as it was, on "
                                                   "screen and on disk.")
    assert np.array_equal(review.session.project.committed_mask(review.session.stem(0)), saved)
    assert editing.editor_with_unsaved_edits is None and editing.editor.can_undo(0)
    drag(review, [(x, 50) for x in range(30, 60)])
    assert review.statusBar().message() == (
        "Not saved: disk full (simulated). The edited mask of frame 1 is kept in memory (your next change, or "
        "closing the sequence, saves it again); the files on disk are unchanged.")
    assert editing.editor_with_unsaved_edits is editing.editor and list(editing.editor.unsaved) == [0]
    refusing_writes.clear()  # the window's close at teardown saves it


def test_a_mask_saved_without_its_status_is_said_to_be_saved(review, refusing_status_writes):
    folder, stem = review.session.project.folder, review.session.stem(0)
    kept = _unsaved_stroke(review)  # the mask and its history step are written, review.json is not
    try:  # pytest-qt closes the window before fixtures are torn down: a failure here must not leave the refusal
        assert review.statusBar().message().endswith(
            "disk full (simulated). The edited mask of frame 1 is saved but not its status, which stays "
            "unreviewed (your next change, or closing the sequence, saves it again).")
        status, mask = _on_disk(folder, stem)
        assert status is ReviewStatus.UNREVIEWED and np.array_equal(mask, kept)
        assert len(ReviewProject.open(folder).history(stem)) == 1

        review.review_tools.set_status(ReviewStatus.REJECTED)
        assert review.statusBar().message().endswith(
            "disk full (simulated). The mask shown on frame 1 is saved but not its status, which stays unreviewed.")
        assert _on_disk(folder, stem)[0] is ReviewStatus.UNREVIEWED
    finally:
        refusing_status_writes.clear()
    assert review.close()  # saves the status the edit would have set
    status, mask = _on_disk(folder, stem)
    assert status is ReviewStatus.CORRECTED and np.array_equal(mask, kept)


def test_a_sequence_that_cannot_be_opened_leaves_the_unsaved_edits_alone(review, refusing_writes, tmp_path,
                                                                        monkeypatch):
    session = review.session
    kept = _unsaved_stroke(review)
    asked = []
    monkeypatch.setattr(review.review_tools, "_ask_about_unsaved_edits",
                        lambda *args: asked.append(args) or QtWidgets.QMessageBox.Discard)
    try:
        assert not review.open_path(tmp_path / "no such folder")
        assert "no such folder" in review.messages[-1]  # "Cannot open"
        assert not asked and review.session is session  # nothing was asked, so nothing could be discarded
        assert np.array_equal(review.review_tools.editing.editor.unsaved[0], kept)
    finally:
        refusing_writes.clear()  # the window's close at teardown saves it


def test_a_check_box_clicked_with_the_mouse_leaves_space_to_accept_the_frame(review, qtbot):
    review.activateWindow()
    qtbot.waitUntil(review.isActiveWindow, timeout=5000)
    edges = review.overlay_panel.toggles["edges"]
    review.frame_view.graphics.setFocus()
    qtbot.mouseClick(edges, QtCore.Qt.LeftButton, pos=QtCore.QPoint(8, edges.height() // 2))
    assert edges.isChecked()
    qtbot.keyClick(review.windowHandle(), QtCore.Qt.Key_Space)
    assert edges.isChecked() and review.session.status(0) is ReviewStatus.ACCEPTED and review.index == 1

    # from the keyboard, Tab onto the box: Space ticks it and accepts nothing
    _tab_onto(review, qtbot, edges)
    qtbot.keyClick(review.windowHandle(), QtCore.Qt.Key_Space)
    assert not edges.isChecked() and review.session.status(1) is ReviewStatus.UNREVIEWED and review.index == 1


def _tab_onto(window, qtbot, control: QtWidgets.QWidget) -> None:
    """Give the focus to the control before `control` in the Tab chain, then press Tab, as a keyboard user does."""
    before = control.previousInFocusChain()
    while not (before.focusPolicy() & QtCore.Qt.TabFocus and before.isVisible() and before.isEnabled()):
        before = before.previousInFocusChain()
    before.setFocus(QtCore.Qt.TabFocusReason)
    qtbot.waitUntil(before.hasFocus, timeout=2000)
    qtbot.keyClick(window.windowHandle(), QtCore.Qt.Key_Tab)
    qtbot.waitUntil(control.hasFocus, timeout=2000)


def _pick_with_the_mouse(qtbot, combo: QtWidgets.QComboBox, row: int) -> None:
    """Click `combo` and then its item `row` in the list that opens, as the analyst picks one."""
    qtbot.mouseClick(combo, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activePopupWidget() is not None, timeout=2000)
    qtbot.wait(QtWidgets.QApplication.doubleClickInterval() + 50)  # the list ignores a release sooner than that
    view = combo.view()
    qtbot.mouseClick(view.viewport(), QtCore.Qt.LeftButton, pos=view.visualRect(view.model().index(row, 0)).center())
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activePopupWidget() is None, timeout=2000)
    assert combo.currentIndex() == row


def _review_keys_act_on_the_frame(window, qtbot, target) -> None:
    """D, A, R, C and Space, sent to `target` (a window handle), step, mark and accept the shown frame."""
    i = window.index
    qtbot.keyClick(target, QtCore.Qt.Key_D)
    assert window.index == i + 1
    qtbot.keyClick(target, QtCore.Qt.Key_A)
    assert window.index == i
    qtbot.keyClick(target, QtCore.Qt.Key_R)
    assert window.session.status(i) is ReviewStatus.REJECTED
    qtbot.keyClick(target, QtCore.Qt.Key_C)
    assert window.session.status(i) is ReviewStatus.CORRECTED
    qtbot.keyClick(target, QtCore.Qt.Key_Space)
    assert window.session.status(i) is ReviewStatus.ACCEPTED and window.index != i


def test_a_combo_box_picked_with_the_mouse_leaves_the_review_keys_to_the_frame(review, qtbot):
    review.activateWindow()
    qtbot.waitUntil(review.isActiveWindow, timeout=5000)
    panel = review.review_tools.review_panel
    detector = review.detection_panel.detector_combo
    for combo, row in ((review.palette_combo, 2), (panel.sort_combo, 1), (panel.status_filter, 0),
                       (detector, detector.currentIndex())):  # the same detector: nothing to load
        review.frame_view.graphics.setFocus()
        _pick_with_the_mouse(qtbot, combo, row)
        text = combo.currentText()
        _review_keys_act_on_the_frame(review, qtbot, review.windowHandle())
        assert combo.currentText() == text and not combo.hasFocus()  # D did not switch the sort to "detections"


def test_a_combo_box_reached_with_tab_takes_letters_and_space(review, qtbot):
    review.activateWindow()
    qtbot.waitUntil(review.isActiveWindow, timeout=5000)
    combo = review.review_tools.review_panel.sort_combo
    _tab_onto(review, qtbot, combo)
    qtbot.keyClick(review.windowHandle(), QtCore.Qt.Key_D)
    assert combo.currentText() == "detections" and review.index == 0
    qtbot.keyClick(review.windowHandle(), QtCore.Qt.Key_Space)
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activePopupWidget() is not None, timeout=2000)
    QtWidgets.QApplication.activePopupWidget().close()
    assert review.session.status(0) is ReviewStatus.UNREVIEWED and review.index == 0


def test_the_floating_features_dock_clicked_on_passes_the_review_keys(review, qtbot):
    dock = review.features_dock
    dock.show()
    qtbot.waitExposed(dock)
    dock.activateWindow()
    qtbot.waitUntil(dock.isActiveWindow, timeout=5000)
    follow = review.feature_panel.follow
    qtbot.mouseClick(follow, QtCore.Qt.LeftButton, pos=QtCore.QPoint(8, follow.height() // 2))
    _review_keys_act_on_the_frame(review, qtbot, dock.windowHandle())


def test_a_dock_added_after_the_shortcuts_leaves_the_keys_to_the_frame_too(review, qtbot):
    combo = QtWidgets.QComboBox()
    combo.addItems(["one", "two", "three"])
    dock = QtWidgets.QDockWidget("Added later", review)
    dock.setWidget(combo)
    review.addDockWidget(QtCore.Qt.RightDockWidgetArea, dock)
    qtbot.waitUntil(combo.isVisible, timeout=2000)
    assert combo.focusPolicy() == QtCore.Qt.TabFocus
    review.activateWindow()
    qtbot.waitUntil(review.isActiveWindow, timeout=5000)
    review.frame_view.graphics.setFocus()
    _pick_with_the_mouse(qtbot, combo, 1)
    _review_keys_act_on_the_frame(review, qtbot, review.windowHandle())


def test_closing_with_only_a_status_unsaved_says_so_and_what_discard_leaves(review, refusing_status_writes, qtbot):
    folder, stem = review.session.project.folder, review.session.stem(0)
    kept = _unsaved_stroke(review)  # the mask and its history step are written, review.json is not
    try:
        shown = _answer_dialogs(qtbot, [("Save again", None), ("Discard", None)])
        assert review.close()
    finally:
        refusing_status_writes.clear()
    assert len(shown) == 2
    assert shown[0].startswith("The status of frame 1 is still not saved: ") and "disk full (simulated)" in shown[0]
    assert "The edited mask of frame 1 is saved." in shown[0] and "edited mask of frame 1 is still" not in shown[0]
    assert ("Discard keeps the saved mask of frame 1 but leaves it unreviewed: mark it Corrected once the project "
            "can be written; Cancel keeps this sequence open.") in shown[0]
    status, mask = _on_disk(folder, stem)  # as the box said
    assert status is ReviewStatus.UNREVIEWED and np.array_equal(mask, kept)


def test_an_undo_whose_status_cannot_be_saved_changes_nothing_and_a_redo_is_shown_and_said_as_one(
        review, refusing_status_writes):
    """Crash audit 24: such an undo removed the committed mask but left the frame corrected (export then skipped it),
    the window kept drawing the removed mask, and it said "the edited mask of frame 1 is saved", where none was."""
    project, stem = review.session.project, review.session.stem(0)
    refusing_status_writes.clear()
    review.review_tools.palette.brush_size.setValue(3)
    review.review_tools.palette.set_tool(Tool.BRUSH)
    drag(review, [(x, 40) for x in range(30, 60)])  # the frame's first edit, saved with its status
    edited = project.committed_mask(stem).copy()
    assert review.session.status(0) is ReviewStatus.CORRECTED
    editing = review.review_tools.editing
    refusing_status_writes.add(True)
    try:
        editing.undo()
        assert review.statusBar().message().endswith(
            "disk full (simulated). Frame 1 is as it was, on screen and on disk.")
        assert review.session.status(0) is ReviewStatus.CORRECTED
        assert np.array_equal(project.committed_mask(stem), edited) and editing.editor.can_undo(0)
        refusing_status_writes.clear()
        editing.undo()
        assert review.session.status(0) is ReviewStatus.UNREVIEWED and project.committed_mask(stem) is None
        refusing_status_writes.add(True)
        editing.redo()
        assert review.statusBar().message().endswith(
            "disk full (simulated). The redo on frame 1 is saved (its mask) but not its status change: the frame "
            "stays unreviewed.")
        assert np.array_equal(project.committed_mask(stem), edited)
        assert np.array_equal(review.frame_view.layers.committed, edited)  # shown as on disk
    finally:
        refusing_status_writes.clear()


def test_undo_waits_while_the_frame_holds_an_edit_not_saved(review, refusing_writes):
    """Crash audit 24: Ctrl+Z stepped the saved history back while the window kept showing (and at close saved again)
    the edit not saved yet, so the undo was silently reverted and its redo step lost."""
    project, stem = review.session.project, review.session.stem(0)
    refusing_writes.clear()
    review.review_tools.palette.brush_size.setValue(3)
    review.review_tools.palette.set_tool(Tool.BRUSH)
    drag(review, [(x, 40) for x in range(30, 60)])  # saved
    saved = project.committed_mask(stem).copy()
    refusing_writes.add(True)
    drag(review, [(x, 50) for x in range(30, 60)])  # kept in memory
    editing = review.review_tools.editing
    editing.undo()
    assert "holds an edit that is not saved yet: undo waits until it is" in review.statusBar().message()
    assert np.array_equal(project.committed_mask(stem), saved) and len(project.history(stem)) == 1
    assert list(editing.editor.unsaved) == [0]
    refusing_writes.clear()  # the window's close at teardown saves it
