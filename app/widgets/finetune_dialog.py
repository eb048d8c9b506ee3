"""Tools > Fine-tune on corrections...: export the reviewed frames, train in a separate process
(app.core.finetune.FineTuneJob), plot loss and validation IoU live, compare old and new weights.

The export runs in a worker thread (its progress shown); the training process is then polled by a QTimer
(metrics.jsonl, one record per epoch, and the warning lines of train.log, shown from when they appear
until the next start); the comparison runs in a worker thread.
Closing the dialog while training cancels the process (it can be resumed from its folder).
"""
from __future__ import annotations

import math
import shlex
from datetime import datetime
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from app.core.export import export_project
from app.core.finetune import FineTuneJob, base_samples, compare_weights, format_duration
from app.widgets.export_dialog import ExportWorker
from app.widgets.workers import CallWorker, WorkerRunner

POLL_MS = 500
CONFIG_CHOICES = {"as the base weights": None, "tiny": "tiny", "paper": "paper", "official": "official"}
BASE_DATA_KEY = "finetune/base_data"
# (metric, header, scale): shown as irsam eval prints them
COMPARED = (("iou", "IoU %", 100), ("niou", "nIoU %", 100), ("pd", "Pd %", 100), ("fa", "Fa x1e-6", 1e6))


def default_run_folder(project_folder: Path) -> Path:
    return project_folder / "finetune" / datetime.now().strftime("%Y%m%d-%H%M%S")


class FineTuneDialog(QtWidgets.QDialog):
    useWeightsRequested = QtCore.Signal(str)  # path of the new checkpoint

    def __init__(self, session, base_weights: str | None, parent=None, settings: QtCore.QSettings | None = None):
        super().__init__(parent)
        self.session = session
        self.settings = settings  # remembers the "Also train on" folder between runs
        self.job: FineTuneJob | None = None
        self.compare_runner = WorkerRunner(self)
        self.export_runner = WorkerRunner(self)
        self._run_folder: Path | None = None  # of the export running, for the training that follows
        self.setWindowTitle("Fine-tune on corrections")
        self.folder = QtWidgets.QLineEdit(str(default_run_folder(session.project.folder)))
        self.folder.setToolTip("data/ (the exported frames) and run/ (checkpoints, metrics, train.log) go here")
        self.weights = QtWidgets.QLineEdit(base_weights or "")
        self.weights.setPlaceholderText("none: train from MobileSAM / scratch")
        self.epochs = QtWidgets.QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(20)
        self.config = QtWidgets.QComboBox()
        self.config.addItems(CONFIG_CHOICES)
        self.device = QtWidgets.QComboBox()
        self.device.addItems(["auto", "cuda", "cpu"])
        self.base_data = QtWidgets.QLineEdit(str(settings.value(BASE_DATA_KEY, "")) if settings is not None else "")
        self.base_data.setPlaceholderText("none: the reviewed frames only")
        self.base_data.setToolTip(
            "A data set mixed into training so that the network keeps what it learned, e.g. the one the base\n"
            "weights were trained on: a folder with images/ and masks/ (every image is trained on), or a split\n"
            "file inside one such as its trainval.txt (only the frames it lists: keep test frames out).\n"
            "Without it, a few reviewed frames of one clip can cost the weights much of what they knew.")
        browse = QtWidgets.QPushButton("Folder...")
        browse.clicked.connect(self._browse_base_folder)
        browse_split = QtWidgets.QPushButton("Split file...")
        browse_split.clicked.connect(self._browse_base_split)
        base_row = QtWidgets.QHBoxLayout()
        base_row.addWidget(self.base_data, 1)
        base_row.addWidget(browse)
        base_row.addWidget(browse_split)
        self.extra = QtWidgets.QLineEdit()
        self.extra.setPlaceholderText("more irsam train options, e.g. --crop 256 --batch-size 4")
        form = QtWidgets.QFormLayout()
        form.addRow("Folder", self.folder)
        form.addRow("Base weights", self.weights)
        form.addRow("Also train on", base_row)
        form.addRow("Epochs", self.epochs)
        form.addRow("Model config", self.config)
        form.addRow("Device", self.device)
        form.addRow("Options", self.extra)

        self.plot = pg.PlotWidget(background=(20, 20, 24))
        self.plot.setLabel("bottom", "epoch")
        self.plot.addLegend(offset=(-10, 10))
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.loss_curve = self.plot.plot(pen=pg.mkPen((255, 150, 50), width=2), symbol="o", symbolSize=5,
                                         name="train loss")
        self.iou_curve = self.plot.plot(pen=pg.mkPen((80, 200, 255), width=2), symbol="s", symbolSize=5,
                                        name="val IoU")
        self.progress = QtWidgets.QProgressBar()
        self.status = QtWidgets.QLabel("Exports the accepted / corrected / negative frames, then trains on them.")
        self.status.setWordWrap(True)
        self.warnings = QtWidgets.QLabel()  # e.g. "warning: training on the CPU: ..." (model/train.py)
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #e0a030;")
        self.warnings.hide()
        self.comparison = QtWidgets.QTableWidget(2, len(COMPARED))
        self.comparison.setVerticalHeaderLabels(["old weights", "new weights"])
        self.comparison.setHorizontalHeaderLabels([label for _, label, _ in COMPARED])
        self.comparison.setMaximumHeight(90)
        self.comparison.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)

        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QtWidgets.QPushButton("Cancel training")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.use_button = QtWidgets.QPushButton("Use new weights and re-detect unreviewed frames")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self._use_weights)
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.start_button, self.cancel_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.warnings)
        layout.addWidget(self.comparison)
        layout.addLayout(buttons)
        self.resize(640, 620)

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)

    def start(self) -> bool:
        """Export the reviewed frames in a worker thread, then start training; False when the export
        cannot start (one is running). What follows shows in `status`."""
        if self.export_runner.busy:
            return False
        base = self.base_data.text().strip()
        if base:
            try:
                base_samples(Path(base).expanduser())
            except ValueError as e:
                self.status.setText(f"Also train on: {e}")
                return False
        if self.settings is not None:
            self.settings.setValue(BASE_DATA_KEY, base)
        self.warnings.clear()
        self.warnings.hide()
        folder = Path(self.folder.text().strip()).expanduser()
        session = self.session
        worker = ExportWorker(lambda progress: export_project(
            session.project, folder / "data", "sirst", split="train", sequence_name=session.sequence_name,
            source=session.source, normalization=session.normalization, progress=progress))
        worker.progress.connect(self._export_progress)
        worker.finished.connect(self._exported)
        self._run_folder = folder
        self.start_button.setEnabled(False)
        self.status.setText("Exporting the reviewed frames...")
        self.progress.setFormat("exporting %v / %m frames")
        self.progress.setRange(0, 0)
        self.export_runner.start(worker)
        return True

    def _export_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _exported(self, report, error: str | None) -> None:
        self.export_runner.release_if_done(self.sender())
        folder = self._run_folder
        self.progress.setFormat("%p%")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.start_button.setEnabled(True)
        if error:
            self.status.setText(f"Export failed: {error}")
            return
        if not report.exported:
            self.status.setText("No reviewed frames to train on: accept or correct some frames first.")
            return
        if not self.isVisible():  # closed from code while exporting (Esc is refused): start nothing hidden
            return
        weights = self.weights.text().strip() or None
        base = self.base_data.text().strip()
        self.job = FineTuneJob(folder / "data", folder / "run", init_weights=weights, epochs=self.epochs.value(),
                               base_data=[Path(base).expanduser()] if base else None,
                               config=CONFIG_CHOICES[self.config.currentText()], device=self.device.currentText(),
                               extra_args=shlex.split(self.extra.text()))
        try:
            self.job.start()
        except (OSError, ValueError, RuntimeError) as e:
            self.status.setText(f"Could not start training: {e}")
            self.job = None
            return
        also = f" plus {self.job.base_frames} of {base}" if base else ""
        self.status.setText(f"Training on {len(self.job.holdout.train)} frames{also}, validating on "
                            f"{len(self.job.holdout.val)} (held out by {self.job.holdout.by}); log: {self.job.log_path}")
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.timer.start()

    def _browse_base_folder(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, "Data set to keep training on (images/ + masks/)",
                                                            self.base_data.text())
        if folder:
            self.base_data.setText(folder)

    def _browse_base_split(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Split file of a data set to keep training on",
                                                        self.base_data.text(), "Split files (*.txt);;All files (*)")
        if path:
            self.base_data.setText(path)

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status.setText(f"Cancelled. Starting again with the folder {self.job.out_dir.parent} resumes it.")
        self._stopped()

    def _stopped(self) -> None:
        if self.job is not None and self.job.records:  # no time left to count down
            self.progress.setFormat(f"epoch {self.job.records[-1]['epoch']}/{self.job.epochs}")
        self.timer.stop()
        self.cancel_button.setEnabled(False)
        self.start_button.setEnabled(True)

    def _poll(self) -> None:
        job = self.job
        code = job.returncode  # read first: once it is set, the files polled below are complete
        if job.poll():
            epochs = [r["epoch"] for r in job.records]
            self.loss_curve.setData(epochs, [r.get("loss", math.nan) for r in job.records])
            self.iou_curve.setData(epochs, [r.get("val_iou", math.nan) for r in job.records])
            self.progress.setValue(round(100 * job.progress()))
            remaining = job.remaining_seconds()
            self.progress.setFormat(f"epoch {epochs[-1]}/{job.epochs}" + (
                f", about {format_duration(remaining)} left" if remaining else ""))
        if job.poll_warnings():
            self.warnings.setText("\n".join(job.warnings))
            self.warnings.show()
        if code is None:
            return
        self._stopped()
        if code != 0:
            self.status.setText(f"Training failed (exit {code}):\n{job.log_tail(8)}")
            return
        self.progress.setValue(100)
        if job.init_weights and job.best_path.exists():
            self.status.setText("Training done. Comparing old and new weights on the held-out frames...")
            worker = CallWorker(lambda: compare_weights(job.init_weights, job.best_path, job.validation_samples()))
            worker.finished.connect(self._compared)
            self.compare_runner.start(worker)
        else:
            self.status.setText(f"Training done: {job.best_path}")
            self.use_button.setEnabled(job.best_path.exists())

    def _compared(self, result, error) -> None:
        self.compare_runner.release_if_done(self.sender())
        if error:
            self.status.setText(f"Training done; the comparison failed: {error}")
        else:
            for row, name in enumerate(("old", "new")):
                for column, (key, _, scale) in enumerate(COMPARED):
                    value = result[name].get(key, math.nan)
                    self.comparison.setItem(row, column, QtWidgets.QTableWidgetItem(
                        "-" if value is None or math.isnan(value) else f"{scale * value:.2f}"))
            self.status.setText(f"Training done: {self.job.best_path}")
        self.use_button.setEnabled(True)

    def _use_weights(self) -> None:
        self.useWeightsRequested.emit(str(self.job.best_path))
        self.accept()

    def reject(self) -> None:
        if not self.export_runner.busy:  # Esc and the title bar's close wait for the end of the export
            super().reject()

    def done(self, result: int) -> None:
        self.export_runner.stop()  # waits: the export reads the session's source
        self.cancel()
        self.compare_runner.stop()
        super().done(result)
