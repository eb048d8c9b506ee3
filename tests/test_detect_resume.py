"""detections.csv after `irsam detect` was killed (kill -9: no flush) and resumed with --skip-done: it agrees with
masks/, the proposals the app's target list, timeline counts and review queue read through
`ReviewProject.detections` (audit s18, finding 4)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from app.cli import main
from app.core.project import ReviewProject
from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence
from app.core.targets import extract_targets
from tests.test_detect_cli import stopping_detector


class Killed(BaseException):
    """The process dying mid-run: nothing after it runs (no flush, no message)."""


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Path:
    # tophat finds 6 one-pixel targets in each frame, pstnn 1: the two runs' rows tell apart
    seq = generate_sequence(SyntheticConfig(n_frames=6, height=48, width=64, empty_fraction=0.0), seed=2)
    return write_sequence(seq, tmp_path_factory.mktemp("seq"))


def detect(sequence: Path, out: Path, method: str, *extra: str) -> int:
    return main(["detect", str(sequence), "--out", str(out), "--method", method, "--quiet", *extra])


def killed_run(sequence: Path, out: Path, method: str, monkeypatch, frames: int) -> None:
    """`irsam detect` killed (SIGKILL) after saving `frames` frames: detections.csv is never written."""
    import threading

    import app.commands.detect as detect_command

    real_make_detector, real_save = detect_command.make_detector, ReviewProject.save_prediction
    saved = []
    all_saved = threading.Event()

    def save_prediction(project, stem, *args, **kwargs):
        kept = real_save(project, stem, *args, **kwargs)
        saved.append(stem)
        if len(saved) == frames:
            all_saved.set()
        return kept

    def killed():
        assert all_saved.wait(30)  # the frames detected so far are on disk, as a writer had them
        raise Killed

    make_detector = stopping_detector(real_make_detector, frames, killed)
    with monkeypatch.context() as patch:
        patch.setattr(detect_command, "make_detector", make_detector)
        patch.setattr(ReviewProject, "save_prediction", save_prediction)
        patch.setattr(ReviewProject, "flush_detections", lambda self: None)
        with pytest.raises(Killed):
            detect(sequence, out, method, "--batch-size", "1", "--writers", "1")


def csv_rows(out: Path) -> dict[str, list[tuple]]:
    rows: dict[str, list[tuple]] = {}
    with open(out / "detections.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["stem"], []).append(
                (int(row["area"]), int(row["x0"]), int(row["y0"]), int(row["x1"]), int(row["y1"])))
    return rows


def mask_targets(project: ReviewProject, stem: str) -> list[tuple]:
    mask = project.prediction_mask(stem)
    return [] if mask is None else [(t.area, t.x0, t.y0, t.x1, t.y1) for t in extract_targets(mask)]


def disagreeing(out: Path) -> list[str]:
    """Frames whose detections.csv rows or `detections()` differ from the targets of their masks/ proposal."""
    project, rows = ReviewProject.open(out), csv_rows(out)
    bad = []
    for stem in project.stems:
        truth = mask_targets(project, stem)
        listed = sorted(rows.get(stem, []))
        given = sorted((t.area, t.x0, t.y0, t.x1, t.y1) for t in project.detections(stem))
        if listed != sorted(truth) or given != sorted(truth):
            bad.append(stem)
    return bad


def age(out: Path, seconds: float) -> None:
    """Every file of the project written `seconds` earlier: the earlier run was not in this very second."""
    for path in out.rglob("*"):
        if path.is_file():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns - int(seconds * 1e9), st.st_mtime_ns - int(seconds * 1e9)))


def test_a_killed_rerun_resumed_with_skip_done_leaves_no_row_of_the_earlier_run(sequence, tmp_path, monkeypatch,
                                                                                 capsys):
    out = tmp_path / "proj"
    assert detect(sequence, out, "tophat") == 0  # run A: complete, detections.csv written
    age(out, 5)
    killed_run(sequence, out, "pstnn", monkeypatch, frames=2)  # run B: its first frames proposed again, no flush
    project = ReviewProject.open(out)
    redone = [stem for stem in project.stems if project.proposal_origin(stem).method == "pstnn"]
    assert len(redone) == 2 and csv_rows(out)[redone[0]] != mask_targets(project, redone[0])  # the stale rows
    # the app opening it now sees the proposals on disk, not the stale rows
    assert [len(project.detections(stem)) for stem in redone] == [len(mask_targets(project, s)) for s in redone]

    capsys.readouterr()
    assert detect(sequence, out, "pstnn", "--skip-done") == 0  # the documented resume
    assert "2 frame(s) already proposed with these settings: skipped" in capsys.readouterr().out
    assert disagreeing(out) == []
    assert all(ReviewProject.open(out).proposal_origin(stem).method == "pstnn" for stem in project.stems)


def test_a_fresh_project_killed_and_resumed_lists_every_proposal(sequence, tmp_path, monkeypatch):
    out = tmp_path / "proj"
    killed_run(sequence, out, "tophat", monkeypatch, frames=3)
    assert not (out / "detections.csv").exists()
    assert detect(sequence, out, "tophat", "--skip-done") == 0
    project = ReviewProject.open(out)
    assert all(project.has_prediction(stem) for stem in project.stems)
    assert set(csv_rows(out)) == set(project.stems)  # every frame has targets: all listed, the 3 skipped too
    assert disagreeing(out) == []


def test_a_damaged_csv_is_written_whole_again_by_the_next_run(sequence, tmp_path):
    out = tmp_path / "proj"
    assert detect(sequence, out, "tophat", "--limit", "4") == 0
    (out / "detections.csv").write_text("not,a,detections,file\n")
    assert detect(sequence, out, "tophat", "--skip-done") == 0  # the 2 frames left; the 4 done are listed again
    assert set(csv_rows(out)) == set(ReviewProject.open(out).stems) and disagreeing(out) == []


def test_rows_of_a_project_copied_without_its_times_are_kept(sequence, tmp_path):
    """A copy (cp -r) may write masks/ after detections.csv: the proposals' recorded times tell they are older,
    so the rows, and their peak scores (the logits were not saved), stand."""
    out = tmp_path / "proj"
    assert detect(sequence, out, "tophat") == 0
    later = (out / "detections.csv").stat().st_mtime_ns + 5 * 10**9  # copied 5 s after the run
    os.utime(out / "detections.csv", ns=(later, later))
    for mask in (out / "masks").glob("*.png"):
        os.utime(mask, ns=(later + 10**9, later + 10**9))  # copied after the csv
    project = ReviewProject.open(out)
    targets = project.detections(project.stems[0])
    assert targets and all(t.peak_score == t.peak_score for t in targets)  # from the csv: not nan


def replace_frames(sequence: Path, clip: Path, k: list[int]) -> list[str]:
    """`clip`: a copy of `sequence` whose frames `k` hold other pixels under the same names (re-recorded)."""
    import shutil

    import cv2

    shutil.copytree(sequence, clip, dirs_exist_ok=True)
    files = sorted((clip / "images").glob("*.png"))
    for i in k:
        frame = cv2.imread(str(files[i]), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(files[i]), frame[::-1].copy())  # upside down: its targets elsewhere
    return [files[i].stem for i in k]


def test_skip_done_detects_again_the_frames_replaced_on_disk_since_their_proposal(sequence, tmp_path, capsys):
    """Audit s18 finding 4: --skip-done skipped every frame proposed with these settings, while irsam info said the
    proposals of the frames replaced since were made on other pixels ('detect it again')."""
    clip, out = tmp_path / "clip", tmp_path / "proj"
    replace_frames(sequence, clip, [])
    assert detect(clip, out, "tophat") == 0
    before = {p.stem: p.read_bytes() for p in (out / "masks").glob("*.png")}
    changed = replace_frames(sequence, clip, [1, 4])
    capsys.readouterr()
    assert detect(clip, out, "tophat", "--skip-done") == 0
    printed = capsys.readouterr().out
    assert ("6 frame(s) already proposed with these settings: skipped (--skip-done) unless their frame changed on "
            "disk since (6 of them hold a fingerprint to tell)") in printed
    assert "2 frames in" in printed and "2 of the frames already proposed were detected again" in printed
    after = {p.stem: p.read_bytes() for p in (out / "masks").glob("*.png")}
    assert sorted(stem for stem in before if after[stem] != before[stem]) == sorted(changed)
    assert disagreeing(out) == []
    assert main(["info", str(out)]) == 0
    assert "changed:       none of the 6 frames holding a fingerprint" in capsys.readouterr().out
    assert detect(clip, out, "tophat", "--skip-done") == 0  # now all done: nothing detected
    assert "0 frames in" in capsys.readouterr().out


def test_skip_done_keeps_a_proposal_saved_before_fingerprints_without_reading_its_frame(sequence, tmp_path,
                                                                                        monkeypatch):
    from app.core.frames import FolderSource
    from app.core.project import FRAME_TEXT_KEY
    from app.core.provenance import PNG_TEXT_KEY
    from model.atomic import atomic_write_png

    clip, out = tmp_path / "clip", tmp_path / "proj"
    replace_frames(sequence, clip, [])
    assert detect(clip, out, "tophat") == 0
    project = ReviewProject.open(out)
    for stem in project.stems:  # as written before fingerprints: the origin only
        mask, origin = project.prediction(stem)
        text = project._path("masks", stem, ".png").read_bytes()
        assert FRAME_TEXT_KEY.encode() in text
        atomic_write_png(out / "masks" / f"{stem}.png", mask, {PNG_TEXT_KEY: origin.to_text()})
    assert ReviewProject.open(out).proposal_frame_sha1(project.stems[0]) is None
    replace_frames(sequence, clip, [0])
    before = {p.stem: p.read_bytes() for p in (out / "masks").glob("*.png")}
    read = []
    real_frame = FolderSource.frame
    monkeypatch.setattr(FolderSource, "frame", lambda self, i: read.append(i) or real_frame(self, i))
    assert detect(clip, out, "tophat", "--skip-done") == 0
    assert {p.stem: p.read_bytes() for p in (out / "masks").glob("*.png")} == before  # unknown is not changed
    assert read == []
