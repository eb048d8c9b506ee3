import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import model.atomic
from app.core.edits import paint_stroke
from app.core.project import ProjectError, ProjectWriteError, ReviewProject, ReviewStatus, is_project
from app.core.provenance import PNG_TEXT_KEY, ProposalOrigin
from model.detectors import FrameResult

REPO = Path(__file__).resolve().parents[1]
SHAPE = (24, 32)
STEMS = ["f000", "f001", "f002", "f003"]
NORMALIZATION = {"mode": "window", "low": 100.0, "high": 4000.0}
DETECTOR = {"name": "tophat", "weights": None, "sha256": None, "config": {"radius": 5}, "device": "cpu"}


def make_project(folder, stems=STEMS, detector=DETECTOR):
    return ReviewProject.create(folder, folder.parent / "frames", "folder", stems, SHAPE, NORMALIZATION, detector)


def result_with_targets(boxes, edge=True):
    logits = np.full(SHAPE, -5.0, dtype=np.float32)
    for k, (y0, x0, y1, x1) in enumerate(boxes):
        logits[y0:y1, x0:x1] = 1.0 + k
    edge_map = np.linspace(0, 1, SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE) if edge else None
    return FrameResult(logits=logits, edge=edge_map)


def square_mask(y, x, size=3):
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y : y + size, x : x + size] = True
    return mask


def test_create_open_round_trip(tmp_path):
    project = make_project(tmp_path / "seq1")
    opened = ReviewProject.open(tmp_path / "seq1")
    assert opened.stems == STEMS and len(opened) == 4 and opened.index("f002") == 2
    assert opened.frame_shape == SHAPE
    assert opened.normalization == NORMALIZATION and opened.detector == DETECTOR
    assert opened.source_path == (tmp_path / "frames").resolve() and opened.source_kind == "folder"
    assert opened.name == "seq1" and opened.created == project.created
    assert opened.damaged == []
    meta = json.loads((tmp_path / "seq1" / "project.json").read_text())
    assert meta["format"] == "irsam-review-project/1"
    assert all(opened.status(s) is ReviewStatus.UNREVIEWED for s in STEMS)


def test_create_refuses_an_existing_project_unless_asked(tmp_path):
    make_project(tmp_path / "p")
    with pytest.raises(ProjectError):
        make_project(tmp_path / "p")
    rerun = ReviewProject.create(tmp_path / "p", tmp_path / "frames", "folder", STEMS, SHAPE, NORMALIZATION,
                                 {**DETECTOR, "name": "mpcm"}, exist_ok=True)
    assert ReviewProject.open(tmp_path / "p").detector["name"] == "mpcm" and rerun.detector["name"] == "mpcm"
    with pytest.raises(ProjectError):
        ReviewProject.create(tmp_path / "p", tmp_path / "frames", "folder", STEMS[:2], SHAPE, NORMALIZATION,
                             exist_ok=True)


def test_open_rejects_a_folder_without_project(tmp_path):
    with pytest.raises(ProjectError):
        ReviewProject.open(tmp_path)
    (tmp_path / "project.json").write_text("{not json")
    with pytest.raises(ProjectError):
        ReviewProject.open(tmp_path)


@pytest.mark.parametrize("stems", [["a", "a"], ["a/b"], [".hidden"], [""]])
def test_stems_that_cannot_name_files_are_refused(tmp_path, stems):
    with pytest.raises(ValueError):
        make_project(tmp_path / "p", stems=stems)


def test_predictions_round_trip_with_detections(tmp_path):
    project = make_project(tmp_path / "p")
    result = result_with_targets([(2, 3, 4, 6), (10, 20, 13, 21)])
    project.save_prediction("f001", result, save_logits=True)
    project.flush_detections()
    opened = ReviewProject.open(tmp_path / "p")
    assert opened.has_prediction("f001") and not opened.has_prediction("f000")
    np.testing.assert_array_equal(opened.prediction_mask("f001"), result.mask)
    np.testing.assert_array_equal(opened.prediction_logits("f001"), result.logits)
    edge = opened.prediction_edge("f001")
    assert edge.dtype == np.uint8 and edge[0, 0] == 0 and edge[-1, -1] == 255
    targets = opened.detections("f001")
    assert [(t.id, t.area, t.x0, t.y0, t.x1, t.y1, t.peak_score) for t in targets] == [
        (1, 6, 3, 2, 5, 3, 1.0),
        (2, 3, 20, 10, 20, 12, 2.0),
    ]
    assert opened.detections("f000") == [] and opened.prediction_mask("f000") is None
    header = (tmp_path / "p" / "detections.csv").read_text().splitlines()[0]
    assert header == "frame,stem,target_id,cx,cy,area,x0,y0,x1,y1,peak_score"


def test_detections_missing_from_the_csv_are_recomputed(tmp_path):
    project = make_project(tmp_path / "p")
    project.save_prediction("f000", result_with_targets([(5, 5, 7, 7)]), save_logits=True)  # never flushed
    targets = ReviewProject.open(tmp_path / "p").detections("f000")
    assert len(targets) == 1 and targets[0].area == 4 and targets[0].peak_score == 1.0


def test_a_rerun_replaces_the_previous_prediction_files(tmp_path):
    project = make_project(tmp_path / "p")
    project.save_prediction("f000", result_with_targets([(5, 5, 7, 7)]), save_logits=True)
    project.save_prediction("f000", result_with_targets([(1, 1, 2, 2)], edge=False))
    assert project.prediction_logits("f000") is None and project.prediction_edge("f000") is None
    assert project.prediction_mask("f000").sum() == 1 and project.detections("f000")[0].area == 1


def test_each_proposal_carries_its_origin_in_its_mask_png(tmp_path):
    project = make_project(tmp_path / "p")
    tophat = ProposalOrigin.of(DETECTOR, "window 100..4000")
    project.save_prediction("f000", result_with_targets([(2, 2, 5, 5)]), origin=tophat)
    project.save_prediction("f001", result_with_targets([(2, 2, 5, 5)]))  # saved without one (an older version)
    reopened = ReviewProject.open(tmp_path / "p")
    origin = reopened.proposal_origin("f000")
    assert origin.same_run_settings(tophat) and origin.time is not None and origin.label == "tophat"
    assert reopened.proposal_origin("f001") is None and reopened.proposal_origin("f002") is None
    # the mask still reads as the plain 0/255 PNG it is, with or without the text chunk
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "p" / "masks" / "f000.png"), cv2.IMREAD_UNCHANGED) > 0,
                                  reopened.prediction_mask("f000"))
    assert reopened.damaged == []
    # a damaged record (valid PNG, CRC recomputed) is reported, and the mask still loads
    path = tmp_path / "p" / "masks" / "f000.png"
    path.write_bytes(model.atomic.encode_png(reopened.prediction_mask("f000"), {PNG_TEXT_KEY: "{not json"}))
    damaged = ReviewProject.open(tmp_path / "p")
    assert damaged.proposal_origin("f000") is None and damaged.prediction_mask("f000").any()
    assert [p.name for p, why in damaged.damaged if "proposal origin" in why] == ["f000.png"]


def test_prediction_and_committed_layers_are_independent(tmp_path):
    project = make_project(tmp_path / "p")
    project.save_prediction("f000", result_with_targets([(2, 2, 4, 4)]))
    human = square_mask(10, 10)
    project.commit_mask("f000", human)
    project.save_prediction("f000", result_with_targets([(15, 15, 20, 20)]))  # detection re-run
    project.flush_detections()
    ReviewProject.create(tmp_path / "p", tmp_path / "frames", "folder", STEMS, SHAPE, NORMALIZATION, DETECTOR,
                         exist_ok=True)
    opened = ReviewProject.open(tmp_path / "p")
    np.testing.assert_array_equal(opened.committed_mask("f000"), human)
    assert opened.prediction_mask("f000").sum() == 25
    assert opened.committed_mask("f001") is None
    label = cv2.imread(str(tmp_path / "p" / "labels" / "f000.png"), cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint8 and label.ndim == 2 and set(np.unique(label)) == {0, 255}


def test_a_rerun_keeps_what_the_analyst_accepted(tmp_path):
    project = make_project(tmp_path / "p")
    for stem in ("f000", "f001", "f002"):
        project.save_prediction(stem, result_with_targets([(2, 2, 4, 4)]))
    project.set_status("f000", ReviewStatus.ACCEPTED)  # accepted as predicted
    project.set_status("f001", ReviewStatus.ACCEPTED)
    human = square_mask(10, 10)
    project.commit_mask("f001", human)  # accepted after an edit
    rerun = result_with_targets([(15, 15, 20, 20)])
    assert project.save_prediction("f000", rerun) is True
    assert project.save_prediction("f001", rerun) is False
    assert project.save_prediction("f002", rerun) is False  # unreviewed: follows the detector
    assert project.save_prediction("f000", rerun) is False  # committed once, not again
    project.set_status("f003", ReviewStatus.ACCEPTED)  # accepted before any detection: nothing shown
    assert project.save_prediction("f003", rerun) is True

    opened = ReviewProject.open(tmp_path / "p")
    np.testing.assert_array_equal(opened.committed_mask("f000"), square_mask(2, 2, size=2))
    np.testing.assert_array_equal(opened.committed_mask("f001"), human)
    assert opened.committed_mask("f002") is None
    assert opened.committed_mask("f003") is not None and not opened.committed_mask("f003").any()
    assert all(opened.prediction_mask(stem).sum() == 25 for stem in ("f000", "f001", "f002"))
    assert opened.history("f000").can_undo is False  # nothing was edited


def test_commit_mask_checks_the_frame(tmp_path):
    project = make_project(tmp_path / "p")
    with pytest.raises(ValueError):
        project.commit_mask("f000", np.zeros((5, 5), dtype=bool))
    with pytest.raises(KeyError):
        project.commit_mask("nope", np.zeros(SHAPE, dtype=bool))


def fail_replace(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_failed_label_write_keeps_the_old_file_and_raises(tmp_path, monkeypatch):
    project = make_project(tmp_path / "p")
    project.commit_mask("f000", square_mask(1, 1))
    label = tmp_path / "p" / "labels" / "f000.png"
    before = label.read_bytes()
    monkeypatch.setattr(model.atomic.os, "replace", fail_replace)
    with pytest.raises(ProjectWriteError):
        project.commit_mask("f000", square_mask(10, 10))
    monkeypatch.undo()
    assert label.read_bytes() == before
    assert sorted(p.name for p in label.parent.iterdir()) == ["f000.png"]  # no temp file left behind
    np.testing.assert_array_equal(ReviewProject.open(tmp_path / "p").committed_mask("f000"), square_mask(1, 1))


def test_failed_status_write_keeps_review_json_and_the_old_status(tmp_path, monkeypatch):
    project = make_project(tmp_path / "p")
    project.set_status("f000", ReviewStatus.ACCEPTED)
    review = tmp_path / "p" / "review.json"
    before = review.read_bytes()
    monkeypatch.setattr(model.atomic.os, "replace", fail_replace)
    with pytest.raises(ProjectWriteError):
        project.set_status("f000", "rejected")
    with pytest.raises(ProjectWriteError):
        project.set_status("f001", "negative")
    monkeypatch.undo()
    assert review.read_bytes() == before
    assert project.status("f000") is ReviewStatus.ACCEPTED and project.status("f001") is ReviewStatus.UNREVIEWED
    assert ReviewProject.open(tmp_path / "p").status("f000") is ReviewStatus.ACCEPTED


def test_damaged_files_are_reported_and_the_rest_loads(tmp_path):
    project = make_project(tmp_path / "p")
    project.commit_mask("f000", square_mask(1, 1))
    project.commit_mask("f001", square_mask(5, 5))
    project.set_status("f000", "corrected")
    project.set_status("f001", "negative")
    folder = tmp_path / "p"
    good_label = (folder / "labels" / "f000.png").read_bytes()
    (folder / "labels" / "f000.png").write_bytes(good_label[: len(good_label) // 2])  # truncated
    (folder / "review.json").write_text('{"format": "irsam-review-status/1", "frames": {')
    (folder / "detections.csv").write_text("garbage,header\n1,2\n")

    opened = ReviewProject.open(folder)
    damaged = {path.name: reason for path, reason in opened.damaged}
    assert set(damaged) == {"f000.png", "review.json", "detections.csv"}
    assert opened.committed_mask("f000") is None
    np.testing.assert_array_equal(opened.committed_mask("f001"), square_mask(5, 5))
    # statuses come back from review.json.bak
    assert opened.status("f000") is ReviewStatus.CORRECTED and opened.status("f001") is ReviewStatus.NEGATIVE
    opened.commit_mask("f000", square_mask(2, 2))  # re-committing repairs it
    assert all(path.name != "f000.png" for path, _ in opened.damaged)
    opened.set_status("f002", "accepted")
    assert ReviewProject.open(folder).damaged == [(folder / "detections.csv", damaged["detections.csv"])]


def test_a_damaged_project_json_is_read_from_its_backup_and_repaired_by_the_next_write(tmp_path):
    make_project(tmp_path / "p").set_status("f001", "rejected")
    folder, meta = tmp_path / "p", tmp_path / "p" / "project.json"
    meta.write_text('{"format": "irsam-review-project/1", "stems": [')
    opened = ReviewProject.open(folder)
    ((path, reason),) = opened.damaged
    assert path == meta and reason.startswith(f"{meta} is unreadable: ")
    assert reason.endswith("it was restored from its backup, project.json.bak")
    assert opened.status("f001") is ReviewStatus.REJECTED
    opened.set_normalization({"mode": "window", "low": 0.0, "high": 255.0})
    assert ReviewProject.open(folder).damaged == []
    meta.write_text("[]")
    (folder / "project.json.bak").write_text("{")
    with pytest.raises(ProjectError, match=f"{meta}: not a irsam-review-project/1 project"):
        ReviewProject.open(folder)  # what is wrong with project.json, not with its backup


def test_an_incomplete_project_json_is_restored_and_never_copied_into_its_backup(tmp_path):
    """Opened from its backup, a project.json of the right format but without its stems was then written on by the
    next project.json write, into its backup too: the project no longer opened at all."""
    make_project(tmp_path / "p")
    folder, meta = tmp_path / "p", tmp_path / "p" / "project.json"
    incomplete = json.loads(meta.read_text())
    del incomplete["stems"]
    meta.write_text(json.dumps(incomplete))
    opened = ReviewProject.open(folder)
    assert opened.damaged[0][1].endswith("is incomplete: 'stems'; it was restored from its backup, project.json.bak")
    assert "stems" in json.loads(meta.read_text())  # restored on disk, not only in memory
    meta.write_text(json.dumps(incomplete))  # damaged again while the project is open
    opened.set_normalization({"mode": "window", "low": 0.0, "high": 255.0})
    for path in (meta, folder / "project.json.bak"):
        assert json.loads(path.read_text())["stems"] == opened.stems
    assert ReviewProject.open(folder).damaged == []


def test_a_project_json_of_a_later_version_is_refused_not_replaced_by_its_backup(tmp_path):
    make_project(tmp_path / "p")
    meta = tmp_path / "p" / "project.json"
    later = '{"format": "irsam-review-project/2", "stems": {}}'
    meta.write_text(later)
    with pytest.raises(ProjectError, match=r"a project of a later version \(irsam-review-project/2\); this version "
                                           r"reads irsam-review-project/1"):
        ReviewProject.open(tmp_path / "p")
    assert meta.read_text() == later


@pytest.mark.parametrize("damage", ["deleted", "garbage format"])
def test_a_lost_or_mislabelled_project_json_comes_back_from_its_backup(tmp_path, damage):
    """A deleted project.json made the folder no project at all: the source opened with nothing, and the next write
    made a new project.json over the backup."""
    make_project(tmp_path / "p").set_status("f001", "rejected")
    folder, meta = tmp_path / "p", tmp_path / "p" / "project.json"
    if damage == "deleted":
        meta.unlink()
    else:
        meta.write_text('{"format": "garbage", "stems": []}')
    assert is_project(folder)
    opened = ReviewProject.open(folder)
    ((path, reason),) = opened.damaged
    expected = f"{meta} is missing" if damage == "deleted" else f"{meta}: not a irsam-review-project/1 project"
    assert reason == f"{expected}; it was restored from its backup, project.json.bak"
    assert opened.status("f001") is ReviewStatus.REJECTED and json.loads(meta.read_text())["stems"] == opened.stems


@pytest.mark.parametrize("damage", ["flipped byte", "wrong size", "color", "empty", "not png"])
def test_label_damage_kinds_are_caught_on_open(tmp_path, damage):
    project = make_project(tmp_path / "p")
    project.commit_mask("f000", square_mask(1, 1))
    label = tmp_path / "p" / "labels" / "f000.png"
    data = bytearray(label.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x40
        label.write_bytes(bytes(data))
    elif damage == "wrong size":
        cv2.imwrite(str(label), np.zeros((5, 5), np.uint8))
    elif damage == "color":
        cv2.imwrite(str(label), np.zeros(SHAPE + (3,), np.uint8))
    elif damage == "empty":
        label.write_bytes(b"")
    else:
        label.write_bytes(b"GIF89a" + bytes(data[6:]))
    opened = ReviewProject.open(tmp_path / "p")
    assert [p.name for p, _ in opened.damaged] == ["f000.png"]
    assert opened.committed_mask("f000") is None


def test_both_review_files_damaged_means_unreviewed(tmp_path):
    project = make_project(tmp_path / "p")
    project.set_status("f000", "accepted")
    (tmp_path / "p" / "review.json").write_text("[]")
    (tmp_path / "p" / "review.json.bak").write_bytes(b"\x00")
    opened = ReviewProject.open(tmp_path / "p")
    assert len(opened.damaged) == 2 and opened.status("f000") is ReviewStatus.UNREVIEWED


def test_labels_survive_a_kill_mid_write(tmp_path):
    project = make_project(tmp_path / "p", stems=[f"f{i:03d}" for i in range(6)])
    writer = textwrap.dedent(
        f"""
        import numpy as np
        from app.core.project import ReviewProject
        project = ReviewProject.open({str(tmp_path / "p")!r})
        rng = np.random.default_rng(0)
        i = 0
        while True:
            project.commit_mask(project.stems[i % len(project.stems)], rng.random({SHAPE!r}) > 0.5)
            i += 1
        """
    )
    child = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO)
    labels = tmp_path / "p" / "labels"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(list(labels.glob("*.png"))) < 6:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert len(list(labels.glob("*.png"))) == 6
    opened = ReviewProject.open(tmp_path / "p")
    assert opened.damaged == []
    for stem in project.stems:
        assert opened.committed_mask(stem).shape == SHAPE


def test_edit_history_persists_across_reopen(tmp_path):
    project = make_project(tmp_path / "p")
    project.save_prediction("f000", result_with_targets([(2, 2, 4, 4)]))
    states = [project.working_mask("f000")]
    np.testing.assert_array_equal(states[0], project.prediction_mask("f000"))
    for k in range(5):
        states.append(paint_stroke(states[-1], [(5 + 3 * k, 10), (5 + 3 * k, 15)], size=3, value=True))
        edit = project.edit_mask("f000", states[-1])
        assert edit is not None
    assert project.edit_mask("f000", states[-1]) is None
    np.testing.assert_array_equal(project.undo("f000"), states[4])

    opened = ReviewProject.open(tmp_path / "p")
    history = opened.history("f000")
    assert len(history) == 4 and history.can_redo
    np.testing.assert_array_equal(opened.committed_mask("f000"), states[4])
    np.testing.assert_array_equal(opened.redo("f000"), states[5])
    for expected in reversed(states[:5]):
        np.testing.assert_array_equal(opened.undo("f000"), expected)
    reopened = ReviewProject.open(tmp_path / "p")  # the first edit undone: no committed mask, the proposal shown
    assert reopened.committed_mask("f000") is None
    np.testing.assert_array_equal(reopened.shown_mask("f000"), states[0])
    assert opened.prediction_mask("f000").sum() == 4  # the proposal layer never changed

    assert opened.edit_mask("f000", square_mask(20, 25)) is not None
    np.testing.assert_array_equal(opened.committed_mask("f000"), square_mask(20, 25))


def block_labels(folder):
    """labels/ becomes a file: no committed mask can be written (the folder is put back by the returned call)."""
    labels = folder / "labels"
    kept = labels.rename(folder / "labels.kept") if labels.exists() else None
    labels.write_text("not a folder")

    def unblock():
        labels.unlink()
        if kept is not None:
            kept.rename(labels)
    return unblock


def test_a_failed_mask_write_leaves_history_and_mask_as_before_the_edit(tmp_path):
    folder = tmp_path / "p"
    project = make_project(folder)
    project.save_prediction("f000", result_with_targets([(2, 2, 4, 4)]))
    states = [project.working_mask("f000")]
    for x in (10, 20):
        states.append(states[-1] | square_mask(12, x))
        project.edit_mask("f000", states[-1])
    project.undo("f000")  # one step to undo, one to redo
    history_file, label_file = folder / "history" / "f000.npz", folder / "labels" / "f000.png"
    history_before, label_before = history_file.read_bytes(), label_file.read_bytes()

    unblock = block_labels(folder)
    with pytest.raises(ProjectWriteError, match="labels"):
        project.edit_mask("f000", states[1] | square_mask(20, 5))
    with pytest.raises(ProjectWriteError):
        project.edit_mask("f001", square_mask(5, 5))  # a frame never edited: no history file either
    assert history_file.read_bytes() == history_before
    assert not (folder / "history" / "f001.npz").exists()
    history = project.history("f000")
    assert len(history) == 1 and history.can_redo and not project.history("f001").can_undo
    unblock()
    assert label_file.read_bytes() == label_before
    np.testing.assert_array_equal(project.redo("f000"), states[2])  # the redo step was not dropped by the edit

    opened = ReviewProject.open(folder)
    assert len(opened.history("f000")) == 2 and not opened.history("f001").can_undo
    assert opened.committed_mask("f001") is None
    np.testing.assert_array_equal(opened.undo("f000"), states[1])


def test_a_failed_history_write_writes_no_mask(tmp_path, monkeypatch):
    folder = tmp_path / "p"
    project = make_project(folder)
    project.edit_mask("f000", square_mask(1, 1))
    history_before = (folder / "history" / "f000.npz").read_bytes()
    label_before = (folder / "labels" / "f000.png").read_bytes()
    monkeypatch.setattr(model.atomic.os, "replace", fail_replace)
    with pytest.raises(ProjectWriteError):
        project.edit_mask("f000", square_mask(1, 1) | square_mask(10, 10))
    with pytest.raises(ProjectWriteError):
        project.undo("f000")
    monkeypatch.undo()
    assert (folder / "history" / "f000.npz").read_bytes() == history_before
    assert (folder / "labels" / "f000.png").read_bytes() == label_before
    assert len(project.history("f000")) == 1 and not project.history("f000").can_redo
    assert not project.undo("f000").any()


def test_a_history_that_cannot_be_put_back_still_undoes_to_the_mask_on_disk(tmp_path, monkeypatch):
    """Both the mask write and putting the history file back fail: the history keeps the unsaved step, as
    after a crash between the two writes, and undoing it gives the mask on disk back."""
    import app.core.project

    folder = tmp_path / "p"
    project = make_project(folder)
    project.edit_mask("f000", square_mask(1, 1))
    monkeypatch.setattr(app.core.project, "atomic_write_png", lambda *a, **k: fail_replace())
    monkeypatch.setattr(app.core.project, "atomic_write_bytes", lambda *a, **k: fail_replace())
    drawn = square_mask(1, 1) | square_mask(10, 10)
    with pytest.raises(ProjectWriteError, match="No space left"):
        project.edit_mask("f000", drawn)
    monkeypatch.undo()
    assert len(project.history("f000")) == 2  # read back from the file the put-back could not restore
    np.testing.assert_array_equal(project.committed_mask("f000"), square_mask(1, 1))
    np.testing.assert_array_equal(project.undo("f000"), square_mask(1, 1))
    np.testing.assert_array_equal(project.redo("f000"), drawn)


def test_an_undo_left_half_written_leaves_the_history_behind_the_mask(tmp_path, monkeypatch):
    """Crash audit 24: an undo wrote its history first, so a crash before its mask left the history ahead of the mask
    on disk, and the next Ctrl+Z took back two edits. An undo now writes its mask first: its history write failing
    with no way to put the mask back (as a crash between the two) leaves the step still to undo, which then changes
    nothing."""
    import app.core.edits
    import app.core.project

    project = make_project(tmp_path / "p")
    first, drawn = square_mask(1, 1), square_mask(1, 1) | square_mask(10, 10)
    project.edit_mask("f000", first)
    project.edit_mask("f000", drawn)
    monkeypatch.setattr(app.core.edits, "atomic_write_bytes", lambda *a, **k: fail_replace())  # the history file
    monkeypatch.setattr(app.core.project, "atomic_write_bytes", lambda *a, **k: fail_replace())  # the put-back
    with pytest.raises(ProjectWriteError, match="No space left"):
        project.undo("f000")
    monkeypatch.undo()
    np.testing.assert_array_equal(project.committed_mask("f000"), first)  # the mask was undone
    assert len(project.history("f000")) == 2  # its history was not
    np.testing.assert_array_equal(project.undo("f000"), first)  # the step still to undo changes nothing
    assert project.committed_mask("f000") is not None
    project.undo("f000")  # and the one before takes back the first edit, no more
    assert project.committed_mask("f000") is None
    np.testing.assert_array_equal(project.redo("f000"), first)


def test_a_damaged_history_file_is_reported_and_replaced(tmp_path):
    project = make_project(tmp_path / "p")
    project.edit_mask("f001", square_mask(3, 3))
    (tmp_path / "p" / "history" / "f001.npz").write_bytes(b"PK\x03\x04broken")
    opened = ReviewProject.open(tmp_path / "p")
    assert not opened.history("f001").can_undo
    assert [p.name for p, _ in opened.damaged] == ["f001.npz"]


def test_commit_edit_commits_the_proposal_unchanged_only_where_no_committed_mask_is_readable(tmp_path):
    project = make_project(tmp_path / "p")
    for stem in ("f000", "f001"):
        project.save_prediction(stem, result_with_targets([(2, 2, 4, 4)]))
    proposal = project.prediction_mask("f000")
    assert project.edit_mask("f000", proposal) is None and not project.has_committed_mask("f000")

    # no committed mask: the proposal becomes the committed layer, with no edit to undo
    assert project.commit_edit("f000", proposal)
    np.testing.assert_array_equal(project.committed_mask("f000"), proposal)
    assert not project.history("f000").can_undo
    # the committed mask already is the mask: nothing written
    assert not project.commit_edit("f000", proposal)
    assert not project.history("f000").can_undo
    # a change: one undoable edit
    changed = proposal | square_mask(10, 10)
    assert project.commit_edit("f000", changed)
    np.testing.assert_array_equal(project.committed_mask("f000"), changed)
    np.testing.assert_array_equal(project.undo("f000"), proposal)

    # an unreadable committed mask is none: the proposal replaces it
    label = tmp_path / "p" / "labels" / "f001.png"
    label.parent.mkdir(exist_ok=True)
    label.write_bytes(b"not a png")
    opened = ReviewProject.open(tmp_path / "p")
    assert [p.name for p, _ in opened.damaged] == ["f001.png"]
    assert opened.commit_edit("f001", proposal)
    np.testing.assert_array_equal(opened.committed_mask("f001"), proposal)
    assert opened.damaged == []


def test_status_queries(tmp_path):
    project = make_project(tmp_path / "p")
    project.set_status("f000", ReviewStatus.ACCEPTED)
    project.set_status("f002", "negative")
    assert [project.status(stem) for stem in project.stems] == [
        ReviewStatus.ACCEPTED, ReviewStatus.UNREVIEWED, ReviewStatus.NEGATIVE, ReviewStatus.UNREVIEWED]
    with pytest.raises(ValueError):
        project.set_status("f000", "maybe")
    document = json.loads((tmp_path / "p" / "review.json").read_text())
    assert document["frames"]["f002"]["status"] == "negative"
    assert sorted(document["frames"]) == ["f000", "f002"] and document["frames"]["f000"]["time"]
    assert (tmp_path / "p" / "review.json.bak").read_text() == (tmp_path / "p" / "review.json").read_text()


def test_a_chosen_normalisation_is_stored_and_kept(tmp_path):
    project = make_project(tmp_path / "p")
    project.save_prediction("f000", result_with_targets([(2, 2, 4, 4)]))
    chosen = {"mode": "window", "low": 500.0, "high": 9000.0, "bad_pixels": [[3, 4]]}
    project.set_normalization(chosen)
    opened = ReviewProject.open(tmp_path / "p")
    assert opened.normalization == chosen
    assert opened.prediction_mask("f000").sum() == 4  # proposals stay until detection runs again


def test_a_failed_normalisation_write_keeps_the_stored_one(tmp_path, monkeypatch):
    project = make_project(tmp_path / "p")
    monkeypatch.setattr(model.atomic.os, "replace", fail_replace)
    with pytest.raises(ProjectWriteError):
        project.set_normalization({"mode": "window", "low": 1.0, "high": 2.0})
    monkeypatch.undo()
    assert project.normalization == NORMALIZATION
    assert ReviewProject.open(tmp_path / "p").normalization == NORMALIZATION


def test_a_project_cannot_be_made_where_a_file_has_its_name_and_the_file_is_kept(tmp_path):
    (tmp_path / "p").write_bytes(b"not a project")
    with pytest.raises(ProjectWriteError, match="a file of that name is there, not a folder"):
        make_project(tmp_path / "p")
    assert (tmp_path / "p").read_bytes() == b"not a project"
    with pytest.raises(ProjectWriteError, match="Not a directory|a file of that name"):
        make_project(tmp_path / "p" / "inner")  # a folder on its path is the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_a_proposal_whose_mask_cannot_be_written_leaves_the_earlier_runs_files_as_they_were(tmp_path, monkeypatch):
    """On a full disk the edge map and logits of the new run were written, then the mask failed: the frame showed
    the earlier run's mask over the new run's edge map (audit s21 B6)."""
    import app.core.project as project_module

    project = make_project(tmp_path / "p")
    project.save_prediction("f000", result_with_targets([(2, 2, 6, 6)]), save_logits=True)
    files = [project.folder / "masks" / "f000.png", project.folder / "edges" / "f000.png",
             project.folder / "logits" / "f000.npy"]
    before = [path.read_bytes() for path in files]
    write_png = project_module.atomic_write_png

    def full_disk_for_masks(path, *args, **kwargs):
        if path.parent.name == "masks":
            raise OSError(28, "No space left on device")
        return write_png(path, *args, **kwargs)
    monkeypatch.setattr(project_module, "atomic_write_png", full_disk_for_masks)
    newer = result_with_targets([(10, 10, 14, 20)])
    newer.edge[:] = 0.5
    with pytest.raises(ProjectWriteError, match="No space left"):
        project.save_prediction("f000", newer, save_logits=True)
    assert [path.read_bytes() for path in files] == before
    with pytest.raises(ProjectWriteError):
        project.save_prediction("f000", newer, save_logits=False)  # its logits removed first, then put back
    assert [path.read_bytes() for path in files] == before
    assert listed_after_reopen(tmp_path / "p") == [(2, 2, 6, 6)]


def listed_after_reopen(folder):
    return [(t.y0, t.x0, t.y1 + 1, t.x1 + 1) for t in ReviewProject.open(folder).detections("f000")]


def test_the_description_of_a_proposal_tells_two_best_pt_apart_by_their_sha256():
    """Loop audit 24: every fine-tune run saves a best.pt, and the window's tooltip over two runs' proposals read
    "Proposal by IRSAM (best.pt)" alike."""
    record = {"name": "irsam", "weights": "/p/finetune/run/best.pt", "sha256": "81ef941d" + "0" * 56,
              "config": {"name": "paper"}, "device": "cpu"}
    first = ProposalOrigin.of(record, "window 0..255")
    second = ProposalOrigin.of(record | {"weights": "/p/finetune/run-2/best.pt", "sha256": "e8518653" + "0" * 56},
                               "window 0..255")
    assert first.label == second.label == "IRSAM (best.pt)"
    assert "sha256 81ef941d" in first.description and "sha256 e8518653" in second.description
    assert first.description.startswith("Proposal by IRSAM (best.pt)\nweights: best.pt, sha256 81ef941d00000000")
    assert ProposalOrigin.of(DETECTOR, "window 0..255").description.splitlines()[1] == "input: window 0..255"
