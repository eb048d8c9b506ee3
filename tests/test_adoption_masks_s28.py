"""Review of session 28's edit guards (Qt-free): a window with no project yet, whose edit takes up the project another
window made meanwhile, does not draw over the proposal or committed mask it never showed; frames the other window did
not touch edit as before."""
import numpy as np
import pytest

from app.core.project import ReviewStatus
from app.editing import EditRefused, FrameEditor
from app.session import ReviewSession
from tests.test_frames import write_folder
from tests.test_session import proposal_of_one_target

NOT_SHOWN = ("Frame 1: its {} changed on disk since it was shown (another window or an irsam command): shown now as it "
             "is; check it, then do it again.")


@pytest.fixture
def two_windows(tmp_path):
    """Two sessions opened on one folder before either made its project."""
    write_folder(tmp_path / "seq", n=2, names=["00.png", "01.png"])
    window, other = ReviewSession.open(tmp_path / "seq"), ReviewSession.open(tmp_path / "seq")
    yield window, other
    window.close()
    other.close()


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
