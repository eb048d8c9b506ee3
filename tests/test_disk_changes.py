"""What other instances on a review project wrote (another window, an `irsam detect` run), as one instance takes it
up: `ReviewProject.changes_on_disk` and `ReviewSession.refresh_from_disk` (Qt-free)."""
import dataclasses
import time

import numpy as np

from app.core.project import CLOCK_TICK_NS, ReviewProject, ReviewStatus
from app.core.normalization import NormalizationRequest
from app.session import NOT_RUN, STATUS_CODES, ReviewSession
from model.detectors import FrameResult
from tests.test_frames import write_folder
from tests.test_project import STEMS, make_project, result_with_targets, square_mask


def settle() -> None:
    """Wait out the file system's clock tick: a file stamped within it is reported again at the next look."""
    time.sleep(CLOCK_TICK_NS / 1e9 + 0.02)


def test_another_instances_statuses_proposals_and_masks_are_reported_once(tmp_path):
    make_project(tmp_path / "p").save_prediction("f002", result_with_targets([(12, 20, 14, 22)]))
    window, other = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    window.changes_on_disk()  # the first look: what was written since the project was opened (a tick before)
    assert len(window.detections("f002")) == 1  # the earlier proposal's, cached
    other.set_status("f001", "rejected")
    other.save_prediction("f002", result_with_targets([(2, 2, 6, 6), (10, 10, 12, 14)]))
    other.commit_mask("f003", square_mask(4, 4))
    settle()
    changes = window.changes_on_disk()
    assert (changes.statuses, changes.proposals, changes.committed) == ({"f001"}, {"f002"}, {"f003"})
    assert changes.stems == {"f001", "f002", "f003"}
    assert window.status("f001") is ReviewStatus.REJECTED
    assert [(t.x0, t.y0, t.x1, t.y1) for t in window.detections("f002")] == [(2, 2, 5, 5), (10, 10, 13, 11)]
    assert not window.changes_on_disk()  # reported once


def test_an_instances_own_writes_are_not_reported_as_another_ones(tmp_path):
    make_project(tmp_path / "p")
    window = ReviewProject.open(tmp_path / "p")
    window.save_prediction("f000", result_with_targets([(2, 2, 6, 6)]))
    window.commit_mask("f001", square_mask(1, 1))
    window.edit_mask("f001", square_mask(8, 8))
    window.flush_detections()
    assert not window.changes_on_disk()  # stamped within the tick: listed again at the next look
    assert not window.changes_on_disk()
    settle()
    assert not window.changes_on_disk()
    # then another instance replaces the very file this one wrote last: reported
    ReviewProject.open(tmp_path / "p").commit_mask("f001", square_mask(12, 12))
    assert window.changes_on_disk().committed == {"f001"}


def test_a_status_taken_up_by_an_own_write_is_reported_all_the_same(tmp_path):
    """Setting a status reads review.json again first: what another instance set meanwhile comes in with it, and
    the window must still be told about that frame."""
    make_project(tmp_path / "p")
    window, other = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    other.set_status("f002", "corrected")
    window.set_status("f000", "accepted")
    assert window.status("f002") is ReviewStatus.CORRECTED
    assert window.changes_on_disk().statuses == {"f002"}  # not its own


def test_a_file_removed_by_hand_and_a_damaged_review_file_are_handled(tmp_path):
    make_project(tmp_path / "p")
    other = ReviewProject.open(tmp_path / "p")
    other.commit_mask("f000", square_mask(1, 1))
    other.save_prediction("f001", result_with_targets([(2, 2, 6, 6)]))
    window = ReviewProject.open(tmp_path / "p")
    window.changes_on_disk()  # a removal is told from the files listed at the look before
    settle()
    window.changes_on_disk()
    (tmp_path / "p" / "labels" / "f000.png").unlink()
    (tmp_path / "p" / "masks" / "f001.png").unlink()
    changes = window.changes_on_disk()
    assert (changes.committed, changes.proposals) == ({"f000"}, {"f001"})
    assert window.detections("f001") == []
    other.set_status("f002", "accepted")
    (tmp_path / "p" / "review.json").write_text("{not json")  # the backup stands in
    assert window.changes_on_disk().statuses == {"f002"}
    assert window.status("f002") is ReviewStatus.ACCEPTED


def test_the_first_look_reports_what_was_written_since_the_project_was_opened(tmp_path):
    make_project(tmp_path / "p")
    earlier = ReviewProject.open(tmp_path / "p")
    earlier.save_prediction("f000", result_with_targets([(2, 2, 6, 6)]))
    earlier.commit_mask("f001", square_mask(1, 1))
    settle()  # written before the window opened the project, a tick older
    window = ReviewProject.open(tmp_path / "p")
    earlier.save_prediction("f002", result_with_targets([(2, 2, 6, 6)]))
    earlier.commit_mask("f003", square_mask(1, 1))
    changes = window.changes_on_disk()
    assert (changes.proposals, changes.committed) == ({"f002"}, {"f003"})


def test_nothing_changed_costs_no_listing_of_the_folders(tmp_path, monkeypatch):
    import app.core.project as project_module

    make_project(tmp_path / "p")
    ReviewProject.open(tmp_path / "p").save_prediction("f000", result_with_targets([(2, 2, 6, 6)]))
    window = ReviewProject.open(tmp_path / "p")
    settle()
    window.changes_on_disk()  # the first look lists the folders
    listed = []
    scandir = project_module.os.scandir
    monkeypatch.setattr(project_module.os, "scandir", lambda path: listed.append(path) or scandir(path))
    for _ in range(3):
        assert not window.changes_on_disk()
    assert listed == []


def _session_with_project(tmp_path, n=4):
    write_folder(tmp_path / "seq", n=n, names=[f"{i:02d}.png" for i in range(n)])
    session = ReviewSession.open(tmp_path / "seq")
    session.ensure_project()
    return session


def test_a_session_takes_up_another_instances_run_and_review(tmp_path):
    session = _session_with_project(tmp_path)
    assert list(session.detection_counts) == [NOT_RUN] * 4
    session.layers(1, {"committed"})  # cached before the other instance writes
    other = ReviewProject.open(session.project_dir)
    shape = session.frame(0).shape
    logits = np.full(shape, -5.0, np.float32)
    logits[2:5, 3:6] = 4.0
    logits[10:12, 10:12] = 4.0
    other.save_prediction("02", FrameResult(logits))
    label = np.zeros(shape, bool)
    label[5:9, 5:9] = True
    other.commit_mask("01", label)
    other.set_status("01", "corrected")
    settle()
    changes = session.refresh_from_disk()
    assert changes.stems == {"01", "02"}
    assert list(session.detection_counts) == [NOT_RUN, NOT_RUN, 2, NOT_RUN]
    assert session.status_codes[1] == STATUS_CODES[ReviewStatus.CORRECTED]
    assert np.array_equal(session.layers(1, {"committed"}).committed, label)  # not the cached absence
    assert np.array_equal(session.layers(2, set()).prediction, logits > 0)
    assert not session.refresh_from_disk()
    session.close()


def test_a_session_opens_the_project_another_instance_created_after_it_opened(tmp_path):
    write_folder(tmp_path / "seq", n=3, names=["00.png", "01.png", "02.png"])
    session = ReviewSession.open(tmp_path / "seq")
    assert session.project is None and not session.refresh_from_disk()
    other = ReviewSession.open(tmp_path / "seq")  # `irsam detect` started after the window opened
    other.set_status(2, ReviewStatus.NEGATIVE)
    changes = session.refresh_from_disk()
    assert session.project is not None and changes.statuses == {"02"}
    assert session.status(2) is ReviewStatus.NEGATIVE
    assert session.status_codes[2] == STATUS_CODES[ReviewStatus.NEGATIVE]
    session.set_status(0, ReviewStatus.ACCEPTED)  # written into that project, not a second one
    assert ReviewProject.open(other.project_dir).status("00") is ReviewStatus.ACCEPTED
    session.close()
    other.close()


def test_statuses_are_unchanged_for_the_frames_nobody_touched(tmp_path):
    make_project(tmp_path / "p")
    window, other = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    window.set_status("f000", "accepted")
    assert not window.changes_on_disk()
    other.set_status("f001", "negative")
    assert window.changes_on_disk().statuses == {"f001"}
    assert [window.status(s).value for s in STEMS] == ["accepted", "negative", "unreviewed", "unreviewed"]


def test_a_mask_stamped_within_a_tick_of_a_look_is_reported_again_at_the_next(tmp_path, monkeypatch):
    """ext4 gives a file replaced twice the inode it had before, and a coarse clock may give it the same time
    stamp: what a look saw within a tick of its stamp is not trusted to be the last word. (The tick is made a
    minute long here, so that the look is within it however slow the machine.)"""
    import app.core.project as project_module

    make_project(tmp_path / "p")
    window, other = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    window.changes_on_disk()
    other.commit_mask("f000", square_mask(1, 1))
    monkeypatch.setattr(project_module, "CLOCK_TICK_NS", 60 * 10**9)
    assert window.changes_on_disk().committed == {"f000"}
    assert window.changes_on_disk().committed == {"f000"}  # the same file, but it may have been replaced unseen
    monkeypatch.setattr(project_module, "CLOCK_TICK_NS", 0)
    assert window.changes_on_disk().committed == {"f000"}  # the last time: no longer within a tick
    assert not window.changes_on_disk()


def test_a_look_during_an_own_write_does_not_take_it_for_another_instances(tmp_path, monkeypatch):
    """The window's detection worker writes proposals while the window looks: a look between the mask's rename and
    the end of save_prediction saw the file before this instance had recorded it as its own."""
    import app.core.project as project_module

    make_project(tmp_path / "p")
    window = ReviewProject.open(tmp_path / "p")
    window.changes_on_disk()
    settle()
    write, seen = project_module.atomic_write_png, []

    def write_then_look(path, image, text=None):
        write(path, image, text)
        seen.append(window.changes_on_disk())  # as the GUI thread would, right after the rename

    monkeypatch.setattr(project_module, "atomic_write_png", write_then_look)
    window.save_prediction("f001", result_with_targets([(2, 2, 6, 6)]))
    window.commit_mask("f002", square_mask(1, 1))
    monkeypatch.undo()
    assert not any(seen) and len(window.detections("f001")) == 1
    settle()
    assert not window.changes_on_disk()


def test_a_permission_change_is_not_a_new_proposal(tmp_path):
    """`chmod -R` or a hard-link backup changes every file's ctime, not what it holds: the proposals are not read
    again (without logits, their peak scores would be lost)."""
    import os

    run = make_project(tmp_path / "p")
    run.save_prediction("f000", result_with_targets([(2, 2, 6, 6)]))
    run.flush_detections()  # its peak scores, from the logits it did not keep
    window = ReviewProject.open(tmp_path / "p")
    window.changes_on_disk()
    peak = window.detections("f000")[0].peak_score
    settle()
    window.changes_on_disk()  # (the proposal, written within a tick of the first look, is reported once more)
    os.chmod(tmp_path / "p" / "masks" / "f000.png", 0o600)
    (tmp_path / "p" / "masks" / "other").mkdir()  # the folder changes too, so it is listed again
    settle()
    assert not window.changes_on_disk() and window.detections("f000")[0].peak_score == peak == 1.0


def test_rows_with_a_nan_peak_score_are_not_news_each_time_the_csv_is_written(tmp_path):
    make_project(tmp_path / "p")
    window, run = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    window.changes_on_disk()
    run.save_prediction("f000", result_with_targets([(2, 2, 6, 6)]))
    run.flush_detections()
    (tmp_path / "p" / "logits").mkdir(exist_ok=True)
    settle()
    window.changes_on_disk()
    # the csv again, with a row whose peak score is NaN (a proposal read back from its mask alone)
    other = ReviewProject.open(tmp_path / "p")
    other.save_prediction("f001", result_with_targets([(2, 2, 6, 6)]))
    other._detections["f001"] = [dataclasses.replace(t, peak_score=float("nan")) for t in other.detections("f001")]
    other.flush_detections()
    settle()
    assert window.changes_on_disk().proposals == {"f001"}
    ReviewProject.open(tmp_path / "p").set_status("f003", "accepted")  # something else, then the csv again
    other.flush_detections()
    settle()
    assert window.changes_on_disk().proposals == set()


def test_a_write_takes_up_the_project_another_instance_created_since_the_session_opened(tmp_path):
    """The window opened the clip before `irsam detect --window ...` made its project; the analyst's first status
    change (before the window's next look) must join that project, with its proposals and its input window."""
    write_folder(tmp_path / "seq", n=3, names=["00.png", "01.png", "02.png"])
    session = ReviewSession.open(tmp_path / "seq")
    run = ReviewSession.open(tmp_path / "seq")
    run.change_normalization(NormalizationRequest(window=(10.0, 200.0)))
    logits = np.full(run.frame(1).shape, -5.0, np.float32)
    logits[2:5, 3:6] = 4.0
    run.project.save_prediction("01", FrameResult(logits))
    run.project.flush_detections()
    session.set_status(0, ReviewStatus.ACCEPTED)
    assert session.detection_counts[1] == 1 and (session.normalization.low, session.normalization.high) == (10, 200)
    assert ReviewProject.open(run.project_dir).status("00") is ReviewStatus.ACCEPTED
    session.close()
    run.close()


def test_a_project_over_other_frames_is_left_alone_by_the_looks(tmp_path):
    write_folder(tmp_path / "seq", n=3, names=["00.png", "01.png", "02.png"])
    session = ReviewSession.open(tmp_path / "seq")
    project_dir = session.project_dir
    ReviewProject.create(project_dir, tmp_path / "elsewhere", "folder", ["a", "b"], (24, 32), {"mode": "window", "low": 0, "high": 255})
    assert not session.refresh_from_disk() and not session.refresh_from_disk()
    assert session.project is None and session.project_dir == project_dir  # not moved to another folder unasked
    session.set_status(0, ReviewStatus.ACCEPTED)  # the first write goes beside it, as opening over it does
    assert session.project_dir == project_dir.with_name(project_dir.name + "-new")
    assert ReviewProject.open(session.project_dir).status("00") is ReviewStatus.ACCEPTED
    assert ReviewProject.open(project_dir).stems == ["a", "b"]
    session.close()
    reopened = ReviewSession.open(tmp_path / "seq")  # that work is found again, beside the other project
    assert reopened.project_dir == project_dir.with_name(project_dir.name + "-new")
    assert reopened.status(0) is ReviewStatus.ACCEPTED
    assert any("this sequence's work is kept in" in warning for warning in reopened.warnings)
    reopened.close()


def test_another_instances_proposals_are_counted_a_bounded_number_a_look_nearest_the_frame_shown(tmp_path):
    from app.session import COUNTS_PER_LOOK

    n = COUNTS_PER_LOOK + 20
    session = _session_with_project(tmp_path, n=n)
    session.layers(n - 1, set())  # the frame shown: the last
    run = ReviewProject.open(session.project_dir)
    for i in range(n):
        run.save_prediction(session.stem(i), FrameResult(np.full(session.frame(0).shape, -5.0, np.float32)))
    settle()
    first = session.refresh_from_disk()
    assert len(first.proposals) == COUNTS_PER_LOOK and session.stem(n - 1) in first.proposals
    assert sorted(session.detection_counts).count(NOT_RUN) == 20 and session.detection_counts[0] == NOT_RUN
    second = session.refresh_from_disk()
    assert len(second.proposals) == 20 and NOT_RUN not in session.detection_counts
    session.close()
