"""The window follows what other instances write into its project (another window, an `irsam detect` run), with
no action of the analyst: the timeline, the queue and the frame shown (real widgets and files, under Xvfb)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from app.core.project import ReviewProject, ReviewStatus
from app.session import STATUS_CODES
from app.widgets.timeline import HAS_TARGET, NO_TARGET, STATUS_COLORS
from model.detectors import FrameResult

pytestmark = pytest.mark.gui


def _strip(window, row: int, index: int) -> tuple[int, ...]:
    return tuple(int(v) for v in window.timeline.strip._pixels[row, index])


@pytest.mark.disk_poll
def test_another_windows_review_and_a_detect_runs_proposals_show_up_by_themselves(review, qtbot):
    session = review.session
    shape = session.frame(0).shape
    other = ReviewProject.open(session.project_dir)
    label = np.zeros(shape, bool)
    label[10:20, 30:44] = True
    other.commit_mask(session.stem(0), label)  # the frame shown
    other.set_status(session.stem(0), "corrected")
    other.set_status(session.stem(7), "rejected")
    other.save_prediction(session.stem(9), FrameResult(np.full(shape, -3.0, np.float32)))  # found nothing now
    other.flush_detections()
    assert _strip(review, 0, 9) == HAS_TARGET  # the ground truth proposed before
    qtbot.waitUntil(lambda: _strip(review, 1, 7) == STATUS_COLORS[STATUS_CODES[ReviewStatus.REJECTED]],
                    timeout=15000)  # the poll stretches to 3 x DISK_POLL_MS when a look is slow
    assert _strip(review, 1, 0) == STATUS_COLORS[STATUS_CODES[ReviewStatus.CORRECTED]]
    assert _strip(review, 0, 9) == NO_TARGET
    summaries = review.review_tools.review_panel.model.summaries
    assert (summaries[0].status, summaries[7].status) == (ReviewStatus.CORRECTED, ReviewStatus.REJECTED)
    assert summaries[9].n_detections == 0
    assert np.array_equal(review.layers.committed, label)  # the frame shown was shown again
    assert "[corrected]" in review.frame_label.text()
    assert "Frame 1: status and committed mask changed by another" in review.statusBar().message()


def test_the_frame_shown_waits_for_a_held_stroke_to_end(review, qtbot):
    session = review.session
    label = np.zeros(session.frame(0).shape, bool)
    label[2:5, 2:5] = True
    review.review_tools.editing.stroke = [(50.0, 40.0)]  # the button is held
    ReviewProject.open(session.project_dir).commit_mask(session.stem(0), label)
    review.take_up_disk_changes()
    assert review.layers.committed is None  # the stroke's frame is not replaced under the brush
    review.review_tools.editing.stroke = []
    review.statusBar().clearMessage()
    review.take_up_disk_changes()
    assert np.array_equal(review.layers.committed, label)
    assert review.statusBar().message().startswith("Frame 1: committed mask changed by another window")


def test_a_committed_mask_changed_with_its_overlay_off_is_still_said(review, qtbot):
    review.overlay_panel.toggles["committed"].setChecked(False)  # so the layer is not read
    assert "committed" not in review._wanted_layers()
    session = review.session
    label = np.zeros(session.frame(0).shape, bool)
    label[2:5, 2:5] = True
    ReviewProject.open(session.project_dir).commit_mask(session.stem(0), label)
    review.statusBar().clearMessage()
    review.take_up_disk_changes()
    assert review.statusBar().message().startswith("Frame 1: committed mask changed by another window")


def test_a_file_written_again_with_what_it_held_is_not_news(review, qtbot):
    session = review.session
    other = ReviewProject.open(session.project_dir)
    other.commit_mask(session.stem(0), review.layers.prediction)  # the proposal shown, committed as it is
    review.statusBar().clearMessage()
    review.take_up_disk_changes()
    assert np.array_equal(review.layers.committed, review.layers.prediction)
    assert "Frame 1: committed mask changed" in review.statusBar().message()
    other.commit_mask(session.stem(0), review.layers.prediction)  # again: the same pixels
    review.statusBar().clearMessage()
    review.take_up_disk_changes()
    assert review.statusBar().message() == ""


def test_the_queue_is_summarised_once_a_runs_proposals_are_all_counted(review, qtbot, monkeypatch):
    """Summarising the queue reads every proposal not counted yet: while a fast run's proposals are counted a few
    dozen a look, the queue waits for the last of them (it once read hundreds at once on the GUI thread)."""
    from app.session import COUNTS_PER_LOOK

    session, summarised = review.session, []
    monkeypatch.setattr(review.review_tools, "refresh_queue", lambda: summarised.append(session.counts_pending))
    run = ReviewProject.open(session.project_dir)
    empty = FrameResult(np.full(session.frame(0).shape, -3.0, np.float32))
    for index in range(COUNTS_PER_LOOK + 5):
        run.save_prediction(session.stem(index), empty)
    time.sleep(0.2)  # past the file system's clock tick
    review.take_up_disk_changes()
    assert session.counts_pending == 5 and summarised == []
    review.take_up_disk_changes()
    assert session.counts_pending == 0 and summarised == [0]
    assert list(session.detection_counts[:COUNTS_PER_LOOK + 5]) == [0] * (COUNTS_PER_LOOK + 5)


def test_a_write_moved_beside_another_instances_project_is_said(window, fresh_sequence, qtbot):
    from tests.gui_review_helpers import open_project

    open_project(window, qtbot, fresh_sequence)
    session = window.session
    ReviewProject.create(session.project_dir, fresh_sequence / "elsewhere", "folder", ["a", "b"], (24, 32),
                         {"mode": "window", "low": 0, "high": 255})  # another clip's, made since the window opened
    assert window.review_tools.set_status(ReviewStatus.REJECTED)
    window.take_up_disk_changes()
    assert "holds a project over other frames: this sequence's work goes to a new folder beside it" in \
        window.statusBar().message()
    assert session.project_dir.name.endswith("-new")


def test_accepting_or_editing_a_frame_whose_proposal_was_replaced_unseen_shows_it_first(review, qtbot):
    """An `irsam detect` run replaced the shown frame's proposal before the window's next look: Accept then said
    the new proposal, never seen, was right (and exported it), and a brush stroke was drawn over it."""
    session, tools = review.session, review.review_tools
    shown = review.layers.prediction.copy()
    replacement = np.zeros(shown.shape, bool)
    replacement[5:9, 5:9] = True  # not what is shown
    other = ReviewProject.open(session.project_dir)
    other.save_prediction(session.stem(0), FrameResult(np.where(replacement, 4.0, -4.0).astype(np.float32)))
    assert not tools.set_status(ReviewStatus.ACCEPTED)
    assert session.status(0) is ReviewStatus.UNREVIEWED
    assert np.array_equal(review.layers.prediction, replacement)  # shown now
    assert review.statusBar().message() == (
        "Frame 1: its proposal changed on disk since it was shown (another window or an irsam command): shown now "
        "as it is; check it, then do it again.")
    assert tools.set_status(ReviewStatus.ACCEPTED)  # seen now
    assert session.status(0) is ReviewStatus.ACCEPTED

    other.save_prediction(session.stem(1), FrameResult(np.where(shown, 4.0, -4.0).astype(np.float32)))
    review.timeline.go_to(1)
    before = review.layers.prediction.copy()
    other.save_prediction(session.stem(1), FrameResult(np.where(replacement, 4.0, -4.0).astype(np.float32)))
    stroke = lambda editor, index: editor.paint(index, [(40.5, 30.5)], size=3)  # noqa: E731
    assert not tools.editing._run(stroke)
    assert session.project.committed_mask(session.stem(1)) is None and not before[30, 40]
    assert np.array_equal(review.layers.prediction, replacement)
    assert tools.editing._run(stroke)
    committed = session.project.committed_mask(session.stem(1))
    assert committed[5:9, 5:9].all() and committed[30, 40] and committed.sum() == 16 + 9

    other.save_prediction(session.stem(1), FrameResult(np.where(replacement, 4.0, -4.0).astype(np.float32)))
    other.commit_mask(session.stem(1), committed)  # written again as it is: nothing new to see
    assert tools.set_status(ReviewStatus.CORRECTED)
