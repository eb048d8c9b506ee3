"""Training and evaluation leftovers: metrics.jsonl is strict JSON (null, not NaN), checkpoints name their data by
absolute paths, a --data or --images/--masks that does not exist is said as such, and eval leaves a float frame's
no-data pixels out of the proposals it scores, as irsam detect does."""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch

from app.cli import main
from app.core.finetune import FineTuneJob
from app.core.project import ReviewProject
from model.checkpoint import read_torch_file
from model.train import _metadata, first_epoch_best, reconcile_log
from model.train_config import TrainConfig
from tests.datasets import write_sirst_dataset


def strict_json(text: str):
    """`text` parsed as JSON proper: a bare NaN or Infinity, which Python's json takes and jq or JavaScript refuse,
    raises."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def no_validation_target(tmp_path_factory) -> Path:
    """A SIRST data set whose validation split has no target (Pd undefined at every epoch)."""
    root = write_sirst_dataset(tmp_path_factory.mktemp("data") / "sirst")
    for stem in (root / "val.txt").read_text().split():
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), np.zeros((64, 80), np.uint8))
    return root


def test_a_run_with_relative_paths_writes_strict_json_and_names_its_data_by_absolute_paths(
        no_validation_target, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    shutil.copytree(no_validation_target, work / "sirst")
    monkeypatch.chdir(work)
    assert main(["train", "--data", "sirst", "--split-train", "sirst/train.txt", "--split-val", "sirst/val.txt",
                 "--out", "run", "--config", "tiny", "--epochs", "1", "--batch-size", "4", "--crop", "64",
                 "--device", "cpu", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    summary = strict_json(out[out.index("\n{\n") + 1 :])  # after the log lines, the summary
    assert summary["best_val_metrics"]["pd"] is None and summary["best_val_metrics"]["n_targets"] == 0
    lines = (work / "run" / "metrics.jsonl").read_text().splitlines()
    records = [strict_json(line) for line in lines]
    assert [r["epoch"] for r in records] == [1] and records[0]["val_pd"] is None
    assert strict_json(read_torch_file(work / "run" / "last.pt")["record"]) == records[0]

    training = read_torch_file(work / "run" / "best.pt")["metadata"]["training"]
    data = work.resolve() / "sirst"
    assert (training["data"], training["split_train"], training["split_val"]) == (
        str(data), str(data / "train.txt"), str(data / "val.txt"))
    assert (training["recipe"]["split_train"], training["recipe"]["split_val"]) == (
        str(data / "train.txt"), str(data / "val.txt"))


def test_the_metadata_names_every_data_path_and_init_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(data="d", split_train="d/t.txt", split_val="d/v.txt", out="o", init="w.pt",
                      extra_data=["e", "f/trainval.txt"])
    training = _metadata(cfg, 1, {}, [], {}, None)["training"]
    here = tmp_path.resolve()
    assert (training["data"], training["split_train"], training["split_val"], training["extra_data"]) == (
        str(here / "d"), str(here / "d/t.txt"), str(here / "d/v.txt"), [str(here / "e"), str(here / "f/trainval.txt")])
    assert training["recipe"]["init"] == str(here / "w.pt")
    assert training["recipe"]["extra_data"] == [str(here / "e"), str(here / "f/trainval.txt")]


def test_a_first_epoch_best_pt_recorded_with_relative_paths_is_still_the_same_command_s_own(tmp_path, monkeypatch):
    """best.pt of a run killed in its first epoch is recognised (and the run starts again) by its data and recipe:
    one written before the paths were recorded absolute holds them as typed, relative to the folder it ran in."""
    monkeypatch.chdir(tmp_path)
    typed = TrainConfig(data="d", split_train="d/t.txt", split_val="d/v.txt", out="o", extra_data=["e"])
    metadata = _metadata(typed, 1, {}, [], {}, None)
    metadata["training"].update(data="d", split_train="d/t.txt", split_val="d/v.txt", extra_data=["e"])
    metadata["training"]["recipe"].update(split_train="d/t.txt", split_val="d/v.txt", extra_data=["e"])
    torch.save({"metadata": metadata}, tmp_path / "best.pt")
    assert first_epoch_best(tmp_path / "best.pt", typed)
    absolute = replace(typed, data=str(tmp_path / "d"), split_train=str(tmp_path / "d/t.txt"),
                       split_val=str(tmp_path / "d/v.txt"), extra_data=[str(tmp_path / "e")])
    assert first_epoch_best(tmp_path / "best.pt", absolute)
    assert not first_epoch_best(tmp_path / "best.pt", replace(typed, data="other"))
    assert not first_epoch_best(tmp_path / "best.pt", replace(typed, split_val="d/test.txt"))


def test_a_line_restored_from_an_older_last_pt_is_strict_json_and_older_nan_lines_still_read(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1, "loss": 0.5, "val_pd": NaN}\n')  # as training wrote it before
    old_last_record = '{"epoch": 2, "loss": 0.4, "val_pd": NaN}'
    assert reconcile_log(log, 2, old_last_record) == "restored epoch 2's line from last.pt"
    first, second = log.read_text().splitlines()
    assert math.isnan(json.loads(first)["val_pd"])
    assert strict_json(second) == {"epoch": 2, "loss": 0.4, "val_pd": None}

    job = FineTuneJob(tmp_path / "export", tmp_path)  # the app's fine-tune progress reads both kinds of line
    log.write_text(first + "\n" + second + "\n")
    assert [r["epoch"] for r in job.poll()] == [1, 2] and job.progress() == pytest.approx(2 / job.epochs)


def train_command(data: str, out: Path) -> list[str]:
    return ["train", "--data", data, "--split-train", "t.txt", "--split-val", "v.txt", "--out", str(out),
            "--config", "tiny", "--device", "cpu"]


def test_train_says_a_data_folder_does_not_exist_or_is_a_file(tmp_path, capsys):
    nowhere, a_file = tmp_path / "nowhere", tmp_path / "data.txt"
    a_file.write_text("")
    assert main(train_command(str(nowhere), tmp_path / "out")) == 2
    assert capsys.readouterr().err == (f"error: --data {nowhere}: no such folder; --data takes a data set folder "
                                       "holding images/ and masks/\n")
    assert main(train_command(str(a_file), tmp_path / "out")) == 2
    assert capsys.readouterr().err == (f"error: --data {a_file}: a file, not a folder; --data takes a data set "
                                       "folder holding images/ and masks/\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("images, masks, said", [
    ("nowhere", "masks", "--images nowhere: no such folder or TIFF stack"),
    ("images", "nowhere", "--masks nowhere: no such folder"),
    ("nowhere", "nowhere2", "--images nowhere: no such folder or TIFF stack; --masks nowhere2: no such folder"),
    ("nowhere", "a_file", "--images nowhere: no such folder or TIFF stack; --masks a_file: a file; give the folder "
                          "of the masks"),
])
def test_eval_names_each_of_images_and_masks_that_does_not_exist(tmp_path, monkeypatch, capsys, images, masks, said):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "a_file").write_text("")
    assert main(["eval", "--method", "tophat", "--images", images, "--masks", masks]) == 2
    assert capsys.readouterr().err == f"error: {said}\n"


@pytest.fixture(scope="module")
def no_data_frames(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Three float32 frames without a target, with a block of NaN and an infinite pixel, in which MPCM proposes
    "targets" (test_float_frames), as a TIFF stack, a folder of TIFFs with (empty) masks, and a clip; and the
    stack."""
    root = tmp_path_factory.mktemp("no_data")
    rng = np.random.default_rng(0)
    stack = (280 + 0.05 * np.arange(160)[:, None] + rng.normal(0, 0.1, (3, 160, 200))).astype(np.float32)
    stack[:, 40:90, 60:140] = np.nan
    stack[1, 45, 100] = np.inf
    tifffile.imwrite(root / "stack.tif", stack, photometric="minisblack")
    for folder in ("images", "masks", "clip/images"):
        (root / folder).mkdir(parents=True)
    for k, frame in enumerate(stack):
        tifffile.imwrite(root / "images" / f"f{k}.tif", frame, photometric="minisblack")
        tifffile.imwrite(root / "clip" / "images" / f"{k + 1:06d}.tif", frame, photometric="minisblack")
        for stem in (f"f{k}", f"stack_{k + 1:06d}"):
            cv2.imwrite(str(root / "masks" / f"{stem}.png"), np.zeros(frame.shape, np.uint8))
    (root / "clip" / "boxes.csv").write_text("frame,class,x,y,w,h\n")
    return root, stack


def test_eval_scores_float_frames_without_the_proposals_detect_leaves_out_on_no_data(no_data_frames, tmp_path):
    """MPCM's "targets" in the fill of a no-data block are no proposals of irsam detect nor the app: eval scored them
    as false alarms."""
    root, stack = no_data_frames
    assert main(["detect", str(root / "stack.tif"), "--out", str(tmp_path / "project"), "--method", "mpcm",
                 "--quiet"]) == 0
    project = ReviewProject.open(tmp_path / "project")
    proposed = [project.prediction_mask(stem) for stem in project.stems]
    assert not any((mask & ~np.isfinite(frame)).any() for mask, frame in zip(proposed, stack))
    proposed_pixels = sum(int(mask.sum()) for mask in proposed)
    proposed_components = sum(cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1
                              for mask in proposed)
    assert proposed_pixels  # MPCM still proposes beside the block: what eval must count, no more

    for images in ("images", "stack.tif"):
        result_path = tmp_path / f"{images}.json"
        assert main(["eval", "--method", "mpcm", "--images", str(root / images), "--masks", str(root / "masks"),
                     "--split", str(_split(tmp_path, images, len(stack))), "--json", str(result_path)]) == 0
        result = json.loads(result_path.read_text())
        assert result["n_images"] == 3 and result["false_alarm_pixels"] == proposed_pixels, images
    assert main(["eval", "--method", "mpcm", "--clip", str(root / "clip"), "--json", str(tmp_path / "clip.json")]) == 0
    result = json.loads((tmp_path / "clip.json").read_text())
    assert result["n_frames"] == 3 and result["false_alarms"] == proposed_components
    assert result["fa"] == pytest.approx(proposed_pixels / stack.size)


def _split(folder: Path, images: str, n_frames: int) -> Path:
    """A split file of the frames of `images` (the folder's f<k>, or the stack's pages)."""
    stems = [f"f{k}" if images == "images" else f"stack_{k + 1:06d}" for k in range(n_frames)]
    path = folder / f"{images}.txt"
    path.write_text("\n".join(stems))
    return path
