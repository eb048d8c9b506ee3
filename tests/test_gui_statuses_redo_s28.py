"""Session 28 fixes in the window (real widgets and files, under Xvfb): a change over a status another window set
since the window looked is refused, said, and their status shown at once; a redo over a proposal detected again is
refused and said."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.core.project import ReviewProject, ReviewStatus
from app.session import STATUS_CODES
from app.widgets.timeline import STATUS_COLORS
from model.detectors import FrameResult

pytestmark = pytest.mark.gui

SET_ELSEWHERE = ("Frame 1: its status changed on disk since it was shown (another window on this project marked it "
                 "rejected): shown now as it is; check it, then do it again.")


def _strip_status(window, index: int) -> tuple[int, ...]:
    return tuple(int(v) for v in window.timeline.strip._pixels[1, index])


def _status_on_disk(window, index: int) -> str:
    document = json.loads((window.session.project_dir / "review.json").read_text())
    return document["frames"][window.session.stem(index)]["status"]


def test_a_status_key_over_a_status_another_window_set_is_refused_and_theirs_shown(review, qtbot):
    session = review.session
    ReviewProject.open(session.project_dir).set_status(session.stem(0), "rejected")  # the window has not looked
    assert not review.review_tools.set_status(ReviewStatus.NEGATIVE)
    assert review.statusBar().message() == SET_ELSEWHERE
    assert _status_on_disk(review, 0) == "rejected"
    assert _strip_status(review, 0) == STATUS_COLORS[STATUS_CODES[ReviewStatus.REJECTED]]  # taken up at once
    assert "[rejected]" in review.frame_label.text()
    assert review.review_tools.review_panel.model.summaries[0].status is ReviewStatus.REJECTED
    review.take_up_disk_changes()  # the next look: nothing more to say, the refusal stays
    assert review.statusBar().message() == SET_ELSEWHERE

    assert review.review_tools.set_status(ReviewStatus.NEGATIVE)  # the analyst has seen theirs: set again
    assert _status_on_disk(review, 0) == "negative"


def test_an_edit_over_a_status_another_window_set_writes_no_mask(review, qtbot):
    session = review.session
    ReviewProject.open(session.project_dir).set_status(session.stem(0), "rejected")
    review.review_tools.editing.accept_all()  # Add all: it would commit the proposal and mark the frame corrected
    assert review.statusBar().message() == SET_ELSEWHERE
    assert session.project.committed_mask(session.stem(0)) is None and _status_on_disk(review, 0) == "rejected"
    assert "[rejected]" in review.frame_label.text()


def test_a_redo_over_a_proposal_detected_again_is_refused_and_said(review, qtbot):
    session = review.session
    stem = session.stem(0)
    proposal = session.project.prediction_mask(stem)
    ys, xs = np.nonzero(proposal)
    y, x = int(ys[0]), int(xs[0])  # a pixel of a proposed target
    editing = review.review_tools.editing
    assert editing.editor.paint(0, [(x, y)], 3, erase=True)
    review.show_frame(0)  # as the window does after an edit of its tools
    editing.undo()
    assert session.project.committed_mask(stem) is None
    moved = np.roll(proposal, 2, axis=1)  # detected again, two pixels to the right
    session.project.save_prediction(stem, FrameResult(np.where(moved, 5.0, -5.0).astype(np.float32)))
    session.record_result(0)
    review.show_frame(0)
    editing.redo()
    assert review.statusBar().message().startswith(f"Frame 1 ({stem}): redo refused: where the edit would change it, "
                                                   "the mask shown is no longer the one the edit was undone from")
    assert session.project.committed_mask(stem) is None and session.status(0) is ReviewStatus.UNREVIEWED
    assert np.array_equal(review.layers.prediction, moved)
