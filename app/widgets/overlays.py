"""Overlay settings (which layers are drawn, in which colour and opacity) and the panel that edits them."""
from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6 import QtCore, QtGui, QtWidgets


@dataclass(frozen=True)
class Overlay:
    label: str
    visible: bool
    color: tuple[int, int, int]
    opacity: float
    contour: bool | None = None  # None: the layer has no fill/contour choice


# key -> default; the order is the panel's order.
DEFAULT_OVERLAYS: dict[str, Overlay] = {
    "prediction": Overlay("Predicted mask", True, (255, 60, 60), 0.9, contour=True),
    "committed": Overlay("Committed mask", True, (60, 220, 90), 0.4, contour=False),  # the target shows through
    "edges": Overlay("Edge map", False, (80, 200, 255), 0.8),
    "probability": Overlay("Probability heatmap", False, (255, 170, 0), 0.6),
    "boxes": Overlay("Detection boxes", True, (255, 230, 0), 1.0),
    "truth": Overlay("Ground truth", True, (0, 255, 255), 0.9, contour=True),
    "bad_pixels": Overlay("Bad pixels (repaired)", False, (255, 0, 255), 1.0),
}


class OverlayPanel(QtWidgets.QWidget):
    """One row per overlay: show toggle, colour button, opacity slider, and fill/contour where it applies."""

    changed = QtCore.Signal(dict)  # key -> Overlay

    def __init__(self, parent=None):
        super().__init__(parent)
        self.overlays = dict(DEFAULT_OVERLAYS)
        self.toggles: dict[str, QtWidgets.QCheckBox] = {}
        self.contour_toggles: dict[str, QtWidgets.QCheckBox] = {}
        self.opacity_sliders: dict[str, QtWidgets.QSlider] = {}
        self.color_buttons: dict[str, QtWidgets.QPushButton] = {}
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        # rows as tall as a check box: the seven rows fit the right column at 1500x950 beside the detector's
        # description, where buttons of the usual height made the dock scroll
        grid.setVerticalSpacing(3)
        for row, (key, overlay) in enumerate(self.overlays.items()):
            toggle = QtWidgets.QCheckBox(overlay.label)
            toggle.setChecked(overlay.visible)
            toggle.toggled.connect(lambda on, k=key: self._update(k, visible=on))
            color = QtWidgets.QPushButton()
            color.setFixedSize(28, 16)  # a swatch
            color.setToolTip("Colour")
            color.clicked.connect(lambda _=False, k=key: self._pick_color(k))
            opacity = QtWidgets.QSlider(QtCore.Qt.Horizontal)
            opacity.setRange(5, 100)
            opacity.setValue(round(overlay.opacity * 100))
            opacity.setToolTip("Opacity")
            opacity.setFocusPolicy(QtCore.Qt.NoFocus)
            opacity.valueChanged.connect(lambda v, k=key: self._update(k, opacity=v / 100))
            grid.addWidget(toggle, row, 0)
            grid.addWidget(color, row, 1)
            grid.addWidget(opacity, row, 2)
            if overlay.contour is not None:
                contour = QtWidgets.QCheckBox("contour")
                contour.setToolTip("Outline only, so 1-pixel targets stay visible")
                contour.setChecked(overlay.contour)
                contour.toggled.connect(lambda on, k=key: self._update(k, contour=on))
                grid.addWidget(contour, row, 3)
                self.contour_toggles[key] = contour
            self.toggles[key], self.color_buttons[key], self.opacity_sliders[key] = toggle, color, opacity
            self._paint_color_button(key)
        grid.setRowStretch(len(self.overlays), 1)

    def set_available(self, key: str, available: bool, why: str = "") -> None:
        """Say (without disabling the toggle) that a layer has nothing to draw right now."""
        label = self.overlays[key].label
        self.toggles[key].setText(label if available else f"{label} (n/a)")
        self.toggles[key].setToolTip("" if available else why)

    def _update(self, key: str, **changes) -> None:
        self.overlays[key] = replace(self.overlays[key], **changes)
        self._paint_color_button(key)
        self.changed.emit(dict(self.overlays))

    def _pick_color(self, key: str) -> None:
        color = QtWidgets.QColorDialog.getColor(QtGui.QColor(*self.overlays[key].color), self, "Overlay colour")
        if color.isValid():
            self._update(key, color=(color.red(), color.green(), color.blue()))

    def _paint_color_button(self, key: str) -> None:
        r, g, b = self.overlays[key].color
        self.color_buttons[key].setStyleSheet(f"background-color: rgb({r},{g},{b});")
