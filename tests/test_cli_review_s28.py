"""What a review of import-labels, train's resume line, eval's plots and boxes.csv frame numbers found wrong: a stop
asked during an import's last frame reported the finished import as stopped; a reviewed frame's reference mask was
decoded only to count it as left alone (a resume with no validated epoch said "best val IoU -1.0000": checked in
test_resume_stacks_stems_s28); plots of
../best.pt were named irsam_.._best; "1e1" was refused as no whole number; and warnings caught while loading weights
were dropped when the loading failed."""
from __future__ import annotations

import os
import signal
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.core.frames import GroundTruth
from app.core.label_import import import_labels
from app.core.project import ReviewProject
from model.checkpoint import ResumeStateWarning
from model.evaluate import plot_name, resume_state_warning_to
from model.metrics import BoxesFileError, read_boxes_csv
from tests.test_export import reviewed_project
from tests.test_import_labels_s28 import fresh_project


def masks_of(project: ReviewProject, folder: Path) -> Path:
    """A 0/255 mask named after each of the project's frames, each unlike the others."""
    folder.mkdir()
    for i, stem in enumerate(project.stems):
        mask = np.zeros(project.frame_shape, np.uint8)
        mask[i : i + 2, 2 * i : 2 * i + 3] = 255
        cv2.imwrite(str(folder / f"{stem}.png"), mask)
    return folder


# --- 1. a stop asked during the last frame stops nothing ------------------------------------------------------------

@pytest.mark.parametrize("signum, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_stop_asked_during_the_last_frame_leaves_a_finished_import_reported_as_one(tmp_path, monkeypatch, capsys,
                                                                                      signum, name):
    """The signal lands while the last frame's mask is committed: every frame was imported, so the summary and exit
    status are those of a finished import (the refused mask named), not "stopped between two frames, after 6 of 6"
    with 130 or 143."""
    project = fresh_project(reviewed_project(tmp_path)[0], tmp_path / "fresh.irsam-review")
    masks = masks_of(project, tmp_path / "masks")
    cv2.imwrite(str(masks / f"{project.stems[0]}.png"), np.zeros((3, 3), np.uint8))  # another size: refused
    real_commit = ReviewProject.commit_edit

    def commit_edit(self, stem, *args, **kwargs):
        if stem == project.stems[-1]:
            os.kill(os.getpid(), signum)  # (handled in this, the main thread, before the commit returns)
        return real_commit(self, stem, *args, **kwargs)

    monkeypatch.setattr(ReviewProject, "commit_edit", commit_edit)
    code = main(["import-labels", str(project.folder), "--masks", str(masks)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "stopped" not in printed.err
    assert f"refused {project.stems[0]}: mask 3x3 differs from the frame's" in printed.err
    assert printed.out.startswith(f"{project.folder}: 5 masks committed, 1 mask refused (masks from {masks})")
    opened = ReviewProject.open(project.folder)
    assert [opened.has_committed_mask(stem) for stem in project.stems] == [False] + [True] * 5


def test_import_labels_says_it_stopped_only_when_frames_were_left(tmp_path):
    project = fresh_project(reviewed_project(tmp_path)[0], tmp_path / "fresh.irsam-review")
    masks = masks_of(project, tmp_path / "masks")
    cancelled = threading.Event()

    def read_mask(stem):
        if stem == project.stems[2]:
            cancelled.set()
        return cv2.imread(str(masks / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 0

    report = import_labels(project, read_mask, stems=project.stems[:3], cancelled=cancelled)
    assert (len(report.imported), report.stopped) == (3, False)  # set during the last frame: nothing left
    cancelled.clear()
    report = import_labels(project, read_mask, cancelled=cancelled)
    assert (len(report.unchanged), len(report.imported), report.stopped) == (3, 0, True)


# --- 4. a reviewed frame's mask is looked for, not read ------------------------------------------------------------

def test_a_reviewed_frames_mask_is_counted_as_left_alone_without_being_read(tmp_path, capsys):
    """Frames 0, 1, 2, 3 and 5 are reviewed, 4 is not. Reviewed frame 1's mask is interpolated (blurred): read, it
    was warned about though it is left alone; reviewed frame 2's is no image at all, and frame 3 has none."""
    project = reviewed_project(tmp_path)[0]
    masks = masks_of(project, tmp_path / "masks")
    stems = project.stems
    blurred = np.zeros(project.frame_shape, np.uint8)
    blurred[4:8, 4:8] = 255
    cv2.imwrite(str(masks / f"{stems[1]}.png"), cv2.GaussianBlur(blurred, (5, 5), 0))
    (masks / f"{stems[2]}.png").write_bytes(b"not an image")
    (masks / f"{stems[3]}.png").unlink()

    assert main(["import-labels", str(project.folder), "--masks", str(masks)]) == 0
    printed = capsys.readouterr()
    assert printed.err == ""  # no warning about a mask not taken
    assert printed.out.startswith(f"{project.folder}: 1 mask committed, 4 reviewed frames left alone (masks from")

    truth = GroundTruth(masks, None)
    read = []

    def read_mask(stem):
        read.append(stem)
        return truth.mask(stem)

    again = fresh_project(project, tmp_path / "again.irsam-review")
    for stem in stems[:4]:
        again.set_status(stem, "accepted")
    report = import_labels(again, read_mask, has_mask=truth.has_mask)
    assert read == stems[4:]  # the unreviewed frames' alone
    assert report.reviewed == stems[:3] and truth.mask_warnings == []


# --- 3. plots are named after the weights file's own folder --------------------------------------------------------

@pytest.mark.parametrize("typed_in, typed", [("run", "best.pt"), ("run", "./best.pt"), ("run/sub", "../best.pt"),
                                             ("elsewhere", "../run/best.pt")])
def test_plots_are_named_after_the_folder_the_weights_file_is_in_however_typed(tmp_path, monkeypatch, typed_in,
                                                                               typed):
    """irsam_.._best for ../best.pt, irsam_best for best.pt (as for /best.pt): the run's folder is run."""
    (tmp_path / "run" / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / typed_in)
    assert plot_name({"method": "irsam", "weights": {"path": typed}}) == "irsam_run_best"


# --- 5. frame numbers written otherwise than in digits --------------------------------------------------------------

def test_a_whole_frame_number_in_exponent_notation_is_refused_as_not_written_in_digits(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("frame,class,x,y,w,h\n1,DRONE,1,1,2,2\n1e1,DRONE,1,1,2,2\n")
    with pytest.raises(BoxesFileError) as error:
        read_boxes_csv(path)
    assert str(error.value) == (f"{path}: line 3: frame '1e1' is not a frame number (1 is the first frame): frame "
                                "numbers are written as digits (12 or 12.0)")


# --- 7. warnings caught while loading weights that then fail --------------------------------------------------------

def test_warnings_caught_before_an_error_are_still_reported_and_passed_on():
    reported = []
    with pytest.warns(DeprecationWarning, match="^something else$"):
        with pytest.raises(OSError, match="^cannot read$"):
            with resume_state_warning_to(reported.append):
                warnings.warn(ResumeStateWarning("a resume state"))
                warnings.warn("something else", DeprecationWarning)
                raise OSError("cannot read")
    assert reported == ["a resume state"]
