"""Session 28 fixes (Qt-free): a frame's status another instance set is not written over unseen; a redo is refused
where a re-run replaced the proposal its undo went back to; a review.json entry that cannot be read is filled in from
the backup, and a damaged review.json kept aside is said again when the project is opened."""
import json
from pathlib import Path

import numpy as np
import pytest

from app.core.edits import EditHistory, MaskEdit, StaleRedo, make_edit
from app.core.project import ReviewProject, ReviewStatus, StatusSetElsewhere
from app.editing import EditRefused, FrameEditor, StatusNotSaved
from app.session import ReviewSession
from model.detectors import FrameResult
from tests.test_frames import write_folder
from tests.test_project import STEMS, make_project, result_with_targets
from tests.test_editing import fail_review_json_writes
from tests.test_session import proposal_of_one_target


@pytest.fixture
def session(tmp_path):
    write_folder(tmp_path / "seq", n=2, names=["00.png", "01.png"])
    session = ReviewSession.open(tmp_path / "seq")
    yield session
    session.close()


def _statuses_on_disk(folder: Path) -> dict[str, str]:
    document = json.loads((folder / "review.json").read_text())
    return {stem: entry["status"] for stem, entry in document["frames"].items()}


# --- 1. a status another instance set on the same frame ---------------------------------------------------------


def test_a_status_another_instance_set_on_the_frame_since_is_not_written_over_unseen(tmp_path):
    folder = tmp_path / "p"
    make_project(folder)
    window, other = ReviewProject.open(folder), ReviewProject.open(folder)
    window.set_status("f000", "accepted")
    other.set_status("f001", "rejected")  # the window has not looked at the disk since
    with pytest.raises(StatusSetElsewhere) as refused:
        window.set_status("f001", "negative")
    assert str(refused.value) == ("Frame 2 (f001) was marked rejected by another window on this project since its "
                                  "status was last read here, so it was not marked negative: check the frame, then "
                                  "set its status again if it is to change")
    assert refused.value.stem == "f001" and refused.value.status is ReviewStatus.REJECTED
    assert _statuses_on_disk(folder) == {"f000": "accepted", "f001": "rejected"}
    assert window.status("f001") is ReviewStatus.REJECTED  # taken up
    assert window.changes_on_disk().statuses == {"f001"}  # the window's look reports it as another's, as before

    window.set_status("f002", "corrected")  # other frames are set as before
    window.set_status("f001", "negative")  # set again over the status it has seen now
    assert _statuses_on_disk(folder) == {"f000": "accepted", "f001": "negative", "f002": "corrected"}


def test_a_status_is_set_where_the_other_instance_set_the_same_or_the_window_looked_first(tmp_path):
    folder = tmp_path / "p"
    make_project(folder)
    window, other = ReviewProject.open(folder), ReviewProject.open(folder)
    other.set_status("f000", "accepted")
    window.set_status("f000", "accepted")  # both agree: nothing of theirs is lost
    other.set_status("f001", "rejected")
    assert window.changes_on_disk().statuses == {"f001"}  # the app's look every 2 s
    window.set_status("f001", "negative")
    other.set_status("f002", "negative")
    window.set_status("f002", "rejected", seen=ReviewStatus.NEGATIVE)  # what the caller showed
    window.set_status("f003", "corrected")
    other.changes_on_disk()  # the other window has seen it
    other.set_status("f003", "accepted")
    window.set_status("f003", "unreviewed", over_others=True)  # replacing whatever another instance set
    assert _statuses_on_disk(folder) == {"f000": "accepted", "f001": "negative", "f002": "rejected",
                                         "f003": "unreviewed"}


def test_a_status_read_in_by_another_path_than_the_windows_look_is_still_caught(session):
    """The window's `status_codes` are what it shows: a status read in by the project without the window showing it
    (here `holding`, as propagation does; the detection worker's re-run likewise) does not count as seen."""
    project = session.ensure_project()
    taken_up = []
    session.on_status_taken_up = taken_up.append
    other = ReviewProject.open(project.folder)
    other.set_status("00", "rejected")
    with project.holding():
        pass
    assert project.status("00") is ReviewStatus.REJECTED and session.statuses()[0] is ReviewStatus.UNREVIEWED
    editor = FrameEditor(session)
    with pytest.raises(EditRefused) as refused:
        editor.set_status(0, ReviewStatus.NEGATIVE)
    assert str(refused.value) == ("Frame 1: its status changed on disk since it was shown (another window on this "
                                  "project marked it rejected): shown now as it is; check it, then do it again.")
    assert taken_up == [0] and session.statuses()[0] is ReviewStatus.REJECTED
    assert _statuses_on_disk(project.folder) == {"00": "rejected"}
    editor.set_status(0, ReviewStatus.NEGATIVE)  # the analyst has seen theirs: set again
    assert _statuses_on_disk(project.folder) == {"00": "negative"}


def test_an_edit_undo_or_redo_over_a_status_another_instance_set_changes_nothing(session):
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    session.record_result(0)
    editor = FrameEditor(session)
    other = ReviewProject.open(project.folder)
    message = ("Frame 1: its status changed on disk since it was shown (another window on this project marked it "
               "{}): shown now as it is; check it, then do it again.")

    other.set_status("00", "negative")
    with pytest.raises(EditRefused, match="marked it negative"):
        editor.paint(0, [(20, 15)], 1)
    assert project.committed_mask("00") is None and not editor.can_undo(0)
    assert session.status(0) is ReviewStatus.NEGATIVE

    assert editor.paint(0, [(20, 15)], 1)  # the edit marks it corrected; undo would give negative back
    other.changes_on_disk()  # each window looks at the disk before the analyst acts there
    other.set_status("00", "accepted")
    with pytest.raises(EditRefused) as refused:
        editor.undo(0)
    assert str(refused.value) == message.format("accepted")
    assert project.committed_mask("00")[15, 20] and _statuses_on_disk(project.folder) == {"00": "accepted"}

    editor.set_status(0, ReviewStatus.CORRECTED)
    assert editor.paint(0, [(2, 2)], 1) and editor.undo(0)
    other.changes_on_disk()
    other.set_status("00", "rejected")
    with pytest.raises(EditRefused, match="marked it rejected"):
        editor.redo(0)
    assert not project.committed_mask("00")[2, 2] and editor.can_redo(0)
    assert _statuses_on_disk(project.folder) == {"00": "rejected"}


def test_the_apps_own_sequences_set_their_statuses_as_before(session):
    """One window: an edit marks corrected, its undo gives the status back, its redo marks corrected again, an accept
    after an edit stands; none is taken for another instance's."""
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    session.record_result(0)
    editor = FrameEditor(session)
    editor.set_status(0, ReviewStatus.NEGATIVE)
    assert editor.paint(0, [(20, 15)], 1) and session.status(0) is ReviewStatus.CORRECTED
    assert editor.undo(0) and session.status(0) is ReviewStatus.NEGATIVE
    assert editor.redo(0) and session.status(0) is ReviewStatus.CORRECTED
    editor.set_status(0, ReviewStatus.ACCEPTED)
    assert editor.paint(0, [(2, 2)], 1) and session.status(0) is ReviewStatus.CORRECTED
    assert _statuses_on_disk(project.folder) == {"00": "corrected"}


def test_an_edit_that_could_not_be_saved_replaces_the_status_another_instance_set(session, monkeypatch):
    """As its mask replaces theirs when it is saved (the window says so): closing the sequence saves it (corrected)
    whatever another instance set meanwhile, instead of failing."""
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())
    session.record_result(0)
    fail_review_json_writes(monkeypatch)
    editor = FrameEditor(session)
    with pytest.raises(StatusNotSaved):
        editor.paint(0, [(20, 15)], 3)
    monkeypatch.undo()
    ReviewProject.open(project.folder).set_status("00", "rejected")
    editor.set_status(0, ReviewStatus.CORRECTED)  # what the window's close does with an unsaved edit
    assert _statuses_on_disk(project.folder) == {"00": "corrected"} and not editor.unsaved


# --- 2. redo after a re-run --------------------------------------------------------------------------------------


def test_a_redo_is_refused_where_a_rerun_replaced_the_proposal_its_undo_went_back_to(tmp_path):
    folder = tmp_path / "p"
    project = make_project(folder)
    project.save_prediction("f000", result_with_targets([(4, 5, 7, 9)]))
    erased = project.shown_mask("f000").copy()
    erased[4:7, 5:7] = False  # the left half of the proposed target rubbed out
    project.edit_mask("f000", erased)
    project.undo("f000")  # the frame's first edit: it shows its proposal again, no committed mask
    assert project.committed_mask("f000") is None
    rerun = result_with_targets([(4, 6, 7, 10)])  # the target found a pixel to the right
    project.save_prediction("f000", rerun)
    with pytest.raises(StaleRedo) as refused:
        project.redo("f000")
    assert str(refused.value) == (
        "Frame 1 (f000): redo refused: where the edit would change it, the mask shown is no longer the one the edit "
        "was undone from (a new proposal replaced the one the undo went back to); redone, the edit would paste pieces "
        "of the old mask into the new one. Draw the change again on the mask shown.")
    assert project.committed_mask("f000") is None  # nothing changed
    np.testing.assert_array_equal(project.shown_mask("f000"), rerun.logits > 0)
    reopened = ReviewProject.open(folder)
    assert reopened.history("f000").can_redo and not reopened.history("f000").can_undo


def test_a_redo_over_a_new_proposal_the_same_where_the_edit_changes_it_is_made(tmp_path):
    """A re-run that found another target elsewhere leaves the edit's pixels as they were: redone, the edit is made
    over the new proposal, as it would have been over the old one."""
    project = make_project(tmp_path / "p")
    project.save_prediction("f000", result_with_targets([(4, 5, 7, 9)]))
    erased = project.shown_mask("f000").copy()
    erased[4:7, 5:7] = False
    project.edit_mask("f000", erased)
    project.undo("f000")
    project.save_prediction("f000", result_with_targets([(4, 5, 7, 9), (15, 20, 18, 23)]))
    expected = result_with_targets([(4, 5, 7, 9), (15, 20, 18, 23)]).logits > 0
    expected[4:7, 5:7] = False
    np.testing.assert_array_equal(project.redo("f000"), expected)
    np.testing.assert_array_equal(project.committed_mask("f000"), expected)


def test_a_redo_applies_to_the_pixels_it_was_undone_from_or_already_shows_its_result():
    """A step whose history write was lost after its mask's (`ReviewProject._change_mask`) is repeated: the mask
    already holds what it leaves, and the redo changes nothing."""
    before = np.zeros((8, 8), bool)
    after = before.copy()
    after[2:4, 2:4] = True
    edit = make_edit(before, after)
    assert isinstance(edit, MaskEdit) and edit.fits(before) and edit.fits(after)
    history = EditHistory()
    history.apply(before, edit)
    history.undo(after)
    np.testing.assert_array_equal(history.redo(after), after)  # repeated
    history.undo(after)
    other = before.copy()
    other[3, 3] = True
    with pytest.raises(StaleRedo):
        history.redo(other)
    assert history.can_redo and not history.can_undo  # unchanged


def test_the_editor_says_why_a_redo_is_refused_and_the_frame_keeps_its_status(session):
    project = session.ensure_project()
    project.save_prediction("00", proposal_of_one_target())  # the target covers rows 4-6, columns 5-8
    session.record_result(0)
    editor = FrameEditor(session)
    assert editor.paint(0, [(6, 5)], 3, erase=True)  # rows 4-6, columns 5-7 rubbed out
    assert editor.undo(0) and session.status(0) is ReviewStatus.UNREVIEWED
    moved = np.full((24, 32), -5.0, np.float32)
    moved[4:7, 6:10] = 5.0  # detected again a pixel to the right
    project.save_prediction("00", FrameResult(moved))
    session.record_result(0)
    with pytest.raises(EditRefused) as refused:
        editor.redo(0)
    assert str(refused.value) == (
        "Frame 1 (00): redo refused: where the edit would change it, the mask shown is no longer the one the edit "
        "was undone from (a new proposal replaced the one the undo went back to); redone, the edit would paste pieces "
        "of the old mask into the new one. Draw the change again on the mask shown.")
    assert session.status(0) is ReviewStatus.UNREVIEWED and project.committed_mask("00") is None
    assert editor.paint(0, [(7, 5)], 1, erase=True)  # drawn again: a new edit, which drops the stale redo
    assert not editor.can_redo(0)


# --- 3. a bad review.json entry and its backup ---------------------------------------------------------------------


def _reviewed(folder: Path) -> ReviewProject:
    project = make_project(folder)
    project.set_status("f000", "accepted")
    project.set_status("f001", "negative")
    project.set_status("f003", "rejected")
    return project


def _damage_entries(folder: Path, entries: dict, backup_entries: dict | None = None) -> None:
    for name, changes in (("review.json", entries), ("review.json.bak", backup_entries or {})):
        document = json.loads((folder / name).read_text())
        document["frames"].update(changes)
        (folder / name).write_text(json.dumps(document))


def test_an_unreadable_entry_is_filled_in_from_the_backup(tmp_path):
    folder = tmp_path / "p"
    _reviewed(folder)
    _damage_entries(folder, {"f001": {"status": "bogus", "time": "2026-01-01T00:00:00+00:00"}})
    opened = ReviewProject.open(folder)
    assert [opened.status(stem).value for stem in STEMS] == ["accepted", "negative", "unreviewed", "rejected"]
    assert not opened.statuses_incomplete
    assert opened.damaged == [(folder / "review.json", "1 frame's status unreadable (f001: unknown status 'bogus'); "
                                                       "it was restored from its backup, review.json.bak")]
    opened.set_status("f002", "corrected")  # the backup restored all: nothing to keep aside, nothing said again
    assert list(folder.glob("review.json.damaged-*")) == []
    assert ReviewProject.open(folder).kept_aside == [] and ReviewProject.open(folder).damaged == []


def test_entries_the_backup_cannot_fill_in_still_count_as_unreviewed(tmp_path):
    folder = tmp_path / "p"
    _reviewed(folder)
    _damage_entries(folder, {"f000": "accepted", "f001": {"status": "negative"}, "f003": {"time": "x"}},
                    backup_entries={"f003": "rejected"})
    opened = ReviewProject.open(folder)
    assert [opened.status(stem).value for stem in STEMS] == ["accepted", "negative", "unreviewed", "unreviewed"]
    assert opened.statuses_incomplete
    assert opened.damaged == [(folder / "review.json", (
        "3 frames' statuses unreadable (f000: 'accepted' is not an entry, f001: no \"time\", f003: unknown status "
        "None); restored from its backup, review.json.bak: f000, f001; the other frame counts as unreviewed"))]


def test_a_damaged_review_json_kept_aside_is_said_again_at_each_opening(tmp_path):
    folder = tmp_path / "p"
    _reviewed(folder)
    _damage_entries(folder, {"f001": {"status": "bogus", "time": "t"}, "f003": "rejected"},
                    backup_entries={"f003": "rejected"})
    opened = ReviewProject.open(folder)
    assert opened.status("f001") is ReviewStatus.NEGATIVE and opened.status("f003") is ReviewStatus.UNREVIEWED
    opened.set_status("f002", "corrected")  # written over: the damaged file is kept aside
    (kept,) = folder.glob("review.json.damaged-*")
    said = ("review.json as it was when found damaged, kept aside when a status was written over it: 2 frames' "
            "statuses unreadable (f001: unknown status 'bogus', f003: 'rejected' is not an entry); f003 is unreviewed "
            "now: set its status again (this file shows what it held), then delete this file.")
    for _ in range(2):
        reopened = ReviewProject.open(folder)
        assert reopened.kept_aside == [(kept, said)] and reopened.damaged == []
    reopened.set_status("f003", "rejected")
    assert ReviewProject.open(folder).kept_aside == [(kept, (
        "review.json as it was when found damaged, kept aside when a status was written over it: 2 frames' statuses "
        "unreadable (f001: unknown status 'bogus', f003: 'rejected' is not an entry); each of those frames has a "
        "status now (from the backup, or set since): delete this file once checked."))]
    kept.unlink()
    assert ReviewProject.open(folder).kept_aside == []


def test_an_unreadable_review_json_kept_aside_is_said_again_and_the_window_says_it(session):
    project = session.ensure_project()
    project.set_status("00", "accepted")
    folder = project.folder
    (folder / "review.json").write_text("{broken")
    (folder / "review.json.bak").unlink()
    opened = ReviewProject.open(folder)
    opened.set_status("01", "rejected")
    (kept,) = folder.glob("review.json.damaged-*")
    reopened = ReviewSession.open(session.source.path)  # the window opening the sequence again
    try:
        ((path, said),) = reopened.project.kept_aside
        assert path == kept and said.startswith("review.json as it was when found unreadable (Expecting ")
        assert said.endswith("kept aside when a status was written over it: the statuses it held may be missing "
                             "from the project (those its backup stood in for are not). Check the frames' statuses "
                             "against it, then delete this file.")
        assert f"{kept}: {said}" in reopened.warnings  # the window says its session's warnings when it opens
    finally:
        reopened.close()
