"""The fine-tune dialog in the real window under Xvfb: a new Start drops the comparison of the run before, a
reopened dialog restores the settings of its folder's run, frames without a target are refused or warned of,
and the dialog's wording and comparison table."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from PySide6 import QtWidgets

from app.core.finetune import FineTuneJob
from app.core.project import ReviewStatus

pytestmark = pytest.mark.gui

# Stands in for `irsam train`: copies WEIGHTS to best.pt, writes the records of EPOCHS (comma-separated, each
# SECONDS long), then exits once GATE exists
FAKE_TRAINING = """
import json, pathlib, shutil, sys, time
weights, best, metrics, epochs, seconds, gate = sys.argv[1:7]
shutil.copy(weights, best)
with open(metrics, "a") as f:
    for epoch in epochs.split(","):
        f.write(json.dumps({"epoch": int(epoch), "loss": 0.5, "val_iou": 0.25, "seconds": float(seconds)}) + "\\n")
while not pathlib.Path(gate).exists():
    time.sleep(0.02)
"""


@pytest.fixture(autouse=True)
def stop_training_when_asked(monkeypatch):
    """"Stop training?" is answered yes: a test that failed midway leaves no question open at its teardown."""
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", lambda *a, **k: QtWidgets.QMessageBox.Yes)


class FakeTraining:
    """What the next run's fake `irsam train` writes (`epochs`, each `seconds` long) and the file it waits for."""

    def __init__(self, monkeypatch, weights: Path, gate: Path, epochs: str = "1", seconds: float = 1.0):
        self.weights, self.gate, self.epochs, self.seconds = weights, gate, epochs, seconds
        monkeypatch.setattr(FineTuneJob, "command", lambda job: [
            sys.executable, "-c", FAKE_TRAINING, str(self.weights), str(job.best_path), str(job.metrics_path),
            self.epochs, str(self.seconds), str(self.gate)])


def _review(window, frames: range, status: ReviewStatus) -> None:
    for index in frames:
        window.session.set_status(index, status)


def _open_dialog(window, folder: Path, weights: Path, epochs: int = 1):
    dialog = window.review_tools.finetune_dialog_open()
    dialog.folder.setText(str(folder))
    dialog.weights.setText(str(weights))
    dialog.epochs.setValue(epochs)
    return dialog


def _start(dialog, qtbot) -> None:
    """Start, and wait until the run trains (its preparation, the export, runs in a worker first)."""
    assert dialog.start(), dialog.status.text()
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled() or dialog.cancel_button.isEnabled(), timeout=30000)
    assert dialog.job is not None and not dialog.failure.isVisible(), (dialog.status.text(),
                                                                       dialog.failure.toPlainText())


def test_a_new_start_drops_the_comparison_of_the_run_before(review, qtbot, tmp_path, monkeypatch, tiny_checkpoint):
    first_gate, second_gate = tmp_path / "first_gate", tmp_path / "second_gate"
    first_gate.touch()  # the first run ends at once
    training = FakeTraining(monkeypatch, tiny_checkpoint, first_gate)
    comparing, release = threading.Event(), threading.Event()
    validation_samples = FineTuneJob.validation_samples

    def held_validation_samples(job):  # the first comparison is held until the second run trains
        comparing.set()
        release.wait(timeout=60)
        return validation_samples(job)

    monkeypatch.setattr(FineTuneJob, "validation_samples", held_validation_samples)
    _review(review, range(10), ReviewStatus.ACCEPTED)
    folder = tmp_path / "finetune"
    dialog = _open_dialog(review, folder, tiny_checkpoint)
    _start(dialog, qtbot)
    qtbot.waitUntil(comparing.is_set, timeout=30000)
    assert dialog.status.text().startswith("Training done. Comparing") and dialog.start_button.isEnabled()

    training.gate = second_gate  # the second run trains until the test lets it end
    _start(dialog, qtbot)
    second = dialog.job
    assert second.out_dir == folder / "run-2" and second.running
    release.set()  # the first run's comparison goes on: cancelled, and its end is dropped
    qtbot.waitUntil(lambda: not dialog.compare_runner.busy, timeout=30000)
    qtbot.wait(200)  # its queued end arrives
    assert second.running
    assert not dialog.use_button.isEnabled() and dialog.comparison.isHidden()
    assert not dialog.status.text().startswith("Training done"), dialog.status.text()

    second_gate.touch()  # the second run ends: its own comparison is shown, and its weights offered
    qtbot.waitUntil(dialog.use_button.isEnabled, timeout=60000)
    assert dialog.job is second and dialog.status.text() == f"Training done: {second.best_path}"
    assert dialog.comparison.isVisible()
    dialog.close()


def _save_resume_state(job: FineTuneJob, epoch: int) -> None:
    """What irsam train keeps in last.pt after epoch `epoch` + 1, as far as a resume reads it: the epoch and the
    run's record (tests/test_gui_review.py's save_resume_state)."""
    import torch

    from model.train import run_record
    from model.train_config import train_config_of_command

    run = run_record(train_config_of_command(job.train_arguments()), 1, job.holdout.train, job.holdout.val)
    torch.save({"epoch": epoch, "run": json.dumps(run)}, job.last_path)


def test_a_reopened_dialog_restores_the_settings_of_its_folders_run_and_start_resumes_it(
        review, qtbot, tmp_path, monkeypatch, tiny_checkpoint):
    gate = tmp_path / "gate"
    training = FakeTraining(monkeypatch, tiny_checkpoint, gate)
    _review(review, range(8), ReviewStatus.ACCEPTED)
    folder = tmp_path / "finetune"
    options = "--crop 64 --batch-size 2 --workers 0 --precision fp32"
    dialog = _open_dialog(review, folder, tiny_checkpoint, epochs=3)
    dialog.config.setCurrentText("tiny")
    dialog.device.setCurrentText("cpu")
    dialog.extra.setText(options)
    _start(dialog, qtbot)
    qtbot.waitUntil(lambda: dialog.progress.format().startswith("epoch 1/3"), timeout=10000)
    _save_resume_state(dialog.job, epoch=0)
    dialog.close()  # "Stop training?": yes, after epoch 1 of 3
    assert not dialog.job.running

    reopened = review.review_tools.finetune_dialog_open()
    assert reopened is not dialog and reopened.folder.text() == str(folder)
    assert (reopened.weights.text(), reopened.epochs.value(), reopened.config.currentText(),
            reopened.device.currentText(), reopened.extra.text()) == (str(tiny_checkpoint), 3, "tiny", "cpu", options)
    assert reopened.status.text().startswith(f"Settings of the run in {folder / 'run'} restored: Start resumes it "
                                             "after epoch 1 of 3 while the reviewed frames stay the same.")
    training.epochs = "2,3"
    _start(reopened, qtbot)
    assert reopened.job.out_dir == folder / "run"
    assert reopened.status.text().startswith(f"Resuming the run in {folder / 'run'} after epoch 1 of 3.")
    gate.touch()
    qtbot.waitUntil(reopened.start_button.isEnabled, timeout=30000)
    reopened.close()

    finished = review.review_tools.finetune_dialog_open()  # all its epochs done: a new run like it goes beside it
    assert (finished.epochs.value(), finished.config.currentText(), finished.extra.text()) == (
        3, "as the base weights", options)  # its config only with its base weights: not a tiny config on paper weights
    assert finished.weights.text() != str(tiny_checkpoint)  # a new run starts from the detector's weights
    assert finished.status.text().startswith(f"Settings of the run in {folder / 'run'} restored; it did all its 3 "
                                             "epochs, so Start begins a new run beside it.")
    finished.reject()


def test_start_is_refused_when_no_reviewed_frame_trained_on_has_a_target(review, qtbot, tmp_path, monkeypatch,
                                                                          tiny_checkpoint):
    gate = tmp_path / "gate"
    gate.touch()
    FakeTraining(monkeypatch, tiny_checkpoint, gate)
    _review(review, range(8), ReviewStatus.NEGATIVE)
    dialog = _open_dialog(review, tmp_path / "finetune", tiny_checkpoint)
    assert dialog.start()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30000)
    assert dialog.job is None and dialog.status.text() == "Training not started:"
    assert dialog.failure.toPlainText() == (
        "Nothing to train on: no reviewed frame trained on (6 frames) has a target, as they are marked negative or "
        "their masks are empty. The network would learn to find nothing: accept or correct frames that show a "
        "target first.")
    assert not (tmp_path / "finetune" / "run").exists()
    dialog.close()


def test_a_start_that_comes_to_nothing_still_offers_the_weights_of_the_run_before(review, qtbot, tmp_path,
                                                                                  monkeypatch, tiny_checkpoint):
    """A refused Start (here: nothing left to train on) took "Use new weights" away from the finished run."""
    gate = tmp_path / "gate"
    gate.touch()
    FakeTraining(monkeypatch, tiny_checkpoint, gate)
    _review(review, range(10), ReviewStatus.ACCEPTED)
    dialog = _open_dialog(review, tmp_path / "finetune", tiny_checkpoint)
    _start(dialog, qtbot)
    qtbot.waitUntil(dialog.use_button.isEnabled, timeout=60000)
    finished = dialog.job
    _review(review, range(10), ReviewStatus.NEGATIVE)
    assert dialog.start()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30000)
    assert dialog.failure.toPlainText().startswith("Nothing to train on")
    assert dialog.job is finished and dialog.use_button.isEnabled()
    dialog.close()


def test_a_validation_part_without_a_target_is_warned_of_and_best_pt_keeps_the_first_epoch(review, qtbot, tmp_path,
                                                                                            tiny_checkpoint):
    from model.checkpoint import read_torch_file

    _review(review, range(8), ReviewStatus.ACCEPTED)
    _review(review, range(8, 10), ReviewStatus.NEGATIVE)  # the last two reviewed: held out for validation
    dialog = _open_dialog(review, tmp_path / "finetune", tiny_checkpoint, epochs=2)
    dialog.device.setCurrentText("cpu")
    dialog.extra.setText("--crop 64 --batch-size 4 --workers 0 --precision fp32")
    _start(dialog, qtbot)  # real training, on a tiny network
    assert dialog.warnings.isVisible()
    assert dialog.warnings.text() == (
        "warning: no frame held out for validation (2 frames, the last reviewed ones) has a target, so validation "
        "cannot tell the epochs apart: best.pt keeps the first epoch validated, and the comparison of old and new "
        "weights can only count false alarms (Fa).")
    qtbot.waitUntil(dialog.use_button.isEnabled, timeout=120000)
    assert dialog.job.returncode == 0, dialog.job.log_tail()
    assert [r["epoch"] for r in dialog.job.records] == [1, 2]
    assert read_torch_file(dialog.job.best_path)["metadata"]["training"]["epoch"] == 1  # as the warning says
    assert dialog.comparison.item(1, 2).text() == "-"  # no Pd without a target
    assert dialog.warnings.isVisible() and dialog.warnings.text().startswith("warning: no frame held out")
    assert "--split-val" not in dialog.warnings.text()  # irsam train's own warning of it is left out (diff review 26)
    assert "warning: no image --split-val lists (2) has a target" in dialog.job.log_path.read_text()
    dialog.close()


def test_the_wording_of_progress_and_counts_and_a_comparison_table_sized_to_its_rows(review, qtbot, tmp_path,
                                                                                     monkeypatch, tiny_checkpoint):
    gate = tmp_path / "gate"
    FakeTraining(monkeypatch, tiny_checkpoint, gate, seconds=10.0)
    _review(review, range(2), ReviewStatus.ACCEPTED)
    dialog = _open_dialog(review, tmp_path / "finetune", tiny_checkpoint, epochs=2)
    _start(dialog, qtbot)
    assert "Training on 1 frame, validating on 1 (held out by block)" in dialog.status.text()
    qtbot.waitUntil(lambda: dialog.progress.format().startswith("epoch 1/2"), timeout=10000)
    assert dialog.progress.format() == "epoch 1/2, under a minute left"  # 10 s: one 10 s epoch left
    with open(dialog.job.metrics_path, "a") as f:  # its second epoch, then it ends
        f.write(json.dumps({"epoch": 2, "loss": 0.4, "val_iou": 0.3, "seconds": 10.0}) + "\n")
    gate.touch()
    qtbot.waitUntil(dialog.use_button.isEnabled, timeout=60000)
    table = dialog.comparison
    assert table.isVisible()
    assert table.viewport().height() == table.verticalHeader().length()  # no empty band under the last row
    assert table.horizontalHeader().length() == table.viewport().width()  # the columns fill the width
    dialog.close()


def test_a_run_its_time_limit_stopped_early_is_offered_for_resuming_not_as_new_weights(review, qtbot, tmp_path,
                                                                                       monkeypatch, tiny_checkpoint):
    """`--max-minutes` in the options ends `irsam train` with success before its last epoch: "Use new weights" was
    offered for the unfinished run."""
    gate = tmp_path / "gate"
    gate.touch()
    FakeTraining(monkeypatch, tiny_checkpoint, gate, epochs="1")  # one epoch of two, then exit 0
    _review(review, range(10), ReviewStatus.ACCEPTED)
    dialog = _open_dialog(review, tmp_path / "finetune", tiny_checkpoint, epochs=2)
    _start(dialog, qtbot)
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled() and not dialog.job.running, timeout=60000)
    qtbot.wait(200)
    assert dialog.job.returncode == 0
    assert dialog.status.text() == "Training stopped after epoch 1 of 2 (its time limit): Start resumes it."
    assert not dialog.use_button.isEnabled() and not dialog.compare_runner.busy
    dialog.close()
