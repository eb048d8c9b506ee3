"""Session 21 training fixes: last.pt loads as the network it stores, --max-minutes stops before an epoch that would
not fit, a run started with --init resumes without its file, and clearer train messages."""
from __future__ import annotations

import json
import re
import shutil
import time
import types
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import model.train as train_module
from app.cli import main
from model.checkpoint import CheckpointError, ResumeStateWarning, load_checkpoint, read_torch_file
from model.metrics import InterpolatedMaskWarning
from model.train import check_same_run, run_record, train
from model.train_config import TrainConfig
from tests.datasets import write_sirst_dataset
from tests.test_train_resume import config as resume_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst"))  # 8 training frames, 4 for validation


def config(dataset: Path, out: Path, **kw) -> TrainConfig:
    """test_train_resume's tiny run, one epoch at batch 4 unless told otherwise."""
    return resume_config(dataset, out, **{"epochs": 1, "batch_size": 4, **kw})


def cli_train(dataset: Path, out: Path, *options: str) -> int:
    return main(["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"),
                 "--split-val", str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--device", "cpu",
                 "--precision", "fp32", "--batch-size", "4", "--crop", "48", "--lr", "1e-3", *options])


def epochs_logged(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def quiet(message: str) -> None:
    pass


def test_last_pt_loads_as_the_network_it_stores_and_predicts_as_best_pt(dataset, tmp_path):
    out = tmp_path / "run"
    train(config(dataset, out, config_overrides={"wpmd_steps": 3}), log=quiet)  # one epoch: best.pt == last.pt
    best_model, best_config, _ = load_checkpoint(out / "best.pt")
    with pytest.warns(ResumeStateWarning, match="load that one to detect"):
        last_model, last_config, metadata = load_checkpoint(out / "last.pt")
    assert last_config.wpmd_steps == 3 and last_config == best_config
    # the calibrated threshold is best.pt's, named in the warning and the metadata
    assert metadata == {"decision_threshold": 0.0,
                        "resume_state": {"epochs_done": 1, "best": str((out / "best.pt").absolute())}}
    image = cv2.imread(str(next((dataset / "images").iterdir())), cv2.IMREAD_GRAYSCALE)
    x = torch.from_numpy(np.stack([image] * 3)).float()[None] / 255
    with torch.no_grad():
        assert torch.equal(best_model(x).mask_logits, last_model(x).mask_logits)
    with pytest.warns(ResumeStateWarning):
        assert load_checkpoint(out / "last.pt", "tiny")[1].wpmd_steps == 3
    with pytest.raises(CheckpointError, match="this checkpoint holds a tiny network, not the paper one"):
        load_checkpoint(out / "last.pt", "paper")


def test_last_pt_of_a_run_with_input_priors_loads_with_them(dataset, tmp_path):
    out = tmp_path / "priors"
    train(config(dataset, out, config_overrides={"input_priors": True}), log=quiet)
    with pytest.warns(ResumeStateWarning):  # it loads (it was "checkpoint does not fit the model: ... missing")
        model, loaded_config, _ = load_checkpoint(out / "last.pt")
    assert loaded_config.input_priors and model.image_encoder.patch_embed.seq[0].c.weight.shape[1] == 5


def test_max_minutes_stops_before_an_epoch_that_would_not_end_in_time_and_says_when(dataset, tmp_path, monkeypatch):
    # each epoch's training takes 40 s more on the clock: after epoch 1 (40 s) an epoch 2 would end past 1 minute
    offset = [0.0]
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(time=lambda: time.time() + offset[0]))
    checksum = train_module.parameter_checksum

    def slow_training(model):  # (called once an epoch's steps are done)
        offset[0] += 40.0
        return checksum(model)

    monkeypatch.setattr(train_module, "parameter_checksum", slow_training)
    out, lines = tmp_path / "timed", []
    # validated every third epoch, but the epoch the limit stops at is validated too: best.pt holds it
    summary = train(config(dataset, out, epochs=3, max_minutes=1.0, val_every=3), log=lines.append)
    assert not summary["complete"] and epochs_logged(out) == [1]
    assert (out / "best.pt").is_file() and "val_iou" in json.loads((out / "metrics.jsonl").read_text())
    stop = [line for line in lines if line.startswith("stopping after")]
    assert len(stop) == 1
    elapsed = float(stop[0].split()[2])
    assert 40 / 60 <= elapsed < 1.0  # the real elapsed time, not the limit
    said = re.fullmatch(rf"stopping after {elapsed:.2f} minutes \(limit 1\): epoch 2 would not end within it "
                        r"\(about (\d\.\d\d) minutes of training, (\d\.\d\d) of validation \(not timed yet: taken as "
                        r"long\) and (\d\.\d\d) of saving\); run the same command again to resume", stop[0])
    assert said, stop[0]
    training, validation, saving = map(float, said.groups())
    # 40 s on the clock plus the real time of a tiny epoch (under 20 s even on a loaded machine)
    assert 0.66 <= training < 1.0 and validation == training and saving < 0.1, stop[0]
    lines.clear()
    train(config(dataset, out, epochs=3, max_minutes=1.0, val_every=3), log=lines.append)  # one epoch, then stops
    assert epochs_logged(out) == [1, 2]


def test_max_minutes_counts_the_validation_still_to_come(dataset, tmp_path, monkeypatch):
    # validation takes 40 s on the clock, training nothing: the decision after epoch 2's steps (at 40 s) must count
    # its validation (to 80 s) and epoch 3's (to 120 s, past 90 s); it counted neither and ended at 120 s
    offset = [0.0]
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(time=lambda: time.time() + offset[0]))
    validate = train_module.validate

    def slow_validation(*args):
        offset[0] += 40.0
        return validate(*args)

    monkeypatch.setattr(train_module, "validate", slow_validation)
    out, lines = tmp_path / "timed", []
    summary = train(config(dataset, out, epochs=4, max_minutes=1.5), log=lines.append)
    assert not summary["complete"] and epochs_logged(out) == [1, 2]
    assert 80 / 60 <= summary["minutes"] < 1.5
    stop = next(line for line in lines if line.startswith("stopping after"))
    # (40 s of validation on the clock, and the little the real steps take, more on a loaded machine)
    said = re.search(r"epoch 3 would not end within it \(about (\d\.\d\d) minutes of training, (\d\.\d\d) of "
                     r"validation and (\d\.\d\d) of saving\)", stop)
    assert said, stop
    training, validation, saving = map(float, said.groups())
    assert training < 0.34 and 0.66 <= validation < 1.0 and saving < 0.1, stop


@pytest.fixture
def init_file(tmp_path, tiny_checkpoint) -> Path:
    return Path(shutil.copy(tiny_checkpoint, tmp_path / "init_tmp.pt"))


def test_a_run_started_with_init_resumes_with_the_same_command_once_the_file_is_gone(dataset, tmp_path, init_file):
    out = tmp_path / "run"
    train(config(dataset, out, init=str(init_file)), log=quiet)
    init_file.unlink()
    lines = []
    train(config(dataset, out, epochs=2, init=str(init_file)), log=lines.append)
    assert any(line.startswith("resuming from") for line in lines)
    assert epochs_logged(out) == [1, 2]


def test_a_run_started_with_init_resumes_without_init_and_keeps_its_init_on_record(dataset, tmp_path, init_file):
    out = tmp_path / "run"
    train(config(dataset, out, init=str(init_file)), log=quiet)
    init_file.unlink()
    assert cli_train(dataset, out, "--epochs", "2") == 0
    assert epochs_logged(out) == [1, 2]
    state = torch.load(out / "last.pt", weights_only=True)
    assert json.loads(state["run"])["init"] == str(init_file.resolve())
    # another --init is another run
    other = Path(shutil.copy(out / "best.pt", tmp_path / "other.pt"))
    with pytest.raises(ValueError, match=f"--init {other.resolve()} \\(the run's: {init_file.resolve()}\\)"):
        train(config(dataset, out, epochs=3, init=str(other)), log=quiet)


def test_init_from_a_checkpoint_of_another_network_names_the_network_it_holds(dataset, tmp_path, tiny_checkpoint,
                                                                              capsys):
    assert cli_train(dataset, tmp_path / "out", "--config", "paper", "--init", str(tiny_checkpoint)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --init {tiny_checkpoint} for the paper config: the file holds a tiny network: "
                          "weights do not fit the model: ")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    # its bare state_dict too, which stores no config: told by its tensors (training audit 26)
    bare = tmp_path / "tiny_bare.pt"
    torch.save(read_torch_file(tiny_checkpoint)["model"], bare)
    assert cli_train(dataset, tmp_path / "out", "--config", "paper", "--init", str(bare)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --init {bare} for the paper config: the file holds the tensors of a tiny network "
                          "(--config tiny): weights do not fit the model: ")


def test_a_corrupt_last_pt_says_what_starting_afresh_takes_and_that_works(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    train(config(dataset, out), log=quiet)
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:3000])
    capsys.readouterr()  # the run's progress bars
    assert cli_train(dataset, out, "--epochs", "2") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume: {last}: ")
    assert err.endswith("; remove it to start afresh (with the run's best.pt and metrics.jsonl too), or train into "
                        "another --out\n")
    for name in ("last.pt", "best.pt", "metrics.jsonl"):  # as it says
        (out / name).unlink()
    assert cli_train(dataset, out, "--epochs", "1") == 0
    assert epochs_logged(out) == [1]


def test_interpolated_masks_are_one_warning_line_not_a_python_warning(dataset, tmp_path, capsys):
    data = Path(shutil.copytree(dataset, tmp_path / "data"))
    stem = (data / "train.txt").read_text().split()[0]
    mask = cv2.imread(str(data / "masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    mask[0, 0] = 128  # a blurred edge
    cv2.imwrite(str(data / "masks" / f"{stem}.png"), mask)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli_train(data, tmp_path / "out", "--epochs", "1") == 0
    assert not [w for w in caught if issubclass(w.category, InterpolatedMaskWarning)]
    out = capsys.readouterr().out
    assert (f"warning: 1 of 8 masks have values strictly between 0 and 255 (blurred, resized, JPEG or "
            f"coloured masks?); only "
            f"255 counts as target: {data / 'masks' / stem}.png\n") in out


def test_one_process_is_singular_in_a_refused_resume(tmp_path):
    cfg = TrainConfig(data="d", split_train="t.txt", split_val="v.txt", out="o")
    with pytest.raises(ValueError, match=r"other options: 1 process \(the run's: 2\)\."):
        check_same_run(tmp_path, run_record(cfg, 2, ["a"], ["v"]), run_record(cfg, 1, ["a"], ["v"]))
