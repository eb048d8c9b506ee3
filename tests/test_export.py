import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import app.cli
from app.core.export import (
    ExportError,
    dataset_formats,
    dataset_paths,
    export_project,
    read_exported_dataset,
    rle_decode,
    split_files_not_updated_message,
    yolo_boxes,
)
from app.core.frames import open_source
from app.core.normalization import Normalization
from app.core.project import ReviewProject
from app.core.provenance import ProposalOrigin
from model.detectors import FrameResult

REPO = Path(__file__).resolve().parents[1]
SHAPE = (20, 28)
NORMALIZATION = Normalization.fixed(1000, 5000)
DETECTOR = {"name": "irsam", "weights": "/w/irsam.pt", "sha256": "ab" * 32, "config": {}, "device": "cpu",
            "tta": "none", "refine": "contrast", "size_gate": None}
IRSAM_ORIGIN = ProposalOrigin.of(DETECTOR, NORMALIZATION)
MPCM_ORIGIN = ProposalOrigin.of({"name": "mpcm", "size_gate": {"min_area": 2, "max_area": 40}}, NORMALIZATION)
LAYOUTS = ["sirst", "basicirstd", "dnanet"]


def write_frames(folder: Path, n: int, seed: int = 0) -> list[np.ndarray]:
    """16-bit frames, as a real IR camera gives them."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        frame = rng.integers(800, 5200, SHAPE).astype(np.uint16)
        cv2.imwrite(str(folder / f"{i:04d}.png"), frame)
        frames.append(frame)
    return frames


def box(y, x, h=2, w=3):
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y : y + h, x : x + w] = True
    return mask


def prediction(mask):
    return FrameResult(logits=np.where(mask, 4.0, -4.0).astype(np.float32))


def reviewed_project(tmp_path, name="seqA", seed=0):
    """Frames: 0 accepted (prediction only), 1 corrected, 2 negative, 3 rejected, 4 unreviewed,
    5 accepted with a committed mask. Frame 5's proposal is MPCM's, the others IRSAM's (an app run on one
    frame). Returns the project, raw frames and the mask each frame exports."""
    frames = write_frames(tmp_path / name, 6, seed)
    source = open_source(tmp_path / name)
    project = ReviewProject.create(tmp_path / f"{name}.irsam-review", source.path, source.kind, source.stems,
                                   source.shape, NORMALIZATION.to_dict(), DETECTOR)
    source.close()
    predicted = {i: box(2 + i, 3 + 2 * i) for i in range(6)}
    for i, stem in enumerate(project.stems):
        project.save_prediction(stem, prediction(predicted[i]), origin=MPCM_ORIGIN if i == 5 else IRSAM_ORIGIN)
    project.flush_detections()
    s = project.stems
    project.set_status(s[0], "accepted")
    project.commit_mask(s[1], box(10, 10) | box(2, 20, 1, 1))
    project.set_status(s[1], "corrected")
    project.commit_mask(s[2], box(5, 5))  # a leftover edit: negative still exports zeros
    project.set_status(s[2], "negative")
    project.set_status(s[3], "rejected")
    project.commit_mask(s[5], box(15, 1, 1, 1))
    project.set_status(s[5], "accepted")
    expected = {0: predicted[0], 1: box(10, 10) | box(2, 20, 1, 1), 2: np.zeros(SHAPE, bool), 5: box(15, 1, 1, 1)}
    return project, frames, expected, predicted


@pytest.mark.parametrize("layout", LAYOUTS)
def test_export_round_trips(tmp_path, layout):
    project, frames, expected, _ = reviewed_project(tmp_path)
    report = export_project(project, tmp_path / "out", layout, split="train")
    assert report.exported == [f"seqA_{project.stems[i]}" for i in (0, 1, 2, 5)]
    assert dict(report.skipped) == {project.stems[3]: "rejected", project.stems[4]: "unreviewed"}

    samples = read_exported_dataset(tmp_path / "out", layout)
    assert [s[0] for s in samples] == report.exported
    for (stem, image, mask, split), i in zip(samples, (0, 1, 2, 5)):
        assert split == "train"
        np.testing.assert_array_equal(mask, expected[i])
        np.testing.assert_array_equal(image, NORMALIZATION.apply(frames[i]))
    paths = dataset_paths(tmp_path / "out", layout)
    for stem in report.exported:
        written = cv2.imread(str(paths.masks / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert written.dtype == np.uint8 and written.shape == SHAPE
        assert set(np.unique(written)) <= {0, 255}
    assert paths.split_files["test"].read_text() == ""


def test_layout_paths_follow_the_field():
    sirst = dataset_paths("/d", "sirst")
    assert sirst.split_files == {"train": Path("/d/trainval.txt"), "test": Path("/d/test.txt")}
    basic = dataset_paths("/d", "basicirstd", "MyIR")
    assert basic.images == Path("/d/MyIR/images")
    assert basic.split_files["train"] == Path("/d/MyIR/img_idx/train_MyIR.txt")
    dnanet = dataset_paths("/d", "dnanet")
    assert dnanet.split_files["test"] == Path("/d/50_50/test.txt")


def test_unreviewed_frames_only_with_the_flag(tmp_path):
    project, _, _, predicted = reviewed_project(tmp_path)
    report = export_project(project, tmp_path / "out", "sirst", include_unreviewed=True)
    stem4 = f"seqA_{project.stems[4]}"
    assert stem4 in report.exported and f"seqA_{project.stems[3]}" not in report.exported
    masks = {s: m for s, _, m, _ in read_exported_dataset(tmp_path / "out", "sirst")}
    np.testing.assert_array_equal(masks[stem4], predicted[4])


def test_meta_json_records_provenance(tmp_path):
    project, _, _, _ = reviewed_project(tmp_path)
    export_project(project, tmp_path / "out", "dnanet", split="test")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["format"] == "irsam-review-export/1"
    record = meta["frames"][f"seqA_{project.stems[1]}"]
    assert record["source"] == str((tmp_path / "seqA").resolve())
    assert record["frame_index"] == 1 and record["source_stem"] == project.stems[1]
    assert record["normalization"] == NORMALIZATION.to_dict()
    proposal = record["proposal"]
    assert proposal["method"] == "irsam" and proposal["weights"] == "irsam.pt" and proposal["sha256"] == "ab" * 32
    assert proposal["normalization"] == str(NORMALIZATION) and proposal["time"].endswith("+00:00")
    other = meta["frames"][f"seqA_{project.stems[5]}"]["proposal"]  # each frame names its own proposal's detector
    assert other["method"] == "mpcm" and other["size_gate"] == "2-40 px" and other["sha256"] is None
    assert record["status"] == "corrected" and record["mask_from"] == "committed" and record["split"] == "test"
    assert record["exported"].endswith("+00:00")
    assert meta["frames"][f"seqA_{project.stems[0]}"]["mask_from"] == "prediction"
    assert meta["frames"][f"seqA_{project.stems[2]}"]["mask_from"] == "negative"


def test_two_sequences_append_into_one_dataset(tmp_path):
    first, _, _, _ = reviewed_project(tmp_path, "seqA", seed=0)
    second, _, _, _ = reviewed_project(tmp_path, "seqB", seed=1)
    out = tmp_path / "out"
    export_project(first, out, "basicirstd", split="train")
    with pytest.raises(ExportError):
        export_project(second, out, "basicirstd", split="test")
    export_project(second, out, "basicirstd", split="test", append=True)
    # the analyst rejects a frame of the first sequence and exports it again
    first.set_status(first.stems[0], "rejected")
    report = export_project(first, out, "basicirstd", split="train", append=True)
    assert report.removed == [f"seqA_{first.stems[0]}"]
    paths = dataset_paths(out, "basicirstd")
    train = paths.split_files["train"].read_text().splitlines()
    test = paths.split_files["test"].read_text().splitlines()
    assert train == [f"seqA_{first.stems[i]}" for i in (1, 2, 5)]
    assert test == [f"seqB_{second.stems[i]}" for i in (0, 1, 2, 5)]
    assert not (paths.images / f"seqA_{first.stems[0]}.png").exists()
    samples = read_exported_dataset(out, "basicirstd")
    assert len(samples) == 7 and {s[3] for s in samples} == {"train", "test"}
    # moving the sequence to the other side leaves it in one split only
    export_project(first, out, "basicirstd", split="test", append=True)
    assert paths.split_files["train"].read_text() == ""
    assert len(paths.split_files["test"].read_text().splitlines()) == 7


def test_a_sequence_name_taken_by_another_source_is_refused_and_nothing_written(tmp_path):
    # day1/seq01 and day2/seq01 (or two folders opened as images/): same default sequence name
    first, _, first_masks, _ = reviewed_project(tmp_path / "day1", "seq01", seed=0)
    second, _, second_masks, _ = reviewed_project(tmp_path / "day2", "seq01", seed=1)
    out = tmp_path / "out"
    export_project(first, out, "sirst", split="train", raw=True)
    before = snapshot(out)
    with pytest.raises(ExportError) as refused:
        export_project(second, out, "sirst", split="test", append=True)
    message = str(refused.value)
    assert str(first.source_path) in message and str(second.source_path) in message
    assert "'seq01'" in message and "export under another sequence name" in message
    assert snapshot(out) == before  # the first sequence's 4 frames neither overwritten nor removed

    report = export_project(second, out, "sirst", split="test", append=True, sequence_name="seq01-day2")
    assert report.removed == []
    masks = {(stem, split): mask for stem, _, mask, split in read_exported_dataset(out, "sirst")}
    assert len(masks) == 8
    for i, truth in first_masks.items():
        np.testing.assert_array_equal(masks[f"seq01_{first.stems[i]}", "train"], truth)
    for i, truth in second_masks.items():
        np.testing.assert_array_equal(masks[f"seq01-day2_{second.stems[i]}", "test"], truth)


def test_a_source_already_exported_under_another_name_is_refused(tmp_path):
    project, _, _, _ = reviewed_project(tmp_path)
    out = tmp_path / "out"
    export_project(project, out, "dnanet", split="train")
    before = snapshot(out)
    with pytest.raises(ExportError, match="as sequence 'seqA'.*twice.*export under the sequence name 'seqA'"):
        export_project(project, out, "dnanet", split="test", append=True, sequence_name="renamed")
    assert snapshot(out) == before  # its frames would be in both splits

    # a project made again over the same frames is the same sequence: it replaces the earlier entries
    source = open_source(project.source_path)
    remade = ReviewProject.create(tmp_path / "seqA-new", source.path, source.kind, source.stems, source.shape,
                                  NORMALIZATION.to_dict(), DETECTOR)
    source.close()
    remade.save_prediction(remade.stems[0], prediction(box(2, 3)))
    remade.set_status(remade.stems[0], "accepted")
    report = export_project(remade, out, "dnanet", split="test", append=True, sequence_name="seqA")
    assert report.exported == [f"seqA_{remade.stems[0]}"] and len(report.removed) == 3
    assert [(s[0], s[3]) for s in read_exported_dataset(out, "dnanet")] == [(f"seqA_{remade.stems[0]}", "test")]


def test_a_data_set_stem_of_another_sequence_is_not_overwritten(tmp_path):
    first, _, _, _ = reviewed_project(tmp_path)
    out = tmp_path / "out"
    export_project(first, out, "sirst", sequence_name="cam_0000")  # stems cam_0000_0000, cam_0000_0001...
    frames = tmp_path / "cam"
    write_frames(frames, 1, seed=1)  # other frames: the same values would be the same source's
    (frames / "0000.png").rename(frames / "0000_0001.png")  # as sequence "cam": stem cam_0000_0001 again
    source = open_source(frames)
    second = ReviewProject.create(tmp_path / "cam.irsam-review", source.path, source.kind, source.stems, source.shape,
                                  NORMALIZATION.to_dict(), DETECTOR)
    source.close()
    second.save_prediction(second.stems[0], prediction(box(2, 3)))
    second.set_status(second.stems[0], "accepted")
    before = snapshot(out)
    with pytest.raises(ExportError, match="already holds cam_0000_0001, a frame of .*seqA .*would overwrite it"):
        export_project(second, out, "sirst", append=True)
    assert snapshot(out) == before


def test_unreadable_frames_and_damaged_masks_are_skipped(tmp_path):
    project, _, _, _ = reviewed_project(tmp_path)
    frame_file = tmp_path / "seqA" / f"{project.stems[0]}.png"
    frame_file.write_bytes(frame_file.read_bytes()[:40])
    label = project.folder / "labels" / f"{project.stems[1]}.png"
    label.write_bytes(label.read_bytes()[:30])
    report = export_project(project, tmp_path / "out", "sirst")
    assert report.exported == [f"seqA_{project.stems[i]}" for i in (2, 5)]
    reasons = dict(report.skipped)
    assert reasons[project.stems[0]].startswith("unreadable frame")
    assert reasons[project.stems[1]] == "damaged committed mask"


def test_an_append_keeps_the_earlier_export_of_frames_unreadable_now(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(app.cli, "COMMANDS", {"export": app.cli.COMMANDS["export"]})
    project, _, expected, predicted = reviewed_project(tmp_path)
    s = project.stems
    out = tmp_path / "out"
    export_project(project, out, "sirst", split="train", yolo=True)
    earlier = snapshot(out)
    earlier_meta = json.loads((out / "meta.json").read_text())["frames"]
    # still accepted, corrected and accepted, but unreadable now: frame 0 moved away, frame 1 damaged,
    # frame 5's committed mask damaged; frame 2 is rejected now, frame 3 accepted now
    frames = tmp_path / "seqA"
    (frames / f"{s[0]}.png").rename(tmp_path / f"{s[0]}.png")
    (frames / f"{s[1]}.png").write_bytes((frames / f"{s[1]}.png").read_bytes()[:40])
    label = project.folder / "labels" / f"{s[5]}.png"
    label.write_bytes(label.read_bytes()[:30])
    project.set_status(s[2], "rejected")
    project.set_status(s[3], "accepted")

    code = app.cli.main(["export", str(project.folder), "--out", str(out), "--append", "--split", "test"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "removed 1 frame of an earlier export of this sequence (no longer selected)" in printed
    assert f"kept the earlier export of 3 frames that cannot be read now (e.g. seqA_{s[0]}: not in the source)" \
        in printed
    kept = [f"seqA_{s[i]}" for i in (0, 1, 5)]
    for stem in kept:
        for folder in ("images", "masks", "labels"):
            name = f"{folder}/{stem}.{'txt' if folder == 'labels' else 'png'}"
            assert (out / name).read_bytes() == earlier[name]
    assert not (out / "images" / f"seqA_{s[2]}.png").exists() and not (out / "masks" / f"seqA_{s[2]}.png").exists()
    meta = json.loads((out / "meta.json").read_text())["frames"]
    assert sorted(meta) == sorted(kept + [f"seqA_{s[3]}"])
    for stem in kept:  # the sequence moved to the test side, its kept frames with it
        assert meta[stem] == {**earlier_meta[stem], "split": "test"}
    # all on one side, in frame order, and readable as training reads them
    assert (out / "trainval.txt").read_text() == ""
    assert [(stem, split) for stem, _, _, split in read_exported_dataset(out, "sirst")] == \
        [(f"seqA_{s[i]}", "test") for i in (0, 1, 3, 5)]
    masks = {stem: mask for stem, _, mask, _ in read_exported_dataset(out, "sirst")}
    for i, truth in ((0, expected[0]), (1, expected[1]), (3, predicted[3]), (5, expected[5])):
        np.testing.assert_array_equal(masks[f"seqA_{s[i]}"], truth)


def test_progress_follows_every_selected_frame_before_the_split_files(tmp_path):
    project, _, _, _ = reviewed_project(tmp_path)
    frame_file = tmp_path / "seqA" / f"{project.stems[0]}.png"
    frame_file.write_bytes(frame_file.read_bytes()[:40])  # selected, then skipped as unreadable
    out = tmp_path / "out"
    paths = dataset_paths(out, "sirst")
    calls = []

    def progress(done, total):
        # images are written under temporary names (.<stem>.png.<random>.tmp), renamed in place at the end
        files = list(paths.images.iterdir()) if paths.images.exists() else []
        written = sorted(p.name.split(".")[1] for p in files if p.name.endswith(".tmp"))
        in_place = [p.name for p in files if not p.name.endswith(".tmp")]
        calls.append((done, total, written, in_place, paths.split_files["train"].exists(),
                      (out / "meta.json").exists()))

    report = export_project(project, out, "sirst", progress=progress)
    stems = [f"seqA_{project.stems[i]}" for i in (1, 2, 5)]
    assert report.exported == stems
    assert calls == [
        (1, 4, [], [], False, False),  # frame 0: unreadable, still counted
        (2, 4, stems[:1], [], False, False),
        (3, 4, stems[:2], [], False, False),
        (4, 4, stems, [], False, False),
    ]
    assert paths.split_files["train"].read_text().splitlines() == stems
    assert sorted(p.name for p in paths.images.iterdir()) == [f"{s}.png" for s in stems]


def test_nothing_to_export_writes_nothing(tmp_path):
    project, _, _, _ = reviewed_project(tmp_path)
    for stem in project.stems:
        project.set_status(stem, "rejected")
    report = export_project(project, tmp_path / "out", "sirst")
    assert report.exported == [] and len(report.skipped) == 6
    assert not (tmp_path / "out").exists()


def test_raw_coco_and_yolo_options(tmp_path):
    project, frames, expected, _ = reviewed_project(tmp_path)
    export_project(project, tmp_path / "out", "sirst", raw=True, coco=True, yolo=True)
    stem1 = f"seqA_{project.stems[1]}"
    raw = cv2.imread(str(tmp_path / "out" / "raw" / f"{stem1}.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw, frames[1])

    coco = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    assert [im["file_name"] for im in coco["images"]][1] == f"{stem1}.png"
    image_id = coco["images"][1]["id"]
    annotations = [a for a in coco["annotations"] if a["image_id"] == image_id]
    assert [a["bbox"] for a in annotations] == [[20, 2, 1, 1], [10, 10, 3, 2]]
    union = np.zeros(SHAPE, dtype=bool)
    for a in annotations:
        union |= rle_decode(a["segmentation"])
    np.testing.assert_array_equal(union, expected[1])
    assert json.loads((tmp_path / "out" / "annotations" / "instances_test.json").read_text())["images"] == []

    yolo = (tmp_path / "out" / "labels" / f"{stem1}.txt").read_text().splitlines()
    assert yolo == [f"0 {20.5 / 28:.6f} {2.5 / 20:.6f} {1 / 28:.6f} {1 / 20:.6f}",
                    f"0 {11.5 / 28:.6f} {11 / 20:.6f} {3 / 28:.6f} {2 / 20:.6f}"]
    assert (tmp_path / "out" / "labels" / f"seqA_{project.stems[2]}.txt").read_text() == ""
    assert yolo_boxes(np.zeros(SHAPE, bool)) == ""


def test_an_append_rewrites_the_formats_the_data_set_has(tmp_path):
    project, frames, expected, _ = reviewed_project(tmp_path)
    out = tmp_path / "out"
    export_project(project, out, "sirst", split="train", raw=True, coco=True, yolo=True)
    assert dataset_formats(out, "sirst") == {"raw", "coco", "yolo"}
    stem1, stem5 = f"seqA_{project.stems[1]}", f"seqA_{project.stems[5]}"
    assert (out / "labels" / f"{stem1}.txt").read_text().count("\n") == 2
    # the analyst deletes frame 1's targets, rejects frame 5 and exports again to the test side, no format ticked
    project.commit_mask(project.stems[1], np.zeros(SHAPE, bool))
    project.set_status(project.stems[5], "rejected")
    report = export_project(project, out, "sirst", split="test", append=True)
    exported = [f"seqA_{project.stems[i]}" for i in (0, 1, 2)]
    assert report.exported == exported and report.removed == [stem5]
    assert report.formats == report.formats_already_held == ["raw", "coco", "yolo"]
    assert "Raw copies, COCO annotations, YOLO boxes written though not asked for" in "\n".join(
        report.formats_summary())

    assert (out / "labels" / f"{stem1}.txt").read_text() == ""  # the old file held frame 1's 2 boxes
    assert not (out / "labels" / f"{stem5}.txt").exists() and not (out / "raw" / f"{stem5}.png").exists()
    coco_train = json.loads((out / "annotations" / "instances_train.json").read_text())
    coco_test = json.loads((out / "annotations" / "instances_test.json").read_text())
    assert coco_train["images"] == [] and coco_train["annotations"] == []  # no test frame left in training
    assert [im["file_name"] for im in coco_test["images"]] == [f"{s}.png" for s in exported]
    assert len(coco_test["annotations"]) == 1  # frame 0's one box; frames 1 and 2 are empty
    np.testing.assert_array_equal(rle_decode(coco_test["annotations"][0]["segmentation"]), expected[0])
    meta = json.loads((out / "meta.json").read_text())
    for i, stem in zip((0, 1, 2), exported):
        assert meta["frames"][stem]["raw"] == f"raw/{stem}.png"
        np.testing.assert_array_equal(cv2.imread(str(out / "raw" / f"{stem}.png"), cv2.IMREAD_UNCHANGED), frames[i])
    assert sorted(p.name for p in (out / "raw").iterdir()) == [f"{s}.png" for s in exported]
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"{s}.txt" for s in exported]


def test_yolo_asked_in_an_append_labels_the_earlier_sequences_too(tmp_path):
    first, _, first_masks, _ = reviewed_project(tmp_path, "seqA", seed=0)
    second, _, _, _ = reviewed_project(tmp_path, "seqB", seed=1)
    out = tmp_path / "out"
    export_project(first, out, "basicirstd", split="train")
    (out / "IRSAM-Review" / "labels").mkdir()
    (out / "IRSAM-Review" / "labels" / ".seqA_0000.txt.k3j9x.tmp").write_text("")  # a killed export's leftover
    assert dataset_formats(out, "basicirstd") == set()
    report = export_project(second, out, "basicirstd", split="test", append=True, yolo=True)
    first_stems = [f"seqA_{first.stems[i]}" for i in first_masks]
    assert report.formats == ["yolo"] and report.formats_already_held == []
    assert report.labels_added == first_stems  # without a file, a YOLO loader trains them as target-free
    for stem, truth in zip(first_stems, first_masks.values()):
        assert (out / "IRSAM-Review" / "labels" / f"{stem}.txt").read_text() == yolo_boxes(truth)
    assert "4 YOLO label files added for frames of earlier exports" in "\n".join(report.formats_summary())


def test_annotations_need_every_listed_mask(tmp_path):
    first, _, _, _ = reviewed_project(tmp_path, "seqA", seed=0)
    second, _, _, _ = reviewed_project(tmp_path, "seqB", seed=1)
    out = tmp_path / "out"
    export_project(first, out, "sirst", coco=True)
    lost = out / "masks" / f"seqA_{first.stems[1]}.png"
    lost.unlink()
    before = snapshot(out)
    with pytest.raises(ExportError, match=f"cannot read {re.escape(str(lost))}, the mask of a frame listed"):
        export_project(second, out, "sirst", split="test", append=True)
    assert snapshot(out) == before


def test_importer_accepts_png_suffixes_and_pixels0_masks(tmp_path):
    root = tmp_path / "sirst"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    rgb = np.dstack([image] * 3)
    cv2.imwrite(str(root / "images" / "Misc_1.png"), rgb)
    cv2.imwrite(str(root / "images" / "Misc_2.png"), image)
    mask = np.zeros((3, 4), np.uint8)
    mask[1, 2] = 255
    cv2.imwrite(str(root / "masks" / "Misc_1_pixels0.png"), mask)
    cv2.imwrite(str(root / "masks" / "Misc_2.png"), mask)
    (root / "idx_427").mkdir()
    (root / "idx_427" / "trainval.txt").write_text("Misc_1.png\n\nMisc_2\n")
    (root / "idx_427" / "test.txt").write_text("Misc_2.png\n")
    samples = read_exported_dataset(root, "sirst")
    assert [(s[0], s[3]) for s in samples] == [("Misc_1", "train"), ("Misc_2", "train"), ("Misc_2", "test")]
    np.testing.assert_array_equal(samples[0][1], image)
    assert samples[0][2].sum() == 1 and samples[0][2][1, 2]


def detect_only_project(tmp_path):
    """What `irsam detect` leaves: project.json, predictions, detections.csv; no review.json."""
    write_frames(tmp_path / "cam7" / "images", 3)
    source = open_source(tmp_path / "cam7" / "images")
    project = ReviewProject.create(tmp_path / "clip7", source.path, source.kind, source.stems, source.shape,
                                   NORMALIZATION.to_dict(), DETECTOR)
    for i, stem in enumerate(source.stems):
        project.save_prediction(stem, prediction(box(1 + i, 1 + i)))
    project.flush_detections()
    source.close()
    assert not (tmp_path / "clip7" / "review.json").exists()
    return project


def test_cli_in_process(tmp_path, capsys, monkeypatch):
    # only this subcommand: the others import torch at module level, which costs seconds here
    monkeypatch.setattr(app.cli, "COMMANDS", {"export": app.cli.COMMANDS["export"]})
    detect_only_project(tmp_path)
    out = tmp_path / "ds"
    assert app.cli.main(["export", str(tmp_path / "clip7"), "--out", str(out), "--layout", "dnanet"]) == 1
    assert "nothing exported" in capsys.readouterr().err and not out.exists()
    code = app.cli.main(["export", str(tmp_path / "clip7"), "--out", str(out), "--layout", "dnanet",
                         "--include-unreviewed", "--split", "test", "--yolo"])
    assert code == 0 and "exported 3 frames" in capsys.readouterr().out
    samples = read_exported_dataset(out, "dnanet")
    # named as the app names the sequence: after its source (cam7/images), not the project folder
    assert [(s[0], s[3]) for s in samples] == [("cam7_0000", "test"), ("cam7_0001", "test"), ("cam7_0002", "test")]
    assert (out / "labels" / "cam7_0000.txt").exists()
    code = app.cli.main(["export", str(tmp_path / "clip7"), "--out", str(out), "--layout", "dnanet",
                         "--include-unreviewed", "--append"])
    assert code == 0 and "YOLO boxes written though not asked for" in capsys.readouterr().out
    assert app.cli.main(["export", str(tmp_path / "missing"), "--out", str(out)]) == 2


def test_cli_subprocess(tmp_path):
    project, _, expected, _ = reviewed_project(tmp_path)
    out = tmp_path / "ds"
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "export", str(project.folder), "--out", str(out), "--layout", "sirst",
         "--raw", "--coco"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "exported 4 frames" in done.stdout and "1 rejected" in done.stdout
    samples = read_exported_dataset(out, "sirst")
    assert len(samples) == 4 and (out / "annotations" / "instances_train.json").exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones included) with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fail_writes_after(monkeypatch, n: int) -> list[Path]:
    """Make the export's file writes fail with a full disk after `n` succeed; returns the targets tried."""
    import app.core.export as export_module

    real_write = export_module.write_temporary_beside
    tried = []

    def write(path, data):
        tried.append(Path(path))
        if len(tried) > n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, data)

    monkeypatch.setattr(export_module, "write_temporary_beside", write)
    return tried


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", ".hidden", "", "tab\there", " lead", "trail ",
                                  "two\nlines", "para\u2029graph"])
def test_sequence_and_dataset_names_must_be_plain(tmp_path, name):
    project, _, _, _ = reviewed_project(tmp_path)
    out = tmp_path / "sets" / "out"
    with pytest.raises(ExportError, match="not a plain name"):
        export_project(project, out, "sirst", sequence_name=name)
    with pytest.raises(ExportError, match="not a plain name"):
        export_project(project, out, "basicirstd", dataset_name=name)
    assert not (tmp_path / "sets").exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("layout", LAYOUTS)
# seqA writes 15 frame files (image, mask, raw), seqB 12, then both 2 split files and meta.json
@pytest.mark.parametrize("writes_before_full", [0, 4, 12, 14])
def test_full_disk_leaves_the_data_set_as_it_was(tmp_path, monkeypatch, layout, writes_before_full):
    first, _, _, _ = reviewed_project(tmp_path, "seqA", seed=0)
    second, _, _, _ = reviewed_project(tmp_path, "seqB", seed=1)
    out = tmp_path / "out"
    export_project(first, out, layout, raw=True)
    before = snapshot(out)
    first.set_status(first.stems[4], "accepted")  # re-exported: replaces seqA's files, adds one
    tried = fail_writes_after(monkeypatch, writes_before_full)
    for project in (first, second):
        tried.clear()
        with pytest.raises(ExportError, match="No space left on device") as failure:
            export_project(project, out, layout, append=True, raw=True)
        assert str(tried[-1]) in str(failure.value)  # names the file it could not write
        assert snapshot(out) == before  # no new file, no temporary file, replaced files untouched


def test_failed_rename_of_frame_files_removes_the_new_ones(tmp_path, monkeypatch):
    project, _, _, _ = reviewed_project(tmp_path)
    out = tmp_path / "out"
    real_replace = os.replace
    renamed = []

    def replace(source, target):
        renamed.append(target)
        if len(renamed) == 3:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    third = re.escape(str(out / "images" / f"seqA_{project.stems[1]}.png"))  # frame 0's image, its mask, then this
    with pytest.raises(ExportError, match=f"^cannot write {third}: Input/output error$"):
        export_project(project, out, "sirst")
    monkeypatch.setattr(os, "replace", real_replace)
    assert snapshot(out) == {}  # the two renamed in place are new: removed again
    assert export_project(project, out, "sirst").exported  # a retry needs no append


def test_export_cut_short_while_renaming_meta_json_can_be_completed(tmp_path, monkeypatch):
    project, _, _, _ = reviewed_project(tmp_path)
    out = tmp_path / "out"
    real_replace = os.replace

    def replace(source, target):
        if Path(target).name == "meta.json":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(ExportError, match="meta.json: Input/output error; .* is partly updated: export again, adding"):
        export_project(project, out, "sirst")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (out / "meta.json").exists() and not [p for p in out.rglob(".*")]
    with pytest.raises(ExportError, match="already holds a data set"):
        export_project(project, out, "sirst")
    report = export_project(project, out, "sirst", append=True)
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(meta["frames"]) == sorted(report.exported) == (out / "trainval.txt").read_text().split()


def test_hidden_leftovers_of_a_killed_export_do_not_hold_a_data_set(tmp_path):
    project, _, _, _ = reviewed_project(tmp_path)
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / ".seqA_0000.png.k3j9x.tmp").write_bytes(b"half a png")
    assert export_project(project, out, "sirst").exported


def test_cli_names_the_flags_of_its_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(app.cli, "COMMANDS", {"export": app.cli.COMMANDS["export"]})
    project, _, _, _ = reviewed_project(tmp_path)
    out = tmp_path / "ds"
    assert app.cli.main(["export", str(project.folder), "--out", str(out)]) == 0
    capsys.readouterr()
    before = snapshot(out)

    assert app.cli.main(["export", str(project.folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {out} already holds a data set: choose another --out, or add to it with --append\n"

    assert app.cli.main(["export", str(project.folder), "--out", str(out), "--append", "--sequence", "../evil"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sequence name '../evil' is not a plain name") and err.count("\n") == 1
    assert app.cli.main(["export", str(project.folder), "--out", str(tmp_path / "b"), "--layout", "basicirstd",
                         "--dataset-name", "../../x"]) == 2
    assert "data set name '../../x' is not a plain name" in capsys.readouterr().err

    fail_writes_after(monkeypatch, 5)
    assert app.cli.main(["export", str(project.folder), "--out", str(out), "--append", "--raw"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {out}/") and err.endswith(": No space left on device\n")
    assert snapshot(out) == before and not (tmp_path / "b").exists() and not (tmp_path / "x").exists()


def test_a_sequence_opened_as_dot_or_hidden_exports_under_a_plain_name(tmp_path, monkeypatch):
    from app.session import ReviewSession

    write_frames(tmp_path / ".seqB", 2)
    monkeypatch.chdir(tmp_path / ".seqB")
    session = ReviewSession.open(".")
    assert session.name == ".seqB" and session.sequence_name == "seqB"
    project = session.ensure_project()
    project.save_prediction(project.stems[0], prediction(box(2, 3)))
    project.set_status(project.stems[0], "accepted")
    report = export_project(project, tmp_path / "out", "sirst", sequence_name=session.sequence_name,
                            source=session.source, normalization=session.normalization)
    assert report.exported == [f"seqB_{project.stems[0]}"]
    session.close()


def test_a_frames_folder_named_images_exports_under_its_parent_s_name(tmp_path):
    from app.session import ReviewSession

    write_frames(tmp_path / "IR_DRONE_146" / "images", 2)
    session = ReviewSession.open(tmp_path / "IR_DRONE_146" / "images")
    assert session.name == "images" and session.sequence_name == "IR_DRONE_146"
    session.close()


def test_the_dialog_summary_names_frames_kept_and_removed():
    from app.core.export import ExportReport
    from app.widgets.export_dialog import describe_report

    report = ExportReport(Path("/data/set"), "sirst", "train", exported=["s_000001"], removed=["s_000004"],
                          kept=[("s_000002", "not in the source"), ("s_000003", "corrupt image")])
    text = describe_report(report)
    assert "1 frame of an earlier export of this sequence removed (no longer selected)." in text
    assert "2 frames that cannot be read now keep their earlier export (e.g. s_000002: not in the source)" in text


def test_the_dialog_summary_names_frames_left_out_as_another_sequence_s_or_changed_on_disk():
    from app.core.export import FRAME_CHANGED, ExportReport
    from app.widgets.export_dialog import describe_report

    report = ExportReport(Path("/data/set"), "sirst", "train", exported=["b_000001"],
                          shared=[("000008", "a_000008"), ("000009", "a_000009")], changed=["000003"],
                          kept=[("b_000003", FRAME_CHANGED)], temporary_removed=[".x.png.abcd1234.tmp"])
    text = describe_report(report)
    assert ("2 frames not exported: the data set already holds their pixels as frames of another sequence, a clip "
            "that overlaps this one (000008 (as a_000008), 000009 (as a_000009))") in text
    assert "1 frame not exported: it changed on disk since its mask or status was made (000003)" in text
    assert "It keeps its earlier export" in text and "cannot be read now" not in text
    assert "1 temporary file left by an export cut short was removed." in text


def test_an_export_into_the_sequence_s_own_folders_is_refused_and_nothing_written(tmp_path):
    """A clip laid out as CLIP/images + CLIP/masks (ground truth): exporting into CLIP, even as an append,
    would add the exported frames to the source and its ground truth."""
    clip = tmp_path / "clip"
    write_frames(clip / "images", 3)
    (clip / "masks").mkdir()
    source = open_source(clip / "images")
    project = ReviewProject.create(tmp_path / "clip.irsam-review", source.path, source.kind, source.stems,
                                   source.shape, NORMALIZATION.to_dict(), DETECTOR)
    source.close()
    project.commit_mask(project.stems[0], box(2, 2))
    project.set_status(project.stems[0], "corrected")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out, append in ((clip, False), (clip, True), (clip / "images" / "labels", False), (project.folder, True)):
        with pytest.raises(ExportError, match=r"would put the exported frames into (the sequence's frames folder|a "
                                              r"review project) .*: choose a folder outside it"):
            export_project(project, out, "sirst", append=append)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    report = export_project(project, tmp_path / "labels", "sirst")  # beside them: exported
    assert len(report.exported) == 1
    report = export_project(project, project.folder / "finetune" / "data", "sirst")  # the app's fine-tune folders
    assert len(report.exported) == 1


def test_the_default_sequence_name_is_the_source_s_as_the_app_names_it():
    from app.core.export import source_sequence_name

    assert source_sequence_name("/data/IR_DRONE_146", "folder") == "IR_DRONE_146"
    assert source_sequence_name("/data/IR_DRONE_146/images", "folder") == "IR_DRONE_146"
    assert source_sequence_name("/data/pile été.tif", "tiff") == "pile été"  # not "pile été.tif_000001.png"
    assert source_sequence_name("/data/.hidden", "folder") == "hidden"
    assert source_sequence_name("/data/clip ", "folder") == "clip"  # a plain name (export refuses "clip ")


def test_an_append_without_a_sequence_name_keeps_the_name_the_data_set_gives_this_source(tmp_path, monkeypatch):
    monkeypatch.setattr(app.cli, "COMMANDS", {"export": app.cli.COMMANDS["export"]})
    project = reviewed_project(tmp_path)[0]
    out = tmp_path / "ds"
    export_project(project, out, "sirst", sequence_name="day1")  # e.g. under an earlier version's default name
    project.set_status(project.stems[4], "accepted")
    assert app.cli.main(["export", str(project.folder), "--out", str(out), "--append"]) == 0
    stems = [stem for stem, *_ in read_exported_dataset(out, "sirst")]
    assert stems == [f"day1_{project.stems[i]}" for i in (0, 1, 2, 4, 5)]  # replaced, not refused


def test_an_image_of_a_data_set_does_not_export_into_that_data_set_but_a_stack_exports_beside_itself(tmp_path):
    write_frames(tmp_path / "nuaa" / "images", 2)
    for source_path in (tmp_path / "nuaa" / "images" / "0000.png", tmp_path / "flight.tif"):
        if source_path.suffix == ".tif":
            import tifffile

            tifffile.imwrite(source_path, np.zeros((2, *SHAPE), np.uint16))
        source = open_source(source_path)
        project = ReviewProject.create(tmp_path / f"{source_path.stem}.irsam-review", source.path, source.kind,
                                       source.stems, source.shape, NORMALIZATION.to_dict(), DETECTOR)
        source.close()
        project.commit_mask(project.stems[0], box(2, 2))
        project.set_status(project.stems[0], "corrected")
        if source.kind == "image":
            with pytest.raises(ExportError, match=r"into the sequence's frames folder .*nuaa/images\)"):
                export_project(project, tmp_path / "nuaa", "sirst", append=True)
        else:
            assert project.stems[0] == "flight_000001"  # the page stem already names the stack: no prefix again
            assert export_project(project, tmp_path / "labels", "sirst").exported == ["flight_000001"]


def test_an_export_into_the_ground_truth_or_another_review_project_is_refused(tmp_path):
    """A clip laid out as CLIP/frames + CLIP/masks, and a TIFF stack with masks/ beside it (make-demo --tiff):
    the data set's masks/ would be their ground truth. Another project over the same source would gain
    files in its proposals' masks/."""
    write_frames(tmp_path / "clipF" / "frames", 2)
    (tmp_path / "clipF" / "masks").mkdir()
    (tmp_path / "demo" / "masks").mkdir(parents=True)
    import tifffile

    tifffile.imwrite(tmp_path / "demo" / "stack.tif", np.zeros((2, *SHAPE), np.uint16))
    for source_path in (tmp_path / "clipF" / "frames", tmp_path / "demo" / "stack.tif"):
        source = open_source(source_path)
        project = ReviewProject.create(tmp_path / f"{source_path.parent.name}.irsam-review", source.path, source.kind,
                                       source.stems, source.shape, NORMALIZATION.to_dict(), DETECTOR)
        other = ReviewProject.create(tmp_path / f"{source_path.parent.name}-2.irsam-review", source.path,
                                     source.kind, source.stems, source.shape, NORMALIZATION.to_dict(), DETECTOR)
        source.close()
        project.commit_mask(project.stems[0], box(2, 2))
        project.set_status(project.stems[0], "corrected")
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        for out in (source_path.parent, source_path.parent / "masks"):
            with pytest.raises(ExportError, match=r"into the sequence's ground-truth masks .*masks\): choose"):
                export_project(project, out, "sirst", append=True)
        with pytest.raises(ExportError, match=r"into a review project .*-2\.irsam-review\): choose"):
            export_project(project, other.folder, "sirst", append=True)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_frames_already_held_under_another_sequence_name_are_refused_after_a_rename(tmp_path):
    """Exported as clipR1; the clip and its project renamed since: the paths no longer tell, the values do."""
    project = reviewed_project(tmp_path, "clipR1")[0]
    out = tmp_path / "ds"
    export_project(project, out, "sirst", split="train")
    (tmp_path / "clipR1").rename(tmp_path / "clipR2")
    (tmp_path / "clipR1.irsam-review").rename(tmp_path / "clipR2.irsam-review")
    source = open_source(tmp_path / "clipR2")
    moved = ReviewProject.create(tmp_path / "clipR2.irsam-review", source.path, source.kind, source.stems, source.shape,
                                 NORMALIZATION.to_dict(), DETECTOR, exist_ok=True)
    source.close()
    before = snapshot(out)
    with pytest.raises(ExportError, match=r"already holds the frames of .*clipR2 as sequence 'clipR1' \(e.g. "
                                          r"clipR1_.*export under the sequence name 'clipR1' to replace them"):
        export_project(moved, out, "sirst", split="test", append=True)
    assert snapshot(out) == before  # not in train and test at once
    report = export_project(moved, out, "sirst", split="test", append=True, sequence_name="clipR1")
    assert len(report.exported) == 4 and {split for *_, split in read_exported_dataset(out, "sirst")} == {"test"}


def _stack_project(tmp_path, n=3):
    import tifffile

    rng = np.random.default_rng(5)
    tifffile.imwrite(tmp_path / "stack.tif", rng.integers(800, 5200, (n, *SHAPE)).astype(np.uint16),
                     photometric="minisblack")
    source = open_source(tmp_path / "stack.tif")
    project = ReviewProject.create(tmp_path / "stack.irsam-review", source.path, source.kind, source.stems,
                                   source.shape, NORMALIZATION.to_dict(), DETECTOR)
    source.close()
    for i, stem in enumerate(project.stems):
        project.commit_mask(stem, box(2 + i, 3))
    return project


def test_a_tiff_stack_s_pages_export_without_the_stack_name_twice(tmp_path):
    project = _stack_project(tmp_path)
    assert project.stems == ["stack_000001", "stack_000002", "stack_000003"]
    for stem in project.stems:
        project.set_status(stem, "corrected")
    report = export_project(project, tmp_path / "out", "sirst")
    assert report.exported == ["stack_000001", "stack_000002", "stack_000003"]
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [f"{s}.png" for s in project.stems]
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["frames"]["stack_000002"]["source_stem"] == "stack_000002"
    # under another sequence name the prefix is added as ever
    assert export_project(project, tmp_path / "day1", "sirst", sequence_name="day1").exported[0] == \
        "day1_stack_000001"


def test_an_append_to_a_data_set_exported_under_the_doubled_names_keeps_them(tmp_path, monkeypatch):
    """A data set exported before the rule changed holds stack_stack_000001...: an append replaces those files in
    place (no second copy of a frame, nothing renamed under a training run), and a frame exported for the first
    time takes the new name."""
    import app.core.export as export_module

    project = _stack_project(tmp_path)
    s = project.stems
    for stem in s[:2]:
        project.set_status(stem, "corrected")
    new_rule = export_module.dataset_stem_names
    monkeypatch.setattr(export_module, "dataset_stem_names",
                        lambda sequence, stems, *_: {stem: f"{sequence}_{stem}" for stem in stems})  # the old rule
    assert export_project(project, tmp_path / "out", "sirst").exported == ["stack_stack_000001", "stack_stack_000002"]
    monkeypatch.setattr(export_module, "dataset_stem_names", new_rule)

    project.commit_mask(s[0], box(8, 8))
    project.set_status(s[2], "corrected")
    report = export_project(project, tmp_path / "out", "sirst", append=True)
    assert report.exported == ["stack_stack_000001", "stack_stack_000002", "stack_000003"] and report.removed == []
    exported = {stem: mask for stem, _, mask, _ in read_exported_dataset(tmp_path / "out", "sirst")}
    assert list(exported) == ["stack_stack_000001", "stack_stack_000002", "stack_000003"]
    np.testing.assert_array_equal(exported["stack_stack_000001"], box(8, 8))  # replaced in place
    assert len(list((tmp_path / "out" / "images").iterdir())) == 3
    assert app.cli.main(["export", str(project.folder), "--out", str(tmp_path / "out"), "--append"]) == 0
    assert len(json.loads((tmp_path / "out" / "meta.json").read_text())["frames"]) == 3


def test_a_stem_starting_with_the_sequence_name_keeps_the_prefix_when_dropping_it_would_take_another_s_name():
    from app.core.export import dataset_stem_names

    stems = ["seq_1", "1", "seq_2", "seq", "seq_"]
    assert dataset_stem_names("seq", stems, stems, {}) == {
        "seq_1": "seq_seq_1",  # "seq_1" is also what frame "1" exports as
        "1": "seq_1",
        "seq_2": "seq_2",
        "seq": "seq_seq",
        "seq_": "seq_",
    }


def _published_sirst(root: Path, split_folders: list[str]) -> None:
    """A SIRST data set laid out as published: images/, masks/ and split files only in `split_folders` (each with
    the train.txt and val.txt of a held-out split beside trainval.txt and test.txt)."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    image, mask = np.full((6, 8), 40, np.uint8), np.zeros((6, 8), np.uint8)
    mask[2, 3] = 255
    for stem in ("Misc_1", "Misc_2"):
        cv2.imwrite(str(root / "images" / f"{stem}.png"), image)
        cv2.imwrite(str(root / "masks" / f"{stem}_pixels0.png"), mask)
    for folder in split_folders:
        (root / folder).mkdir(parents=True)
        (root / folder / "trainval.txt").write_text("Misc_1.png\n")
        (root / folder / "test.txt").write_text("Misc_2\n")
        (root / folder / "train.txt").write_text("Misc_1\n")
        (root / folder / "val.txt").write_text("")


def test_an_append_to_a_published_sirst_adds_to_its_own_split_files(tmp_path):
    """Spec audit 25: it wrote new trainval.txt and test.txt at the top, listing only the new frames, and left
    splits/idx_427/ as it was: readers of either then saw half of the data set."""
    project, _, _, _ = reviewed_project(tmp_path, "seqA", seed=0)
    out = tmp_path / "nuaa"
    _published_sirst(out, ["splits/idx_427"])
    report = export_project(project, out, "sirst", split="train", append=True)
    assert not (out / "trainval.txt").exists() and not (out / "test.txt").exists()
    assert (out / "splits/idx_427/trainval.txt").read_text().splitlines() == ["Misc_1", *report.exported]
    assert (out / "splits/idx_427/test.txt").read_text().splitlines() == ["Misc_2"]
    samples = read_exported_dataset(out, "sirst")  # the reader reads where the writer wrote
    assert [s[0] for s in samples if s[3] == "train"] == ["Misc_1", *report.exported]
    # its other split files are left as they were, and the report says so (review audit 25)
    assert (out / "splits/idx_427/train.txt").read_text() == "Misc_1\n"
    assert report.split_files_not_updated == ["splits/idx_427/train.txt", "splits/idx_427/val.txt"]
    assert split_files_not_updated_message(report) == (
        "note: splits/idx_427/ also holds train.txt, val.txt, which this export leaves as they were: its frames are "
        "listed in splits/idx_427/trainval.txt or test.txt only")
    assert export_project(project, tmp_path / "new", "sirst", split="train").split_files_not_updated == []


def test_an_append_to_a_sirst_with_several_split_folders_is_refused_and_writes_nothing(tmp_path):
    project, _, _, _ = reviewed_project(tmp_path, "seqA", seed=0)
    out = tmp_path / "nuaa"
    _published_sirst(out, ["idx_320", "idx_427"])
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(ExportError, match=r"split files in 2 folders \(idx_320, idx_427\)"):
        export_project(project, out, "sirst", split="train", append=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    with pytest.raises(ExportError, match="which one to use cannot be told"):
        read_exported_dataset(out, "sirst")
