import json
import os
import sys
import time

import numpy as np
import pytest

from app.core.export import export_project
from app.core.finetune import FineTuneJob, checkpoint_config_args, compare_weights, format_duration, hold_out
from app.core.frames import open_source
from app.core.normalization import Normalization
from app.core.project import ReviewProject, ReviewStatus
from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence
from model.detectors import FrameResult
from tests.datasets import write_sirst_dataset

TRAIN_ARGS = ["--crop", "64", "--batch-size", "2", "--workers", "0", "--precision", "fp32"]
# `irsam train` as the job runs it, with model.train.training_device reporting a GPU that failed under
# --device auto (what a broken driver gives): the process trains on the CPU and logs why
BROKEN_GPU_TRAIN = """
import runpy, torch, model.train
model.train.training_device = lambda requested, local_rank=None: (torch.device("cpu"), "CUDA error: broken driver")
runpy.run_module("app.cli", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """An export of one reviewed 8-frame 64x80 sequence (sirst layout, all frames in the train split)."""
    root = tmp_path_factory.mktemp("finetune")
    sequence = generate_sequence(SyntheticConfig(n_frames=8, height=64, width=80, n_targets=(1, 2),
                                                 empty_fraction=0.0), seed=5)
    source = open_source(write_sequence(sequence, root / "seqA"))
    project = ReviewProject.create(root / "seqA_review", source.path, source.kind, source.stems, source.shape,
                                   Normalization.from_percentiles(source).to_dict())
    for stem, mask in zip(project.stems, sequence.masks):
        project.save_prediction(stem, FrameResult(np.where(mask, 5.0, -5.0).astype(np.float32)))
        project.set_status(stem, ReviewStatus.ACCEPTED)
    report = export_project(project, root / "export", "sirst", source=source)
    source.close()
    assert len(report.exported) == 8
    return root / "export"


def test_hold_out_takes_whole_sequences_when_there_are_several():
    meta = {f"{seq}_{i}": {"sequence": seq, "frame_index": i} for seq in ("a", "b", "c") for i in range(4)}
    split = hold_out(list(meta), meta, val_fraction=0.3)
    assert split.by == "sequence"
    assert split.val == ["c_0", "c_1", "c_2", "c_3"]
    assert split.train == [f"{seq}_{i}" for seq in ("a", "b") for i in range(4)]
    split = hold_out(list(meta), meta, val_fraction=0.9)  # one sequence always stays for training
    assert split.train == ["a_0", "a_1", "a_2", "a_3"]


def test_hold_out_takes_the_last_block_of_one_sequence():
    meta = {f"s_{i}": {"sequence": "s", "frame_index": i} for i in range(10)}
    stems = [f"s_{i}" for i in (3, 1, 2, 0, 4, 5, 6, 7, 9, 8)]  # order of the split file does not matter
    split = hold_out(stems, meta, val_fraction=0.2)
    assert split.by == "block"
    assert split.train == [f"s_{i}" for i in range(8)] and split.val == ["s_8", "s_9"]
    assert hold_out(["x", "y"], {}, 0.5) == hold_out(["x", "y"], {}, 0.9)  # never all frames
    with pytest.raises(ValueError):
        hold_out(["x"], {}, 0.2)


def test_fine_tune_job_trains_in_a_separate_process_and_reports_epochs(export_dir, tmp_path, tiny_checkpoint):
    base = write_sirst_dataset(tmp_path / "base")  # the data set the base weights knew: trained on too
    n_base = len(list((base / "images").glob("*.png")))
    job = FineTuneJob(export_dir, tmp_path / "run", init_weights=tiny_checkpoint, epochs=1, device="cpu",
                      val_fraction=0.25, base_data=[base], extra_args=TRAIN_ARGS)
    job.start()
    command = job.command()
    assert command[command.index("--config") + 1] == "tiny"  # read from the init checkpoint
    assert command[command.index("--extra-data") + 1] == str(base)
    assert job.holdout.by == "block" and len(job.holdout.val) == 2 and job.base_frames == n_base
    assert job.split_val.read_text().split() == job.holdout.val
    records = []
    deadline = time.time() + 120
    while job.running and time.time() < deadline:
        records += job.poll()
        time.sleep(0.2)
    assert job.wait(timeout=1) == 0, job.log_path.read_text()
    records += job.poll()
    assert [r["epoch"] for r in records] == [1]
    assert all("loss" in r and "val_iou" in r for r in records)
    assert job.progress() == 1.0 and job.poll() == []
    assert job.best_path.exists() and job.last_path.exists()
    assert "initialised from" in job.log_path.read_text()
    assert '"complete": true' in job.log_tail()
    assert f"training tiny on {6 + n_base} images (2 for validation)" in job.log_path.read_text()
    recorded = json.loads((job.out_dir / "finetune.json").read_text())
    assert recorded["n_val"] == 2 and recorded["n_base"] == n_base

    # The same checkpoint twice: best.pt written by model/train.py does not load with weights_only yet
    # (numpy floats in its metadata).
    comparison = compare_weights(tiny_checkpoint, tiny_checkpoint, job.validation_samples())
    assert set(comparison) == {"old", "new"}
    assert comparison["old"] == comparison["new"]
    assert comparison["old"]["n_images"] == 2 and "iou" in comparison["old"]


def test_a_base_folder_that_is_not_a_data_set_is_refused_before_training_starts(export_dir, tmp_path):
    base = write_sirst_dataset(tmp_path / "base")
    (base / "masks" / "syn_004.png").unlink()
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    for folder, says in ((tmp_path / "nowhere", "no images/ folder"), (base, "syn_004"), (empty, "no images")):
        job = FineTuneJob(export_dir, tmp_path / "run", base_data=[folder], epochs=1, device="cpu")
        with pytest.raises(ValueError, match=says):
            job.start()
        assert job.process is None and not job.split_train.exists()


def test_remaining_time_is_the_mean_epoch_times_the_epochs_left(tmp_path):
    job = FineTuneJob(tmp_path / "export", tmp_path / "run", epochs=5)
    assert job.remaining_seconds() is None
    job.records = [{"epoch": 1, "seconds": 10.0}, {"epoch": 2, "seconds": 12.0, "val_seconds": 4.0}]
    assert job.remaining_seconds() == pytest.approx(13.0 * 3)  # validation counts where it ran
    job.records.append({"epoch": 5, "seconds": 11.0})
    assert job.remaining_seconds() == 0.0
    assert [format_duration(t) for t in (20, 90, 60 * 59.6, 60 * 125)] == [
        "under a minute", "2 min", "1 h 00 min", "2 h 05 min"]


def test_cancel_stops_the_whole_process_group(export_dir, tmp_path):
    job = FineTuneJob(export_dir, tmp_path / "cancelled", config="tiny", epochs=500, device="cpu",
                      extra_args=TRAIN_ARGS)
    job.start()
    deadline = time.time() + 60
    while "steps/epoch" not in job.log_path.read_text() and time.time() < deadline:  # training has begun
        time.sleep(0.2)
    assert job.running, job.log_path.read_text()
    code = job.cancel(timeout=5)
    assert code is not None and code != 0
    assert not job.running
    with pytest.raises(ProcessLookupError):
        os.killpg(job.pid, 0)


def test_poll_warnings_reports_training_on_the_cpu_once_for_this_run(export_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.log").write_text("warning: training on the CPU: an earlier run in this folder\n")
    job = FineTuneJob(export_dir, run, config="tiny", epochs=1, device="auto", extra_args=TRAIN_ARGS)
    command = job.command
    job.command = lambda: [sys.executable, "-c", BROKEN_GPU_TRAIN, *command()[3:]]  # after `python -m app.cli`
    job.start()
    assert job.wait(timeout=120) == 0, job.log_path.read_text()
    line = "warning: training on the CPU: CUDA error: broken driver"
    assert job.poll_warnings() == [line]
    assert job.poll_warnings() == [] and job.warnings == [line]
    assert job.poll() and job.best_path.exists()  # a successful run: the warning is all that tells of the CPU


def test_config_args_reproduce_overrides_of_our_checkpoints(tmp_path, tiny_checkpoint):
    from model.build import build_irsam
    from model.checkpoint import save_checkpoint
    from model.config import tiny

    assert checkpoint_config_args(tiny_checkpoint) == ["--config", "tiny"]
    config = tiny().replace(fusion="deep")
    path = tmp_path / "deep.pt"
    save_checkpoint(path, build_irsam(config), config, {})
    assert checkpoint_config_args(path) == ["--config", "tiny", "--set", 'fusion="deep"']
