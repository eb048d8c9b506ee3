"""Detection dock: which detector and device, what to run it on, and the run's progress."""
from __future__ import annotations

import math
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from app.paths import DEFAULT_WEIGHTS
from app.widgets.workers import CLASSICAL, DetectorChoice, classical_name
from model.classical import DEFAULT_TARGET_SIZE, DEFAULT_THRESHOLD_K, MAX_TARGET_SIZE, MAX_THRESHOLD_K, window_for

PICK_CHECKPOINT = "IRSAM: other checkpoint..."
# the progress bar's text when it has no run to show
NO_RUN_YET = "no run yet"
ENDED_BEFORE_A_FRAME = "ended before its first frame"


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def describe_metadata(metadata: dict) -> str:
    """What an analyst asks of a checkpoint: what it was trained on, how it scored on validation,
    its decision threshold, when it was saved; other entries one short line each."""
    lines, summarised = [], {"normalization", "code_version"}  # the app sets its own window; build details
    training = metadata.get("training")
    if isinstance(training, dict):
        data, split = Path(str(training.get("data", "?"))).name, Path(str(training.get("split_train", ""))).parent.name
        recipe = training.get("recipe") if isinstance(training.get("recipe"), dict) else {}
        line = f"trained on {data}" + (f" ({split})" if split else "")
        if "epoch" in training:
            line += f", epoch {training['epoch']}" + (f" of {recipe['epochs']}" if recipe.get("epochs") else "")
        lines.append(line)
        summarised.add("training")
    metrics = metadata.get("metrics")
    val = (metrics.get("val_at_threshold") or metrics.get("val")) if isinstance(metrics, dict) else None
    try:
        lines.append(f"validation ({int(val['n_images'])} images, before refinement): IoU {100 * val['iou']:.1f}, nIoU {100 * val['niou']:.1f}, "
                     f"Pd {100 * val['pd']:.1f}, Fa {1e6 * val['fa']:.1f}e-6")
        summarised.add("metrics")
    except (TypeError, KeyError, ValueError):
        pass
    if isinstance(metadata.get("decision_threshold"), (int, float)):
        lines.append(f"decision threshold {metadata['decision_threshold']:+.2f} (logit)")
        summarised.add("decision_threshold")
    if metadata.get("saved_at"):
        lines.append(f"saved {str(metadata['saved_at']).replace('T', ' ').rstrip('Z')} UTC")
        summarised.add("saved_at")
    for key, value in metadata.items():
        if key not in summarised:
            text = ", ".join(f"{k}={v}" for k, v in list(value.items())[:6]) if isinstance(value, dict) else str(value)
            lines.append(f"{key}: {text[:80] + '...' if len(text) > 80 else text}")
    return "\n".join(lines[:10])


class SteppedSpinBox(QtWidgets.QSpinBox):
    """A spin box that tells a step (its arrows, the arrow keys, the wheel) from typing, which passes through values
    on the way (typing 300 passes through 3 and 30)."""

    stepped = QtCore.Signal()

    def stepBy(self, steps: int) -> None:
        super().stepBy(steps)
        self.stepped.emit()


class DetectionPanel(QtWidgets.QWidget):
    runRequested = QtCore.Signal(str)  # "frame", "range" or "all"
    cancelRequested = QtCore.Signal()
    choiceChanged = QtCore.Signal(object)  # DetectorChoice

    def __init__(self, parent=None):
        super().__init__(parent)
        self.detector_combo = QtWidgets.QComboBox()
        self.detector_combo.setToolTip("Detector: IRSAM weights, or a classical method")
        default = DetectorChoice("irsam", str(DEFAULT_WEIGHTS))
        self.detector_combo.addItem("IRSAM (default weights)", default)
        if not DEFAULT_WEIGHTS.is_file():
            item = self.detector_combo.model().item(0)
            item.setEnabled(False)
            item.setToolTip(f"not installed: {DEFAULT_WEIGHTS}")
        for label, method in CLASSICAL:
            self.detector_combo.addItem(label, DetectorChoice(method))
        self.detector_combo.addItem(PICK_CHECKPOINT, None)
        self.detector_combo.setCurrentIndex(0 if DEFAULT_WEIGHTS.is_file() else 1)
        # the last detector chosen (not "other checkpoint..."): what a cancelled file dialog goes back to
        self._chosen_index = self.detector_combo.currentIndex()
        self.detector_combo.currentIndexChanged.connect(self._remember_chosen)
        self.detector_combo.activated.connect(self._detector_activated)

        self.device_combo = QtWidgets.QComboBox()
        self.device_combo.addItems(["auto", "cuda", "cpu"])
        self.device_combo.setToolTip("The device IRSAM runs on. auto: the GPU when CUDA works, else the CPU")
        self.device_combo.currentTextChanged.connect(lambda _: self.choiceChanged.emit(self.choice()))

        self.info = QtWidgets.QLabel()
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(QtCore.Qt.TextSelectableByMouse)
        self.range_from = QtWidgets.QSpinBox()
        self.range_to = QtWidgets.QSpinBox()
        for box in (self.range_from, self.range_to):
            box.setRange(1, 1)
        self.run_frame = QtWidgets.QPushButton("This frame")
        self.run_range = QtWidgets.QPushButton("Range")
        self.run_all = QtWidgets.QPushButton("Whole sequence")
        self.cancel = QtWidgets.QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.run_frame.clicked.connect(lambda: self.runRequested.emit("frame"))
        self.run_range.clicked.connect(lambda: self.runRequested.emit("range"))
        self.run_all.clicked.connect(lambda: self.runRequested.emit("all"))
        self.cancel.clicked.connect(self.cancelRequested)
        self.tta_combo = QtWidgets.QComboBox()
        for label, mode in (("off", "none"), ("horizontal flip (2x time)", "hflip"), ("all flips (4x time)", "flips"),
                            ("1.25x magnified pass (2.6x time)", "scale"),
                            ("magnified + all flips (10x time)", "scale+flips")):
            self.tta_combo.addItem(label, mode)
        self.tta_combo.setToolTip(
            "IRSAM only: average the logits of flipped frames and of the frame magnified 1.25x (small targets\n"
            "then cover more of the decoder's grid), at the time shown. With the shipped weights they move\n"
            "NUAA-SIRST validation IoU by under a point and lower test IoU (docs/model_card.md has the table);\n"
            "try them on frames unlike the training data.")
        self.tta_combo.currentIndexChanged.connect(lambda _: self.choiceChanged.emit(self.choice()))
        self.refine_outline = QtWidgets.QCheckBox("Fit outlines to local contrast")
        self.refine_outline.setChecked(True)
        self.refine_outline.setToolTip(
            "IRSAM only: keep, in each detected target, the pixels brighter than its local background by a\n"
            "quarter of its contrast (the outline annotators draw), and grow a confident target one pixel into\n"
            "neighbours above 0.4 of it (the network draws targets too small). Never adds a target. On the\n"
            "NUAA-SIRST test split it raised the shipped weights' IoU from 66.0 to 67.7 and nIoU from 68.8 to 72.7,\n"
            "with 102 of 109 targets found either way (docs/model_card.md); off shows the network's own mask.")
        self.refine_outline.toggled.connect(lambda _: self.choiceChanged.emit(self.choice()))
        self.min_area = SteppedSpinBox()
        self.min_area.setRange(1, 1_000_000)
        self.max_area = SteppedSpinBox()
        self.max_area.setRange(0, 1_000_000)
        self.max_area.setSpecialValueText("no limit")  # 0
        for box in (self.min_area, self.max_area):
            box.setSuffix(" px")
            box.setToolTip(
                "Any detector: keep only detected targets (8-connected components) of this many pixels, the\n"
                "size you expect yours to be; others are dropped (their probability stays in the heatmap).\n"
                "On the real clip IR_DRONE_156, at most 200 px removes a cloud top, one of its two false alarms\n"
                "a frame, and keeps every drone. NUAA-SIRST has targets up to 210 px (model/size_gate.py).")
            box.valueChanged.connect(lambda _: self.choiceChanged.emit(self.choice()))
            # an inverted range (300 px to 200 px) is made whole when the box is left: the other bound follows the
            # one just set (not at each keystroke: typing 300 passes through 3 and 30)
            box.editingFinished.connect(lambda edited=box: self._order_area_range(edited))
            box.stepped.connect(lambda edited=box: self._order_area_range(edited))  # arrows, wheel: at once
        self.target_size = QtWidgets.QSpinBox()
        self.target_size.setRange(1, MAX_TARGET_SIZE)
        self.target_size.setValue(DEFAULT_TARGET_SIZE)
        self.target_size.setSuffix(" px")
        self.target_size.setKeyboardTracking(False)  # typed values count when entered: 16 passes through 1
        default_window = window_for(DEFAULT_TARGET_SIZE)
        self.target_size.setToolTip(
            "Classical methods only: the longer side, in pixels, of the largest target to find. Top-Hat finds\n"
            "no target larger than its structuring element (the target survives the opening) and MPCM none\n"
            "larger than its largest cell: both become this size + 2, rounded up to odd, and the area filter\n"
            "admits targets of that square. PSTNN has no such window (its 40 px patches model the background):\n"
            f"only its area filter follows. The default, {DEFAULT_TARGET_SIZE} px, keeps the windows tuned on "
            f"NUAA-SIRST (Top-Hat\n{default_window} px, MPCM 3 to {default_window} px). Larger windows also pass "
            "more background clutter (ground, cloud edges).")
        self.target_size.valueChanged.connect(lambda _: self._describe_choice())
        self.target_size.valueChanged.connect(lambda _: self.choiceChanged.emit(self.choice()))
        self.threshold_k = QtWidgets.QDoubleSpinBox()
        self.threshold_k.setRange(0.5, MAX_THRESHOLD_K)
        self.threshold_k.setDecimals(1)
        self.threshold_k.setSingleStep(0.5)
        self.threshold_k.setSuffix(" std above mean")
        self.threshold_k.setValue(DEFAULT_THRESHOLD_K["tophat"])
        self.threshold_k.setKeyboardTracking(False)
        defaults = ", ".join(f"{name} {k:g}" for name, k in DEFAULT_THRESHOLD_K.items())
        self.threshold_k.setToolTip(
            "Classical methods only: the sensitivity. A pixel is detected where the method's response exceeds\n"
            "its mean over the frame by this many standard deviations. Lower finds dimmer targets, and more\n"
            f"clutter; higher, fewer of both. The defaults ({defaults}) were tuned on NUAA-SIRST; on\n"
            "cluttered frames (clouds) the clutter raises the standard deviation until the threshold passes\n"
            "over the targets: on the first 60 frames of the real clip IR_DRONE_146 Top-Hat finds no drone at\n"
            "12, 92.5% of them at 9 (1.5 false alarms a frame) and all at 8 (5 a frame).\n"
            "Picking another method shows its default, unless you set a value of your own.")
        self._threshold_set = False  # the analyst set the box (the panel's own changes block its signals)
        self.threshold_k.valueChanged.connect(lambda _: setattr(self, "_threshold_set", True))
        self.threshold_k.valueChanged.connect(lambda _: self._describe_choice())
        self.threshold_k.valueChanged.connect(lambda _: self.choiceChanged.emit(self.choice()))
        self.keep_probabilities = QtWidgets.QCheckBox("Keep probabilities (heatmap)")
        self.keep_probabilities.setChecked(True)
        self.keep_probabilities.setToolTip(
            "Save each frame's logits in the project (logits/<stem>.npy, float32: 1.3 MB a frame at 640x512),\n"
            "so the probability heatmap shows for these frames, now and when the project is reopened.")
        self.progress = QtWidgets.QProgressBar()
        self.progress.setToolTip("Frames done in the detection run started in this window")
        self.rate = QtWidgets.QLabel(" ")
        self._pace = ""  # the last pace the run reported ("9.2 frames/s")

        # the detector and the run buttons first: on a laptop screen the dock scrolls, and they must not. The
        # device shares the detector's row ("IRSAM on cuda"), and rows are 4 px apart, not 6: at 1500x950 the
        # right column then shows this panel with a checkpoint's description, the queue and the Overlays whole
        top = QtWidgets.QHBoxLayout()
        top.addWidget(QtWidgets.QLabel("Detector"))
        top.addWidget(self.detector_combo, 1)
        top.addWidget(QtWidgets.QLabel("on"))
        top.addWidget(self.device_combo)
        buttons = QtWidgets.QHBoxLayout()
        for b in (self.run_frame, self.run_range, self.run_all):
            buttons.addWidget(b)
        progress_row = QtWidgets.QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel)
        form = QtWidgets.QFormLayout()
        form.setVerticalSpacing(4)
        range_row = QtWidgets.QHBoxLayout()
        range_row.addWidget(self.range_from)
        range_row.addWidget(QtWidgets.QLabel("to"))
        range_row.addWidget(self.range_to)
        form.addRow("Range: frames", range_row)
        form.addRow("Test-time augm.", self.tta_combo)
        form.addRow("", self.refine_outline)
        form.addRow("Largest target", self.target_size)
        form.addRow("Threshold", self.threshold_k)
        area_row = QtWidgets.QHBoxLayout()
        area_row.addWidget(self.min_area)
        area_row.addWidget(QtWidgets.QLabel("to"))
        area_row.addWidget(self.max_area)
        form.addRow("Target area", area_row)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(buttons)
        layout.addLayout(progress_row)
        layout.addWidget(self.rate)
        layout.addLayout(form)
        self._options_form = form
        layout.addWidget(self.info)
        layout.addWidget(self.keep_probabilities)
        layout.addStretch(1)
        self._running = False
        self.detector_combo.currentIndexChanged.connect(lambda _: self._follow_default_threshold())
        self.detector_combo.currentIndexChanged.connect(lambda _: self._enable_irsam_options())
        self._enable_irsam_options()
        self._describe_choice()
        self._show_no_progress(NO_RUN_YET)

    def choice(self) -> DetectorChoice:
        picked: DetectorChoice = self.detector_combo.currentData()
        irsam = picked.method == "irsam"
        tta = self.tta_combo.currentData() if irsam else "none"
        refine = "contrast" if self.refine_outline.isChecked() or not irsam else "off"
        low, high = self.min_area.value(), self.max_area.value()
        target_size = DEFAULT_TARGET_SIZE if irsam else self.target_size.value()
        k = self.threshold_k.value()
        threshold_k = None if irsam or k == DEFAULT_THRESHOLD_K[picked.method] else k
        return DetectorChoice(picked.method, picked.weights, self.device_combo.currentText(), tta, refine,
                              low, max(high, low) if high else None, target_size, threshold_k)

    def _order_area_range(self, edited: QtWidgets.QSpinBox) -> None:
        low, high = self.min_area.value(), self.max_area.value()
        if high and low > high:
            if edited is self.min_area:
                self.max_area.setValue(low)
            else:
                self.min_area.setValue(high)

    def add_checkpoint(self, path: str | Path) -> None:
        """Select an IRSAM checkpoint file (what the file dialog does); it is loaded when first used."""
        choice = DetectorChoice("irsam", str(path))
        items = [self.detector_combo.itemData(i) for i in range(self.detector_combo.count())]
        index = items.index(choice) if choice in items else -1
        if index < 0:
            index = self.detector_combo.count() - 1  # before "other checkpoint..."
            self.detector_combo.insertItem(index, f"IRSAM ({choice.weights_name})", choice)
            self.detector_combo.setItemData(index, str(Path(path).resolve()), QtCore.Qt.ToolTipRole)
        self.detector_combo.setCurrentIndex(index)
        self._describe_choice()
        self.choiceChanged.emit(self.choice())

    def set_frame_count(self, count: int) -> None:
        """A new sequence: the whole of it as the range, and no progress (an earlier sequence's is cleared)."""
        for box in (self.range_from, self.range_to):
            box.setRange(1, max(count, 1))
        self.range_from.setValue(1)
        self.range_to.setValue(max(count, 1))
        self._show_no_progress(NO_RUN_YET)
        self.rate.setText("")

    def frame_range(self) -> tuple[int, int]:
        """0-based inclusive range from the two 1-based boxes."""
        a, b = self.range_from.value() - 1, self.range_to.value() - 1
        return min(a, b), max(a, b)

    def set_running(self, running: bool, cancelled: bool = False) -> None:
        """A run starts, or ends (`cancelled` when the analyst cancelled it)."""
        was_running, self._running = self._running, running
        for b in (self.run_frame, self.run_range, self.run_all, self.detector_combo, self.device_combo,
                  self.keep_probabilities, self.min_area, self.max_area, self.target_size, self.threshold_k):
            b.setEnabled(not running)
        self._enable_irsam_options()
        self.cancel.setEnabled(running)
        if running:
            self.progress.setEnabled(True)
            self.progress.setRange(0, 0)  # busy until the first frame reports: loading weights takes seconds
            self.progress.setFormat("%v / %m frames")
            self.rate.setText("starting...")
        elif was_running:
            self._show_run_end(cancelled)

    def _show_run_end(self, cancelled: bool) -> None:
        """No endless busy bar and no "starting..." when the run ended before any frame reported; otherwise the
        run's pace without its ETA, which at the end reads 0:00, or a time never reached when the run stopped early."""
        if self.progress.maximum() == 0:
            self._show_no_progress(ENDED_BEFORE_A_FRAME)
            self.rate.setText("cancelled; no frame was detected" if cancelled else "")
        elif cancelled:
            self.rate.setText("cancelled; results so far are kept")
        else:
            finished = self.progress.value() == self.progress.maximum()
            self.rate.setText(f"done, {self._pace}" if finished else self._pace)

    def _show_no_progress(self, text: str) -> None:
        """An empty bar, greyed, that says why it is empty: a bar without text reads as a text field."""
        self.progress.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat(text)

    def _enable_irsam_options(self) -> None:
        """Device, augmentation and refinement apply to IRSAM alone (the classical methods run in numpy on the
        CPU): greyed out for a classical method. The largest target and the threshold apply to the classical methods
        alone: shown for them only."""
        picked = self.detector_combo.currentData()
        irsam = picked is not None and picked.method == "irsam"
        for widget in (self.device_combo, self.tta_combo, self.refine_outline):
            widget.setEnabled(irsam and not self._running)
        self._options_form.setRowVisible(self.target_size, picked is not None and not irsam)
        self._options_form.setRowVisible(self.threshold_k, picked is not None and not irsam)

    def _follow_default_threshold(self) -> None:
        """Another classical method picked: the threshold box shows its default k, unless the analyst set a value
        of their own, which is kept (even one equal to a method's default)."""
        picked = self.detector_combo.currentData()
        if picked is None or picked.method == "irsam" or self._threshold_set:
            return
        with QtCore.QSignalBlocker(self.threshold_k):  # the method's change itself tells of the new choice
            self.threshold_k.setValue(DEFAULT_THRESHOLD_K[picked.method])

    def set_progress(self, done: int, total: int, fps: float) -> None:
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        eta = (total - done) / fps if fps > 0 else float("inf")
        self._pace = f"{fps:.1f} frames/s" if fps >= 1 else f"{1 / fps:.1f} s a frame" if fps > 0 else "-"
        self.rate.setText(f"{self._pace}, ETA {format_eta(eta)}")

    def show_info(self, text: str) -> None:
        self.info.setStyleSheet("")
        self.info.setText(text)

    def show_error(self, text: str) -> None:
        self.info.setStyleSheet("color: #e05050;")
        self.info.setText(text)

    def _describe_choice(self) -> None:
        choice = self.choice()
        if choice.method == "irsam":
            self.show_info(f"IRSAM weights: {choice.weights}\n(loaded on first run)")
        else:
            self.show_info(f"{classical_name(choice.method)}: classical method, runs on the CPU; suits targets up "
                           f"to {choice.target_size} px across (Largest target); detects above mean + "
                           f"{self.threshold_k.value():g} std (Threshold); no WPMD/GAD features.")

    def _remember_chosen(self, index: int) -> None:
        if index >= 0 and self.detector_combo.itemData(index) is not None:
            self._chosen_index = index

    def _detector_activated(self, index: int) -> None:
        if self.detector_combo.itemData(index) is None:
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                self, "IRSAM checkpoint", str(Path.home()), "Checkpoints (*.pt *.pth *.ckpt);;All files (*)"
            )
            if not path:  # cancelled: the detector chosen before stays, as its description and the window have it
                self.detector_combo.setCurrentIndex(self._chosen_index)
                return
            self.add_checkpoint(path)
            return
        self._describe_choice()
        self.choiceChanged.emit(self.choice())
