"""A project whose source gained or lost frames since (audit s27): `irsam detect SRC --out PROJ` was refused with
"PROJ holds a project over different frames", naming no frame and no way out, even for a clip that only grew.
A clip that grew at its end is taken up, the new frames unreviewed, by the command and the app alike; a frame gone,
or one inserted before the project's last frame, is still refused, named, with what to do. Real IR_DRONE_146
frames."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.core.project import ProjectError, ReviewProject, ReviewStatus
from app.session import ReviewSession

CLIP = Path("/work/shared/data/sequences/IR_DRONE_146/images")
WINDOW = ["--window", "10", "200"]  # not the default of an 8-bit clip: the app must take the project's


def copy_frames(frames: Path, first: int, last: int) -> None:
    frames.mkdir(parents=True, exist_ok=True)
    for i in range(first, last + 1):
        shutil.copy(CLIP / f"{i:06d}.png", frames / f"{i:06d}.png")


@pytest.fixture
def reviewed(tmp_path) -> tuple[Path, Path]:
    """(frames folder, project) of real frames 1..5, detected, frame 2 corrected with a committed mask, frame 3
    rejected."""
    frames, out = tmp_path / "clip" / "images", tmp_path / "clip" / "images.irsam-review"  # where the app looks
    copy_frames(frames, 1, 5)
    assert main(["detect", str(frames), "--out", str(out), "--method", "tophat", "--quiet", *WINDOW]) == 0
    project = ReviewProject.open(out)
    mask = np.zeros(project.shape_of("000002"), bool)
    mask[100:103, 50:54] = True
    project.commit_mask("000002", mask)
    project.set_status("000002", ReviewStatus.CORRECTED)
    project.set_status("000003", ReviewStatus.REJECTED)
    return frames, out


def assert_review_work_kept(project: ReviewProject) -> None:
    assert project.status("000002") is ReviewStatus.CORRECTED and project.committed_mask("000002").sum() == 12
    assert project.status("000003") is ReviewStatus.REJECTED


def test_detect_takes_up_frames_added_to_the_source(reviewed, capsys):
    frames, out = reviewed
    copy_frames(frames, 6, 8)
    capsys.readouterr()
    assert main(["detect", str(frames), "--out", str(out), "--method", "tophat", "--quiet", "--skip-done"]) == 0
    said = capsys.readouterr().out
    assert "3 frames in" in said  # the new ones only: the others are already proposed
    assert (f"{out}: 3 frames added to the source since the project was made, now frames of it (unreviewed): "
            "000006, 000007, 000008\n") in said
    project = ReviewProject.open(out)
    assert project.stems == [f"{i:06d}" for i in range(1, 9)]
    assert all(project.has_prediction(stem) for stem in project.stems)
    assert [project.status(f"{i:06d}") for i in (6, 7, 8)] == [ReviewStatus.UNREVIEWED] * 3
    assert_review_work_kept(project)


def test_a_frame_inserted_between_the_project_s_frames_is_refused_naming_it_and_the_way_out(reviewed, capsys):
    """Only frames added after the project's last one are taken up (review s27 finding 4): one inserted before it
    would move the frames after it to other indices (detections.csv's frame column, the frame the window reopens
    on)."""
    frames, out = reviewed
    stored = json.loads((out / "project.json").read_text())["stems"]
    shutil.copy(CLIP / "000009.png", frames / "000004_5.png")
    capsys.readouterr()
    assert main(["detect", str(frames), "--out", str(out), "--method", "tophat", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} holds a project over different frames: in {frames.resolve()}, 1 frame inserted among the "
        "project's frames (000004_5). A project takes up only frames added after its last frame (000005): a frame "
        "inserted before it moves the frames after it to other positions (the frame column of detections.csv, the "
        "frame the window reopens on). Move the inserted frames out of the folder (or name them to sort after "
        "000005) and run again, or start a new project over the frames there now (irsam detect into a new --out)\n")
    with pytest.raises(ProjectError, match=r"no longer holds the frames of the project .*1 frame inserted among the "
                                           r"project's frames \(000004_5\)\. A project takes up only frames added"):
        ReviewSession.open(out)
    session = ReviewSession.open(frames)  # the app leaves the project as it is and works in a new folder beside it
    try:
        assert session.project_dir == out.with_name(out.name + "-new")
        assert len(session.warnings) == 1 and "1 frame inserted among the project's frames (000004_5)" in (
            session.warnings[0])
    finally:
        session.close()
    assert json.loads((out / "project.json").read_text())["stems"] == stored
    assert_review_work_kept(ReviewProject.open(out))
    (frames / "000004_5.png").rename(frames / "000006.png")  # named to sort after the project's last frame
    assert main(["detect", str(frames), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    assert ReviewProject.open(out).stems == stored + ["000006"]


def test_a_frame_removed_from_the_source_is_refused_naming_it_and_the_way_out(reviewed, capsys):
    frames, out = reviewed
    stored = json.loads((out / "project.json").read_text())["stems"]
    (frames / "000003.png").unlink()
    copy_frames(frames, 6, 6)
    capsys.readouterr()
    for extra in ([], ["--follow-source"]):
        assert main(["detect", str(frames), "--out", str(out), "--method", "tophat", "--quiet", *extra]) == 2
        assert capsys.readouterr().err == (
            f"error: {out} holds a project over different frames: in {frames.resolve()}, 1 frame removed (000003), "
            "1 added (000006). The project keeps its review work per frame, and would lose that of the frames "
            "gone: restore the frames as they were and run again, or start a new project over the frames there "
            "now (irsam detect into a new --out)\n")
    assert json.loads((out / "project.json").read_text())["stems"] == stored
    assert_review_work_kept(ReviewProject.open(out))
    (frames / "000006.png").unlink()
    copy_frames(frames, 3, 3)  # restored: the project follows it again
    assert main(["detect", str(frames), "--out", str(out), "--method", "tophat", "--quiet"]) == 0


@pytest.mark.parametrize("opened", ["project", "source"])
def test_the_app_opens_a_project_whose_source_grew_with_its_work_and_normalisation(reviewed, opened):
    frames, out = reviewed
    copy_frames(frames, 6, 7)
    session = ReviewSession.open(out if opened == "project" else frames)
    try:
        assert session.warnings == ["2 frames added to the source since the project was made, now frames of it "
                                    "(unreviewed): 000006, 000007"]  # said on opening
        assert session.project_dir == out and len(session) == 7
        assert session.normalization.to_dict() == ReviewProject.open(out).normalization
        assert [session.status(i) for i in range(7)] == [ReviewStatus.UNREVIEWED, ReviewStatus.CORRECTED,
                                                         ReviewStatus.REJECTED] + [ReviewStatus.UNREVIEWED] * 4
    finally:
        session.close()
    assert ReviewProject.open(out).stems == [f"{i:06d}" for i in range(1, 8)]


def test_a_frame_list_change_names_what_differs(reviewed):
    from app.core.project import frame_list_change

    stored = [f"{i:06d}" for i in range(1, 11)]
    assert frame_list_change(stored, stored[:3] + stored[4:] + ["000011", "000012"]) == (
        "1 frame removed (000004), 2 added (000011, 000012)")
    assert frame_list_change(stored, stored[7:]) == (
        "7 frames removed (000001, 000002, 000003, 000004, 000005 and 2 more)")
    assert frame_list_change(["a", "b", "c"], ["b", "a", "c", "d"]) == "2 frames in another order (b, a), 1 added (d)"
    project = ReviewProject.open(reviewed[1])
    with pytest.raises(ProjectError, match=r"in \S+, 2 frames in another order \(000002, 000001\)\. The project"):
        project.follow_source(["000002", "000001", "000003", "000004", "000005"])
    assert_review_work_kept(ReviewProject.open(reviewed[1]))
