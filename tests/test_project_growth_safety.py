"""A project following a source that grew (review s27): the app's follow recorded the frame list only, so a frame
added of another size took the project's one size (its mask refused, its negative exported at the wrong size); a
window open before the source grew dropped the detections.csv rows `irsam detect` wrote for the frames added; and a
TIFF stack, whose pages are named by position, was followed when a page was inserted, its statuses then on other
pages. Real IR_DRONE_146 frames."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from app.cli import main
from app.core.export import export_project
from app.core.project import ProjectError, ReviewProject, ReviewStatus, follows
from app.session import ReviewSession
from model.detectors import FrameResult

CLIP = Path("/work/shared/data/sequences/IR_DRONE_146/images")


def clip_frame(i: int) -> np.ndarray:
    return cv2.imread(str(CLIP / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)


def detect(source: Path, out: Path, *extra: str) -> int:
    return main(["detect", str(source), "--out", str(out), "--method", "tophat", "--quiet", *extra])


@pytest.fixture
def three_frames(tmp_path) -> tuple[Path, Path]:
    """(frames folder, its project where the app looks for it) of real frames 1..3, detected."""
    frames, out = tmp_path / "clip" / "images", tmp_path / "clip" / "images.irsam-review"
    frames.mkdir(parents=True)
    for i in (1, 2, 3):
        shutil.copy(CLIP / f"{i:06d}.png", frames / f"{i:06d}.png")
    assert detect(frames, out) == 0
    return frames, out


def test_the_app_records_the_size_of_a_frame_added_of_another_size(three_frames, tmp_path):
    frames, out = three_frames
    cv2.imwrite(str(frames / "000004.png"), clip_frame(4)[:100, :120])
    session = ReviewSession.open(frames)
    try:
        assert session.project.stems[-1] == "000004" and session.project.shape_of("000004") == (100, 120)
        assert session.project.shape_of("000001") == (256, 320)
        mask = np.zeros((100, 120), bool)
        mask[10:12, 10:12] = True
        session.commit_mask(3, mask)
        session.set_status(2, ReviewStatus.NEGATIVE)
    finally:
        session.close()
    project = ReviewProject.open(out)
    assert json.loads((out / "project.json").read_text())["source"]["frame_shapes"]["000004"] == [100, 120]
    assert project.committed_mask("000004").shape == (100, 120)
    project.set_status("000004", ReviewStatus.NEGATIVE)
    export_project(project, tmp_path / "ds", "sirst")
    for stem, shape in (("000003", (256, 320)), ("000004", (100, 120))):
        mask_file, = (tmp_path / "ds").rglob(f"masks/*{stem}*")
        image_file, = (tmp_path / "ds").rglob(f"images/*{stem}*")
        assert cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED).shape == shape
        assert cv2.imread(str(image_file), cv2.IMREAD_UNCHANGED).shape[:2] == shape


def test_the_app_refuses_a_grown_source_whose_frame_with_work_changed_size(three_frames):
    frames, out = three_frames
    cv2.imwrite(str(frames / "000002.png"), clip_frame(2)[:100, :120])  # holds a proposal
    shutil.copy(CLIP / "000004.png", frames / "000004.png")
    session = ReviewSession.open(frames)
    try:
        assert session.project_dir == out.with_name(out.name + "-new")
        assert "000002: 320x256 in the project, 120x100 now" in session.warnings[0]
    finally:
        session.close()
    assert ReviewProject.open(out).stems == ["000001", "000002", "000003"]


def detection_rows(out: Path) -> list[tuple[str, str]]:
    with open(out / "detections.csv") as f:
        return [(row["frame"], row["stem"]) for row in csv.DictReader(f)]


def spot_frame(path: Path) -> None:
    """A frame with one target: each frame has a row in detections.csv."""
    frame = np.full((64, 80), 40, np.uint8)
    frame[30:33, 40:43] = 250
    cv2.imwrite(str(path), frame)


def test_a_window_open_before_the_source_grew_keeps_the_rows_of_the_frames_added(tmp_path):
    frames, out = tmp_path / "images", tmp_path / "images.irsam-review"
    frames.mkdir()
    for i in (1, 2, 3):
        spot_frame(frames / f"{i:06d}.png")
    assert detect(frames, out) == 0
    window = ReviewSession.open(frames)  # over the 3 frames
    try:
        spot_frame(frames / "000004.png")
        assert detect(frames, out, "--skip-done") == 0
        assert ("3", "000004") in detection_rows(out)
        logits = np.full((64, 80), -5, np.float32)
        logits[10:13, 10:13] = 5
        window.project.save_prediction("000001", FrameResult(logits=logits, edge=None))
        window.project.flush_detections()
    finally:
        window.close()
    rows = detection_rows(out)
    assert ("3", "000004") in rows and ("0", "000001") in rows
    assert {stem: frame for frame, stem in rows} == {f"{i:06d}": str(i - 1) for i in (1, 2, 3, 4)}
    assert ReviewProject.open(out).stems == [f"{i:06d}" for i in (1, 2, 3, 4)]


def test_the_window_that_grew_the_project_keeps_the_frames_a_stale_instance_lists_fewer_of(three_frames):
    frames, out = three_frames
    stale = ReviewProject.open(out)
    shutil.copy(CLIP / "000004.png", frames / "000004.png")
    shutil.copy(CLIP / "000005.png", frames / "000005.png")
    ReviewSession.open(frames).close()  # follows the source to 5 frames
    stale.follow_source(stale.stems + ["000004"])  # an instance that saw the source when it had 4 frames
    assert ReviewProject.open(out).stems == [f"{i:06d}" for i in range(1, 6)]
    assert stale.stems == [f"{i:06d}" for i in range(1, 6)]


def test_a_tiff_stack_that_gained_a_page_is_not_followed(tmp_path, capsys):
    """Its pages are named by position: a page inserted after the first looks like one appended at the end."""
    stack, out = tmp_path / "flight.tif", tmp_path / "flight.tif.irsam-review"
    pages = [cv2.imread(str(CLIP / f"{i:06d}.png"), cv2.IMREAD_GRAYSCALE) for i in (1, 2, 3, 50)]
    tifffile.imwrite(stack, np.stack(pages[:3]), photometric="minisblack")
    assert detect(stack, out) == 0
    project = ReviewProject.open(out)
    project.set_status("flight_000002", ReviewStatus.CORRECTED)
    project.set_status("flight_000003", ReviewStatus.REJECTED)
    stored = json.loads((out / "project.json").read_text())
    inserted = [pages[0], pages[3], pages[1], pages[2]]  # a page inserted after the first
    tifffile.imwrite(stack, np.stack(inserted), photometric="minisblack")
    capsys.readouterr()
    assert detect(stack, out, "--skip-done") == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds a project over different frames: in {stack.resolve()}, 1 frame added (flight_000004). "
        "A TIFF stack's pages are named by their position, so a page added to it cannot be told from a page "
        "inserted, which would put the project's statuses and masks of the pages after it on other pages: restore "
        "the stack as it was, or start a new project over the frames there now (irsam detect into a new --out)\n")
    with pytest.raises(ProjectError, match=r"no longer holds the frames of the project .*1 frame added "
                                           r"\(flight_000004\)\. A TIFF stack's pages are named by their position"):
        ReviewSession.open(out)
    session = ReviewSession.open(stack)
    try:
        assert session.project_dir == out.with_name(out.name + "-new") and "A TIFF stack's pages" in session.warnings[0]
    finally:
        session.close()
    assert json.loads((out / "project.json").read_text()) == stored
    reopened = ReviewProject.open(out)
    assert reopened.status("flight_000002") is ReviewStatus.CORRECTED
    assert reopened.status("flight_000003") is ReviewStatus.REJECTED


def test_follows_takes_frames_added_after_the_last_only():
    stored = ["a", "b", "c"]
    assert follows(stored, stored) and follows(stored, stored + ["d", "e"])
    assert not follows(stored, ["a", "a2", "b", "c"]) and not follows(stored, ["0", "a", "b", "c"])
    assert not follows(stored, ["b", "a", "c", "d"]) and not follows(stored, ["a", "c", "d"])
    assert follows(stored, ["a", "a2", "b", "c", "d"], unreadable={"a2"})  # projects made before session 11
    assert not follows(stored, stored + ["d"], "tiff") and follows(stored, stored, "tiff")
