"""`irsam train` on bad input: one `error:` line, exit 2, nothing written; resuming only a run that fits."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from model.train import train
from model.train_config import TrainConfig
from tests.datasets import write_sirst_dataset


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory) -> Path:
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst"))


@pytest.fixture
def dataset(clean_dataset, tmp_path) -> Path:
    """A copy each test may break."""
    return Path(shutil.copytree(clean_dataset, tmp_path / "data"))


def cli_train(dataset: Path, out: Path, *options: str) -> int:
    return main(["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"),
                 "--split-val", str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--device", "cpu",
                 "--epochs", "1", "--batch-size", "4", "--crop", "64", *options])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_unusable_images_and_masks_are_all_named_before_anything_is_written(dataset, tmp_path, capsys):
    train_stems = (dataset / "train.txt").read_text().split()
    val_stems = (dataset / "val.txt").read_text().split()
    truncated = dataset / "images" / f"{train_stems[0]}.png"
    truncated.write_bytes(truncated.read_bytes()[:200])
    resized = dataset / "masks" / f"{train_stems[1]}.png"
    cv2.imwrite(str(resized), np.zeros((20, 30), np.uint8))
    empty = dataset / "masks" / f"{val_stems[0]}.png"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    assert cli_train(dataset, out) == 2
    err = one_error_line(capsys)
    assert "3 unusable training or validation file(s)" in err
    assert f"{truncated}: corrupt image" in err
    assert f"{resized}: mask size 30x20 differs from its image's 80x64" in err
    assert f"{empty}: empty file (0 bytes)" in err
    assert not out.exists()


def test_an_empty_split_file_is_named(dataset, tmp_path, capsys):
    (dataset / "val.txt").write_text("\n")
    out = tmp_path / "out"
    assert cli_train(dataset, out) == 2
    assert one_error_line(capsys) == f"error: split file {dataset / 'val.txt'} lists no images\n"
    assert not out.exists()


def test_missing_data_leaves_no_out_folder(dataset, tmp_path, capsys):
    shutil.rmtree(dataset / "masks")
    out = tmp_path / "out"
    assert cli_train(dataset, out) == 2
    assert "masks" in one_error_line(capsys)
    assert not out.exists()


def test_options_out_of_range_are_all_refused(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_train(dataset, out, "--epochs", "0", "--batch-size", "0", "--lr=-1e-4", "--paste-targets=-1") == 2
    err = one_error_line(capsys)
    assert "--epochs must be at least 1, got 0" in err and "--batch-size must be at least 1, got 0" in err
    assert "--lr must be positive, got -0.0001" in err and "--paste-targets must not be negative, got -1" in err
    assert not out.exists()


def test_an_out_folder_that_cannot_be_made_is_one_line(dataset, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cli_train(dataset, blocker / "out") == 2
    assert one_error_line(capsys) == f"error: cannot create --out {blocker / 'out'}: Not a directory\n"


@pytest.fixture(scope="module")
def tiny_run(clean_dataset, tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished 2-epoch tiny run and its log lines."""
    out = tmp_path_factory.mktemp("run") / "out"
    lines: list[str] = []
    train(TrainConfig(data=str(clean_dataset), split_train=str(clean_dataset / "train.txt"),
                      split_val=str(clean_dataset / "val.txt"), out=str(out), config="tiny", device="cpu", epochs=2,
                      batch_size=4, crop=64, lr=1e-3), log=lines.append)
    return out, lines


def test_resuming_with_another_config_names_the_run_s_config(clean_dataset, tiny_run, tmp_path, capsys):
    out = Path(shutil.copytree(tiny_run[0], tmp_path / "out"))
    assert cli_train(clean_dataset, out, "--config", "paper", "--epochs", "3") == 2
    assert one_error_line(capsys).startswith(f"error: {out} holds a run of config tiny, not paper")
    assert cli_train(clean_dataset, out, "--epochs", "3", "--set", "wpmd_levels=[0]") == 2
    assert "with other --set values (wpmd_levels)" in one_error_line(capsys)


@pytest.mark.parametrize("cut", [0, 3000])
def test_an_unreadable_last_pt_is_named_and_kept(clean_dataset, tiny_run, tmp_path, capsys, cut):
    out = Path(shutil.copytree(tiny_run[0], tmp_path / "out"))
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:cut])
    assert cli_train(clean_dataset, out, "--epochs", "3") == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: cannot resume: {last}: ") and "remove it to start afresh" in err
    assert last.stat().st_size == cut


def test_epoch_lines_show_the_lr_used_and_the_threshold_line_matches_best_epoch(tiny_run):
    out, lines = tiny_run
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["lr"] == 1e-3  # the first step's, not the lr after the epoch's steps
    assert 0 < records[-1]["lr"] < records[0]["lr"]  # a cosine schedule reaches 0 only after the last step
    best = max(records, key=lambda r: r["val_iou"])
    calibration = next(line for line in lines if line.startswith("decision threshold"))
    assert f"best.pt (epoch {best['epoch']})" in calibration
    # the sweep's threshold-0 side is the best epoch's validation: same weights, same precision
    at_zero = re.search(r"IoU (\S+) ->.*Fa (\S+) ->", calibration).groups()
    assert at_zero == (f"{best['val_iou']:.4f}", f"{best['val_fa'] * 1e6:.2f}")
