"""Taking a data set's own masks into a review project (app.core.label_import, `irsam import-labels`)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.core.label_import import import_labels
from app.core.project import ProjectWriteError, ReviewProject, ReviewStatus
from model.detectors import FrameResult

SHAPE = (24, 32)


def box(y, x, size=3, shape=SHAPE):
    mask = np.zeros(shape, bool)
    mask[y : y + size, x : x + size] = True
    return mask


def data_set(folder: Path, n: int = 6) -> dict[str, np.ndarray]:
    """images/ and masks/ (0/255, frame i's target at (2 + 2i, 3 + 3i)); returns stem -> mask."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    masks = {}
    for i in range(n):
        stem = f"im{i}"
        image = np.full(SHAPE, 30, np.uint8)
        masks[stem] = box(2 + 2 * i, 3 + 3 * i)
        image[masks[stem]] = 200
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(folder / "masks" / f"{stem}.png"), masks[stem].astype(np.uint8) * 255)
    return masks


def detected_project(tmp_path, masks):
    """`irsam detect` over the images, then each frame's proposal replaced by a box off the truth."""
    out = tmp_path / "project"
    assert main(["detect", str(tmp_path / "data" / "images"), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    project = ReviewProject.open(out)
    for stem in project.stems:
        project.save_prediction(stem, FrameResult(np.where(box(15, 20), 4.0, -4.0).astype(np.float32)))
    return project


def test_reference_masks_become_undoable_committed_masks_and_the_analysts_work_is_kept(tmp_path):
    masks = data_set(tmp_path / "data")
    project = detected_project(tmp_path, masks)
    project.commit_mask("im1", box(0, 0))  # the analyst's own mask
    project.commit_mask("im2", masks["im2"])  # already the reference
    project.set_status("im3", ReviewStatus.CORRECTED)
    (tmp_path / "data" / "masks" / "im4.png").unlink()
    cv2.imwrite(str(tmp_path / "data" / "masks" / "im5.png"), np.zeros((10, 10), np.uint8))
    read = lambda stem: (cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127  # noqa: E731
                         if (p := tmp_path / "data" / "masks" / f"{stem}.png").exists() else None)

    report = import_labels(project, read)
    assert report.imported == ["im0"] and report.unchanged == ["im2"] and report.kept == ["im1"]
    assert report.reviewed == ["im3"] and report.missing == ["im4"]
    assert report.refused == [("im5", "mask 10x10 differs from the frame's 32x24")]
    assert report.summary() == ("1 mask committed, 1 already committed, 1 frame kept its own committed mask, "
                                "1 reviewed frame left alone, 1 frame without a mask, 1 mask refused")
    np.testing.assert_array_equal(project.committed_mask("im0"), masks["im0"])
    np.testing.assert_array_equal(project.committed_mask("im1"), box(0, 0))
    assert project.status("im0") is ReviewStatus.UNREVIEWED and project.status("im3") is ReviewStatus.CORRECTED
    np.testing.assert_array_equal(project.undo("im0"), box(15, 20))  # back to what the frame showed: its proposal

    again = import_labels(project, read, replace=True)
    assert again.imported == ["im0", "im1"] and again.kept == [] and again.unchanged == ["im2"]
    np.testing.assert_array_equal(project.committed_mask("im1"), masks["im1"])
    np.testing.assert_array_equal(project.undo("im1"), box(0, 0))


def test_a_reference_equal_to_the_proposal_is_committed_all_the_same(tmp_path):
    masks = data_set(tmp_path / "data", n=2)
    project = detected_project(tmp_path, masks)
    project.save_prediction("im0", FrameResult(np.where(masks["im0"], 4.0, -4.0).astype(np.float32)))
    report = import_labels(project, masks.get)
    assert report.imported == ["im0", "im1"] and project.has_committed_mask("im0")


def test_unreadable_masks_are_refused_and_a_failed_write_stops_with_the_files_intact(tmp_path, monkeypatch):
    masks = data_set(tmp_path / "data", n=3)
    project = detected_project(tmp_path, masks)

    def read(stem):
        if stem == "im1":
            raise OSError("disk error")
        return masks[stem]

    report = import_labels(project, read)
    assert report.imported == ["im0", "im2"] and report.refused == [("im1", "unreadable mask: disk error")]

    import model.atomic

    monkeypatch.setattr(model.atomic.os, "replace", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(ProjectWriteError):
        import_labels(project, masks.get, stems=["im1"])  # refused above: it has no committed mask yet
    monkeypatch.undo()
    assert not ReviewProject.open(project.folder).has_committed_mask("im1")


def test_cli_takes_the_ground_truth_beside_the_source_or_a_folder(tmp_path, capsys):
    masks = data_set(tmp_path / "data")
    project = detected_project(tmp_path, masks)
    cv2.imwrite(str(tmp_path / "data" / "masks" / "im5.png"), np.full(SHAPE, 128, np.uint8))  # interpolated
    project.set_status("im3", ReviewStatus.ACCEPTED)
    capsys.readouterr()
    assert main(["import-labels", str(project.folder)]) == 0
    out, err = capsys.readouterr()
    assert out == (f"{project.folder}: 4 masks committed, 1 reviewed frame left alone, 1 mask refused "
                   f"(masks from {tmp_path / 'data' / 'masks'})\n")
    # interpolated through and through: it would commit an empty mask over a frame with a target
    assert ("refused im5: all its 768 nonzero pixels are strictly between 0 and 255 (interpolated or coloured "
            "mask?): none is "
            "target, so it would commit an empty mask") in err
    opened = ReviewProject.open(project.folder)
    for stem in ("im0", "im1", "im2", "im4"):
        np.testing.assert_array_equal(opened.committed_mask(stem), masks[stem])
    assert not opened.has_committed_mask("im5")

    other = tmp_path / "corrected"
    other.mkdir()
    cv2.imwrite(str(other / "im0_pixels0.png"), box(10, 10).astype(np.uint8) * 255)
    assert main(["import-labels", str(project.folder), "--masks", str(other)]) == 0
    assert ("0 masks committed, 1 frame kept its own committed mask, 4 frames "
            "without a mask") in capsys.readouterr().out
    assert main(["import-labels", str(project.folder), "--masks", str(other), "--replace"]) == 0
    np.testing.assert_array_equal(ReviewProject.open(project.folder).committed_mask("im0"), box(10, 10))

    assert main(["import-labels", str(project.folder), "--masks", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: --masks {tmp_path / 'nope'}: no such folder\n"
    (tmp_path / "data" / "masks").rename(tmp_path / "data" / "moved")
    assert main(["import-labels", str(project.folder)]) == 2
    assert "no masks/ folder beside" in capsys.readouterr().err


def test_cli_fails_when_no_mask_is_named_after_a_frame(tmp_path, capsys):
    masks = data_set(tmp_path / "data", n=4)
    project = detected_project(tmp_path, masks)
    project.set_status("im0", ReviewStatus.ACCEPTED)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for stem, mask in masks.items():
        cv2.imwrite(str(renamed / f"mask_{stem}.png"), mask.astype(np.uint8) * 255)
    capsys.readouterr()
    assert main(["import-labels", str(project.folder), "--masks", str(renamed)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: no mask file in {renamed} is named after one of the 3 unreviewed frames of "
                   f"{project.folder}: frame 'im1' takes a mask named im1.png or im1_pixels0.png (or another "
                   "image type), but the folder holds names such as 'mask_im0.png'\n")
    assert not any(ReviewProject.open(project.folder).has_committed_mask(stem) for stem in masks)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import-labels", str(project.folder), "--masks", str(empty)]) == 1
    assert capsys.readouterr().err.endswith("(or another image type), and the folder holds no image file\n")


def test_cli_records_the_frame_each_mask_is_committed_over_and_export_skips_a_frame_replaced_since(tmp_path, capsys):
    """Audit s18 finding 1: masks committed by import-labels held no fingerprint, so export paired frames
    replaced on disk under the same names with the masks drawn on the old ones."""
    from app.core.frames import frame_digest, open_source

    masks = data_set(tmp_path / "data", n=3)
    project = detected_project(tmp_path, masks)
    images = tmp_path / "data" / "images"
    (images / "im2.png").write_bytes((images / "im2.png").read_bytes()[:80])  # unreadable now
    capsys.readouterr()
    assert main(["import-labels", str(project.folder)]) == 0
    captured = capsys.readouterr()
    assert "2 masks committed, 1 mask refused" in captured.out
    assert "refused im2: its frame cannot be read to record which pixels the mask is committed over" in captured.err
    opened = ReviewProject.open(project.folder)
    with open_source(images) as source:
        for i, stem in enumerate(("im0", "im1")):
            assert opened.committed_frame_sha1(stem) == frame_digest(source.frame(i))
    assert not opened.has_committed_mask("im2")

    other = np.full(SHAPE, 90, np.uint8)  # im1 replaced on disk by another frame of the same name and size
    cv2.imwrite(str(images / "im1.png"), other)
    assert opened.frame_change("im1", other).mask
    assert main(["export", str(project.folder), "--out", str(tmp_path / "ds"), "--include-unreviewed"]) == 0
    assert "1 frame not exported: its pixels differ" in capsys.readouterr().err
    exported = sorted(p.name for p in (tmp_path / "ds" / "masks").iterdir())
    assert exported == ["data_im0.png"]


def test_cli_fails_when_every_mask_is_refused_or_the_source_is_gone(tmp_path, capsys):
    masks = data_set(tmp_path / "data", n=2)
    project = detected_project(tmp_path, masks)
    small = tmp_path / "small"
    small.mkdir()
    for stem in masks:
        cv2.imwrite(str(small / f"{stem}.png"), np.zeros((12, 16), np.uint8))
    capsys.readouterr()
    assert main(["import-labels", str(project.folder), "--masks", str(small)]) == 1
    captured = capsys.readouterr()
    assert "0 masks committed, 2 masks refused" in captured.out
    assert captured.err.endswith("error: no mask committed: 2 refused (named above)\n")
    assert not any(ReviewProject.open(project.folder).has_committed_mask(stem) for stem in masks)

    (tmp_path / "data").rename(tmp_path / "moved")
    assert main(["import-labels", str(project.folder), "--masks", str(tmp_path / "moved" / "masks")]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot open the project's source to read the frames the masks are committed over: "
        f"{tmp_path / 'data' / 'images'}: no such file or folder\n")


@pytest.mark.gui
def test_the_window_commits_the_ground_truth_in_the_background(window, fresh_sequence, qtbot, monkeypatch):
    import threading

    from PySide6 import QtGui

    from tests.gui_review_helpers import open_project

    open_project(window, qtbot, fresh_sequence)
    session = window.session
    gate, read = threading.Event(), session.ground_truth.mask

    def held_read(stem):  # the commit's reads wait for the gate; the frames shown and read ahead do not
        thread = threading.current_thread()
        if thread is not threading.main_thread() and not thread.name.startswith(("layer-reader", "layer-prefetch")):
            assert gate.wait(10), "the gate was never opened"
        return read(stem)

    monkeypatch.setattr(session.ground_truth, "mask", held_read)
    own = np.zeros(session.frame(1).shape, bool)
    own[5, 5] = True
    session.commit_mask(1, own)  # the analyst's own mask on frame 1, not yet reviewed
    session.set_status(2, ReviewStatus.REJECTED)
    window.timeline.go_to(3)
    tools = window.review_tools
    action = next(a for a in window.menuBar().findChildren(QtGui.QAction) if a.text() == "Commit &ground-truth masks")
    action.trigger()
    assert tools.writing  # until its result is taken in on this thread
    window.run_detection("frame")
    assert window.statusBar().message() == ("The ground-truth masks are being committed; run the detector "
                                                   "when it is done.")
    assert not tools.review_panel.accept_next.isEnabled()
    assert not session.project.has_committed_mask(session.stem(0))
    gate.set()
    qtbot.waitUntil(lambda: not tools.writing, timeout=30000)
    qtbot.waitUntil(lambda: "Ground truth: 58 masks committed" in window.statusBar().message(), timeout=5000)
    assert ("1 frame kept its own committed mask, 1 reviewed frame left alone"
            in window.statusBar().message())
    truth = session.ground_truth
    for i in (0, 3, 59):
        np.testing.assert_array_equal(session.project.committed_mask(session.stem(i)), truth.mask(session.stem(i)))
    np.testing.assert_array_equal(window.layers.committed, truth.mask(session.stem(3)))  # the frame shown follows
    assert session.status(3) is ReviewStatus.UNREVIEWED
    assert session.project.committed_mask(session.stem(1)).sum() == 1 and not session.project.has_committed_mask(
        session.stem(2))
    assert tools.review_panel.model.rowCount() == 60 and tools.review_panel.accept_next.isEnabled()


@pytest.mark.gui
def test_opening_another_sequence_stops_the_import_between_frames(window, fresh_sequence, qtbot, monkeypatch):
    import time

    from PySide6 import QtGui

    from tests.gui_review_helpers import open_project

    open_project(window, qtbot, fresh_sequence)
    session, tools = window.session, window.review_tools
    read = session.ground_truth.mask
    monkeypatch.setattr(session.ground_truth, "mask", lambda stem: time.sleep(0.02) or read(stem))
    next(a for a in window.menuBar().findChildren(QtGui.QAction) if a.text() == "Commit &ground-truth masks").trigger()
    qtbot.waitUntil(lambda: session.project.has_committed_mask(session.stem(2)), timeout=10000)
    project = session.project
    open_project(window, qtbot, fresh_sequence)  # the same folder again: a new session
    assert not tools.writing and tools.review_panel.accept_next.isEnabled()
    committed = [project.has_committed_mask(stem) for stem in project.stems]
    assert 3 <= sum(committed) < 60 and committed == sorted(committed, reverse=True)  # stopped between frames


def test_the_apps_import_reads_the_frames_from_a_source_of_its_own_not_the_views_cache(tmp_path, monkeypatch):
    """Audit s18 item 9: the app's import (a worker thread) fingerprinted each frame through the session's
    `frame_sha1_of`, the view's frame source: it evicted the frames shown from its cache and turned its read-ahead
    round the imported frames."""
    from app.core.frames import frame_digest, open_source
    from app.session import ReviewSession

    masks = data_set(tmp_path / "data", n=4)
    session = ReviewSession.open(tmp_path / "data")
    try:
        project = session.ensure_project()
        assert project.frame_sha1_of is not None  # the session's: through the view's cache
        viewed = []
        real_frame = session.source.frame
        monkeypatch.setattr(session.source, "frame", lambda i: viewed.append(i) or real_frame(i))
        report = import_labels(project, session.ground_truth.mask)
        assert sorted(report.imported) == sorted(masks) and viewed == []
        with open_source(tmp_path / "data") as source:
            assert [project.committed_frame_sha1(stem) for stem in source.stems] == [
                frame_digest(source.frame(i)) for i in range(len(source))]
        # a source that cannot be opened any more (moved): the project's own frame_sha1_of, as before
        project.commit_mask("im0", np.zeros(SHAPE, bool))  # differs from the reference: replaced below
        viewed.clear()
        monkeypatch.setattr(ReviewProject, "source_path", property(lambda self: tmp_path / "gone"))
        assert import_labels(project, session.ground_truth.mask, stems=["im0"], replace=True).imported == ["im0"]
        assert viewed == [0]
    finally:
        session.close()


def test_an_import_records_the_fingerprints_it_is_given(tmp_path):
    masks = data_set(tmp_path / "data", n=2)
    project = detected_project(tmp_path, masks)
    assert project.frame_sha1_of is None
    report = import_labels(project, lambda stem: masks[stem], frame_sha1_of=lambda stem: f"{stem:0>40}")
    assert report.imported == ["im0", "im1"]
    assert project.committed_frame_sha1("im1") == f"{'im1':0>40}"
    refused = import_labels(project, lambda stem: ~masks[stem], replace=True,
                            frame_sha1_of=lambda stem: (_ for _ in ()).throw(OSError("gone")))
    assert [stem for stem, _ in refused.refused] == ["im0", "im1"]
