"""A run's last.pt loaded as weights says what it is; boxes.csv frame numbers read exactly; --set values are checked
against their field's type; a PNG or JPEG cut short is reported by train and eval as the frame sources report it."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from app import cli
from app.core.frames import read_gray
from model.build import build_irsam
from model.checkpoint import RESUME_STATE_KEYS, CheckpointError, ResumeStateWarning, load_checkpoint, save_checkpoint
from model.config import IRSAMConfig, tiny
from model.data import FrameReadError, ImageReadError, find_dataset, read_image_gray, read_mask, read_samples
from model.metrics import BoxesFileError, number_clip_frames, read_boxes_csv
from model.predictor import Predictor
from model.train import reconcile_log
from tests.datasets import write_sirst_dataset

SHARED = Path("/work/shared")
NUAA_IMAGE = SHARED / "data/nuaa-sirst/images/Misc_1.png"
CLIP = SHARED / "data/sequences/IR_DRONE_156"


def write_run(folder: Path, with_best: bool = True) -> Path:
    """A run folder as irsam train leaves it after 3 epochs: last.pt (a resume state) and, if asked, best.pt with the
    decision threshold chosen on validation. Returns last.pt."""
    folder.mkdir(parents=True)
    config = tiny()
    torch.manual_seed(0)
    network = build_irsam(config)
    state = {key: {} for key in RESUME_STATE_KEYS}
    state.update(model=network.state_dict(), epoch=2, config=json.dumps(config.to_dict()))
    torch.save(state, folder / "last.pt")
    if with_best:
        save_checkpoint(folder / "best.pt", network, config, {"decision_threshold": 0.25})
    return folder / "last.pt"


# --- 1. last.pt as --weights ----------------------------------------------------------------------------------------

def test_a_resume_state_loads_with_a_warning_naming_best_pt_and_records_its_threshold_and_origin(tmp_path):
    last = write_run(tmp_path / "run")
    best = tmp_path / "run" / "best.pt"
    with pytest.warns(ResumeStateWarning) as caught:
        _, _, metadata = load_checkpoint(last)
    assert str(caught[0].message) == (
        f"{last} is the resume state of an irsam train run (last.pt), not a checkpoint to detect with: it holds the "
        "weights of the run's last epoch (epoch 3) and no decision threshold chosen on validation, so threshold 0 is "
        f"used; the run's best.pt beside it ({best}) holds the best validated weights with their threshold: load that "
        "one to detect")
    assert metadata == {"decision_threshold": 0.0, "resume_state": {"epochs_done": 3, "best": str(best)}}

    with pytest.warns(ResumeStateWarning):
        from_last = Predictor.from_file(last, device="cpu")
    assert from_last.decision_threshold == 0.0 and from_last.metadata["resume_state"]["best"] == str(best)
    from_best = Predictor.from_file(best, device="cpu")  # no warning: pytest's filterwarnings=error would raise
    assert from_best.decision_threshold == 0.25 and "resume_state" not in from_best.metadata


def test_a_resume_state_without_best_pt_beside_it_says_so(tmp_path):
    last = write_run(tmp_path / "run", with_best=False)
    with pytest.warns(ResumeStateWarning, match=r"no best\.pt lies beside it \(a run writes one when it first "
                                                r"validates an epoch\)$"):
        metadata = load_checkpoint(last)[2]
    assert metadata["resume_state"] == {"epochs_done": 3, "best": None}


def test_irsam_eval_of_last_pt_warns_and_scores_at_threshold_0(tmp_path, capsys):
    data = write_sirst_dataset(tmp_path / "data", n_frames=3)
    last = write_run(tmp_path / "run")
    assert cli.main(["eval", "--weights", str(last), "--images", str(data / "images"), "--masks",
                     str(data / "masks"), "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    assert "irsam" in printed.out
    assert re.search(r"^warning: .*last\.pt is the resume state of an irsam train run .* threshold 0 is used; the "
                     r"run's best\.pt beside it", printed.err, re.MULTILINE)


# --- 2. boxes.csv frame numbers -------------------------------------------------------------------------------------

def test_boxes_csv_frame_numbers_are_read_as_exact_integers(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("frame,class,x,y,w,h\n12345678901234567,DRONE,1,1,2,2\n12.0,DRONE,1,1,2,2\n+3,BIRD,1,1,2,2\n")
    assert sorted(read_boxes_csv(path)) == [2, 11, 12345678901234566]  # 0-based; a float gave ...4567 for ...4568


@pytest.mark.parametrize("frame, reason", [
    ("12.5", "frame '12.5' is not a frame number (1 is the first frame): frame numbers are whole numbers, written as "
             "digits (12 or 12.0)"),
    ("1e3", "frame '1e3' is not a frame number (1 is the first frame): frame numbers are written as digits (12 or "
            "12.0)"),
    ("0", "frame '0' is not a frame number (1 is the first frame)"),
])
def test_a_frame_that_is_not_a_whole_number_is_refused_naming_the_line(tmp_path, frame, reason):
    path = tmp_path / "boxes.csv"
    path.write_text(f"frame,class,x,y,w,h\n1,DRONE,1,1,2,2\n{frame},DRONE,1,1,2,2\n")
    with pytest.raises(BoxesFileError) as error:
        read_boxes_csv(path)
    assert str(error.value) == f"{path}: line 3: {reason}"


def test_irsam_eval_names_a_huge_frame_number_exactly(tmp_path, capsys):
    clip = tmp_path / "clip"
    (clip / "images").mkdir(parents=True)
    for image in sorted((CLIP / "images").iterdir())[:3]:
        shutil.copy(image, clip / "images" / image.name)
    lines = (CLIP / "boxes.csv").read_text().splitlines()
    (clip / "boxes.csv").write_text("\n".join([*lines[:4], "12345678901234567,DRONE,1,1,2,2"]) + "\n")
    assert cli.main(["eval", "--method", "tophat", "--clip", str(clip)]) == 0
    err = capsys.readouterr().err
    assert "frame 12345678901234567" in err and "12345678901234568" not in err


def test_clip_numbering_says_1_frame_not_1_frames(tmp_path):
    files = [tmp_path / f"{n:06d}.png" for n in (1, 2, 3)]
    numbering = number_clip_frames(files, {3: [(0.0, 0.0, 2.0, 2.0)]})  # frame 4 boxed: named from 0, 000000 missing
    assert numbering.by == "name, 0-based"
    assert numbering.why == ("numbered from 0 (000000 missing), the names pair 1 of the 1 frame boxes.csv has boxes "
                             "for with an image, numbered from 1 only 0")


def test_training_messages_say_1_image_and_1_line(tmp_path, capsys):
    data = write_sirst_dataset(tmp_path / "data", n_frames=3)
    train_stems = (data / "train.txt").read_text().split()
    (data / "train.txt").write_text(train_stems[1])
    assert train_cli(data, tmp_path / "one") == 0
    assert "training tiny on 1 image (1 for validation), 1 process(es) on cpu" in capsys.readouterr().out
    (data / "val.txt").write_text(f"{train_stems[1]}\n{(data / 'val.txt').read_text()}")  # also trained on
    assert train_cli(data, tmp_path / "out") == 2
    assert capsys.readouterr().err.startswith("error: train and validation splits share 1 image, e.g. ")
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n')  # last.pt holds 1 epoch: a run killed before saving epoch 2
    assert reconcile_log(log, 1, None) == "dropped 1 line of epochs last.pt does not hold"


# --- 3. --set values of the wrong type ------------------------------------------------------------------------------

def train_cli(data: Path, out: Path, *options: str) -> int:
    return cli.main(["train", "--data", str(data), "--split-train", str(data / "train.txt"), "--split-val",
                     str(data / "val.txt"), "--out", str(out), "--config", "tiny", "--device", "cpu", "--epochs", "1",
                     "--crop", "32", "--batch-size", "2", *options])  # short, where a value is wrongly taken


@pytest.mark.parametrize("setting, message", [
    ('embed_dim="x"', 'error: --set embed_dim: must be an integer, got "x"'),
    ("embed_dim=2.5", "error: --set embed_dim: must be an integer, got 2.5"),
    ("hires_refine=1", "error: --set hires_refine: must be true or false, got 1"),
    ("mlp_ratio=NaN", "error: --set mlp_ratio: must be a finite number, got NaN"),
    ("pixel_mean=[1,2]", "error: --set pixel_mean: must be a list of 3 finite numbers, got [1, 2]"),
    ('embed_dims="abcd"', 'error: --set embed_dims: must be a list of integers, got "abcd"'),
    ("wpmd_levels=[true]", "error: --set wpmd_levels: must be an integer or a list of integers, got [true]"),
    ("fusion=5", "error: --set fusion: must be a string, got 5"),
])
def test_a_set_value_of_the_wrong_type_is_named_with_its_field(tmp_path, capsys, setting, message):
    data = write_sirst_dataset(tmp_path / "data", n_frames=3)
    out = tmp_path / "out"
    assert train_cli(data, out, "--set", setting) == 2
    assert capsys.readouterr().err == message + "\n"
    assert not out.exists()


def test_a_config_of_the_wrong_type_is_refused_in_code_and_in_a_stored_checkpoint(tmp_path):
    with pytest.raises(ValueError, match=r'^embed_dim must be an integer, got "x"$'):
        tiny().replace(embed_dim="x")
    assert tiny().replace(wpmd_levels=2, mlp_ratio=3).wpmd_levels == (0, 1)  # a count; an integer ratio
    path = tmp_path / "stored.pt"
    save_checkpoint(path, build_irsam(tiny()), tiny(), {})
    stored = torch.load(path, weights_only=True)
    stored["config"]["embed_dim"] = "x"
    torch.save(stored, path)
    with pytest.raises(CheckpointError, match=rf'^{path}: invalid stored config \(embed_dim must be an integer, '
                                              r'got "x"\)$'):
        load_checkpoint(path)
    assert IRSAMConfig.from_dict(tiny().to_dict()) == tiny()


# --- 4. PNG and JPEG files cut short --------------------------------------------------------------------------------

def cut(source: Path, path: Path, dropped: int) -> Path:
    path.write_bytes(source.read_bytes()[:-dropped])
    return path


@pytest.mark.parametrize("dropped", [12, 200, 20000])  # IEND only (PIL decodes it silently), IDAT too, most of it
def test_a_png_cut_short_is_reported_as_the_frame_sources_report_it(tmp_path, dropped):
    path = cut(NUAA_IMAGE, tmp_path / "cut.png", dropped)
    with pytest.raises(FrameReadError) as frames_error:
        read_gray(path)
    assert frames_error.value.reason == "truncated PNG (no IEND chunk at the end)"
    for read in (read_image_gray, read_mask):
        with pytest.raises(ImageReadError) as error:
            read(path)
        assert str(error.value) == f"{path}: corrupt image: truncated PNG (no IEND chunk at the end)"


def test_a_jpeg_cut_short_is_reported_as_the_frame_sources_report_it(tmp_path):
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(cv2.imencode(".jpg", cv2.imread(str(NUAA_IMAGE)))[1].tobytes())
    path = cut(whole, tmp_path / "cut.jpg", 100)
    with pytest.raises(FrameReadError) as frames_error:
        read_gray(path)
    with pytest.raises(ImageReadError) as error:
        read_image_gray(path)
    assert str(error.value) == f"{path}: corrupt image: {frames_error.value.reason}"
    assert frames_error.value.reason == "truncated JPEG (no end-of-image marker)"


def test_complete_files_padded_with_zeros_still_read(tmp_path):
    padded = tmp_path / "padded.png"
    padded.write_bytes(NUAA_IMAGE.read_bytes() + bytes(8192))  # a copy padded past the tail looked at first
    assert (read_image_gray(padded) == read_image_gray(NUAA_IMAGE)).all()


def test_train_and_eval_skip_a_png_cut_short_saying_why(tmp_path, capsys):
    data = write_sirst_dataset(tmp_path / "data", n_frames=3)
    image = sorted((data / "images").iterdir())[0]
    image.write_bytes(image.read_bytes()[:-12])
    _, _, problems = read_samples(find_dataset(data / "images", data / "masks"))  # what irsam train reads
    assert problems == [f"{image}: corrupt image: truncated PNG (no IEND chunk at the end)"]
    assert cli.main(["eval", "--method", "tophat", "--images", str(data / "images"), "--masks",
                     str(data / "masks")]) == 0
    assert f"skipped {image}: corrupt image: truncated PNG (no IEND chunk at the end)" in capsys.readouterr().err
