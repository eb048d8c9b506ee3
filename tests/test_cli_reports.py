"""CLI fixes of the session-21 audit: `export --append` keeps a sequence on its split unless told (and says when
frames move or another project's labels are replaced), boxes lying outside their frame, size ranges per side,
the duplicate-stem note of `detect`, the `--include-unreviewed` hint, and what `eval --json` records."""
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import app.cli
from app.core.export import ExportError, export_project, read_exported_dataset
from tests.test_export_shared_frames import RECORDING, clip, fingerprinted_clip

SHARED = Path(__file__).resolve().parents[2] / "shared"
DRONE = SHARED / "data/sequences/IR_DRONE_146"


def run(*argv: str) -> int:
    return app.cli.main([str(a) for a in argv])


def splits_of(out: Path) -> dict[str, str]:
    return {stem: split for stem, _, _, split in read_exported_dataset(out, "sirst")}


# --- B2: export --append and the split -------------------------------------------------------------------------


def test_an_append_without_split_keeps_a_test_sequence_on_the_test_side(tmp_path, capsys):
    project, out = clip(tmp_path, "X", range(4)), tmp_path / "ds"
    assert run("export", project.folder, "--out", out, "--split", "test") == 0
    capsys.readouterr()
    assert run("export", project.folder, "--out", out, "--append") == 0
    said = capsys.readouterr().out
    assert "exported 4 frames" in said and "(sirst, test)" in said and "moved" not in said
    assert set(splits_of(out).values()) == {"test"}
    assert (out / "trainval.txt").read_text() == ""

    # told the other side: moved, and said so
    assert run("export", project.folder, "--out", out, "--append", "--split", "train") == 0
    said = capsys.readouterr().out
    assert "moved 4 frames of this sequence from test to train" in said
    assert set(splits_of(out).values()) == {"train"}


def test_the_same_project_moved_since_its_export_replaces_no_one_elses_labels(tmp_path, capsys):
    project, out = clip(tmp_path, "X", range(4)), tmp_path / "ds"
    assert run("export", project.folder, "--out", out, "--split", "test") == 0
    moved = shutil.move(project.folder, tmp_path / "elsewhere.irsam-review")
    capsys.readouterr()
    assert run("export", moved, "--out", out, "--append") == 0
    said = capsys.readouterr().out
    assert "exported 4 frames" in said and "replaced the labels" not in said and "frames of this sequence from" not in said


def test_a_new_sequence_without_split_goes_to_train_and_the_help_says_so(tmp_path, capsys):
    out = tmp_path / "ds"
    assert run("export", clip(tmp_path, "X", range(3)).folder, "--out", out) == 0
    assert "(sirst, train)" in capsys.readouterr().out
    assert run("export", clip(tmp_path, "Y", range(5, 8)).folder, "--out", out, "--append") == 0
    assert set(splits_of(out).values()) == {"train"}
    with pytest.raises(SystemExit):
        run("export", "--help")
    assert "else train" in " ".join(capsys.readouterr().out.split())


def test_a_longer_cut_of_an_exported_clip_takes_its_sequence_over_and_says_whose_labels_it_replaced(
        tmp_path, capsys):
    """X holds recording frames 0-3; 'long' holds 0-7 under the same names (the same recording cut again, longer),
    with its own project: it takes sequence X over. The user is told which project's labels it replaced, and a
    train sequence stays train unless --split says otherwise."""
    short = clip(tmp_path, "X", range(4))
    out = tmp_path / "ds"
    assert run("export", short.folder, "--out", out, "--split", "train") == 0
    (tmp_path / "long").mkdir()
    for i in range(8):
        cv2.imwrite(str(tmp_path / "long" / f"{i:04d}.png"), RECORDING[i])
    longer = fingerprinted_clip(tmp_path, "long", "long")
    capsys.readouterr()

    assert run("export", longer.folder, "--out", out, "--append") == 0
    said = capsys.readouterr().out
    assert "exported 8 frames" in said and "(sirst, train)" in said
    assert (f"replaced the labels of 4 frames that another project or source had exported under this sequence name "
            f"(project {short.folder.resolve()}, source {short.source_path})") in said
    assert splits_of(out) == {f"X_{i:04d}": "train" for i in range(8)}

    assert run("export", longer.folder, "--out", out, "--append", "--split", "test") == 0
    said = capsys.readouterr().out
    assert "moved 8 frames of this sequence from train to test" in said and "replaced" not in said
    assert splits_of(out) == {f"X_{i:04d}": "test" for i in range(8)}


def test_a_sequence_on_both_sides_is_not_exported_without_a_split(tmp_path):
    project, out = clip(tmp_path, "X", range(4)), tmp_path / "ds"
    export_project(project, out, "sirst", split="train")
    meta = json.loads((out / "meta.json").read_text())
    meta["frames"]["X_0000"]["split"] = "test"  # as an older export, or an edit by hand, may have left it
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match=r"frames of sequence 'X' on both sides of the split \(3 on train, 1 on "
                                          r"test\): say which split"):
        export_project(project, out, "sirst", append=True)
    report = export_project(project, out, "sirst", split="train", append=True)
    assert report.split == "train" and report.moved == [("X_0000", "test")]


# --- C6: the --include-unreviewed hint -------------------------------------------------------------------------


def test_the_include_unreviewed_hint_says_committed_masks_are_exported(tmp_path, capsys):
    project = clip(tmp_path, "X", range(3))  # each frame with a committed mask
    for stem in project.stems:
        project.set_status(stem, "unreviewed")
    assert run("export", project.folder, "--out", tmp_path / "ds") == 1
    err = capsys.readouterr().err
    assert "3 unreviewed" in err and "their committed mask, else the prediction" in err
    assert run("export", project.folder, "--out", tmp_path / "ds", "--include-unreviewed") == 0
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())["frames"]
    assert {record["mask_from"] for record in meta.values()} == {"committed"}


# --- B5: a box outside its frame --------------------------------------------------------------------------------


@pytest.fixture
def clip_with_a_box_off_the_frame(tmp_path) -> tuple[Path, int, int]:
    """Frames 1-3 of IR_DRONE_146 (320x256) and their boxes, one of frame 3's moved to x=5000: (the clip folder,
    that box's line in boxes.csv, the number of boxes)."""
    folder = tmp_path / "bx"
    (folder / "images").mkdir(parents=True)
    for i in (1, 2, 3):
        shutil.copy(DRONE / "images" / f"{i:06d}.png", folder / "images")
    rows = [line for line in (DRONE / "boxes.csv").read_text().splitlines()[1:] if int(line.split(",")[0]) <= 3]
    frame3 = [k for k, line in enumerate(rows) if line.startswith("3,")][0]
    rows[frame3] = "3,DRONE,5000,120,14,10"
    (folder / "boxes.csv").write_text("frame,class,x,y,w,h\n" + "\n".join(rows) + "\n")
    return folder, frame3 + 2, len(rows)  # the header is line 1


def test_a_box_outside_its_frame_is_named_with_its_line_and_left_out_of_the_scoring(
        clip_with_a_box_off_the_frame, tmp_path, capsys):
    (folder, line, n_boxes), out = clip_with_a_box_off_the_frame, tmp_path / "bx.json"
    assert run("eval", "--method", "mpcm", "--clip", folder, "--json", out) == 0
    err = capsys.readouterr().err
    assert (f"1 box lies entirely outside its frame, left out of the scoring: line {line} (frame 3: x 5000, "
            "y 120, w 14, h 10 on a 320x256 frame)") in err
    result = json.loads(out.read_text())
    assert result["n_targets"] == n_boxes - 1
    assert result["boxes_outside_frame"] == [{"line": line, "frame": 3, "box": [5000, 120, 14, 10],
                                              "frame_size": [320, 256]}]
    assert run("info", folder) == 0
    assert f"which irsam eval --clip leaves out: line {line} (frame 3" in capsys.readouterr().err


def test_a_box_is_outside_only_when_it_covers_no_pixel_of_the_frame():
    from model.metrics import box_outside_frame

    shape = (256, 320)  # height, width
    assert box_outside_frame((4999, 119, 14, 10), shape)
    assert box_outside_frame((319.5, 0, 5, 5), shape) and box_outside_frame((-5.5, 0, 5, 5), shape)
    assert not box_outside_frame((319, 255, 5, 5), shape)  # one pixel centre in
    assert not box_outside_frame((-5, 0, 5, 5), shape)  # its right edge is column 0's centre (MATLAB rectangles)
    assert not box_outside_frame((-4, -4, 5, 5), shape)


# --- C3: sizes of a mixed-size folder --------------------------------------------------------------------------


def test_a_mixed_size_folder_gives_each_sides_range(tmp_path, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    # by area the smallest is 32x24 and the largest 45x31, yet the widest is 60 and the lowest 20
    for i, (h, w) in enumerate([(24, 32), (31, 45), (20, 60)]):
        frame = np.random.default_rng(i).integers(20, 60, (h, w)).astype(np.uint8)
        frame[5:8, 5:8] = 250
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    assert run("info", folder) == 0
    assert "size:          3 sizes, widths 32-60, heights 20-31 (width x height)" in capsys.readouterr().out
    assert run("detect", folder, "--out", tmp_path / "p", "--method", "tophat", "--quiet") == 0
    assert "3 frames 3 sizes, widths 32-60, heights 20-31 uint8" in capsys.readouterr().out
    assert run("info", tmp_path / "p") == 0
    assert "frames:        3, 3 sizes, widths 32-60, heights 20-31 (width x height)" in capsys.readouterr().out


# --- C4: two files of one stem -----------------------------------------------------------------------------------


def test_a_second_file_of_a_stem_on_a_first_run_names_the_file_read_instead(tmp_path, capsys):
    folder = tmp_path / "dup"
    folder.mkdir()
    frame = cv2.imread(str(DRONE / "images" / "000001.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "000001.png"), frame)
    cv2.imwrite(str(folder / "000001.jpg"), frame)
    cv2.imwrite(str(folder / "000002.png"), frame)
    assert run("detect", folder, "--out", tmp_path / "p", "--method", "tophat", "--quiet") == 0
    said = capsys.readouterr().out
    assert "earlier run" not in said
    skipped = [line.strip() for line in said.splitlines() if "duplicate stem" in line]
    assert len(skipped) == 1
    other = "000001.jpg" if skipped[0].startswith(str(folder / "000001.png")) else "000001.png"
    assert skipped[0].endswith(f"(not used: frame 000001 is {folder / other})")


# --- C8: what eval --json records --------------------------------------------------------------------------------


def test_eval_json_records_the_weights_and_the_data_it_was_made_from(tmp_path):
    import torch

    from model.build import build_irsam
    from model.checkpoint import save_checkpoint
    from model.config import tiny

    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    save_checkpoint(weights, build_irsam(tiny()), tiny(), {})
    out = tmp_path / "clip.json"
    assert run("eval", "--weights", weights, "--device", "cpu", "--clip", DRONE, "--limit", "1", "--json", out) == 0
    result = json.loads(out.read_text())
    assert result["weights"] == {"path": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                                 "decision_threshold": 0.0, "resume_state": None}
    assert result["data"] == {"clip": str(DRONE), "images": str(DRONE / "images"), "boxes": str(DRONE / "boxes.csv")}

    nuaa = SHARED / "data/nuaa-sirst"
    split = tmp_path / "two.txt"
    split.write_text("\n".join((nuaa / "splits/idx_427/test.txt").read_text().split()[:2]))
    assert run("eval", "--method", "tophat", "--images", nuaa / "images", "--masks", nuaa / "masks",
               "--split", split, "--json", out) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "tophat" and result["weights"] is None
    assert result["data"] == {"images": str(nuaa / "images"), "masks": str(nuaa / "masks"), "split": str(split)}
