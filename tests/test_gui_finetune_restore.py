"""The fine-tune dialog offers base weights and a model config that go together: reopened beside a finished run,
it restores the run's model config only with the run's base weights; and Start refuses base weights that hold
another network than the model config chosen, in one line, before anything is exported or a run folder begun."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from app.core.finetune import JOB_FORMAT, FineTuneJob
from app.core.project import ReviewStatus
from app.widgets.finetune_dialog import FineTuneDialog, remember_run_folder

pytestmark = pytest.mark.gui

REPO_ROOT = Path(__file__).resolve().parent.parent
PAPER_WEIGHTS = REPO_ROOT / "resources" / "weights" / "irsam_paper_sirst.pt"  # the shipped paper network


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """A run that does get started trains nothing: `irsam train` stands replaced by a process that ends at once."""
    monkeypatch.setattr(FineTuneJob, "command", lambda job: [sys.executable, "-c", "pass"])


def _finished_run(folder: Path, init_weights: Path | None, config: str) -> None:
    """A fine-tune folder whose run did all its 1 epoch, recorded as the dialog's run records it."""
    job = FineTuneJob(folder / "data", folder / "run", init_weights=init_weights, epochs=1, config=config,
                      device="cpu", extra_args=["--crop", "64"])
    job.out_dir.mkdir(parents=True)
    (job.out_dir / "finetune.json").write_text(json.dumps({"format": JOB_FORMAT, "settings": job.settings()}),
                                              encoding="utf-8")
    job.metrics_path.write_text(json.dumps({"epoch": 1, "loss": 0.5, "val_iou": 0.25}) + "\n", encoding="utf-8")


def _dialog(window, folder: Path, base_weights: Path) -> FineTuneDialog:
    """The dialog as the window opens it, proposing `folder`, the detector's weights `base_weights`."""
    remember_run_folder(window.settings, Path(window.session.project.folder).resolve(), str(folder))
    return FineTuneDialog(window.session, str(base_weights), window, window.settings)


def test_beside_a_finished_run_its_config_is_restored_only_with_its_base_weights(review, tmp_path,
                                                                                 tiny_checkpoint):
    folder = tmp_path / "finetune"
    _finished_run(folder, None, "tiny")  # trained from scratch as tiny
    dialog = _dialog(review, folder, PAPER_WEIGHTS)
    assert (dialog.weights.text(), dialog.config.currentText()) == (str(PAPER_WEIGHTS), "as the base weights")
    assert (dialog.epochs.value(), dialog.device.currentText(), dialog.extra.text()) == (1, "cpu", "--crop 64")
    assert dialog.status.text().startswith(
        f"Settings of the run in {folder / 'run'} restored; it did all its 1 epochs, so Start begins a new run "
        "beside it. Its base weights and model config are not: the new run starts from the weights the detector "
        "uses now.\n")
    dialog.reject()

    other = tmp_path / "finetune_tiny"
    _finished_run(other, tiny_checkpoint, "tiny")  # its base weights are those the detector uses now
    dialog = _dialog(review, other, tiny_checkpoint)
    assert (dialog.weights.text(), dialog.config.currentText()) == (str(tiny_checkpoint), "tiny")
    assert dialog.status.text().startswith(
        f"Settings of the run in {other / 'run'} restored; it did all its 1 epochs, so Start begins a new run "
        "beside it.\n")
    dialog.reject()


def test_start_refuses_base_weights_of_another_network_before_exporting(review, qtbot, tmp_path):
    for index in range(10):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    folder = tmp_path / "finetune"
    dialog = _dialog(review, folder, PAPER_WEIGHTS)
    dialog.config.setCurrentText("tiny")
    assert dialog.start()
    qtbot.waitUntil(lambda: not dialog.export_runner.busy and dialog.start_button.isEnabled(), timeout=60000)
    assert dialog.job is None and dialog.status.text() == "Training not started:"
    assert dialog.failure.toPlainText() == (
        f"The base weights {PAPER_WEIGHTS} hold a paper network; the model config is tiny: choose the paper config, "
        "or other base weights")
    assert not folder.exists()  # nothing exported, no run folder begun
    dialog.reject()


def test_base_weights_are_named_by_their_tensors_when_they_store_no_config(tmp_path, tiny_checkpoint):
    import torch

    from model.checkpoint import CheckpointError, read_weights

    state_dict, _ = read_weights(tiny_checkpoint)
    bare = tmp_path / "tiny_state_dict.pt"
    torch.save(state_dict, bare)  # as official weights come: tensors only
    FineTuneJob(tmp_path / "data", tmp_path / "run", init_weights=bare, config="tiny").check_init_weights()
    with pytest.raises(CheckpointError) as refused:
        FineTuneJob(tmp_path / "data", tmp_path / "run", init_weights=bare, config="paper").check_init_weights()
    assert str(refused.value) == (f"The base weights {bare} hold a tiny network; the model config is paper: "
                                  "choose the tiny config, or other base weights")
