import json
import os
import shutil
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from app.core.export import export_project, read_exported_dataset
from app.core.finetune import (
    FineTuneJob,
    FineTuneSetupError,
    checkpoint_config_args,
    compare_weights,
    describe_cancelled,
    format_duration,
    hold_out,
    prepare_run,
)
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


def reviewed_sequence(root):
    """(project, open source) of one 8-frame 64x80 sequence, every frame accepted."""
    sequence = generate_sequence(SyntheticConfig(n_frames=8, height=64, width=80, n_targets=(1, 2),
                                                 empty_fraction=0.0), seed=5)
    source = open_source(write_sequence(sequence, root / "seqA"))
    project = ReviewProject.create(root / "seqA_review", source.path, source.kind, source.stems, source.shape,
                                   Normalization.from_percentiles(source).to_dict())
    for stem, mask in zip(project.stems, sequence.masks):
        project.save_prediction(stem, FrameResult(np.where(mask, 5.0, -5.0).astype(np.float32)))
        project.set_status(stem, ReviewStatus.ACCEPTED)
    return project, source


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """An export of one reviewed 8-frame 64x80 sequence (sirst layout, all frames in the train split)."""
    root = tmp_path_factory.mktemp("finetune")
    project, source = reviewed_sequence(root)
    report = export_project(project, root / "export", "sirst", source=source)
    source.close()
    assert len(report.exported) == 8
    return root / "export"


def sixteen_bit_copy(dataset, root):
    """A copy of an images/ + masks/ data set whose images are 16-bit PNGs."""
    shutil.copytree(dataset, root)
    for path in (root / "images").glob("*.png"):
        cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 257)
    return root


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
    wide = sixteen_bit_copy(base, tmp_path / "wide")  # read_image_gray refuses them: 8-bit only
    (base / "masks" / "syn_004.png").unlink()
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    for folder, says in ((tmp_path / "nowhere", "no such folder or split file"), (base, "syn_004"), (empty, "no images"),
                         (wide, r"12 of its 12 images cannot be trained on: syn_000.png \(I;16\), syn_001.png "
                                r"\(I;16\), syn_002.png \(I;16\) and 9 more. Training reads 8-bit images only")):
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


def test_a_fine_tune_folder_resumes_an_unfinished_run_of_the_same_settings_else_begins_a_new_one(tmp_path):
    """The rule is irsam train's own (check_same_run): a resume it would refuse starts a new run folder."""
    import torch

    project, source = reviewed_sequence(tmp_path)
    folder = tmp_path / "finetune"
    base = write_sirst_dataset(tmp_path / "base", n_frames=3)
    options = dict(config="tiny", epochs=1, device="cpu", base_data=[base], extra_args=TRAIN_ARGS)

    def prepared(**changes):
        """(note, run folder name) of a run prepared with `options` changed; a new run folder is removed
        again, so that the next try is judged against the first run."""
        run = prepare_run(folder, project, sequence_name="seqA", source=source, **{**options, **changes})
        assert len(run.report.exported) == len(read_exported_dataset(folder / "data", "sirst"))
        if run.job.out_dir.name != "run":
            shutil.rmtree(run.job.out_dir)
        return run.note, run.job.out_dir.name

    cancelled = prepare_run(folder, project, sequence_name="seqA", source=source, python=shutil.which("true"),
                            **options)  # `true -m app.cli train ...`: started, trains nothing
    assert cancelled.note == "" and cancelled.job.out_dir == folder / "run" and len(cancelled.report.exported) == 8
    cancelled.job.start()
    assert cancelled.job.wait(timeout=30) == 0
    assert describe_cancelled(cancelled.job).startswith("Cancelled before the first epoch ended")
    assert prepared() == ("", "run")  # no epoch done: nothing to resume, the folder is reused

    first = prepare_run(folder, project, sequence_name="seqA", source=source, **options)
    first.job.start()  # one real epoch: last.pt records the run's settings and frames
    assert first.job.wait(timeout=120) == 0, first.job.log_path.read_text()
    assert first.job.poll() and prepared() == (f"The run in {folder / 'run'} had done all its 1 epochs: this one "
                                               f"starts afresh in {folder / 'run-2'}.", "run-2")
    resumed = f"Resuming the run in {folder / 'run'} after epoch 1 of 3."
    assert prepared(epochs=3) == (resumed, "run")  # a run may be extended, as irsam train allows
    assert prepared(epochs=3, device="auto") == (resumed, "run")  # and resumes on any device
    assert prepared(epochs=3, extra_args=TRAIN_ARGS + ["--lr", "1e-5"]) == (
        f"The run in {folder / 'run'} was started with other settings (--lr 1e-05 (the run's: 0.0001)): this one "
        f"starts afresh in {folder / 'run-2'}.", "run-2")
    assert prepared(epochs=3, extra_args=TRAIN_ARGS + ["--workers", "1"]) == (resumed, "run")
    assert prepared(epochs=3, config="official")[0].startswith(
        f"The run in {folder / 'run'} trained another network (config tiny, not official)")
    project.set_status(project.stems[7], ReviewStatus.REJECTED)
    assert prepared(epochs=3)[0].startswith(f"The run in {folder / 'run'} trained on other reviewed frames")
    project.set_status(project.stems[7], ReviewStatus.ACCEPTED)
    for layer in ("images", "masks"):  # the base data gained an image: irsam train would refuse to resume
        shutil.copy(base / layer / "syn_000.png", base / layer / "syn_009.png")
    assert prepared(epochs=3)[0] == (
        f"The run in {folder / 'run'} was started with other settings (the images --extra-data {base} holds "
        f"(1 added, 0 gone)): this one starts afresh in {folder / 'run-2'}.")
    for layer in ("images", "masks"):
        (base / layer / "syn_009.png").unlink()
    stem = project.stems[1]  # a reviewed frame corrected since: exported again under its name, with its new mask
    mask = project.committed_mask(stem)
    project.commit_mask(stem, ~mask if mask is not None else np.ones(project.shape_of(stem), bool))
    assert prepared(epochs=3)[0].startswith(f"The run in {folder / 'run'} trained on reviewed frames whose masks "
                                            "have changed since")
    if mask is not None:
        project.commit_mask(stem, mask)
    else:
        (project.folder / "labels" / f"{stem}.png").unlink()

    again = prepare_run(folder, project, sequence_name="seqA", source=source, **{**options, "epochs": 2})
    assert again.note == f"Resuming the run in {folder / 'run'} after epoch 1 of 2." and again.job.out_dir == folder / "run"
    again.job.start()  # irsam train agrees: it resumes rather than refusing the run
    assert again.job.wait(timeout=120) == 0, again.job.log_path.read_text()
    assert again.job.poll() and [r["epoch"] for r in again.job.records] == [1, 2]  # the log of the whole run
    assert describe_cancelled(again.job).startswith("Cancelled after the last of its 2 epochs")

    state = torch.load(first.job.last_path, weights_only=True)
    del state["run"]  # a last.pt from before runs recorded their settings
    torch.save(state, first.job.last_path)
    assert prepared(epochs=5)[0].startswith(f"The run in {folder / 'run'} was started by an older version")
    first.job.last_path.write_bytes(b"")
    assert prepared(epochs=5)[0].startswith(f"The run in {folder / 'run'} cannot be resumed (")
    source.close()


def test_prepare_run_refuses_16_bit_base_data_before_exporting(tmp_path):
    project, source = reviewed_sequence(tmp_path)
    wide = sixteen_bit_copy(write_sirst_dataset(tmp_path / "base"), tmp_path / "wide")
    with pytest.raises(FineTuneSetupError, match=r"^Also train on: .*cannot be trained on: syn_000.png \(I;16\)"):
        prepare_run(tmp_path / "finetune", project, sequence_name="seqA", source=source, base_data=[wide])
    assert not (tmp_path / "finetune").exists()
    source.close()


def test_a_comparison_stops_at_the_next_image_once_cancelled(export_dir, tiny_checkpoint, monkeypatch):
    from model.predictor import Predictor

    cancelled = threading.Event()
    detect = Predictor.detect
    calls = []

    def detect_then_cancel(predictor, images, features=False):
        calls.append(len(images))
        cancelled.set()
        return detect(predictor, images, features)

    monkeypatch.setattr(Predictor, "detect", detect_then_cancel)
    samples = read_exported_dataset(export_dir, "sirst")
    assert compare_weights(tiny_checkpoint, tiny_checkpoint, [(i, m) for _, i, m, _ in samples],
                           cancelled=cancelled) is None
    assert calls == [1]  # one image of the 8, then it stopped


def test_a_fine_tune_folder_exported_under_another_sequence_name_is_exported_into_again(tmp_path):
    """FOLDER/data made when the sequence had another default name (a TIFF stack's kept its .tif): the dialog
    gives no name, so the export takes the one the data set already gives this source."""
    project, source = reviewed_sequence(tmp_path)
    folder = tmp_path / "finetune"
    first = prepare_run(folder, project, sequence_name="seqA.tif", source=source, config="tiny", epochs=1)
    again = prepare_run(folder, project, source=source, config="tiny", epochs=1)
    assert again.report.exported == first.report.exported and again.report.exported[0].startswith("seqA.tif_")
    source.close()


def test_config_args_read_the_config_a_training_runs_last_pt_stores(tmp_path):
    """A fine-tune started from a run's last.pt got no --config / --set: only our checkpoint format was read."""
    import json

    import torch

    from model.build import build_irsam
    from model.checkpoint import RESUME_STATE_KEYS
    from model.config import tiny

    config = tiny().replace(fusion="deep")
    state = {key: {} for key in RESUME_STATE_KEYS}
    state.update(model=build_irsam(config).state_dict(), epoch=1, config=json.dumps(config.to_dict()))
    torch.save(state, tmp_path / "last.pt")
    assert checkpoint_config_args(tmp_path / "last.pt") == ["--config", "tiny", "--set", 'fusion="deep"']
