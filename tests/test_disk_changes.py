"""What other instances on a review project wrote (another window, an `irsam detect` run), as one instance takes it
up: `ReviewProject.changes_on_disk` and `ReviewSession.refresh_from_disk` (Qt-free)."""
import time

import numpy as np

from app.core.edits import make_edit
from app.core.project import CLOCK_TICK_NS, ReviewProject, ReviewStatus
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
    window.apply_edit("f001", make_edit(square_mask(1, 1), square_mask(8, 8)))
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


def test_a_mask_replaced_again_right_after_a_look_is_reported_again(tmp_path):
    """ext4 gives a file replaced twice the inode it had before, and a coarse clock may give it the same time
    stamp: what a look saw within a tick of its stamp is not trusted to be the last word."""
    make_project(tmp_path / "p")
    window, other = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    window.changes_on_disk()
    settle()
    for k in range(3):
        other.commit_mask("f000", square_mask(1 + k, 1))  # same size, replaced at once
        assert window.changes_on_disk().committed == {"f000"}


def test_a_runs_detections_csv_brings_the_peak_scores_its_masks_cannot(tmp_path):
    """`irsam detect` keeps no logits by default and writes detections.csv at its end: the targets read from its
    masks meanwhile have no peak score, the csv's rows give them."""
    make_project(tmp_path / "p")
    window, run = ReviewProject.open(tmp_path / "p"), ReviewProject.open(tmp_path / "p")
    window.changes_on_disk()
    run.save_prediction("f001", result_with_targets([(2, 2, 6, 6)]))
    settle()
    assert window.changes_on_disk().proposals == {"f001"}
    assert np.isnan(window.detections("f001")[0].peak_score)  # from the mask alone
    run.flush_detections()
    settle()
    assert window.changes_on_disk().proposals == {"f001"}
    assert window.detections("f001")[0].peak_score == 1.0  # the run's, from its logits
    assert not window.changes_on_disk()
    window.flush_detections()  # and this instance's own csv is not news
    settle()
    assert not window.changes_on_disk()
