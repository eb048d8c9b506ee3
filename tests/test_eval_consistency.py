"""`irsam eval` scores a frame as `irsam detect` and the app see it, whatever else is selected with it: the
whole folder's window (16-bit), a stray frame of another sample type skipped and named, boxes.csv's frames
paired with the clip's images by file name, and --errors located in the image, also with --resize-512."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.frames import open_source
from app.core.normalization import NormalizationRequest
from app.core.synthetic import DEMO_CONFIG, iter_frames, write_sequence
from model.data import find_dataset
from model.detectors import FrameResult
from model.evaluate import evaluate_clip, evaluate_dataset, make_detector
from model.metrics import number_clip_frames
from tests.test_eval_cli import NUAA, run_eval

BOX_SCORES = ("pd", "false_alarms_per_frame", "fa", "n_frames", "n_targets", "hits", "false_alarms")


@pytest.fixture(scope="module")
def raw_sequence(tmp_path_factory) -> Path:
    """12 16-bit demo frames (with the demo's hot and dead pixels) in images/, masks/, and boxes.csv made
    from the masks: 1-based MATLAB boxes around each 8-connected target."""
    root = tmp_path_factory.mktemp("raw") / "seq"
    config = dataclasses.replace(DEMO_CONFIG, n_frames=12, height=96, width=128)
    write_sequence(list(iter_frames(config, seed=3)), root, layout="folder")
    rows = ["frame,class,x,y,w,h"]
    for number, mask in enumerate(sorted((root / "masks").iterdir()), 1):
        n, _, stats, _ = cv2.connectedComponentsWithStats((cv2.imread(str(mask), 0) > 0).astype(np.uint8),
                                                          connectivity=8)
        rows += [f"{number},T,{x + 1},{y + 1},{w},{h}" for x, y, w, h, _ in stats[1:n]]
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    return root


def whole_folder_window(folder: Path):
    with open_source(folder) as source:
        return NormalizationRequest().for_source(source)


def evaluated(*argv: str, out: Path) -> dict:
    assert run_eval(*argv, "--json", str(out)) == 0
    return json.loads(out.read_text())


# --- 1. the window of the whole folder, whatever part of it is evaluated ------------------------------------

def test_a_part_of_a_16bit_clip_is_scored_through_the_whole_clip_s_window(raw_sequence, tmp_path):
    window = whole_folder_window(raw_sequence / "images")
    assert window.bad_pixels and window.sample == 12  # the demo's stuck pixels, found in all 12 frames
    clip = ("--method", "tophat", "--clip", str(raw_sequence))
    whole = evaluated(*clip, out=tmp_path / "all.json")
    first3 = evaluated(*clip, "--limit", "3", out=tmp_path / "first3.json")
    middle = evaluated(*clip, "--frames", "4-6", out=tmp_path / "middle.json")
    for result in (whole, first3, middle):  # 3 frames alone: another window, and too few to find stuck pixels
        assert result["normalization"] == window.to_dict()
    expected = evaluate_clip(make_detector("tophat", None), raw_sequence, start=3, limit=3,
                             read_image=lambda path: window.apply(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))
    assert {k: middle[k] for k in BOX_SCORES} == {k: expected[k] for k in BOX_SCORES}
    assert (middle["frames"], middle["n_frames"]) == ([4, 6], 3)


def test_a_split_or_limit_of_a_16bit_folder_is_scored_through_the_whole_folder_s_window(raw_sequence, tmp_path):
    window = whole_folder_window(raw_sequence / "images")
    split = tmp_path / "split.txt"
    split.write_text("000002\n000007\n000011\n")
    data = ("--method", "tophat", "--images", str(raw_sequence / "images"), "--masks", str(raw_sequence / "masks"))
    for selection in (["--split", str(split)], ["--limit", "3"]):
        result = evaluated(*data, *selection, out=tmp_path / "r.json")
        assert result["n_images"] == 3 and result["normalization"] == window.to_dict()
    expected, _ = evaluate_dataset(make_detector("tophat", None),
                                   find_dataset(raw_sequence / "images", raw_sequence / "masks", split),
                                   read_image=lambda path: window.apply(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))
    result = evaluated(*data, "--split", str(split), out=tmp_path / "r.json")
    assert {k: result[k] for k in ("iou", "niou", "pd", "fa")} == {k: expected[k] for k in ("iou", "niou", "pd", "fa")}


# --- 2. a stray frame of another sample type ----------------------------------------------------------------

@pytest.fixture
def stray_8bit(raw_sequence, tmp_path) -> Path:
    """The raw sequence copied, with 000012.png replaced by the same frame stretched to 8 bits."""
    copy = tmp_path / "mix"
    shutil.copytree(raw_sequence, copy)
    frame = cv2.imread(str(copy / "images/000012.png"), cv2.IMREAD_UNCHANGED).astype(np.float64)
    low, high = np.percentile(frame, [0.5, 99.99])
    cv2.imwrite(str(copy / "images/000012.png"), np.clip((frame - low) / (high - low) * 255, 0, 255).astype(np.uint8))
    return copy


@pytest.mark.parametrize("kind", ["images", "clip"])
def test_a_stray_8bit_frame_in_a_16bit_folder_is_skipped_named_and_counted(stray_8bit, tmp_path, capsys, kind):
    stray = stray_8bit / "images/000012.png"
    where = (["--images", str(stray_8bit / "images"), "--masks", str(stray_8bit / "masks"), "--errors"]
             if kind == "images" else ["--clip", str(stray_8bit)])
    result = evaluated("--method", "tophat", *where, out=tmp_path / "r.json")
    captured = capsys.readouterr()
    assert f"skipped {stray}: sample type uint8 differs from the sequence's uint16" in captured.err
    assert "1 of 12 skipped as unusable (listed on stderr); the metrics exclude them" in captured.out
    assert result["n_skipped"] == 1 and result["n_images" if kind == "images" else "n_frames"] == 11
    if kind == "images":  # not scored as a black frame whose targets were all missed
        assert "000012" not in {frame["image"] for frame in result["errors"]["frames"]}
        samples = [s for s in find_dataset(stray_8bit / "images", stray_8bit / "masks") if s.stem != "000012"]
        window = NormalizationRequest().for_source(open_source(stray_8bit / "images"))
        expected, _ = evaluate_dataset(make_detector("tophat", None), samples, read_image=lambda path: window.apply(
            cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))
        assert (result["iou"], result["pd"], result["fa"]) == (expected["iou"], expected["pd"], expected["fa"])


# --- 3. --errors with --resize-512 --------------------------------------------------------------------------

class _Blob:
    """A detector that finds one 4x4 blob at rows 100-103, columns 150-153, whatever the image."""

    name, device = "blob", "cpu"

    def detect(self, images):
        results = []
        for image in images:
            logits = np.full(image.shape, -5.0, np.float32)
            logits[100:104, 150:154] = 5.0
            results.append(FrameResult(logits=logits))
        return results


@pytest.mark.parametrize("shape", [(120, 200), (241, 352), (300, 700)])
def test_errors_at_512_give_image_positions_and_areas(tmp_path, shape):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    mask = np.zeros(shape, np.uint8)
    mask[10:13, 20:23] = 255  # a 3x3 target the detector misses
    mask[60:66, 40:50] = 255  # and a 6x10 one
    cv2.imwrite(str(images / "a.png"), np.zeros(shape, np.uint8))
    cv2.imwrite(str(masks / "a.png"), mask)
    result, _ = evaluate_dataset(_Blob(), find_dataset(images, masks), resize_to=512, errors=True)
    assert result["resize_to"] == 512 and result["total_pixels"] == 512 * 512  # the metrics stay at 512
    errors = result["errors"]
    assert errors["matched_at"] == "512x512"
    (frame,) = errors["frames"]
    assert [(t["row"], t["col"], t["area"]) for t in frame["missed"]] == [(11.0, 21.0, 9), (62.5, 44.5, 60)]
    (alarm,) = frame["false_alarms"]
    assert (alarm["row"], alarm["col"], alarm["area"]) == (101.5, 151.5, 16) and "resized_only" not in alarm
    assert alarm["at_512"]["area"] == pytest.approx(16 * 512 * 512 / (shape[0] * shape[1]), rel=0.5)
    # binned by their areas in the image: 9 px and 60 px, not the hundreds of pixels they cover at 512
    assert errors["pd_by_target_area"]["1-9 px"] == {"targets": 1, "hits": 0}
    assert errors["pd_by_target_area"]["50-99 px"] == {"targets": 1, "hits": 0}


def test_errors_at_512_on_a_real_image_name_rows_of_the_image(tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    shutil.copy(NUAA / "images/Misc_276.png", images)
    for mask in NUAA.joinpath("masks").glob("Misc_276*.png"):
        shutil.copy(mask, masks)
    height, width = cv2.imread(str(images / "Misc_276.png"), cv2.IMREAD_GRAYSCALE).shape
    result = evaluated("--method", "mpcm", "--images", str(images), "--masks", str(masks), "--errors",
                       "--resize-512", out=tmp_path / "r.json")
    printed = capsys.readouterr().out.splitlines()
    found = [c for frame in result["errors"]["frames"] for c in frame["missed"] + frame["false_alarms"]]
    assert found  # at 512 one of its targets is missed: MPCM's blob is 3 px off once resized
    for c in found:  # (the row was 324 of this 241-row image, the areas about 100 px, all three 10-49 px here)
        assert 0 <= c["row"] < height and 0 <= c["col"] < width and c["area"] < 50
        assert f"({c['row']:.0f}, {c['col']:.0f}) {c['area']} px" in printed[3]
    assert printed[2] == ("Pd by target area (targets matched at 512x512; positions and areas in image pixels): "
                          "1-9 px 0/0, 10-49 px 2/3, 50-99 px 0/0, >= 100 px 0/0")


# --- 4. boxes.csv's frames paired with images by file name --------------------------------------------------

def write_clip(clip: Path, names: list[str], boxed: range) -> None:
    """Frames named `names`; the k-th (1-based) holds a 3x3 target at columns 5k..5k+2, boxed as frame k in
    boxes.csv for k in `boxed`."""
    (clip / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, name in enumerate(names, 1):
        frame = rng.integers(20, 40, (64, 96)).astype(np.uint8)
        frame[20:23, 5 * k : 5 * k + 3] = 220
        cv2.imwrite(str(clip / "images" / name), frame)
    rows = ["frame,class,x,y,w,h"] + [f"{k},DRONE,{5 * k + 1},21,3,3" for k in boxed]
    (clip / "boxes.csv").write_text("\n".join(rows) + "\n")


def test_a_deleted_frame_leaves_a_gap_instead_of_shifting_later_frames_onto_earlier_boxes(tmp_path, capsys):
    clip = tmp_path / "clip"
    write_clip(clip, [f"{k:06d}.png" for k in range(1, 14)], boxed=range(1, 13))  # frame 13: no box
    (clip / "images/000005.png").unlink()
    boxes = clip / "boxes.csv"
    result = evaluated("--method", "tophat", "--clip", str(clip), out=tmp_path / "r.json")
    err = capsys.readouterr().err
    # frames 6 to 12 against their own boxes: each target found, no false alarm but frame 13's unboxed target
    assert (result["hits"], result["n_targets"], result["false_alarms"]) == (11, 11, 1)
    assert (result["frame_numbers"], result["frames"], result["n_frames"]) == ("name", [1, 13], 12)
    assert result["boxes_without_image"] == [5] and result["boxes_past_the_end"] == []
    assert (f"warning: {boxes} has boxes for 1 frame that images/ has no image for (frames are told by their "
            "file names, the number a name ends in): frame 5; their targets are not scored") in err
    assert result["frames_without_boxes"] == ["000013.png"]
    assert (f"note: 1 of the 12 frames scored have no box in {boxes} and are scored as frames without a "
            "target: 000013.png") in err

    gap = evaluated("--method", "tophat", "--clip", str(clip), "--frames", "4-6", out=tmp_path / "r.json")
    assert (gap["frames"], gap["n_frames"], gap["hits"], gap["n_targets"]) == ([4, 6], 2, 2, 2)
    assert "boxes for 1 frame that images/ has no image for" in capsys.readouterr().err
    assert run_eval("--method", "tophat", "--clip", str(clip), "--frames", "5-5") == 2
    assert capsys.readouterr().err == ("error: --frames 5-5: images/ has no image for frames 5 to 5 (frames are "
                                       "told by their file names, the number a name ends in)\n")
    assert run_eval("--method", "tophat", "--clip", str(clip), "--frames", "14-") == 2
    assert capsys.readouterr().err == "error: --frames 14-: the clip has 12 frames, the last numbered 13\n"


def test_clips_numbered_from_0_or_not_by_number_are_paired_by_position_and_say_so(tmp_path, capsys):
    zero = tmp_path / "zero"
    write_clip(zero, [f"{k:03d}.png" for k in range(0, 6)], boxed=range(1, 7))
    result = evaluated("--method", "tophat", "--clip", str(zero), out=tmp_path / "r.json")
    assert (result["frame_numbers"], result["hits"], result["n_targets"], result["false_alarms"]) == \
           ("name, 0-based", 6, 6, 0)
    assert capsys.readouterr().err == ""

    named = tmp_path / "named"
    write_clip(named, ["a.png", "b.png", "c.png"], boxed=range(1, 4))
    result = evaluated("--method", "tophat", "--clip", str(named), out=tmp_path / "r.json")
    assert (result["frame_numbers"], result["hits"], result["n_targets"]) == ("position", 3, 3)
    assert (f"note: frames are paired with {named / 'boxes.csv'}'s frame numbers by their position in images/: "
            "the k-th image is frame k, not by their file names (a.png does not end in a frame number)") \
           in capsys.readouterr().err


@pytest.mark.parametrize("names, by, why", [
    (["000001.png", "000002.png", "000010.png"], "name",  # frame 3 boxed but deleted, or 000000 deleted: a tie
     "numbered from 1 or from 0 (000000 missing), the names pair 2 of the 3 frames boxes.csv has boxes for with an "
     "image: taken as numbered from 1, as the clips' own images/000001.png"),
    (["f1.png", "f2.png", "f3.png"], "name", None),
    (["clip_000001.png", "clip_000003.png"], "name", None),
    (["a1.png", "b2.png"], "position", "the names are numbered after different prefixes ('a', 'b')"),
    (["1.png", "001.png"], "position", "1.png and 001.png have the same number"),
    (["1700000001.png", "1700000002.png"], "position", "no name is the number of a frame boxes.csv has boxes for"),
])
def test_clip_frame_numbers(names, by, why):
    files = [Path("images") / name for name in names]
    numbering = number_clip_frames(files, {0: [], 1: [], 2: []})
    assert (numbering.by, numbering.why) == (by, why)
    if by == "name":
        assert numbering.numbers == [int("".join(filter(str.isdigit, name))) for name in names]
    else:
        assert numbering.numbers == list(range(1, len(names) + 1))


def frames_named(numbers) -> list[Path]:
    return [Path("images") / f"{n:06d}.png" for n in numbers]


def boxed(frames) -> dict[int, list]:
    """read_boxes_csv's boxes for the 1-based `frames`, one box each."""
    return {n - 1: [(float(n), 1.0, 2.0, 2.0)] for n in frames}


def test_a_clip_named_by_its_recording_s_frame_numbers_is_paired_by_position_despite_a_lucky_match():
    """A clip cut from a longer recording keeps the recording's numbers in its names (000100..000199) while its
    boxes.csv numbers its own frames 1..100: the one name that is a boxed frame (000100.png, frame 100) does not
    make the names frame numbers, which would pair it with the clip's last frame's boxes and 99 frames with none."""
    numbering = number_clip_frames(frames_named(range(100, 200)), boxed(range(1, 101)))
    assert (numbering.by, numbering.numbers) == ("position", list(range(1, 101)))
    assert numbering.why == ("numbered by name, 000100.png to 000199.png would pair 1 of the 100 frames boxes.csv has "
                             "boxes for with an image, by position 100")
    assert number_clip_frames(frames_named(range(10, 20)), boxed(range(1, 11))).by == "position"  # 1 of 10 by name


@pytest.mark.parametrize("numbers, frames", [
    ([n for n in range(1, 14) if n != 5], range(1, 13)),  # frame 5 deleted, 13 unboxed: position pairs 12, names 11
    (range(51, 314), range(1, 201)),  # the first 50 frames deleted, the target in the first 200
    (range(200, 314), range(1, 251)),  # only the last 114 kept, boxes.csv the whole clip's: boxes past them
    (range(1, 314, 3), range(1, 101)),  # every third frame kept, the target in the first 100
    (range(50, 150), range(1, 301)),  # a part of a clip whose boxes.csv holds every frame's boxes
])
def test_names_stay_frame_numbers_where_frames_were_deleted_although_position_pairs_more(numbers, frames):
    """Position pairs more boxed frames than the names where frames were deleted (every frame after the gap
    shifts onto the previous one's boxes): the names still win there."""
    numbering = number_clip_frames(frames_named(numbers), boxed(frames))
    assert (numbering.by, numbering.numbers, numbering.why) == ("name", list(numbers), None)


def test_a_0_based_clip_whose_000000_was_deleted_is_told_from_boxes_csv():
    """A 0-based clip (000000.png is frame 1) whose first frame was deleted: its last image, 000009.png, is
    boxes.csv's last frame (10), so the names are read as numbered from 0, not shifted onto the previous
    frame's boxes, and `why` says so."""
    numbering = number_clip_frames(frames_named(range(1, 10)), boxed(range(2, 11)))
    assert (numbering.by, numbering.numbers) == ("name, 0-based", list(range(2, 11)))
    assert numbering.why == ("numbered from 0 (000000 missing), the names pair 9 of the 9 frames boxes.csv has "
                             "boxes for with an image, numbered from 1 only 8")
    # boxes.csv's frames 1 to 10 boxed, 000001..000009 left: the last frame of a 1-based clip deleted, or the
    # first of a 0-based one; alike in every way, read as numbered from 1 (the clips' own), and `why` says so
    tie = number_clip_frames(frames_named(range(1, 10)), boxed(range(1, 11)))
    assert (tie.by, tie.numbers) == ("name", list(range(1, 10)))
    assert tie.why == ("numbered from 1 or from 0 (000000 missing), the names pair 9 of the 10 frames boxes.csv has "
                       "boxes for with an image: taken as numbered from 1, as the clips' own images/000001.png")
    whole = number_clip_frames(frames_named(range(1, 314)), boxed(range(1, 314)))  # the real clips' layout
    assert (whole.by, whole.why) == ("name", None)
    assert number_clip_frames(frames_named(range(1, 314)), boxed(range(40, 80))).why is None  # no box at the ends


def test_eval_pairs_a_clip_named_by_its_recording_s_frames_by_position_and_says_so(tmp_path, capsys):
    clip = tmp_path / "clip"
    write_clip(clip, [f"{k:06d}.png" for k in range(10, 22)], boxed=range(1, 13))  # 10, 11, 12: boxed frames
    result = evaluated("--method", "tophat", "--clip", str(clip), out=tmp_path / "r.json")
    assert (result["frame_numbers"], result["hits"], result["n_targets"], result["false_alarms"]) == \
           ("position", 12, 12, 0)
    assert result["boxes_without_image"] == [] and result["frames_without_boxes"] == []
    assert (f"note: frames are paired with {clip / 'boxes.csv'}'s frame numbers by their position in images/: the "
            "k-th image is frame k, not by their file names (numbered by name, 000010.png to 000021.png would pair 3 "
            "of the 12 frames boxes.csv has boxes for with an image, by position 12)") in capsys.readouterr().err


def test_eval_reads_a_0_based_clip_without_its_000000_from_0(tmp_path, capsys):
    clip = tmp_path / "clip"
    write_clip(clip, [f"{k:06d}.png" for k in range(0, 10)], boxed=range(2, 11))  # 000000.png: frame 1, no box
    (clip / "images/000000.png").unlink()
    result = evaluated("--method", "tophat", "--clip", str(clip), out=tmp_path / "r.json")
    assert (result["frame_numbers"], result["frames"]) == ("name, 0-based", [2, 10])
    assert (result["hits"], result["n_targets"], result["false_alarms"]) == (9, 9, 0)
    assert result["frame_numbers_why"].startswith("numbered from 0 (000000 missing)")
    assert result["boxes_without_image"] == [] and result["frames_without_boxes"] == []
    assert (f"note: frames are paired with {clip / 'boxes.csv'}'s frame numbers by "  # said, not only in the JSON
            in capsys.readouterr().err)
