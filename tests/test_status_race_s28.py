"""Review of session 28's status guard (Qt-free): a window with no project yet does not write over the status and mask
another window set meanwhile in the project it created, nor draws over a proposal or committed mask it never showed
there (frames the other window did not touch edit as before); a refusal after Mark Corrected promises no undo it does
not have."""
import json
from pathlib import Path

import numpy as np
import pytest

from app.core.project import ReviewProject, ReviewStatus
from app.editing import EditRefused, FrameEditor
from app.session import ReviewSession
from tests.test_frames import write_folder
from tests.test_session import proposal_of_one_target

SET_ELSEWHERE = ("Frame 1: its status changed on disk since it was shown (another window on this project marked it "
                 "{}): shown now as it is; check it, then do it again.")


@pytest.fixture
def two_windows(tmp_path):
    """Two sessions opened on one folder before either made its project."""
    write_folder(tmp_path / "seq", n=2, names=["00.png", "01.png"])
    window, other = ReviewSession.open(tmp_path / "seq"), ReviewSession.open(tmp_path / "seq")
    yield window, other
    window.close()
    other.close()


def _review_on_disk(folder: Path) -> dict[str, str]:
    document = json.loads((folder / "review.json").read_text())
    return {stem: entry["status"] for stem, entry in document["frames"].items()}


def test_a_status_set_by_a_window_without_a_project_yet_is_refused_over_the_status_another_window_set(two_windows):
    window, other = two_windows
    FrameEditor(other).set_status(0, ReviewStatus.REJECTED)  # the other window makes the project and marks frame 1
    assert window.project is None and window.statuses()[0] is ReviewStatus.UNREVIEWED  # the window has not looked
    taken_up = []
    window.on_status_taken_up = taken_up.append
    editor = FrameEditor(window)
    with pytest.raises(EditRefused) as refused:
        editor.set_status(0, ReviewStatus.NEGATIVE)
    assert str(refused.value) == SET_ELSEWHERE.format("rejected")
    assert _review_on_disk(other.project_dir) == {"00": "rejected"}
    assert window.project_dir == other.project_dir  # their project taken up, not a second one made
    assert taken_up == [0] and window.statuses()[0] is ReviewStatus.REJECTED

    editor.set_status(0, ReviewStatus.NEGATIVE)  # the analyst has seen theirs: set again
    assert _review_on_disk(other.project_dir) == {"00": "negative"}


def test_an_edit_by_a_window_without_a_project_yet_is_refused_over_the_mask_and_status_another_window_set(two_windows):
    window, other = two_windows
    theirs = FrameEditor(other)
    assert theirs.paint(0, [(5, 5)], 3)
    theirs.set_status(0, ReviewStatus.ACCEPTED)
    their_mask = other.project.committed_mask("00")
    with pytest.raises(EditRefused) as refused:
        FrameEditor(window).paint(0, [(20, 20)], 3)
    assert str(refused.value) == SET_ELSEWHERE.format("accepted")
    assert _review_on_disk(other.project_dir) == {"00": "accepted"}
    reopened = ReviewProject.open(other.project_dir)
    np.testing.assert_array_equal(reopened.committed_mask("00"), their_mask)
    assert window.statuses()[0] is ReviewStatus.ACCEPTED


def test_a_window_without_a_project_yet_edits_a_frame_whose_status_another_window_left_alone(two_windows):
    """Their project is taken up as before where the frame shows the status it has there."""
    window, other = two_windows
    FrameEditor(other).set_status(1, ReviewStatus.REJECTED)  # another frame
    editor = FrameEditor(window)
    assert editor.paint(0, [(20, 20)], 1)
    assert _review_on_disk(other.project_dir) == {"00": "corrected", "01": "rejected"}
    assert window.statuses()[:2] == [ReviewStatus.CORRECTED, ReviewStatus.REJECTED]
    FrameEditor(other).set_status(1, ReviewStatus.NEGATIVE)
    window.refresh_from_disk()
    editor.set_status(1, ReviewStatus.REJECTED)  # shown by the window's look: set over it
    assert _review_on_disk(other.project_dir) == {"00": "corrected", "01": "rejected"}


def test_the_refusal_after_mark_corrected_says_the_mask_shown_was_committed_without_promising_an_undo(tmp_path):
    """C commits the proposal shown as the frame's mask with no undo step; another window sets the frame's status in
    the moment between that commit and C's status write."""
    write_folder(tmp_path / "seq", n=2, names=["00.png", "01.png"])
    window = ReviewSession.open(tmp_path / "seq")
    project = window.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    window.record_result(0)
    other = ReviewProject.open(project.folder)
    commit_edit = project.commit_edit

    def commit_then_other_sets(stem, *args, **kwargs):
        committed = commit_edit(stem, *args, **kwargs)
        other.set_status(stem, "rejected")
        return committed

    project.commit_edit = commit_then_other_sets
    editor = FrameEditor(window)
    with pytest.raises(EditRefused) as refused:
        editor.set_status(0, ReviewStatus.CORRECTED)
    window.close()
    assert str(refused.value) == ("Frame 1: its status changed on disk since it was shown (another window on this "
                                  "project marked it rejected): shown now as it is, with the mask it showed saved as "
                                  "its committed mask; check it, then set its status.")
    assert project.has_committed_mask("00") and not editor.can_undo(0)
    assert _review_on_disk(project.folder) == {"00": "rejected"}


# --- the proposal or committed mask another window wrote in the project it created ---------------------------------

NOT_SHOWN = ("Frame 1: its {} changed on disk since it was shown (another window or an irsam command): shown now as it "
             "is; check it, then do it again.")


def test_an_edit_over_a_proposal_another_window_made_meanwhile_is_refused_and_the_frame_shown(two_windows):
    window, other = two_windows
    other.ensure_project().save_prediction("00", proposal_of_one_target())  # the other window's detection
    proposal = other.project.prediction_mask("00")
    assert window.project is None and window.layers(0, {"prediction"}).prediction is None  # what the window shows
    taken_up = []
    window.on_status_taken_up = taken_up.append
    editor = FrameEditor(window)
    with pytest.raises(EditRefused) as refusal:
        editor.paint(0, [(20, 20)], 1)
    assert str(refusal.value) == NOT_SHOWN.format("proposal")
    assert taken_up == [0]  # the window shows the frame as it is on disk
    assert not window.project.has_committed_mask("00") and window.status(0) is ReviewStatus.UNREVIEWED
    assert np.array_equal(window.project.prediction_mask("00"), proposal)
    assert np.array_equal(window.layers(0, {"prediction"}).prediction, proposal)
    # done again, on the proposal now shown, the edit keeps it
    assert editor.paint(0, [(20, 20)], 1)
    committed = window.project.committed_mask("00")
    assert committed[20, 20] and (committed & proposal).sum() == proposal.sum()
    assert window.status(0) is ReviewStatus.CORRECTED


def test_an_edit_over_a_committed_mask_another_instance_wrote_meanwhile_is_refused(two_windows):
    window, other = two_windows
    project = other.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    committed = np.zeros_like(project.prediction_mask("00"))
    committed[5:8, 5:8] = True
    project.commit_mask("00", committed)  # (an import of labels: no status set)
    with pytest.raises(EditRefused) as refusal:
        FrameEditor(window).paint(0, [(20, 20)], 1)
    assert str(refusal.value) == NOT_SHOWN.format("proposal and committed mask")
    assert np.array_equal(window.project.committed_mask("00"), committed)
    assert window.project.history("00").can_undo is False


def test_a_frame_the_other_window_did_not_touch_edits_normally_after_the_project_is_taken_up(two_windows):
    window, other = two_windows
    other.ensure_project().save_prediction("00", proposal_of_one_target())
    editor = FrameEditor(window)
    assert editor.paint(1, [(20, 20)], 1)  # frame 2: no proposal or mask on disk, as the window showed it
    assert window.project.folder == other.project.folder  # taken up, not made again
    committed = window.project.committed_mask("01")
    assert committed.sum() == 1 and committed[20, 20] and window.status(1) is ReviewStatus.CORRECTED
    assert editor.undo(1) and not window.project.has_committed_mask("01")
    # frame 1, shown after the project was taken up (with its proposal), edits from what it shows
    proposal = window.layers(0, {"prediction"}).prediction
    assert proposal is not None and proposal.any()
    assert editor.paint(0, [(25, 15)], 1)
    assert (window.project.committed_mask("00") & proposal).sum() == proposal.sum()
