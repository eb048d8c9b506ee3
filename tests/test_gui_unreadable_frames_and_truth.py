"""The window on a ground-truth mask of another size than its frame, and on a frame unreadable for a while."""
from __future__ import annotations

import cv2
import pytest

from app.core.project import ReviewStatus
from tests.gui_review_helpers import open_project, predict_ground_truth

pytestmark = pytest.mark.gui


def _settle(window, qtbot, index: int) -> None:
    """Show frame `index` as the timeline does, and wait for the panels that follow it."""
    window.timeline.go_to(index)
    qtbot.waitUntil(lambda: window.index == index and not window.panels_timer.isActive(), timeout=5000)


def test_a_truth_mask_of_another_size_is_neither_drawn_nor_scored_and_the_status_bar_says_why(window, fresh_sequence,
                                                                                               qtbot):
    predict_ground_truth(fresh_sequence, frames=[0, 1])  # proposals equal to the truth: IoU 1.00 where it is used
    mask_file = fresh_sequence / "masks" / "000002.png"
    mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(mask_file), cv2.resize(mask, (64, 48), interpolation=cv2.INTER_NEAREST))  # the frame is 128x96
    open_project(window, qtbot, fresh_sequence)
    truth_ring = window.frame_view.layer_items["truth"]

    with qtbot.captureExceptions() as exceptions:
        _settle(window, qtbot, 0)
        scores = window.metrics_label.text()
        assert scores == "IoU 1.00  Pd 1.00" and truth_ring.isVisible()
        _settle(window, qtbot, 1)
    assert not exceptions  # (the panels stopped at a broadcast error before)

    assert window.layers.truth_mask is None and not truth_ring.isVisible()
    assert window.metrics_label.text() == ""  # not frame 1's scores, nor scores against a half-size mask
    message = window.statusBar().message()
    assert message == "Ground truth 000002.png: mask 64x48 differs from the frame's 128x96; not used"
    assert window.review_tools.review_panel.table.currentIndex().row() == \
        window.review_tools.review_panel.model.row_of(1)  # the panels after the scores followed too


def test_a_frame_unreadable_while_its_folder_was_away_reads_again_once_it_is_back(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence, frames=[7])
    open_project(window, qtbot, fresh_sequence)
    session, panel = window.session, window.review_tools.review_panel
    images = fresh_sequence / "images"
    _settle(window, qtbot, 0)
    session.source.forget([7])  # (in case it was read when the window picked the sequence's levels)
    images.rename(fresh_sequence / "away")  # the share drops
    try:
        _settle(window, qtbot, 7)
        assert window.frame is None and "unreadable (file not found)" in window.frame_label.text()
        assert not window.review_tools.set_status(ReviewStatus.ACCEPTED)
        assert window.statusBar().message() == "Frame 8 is unreadable: it can only be marked rejected."
        assert "unreadable 1" in panel.counts.text()
    finally:
        (fresh_sequence / "away").rename(images)  # and comes back

    _settle(window, qtbot, 6)
    _settle(window, qtbot, 7)
    assert window.frame is not None and "unreadable" not in window.frame_label.text()
    assert not session.is_unreadable(7) and session.detection_counts[7] >= 0
    window.take_up_disk_changes()  # what the window's look at the disk does every DISK_POLL_MS
    assert "unreadable" not in panel.counts.text()
    assert "changed by another" not in window.statusBar().message()
    assert window.review_tools.set_status(ReviewStatus.ACCEPTED)
    assert session.status(7) is ReviewStatus.ACCEPTED


def test_a_detection_run_reads_a_frame_again_once_its_folder_is_back(window, fresh_sequence, qtbot):
    open_project(window, qtbot, fresh_sequence)
    session = window.session
    images = fresh_sequence / "images"
    session.source.forget([9])  # (read when the window picked the sequence's levels)
    images.rename(fresh_sequence / "away")
    try:
        _settle(window, qtbot, 9)
        assert session.is_unreadable(9)
    finally:
        (fresh_sequence / "away").rename(images)
    _settle(window, qtbot, 0)
    panel = window.detection_panel
    panel.detector_combo.setCurrentIndex(next(i for i in range(panel.detector_combo.count())
                                              if getattr(panel.detector_combo.itemData(i), "method", None) == "mpcm"))
    panel.choiceChanged.emit(panel.choice())
    assert window.start_detection([9]) is None
    qtbot.waitUntil(lambda: not window.detection_runner.busy and panel.run_all.isEnabled(), timeout=30000)
    assert session.detection_counts[9] >= 0 and not session.is_unreadable(9)


def test_commit_ground_truth_masks_names_an_interpolated_mask_it_does_not_commit(window, fresh_sequence, qtbot):
    from PySide6 import QtGui

    mask_file = fresh_sequence / "masks" / "000003.png"
    mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
    blurred = cv2.GaussianBlur(mask, (9, 9), 3.0)
    blurred[blurred == 255] = 254  # blurred, or saved as JPEG: no pixel at full value
    cv2.imwrite(str(mask_file), blurred)
    open_project(window, qtbot, fresh_sequence)
    action = next(a for a in window.menuBar().findChildren(QtGui.QAction) if a.text() == "Commit &ground-truth masks")
    action.trigger()
    qtbot.waitUntil(lambda: not window.review_tools.writing, timeout=30000)
    assert len(window.messages) == 1 and "Ground truth: 59 masks committed, 1 mask refused" in window.messages[0]
    assert (
        f"000003: all its {int((blurred > 0).sum())} nonzero pixels are strictly between 0 and 255 (interpolated "
        "or coloured mask?): none is target, so it would commit an empty mask") in window.messages[0]
    assert not window.session.project.has_committed_mask("000003")


def test_the_window_says_when_its_sequences_folder_goes_and_when_it_is_back(window, fresh_sequence, qtbot):
    """With the folder moved away, uncached frames read "file not found" one by one and nothing said why."""
    open_project(window, qtbot, fresh_sequence)
    away = fresh_sequence.with_name("away")
    window.take_up_disk_changes()
    assert "is gone" not in window.statusBar().message()
    fresh_sequence.rename(away)
    try:
        window.take_up_disk_changes()
        message = window.statusBar().message()
        assert "is gone (moved, deleted, or its drive dropped)" in message and fresh_sequence.name in message
        window.statusBar().clearMessage()
        window.take_up_disk_changes()  # said once, not at every look
        assert window.statusBar().message() == ""
    finally:
        away.rename(fresh_sequence)
    window.take_up_disk_changes()
    assert "is back" in window.statusBar().message()
