"""FrameEditor (Qt-free): what a tool call saves, and what it leaves alone."""
from pathlib import Path

import numpy as np
import pytest

import app.core.project as project_module
from app.core.project import ProjectWriteError, ReviewProject, ReviewStatus
from app.editing import EditRefused, FrameEditor, MaskNotUndone, StatusNotSaved
from model.detectors import FrameResult
from app.session import ReviewSession
from tests.test_frames import write_folder
from tests.test_session import proposal_of_one_target


@pytest.fixture
def session(tmp_path):
    write_folder(tmp_path / "seq", n=2, names=["00.png", "01.png"])
    session = ReviewSession.open(tmp_path / "seq")
    yield session
    session.close()


def _detected(session):
    """(project, proposal, editor) of a session whose frame "00" holds `proposal_of_one_target` as its proposal."""
    project = session.ensure_project()
    proposal = proposal_of_one_target()
    project.save_prediction("00", proposal)
    session.record_result(0)
    return project, proposal, FrameEditor(session)


def test_a_tool_call_that_changes_nothing_saves_nothing(session):
    """The eraser or Delete on empty sky, the brush or a fill over a target's own pixels: the frame stays
    unreviewed with its proposal uncommitted, and there is nothing to undo. Adding the proposal still
    commits it as it is."""
    proposal = proposal_of_one_target()  # the target covers rows 4-6, columns 5-8
    project = session.ensure_project()
    project.save_prediction("00", proposal)
    session.record_result(0)
    editor = FrameEditor(session)
    assert not editor.paint(0, [(20, 15)], 3, erase=True)
    assert not editor.delete_component(0, 20, 15)
    assert not editor.paint(0, [(6, 5), (7, 5)], 1)
    assert not editor.flood_fill(0, 6, 5)
    assert session.status(0) is ReviewStatus.UNREVIEWED
    assert project.committed_mask("00") is None and not editor.can_undo(0)
    assert not (project.folder / "history" / "00.npz").exists()

    assert editor.accept_all(0)
    np.testing.assert_array_equal(project.committed_mask("00"), proposal.logits > 0)
    assert session.status(0) is ReviewStatus.CORRECTED


def test_add_all_without_a_predicted_target_is_refused_and_saves_nothing(session):
    """"Add all" on a frame not detected yet committed an all-zero mask and marked the frame corrected: it left
    the unreviewed queue, and export wrote an empty mask over its real targets. An empty proposal likewise
    has nothing to add (Negative says "no target")."""
    editor = FrameEditor(session)
    with pytest.raises(EditRefused, match="Frame 2 has no proposal to add yet"):
        editor.accept_all(1)  # no project yet
    assert session.project is None and not session.project_dir.exists()
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    session.record_result(0)
    with pytest.raises(EditRefused, match="no proposal to add yet"):
        editor.accept_all(1)  # a project, but frame 01 not detected
    project.save_prediction("01", FrameResult(np.full((24, 32), -5, np.float32)))
    session.record_result(1)
    with pytest.raises(EditRefused, match="proposal has no target to add"):
        editor.accept_all(1)
    assert project.committed_mask("01") is None and session.status(1) is ReviewStatus.UNREVIEWED
    assert not editor.can_undo(1) and not (project.folder / "labels" / "01.png").exists()
    assert editor.accept_all(0)  # a frame with a predicted target still adds it
    assert session.status(0) is ReviewStatus.CORRECTED


def test_a_tool_call_that_changes_nothing_on_a_frame_never_detected_makes_no_project(session):
    editor = FrameEditor(session)
    assert not editor.paint(1, [(3, 3), (9, 3)], 2, erase=True)
    assert not editor.delete_component(1, 3, 3)
    assert session.project is None and session.status(1) is ReviewStatus.UNREVIEWED
    assert not session.project_dir.exists()


def fail_review_json_writes(monkeypatch) -> None:
    """Writes of review.json (and its backup) fail as on a full disk; the project's other files are written."""
    write_json = project_module.atomic_write_json

    def no_review_json(path, *args, **kwargs):
        if Path(path).name.startswith("review.json"):
            raise OSError(28, "No space left on device")
        return write_json(path, *args, **kwargs)

    monkeypatch.setattr(project_module, "atomic_write_json", no_review_json)


def test_a_mask_saved_whose_status_write_fails_says_the_mask_is_saved(session, monkeypatch):
    """The committed mask and its history step are written, then review.json cannot be: StatusNotSaved (a
    ProjectWriteError), not a plain ProjectWriteError that would mean nothing changed on disk."""
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    project.save_prediction("01", FrameResult(np.full((24, 32), -5, np.float32)))  # detected: no target
    session.record_result(0)
    session.record_result(1)
    fail_review_json_writes(monkeypatch)
    editor = FrameEditor(session)
    with pytest.raises(StatusNotSaved):
        editor.paint(0, [(20, 15)], 3)
    painted = editor.unsaved[0]
    assert np.array_equal(project.committed_mask("00"), painted) and len(project.history("00")) == 1
    with pytest.raises(StatusNotSaved):  # its mask is already the committed one: still saved, status not
        editor.set_status(0, ReviewStatus.REJECTED)
    with pytest.raises(StatusNotSaved):  # corrected commits the (empty) mask shown on frame 01
        editor.set_status(1, ReviewStatus.CORRECTED)
    assert project.committed_mask("01") is not None
    with pytest.raises(ProjectWriteError) as refused:  # nothing to commit: nothing saved
        editor.set_status(1, ReviewStatus.NEGATIVE)
    assert not isinstance(refused.value, StatusNotSaved)
    assert session.status(0) is session.status(1) is ReviewStatus.UNREVIEWED

    monkeypatch.undo()
    editor.set_status(0, ReviewStatus.CORRECTED)
    assert session.status(0) is ReviewStatus.CORRECTED and not editor.unsaved


def test_an_edit_on_a_negative_frame_starts_from_an_empty_mask_and_undo_gives_the_status_back(session):
    """GUI audit 17: a brush slip on a frame marked negative committed the whole proposal (its false alarms
    too) and marked it corrected; Ctrl+Z took back the painted pixel only, so the frame stayed corrected and
    export wrote the proposal."""
    project, proposal, editor = _detected(session)
    editor.set_status(0, ReviewStatus.NEGATIVE)
    assert not editor.working_mask(0).any()
    np.testing.assert_array_equal(project.shown_mask("00"), proposal.logits > 0)

    assert editor.paint(0, [(20, 15)], 1)
    committed = project.committed_mask("00")
    assert committed.sum() == 1 and committed[15, 20]  # the stroke alone, none of the proposal
    assert session.status(0) is ReviewStatus.CORRECTED

    assert editor.undo(0)
    # the frame as it was: negative over the proposal it showed (accepted now, it exports that proposal, not the
    # empty mask a slip and its undo left in GUI audit 18)
    assert session.status(0) is ReviewStatus.NEGATIVE
    np.testing.assert_array_equal(project.shown_mask("00"), proposal.logits > 0)
    assert editor.redo(0)
    assert session.status(0) is ReviewStatus.CORRECTED and project.committed_mask("00").sum() == 1

    # a negative frame with a committed mask: edits start from an empty mask too, and undo gives the mask back
    editor.set_status(0, ReviewStatus.NEGATIVE)
    assert editor.paint(0, [(2, 2)], 1)
    committed = project.committed_mask("00")
    assert committed.sum() == 1 and committed[2, 2]
    assert editor.undo(0)
    assert session.status(0) is ReviewStatus.NEGATIVE and project.committed_mask("00")[15, 20]
    assert project.committed_mask("00").sum() == 1


def test_undo_gives_back_the_status_of_an_unreviewed_or_rejected_frame_but_not_over_a_later_verdict(session):
    """A slip and its undo on an unreviewed (or rejected) frame left it corrected, so export took its proposal;
    a status the analyst set after the edit (an accept) stands."""
    project = session.ensure_project()
    for stem, index in (("00", 0), ("01", 1)):
        project.save_prediction(stem, proposal_of_one_target())
        session.record_result(index)
    editor = FrameEditor(session)
    editor.set_status(1, ReviewStatus.REJECTED)
    for index, before in ((0, ReviewStatus.UNREVIEWED), (1, ReviewStatus.REJECTED)):
        assert editor.paint(index, [(20, 15)], 1)
        assert editor.paint(index, [(22, 15)], 1)  # a second edit, on a frame already corrected
        assert session.status(index) is ReviewStatus.CORRECTED
        assert editor.undo(index)
        assert session.status(index) is ReviewStatus.CORRECTED  # the first edit made it corrected, not this one
        assert editor.undo(index)
        assert session.status(index) is before
        assert project.committed_mask(session.stem(index)) is None  # as before the first edit: the proposal shown
        np.testing.assert_array_equal(project.shown_mask(session.stem(index)), proposal_of_one_target().logits > 0)

    assert editor.redo(0)
    editor.set_status(0, ReviewStatus.ACCEPTED)
    assert editor.undo(0)
    assert session.status(0) is ReviewStatus.ACCEPTED  # the analyst's later verdict stands
    editor.set_status(0, ReviewStatus.NEGATIVE)
    assert editor.redo(0)
    assert session.status(0) is ReviewStatus.NEGATIVE  # not the status undo gave back: left alone

    # GUI audit 18: R, an edit, then C (the analyst's own "corrected"), then Ctrl+Z went back to rejected
    editor.set_status(1, ReviewStatus.REJECTED)
    assert editor.paint(1, [(20, 15)], 1)
    editor.set_status(1, ReviewStatus.CORRECTED)
    assert editor.undo(1)
    assert session.status(1) is ReviewStatus.CORRECTED
    reopened = ReviewProject.open(project.folder)  # and so it stays in the history file
    assert reopened.history("01").next_redo().status_before is None


def test_undoing_a_frames_first_edit_removes_its_committed_mask_again(session):
    """GUI audit 19: a slip and Ctrl+Z on a frame with no committed mask left a committed copy of its proposal: a
    negative frame showed the proposal's false alarms as committed targets, and a detection re-run could no longer
    replace the proposal of a frame the analyst had not touched."""
    project, proposal, editor = _detected(session)
    project.changes_on_disk()  # the first look lists the folders
    for status in (ReviewStatus.NEGATIVE, ReviewStatus.ACCEPTED, ReviewStatus.UNREVIEWED):
        editor.set_status(0, status)
        assert editor.paint(0, [(20, 15)], 1)
        assert project.committed_mask("00") is not None
        assert editor.undo(0)
        assert session.status(0) is status and project.committed_mask("00") is None
        assert not (project.folder / "labels" / "00.png").exists()
        np.testing.assert_array_equal(project.shown_mask("00"), proposal.logits > 0)
        assert "00" not in project.changes_on_disk().committed  # its own removal, not another instance's
        assert editor.redo(0)
        assert session.status(0) is ReviewStatus.CORRECTED and project.committed_mask("00")[15, 20]
        assert editor.undo(0)

    # a re-run replaces the proposal of the frame the analyst left untouched; redo applies the edit over it
    rerun = FrameResult(np.where(np.arange(32)[None, :] > 28, 5.0, -5.0).repeat(24, 0).astype(np.float32))
    project.save_prediction("00", rerun)
    np.testing.assert_array_equal(project.shown_mask("00"), rerun.logits > 0)
    assert editor.redo(0)
    expected = rerun.logits > 0
    expected[15, 20] = True
    np.testing.assert_array_equal(project.committed_mask("00"), expected)

    # a second edit's undo keeps the committed mask its edit started from
    assert editor.paint(0, [(2, 2)], 1)
    assert editor.undo(0)
    np.testing.assert_array_equal(project.committed_mask("00"), expected)

    other = ReviewProject.open(project.folder)  # another instance sees the removal, and the flags are kept on disk
    other.changes_on_disk()
    assert editor.undo(0)
    assert "00" in other.changes_on_disk().committed and other.committed_mask("00") is None
    assert other.history("00").next_redo().committed_before is False


def test_corrected_on_a_negative_frame_commits_the_proposal_it_shows(session):
    """C commits what is shown, on a negative frame too (only the edit tools start from an empty mask there)."""
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    session.record_result(0)
    editor = FrameEditor(session)
    editor.set_status(0, ReviewStatus.NEGATIVE)
    editor.set_status(0, ReviewStatus.CORRECTED)
    np.testing.assert_array_equal(project.committed_mask("00"), proposal_of_one_target().logits > 0)


def test_undo_commits_what_the_frame_showed_when_the_proposal_was_replaced_or_a_verdict_stands(session):
    """Crash audit 24: undoing a first edit removes the committed mask only when that gives the frame back as it was.
    Accept, an edit, a re-run, undo: the frame went back to accepted over the new proposal, which export then took;
    an edit, C, undo: corrected with no committed mask, which export skipped."""
    project = session.ensure_project()
    proposal = proposal_of_one_target()
    for stem, index in (("00", 0), ("01", 1)):
        project.save_prediction(stem, proposal)
        session.record_result(index)
    editor = FrameEditor(session)
    editor.set_status(0, ReviewStatus.ACCEPTED)
    assert editor.paint(0, [(20, 15)], 1)
    rerun = FrameResult(np.full((24, 32), -5, np.float32))
    rerun.logits[1:3, 1:3] = 5
    project.save_prediction("00", rerun)  # the frame is corrected now: its proposal is replaced
    assert editor.undo(0)
    assert session.status(0) is ReviewStatus.ACCEPTED
    np.testing.assert_array_equal(project.committed_mask("00"), proposal.logits > 0)  # what was accepted

    assert editor.paint(1, [(20, 15)], 1)
    editor.set_status(1, ReviewStatus.CORRECTED)  # the analyst's verdict over the edited mask
    assert editor.undo(1)
    assert session.status(1) is ReviewStatus.CORRECTED
    np.testing.assert_array_equal(project.committed_mask("01"), proposal.logits > 0)


def test_add_all_over_the_proposal_as_it_is_is_one_undo_step(session):
    """Crash audit 24: Add all on a frame with no committed mask committed its proposal and marked it corrected with
    nothing to undo."""
    project, proposal, editor = _detected(session)
    editor.set_status(0, ReviewStatus.NEGATIVE)
    assert editor.accept_all(0)
    np.testing.assert_array_equal(project.committed_mask("00"), proposal.logits > 0)
    assert session.status(0) is ReviewStatus.CORRECTED and editor.can_undo(0)
    assert editor.undo(0)
    assert session.status(0) is ReviewStatus.NEGATIVE and project.committed_mask("00") is None
    reopened = ReviewProject.open(project.folder)  # the step is kept in the history file
    assert reopened.history("00").next_redo().committed_before is False
    assert editor.redo(0)
    assert session.status(0) is ReviewStatus.CORRECTED
    np.testing.assert_array_equal(project.committed_mask("00"), proposal.logits > 0)
    editor.set_status(0, ReviewStatus.UNREVIEWED)
    editor.set_status(0, ReviewStatus.CORRECTED)  # C commits what is shown: no step of its own
    assert len(project.history("00")) == 1


def test_another_instances_removal_of_a_committed_mask_is_reported_after_this_ones_own(session):
    """Crash audit 24: an instance that had removed the frame's committed mask itself (an undo), then written it again
    (a redo), took another instance's later removal for its own, and kept showing the mask."""
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    session.record_result(0)
    editor = FrameEditor(session)
    project.changes_on_disk()
    assert editor.paint(0, [(20, 15)], 1)
    assert editor.undo(0) and editor.redo(0)
    assert "00" not in project.changes_on_disk().committed  # its own writes
    other = ReviewProject.open(project.folder)
    assert other.undo("00") is not None and other.committed_mask("00") is None
    assert "00" in project.changes_on_disk().committed


def test_an_accept_while_a_rerun_writes_the_frame_keeps_what_was_accepted(session, monkeypatch):
    """Crash audit 24: a detect run checked the frame's status, then wrote its files; an accept in between (another
    instance) ended accepted over the new proposal, which export took. The check now comes under the project's lock,
    just before the new proposal replaces the old."""
    project, proposal, _ = _detected(session)
    project.set_status("01", ReviewStatus.REJECTED)  # the project's lock has been taken once: project.lock is there
    other = ReviewProject.open(project.folder)
    write_npy = project_module.atomic_write_npy

    def accept_meanwhile(path, array):
        monkeypatch.setattr(project_module, "atomic_write_npy", write_npy)
        other.set_status("00", ReviewStatus.ACCEPTED)  # the analyst accepts what the window shows: the old proposal
        return write_npy(path, array)

    monkeypatch.setattr(project_module, "atomic_write_npy", accept_meanwhile)
    rerun = FrameResult(np.full((24, 32), -5, np.float32))
    rerun.logits[1:3, 1:3] = 5
    assert project.save_prediction("00", rerun, save_logits=True)  # it kept the accepted proposal
    np.testing.assert_array_equal(project.committed_mask("00"), proposal.logits > 0)
    np.testing.assert_array_equal(project.prediction_mask("00"), rerun.logits > 0)


def test_an_undo_whose_mask_and_status_put_back_both_fail_says_what_the_frame_is_left_with(session, monkeypatch):
    """Diff review 24: the undo gave the status back (negative), its mask step failed and so did the status put back;
    the window said "as it was" over a negative frame still holding the drawn target."""
    project, proposal, editor = _detected(session)
    editor.set_status(0, ReviewStatus.NEGATIVE)
    assert editor.paint(0, [(20, 15)], 1)
    real_set_status = session.set_status
    calls = []

    def status_once(index, status):
        calls.append(status)
        if len(calls) > 1:
            raise ProjectWriteError("disk full (simulated)")
        real_set_status(index, status)

    def no_undo(stem):
        raise ProjectWriteError("disk full (simulated)")

    monkeypatch.setattr(session, "set_status", status_once)
    monkeypatch.setattr(project, "undo", no_undo)
    with pytest.raises(MaskNotUndone):
        editor.undo(0)
    assert calls == [ReviewStatus.NEGATIVE, ReviewStatus.CORRECTED]
    assert session.status(0) is ReviewStatus.NEGATIVE and project.committed_mask("00")[15, 20]


def test_grow_target_sees_the_sequences_bad_pixels_repaired(tmp_path):
    """Spec audit 25: Grow target measured the raw frame with its hot pixels in. One in the background ring
    raised the threshold over a clear 9-px target, and a click beside one committed the hot pixel."""
    import tifffile

    rng = np.random.default_rng(0)
    frames = rng.normal(1000, 20, (8, 64, 64)).astype(np.uint16)
    for i, row in enumerate([29, 2, 9, 16, 23, 37, 44, 51]):  # the target moves (a static one is a stuck pixel)
        frames[i, row : row + 3, 29:32] = 1400  # 20 sigma over the background
    frames[:, 30, 40] = 60000  # a stuck pixel 10 px right of it, in Grow's background ring
    tifffile.imwrite(tmp_path / "stack.tif", frames)
    session = ReviewSession.open(tmp_path / "stack.tif")
    try:
        assert (40, 30) in session.normalization.bad_pixels
        editor = FrameEditor(session)
        assert editor.grow_target(0, session.frame(0), 30, 30)
        committed = session.project.committed_mask(session.stem(0))
        assert np.array_equal(np.argwhere(committed), np.argwhere(frames[0] == 1400))
        with pytest.raises(EditRefused, match="no region stands out"):  # beside the stuck pixel: background
            editor.grow_target(1, session.frame(1), 41, 31)
    finally:
        session.close()
