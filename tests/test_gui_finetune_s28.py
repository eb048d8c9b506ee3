"""The fine-tune dialog in the real window under Xvfb: "Cancel export" stops a run's preparation while it exports,
keeping nothing of that export; the settings are locked while a run is prepared or trains and freed when it ends
(finished, failed or cancelled); the plot gives the validation IoU its own right-hand axis, labelled, with a
legend naming both curves."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PySide6 import QtCore, QtWidgets

from app.core.finetune import FineTuneJob
from app.core.project import ReviewStatus
from app.widgets import finetune_dialog
from tests.test_gui_review import hold_worker_reads

pytestmark = pytest.mark.gui

# Stands in for `irsam train`: writes the metrics RECORDS (JSON lines), waits until GATE exists, exits with CODE
FAKE_TRAINING = """
import pathlib, sys, time
metrics, records, gate, code = sys.argv[1:5]
pathlib.Path(metrics).write_text(records)
while not pathlib.Path(gate).exists():
    time.sleep(0.02)
sys.exit(int(code))
"""


@pytest.fixture(autouse=True)
def stop_training_when_asked(monkeypatch):
    """"Stop training?" is answered yes: a test that failed midway leaves no question open at its teardown."""
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", lambda *a, **k: QtWidgets.QMessageBox.Yes)


def _fake_training(monkeypatch, gate: Path, records: list[dict], code: int = 0) -> None:
    lines = "".join(json.dumps(record) + "\n" for record in records)
    monkeypatch.setattr(FineTuneJob, "command", lambda job: [
        sys.executable, "-c", FAKE_TRAINING, str(job.metrics_path), lines, str(gate), str(code)])


def _dialog(window, folder: Path, frames: int = 8, epochs: int = 1):
    for index in range(frames):
        window.session.set_status(index, ReviewStatus.ACCEPTED)
    dialog = window.review_tools.finetune_dialog_open()
    dialog.folder.setText(str(folder))
    dialog.weights.setText("")
    dialog.epochs.setValue(epochs)
    return dialog


def _settings(dialog) -> list[QtWidgets.QWidget]:
    """Every field and button of the run's settings, the choosers of the base data included."""
    browse = [b for b in dialog.findChildren(QtWidgets.QPushButton) if b.text() in ("Folder...", "Split file...")]
    assert len(browse) == 2
    return [dialog.folder, dialog.weights, dialog.base_data, dialog.epochs, dialog.config, dialog.device,
            dialog.extra, *browse]


def _wait(ms: int) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(ms, loop.quit)
    loop.exec()


def test_cancel_export_stops_the_export_keeping_nothing_and_the_next_start_trains(review, qtbot, tmp_path,
                                                                                   monkeypatch):
    gate = tmp_path / "gate"
    gate.touch()
    _fake_training(monkeypatch, gate, [{"epoch": 1, "loss": 0.5, "val_iou": 0.25}])
    folder = tmp_path / "finetune"
    dialog = _dialog(review, folder)
    assert dialog.cancel_export_button.isHidden()  # until an export runs
    release = hold_worker_reads(review.session.source, monkeypatch, first=3)  # the export waits after 3 frames
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.progress.value() == 3, timeout=30000)
    assert dialog.cancel_export_button.isVisible() and dialog.cancel_export_button.isEnabled()
    assert dialog.cancel_button.isHidden() and not dialog.cancel_button.isEnabled()
    assert not any(widget.isEnabled() for widget in _settings(dialog))
    dialog.cancel_export_button.click()
    assert dialog.status.text() == "Cancelling the export..." and not dialog.cancel_export_button.isEnabled()
    release.set()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30000)
    assert dialog.job is None and not dialog.failure.isVisible()
    assert dialog.status.text() == ("Cancelled during the export: none of its files or folders were kept. Start "
                                    "exports the reviewed frames again.")
    assert not folder.exists()  # no half-written data set to be taken for an export begun
    assert all(widget.isEnabled() for widget in _settings(dialog))
    assert dialog.cancel_export_button.isHidden() and dialog.cancel_button.isVisible()
    assert dialog.windowModality() == QtCore.Qt.NonModal  # the window is free again

    assert dialog.start()  # the same folder, from the beginning
    qtbot.waitUntil(lambda: dialog.job is not None and dialog.start_button.isEnabled(), timeout=30000)
    assert dialog.job.returncode == 0 and dialog.status.text().startswith("Training done")
    assert len(list((folder / "data" / "images").glob("*.png"))) == 8
    dialog.close()


def test_a_cancel_that_comes_after_the_last_step_of_the_preparation_starts_no_training(review, qtbot, tmp_path,
                                                                                        monkeypatch):
    gate = tmp_path / "gate"
    gate.touch()
    _fake_training(monkeypatch, gate, [{"epoch": 1, "loss": 0.5, "val_iou": 0.25}])
    prepare_run = finetune_dialog.prepare_run

    def prepared_then_cancelled(*args, cancelled, **kwargs):  # as if Cancel export came just after it returned
        prepared = prepare_run(*args, cancelled=cancelled, **kwargs)
        cancelled.set()
        return prepared

    monkeypatch.setattr(finetune_dialog, "prepare_run", prepared_then_cancelled)
    folder = tmp_path / "finetune"
    dialog = _dialog(review, folder)
    assert dialog.start()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30000)
    assert dialog.job is None
    assert dialog.status.text() == (f"Cancelled after the export: {folder / 'data'} holds the reviewed frames; no "
                                    "training was started. Start exports the reviewed frames again.")
    assert all(widget.isEnabled() for widget in _settings(dialog))
    dialog.close()


@pytest.mark.parametrize("ending", ["finished", "failed", "cancelled"])
def test_the_settings_are_locked_while_a_run_trains_and_freed_when_it_ends(review, qtbot, tmp_path, monkeypatch,
                                                                           ending):
    gate = tmp_path / "gate"
    _fake_training(monkeypatch, gate, [{"epoch": 1, "loss": 0.5, "val_iou": 0.25}],
                   code=1 if ending == "failed" else 0)
    dialog = _dialog(review, tmp_path / "finetune")
    assert dialog.start()
    assert not any(widget.isEnabled() for widget in _settings(dialog))  # while it exports
    qtbot.waitUntil(dialog.cancel_button.isEnabled, timeout=30000)
    job = dialog.job
    assert job.running and not any(widget.isEnabled() for widget in _settings(dialog))  # while it trains
    if ending == "cancelled":
        dialog.cancel_button.click()
    else:
        gate.touch()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30000)
    assert not job.running
    assert dialog.status.text().startswith({"finished": "Training done", "failed": "Training failed (exit 1)",
                                            "cancelled": "Cancelled"}[ending]), dialog.status.text()
    assert all(widget.isEnabled() for widget in _settings(dialog))
    dialog.close()


def test_the_iou_has_its_own_right_axis_and_a_legend_names_both_curves(review, qtbot, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    records = [{"epoch": 1, "loss": 5.0, "val_iou": 0.52}, {"epoch": 2, "loss": 4.2},  # validated every other epoch
               {"epoch": 3, "loss": 3.6, "val_iou": 0.61}, {"epoch": 4, "loss": 3.1}, {"epoch": 5, "loss": 3.0,
                                                                                      "val_iou": 0.68}]
    _fake_training(monkeypatch, gate, records)
    dialog = _dialog(review, tmp_path / "finetune", epochs=5)
    assert dialog.start()
    qtbot.waitUntil(lambda: dialog.progress.format().startswith("epoch 5/5"), timeout=30000)
    plot = dialog.plot.getPlotItem()
    assert [plot.getAxis(side).labelText for side in ("bottom", "left", "right")] == [
        "epoch", "training loss", "validation IoU %"]
    assert plot.getAxis("right").isVisible() and plot.getAxis("right").linkedView() is dialog.iou_view
    assert dialog.loss_curve.getViewBox() is plot.vb and dialog.iou_curve.getViewBox() is dialog.iou_view
    assert [list(values) for values in dialog.iou_curve.getData()] == [[1, 3, 5], [52.0, 61.0, 68.0]]
    _wait(200)  # the views range over their curves
    (loss_low, loss_high), (iou_low, iou_high) = plot.vb.viewRange()[1], dialog.iou_view.viewRange()[1]
    assert 2 < loss_low < 3.0 and 5.0 < loss_high < 6  # the loss alone on the left axis
    assert 45 < iou_low < 52 and 68 < iou_high < 75  # the IoU alone on the right one
    assert dialog.iou_view.viewRange()[0] == pytest.approx(plot.vb.viewRange()[0], abs=1e-6)  # the same epochs
    assert [(sample.item, label.text) for sample, label in dialog.legend.items] == [
        (dialog.loss_curve, "training loss (left axis)"), (dialog.iou_curve, "validation IoU % (right axis)")]

    dialog.resize(dialog.width() + 120, dialog.height() + 80)  # the IoU's view follows the plot's
    qtbot.waitUntil(lambda: dialog.iou_view.sceneBoundingRect() == plot.vb.sceneBoundingRect(), timeout=5000)
    assert dialog.iou_view.viewRange()[0] == pytest.approx(plot.vb.viewRange()[0], abs=1e-6)
    gate.touch()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30000)
    dialog.close()
