"""Tools > Fine-tune on corrections...: export the reviewed frames, train in a separate process
(app.core.finetune.FineTuneJob), plot loss and validation IoU live, compare old and new weights.

Start prepares the run in a worker thread (app.core.finetune.prepare_run: the base data checked, the
export, its progress shown, the run folder chosen: resumed or new); the dialog is window-modal only then,
as the export reads the project, and "Cancel export" stops it at its next frame, keeping nothing of that export.
The training process is then polled by a QTimer (metrics.jsonl, one record per epoch, plotted: the training loss
on the left axis, the validation IoU on the right one; and the warning lines of train.log, shown from when they
appear until the next start) while the main window is free for reviewing; the settings stay locked from Start
until the run ends (finished, failed or cancelled), as the run keeps those it started with. The comparison runs
in a worker thread, cancelled between frames (on close, and when Start begins another run: a comparison only ever
shows for the run it scored).
Closing the dialog while training asks before stopping the process (it can be resumed from its folder:
the dialog proposes that folder again, with the settings of its latest run); quitting the app stops it.
A training still running in the folder (one that outlived a killed window, an `irsam train` in a shell) stops
Start before it exports: the failure box names the run folder and the pid, and suggests waiting or another folder.
"""
from __future__ import annotations

import json
import math
import shlex
import threading
from datetime import datetime
from pathlib import Path
from typing import Callable

import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from app.core.finetune import (
    FineTuneJob,
    FineTuneSetupError,
    PreparedRun,
    RunPreparationCancelled,
    compare_weights,
    describe_cancelled,
    format_duration,
    prepare_run,
    recorded_run,
)
from app.widgets.workers import CancellableCallWorker, ProgressCallWorker, WorkerRunner
from model.data import counted

POLL_MS = 500
CONFIG_CHOICES = {"as the base weights": None, "tiny": "tiny", "paper": "paper", "official": "official"}
BASE_DATA_KEY = "finetune/base_data"
RUN_FOLDERS_KEY = "finetune/run_folders"  # JSON: project folder -> the fine-tune folder last used for it
MAX_RUN_FOLDERS = 50  # projects remembered, the most recently used kept
# (metric, header, scale): shown as irsam eval prints them
COMPARED = (("iou", "IoU %", 100), ("niou", "nIoU %", 100), ("pd", "Pd %", 100), ("fa", "Fa x1e-6", 1e6))
FAILURE_LINES = 6  # the failure box's height: a longer text scrolls
LOSS_COLOR, IOU_COLOR = (255, 150, 50), (80, 200, 255)
SEQUENCE_CLOSED = ("The sequence this dialog fine-tunes on was closed: open Tools > Fine-tune on corrections... "
                   "again to train on the one open now.")


def epoch_curve(color: tuple[int, int, int], symbol: str) -> pg.PlotDataItem:
    curve = pg.PlotDataItem(pen=pg.mkPen(color, width=2), symbol=symbol, symbolSize=6, symbolPen=color,
                            symbolBrush=color)
    curve.scatter.setPen(color)  # the legend draws its symbol from these, which its data sets only once it has some
    curve.scatter.setBrush(color)
    return curve


class EpochAxis(pg.AxisItem):
    """An x axis of whole epochs: no tick between two."""

    def tickSpacing(self, minVal, maxVal, size):
        return [(spacing, offset) for spacing, offset in super().tickSpacing(minVal, maxVal, size)
                if spacing >= 1] or [(1, 0)]


def time_left(seconds: float) -> str:
    """"under a minute left", "about 12 min left"."""
    duration = format_duration(seconds)
    return f"{duration} left" if duration == format_duration(0) else f"about {duration} left"


def default_run_folder(project_folder: Path) -> Path:
    return project_folder / "finetune" / datetime.now().strftime("%Y%m%d-%H%M%S")


def _remembered_run_folders(settings: QtCore.QSettings | None) -> dict[str, str]:
    try:
        folders = json.loads(settings.value(RUN_FOLDERS_KEY, "{}")) if settings is not None else {}
    except (TypeError, ValueError):
        return {}
    return folders if isinstance(folders, dict) else {}


def remember_run_folder(settings: QtCore.QSettings | None, project_folder: Path, folder: str) -> None:
    if settings is None or not folder:
        return
    folders = _remembered_run_folders(settings)
    folders.pop(str(project_folder), None)
    folders[str(project_folder)] = folder  # the most recent last
    settings.setValue(RUN_FOLDERS_KEY, json.dumps(dict(list(folders.items())[-MAX_RUN_FOLDERS:])))


def latest_run_folder(project_folder: Path) -> Path | None:
    """The fine-tune folder of PROJECT/finetune begun last (the exported data or a run in it), or None."""
    try:
        folders = [path for path in (project_folder / "finetune").iterdir()
                   if path.is_dir() and ((path / "data").is_dir() or any(path.glob("run*")))]
    except OSError:
        return None
    return max(folders, key=lambda path: (path.stat().st_mtime, path.name), default=None)


def proposed_run_folder(settings: QtCore.QSettings | None, project_folder: Path) -> Path:
    """The folder the dialog last used for this project (so that Start resumes a stopped run there), else the
    one begun last in the project, else a new one."""
    remembered = _remembered_run_folders(settings).get(str(project_folder))
    if isinstance(remembered, str) and remembered:
        return Path(remembered)
    return latest_run_folder(project_folder) or default_run_folder(project_folder)


class FineTuneDialog(QtWidgets.QDialog):
    """`export_refusal()` says why Start may not export now (a worker writes the project), or None.
    `sequence_closing()` is called before the window closes the dialog's sequence."""

    useWeightsRequested = QtCore.Signal(str)  # path of the new checkpoint

    def __init__(self, session, base_weights: str | None, parent=None, settings: QtCore.QSettings | None = None,
                 export_refusal: Callable[[], str | None] = lambda: None):
        super().__init__(parent)
        self.session = session  # None once the window closed it
        self.settings = settings  # remembers the "Also train on" folder between runs
        self.export_refusal = export_refusal
        self.job: FineTuneJob | None = None
        self.compared_job: FineTuneJob | None = None  # whose old-vs-new comparison runs; None once dropped
        self.compare_runner = WorkerRunner(self)
        self.export_runner = WorkerRunner(self)  # the export, and the run's preparation around it
        self.setWindowTitle("Fine-tune on corrections")
        self.project_folder = Path(session.project.folder).resolve()  # whose fine-tune folder is remembered
        self.folder = QtWidgets.QLineEdit(str(proposed_run_folder(settings, self.project_folder)))
        self.folder.setToolTip(
            "data/ (the reviewed frames, exported again at every Start) and run/ (checkpoints, metrics, train.log)\n"
            "go here. Start resumes the run there when it was stopped with the same settings and reviewed frames;\n"
            "otherwise a new run begins beside it (run-2, run-3, ...). The dialog proposes it again next time,\n"
            "with the settings of its latest run.")
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
        for button in (browse, browse_split):
            button.setAutoDefault(False)  # Enter in the dialog opened a folder chooser
        base_row = QtWidgets.QHBoxLayout()
        base_row.addWidget(self.base_data, 1)
        base_row.addWidget(browse)
        base_row.addWidget(browse_split)
        self.extra = QtWidgets.QLineEdit()
        self.extra.setPlaceholderText("more irsam train options, e.g. --crop 256 --batch-size 4")
        self.run_settings = QtWidgets.QWidget()  # locked while a run is prepared or trains, which keeps its own
        form = QtWidgets.QFormLayout(self.run_settings)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Folder", self.folder)
        form.addRow("Base weights", self.weights)
        form.addRow("Also train on", base_row)
        form.addRow("Epochs", self.epochs)
        form.addRow("Model config", self.config)
        form.addRow("Device", self.device)
        form.addRow("Options", self.extra)

        self.plot = pg.PlotWidget(background=(20, 20, 24), axisItems={"bottom": EpochAxis("bottom")})
        self.iou_view = self._plot_with_two_axes(self.plot.getPlotItem())
        self.loss_curve, self.iou_curve = epoch_curve(LOSS_COLOR, "o"), epoch_curve(IOU_COLOR, "s")
        self.plot.addItem(self.loss_curve)
        self.iou_view.addItem(self.iou_curve)
        self.legend = pg.LegendItem(colCount=2, labelTextColor=(220, 220, 220))
        self.plot.getPlotItem().layout.addItem(self.legend, 4, 1)  # under the epoch axis: never over a curve
        self.legend.addItem(self.loss_curve, "training loss (left axis)")
        self.legend.addItem(self.iou_curve, "validation IoU % (right axis)")
        self.progress = QtWidgets.QProgressBar()
        self.status = QtWidgets.QLabel("Exports the accepted / corrected / negative frames, then trains on them.")
        self.status.setWordWrap(True)
        self.warnings = QtWidgets.QLabel()  # e.g. "warning: training on the CPU: ..." (model/train.py)
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #e0a030;")
        self.warnings.hide()
        self.failure = QtWidgets.QPlainTextEdit()  # e.g. the end of train.log: scrolls, never stretches the dialog
        self.failure.setReadOnly(True)
        self.failure.setMaximumHeight(FAILURE_LINES * self.failure.fontMetrics().lineSpacing()
                                      + 2 * self.failure.frameWidth() + 8)
        self.failure.hide()
        self.comparison = QtWidgets.QTableWidget(2, len(COMPARED))
        self.comparison.setVerticalHeaderLabels(["old weights", "new weights"])
        self.comparison.setHorizontalHeaderLabels([label for _, label, _ in COMPARED])
        self.comparison.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.comparison.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
        self.comparison.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        self.comparison.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarAlwaysOff)
        self.comparison.setFixedHeight(self.comparison.horizontalHeader().sizeHint().height()
                                       + self.comparison.verticalHeader().length()
                                       + 2 * self.comparison.frameWidth())  # its two rows, no band below
        self.comparison.hide()  # until there is one: the plot keeps its room

        self.start_button = QtWidgets.QPushButton("Start")
        self.start_button.setDefault(True)  # Enter starts, as Export exports in the export dialog
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QtWidgets.QPushButton("Cancel training")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_export_button = QtWidgets.QPushButton("Cancel export")  # in its place while the run is prepared
        self.cancel_export_button.setAutoDefault(False)  # Enter never cancels an export
        self.cancel_export_button.clicked.connect(self.cancel_export)
        self.cancel_export_button.hide()
        self.preparation_cancelled = threading.Event()  # set by Cancel export: the worker stops at its next frame
        self.use_button = QtWidgets.QPushButton("Use new weights and re-detect unreviewed frames")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(self._use_weights)
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.cancel_export_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.use_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.run_settings)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.warnings)
        layout.addWidget(self.failure)
        layout.addWidget(self.comparison)
        layout.addLayout(buttons)
        self.resize(640, 620)
        restored = self._restore_run_settings()
        if restored:
            self.status.setText(f"{restored}\n{self.status.text()}")

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        # the process runs in its own session: it would outlive the app
        QtCore.QCoreApplication.instance().aboutToQuit.connect(self.cancel)

    @staticmethod
    def _plot_with_two_axes(plot: pg.PlotItem) -> pg.ViewBox:
        """Label `plot`'s axes (the loss on the left, the IoU on the right, in their curves' colours) and return
        the view of the right axis: its own y range, its x linked to the plot's, its geometry kept on the plot's
        view. The loss falls from any value, the IoU rises within 0..100: on one axis either curve flattened."""
        plot.setLabel("bottom", "epoch")
        plot.setLabel("left", "training loss", color=pg.mkColor(LOSS_COLOR).name())
        plot.setLabel("right", "validation IoU %", color=pg.mkColor(IOU_COLOR).name())
        plot.showGrid(x=True, y=True, alpha=0.3)
        for side, color in (("left", LOSS_COLOR), ("right", IOU_COLOR)):
            plot.getAxis(side).setTextPen(color)
            plot.getAxis(side).enableAutoSIPrefix(False)  # "IoU % (x0.001)" read as a scale of the values
        iou_view = pg.ViewBox(enableMouse=False)  # the mouse pans and zooms the plot's view: both curves along x
        plot.scene().addItem(iou_view)
        iou_view.setZValue(plot.zValue() + 1)  # where the curves meet, the IoU (the measure of success) shows
        plot.getAxis("right").linkToView(iou_view)
        iou_view.setXLink(plot)

        def follow_plot_view() -> None:
            iou_view.setGeometry(plot.vb.mapRectToScene(plot.vb.rect()))
            iou_view.linkedViewChanged(plot.vb, iou_view.XAxis)

        plot.vb.sigResized.connect(follow_plot_view)
        return iou_view

    def start(self) -> bool:
        """Prepare the run in a worker (the base data checked, the reviewed frames exported, the run folder
        chosen), the dialog window-modal meanwhile, then start training. False when it cannot start now: a
        run is being prepared or trains, or the reason shows in `status`."""
        if self.busy:
            return False
        if self.session is None:
            self.status.setText(SEQUENCE_CLOSED)
            return False
        refusal = self.export_refusal()
        if refusal:
            self.status.setText(refusal)
            return False
        try:
            extra_args = shlex.split(self.extra.text())
        except ValueError as e:  # an unclosed quote
            self.status.setText(f"Options: {e}")
            return False
        base = self.base_data.text().strip()
        if self.settings is not None:
            self.settings.setValue(BASE_DATA_KEY, base)
        self._remember_folder()
        for box in (self.warnings, self.failure):
            box.clear()
            box.hide()
        self._drop_comparison()
        options = dict(init_weights=self.weights.text().strip() or None, epochs=self.epochs.value(),
                       base_data=[Path(base).expanduser()] if base else None,
                       config=CONFIG_CHOICES[self.config.currentText()], device=self.device.currentText(),
                       extra_args=extra_args)
        folder = Path(self.folder.text().strip()).expanduser()
        session = self.session
        cancelled = self.preparation_cancelled = threading.Event()

        def prepare(progress) -> PreparedRun | RunPreparationCancelled:
            try:
                return prepare_run(folder, session.project, source=session.source,
                                   normalization=session.normalization, progress=progress, cancelled=cancelled,
                                   **options)
            except RunPreparationCancelled as cancellation:  # not a failure: its message says what is left
                return cancellation

        worker = ProgressCallWorker(prepare, (FineTuneSetupError,))  # names the step and what went wrong
        worker.progress.connect(self._export_progress)
        worker.finished.connect(self._prepared)
        self.start_button.setEnabled(False)
        self.run_settings.setEnabled(False)
        self.cancel_button.hide()
        self.cancel_export_button.setEnabled(True)
        self.cancel_export_button.show()
        self.status.setText(f"Checking {base}, then exporting the reviewed frames..." if base
                            else "Exporting the reviewed frames...")
        self.progress.setFormat("exporting %v / %m frames")
        self.progress.setRange(0, 0)
        self._block_main_window(True)
        self.export_runner.start(worker)
        return True

    def _export_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def cancel_export(self) -> None:
        """Stop the run's preparation at its next exported frame (or step): `_prepared` says what it left."""
        if not self.export_runner.busy or self.preparation_cancelled.is_set():
            return
        self.preparation_cancelled.set()
        self.cancel_export_button.setEnabled(False)
        self.status.setText("Cancelling the export...")

    def _prepared(self, prepared: PreparedRun | RunPreparationCancelled | None, error: str | None) -> None:
        worker = self.sender()
        if worker is None or worker is not self.export_runner.worker:  # stopped: the dialog or sequence was closed
            return
        self.export_runner.release_if_done(worker)
        self._setup_ended()
        if error:
            self._show_failure("Training not started:", error)
            self._not_started()
            return
        if isinstance(prepared, PreparedRun) and prepared.job is not None and self.preparation_cancelled.is_set():
            prepared = RunPreparationCancelled.after_export(prepared.job.export_dir)  # after its last step
        if isinstance(prepared, RunPreparationCancelled):
            self.status.setText(f"{prepared} Start exports the reviewed frames again.")
            self._not_started()
            return
        if prepared.job is None:
            self.status.setText("No reviewed frames to train on: accept or correct some frames first.")
            self._not_started()
            return
        previous, self.job = self.job, prepared.job
        try:
            self.job.start()
        except (OSError, FineTuneSetupError) as e:  # FineTuneSetupError: a training started there since (its pid)
            self._show_failure("Could not start training:", str(e))
            self.job = previous
            self._not_started()
            return
        self._plot_records([])
        self.comparison.clearContents()
        self.comparison.hide()
        self.use_button.setEnabled(False)
        base = self.job.base_data[0] if self.job.base_data else None
        also = f" plus {self.job.base_frames} of {base}" if base else ""
        note = f"{prepared.note}\n" if prepared.note else ""
        trained_on = counted(len(self.job.holdout.train), "frame", "frames")
        self.status.setText(f"{note}Training on {trained_on}{also}, validating on {len(self.job.holdout.val)} "
                            f"(held out by {self.job.holdout.by}); log: {self.job.log_path}")
        self._show_warnings()
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.timer.start()

    def _setup_ended(self) -> None:
        """The run's preparation ended: training starts now, or `_not_started` follows."""
        self.progress.setFormat("%p%")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.start_button.setEnabled(True)
        self.cancel_export_button.hide()
        self.cancel_button.show()
        self._block_main_window(False)

    def _not_started(self) -> None:
        """A Start that came to nothing (refused, failed or cancelled): the settings are free again, and the run
        before it (finished, its best.pt there) can still be used."""
        self.run_settings.setEnabled(True)
        self.use_button.setEnabled(self._new_weights_ready())

    def _block_main_window(self, block: bool) -> None:
        """Window-modal while the export reads the project (the main window takes no edits), else modeless.
        Qt applies a modality change when a window is shown, so a shown dialog is hidden and shown in place."""
        modality = QtCore.Qt.WindowModal if block else QtCore.Qt.NonModal
        if self.windowModality() == modality:
            return
        if not self.isVisible():
            self.setWindowModality(modality)
            return
        position = self.pos()
        self.hide()
        self.setWindowModality(modality)
        self.move(position)  # else shown again centred on the window
        self.show()

    def _show_failure(self, summary: str, text: str) -> None:
        self.status.setText(summary)
        self.failure.setPlainText(text)
        self.failure.show()

    @property
    def busy(self) -> bool:
        """Exporting the corrections or training."""
        return self.export_runner.busy or (self.job is not None and self.job.running)

    def sequence_closing(self) -> None:
        """The window closes this dialog's sequence: a run being prepared (its export reads the sequence) is
        cancelled and waited for, and Start is refused from now on; training goes on."""
        if self.export_runner.busy:
            self.preparation_cancelled.set()
            self.export_runner.stop()
            self._setup_ended()
            self.run_settings.setEnabled(True)
        self.session = None
        if self.job is None or not self.job.running:
            self.status.setText(SEQUENCE_CLOSED)

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

    def _remember_folder(self) -> None:
        remember_run_folder(self.settings, self.project_folder, self.folder.text().strip())

    def _restore_run_settings(self) -> str:
        """Show the settings the latest run in the proposed folder was started with, so that Start resumes it
        (or begins a new run like it beside a finished one). Its base weights only when Start can resume it:
        a new run starts from the weights the detector uses now. Its model config goes with its base weights (a
        config made for other weights would not fit them): restored when they are, or when they are those shown.
        Returns what was restored, for the status."""
        run = recorded_run(Path(self.folder.text().strip()).expanduser())
        if run is None:
            return ""
        settings, epochs = run.settings, int(run.settings["epochs"])
        run_weights = settings.get("init_weights") or ""
        same_weights = run_weights == self.weights.text().strip()
        if not run.finished:
            self.weights.setText(run_weights)
        base_data = settings.get("base_data") or []
        self.base_data.setText(str(base_data[0]) if base_data else "")
        self.epochs.setValue(epochs)
        if not run.finished or same_weights:
            config_labels = {name: label for label, name in CONFIG_CHOICES.items()}
            self.config.setCurrentText(config_labels.get(settings.get("config"), self.config.currentText()))
        self.device.setCurrentText(str(settings.get("device", self.device.currentText())))
        self.extra.setText(shlex.join(str(a) for a in settings.get("extra_args", [])))
        restored = f"Settings of the run in {run.out_dir} restored"
        if run.finished and not same_weights:
            return (f"{restored}; it did all its {epochs} epochs, so Start begins a new run beside it. Its base "
                    "weights and model config are not: the new run starts from the weights the detector uses now.")
        if run.finished:
            return f"{restored}; it did all its {epochs} epochs, so Start begins a new run beside it."
        if run.epochs_done:
            return (f"{restored}: Start resumes it after epoch {run.epochs_done} of {epochs} while the reviewed "
                    "frames stay the same.")
        return f"{restored}."

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.job.poll()  # the epochs done, for the message
            text = describe_cancelled(self.job)
            if self._trained_every_epoch():  # cancelled while the process was finishing: its best.pt is whole
                text += f" \"{self.use_button.text()}\" takes its best.pt."
                self.use_button.setEnabled(True)
            self.status.setText(text)
        self._stopped()

    def _trained_every_epoch(self) -> bool:
        """Whether the job's last epoch ended (its record is written after best.pt, which is written atomically):
        its best.pt is the run's, ready to use."""
        job = self.job
        return bool(job.records) and int(job.records[-1]["epoch"]) >= job.epochs and job.best_path.is_file()

    def _new_weights_ready(self) -> bool:
        """Whether the dialog's run ended, having trained its epochs, and left its best.pt, while no new run is
        being prepared: what "Use new weights" takes."""
        job = self.job
        return (job is not None and not job.running and not self.export_runner.busy and self._trained_every_epoch())

    def _drop_comparison(self) -> None:
        """A new run is being started: the comparison of the last one is cancelled, its result ignored."""
        self.compare_runner.cancel()
        self.compared_job = None
        self.use_button.setEnabled(False)

    def _show_warnings(self) -> None:
        self.warnings.setText("\n".join(self.job.warnings))
        self.warnings.setVisible(bool(self.job.warnings))

    def _stopped(self) -> None:
        if self.job is not None and self.job.records:  # no time left to count down
            self.progress.setFormat(f"epoch {self.job.records[-1]['epoch']}/{self.job.epochs}")
        self.timer.stop()
        self.cancel_button.setEnabled(False)
        self.start_button.setEnabled(True)
        self.run_settings.setEnabled(True)

    def _poll(self) -> None:
        job = self.job
        code = job.returncode  # read first: once it is set, the files polled below are complete
        if job.poll():
            self._plot_records(job.records)
            self.progress.setValue(round(100 * job.progress()))
            remaining = job.remaining_seconds()
            left = f", {time_left(remaining)}" if remaining else ""
            self.progress.setFormat(f"epoch {job.records[-1]['epoch']}/{job.epochs}{left}")
        if job.poll_warnings():
            self._show_warnings()
        if code is None:
            return
        self._stopped()
        if code != 0:
            self._show_failure(f"Training failed (exit {code}); the end of {job.log_path}:",
                               job.log_tail(FAILURE_LINES))
            return
        done = int(job.records[-1]["epoch"]) if job.records else 0
        if done < job.epochs:  # ended early with success: a --max-minutes in its options
            self.status.setText(f"Training stopped after epoch {done} of {job.epochs} (its time limit): Start resumes "
                                "it.")
            return
        self.progress.setValue(100)
        if job.init_weights and job.best_path.exists():
            self.status.setText("Training done. Comparing old and new weights on the held-out frames...")
            cancelled = threading.Event()
            worker = CancellableCallWorker(lambda: compare_weights(job.init_weights, job.best_path,
                                                                   job.validation_samples(), cancelled=cancelled),
                                           cancelled)
            worker.finished.connect(self._compared)
            self.compared_job = job
            self.compare_runner.start(worker)
        else:
            self.status.setText(f"Training done: {job.best_path}")
            self.use_button.setEnabled(self._new_weights_ready())

    def _plot_records(self, records: list[dict]) -> None:
        """The loss of every epoch; the IoU of the epochs validated (`--val-every`), joined by one line."""
        self.loss_curve.setData([r["epoch"] for r in records], [r.get("loss", math.nan) for r in records])
        validated = [r for r in records if "val_iou" in r]
        self.iou_curve.setData([r["epoch"] for r in validated], [100 * r["val_iou"] for r in validated])

    def _compared(self, result, error) -> None:
        worker = self.sender()
        if worker is None or worker is not self.compare_runner.worker:  # cancelled: the dialog was closed
            return
        self.compare_runner.release_if_done(worker)
        if self.compared_job is not self.job or (result is None and error is None):  # dropped by a new Start
            return
        if error:
            self._show_failure(f"Training done: {self.job.best_path}; the comparison failed:", error)
        else:
            for row, name in enumerate(("old", "new")):
                for column, (key, _, scale) in enumerate(COMPARED):
                    value = result[name].get(key, math.nan)
                    self.comparison.setItem(row, column, QtWidgets.QTableWidgetItem(
                        "-" if value is None or math.isnan(value) else f"{scale * value:.2f}"))
            self.comparison.show()
            self.status.setText(f"Training done: {self.job.best_path}")
        self.use_button.setEnabled(self._new_weights_ready())

    def _use_weights(self) -> None:
        if not self._new_weights_ready():
            return
        self.useWeightsRequested.emit(str(self.job.best_path))
        self.accept()

    def reject(self) -> None:
        """Esc and the title bar's close: refused while the export runs, asked while training runs."""
        if self.export_runner.busy:
            return
        if self.job is not None and self.job.running:
            answer = QtWidgets.QMessageBox.question(
                self, "Stop training?",
                "Closing this dialog stops the training. A run stopped after an epoch can be resumed: Start "
                "with the same folder, settings and reviewed frames.\n\nStop training and close?",
                QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No, QtWidgets.QMessageBox.No)
            if answer != QtWidgets.QMessageBox.Yes:
                return
        super().reject()

    def done(self, result: int) -> None:
        self._remember_folder()  # proposed again when the dialog opens next (a stopped run resumes there)
        self.preparation_cancelled.set()  # an export stops at its next frame, keeping nothing
        self.export_runner.stop()  # waits: the export reads the session's source
        self.cancel()
        self.compare_runner.stop()  # cancelled before its next frame
        super().done(result)
