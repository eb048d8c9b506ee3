"""A folder of frames of several sizes (a data set of single images, such as NUAA-SIRST's images/): every
frame keeps its own size through the project, propagation, export and `irsam detect`."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.core.export import export_project, read_exported_dataset
from app.core.frames import open_source
from app.core.normalization import Normalization
from app.core.project import ProjectError, ReviewProject, ReviewStatus
from app.core.propagation import STOP_SIZE, apply_propagation, propagate
from model.detectors import FrameResult

SIZES = [(24, 32), (24, 32), (40, 28), (24, 32), (31, 45)]  # (height, width) of frames 0-4
NORMALIZATION = Normalization.identity8()


def write_mixed(folder: Path) -> list[np.ndarray]:
    """Frames of SIZES, each a dim background with a 3x3 bright target at (6 + i, 8 + i)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, (h, w) in enumerate(SIZES):
        frame = np.random.default_rng(i).integers(20, 40, (h, w)).astype(np.uint8)
        frame[6 + i : 9 + i, 8 + i : 11 + i] = 220
        cv2.imwrite(str(folder / f"img{i}.png"), frame)
        frames.append(frame)
    return frames


def box(shape, y, x, size=3):
    mask = np.zeros(shape, bool)
    mask[y : y + size, x : x + size] = True
    return mask


def mixed_project(tmp_path):
    write_mixed(tmp_path / "frames")
    source = open_source(tmp_path / "frames", prefetch=0)
    project = ReviewProject.create(tmp_path / "project", source.path, source.kind, source.stems,
                                   source.size_record(), NORMALIZATION.to_dict())
    return source, project


def test_the_project_keeps_each_frames_size(tmp_path):
    source, project = mixed_project(tmp_path)
    assert source.shape is None and project.frame_shape is None
    assert [project.shape_of(s) for s in project.stems] == SIZES
    assert project.size_text() == source.size_text() == "3 sizes, widths 28-45, heights 24-40"
    project.save_prediction("img2", FrameResult(np.where(box((40, 28), 8, 10), 3.0, -3.0).astype(np.float32)))
    project.commit_mask("img4", box((31, 45), 10, 12))
    with pytest.raises(ValueError, match=r"mask shape \(24, 32\) != frame shape \(31, 45\)"):
        project.commit_mask("img4", np.zeros((24, 32), bool))
    with pytest.raises(ValueError, match="logits shape"):
        project.save_prediction("img0", FrameResult(np.zeros((40, 28), np.float32)))
    assert project.working_mask("img3").shape == (24, 32) and not project.working_mask("img3").any()
    assert project.working_mask("img2").sum() == 9

    reopened = ReviewProject.open(tmp_path / "project")
    assert reopened.damaged == [] and [reopened.shape_of(s) for s in reopened.stems] == SIZES
    np.testing.assert_array_equal(reopened.committed_mask("img4"), box((31, 45), 10, 12))
    meta = json.loads((tmp_path / "project" / "project.json").read_text())
    assert meta["source"]["frame_shape"] is None and meta["source"]["frame_shapes"]["img2"] == [40, 28]


def test_a_label_of_another_size_is_reported_damaged_on_open(tmp_path):
    _, project = mixed_project(tmp_path)
    project.commit_mask("img2", box((40, 28), 1, 1))
    cv2.imwrite(str(tmp_path / "project" / "labels" / "img2.png"), np.zeros((24, 32), np.uint8))
    reopened = ReviewProject.open(tmp_path / "project")
    assert [(p.name, reason) for p, reason in reopened.damaged] == [
        ("img2.png", "expected 28x40 8-bit gray, got 32x24 depth 8 color 0")]
    assert reopened.committed_mask("img2") is None


def test_reopening_refuses_only_frames_whose_work_no_longer_fits(tmp_path):
    source, project = mixed_project(tmp_path)
    project.commit_mask("img2", box((40, 28), 1, 1))
    stems = source.stems
    moved = dict(source.size_record(), img1=(50, 50))  # no work on img1: its new size is taken
    again = ReviewProject.create(tmp_path / "project", source.path, "folder", stems, moved,
                                 NORMALIZATION.to_dict(), exist_ok=True)
    assert again.shape_of("img1") == (50, 50) and again.shape_of("img2") == (40, 28)
    changed = dict(moved, img2=(41, 28))
    with pytest.raises(ProjectError, match=r"another size \(img2: 28x40 in the project, 28x41 now\)"):
        ReviewProject.create(tmp_path / "project", source.path, "folder", stems, changed,
                             NORMALIZATION.to_dict(), exist_ok=True)
    uniform = ReviewProject.create(tmp_path / "other", source.path, "folder", stems, (24, 32),
                                   NORMALIZATION.to_dict())
    uniform.commit_mask("img0", box((24, 32), 1, 1))
    # a project made when the other sizes were unreadable frames follows the folder opened as mixed
    follows = ReviewProject.create(tmp_path / "other", source.path, "folder", stems, source.size_record(),
                                   NORMALIZATION.to_dict(), exist_ok=True)
    assert follows.frame_shape is None and follows.shape_of("img4") == (31, 45)
    assert follows.committed_mask("img0").sum() == 9


def test_a_frame_unreadable_at_creation_takes_its_size_when_first_saved(tmp_path):
    source, _ = mixed_project(tmp_path)
    record = source.size_record()
    del record["img4"]
    project = ReviewProject.create(tmp_path / "p2", source.path, "folder", source.stems, record,
                                   NORMALIZATION.to_dict())
    with pytest.raises(KeyError):
        project.shape_of("img4")
    project.commit_mask("img4", box((31, 45), 2, 2))
    assert ReviewProject.open(tmp_path / "p2").shape_of("img4") == (31, 45)


def test_propagation_stops_at_a_frame_of_another_size(tmp_path):
    source, project = mixed_project(tmp_path)
    project.commit_mask("img0", box((24, 32), 6, 8))
    result = propagate(project, source, NORMALIZATION, "img0", 1, mode="track")
    assert [stem for stem, _ in result.frames] == ["img1"]
    assert result.stopped_at == "img2" and result.reason == f"{STOP_SIZE}: 28x40, not 32x24"
    assert apply_propagation(project, result) == ["img1"]
    project.commit_mask("img3", box((24, 32), 9, 11))
    back = propagate(project, source, NORMALIZATION, "img3", -1, mode="copy")
    assert back.frames == [] and back.stopped_at == "img2"


def test_export_writes_each_frame_at_its_own_size(tmp_path):
    source, project = mixed_project(tmp_path)
    frames = [source.frame(i) for i in range(len(source))]
    project.commit_mask("img2", box((40, 28), 8, 10))
    project.set_status("img2", ReviewStatus.CORRECTED)
    project.set_status("img4", ReviewStatus.NEGATIVE)
    project.commit_mask("img1", box((24, 32), 7, 9))
    project.set_status("img1", ReviewStatus.ACCEPTED)
    report = export_project(project, tmp_path / "out", "sirst", split="train", source=source, sequence_name="project")
    assert report.exported == ["project_img1", "project_img2", "project_img4"]
    samples = {stem: (image, mask) for stem, image, mask, _ in read_exported_dataset(tmp_path / "out", "sirst")}
    for i, expected in ((1, box((24, 32), 7, 9)), (2, box((40, 28), 8, 10)), (4, np.zeros((31, 45), bool))):
        image, mask = samples[f"project_img{i}"]
        np.testing.assert_array_equal(image, frames[i])
        np.testing.assert_array_equal(mask, expected)


def test_detect_cli_over_a_folder_of_several_sizes(tmp_path, capsys):
    write_mixed(tmp_path / "frames")
    out = tmp_path / "run"
    assert main(["detect", str(tmp_path / "frames"), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "5 frames 3 sizes, widths 28-45, heights 24-40 uint8" in said
    project = ReviewProject.open(out)
    for stem, size in zip(project.stems, SIZES):
        assert project.prediction_mask(stem).shape == size
    # with --limit, the size said is that of the frames run on (the first two are both 32x24)
    assert main(["detect", str(tmp_path / "frames"), "--out", str(tmp_path / "two"), "--method", "tophat", "--quiet",
                 "--limit", "2"]) == 0
    assert SIZES[:2] == [(24, 32)] * 2 and "the first 2 of 5 frames, 32x24 uint8" in capsys.readouterr().out
    assert main(["info", str(out)]) == 0
    assert "frames:        5, 3 sizes, widths 28-45, heights 24-40 (width x height)" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "frames")]) == 0
    assert "size:          3 sizes, widths 28-45, heights 24-40 (width x height)" in capsys.readouterr().out


@pytest.mark.gui
def test_the_review_window_edits_frames_of_several_sizes(window, tmp_path, qtbot):
    from app.editing import Tool
    from tests.gui_review_helpers import committed, drag, open_project, predict_ground_truth

    sizes = [(48, 64), (90, 70), (48, 64), (60, 120)]
    (tmp_path / "data" / "masks").mkdir(parents=True)
    for i, (h, w) in enumerate(sizes):
        frame = np.random.default_rng(i).integers(20, 40, (h, w)).astype(np.uint8)
        truth = box((h, w), 10 + 5 * i, 12 + 6 * i, 4)
        frame[truth] = 230
        cv2.imwrite(str(tmp_path / "data" / f"f{i}.png"), frame)
        cv2.imwrite(str(tmp_path / "data" / "masks" / f"f{i}.png"), truth.astype(np.uint8) * 255)
    predict_ground_truth(tmp_path / "data")
    open_project(window, qtbot, tmp_path / "data")
    assert "4 frames, 3 sizes, widths 64-120, heights 48-90" in window.statusBar().message()
    for i in (1, 3, 0, 2, 1):
        window.timeline.go_to(i)
        qtbot.waitUntil(lambda: window.frame_view.image.image.shape == sizes[i], timeout=5000)
        assert window.layers.truth_mask.shape == sizes[i]
    assert window.index == 1
    window.review_tools.palette.brush_size.setValue(1)
    window.review_tools.palette.set_tool(Tool.BRUSH)
    drag(window, [(60, 80), (65, 80)])  # the far corner of a frame larger than the first
    mask = committed(window)
    assert mask.shape == (90, 70)
    assert mask[80, 60:66].all() and mask[15:19, 18:22].all() and mask.sum() == 16 + 6
    window.timeline.go_to(3)
    qtbot.waitUntil(lambda: window.frame_view.image.image.shape == (60, 120), timeout=5000)
    drag(window, [(110, 50), (115, 55)])
    assert committed(window).shape == (60, 120) and committed(window)[50:56, 110:116].any()
    reopened = ReviewProject.open(window.session.project.folder)
    assert reopened.committed_mask("f1").shape == (90, 70) and reopened.committed_mask("f3").shape == (60, 120)


def test_the_review_queue_compares_a_frame_only_with_a_previous_frame_of_its_size(tmp_path):
    from app.core.review_queue import summarize

    _, project = mixed_project(tmp_path)
    for stem in project.stems:
        h, w = project.shape_of(stem)
        project.save_prediction(stem, FrameResult(np.where(box((h, w), 2, 2), 4.0, -4.0).astype(np.float32)))
    # sizes 24x32, 24x32, 40x28, 24x32, 31x45: only frame 1 follows a frame of its own size
    assert [s.change_from_previous for s in summarize(project)] == [None, 0, None, None, None]
    assert summarize(project, [2, 3]) == summarize(project)[2:5]
