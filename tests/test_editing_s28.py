"""FrameEditor.set_status (Qt-free): Corrected on a frame with nothing to correct (GUI audit 28, finding 1).

C on a frame never detected committed an all-zero mask and marked the frame corrected, and that empty committed
mask then let Accept through: the frame exported "no target" where nobody had looked for one."""
import numpy as np
import pytest

from app.core.project import ReviewStatus
from app.editing import EditRefused, FrameEditor
from app.session import ReviewSession
from model.detectors import FrameResult
from tests.test_frames import write_folder
from tests.test_session import proposal_of_one_target


@pytest.fixture
def session(tmp_path):
    write_folder(tmp_path / "seq", n=3, names=["00.png", "01.png", "02.png"])
    session = ReviewSession.open(tmp_path / "seq")
    yield session
    session.close()


def test_corrected_on_a_frame_never_detected_is_refused_and_writes_nothing(session):
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    session.record_result(0)
    editor = FrameEditor(session)
    with pytest.raises(EditRefused) as refused:
        editor.set_status(1, ReviewStatus.CORRECTED)
    assert str(refused.value) == ("Frame 2 has no proposal to mark corrected yet: detect it, draw its targets, or "
                                  "mark it Negative.")
    assert not project.has_committed_mask("01") and session.status(1) is ReviewStatus.UNREVIEWED
    with pytest.raises(EditRefused, match="Frame 2 has no proposal to accept yet"):
        editor.set_status(1, ReviewStatus.ACCEPTED)
    editor.set_status(1, ReviewStatus.NEGATIVE)  # how the analyst says the frame has no target
    assert session.status(1) is ReviewStatus.NEGATIVE


def test_corrected_commits_what_a_frame_shows_once_it_has_a_proposal_or_targets_drawn(session):
    project = session.ensure_project()
    project.save_prediction("00", FrameResult(np.full((24, 32), -5.0, np.float32)))
    session.record_result(0)  # detected: no target found, which is a proposal too
    editor = FrameEditor(session)
    editor.set_status(0, ReviewStatus.CORRECTED)
    assert project.has_committed_mask("00") and not project.committed_mask("00").any()
    assert editor.paint(1, [(5, 5), (9, 5)], 1)  # drawn on a frame never detected
    drawn = project.committed_mask("01").copy()
    editor.set_status(1, ReviewStatus.REJECTED)
    editor.set_status(1, ReviewStatus.CORRECTED)
    assert np.array_equal(project.committed_mask("01"), drawn)
    assert session.status(0) is session.status(1) is ReviewStatus.CORRECTED


def test_an_empty_mask_committed_by_c_on_a_frame_never_detected_does_not_let_accept_through(tmp_path):
    """What older versions left in a project: labels/01.png all background, the frame marked corrected."""
    write_folder(tmp_path / "seq", n=2, names=["00.png", "01.png"])
    earlier = ReviewSession.open(tmp_path / "seq")
    earlier.ensure_project().commit_mask("01", np.zeros((24, 32), bool))
    earlier.project.set_status("01", ReviewStatus.CORRECTED)
    earlier.close()
    session = ReviewSession.open(tmp_path / "seq")
    assert session.project.has_committed_mask("01")
    editor = FrameEditor(session)
    for status, verb in ((ReviewStatus.ACCEPTED, "accept"), (ReviewStatus.CORRECTED, "mark corrected")):
        with pytest.raises(EditRefused, match=f"Frame 2 has no proposal to {verb} yet"):
            editor.set_status(1, status)
    assert session.status(1) is ReviewStatus.CORRECTED
    editor.set_status(1, ReviewStatus.NEGATIVE)
    assert session.status(1) is ReviewStatus.NEGATIVE
    session.close()
