"""Detection > Detector input window...: the fixed window or the percentiles that map a sequence's raw
values to the detectors' 8-bit input (app.core.normalization). Dragging the histogram only changes the
display; this changes what the detectors see, and the project keeps it."""
from __future__ import annotations

from typing import Callable

import numpy as np
from PySide6 import QtWidgets

from app.core.normalization import DEFAULT_PERCENTILES, Normalization, NormalizationRequest


def raw_range(dtype) -> tuple[float, float]:
    """The values a frame of `dtype` can hold (float frames: a wide range)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return -1e9, 1e9


class NormalizationDialog(QtWidgets.QDialog):
    """`request()` is what was chosen; `accept()` refuses an impossible one and says why.

    current: the sequence's normalisation now; displayed_levels: gives the histogram's levels (offered as
    a fixed window; the display may change while the dialog is open); predicted_frames: frames with a
    proposal, which keep it until detection runs again; shown_frame: the raw frame on screen, whose values a
    fixed window must reach (one beside all of them would give the detectors a flat image).
    """

    def __init__(self, current: Normalization, dtype, displayed_levels: Callable[[], tuple[float, float]],
                 predicted_frames: int = 0, parent=None, shown_frame: np.ndarray | None = None):
        super().__init__(parent)
        self.setWindowTitle("Detector input window")
        self.displayed_levels = displayed_levels
        self.shown_frame = shown_frame
        low_limit, high_limit = raw_range(dtype)

        self.percentiles = QtWidgets.QRadioButton("Percentiles of up to 32 frames spread over the sequence")
        self.fixed = QtWidgets.QRadioButton("Fixed window (raw values)")
        self.p_low, self.p_high = (self._spin(0.0, 100.0, 3) for _ in range(2))
        decimals = 1 if np.issubdtype(np.dtype(dtype), np.integer) else 4  # float frames: temperatures, say
        self.low, self.high = (self._spin(low_limit, high_limit, decimals) for _ in range(2))
        for spin in (self.low, self.high):
            spin.setToolTip(f"A raw value of this sequence's sample type, {low_limit:g} to {high_limit:g}")
        if current.mode == "percentile":
            self.percentiles.setChecked(True)
            self.p_low.setValue(current.p_low)
            self.p_high.setValue(current.p_high)
        else:
            self.fixed.setChecked(True)
            self.p_low.setValue(DEFAULT_PERCENTILES[0])
            self.p_high.setValue(DEFAULT_PERCENTILES[1])
        self.low.setValue(current.low)
        self.high.setValue(current.high)
        use_displayed = QtWidgets.QPushButton("Use the displayed levels")
        use_displayed.setToolTip("The levels the frame is displayed with now (the histogram's)")
        use_displayed.clicked.connect(self.use_displayed_levels)
        self.repair = QtWidgets.QCheckBox()
        self.repair.setChecked(current.bad_pixel_repair)
        self.raw = np.dtype(dtype) != np.uint8
        self.repair.setVisible(self.raw)  # an 8-bit sequence's are not searched
        self.repair.setToolTip(
            "Pixels stuck far from their neighbours in nearly every sampled frame are replaced by the median of\n"
            "their neighbours before detection (the Bad pixels overlay shows them). In a static scene a one-pixel\n"
            "detail of the scene can pass for one: untick to give the detectors every pixel as recorded.")

        self.error = QtWidgets.QLabel()
        self.error.setStyleSheet("color: #c03030;")
        self.error.setWordWrap(True)
        self._proposals_note = ""
        if predicted_frames:
            detected = ("The frame detected so far keeps its proposal" if predicted_frames == 1 else
                        f"The {predicted_frames} frames detected so far keep their proposals")
            self._proposals_note = (f" {detected} until detection runs again; accepted and corrected frames keep "
                                   "their masks.")
        self.note = QtWidgets.QLabel()
        self.note.setWordWrap(True)
        self.show_current(current)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        grid = QtWidgets.QGridLayout()
        grid.addWidget(self.percentiles, 0, 0, 1, 4)
        grid.addWidget(QtWidgets.QLabel("low %"), 1, 0)
        grid.addWidget(self.p_low, 1, 1)
        grid.addWidget(QtWidgets.QLabel("high %"), 1, 2)
        grid.addWidget(self.p_high, 1, 3)
        grid.addWidget(self.fixed, 2, 0, 1, 4)
        grid.addWidget(QtWidgets.QLabel("low"), 3, 0)
        grid.addWidget(self.low, 3, 1)
        grid.addWidget(QtWidgets.QLabel("high"), 3, 2)
        grid.addWidget(self.high, 3, 3)
        grid.addWidget(use_displayed, 4, 1, 1, 3)
        grid.addWidget(self.repair, 5, 0, 1, 4)
        for radio in (self.percentiles, self.fixed):
            radio.toggled.connect(self._enable_chosen)
        self._enable_chosen()
        self.setMinimumWidth(440)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addLayout(grid)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def show_current(self, current: Normalization) -> None:
        """Say which normalisation the sequence has now, `current`: the one it was opened with, or the one another
        window on the project chose since. The values in the boxes, the analyst's, stay."""
        self.note.setText(f"Now: {current}.{self._proposals_note}")
        repaired = len(current.bad_pixels)
        self.repair.setText(f"Repair bad pixels (stuck hot or dead pixels; {repaired} repaired now)"
                            if repaired else "Repair bad pixels (stuck hot or dead pixels; none now)")

    def _enable_chosen(self) -> None:
        for spin in (self.p_low, self.p_high):
            spin.setEnabled(self.percentiles.isChecked())
        for spin in (self.low, self.high):
            spin.setEnabled(self.fixed.isChecked())

    @staticmethod
    def _spin(low: float, high: float, decimals: int) -> QtWidgets.QDoubleSpinBox:
        spin = QtWidgets.QDoubleSpinBox()
        spin.setRange(low, high)
        spin.setDecimals(decimals)
        spin.setMinimumWidth(110)
        return spin

    def use_displayed_levels(self) -> None:
        low, high = self.displayed_levels()
        self.fixed.setChecked(True)
        self.low.setValue(low)
        self.high.setValue(high)

    def request(self) -> NormalizationRequest:
        """Raises ValueError for an impossible window or percentiles."""
        repair = self.repair.isChecked() or not self.raw
        if self.fixed.isChecked():
            return NormalizationRequest(window=(self.low.value(), self.high.value()), repair_bad_pixels=repair)
        return NormalizationRequest(percentiles=(self.p_low.value(), self.p_high.value()), repair_bad_pixels=repair)

    def refusal(self) -> str | None:
        """Why the values in the boxes make no window, in the boxes' own words (the core's messages name
        the command line's LO and HI), or None."""
        if self.fixed.isChecked():
            low, high = self.low.value(), self.high.value()
            if not low < high:
                return f"The low value ({low:g}) must be below the high value ({high:g})."
            values = None if self.shown_frame is None else self.shown_frame[np.isfinite(self.shown_frame)]
            if values is not None and values.size and not ((values >= low) & (values <= high)).any():
                return (f"No pixel of the frame shown lies in {low:g}..{high:g} (its values: {values.min():g} to "
                        f"{values.max():g}): the detectors would see a flat image. Choose a window that reaches them.")
        else:
            low, high = self.p_low.value(), self.p_high.value()
            if not low < high:
                return f"The low percentile ({low:g} %) must be below the high percentile ({high:g} %)."
        try:
            self.request()
        except ValueError as e:
            return str(e)
        return None

    def accept(self) -> None:
        refusal = self.refusal()
        if refusal:
            self.error.setText(refusal)
            return
        super().accept()
