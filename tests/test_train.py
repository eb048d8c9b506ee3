"""Training: the loop learns, checkpoints carry metadata, a killed run resumes, DDP keeps ranks in sync."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.augment import AugmentConfig, SegmentationDataset, crop_around, paste_targets, rescale, target_bank
from model.checkpoint import load_checkpoint
from model.train import (
    THRESHOLD_LIMIT,
    DistributedContext,
    WeightAverage,
    choose_threshold,
    cosine_schedule,
    reconcile_log,
    train,
    training_device,
)
from model.train_config import TrainConfig
from tests.datasets import write_sirst_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst"))


def tiny_config(dataset: Path, out: Path, **kw) -> TrainConfig:
    options = dict(
        data=str(dataset), split_train=str(dataset / "train.txt"), split_val=str(dataset / "val.txt"),
        out=str(out), config="tiny", epochs=2, batch_size=4, crop=64, lr=1e-3,
    )
    options.update(kw)
    return TrainConfig(**options)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_cosine_schedule_is_monotone_to_zero():
    f = cosine_schedule(100)
    values = [f(s) for s in range(0, 120)]
    assert values[0] == 1.0 and values[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_rescale_keeps_a_one_pixel_target_when_enlarged_and_crop_finds_it():
    image = np.zeros((50, 60), np.uint8)
    mask = np.zeros((50, 60), bool)
    mask[20, 30] = True
    big_img, big_mask = rescale(image, mask, 1.5)
    assert big_mask.shape == (75, 90) and big_mask.sum() >= 1
    rng = np.random.default_rng(0)
    for _ in range(20):
        _, crop_mask = crop_around(big_img, big_mask, 32, rng, target_crop_prob=1.0)
        assert crop_mask.shape == (32, 32) and crop_mask.any()


def test_dataset_items_are_deterministic_per_epoch_and_differ_across_epochs():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (70, 90), dtype=np.uint8) for _ in range(3)]
    masks = [np.zeros((70, 90), bool) for _ in range(3)]
    for m in masks:
        m[30:33, 40:43] = True
    ds = SegmentationDataset(images, masks, AugmentConfig(crop=48), seed=5)
    x1, y1 = ds[0]
    x2, _ = ds[0]
    assert x1.shape == (3, 48, 48) and y1.shape == (1, 48, 48)
    assert torch.equal(x1, x2)
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], x1)


def orientation_of(crop: np.ndarray, image: np.ndarray) -> str | None:
    """Which of the 8 dihedral transforms of `image` `crop` is (None: none of them)."""
    for name, t in {"id": image, "h": image[:, ::-1], "v": image[::-1], "hv": image[::-1, ::-1], "t": image.T,
                    "ht": image[:, ::-1].T, "vt": image[::-1].T, "hvt": image[::-1, ::-1].T}.items():
        if np.array_equal(crop, t):
            return name
    return None


@pytest.mark.parametrize("orientations, expected", [("hflip", {"id", "h"}),
                                                     ("dihedral", {"id", "h", "v", "hv", "t", "ht", "vt", "hvt"})])
def test_orientations_reach_exactly_their_transforms_and_move_the_mask_with_the_image(orientations, expected):
    # a square frame as large as the crop and no jitter: each sample is the whole frame, turned
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (32, 32), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[3:6, 20:22] = True  # asymmetric, so a wrong turn of the mask shows
    ds = SegmentationDataset([image], [mask], AugmentConfig(crop=32, scale_range=(1.0, 1.0),
                                                             orientations=orientations), seed=0)
    seen = set()
    for epoch in range(60):
        ds.set_epoch(epoch)
        x, y = ds[0]
        name = orientation_of(x[0].numpy().astype(np.uint8), image)
        assert name is not None
        assert orientation_of(y[0].numpy().astype(bool), mask) == name
        seen.add(name)
    assert seen == expected


def test_unknown_orientations_are_refused():
    with pytest.raises(ValueError, match="dihedral"):
        SegmentationDataset([np.zeros((8, 8), np.uint8)], [np.zeros((8, 8), bool)], AugmentConfig(orientations="rot"))


def frame_with_targets(background: int, targets: list[tuple[int, int, int, int, int]], shape=(40, 60)):
    """A flat frame with bright boxes (y, x, h, w, value); returns (image, mask)."""
    image = np.full(shape, background, np.uint8)
    mask = np.zeros(shape, bool)
    for y, x, h, w, value in targets:
        image[y : y + h, x : x + w] = value
        mask[y : y + h, x : x + w] = True
    return image, mask


def test_target_bank_keeps_each_small_target_as_its_contrast_over_the_background():
    image, mask = frame_with_targets(50, [(5, 5, 3, 3, 90), (20, 30, 2, 4, 70), (25, 2, 11, 11, 200)])
    bank = target_bank([image], [mask], max_area=100)
    assert sorted(int(p.mask.sum()) for p in bank) == [8, 9]  # the 121 px target is too large
    for patch in bank:
        assert patch.mask.shape == patch.signal.shape
        contrast = {9: 40, 8: 20}[int(patch.mask.sum())]
        assert np.all(patch.signal[patch.mask] == contrast)
        assert np.all(patch.signal[~patch.mask] == 0)  # its rim is background: nothing carried over


def test_pasted_targets_add_their_contrast_and_mask_away_from_the_frame_s_own_targets():
    import cv2

    source, source_mask = frame_with_targets(50, [(5, 5, 3, 3, 90)])
    bank = target_bank([source], [source_mask])
    image, mask = frame_with_targets(60, [(18, 28, 2, 2, 120)])
    pasted_any = False
    for seed in range(20):
        out, out_mask = paste_targets(image, mask, bank, 3, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out_mask[mask].all() and np.array_equal(out[mask], image[mask])
        count, labels = cv2.connectedComponents(out_mask.astype(np.uint8), connectivity=8)
        new = out_mask & ~mask
        assert count - 2 == new.sum() // 9 and 1 <= count - 2 <= 3
        assert np.array_equal(out[~new], image[~new])  # only the pasted pixels change
        contrast = out[new].astype(int) - 60
        assert contrast.min() >= round(0.7 * 40) and contrast.max() <= round(1.3 * 40)
        own = np.argwhere(mask)
        for y, x in np.argwhere(new):
            assert np.abs(own - (y, x)).max(axis=1).min() > 4
        pasted_any = True
    assert pasted_any


def test_a_target_that_would_saturate_is_not_pasted():
    source, source_mask = frame_with_targets(50, [(5, 5, 3, 3, 90)])
    bright, none = frame_with_targets(240, [])
    out, out_mask = paste_targets(bright, none, target_bank([source], [source_mask]), 3, np.random.default_rng(0))
    assert not out_mask.any() and np.array_equal(out, bright)


def test_a_dataset_with_pasting_adds_targets_to_its_samples_reproducibly():
    image, mask = frame_with_targets(40, [(10, 10, 3, 3, 120), (25, 40, 2, 2, 100)], shape=(48, 64))
    plain = SegmentationDataset([image], [mask], AugmentConfig(crop=64, scale_range=(1.0, 1.0)), seed=0)
    pasting = SegmentationDataset([image], [mask], AugmentConfig(crop=64, scale_range=(1.0, 1.0), paste_targets=3),
                                  seed=0)
    assert len(pasting.bank) == 2 and plain.bank == []
    more = 0
    for epoch in range(10):
        plain.set_epoch(epoch)
        pasting.set_epoch(epoch)
        assert torch.equal(pasting[0][1], pasting[0][1]) and torch.equal(pasting[0][0], pasting[0][0])
        more += int(pasting[0][1].sum() > plain[0][1].sum())
    assert more >= 5
    with pytest.raises(ValueError, match="paste_targets"):
        SegmentationDataset([image], [mask], AugmentConfig(paste_targets=-1))


def test_training_writes_best_checkpoint_with_metadata_and_resumes(dataset, tmp_path):
    exported = tmp_path / "exported"
    shutil.copytree(dataset, exported)
    train_stems = (dataset / "train.txt").read_text().split()
    window = {"mode": "percentile", "low": 1012.0, "high": 3391.0, "p_low": 0.5, "p_high": 99.99, "sample": 8}
    frames = {stem: {"sequence": "syn", "normalization": window} for stem in train_stems}
    frames["other_000"] = {"sequence": "other", "normalization": {"mode": "window", "low": 0.0, "high": 255.0}}
    (exported / "meta.json").write_text(json.dumps({"format": "irsam-review-export/1", "frames": frames}))
    out = tmp_path / "run"
    summary = train(tiny_config(exported, out, epochs=2))
    assert summary["complete"]
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in log)
    assert all(type(r[key]) is int for r in log for key in ("val_hits", "val_n_targets", "val_n_images"))  # counts
    assert log[1]["lr"] < log[0]["lr"]
    model, config, meta = load_checkpoint(out / "best.pt")
    assert config.name == "tiny"
    assert meta["training"]["split_val"].endswith("val.txt")
    assert "iou" in meta["metrics"]["val"]
    # the loader feeds the 8-bit images as stored; the export's window made them from raw frames
    assert meta["normalization"] == {"mode": "window", "low": 0.0, "high": 255.0}
    assert meta["training"]["images"].startswith("8-bit images used as stored")
    assert meta["training"]["export_normalization"] == {str(exported): {"syn": window}}
    # the decision threshold is chosen on validation and can only improve validation IoU
    threshold = meta["decision_threshold"]
    assert abs(threshold) <= THRESHOLD_LIMIT and (4 * threshold).is_integer()  # on the 0.25 grid
    assert meta["metrics"]["val_at_threshold"]["iou"] >= meta["metrics"]["val"]["iou"] - 1e-9

    messages = []
    train(tiny_config(exported, out, epochs=3), log=messages.append)
    assert any("resuming" in m and "epoch 3/3" in m for m in messages)
    assert [r["epoch"] for r in read_log(out)] == [1, 2, 3]


def test_a_best_threshold_beyond_the_usual_range_is_found_by_widening_the_search():
    mask = np.zeros((32, 32), bool)
    mask[10:14, 10:14] = True
    logits = np.full((32, 32), -30.0, np.float32)
    logits[8:16, 8:16] = 9.0  # a halo as confident as a fine-tune on unlike data can leave it
    logits[mask] = 12.0
    best, results = choose_threshold([logits], [mask])
    assert best == 9.0 and results[best]["iou"] == 1.0  # the halo goes from 9.0 up; 9.0 is nearest 0
    assert results[8.75]["iou"] == pytest.approx(16 / 64) and max(results) == 12.0  # stopped once past it
    best, results = choose_threshold([logits - 25.0], [mask])  # below the usual range: widened down
    assert best == -13.25 and results[best]["iou"] == 1.0 and results[-16.25]["iou"] == pytest.approx(0.25)
    best, results = choose_threshold([logits - 40.0], [mask])  # the target at -28: out of reach
    assert (min(results), max(results)) == (-THRESHOLD_LIMIT, THRESHOLD_LIMIT) and results[best]["iou"] == 0.0
    best, results = choose_threshold([logits - 9.5], [mask])  # inside the usual range: as before
    assert best == 0.0 and results[best]["iou"] == 1.0 and (min(results), max(results)) == (-2.0, 6.0)


def test_the_threshold_never_loses_targets_found_at_zero_for_a_better_iou():
    # an undertrained network: at 0 a ring around the target (found, IoU 0); below -0.2 every pixel is
    # positive, one component centred far from the target (IoU 4/1024, Pd 0)
    mask = np.zeros((32, 32), bool)
    mask[4:6, 4:6] = True
    logits = np.full((32, 32), -0.2, np.float32)
    logits[3:7, 3:7] = 1.0
    logits[mask] = -0.1
    best, results = choose_threshold([logits], [mask])
    assert results[-0.25]["iou"] > results[0.0]["iou"] == 0.0 and results[-0.25]["pd"] == 0.0
    assert best == 0.0 and results[best]["pd"] == 1.0


def test_a_network_that_finds_nothing_at_zero_keeps_zero_rather_than_marking_every_pixel():
    # nothing found at 0; below -0.2 every pixel is positive: one frame-sized component, IoU 4/1024 > 0 but no
    # target found and every background pixel a false alarm (an undertrained run stored that, and detect then
    # marked whole frames)
    mask = np.zeros((32, 32), bool)
    mask[4:6, 4:6] = True
    logits = np.full((32, 32), -0.2, np.float32)
    logits[mask] = -0.1
    best, results = choose_threshold([logits], [mask])
    assert results[-0.25]["iou"] > results[0.0]["iou"] == 0.0 and results[-0.25]["fa"] > 0.99
    assert best == 0.0
    centred = np.zeros((32, 32), bool)  # at the frame's centre, the frame-sized component "finds" it (Fa 0)
    centred[15:17, 15:17] = True
    best, results = choose_threshold([np.where(centred, -0.1, -0.2).astype(np.float32)], [centred])
    assert results[-0.25]["pd"] == 1.0 and results[-0.25]["fa"] == 0.0 and best == 0.0
    logits[mask] = 0.5  # a threshold that does find it is still taken: nothing at 0, the target alone above -0.1
    logits[~mask] = -0.6
    best, results = choose_threshold([logits - 1.0], [mask])
    assert results[0.0]["pd"] == 0.0 and results[best]["pd"] == 1.0 and results[best]["iou"] == 1.0


def test_a_run_killed_between_last_pt_and_its_log_line_gets_the_line_back(dataset, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(dataset, out, epochs=2))
    log_path = out / "metrics.jsonl"
    lines = log_path.read_text().splitlines()
    log_path.write_text(lines[0] + "\n")  # killed after last.pt held epoch 2, before its line was written
    messages = []
    train(tiny_config(dataset, out, epochs=2), log=messages.append)
    assert any("resuming from" in m and "with all 2 epochs done" in m for m in messages)
    assert "metrics.jsonl: restored epoch 2's line from last.pt (the last run was killed between the two writes)" \
        in messages
    assert log_path.read_text().splitlines() == lines

    log_path.write_text(lines[0] + "\n" + lines[1] + "\n" + '{"epoch": 3, "loss": 0.5}\n{"epo')
    train(tiny_config(dataset, out, epochs=3), log=messages.append)
    assert [r["epoch"] for r in read_log(out)] == [1, 2, 3]
    assert "metrics.jsonl: dropped 2 lines of epochs last.pt does not hold (the last run was killed between the " \
        "two writes)" in messages


def test_training_with_input_priors_starts_from_weights_without_them(dataset, tmp_path, tiny_checkpoint):
    out = tmp_path / "priors"
    messages = []
    train(tiny_config(dataset, out, epochs=1, init=str(tiny_checkpoint), config_overrides={"input_priors": True}),
          log=messages.append)
    assert any("zero kernels for the input priors" in m for m in messages)
    network, config, _ = load_checkpoint(out / "best.pt")
    assert config.input_priors and network.image_encoder.patch_embed.seq[0].c.weight.shape[1] == 5
    train(tiny_config(dataset, out, epochs=2, init=str(tiny_checkpoint), config_overrides={"input_priors": True}),
          log=messages.append)
    assert [r["epoch"] for r in read_log(out)] == [1, 2]


def test_reconcile_log_leaves_a_consistent_log_alone(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert reconcile_log(path, 0, None) == "" and not path.exists()
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    before = path.stat().st_mtime_ns
    assert reconcile_log(path, 2, '{"epoch": 2, "x": 1}') == ""
    assert path.stat().st_mtime_ns == before and path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert reconcile_log(tmp_path / "new.jsonl", 1, '{"epoch": 1}') == "restored epoch 1's line from last.pt"
    assert (tmp_path / "new.jsonl").read_text() == '{"epoch": 1}\n'


def test_weight_average_lerps_floats_and_copies_integer_buffers():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    average = WeightAverage(net, decay=0.75)
    with torch.no_grad():
        net[0].weight.add_(4.0)
    net(torch.randn(5, 3))  # a training-mode pass moves the running statistics and the batch counter
    average.update()
    kept = average.model.state_dict()
    assert torch.allclose(kept["0.weight"], start["0.weight"] + 1.0)
    assert torch.allclose(kept["1.running_mean"], 0.75 * start["1.running_mean"] + 0.25 * net[1].running_mean)
    assert kept["1.num_batches_tracked"].item() == 1
    assert not kept["0.weight"].requires_grad
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(net, decay=1.0)


def test_weight_average_is_what_best_pt_keeps_and_survives_a_resume(dataset, tmp_path):
    out = tmp_path / "ema"
    train(tiny_config(dataset, out, epochs=1, ema_decay=0.99))
    state1 = torch.load(out / "last.pt", weights_only=True)
    best, _, meta = load_checkpoint(out / "best.pt")
    assert meta["training"]["recipe"]["ema_decay"] == 0.99
    best_state = best.state_dict()
    key = next(k for k, v in state1["model"].items() if v.is_floating_point() and v.ndim == 2)
    assert torch.equal(best_state[key], state1["average"][key])
    assert not torch.equal(best_state[key], state1["model"][key])

    train(tiny_config(dataset, out, epochs=2, ema_decay=0.99))
    state2 = torch.load(out / "last.pt", weights_only=True)
    # resumed, the average goes on from the saved one (a few steps at 0.99 barely move it) rather than
    # restarting from the current weights
    moved = (state2["average"][key] - state1["average"][key]).norm()
    assert moved < 0.2 * (state2["average"][key] - state2["model"][key]).norm()


def test_overlapping_train_and_val_splits_are_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="share"):
        train(tiny_config(dataset, tmp_path / "x", split_val=str(dataset / "train.txt")))


def _irsam(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def test_cli_training_killed_mid_run_resumes_from_its_last_epoch(dataset, tmp_path):
    out = tmp_path / "killed"

    def command(epochs: int) -> list[str]:
        return _irsam("train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"),
                      "--split-val", str(dataset / "val.txt"), "--out", str(out), "--config", "tiny",
                      "--epochs", str(epochs), "--batch-size", "4", "--crop", "64")

    proc = subprocess.Popen(command(50), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    epochs_done = [r["epoch"] for r in read_log(out)]
    assert epochs_done and epochs_done[-1] < 50, "the run must have been killed mid-way"
    # the epoch last.pt holds (epoch counted from 0): one more than the log's last line when the kill fell between
    # the two writes, which the resume reconciles
    last = torch.load(out / "last.pt", weights_only=True)["epoch"] + 1
    assert last in (epochs_done[-1], epochs_done[-1] + 1)
    # the same command, stopped after one epoch (--max-minutes may change on resume, --epochs may not shrink)
    result = subprocess.run(command(50) + ["--max-minutes", "0.001"], cwd=REPO, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming from" in result.stdout + result.stderr
    assert [r["epoch"] for r in read_log(out)][-1] == last + 1


def test_ddp_two_cpu_processes_stay_in_sync(dataset, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "app.cli", "train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"),
         "--split-val", str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--epochs", "2",
         "--batch-size", "2", "--crop", "64", "--device", "cpu"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]  # rank 0 alone writes the log
    for record in log:
        a, b = record["param_checksums"]
        assert a == b
    assert (out / "best.pt").exists()
    assert result.stdout.count('"best_val_iou"') == 1  # rank 0 alone prints the summary
    assert '"best_val_iou": -1.0' not in result.stdout


def test_one_torchrun_process_goes_through_ddp_and_a_plain_run_does_not(monkeypatch):
    """`torchrun --nproc_per_node 1` on a one-GPU machine must exercise the DDP path (it is how that
    path gets checked there); a plain `irsam train` must not start a process group."""
    import torch.distributed as dist

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    plain = DistributedContext("cpu")
    assert not plain.enabled and plain.world_size == 1 and not dist.is_initialized()

    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29531")
    ctx = DistributedContext("cpu")
    try:
        assert ctx.enabled and dist.is_initialized() and dist.get_world_size() == 1
        assert ctx.gather(1.5) == [1.5] and ctx.broadcast_flag(True) is True
    finally:
        ctx.close()
    assert not dist.is_initialized()


def test_cli_recipe_options_reach_the_training_config(monkeypatch, tmp_path):
    import model.train
    from app.cli import main

    seen = {}
    monkeypatch.setattr(model.train, "train", lambda cfg: seen.setdefault("cfg", cfg) and {})
    assert main(["train", "--data", str(tmp_path), "--split-train", "a.txt", "--split-val", "b.txt",
                 "--out", str(tmp_path / "o"), "--preset", "cpu", "--lr", "5e-5", "--loss", "official",
                 "--target-crop-prob", "0.5", "--crop", "192", "--ema-decay", "0.995", "--val-every", "2",
                 "--orientations", "dihedral", "--paste-targets", "3", "--scale-range", "0.7", "2.2"]) == 0
    cfg = seen["cfg"]
    assert cfg.scale_range == [0.7, 2.2]
    assert (cfg.lr, cfg.loss, cfg.target_crop_prob, cfg.crop, cfg.batch_size) == (5e-5, "official", 0.5, 192, 8)
    assert (cfg.ema_decay, cfg.val_every, cfg.orientations, cfg.paste_targets) == (0.995, 2, "dihedral", 3)


def test_the_scale_range_reaches_the_samples_the_training_draws(tmp_path):
    from model.train import _epoch_loader
    from model.train_config import TrainConfig

    image, mask = np.zeros((128, 128), np.uint8), np.zeros((128, 128), bool)
    image[62:66, 62:66], mask[62:66, 62:66] = 200, True
    areas = {}
    for low_high in ([1.0, 1.0], [2.0, 2.0]):
        cfg = TrainConfig(data="d", split_train="t", split_val="v", out=str(tmp_path), crop=64, batch_size=1,
                          scale_range=low_high, target_crop_prob=1.0)
        loader = _epoch_loader([image], [mask], cfg, DistributedContext("cpu"))
        loader.sampler.set_epoch(0)
        areas[low_high[0]] = int(next(iter(loader))[1].sum())
    assert areas == {1.0: 16, 2.0: 64}  # a 4x4 target doubled on each side


def test_sirst_gpu_preset_is_the_recipe_the_shipped_weights_record(monkeypatch, tmp_path):
    import model.train
    from app.cli import main
    from app.paths import DEFAULT_WEIGHTS
    from model.checkpoint import load_checkpoint

    seen = {}
    monkeypatch.setattr(model.train, "train", lambda cfg: seen.setdefault("cfg", cfg) and {})
    assert main(["train", "--data", str(tmp_path), "--split-train", "a.txt", "--split-val", "b.txt",
                 "--out", str(tmp_path / "o"), "--preset", "sirst-gpu"]) == 0
    recipe = load_checkpoint(DEFAULT_WEIGHTS)[2]["training"]["recipe"]
    keys = ("epochs", "batch_size", "crop", "lr", "precision", "init", "target_crop_prob", "loss", "weight_decay")
    assert {k: getattr(seen["cfg"], k) for k in keys} == {k: recipe[k] for k in keys}


def clear_torchrun_environment(monkeypatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def fake_working_gpus(monkeypatch) -> list[torch.device]:
    """CUDA reports GPUs that work; returns the devices passed to torch.cuda.set_device."""
    zeros = torch.zeros
    selected = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "set_device", selected.append)
    monkeypatch.setattr(torch, "zeros", lambda *size, device=None, **kwargs: zeros(*size, **kwargs))
    return selected


def test_explicit_cuda_without_cuda_is_an_error_and_auto_trains_on_the_cpu(monkeypatch):
    clear_torchrun_environment(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for requested in ("cuda", "cuda:1", "CUDA"):
        with pytest.raises(ValueError, match=rf"^--device {requested.lower()}: CUDA is not available in this "
                                             r"PyTorch build or on this machine; use --device cpu"):
            DistributedContext(requested)
    auto = DistributedContext("auto")
    assert auto.device == torch.device("cpu") and auto.fallback_reason is None
    with pytest.raises(ValueError, match="unknown device 'gpu': use auto, cpu, cuda or cuda:N"):
        DistributedContext("gpu")


def test_a_gpu_that_fails_stops_an_explicit_cuda_run_and_is_reported_under_auto(monkeypatch):
    clear_torchrun_environment(monkeypatch)
    zeros = torch.zeros

    def failing_zeros(*size, device=None, **kwargs):
        if device is not None and torch.device(device).type == "cuda":
            raise RuntimeError("CUDA error: out of memory\nCompile with TORCH_USE_CUDA_DSA to enable device-side assertions.")
        return zeros(*size, device=device, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "zeros", failing_zeros)
    with pytest.raises(ValueError, match=r"^--device cuda:0: CUDA failed: CUDA error: out of memory; use --device cpu"):
        DistributedContext("cuda:0")
    auto = DistributedContext("auto")
    assert auto.device == torch.device("cpu")
    assert auto.fallback_reason == "CUDA failed: CUDA error: out of memory"


def test_single_process_trains_on_the_gpu_asked_for_and_torchrun_on_its_local_rank(monkeypatch):
    clear_torchrun_environment(monkeypatch)
    selected = fake_working_gpus(monkeypatch)
    assert DistributedContext("cuda:1").device == torch.device("cuda", 1)
    assert DistributedContext("cuda").device == torch.device("cuda", 0)
    assert DistributedContext("auto").device == torch.device("cuda", 0)
    assert selected == [torch.device("cuda", 1), torch.device("cuda", 0), torch.device("cuda", 0)]
    assert training_device("cuda:1", local_rank=3) == (torch.device("cuda", 3), None)
    assert training_device("auto", local_rank=2) == (torch.device("cuda", 2), None)
    assert training_device("cpu", local_rank=2) == (torch.device("cpu"), None)


def cli_train(tmp_path: Path, dataset: Path, *options: str) -> int:
    from app.cli import main

    return main(["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"),
                 "--split-val", str(dataset / "val.txt"), "--out", str(tmp_path / "out"), "--config", "tiny",
                 "--epochs", "1", "--batch-size", "4", "--crop", "64", *options])


def test_cli_extra_data_from_a_split_file_trains_on_the_frames_it_lists_only(dataset, tmp_path, capsys):
    extra = write_sirst_dataset(tmp_path / "extra", n_frames=6, seed=9)  # train.txt lists 4 of its 6 frames
    assert cli_train(tmp_path, dataset, "--device", "cpu", "--extra-data", str(extra / "train.txt")) == 0
    out = capsys.readouterr().out
    assert "training tiny on 12 images (4 for validation)" in out  # 8 of the data set's own + 4
    assert cli_train(tmp_path / "bad", dataset, "--device", "cpu", "--extra-data", str(tmp_path / "nowhere")) == 2
    assert "--extra-data " + str(tmp_path / "nowhere") + ": no such folder or split file" in capsys.readouterr().err
    # the data set itself as extra data: its validation images would be trained on
    assert cli_train(tmp_path / "leak", dataset, "--device", "cpu", "--extra-data", str(dataset)) == 2
    assert capsys.readouterr().err.startswith(f"error: --extra-data {dataset} holds 4 of the validation images (the "
                                              "same file or the same pixels), e.g. syn_008, syn_009, syn_010: give a "
                                              "split file of that data set that leaves them out")
    assert not (tmp_path / "leak" / "out").exists()


def test_extra_data_holding_copies_of_the_data_sets_images_under_other_names_is_known_by_its_pixels(dataset, tmp_path,
                                                                                                   capsys):
    """An export of a data set's frames (taken in, corrected, exported) holds them under other names: given beside
    the data set, its copies of validation images would be trained on, and of training images trained on twice."""
    copies = tmp_path / "export"
    for folder in ("images", "masks"):
        (copies / folder).mkdir(parents=True)
        for path in sorted((dataset / folder).glob("*.png")):
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(copies / folder / f"clip_{path.stem}.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    train = [f"clip_{stem}" for stem in (dataset / "train.txt").read_text().split()]
    (copies / "train.txt").write_text("\n".join(train))
    assert cli_train(tmp_path / "leak", dataset, "--device", "cpu", "--extra-data", str(copies)) == 2
    assert "holds 4 of the validation images (the same file or the same pixels), e.g. clip_syn_008" in \
        capsys.readouterr().err
    assert cli_train(tmp_path / "twice", dataset, "--device", "cpu", "--extra-data", str(copies / "train.txt")) == 0
    printed = capsys.readouterr().out
    assert "8 of its 8 images are in the training set already" in printed
    assert "training tiny on 8 images (4 for validation)" in printed


def test_extra_data_already_in_the_training_set_counts_once_and_fp16_on_the_cpu_trains_in_bf16(dataset, tmp_path,
                                                                                               capsys):
    split = dataset / "train.txt"
    assert cli_train(tmp_path, dataset, "--device", "cpu", "--extra-data", str(split), "--extra-data", str(split),
                     "--precision", "fp16") == 0
    printed = capsys.readouterr().out
    assert printed.count(f"--extra-data {split}: 8 of its 8 images are in the training set already") == 2
    assert "training tiny on 8 images (4 for validation)" in printed and "autocast torch.bfloat16" in printed
    assert "warning: --precision fp16 runs on CUDA only: training in bf16 on the cpu, as inference does" in printed
    assert load_checkpoint(tmp_path / "out" / "best.pt")[2]["training"]["precision_used"] == "bf16"


def test_fp16_stays_fp16_on_cuda_only(monkeypatch):
    from model.train import autocast_dtype, precision_warnings

    assert autocast_dtype("fp16", torch.device("cuda", 0)) == torch.float16
    assert precision_warnings("fp16", torch.float16, torch.device("cuda", 0)) == []
    assert autocast_dtype("fp16", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr("model.train.cpu_has_fast_bf16", lambda: False)
    assert precision_warnings("bf16", torch.bfloat16, torch.device("cpu")) == [
        "warning: this CPU has no native bf16 (AVX-512 BF16 or AMX): bf16 is emulated, several times slower than "
        "--precision fp32"]


def test_cli_cuda_without_cuda_exits_2_with_one_line_before_anything_is_written(dataset, tmp_path, monkeypatch, capsys):
    clear_torchrun_environment(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli_train(tmp_path, dataset, "--device", "cuda:1") == 2
    err = capsys.readouterr().err
    assert err == ("error: --device cuda:1: CUDA is not available in this PyTorch build or on this machine; "
                   "use --device cpu to train on the CPU\n")
    assert not (tmp_path / "out").exists()


def test_cli_init_with_weights_that_do_not_fit_exits_2_naming_the_keys(dataset, tmp_path, capsys):
    from model.build import build_irsam
    from model.config import tiny

    unrelated = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(10)}, unrelated)
    assert cli_train(tmp_path, dataset, "--device", "cpu", "--init", str(unrelated)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --init {unrelated} for the tiny config: no tensor of the file belongs to this "
                          "model: file keys conv1.weight, fc.bias; model keys image_encoder.")
    assert err.count("\n") == 1

    other_shape = tmp_path / "wider.pt"
    torch.save(build_irsam(tiny().replace(transformer_mlp_dim=96)).state_dict(), other_shape)
    assert cli_train(tmp_path, dataset, "--device", "cpu", "--init", str(other_shape)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --init {other_shape} for the tiny config: weights do not fit the model: "
                          "6 shape mismatch: mask_decoder.transformer.layers.0.mlp.lin1.weight: "
                          "checkpoint (96, 32) vs model (64, 32)")
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before the out folder, the data or any epoch


@pytest.mark.parametrize("content", ['[1, 2]', '{"frames": [1]}', '{"frames": {"a": 3}}', "not json {", ""])
def test_a_foreign_meta_json_does_not_stop_training(tmp_path, content):
    from model.train import exported_windows

    (tmp_path / "meta.json").write_text(content)
    assert exported_windows(tmp_path) == {}


def test_export_windows_are_read_per_sequence_for_the_stems_asked(tmp_path):
    from model.train import exported_windows

    window = {"mode": "window", "low": 100.0, "high": 900.0}
    frames = {"clip_000": {"sequence": "clip", "normalization": window},
              "other_000": {"sequence": "other", "normalization": {"mode": "window", "low": 0.0, "high": 1.0}}}
    (tmp_path / "meta.json").write_text(json.dumps({"frames": frames}))
    assert exported_windows(tmp_path, {"clip_000"}) == {"clip": window}


def test_a_torchrun_process_whose_gpu_fails_stops_even_with_auto(monkeypatch):
    zeros = torch.zeros
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Fake GPU")

    def zeros_on_two_gpus(*size, device=None, **kwargs):
        if device is not None and torch.device(device).index >= 2:
            raise RuntimeError("CUDA error: invalid device ordinal")
        return zeros(*size, **kwargs)

    monkeypatch.setattr(torch, "zeros", zeros_on_two_gpus)
    assert training_device("auto", local_rank=1) == (torch.device("cuda", 1), None)
    with pytest.raises(ValueError, match="torchrun process 2: CUDA failed: CUDA error: invalid device ordinal"):
        training_device("auto", local_rank=2)


@pytest.mark.parametrize("nan_from_step, message, epochs_kept", [
    # a resumed run keeps its learning rate: a lower one is a run of its own
    (3, "diverged in epoch 2: the network's outputs became NaN.*keeps epoch 1: start again into another --out with a "
        "lower --lr", 1),  # found at step 4
    # the epoch's last step: found at its end
    (2, "diverged in epoch 1: the weights became NaN.*keeps nothing: start again with a lower --lr", 0),
])
def test_a_run_whose_weights_become_nan_stops_and_keeps_the_epoch_before(dataset, tmp_path, monkeypatch,
                                                                         nan_from_step, message, epochs_kept):
    import model.losses
    from model.train import TrainingDiverged

    real_loss = model.losses.LOSSES["paper"]
    calls = []

    def loss_that_diverges(*args):
        loss, parts = real_loss(*args)
        calls.append(1)
        return (loss * float("nan"), parts) if len(calls) >= nan_from_step else (loss, parts)  # 2 steps an epoch

    monkeypatch.setitem(model.losses.LOSSES, "paper", loss_that_diverges)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=message):
        train(tiny_config(dataset, out, epochs=3, loss="paper"))
    if epochs_kept:
        assert [r["epoch"] for r in read_log(out)] == [1]
        state = torch.load(out / "last.pt", weights_only=False)
        assert state["epoch"] == 0
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
        load_checkpoint(out / "best.pt")  # finite weights of epoch 1
    else:
        assert not (out / "last.pt").exists() and not (out / "best.pt").exists()
