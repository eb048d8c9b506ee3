"""A clip numbered by its file names (images/000001.png ...) with a few images whose names are not numbered as
the others' are (a copy 000040a.png): the numbered frames keep their own boxes, and the odd ones have no ground
truth, in `irsam eval --clip` (not scored, named) and in the app (no truth overlay, no scores), rather than the
whole clip being paired by position, every frame after the odd one onto its neighbour's boxes."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.frames import find_ground_truth, open_source
from app.measure import frame_scores_text
from app.session import ReviewSession
from model.evaluate import evaluate_clip, make_detector
from model.metrics import number_clip_frames, read_boxes_csv
from model.data import natural_key
from tests.test_eval_cli import run_eval
from tests.test_eval_consistency import boxed, frames_named

REAL_CLIP = Path("/work/shared/data/sequences/IR_DRONE_156")
needs_real_clip = pytest.mark.skipif(not (REAL_CLIP / "boxes.csv").is_file(), reason="real clip not present")


def real_clip_with_a_copy(clip: Path, frames: int = 30, copied: int = 12) -> Path:
    """The first `frames` frames of the real clip with their boxes.csv rows, and a copy of frame `copied` saved
    beside it as 0000NNa.png (sorted right after it)."""
    (clip / "images").mkdir(parents=True)
    for n in range(1, frames + 1):
        shutil.copy(REAL_CLIP / "images" / f"{n:06d}.png", clip / "images")
    shutil.copy(REAL_CLIP / "images" / f"{copied:06d}.png", clip / "images" / f"{copied:06d}a.png")
    lines = (REAL_CLIP / "boxes.csv").read_text().splitlines()
    (clip / "boxes.csv").write_text("\n".join(lines[: frames + 1]) + "\n")  # the header and frames 1..frames
    return clip


def test_a_copy_among_numbered_frames_has_no_number_and_the_others_keep_theirs():
    files = frames_named(range(1, 86))
    files.insert(40, Path("images") / "000040a.png")
    numbering = number_clip_frames(files, boxed(range(1, 86)))
    assert numbering.by == "name"
    assert numbering.numbers == list(range(1, 41)) + [None] + list(range(41, 86))
    assert numbering.unnumbered == [Path("images") / "000040a.png"]
    assert numbering.why == ("000040a.png does not end in a frame number: it has no ground truth; the others are "
                             "paired by their numbers")
    assert numbering.last == 85
    assert [files[k].name for k in numbering.select(40, 41)] == ["000040.png", "000041.png"]


def test_names_after_another_prefix_are_the_odd_ones_too_and_all_are_named():
    files = frames_named(range(1, 31)) + [Path("images") / name
                                          for name in ("000007 (1).png", "Copy of 000005.png", "000010_1.png")]
    numbering = number_clip_frames(files, boxed(range(1, 31)))
    assert (numbering.by, numbering.numbers) == ("name", list(range(1, 31)) + [None] * 3)
    assert numbering.why == ("000007 (1).png does not end in a frame number, Copy of 000005.png and 000010_1.png "
                             "are numbered after another prefix than the others (000001.png): they have no ground "
                             "truth; the others are paired by their numbers")


def test_the_odd_names_note_joins_the_0_based_reading_s():
    """Numbered from 0 with 000000.png deleted (as told by boxes.csv) and a copy among them: both are said."""
    files = frames_named(range(1, 10)) + [Path("images") / "000004a.png"]
    numbering = number_clip_frames(files, boxed(range(2, 11)))
    assert (numbering.by, numbering.numbers) == ("name, 0-based", list(range(2, 11)) + [None])
    assert numbering.why == ("000004a.png does not end in a frame number: it has no ground truth; the others are "
                             "paired by their numbers; numbered from 0 (000000 missing), the names pair 9 of the 9 "
                             "frames boxes.csv has boxes for with an image, numbered from 1 only 8")


@pytest.mark.parametrize("numbered, odd, by", [
    (9, ["000004a.png"], "name"),  # one name in ten
    (8, ["000004a.png"], "position"),  # one in nine: more than a few
    (18, ["000004a.png", "000009a.png"], "name"),
    (18, ["000004a.png", "000009a.png", "000011a.png"], "position"),
])
def test_at_most_one_name_in_ten_may_have_no_frame_number(numbered, odd, by):
    files = sorted(frames_named(range(1, numbered + 1)) + [Path("images") / name for name in odd])
    numbering = number_clip_frames(files, boxed(range(1, numbered + 1)))
    assert numbering.by == by
    if by == "position":
        assert numbering.numbers == list(range(1, len(files) + 1))
        assert numbering.why == f"{odd[0]} does not end in a frame number"


@needs_real_clip
def test_eval_scores_the_real_clip_s_numbered_frames_against_their_own_boxes_and_names_the_copy(tmp_path, capsys):
    clip = real_clip_with_a_copy(tmp_path / "clip")
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--clip", str(clip), "--json", str(out)) == 0
    result = json.loads(out.read_text())
    err = capsys.readouterr().err
    assert (result["frame_numbers"], result["frames"], result["n_frames"], result["n_targets"]) == \
           ("name", [1, 30], 30, 30)
    assert result["frames_without_boxes"] == [] and result["boxes_without_image"] == []
    assert result["frames_without_number"] == ["000012a.png"]
    assert (f"warning: 1 image of images/ not scored; frames are paired with {clip / 'boxes.csv'}'s frame numbers "
            "by their file names, the number a name ends in: 000012a.png does not end in a frame number: it has no "
            "ground truth; the others are paired by their numbers") in err

    assert run_eval("--method", "tophat", "--clip", str(clip), "--frames", "12-13", "--json", str(out)) == 0
    assert (json.loads(out.read_text())["n_frames"], json.loads(out.read_text())["frames"]) == (2, [12, 13])
    assert run_eval("--method", "tophat", "--clip", str(clip), "--frames", "31-") == 2
    assert "error: --frames 31-: the clip has 30 frames\n" in capsys.readouterr().err  # the copy is none of them
    assert run_eval("--method", "tophat", "--clip", str(clip), "--limit", "13", "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert (result["n_frames"], result["frames"]) == (13, [1, 13])  # the first 13 frames: the copy is none of them
    capsys.readouterr()


def moving_target_clip(clip: Path, n_frames: int, width: int) -> Path:
    """Frames 000001.png.. of 64 x `width` noise, frame n with a 3x3 target at columns 5n..5n+2, boxed there in
    boxes.csv."""
    (clip / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(1, n_frames + 1):
        frame = rng.integers(20, 40, (64, width)).astype(np.uint8)
        frame[20:23, 5 * n : 5 * n + 3] = 220
        cv2.imwrite(str(clip / "images" / f"{n:06d}.png"), frame)
    rows = ["frame,class,x,y,w,h"] + [f"{n},DRONE,{5 * n + 1},21,3,3" for n in range(1, n_frames + 1)]
    (clip / "boxes.csv").write_text("\n".join(rows) + "\n")
    return clip


def test_eval_finds_each_target_in_its_own_frame_around_a_copy(tmp_path, capsys):
    """Frame n holds its target at columns 5n..5n+2, boxed there: paired by position, every frame after the copy
    would be scored against the previous frame's box and miss."""
    clip = moving_target_clip(tmp_path / "clip", 12, 96)
    shutil.copy(clip / "images" / "000006.png", clip / "images" / "000006a.png")
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--clip", str(clip), "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert (result["hits"], result["n_targets"], result["false_alarms"], result["n_frames"]) == (12, 12, 0, 12)
    assert result["frames_without_number"] == ["000006a.png"]

    assert run_eval("--method", "tophat", "--clip", str(clip), "--frames", "6-7", "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert (result["hits"], result["n_targets"], result["n_frames"]) == (2, 2, 2)
    capsys.readouterr()


def test_limit_takes_the_first_n_numbered_frames_as_frames_does(tmp_path, capsys):
    """Images with no frame number before the clip's first frames are not counted by --limit: --limit 3 scores
    frames 1 to 3, as --frames 1-3 does, rather than 2 frames, or none."""
    clip = tmp_path / "clip"
    (clip / "images").mkdir(parents=True)
    for name in ["000000a.png", "000000b.png"] + [f"{n:06d}.png" for n in range(1, 21)]:
        cv2.imwrite(str(clip / "images" / name), np.full((16, 16), 30, np.uint8))
    (clip / "boxes.csv").write_text("frame,class,x,y,w,h\n" + "".join(f"{n},T,4,4,3,3\n" for n in range(1, 21)))
    out = tmp_path / "r.json"
    for limit in (1, 3):
        assert run_eval("--method", "tophat", "--clip", str(clip), "--limit", str(limit), "--json", str(out)) == 0
        result = json.loads(out.read_text())
        assert (result["frames"], result["n_frames"], result["n_targets"]) == ([1, limit], limit, limit)
        assert result["frames_without_number"] == ["000000a.png", "000000b.png"]
    assert run_eval("--method", "tophat", "--clip", str(clip), "--frames", "1-3", "--json", str(out)) == 0
    assert (json.loads(out.read_text())["frames"], json.loads(out.read_text())["n_frames"]) == ([1, 3], 3)
    assert run_eval("--method", "tophat", "--clip", str(clip), "--limit", "50", "--json", str(out)) == 0
    assert (json.loads(out.read_text())["frames"], json.loads(out.read_text())["n_frames"]) == ([1, 20], 20)
    capsys.readouterr()

    direct = evaluate_clip(make_detector("tophat", None), clip, start=2, limit=3)
    assert (direct["frames"], direct["n_frames"]) == ([3, 5], 3)  # the 0-based start counts frames, too


@pytest.mark.parametrize("copy", ["0000040.png", "40.png"])
def test_a_copy_with_a_frame_s_number_leaves_both_without_ground_truth_and_the_others_paired_by_name(copy):
    files = sorted(frames_named(range(1, 86)) + [Path("images") / copy], key=lambda f: natural_key(f.name))
    numbering = number_clip_frames(files, boxed(range(1, 86)))
    assert numbering.by == "name"
    assert sorted(f.name for f in numbering.unnumbered) == sorted(["000040.png", copy])
    assert [n for n in numbering.numbers if n is not None] == list(range(1, 40)) + list(range(41, 86))
    assert [files[k].name for k in numbering.select(41, 41)] == ["000041.png"]  # its own, not its neighbour's
    first, other = numbering.unnumbered
    assert numbering.why == (f"{first.name} and {other.name} have the same number: neither has ground truth; the "
                             "others are paired by their numbers")


def test_the_same_number_notes_join_the_odd_names_one():
    files = frames_named(range(1, 57)) + [Path("images") / name for name in
                                          ("000004a.png", "000009.jpg", "000012.jpg", "0000012.png")]
    numbering = number_clip_frames(files, boxed(range(1, 57)))  # 3 names of the app's 58 frames not numbered
    assert numbering.by == "name"
    assert numbering.numbers == [None if n == 12 else n for n in range(1, 57)] + [None] * 4
    assert numbering.why == ("000009.jpg and 000012.jpg have the same names as 000009.png and 000012.png but for the "
                             "extension: as in the app, the first file of a name in name order is the frame and the "
                             "others have no ground truth; 000004a.png does not end in a frame number, 000012.png and "
                             "0000012.png have the same number: they have no ground truth; the others are paired by "
                             "their numbers")


@pytest.mark.parametrize("numbered, extra, by", [
    (19, ["0000004.png"], "name"),  # 2 files of 20 share a number: one in ten
    (18, ["0000004.png"], "position"),  # 2 of 19: more than a few
    (19, ["0000004.png", "000009a.png"], "position"),  # 3 of 21, counted with the odd name
    (28, ["0000004.png", "000009a.png"], "name"),  # 3 of 30
])
def test_at_most_one_name_in_ten_may_share_a_number_counting_the_odd_names(numbered, extra, by):
    files = sorted(frames_named(range(1, numbered + 1)) + [Path("images") / name for name in extra],
                   key=lambda f: natural_key(f.name))
    numbering = number_clip_frames(files, boxed(range(1, numbered + 1)))
    assert numbering.by == by
    if by == "position":
        assert numbering.numbers == list(range(1, len(files) + 1))
        assert numbering.why == "000004.png and 0000004.png have the same number"


def test_eval_finds_each_target_in_its_own_frame_beside_a_copy_with_its_number(tmp_path, capsys):
    """Frame n holds its target at columns 5n..5n+2, boxed there; 000006.jpg is a copy of frame 6: paired by
    position, every frame after it would be scored against the previous frame's box and miss. As in the app, the
    first file of the name, 000006.jpg, is frame 6."""
    clip = moving_target_clip(tmp_path / "clip", 20, 128)
    cv2.imwrite(str(clip / "images" / "000006.jpg"), cv2.imread(str(clip / "images" / "000006.png")))
    out = tmp_path / "r.json"
    assert run_eval("--method", "tophat", "--clip", str(clip), "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert (result["hits"], result["n_targets"], result["false_alarms"], result["n_frames"]) == (20, 20, 0, 20)
    assert result["frame_numbers"] == "name"
    assert result["frames_without_number"] == ["000006.png"]
    assert result["boxes_without_image"] == []
    assert ("warning: 1 image of images/ not scored; frames are paired with "
            f"{clip / 'boxes.csv'}'s frame numbers by their file names, the number a name ends in: 000006.png has "
            "the same name as 000006.jpg but for the extension: as in the app, 000006.jpg is the frame (the first in "
            "name order) and 000006.png has no ground truth") in capsys.readouterr().err


@needs_real_clip
def test_the_app_s_ground_truth_has_no_boxes_for_the_copy_and_each_frame_s_own_for_the_others(tmp_path):
    clip = real_clip_with_a_copy(tmp_path / "clip")
    truth = read_boxes_csv(clip / "boxes.csv")
    with open_source(clip / "images") as source:
        stems = list(source.stems)
        gt = find_ground_truth(source)
        assert stems[12] == "000012a"
        assert [gt.boxes(i) for i in range(len(stems))] == [truth[int(stem) - 1] if stem.isdigit() else []
                                                            for stem in stems]
        assert gt.boxes(30) == truth[29]  # the last frame keeps its boxes

    session = ReviewSession.open(clip)
    try:
        assert ("boxes.csv paired by name: 000012a.png does not end in a frame number: it has no ground truth; the "
                "others are paired by their numbers") in session.warnings
        copy, own = session.layers(12, {"truth"}), session.layers(13, {"truth"})
        assert copy.truth_boxes == [] and len(own.truth_boxes) == 1  # the truth overlay: none on the copy
        # the window's per-frame scores of a proposal with no target: none on the copy
        proposal = np.zeros(session.source.frame_shape(12), bool)
        scores = {}
        assert frame_scores_text(replace(copy, prediction=proposal), session.ground_truth.boxes(12), scores) == ""
        assert frame_scores_text(replace(own, prediction=proposal), session.ground_truth.boxes(13), scores) == \
               "Pd 0/1  false alarms 0"
    finally:
        session.close()
