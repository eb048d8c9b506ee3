"""Training runs are reproducible pieces: worker processes augment each epoch anew, a resumed run is the run it
resumes (order, weights, loss scale), validation scores what `irsam eval` scores, a resume notices changed extra
data, and a run killed in its first epoch starts again with the same command."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import model.train as train_module
from app.cli import main
from model.augment import SegmentationDataset
from model.build import build_irsam
from model.config import preset
from model.predictor import Predictor
from model.train import predict_logits, train
from model.train_config import TRAIN_LOCK, TrainConfig
from tests.datasets import write_sirst_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst"))  # 8 training frames, 4 for validation


def config(dataset: Path, out: Path, **kw) -> TrainConfig:
    options = dict(data=str(dataset), split_train=str(dataset / "train.txt"), split_val=str(dataset / "val.txt"),
                   out=str(out), config="tiny", device="cpu", precision="fp32", epochs=3, batch_size=2, crop=48,
                   lr=1e-3)
    options.update(kw)
    return TrainConfig(**options)


class Stopped(Exception):
    """Raised from the log after an epoch's line: the run stops as a kill there leaves it (last.pt written)."""


def stop_after(epoch: int):
    def log(message: str) -> None:
        if message.startswith(f"epoch {epoch} |"):
            raise Stopped
    return log


def last_state(out: Path) -> dict:
    return torch.load(out / "last.pt", weights_only=True)


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"


def epoch_lines(out: Path) -> list[dict]:
    """metrics.jsonl without the timings."""
    return [{k: v for k, v in json.loads(line).items() if not k.endswith("seconds")}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_workers_augment_each_epoch_anew_and_as_a_run_without_workers(dataset, tmp_path, monkeypatch):
    # worker processes are forked with the patched method; each writes what it produced to the file
    record = tmp_path / "items.jsonl"
    original = SegmentationDataset.__getitem__

    def recording(self, index):
        x, y = original(self, index)
        with open(record, "a") as f:
            f.write(json.dumps([self.epoch, int(index), hashlib.md5(x.numpy().tobytes()).hexdigest()]) + "\n")
        return x, y

    monkeypatch.setattr(SegmentationDataset, "__getitem__", recording)
    crops, states = {}, {}
    for workers in (2, 0):
        record.write_text("")
        out = tmp_path / f"workers{workers}"
        train(config(dataset, out, epochs=2, batch_size=4, workers=workers), log=lambda message: None)
        rows = [json.loads(line) for line in record.read_text().splitlines()]
        crops[workers] = {(epoch, index): digest for epoch, index, digest in rows}
        states[workers] = last_state(out)["model"]
    assert len(crops[2]) == 2 * 8  # each epoch draws each of the 8 frames once, at that epoch
    assert all(crops[2][(0, index)] != crops[2][(1, index)] for index in range(8))  # a new scale, crop and flip
    assert crops[2] == crops[0]
    assert_same_tensors(states[2], states[0])


def test_a_resumed_run_is_the_run_it_resumes(dataset, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train(config(dataset, whole), log=lambda message: None)
    with pytest.raises(Stopped):
        train(config(dataset, resumed), log=stop_after(1))
    assert last_state(resumed)["epoch"] == 0
    lines: list[str] = []
    train(config(dataset, resumed), log=lines.append)
    assert any(line.startswith("resuming from") for line in lines)
    a, b = last_state(whole), last_state(resumed)
    assert_same_tensors(a["model"], b["model"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 3 * 4
    assert "scaler" not in b  # no fp16 on the CPU: no loss scale to keep
    assert epoch_lines(whole) == epoch_lines(resumed)
    best = [torch.load(out / "best.pt", weights_only=True) for out in (whole, resumed)]
    assert_same_tensors(best[0]["model"], best[1]["model"])
    assert best[0]["metadata"]["metrics"] == best[1]["metadata"]["metrics"]


def test_the_loss_scale_is_kept_in_last_pt_and_resumed(dataset, tmp_path, monkeypatch):
    # fp16's GradScaler runs on CUDA only; a CPU one, enabled, takes its place in the same code
    scalers = []

    def cpu_scaler(dtype, device):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**4, growth_interval=1))  # doubles every step
        return scalers[-1]

    monkeypatch.setattr(train_module, "grad_scaler", cpu_scaler, raising=False)
    out = tmp_path / "run"
    with pytest.raises(Stopped):
        train(config(dataset, out, epochs=2), log=stop_after(1))
    assert last_state(out)["scaler"]["scale"] == 2.0 ** (4 + 4)  # 4 steps
    train(config(dataset, out, epochs=2), log=lambda message: None)
    assert scalers[-1].get_scale() == 2.0 ** (4 + 8)  # went on from there, not from 2**4
    assert last_state(out)["scaler"]["scale"] == 2.0 ** (4 + 8)


def test_validation_scores_what_irsam_eval_scores_for_an_upsample2x_network(dataset, tmp_path, capsys):
    out, val = tmp_path / "run", tmp_path / "val.txt"
    val.write_text("\n".join((dataset / "val.txt").read_text().split()[:2]))  # each frame is run at 512 (x2)
    train(config(dataset, out, split_val=str(val), epochs=1, config_overrides={"encoder_input": "upsample2x"}),
          log=lambda message: None)
    best = torch.load(out / "best.pt", weights_only=True)
    at_zero = tmp_path / "at_zero.pt"  # the same weights without the calibrated threshold: the epoch's validation
    torch.save({**best, "metadata": {**best["metadata"], "decision_threshold": 0.0}}, at_zero)
    scored = {}
    for name, weights in (("val", at_zero), ("val_at_threshold", out / "best.pt")):
        report = tmp_path / f"{name}.json"
        assert main(["eval", "--weights", str(weights), "--images", str(dataset / "images"), "--masks",
                     str(dataset / "masks"), "--split", str(val), "--refine", "off", "--device", "cpu", "--json",
                     str(report)]) == 0
        scored[name] = json.loads(report.read_text())
    for name, evaluated in scored.items():
        stored = best["metadata"]["metrics"][name]
        keys = ("iou", "niou", "pd", "fa", "false_alarm_pixels")
        assert {k: stored[k] for k in keys} == {k: evaluated[k] for k in keys}, name


def test_validation_tiles_frames_as_the_predictor_does():
    torch.manual_seed(0)
    network = build_irsam("tiny")
    frame = np.random.default_rng(0).integers(0, 255, (96, 1100), dtype=np.uint8)  # over the 1024 px tile
    expected = Predictor(network, preset("tiny"), device="cpu").detect([frame])[0].logits
    network.train()
    assert np.array_equal(predict_logits(network, [frame], torch.device("cpu"), None), [expected])
    assert network.training  # validation leaves the network as it found it


def test_a_resume_with_other_images_in_an_extra_data_folder_is_refused(dataset, tmp_path):
    extra = write_sirst_dataset(tmp_path / "extra", n_frames=6, seed=9)
    out = tmp_path / "run"
    with pytest.raises(Stopped):
        train(config(dataset, out, extra_data=[str(extra)]), log=stop_after(1))
    kept = {path.name: path.read_bytes() for path in out.iterdir()}
    (extra / "images" / "syn_000.png").rename(extra / "images" / "new_000.png")
    (extra / "masks" / "syn_000.png").rename(extra / "masks" / "new_000.png")
    with pytest.raises(ValueError) as refused:
        train(config(dataset, out, extra_data=[str(extra)]), log=lambda message: None)
    assert f"the images --extra-data {extra.resolve()} holds (1 added, 1 gone)" in str(refused.value)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == kept


@pytest.mark.parametrize("where", ["extra", "train"])
def test_a_resume_after_a_mask_changed_under_the_same_name_is_refused(dataset, tmp_path, where):
    """A frame reviewed again and exported again (--append) keeps its name: its new mask is a change too."""
    data = Path(shutil.copytree(dataset, tmp_path / "data"))  # the module's data set stays as it is
    extra = write_sirst_dataset(tmp_path / "extra", n_frames=6, seed=9)
    out = tmp_path / "run"
    with pytest.raises(Stopped):
        train(config(data, out, extra_data=[str(extra)]), log=stop_after(1))
    kept = {path.name: path.read_bytes() for path in out.iterdir()}
    if where == "extra":
        mask = sorted((extra / "masks").glob("*.png"))[0]
    else:
        mask = data / "masks" / f"{(data / 'train.txt').read_text().split()[0]}.png"
    cv2.imwrite(str(mask), np.zeros_like(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)))  # the target deleted
    with pytest.raises(ValueError) as refused:
        train(config(data, out, extra_data=[str(extra)]), log=lambda message: None)
    said = (f"the images or masks --extra-data {extra.resolve()} holds changed under the same names" if where == "extra"
            else "the images or masks --split-train lists changed under the same names")
    assert said in str(refused.value)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == kept


def test_a_resume_after_a_training_image_was_damaged_names_the_file_not_a_changed_run(dataset, tmp_path):
    """Training audit 26: the damaged file changed the contents the run recorded, so the refusal said the images had
    "changed under the same names" and advised another --out, where putting the file back resumes the run."""
    data = Path(shutil.copytree(dataset, tmp_path / "data"))
    out = tmp_path / "run"
    with pytest.raises(Stopped):
        train(config(data, out), log=stop_after(1))
    image = data / "images" / f"{(data / 'train.txt').read_text().split()[0]}.png"
    whole = image.read_bytes()
    image.write_bytes(whole[:300])
    with pytest.raises(ValueError) as refused:
        train(config(data, out), log=lambda message: None)
    assert str(refused.value).startswith(f"1 unusable training or validation file(s): {image}: ")
    assert "other options" not in str(refused.value)
    image.write_bytes(whole)
    train(config(data, out), log=lambda message: None)  # the same run, resumed


def test_a_validation_split_without_a_target_is_warned_of(dataset, tmp_path):
    """Training audit 26: the app's fine-tune warned of it, irsam train trained on silently to a best.pt chosen by
    an IoU of 0 at every epoch."""
    data = Path(shutil.copytree(dataset, tmp_path / "data"))
    for stem in (data / "val.txt").read_text().split():
        mask = data / "masks" / f"{stem}.png"
        cv2.imwrite(str(mask), np.zeros_like(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)))
    said = []
    with pytest.raises(Stopped):
        train(config(data, tmp_path / "run"), log=lambda m: said.append(m) or stop_after(1)(m))
    assert any(m.startswith("warning: no image --split-val lists (") and "has a target" in m for m in said)
    said.clear()
    with pytest.raises(Stopped):
        train(config(dataset, tmp_path / "run2"), log=lambda m: said.append(m) or stop_after(1)(m))
    assert not any("has a target" in m for m in said)


KILLED_WHILE_WRITING_LAST_PT = """
import os, signal, sys
import model.atomic as atomic
write = atomic.write_temporary_beside
def dying(path, data):
    if os.path.basename(path) != "last.pt":
        return write(path, data)
    write(path, data[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)  # the first last.pt half written, best.pt already there
atomic.write_temporary_beside = dying
from app.cli import main
main(sys.argv[1:])
"""


def test_a_run_killed_in_its_first_epoch_starts_again_with_the_same_command(dataset, tmp_path, capsys):
    out = tmp_path / "run"

    def command(epochs: int = 2, *options: str) -> list[str]:
        return ["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"), "--split-val",
                str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--device", "cpu", "--precision",
                "fp32", "--epochs", str(epochs), "--batch-size", "4", "--crop", "48", *options]

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING_LAST_PT, *command()], cwd=REPO, env=env,
                            capture_output=True, timeout=240)
    assert killed.returncode == -9, killed.stderr.decode()
    assert (out / TRAIN_LOCK).is_file()  # the killed run's lock file, unlocked: in nobody's way
    names = sorted(path.name for path in out.iterdir() if path.name != TRAIN_LOCK)
    assert names[1:] == ["best.pt"] and names[0].startswith(".last.pt.") and names[0].endswith(".tmp")
    capsys.readouterr()

    assert main(command(2, "--lr", "5e-4")) == 2  # the best.pt of another run stays in the way
    assert "holds best.pt and no last.pt to resume" in capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir() if path.name != TRAIN_LOCK) == names

    assert main(command()) == 0
    printed = capsys.readouterr().out
    assert f"removed {names[0]}, best.pt from {out}: left by this command killed in its first epoch" in printed
    assert sorted(path.name for path in out.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl"]
    assert [line["epoch"] for line in epoch_lines(out)] == [1, 2]

    stale = out / ".best.pt.k1ll3d_x.tmp"  # a later write killed before its rename: gone at the next resume
    stale.write_bytes(b"partial")
    assert main(command(3)) == 0
    assert "removed .best.pt.k1ll3d_x.tmp" in capsys.readouterr().out and not stale.exists()
    assert [line["epoch"] for line in epoch_lines(out)] == [1, 2, 3]
