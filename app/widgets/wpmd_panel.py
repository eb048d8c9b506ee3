"""Feature maps of the shown frame: WPMD diffused features and wavelet edge magnitude per level, GAD features.

Each map is drawn over the frame area its cells cover (the predictor's "<name>.rect"), so it lines up
with the input and zooms with it; a map of a tiled frame covers the centre tile only.
"""
from __future__ import annotations

import re

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

REDUCTIONS = ("mean", "max", "channel")
GAD_KEYS = ("gad.shallow", "gad.deep", "gad.multi")
TITLES = {"input": "Input (8-bit)", "diffused": "WPMD diffused", "edge": "WPMD edge",
          "gad.shallow": "GAD shallow", "gad.deep": "GAD deep", "gad.multi": "GAD multi"}


def wpmd_levels(features: dict) -> list[int]:
    return sorted({int(m.group(1)) for key in features if (m := re.fullmatch(r"wpmd(\d+)\.\w+", key))})


def reduce_channels(feature: np.ndarray, reduction: str, channel: int = 0) -> np.ndarray:
    """(C, h, w) -> (h, w): channel mean, channel max, or one channel (clamped to the range)."""
    feature = np.asarray(feature, np.float32)
    if feature.ndim == 2:
        return feature
    if reduction == "mean":
        return feature.mean(axis=0)
    if reduction == "max":
        return feature.max(axis=0)
    return feature[int(np.clip(channel, 0, feature.shape[0] - 1))]


class FeaturePanel(QtWidgets.QWidget):
    computeRequested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.features: dict[str, np.ndarray] = {}
        self.frame_shape: tuple[int, int] | None = None
        self.level_combo = QtWidgets.QComboBox()
        self.level_combo.setToolTip("WPMD level (encoder stage)")
        self.reduction_combo = QtWidgets.QComboBox()
        self.reduction_combo.addItems(REDUCTIONS)
        self.channel = QtWidgets.QSpinBox()
        self.channel.setPrefix("channel ")
        self.channel.setEnabled(False)
        self.follow = QtWidgets.QCheckBox("follow frame")
        self.follow.setChecked(True)
        self.follow.setToolTip("Recompute when the shown frame changes (runs the detector on that frame)")
        self.compute = QtWidgets.QPushButton("Compute")
        self.compute.clicked.connect(self.computeRequested)
        self.message = QtWidgets.QLabel()
        self.message.setWordWrap(True)
        for combo in (self.level_combo, self.reduction_combo):
            combo.currentIndexChanged.connect(self._redraw)
        self.channel.valueChanged.connect(self._redraw)
        self.reduction_combo.currentTextChanged.connect(lambda r: self.channel.setEnabled(r == "channel"))

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumHeight(150)  # docked under the frame view it is otherwise squeezed to a strip
        self.views: dict[str, pg.ViewBox] = {}
        self.images: dict[str, pg.ImageItem] = {}
        self.titles: dict[str, pg.LabelItem] = {}
        for k, (key, title) in enumerate(TITLES.items()):
            # one row: the dock is short and wide, so six maps side by side are each larger than in a grid
            view = self.graphics.addViewBox(row=1, col=k, lockAspect=True, invertY=True, enableMenu=False)
            self.titles[key] = self.graphics.addLabel(title, row=0, col=k)
            image = pg.ImageItem(axisOrder="row-major")
            image.setLookupTable(pg.colormap.get("inferno").getLookupTable(nPts=256) if key != "input" else None)
            view.addItem(image)
            if self.views:
                view.setXLink(self.views["input"])
                view.setYLink(self.views["input"])
            self.views[key], self.images[key] = view, image

        controls = QtWidgets.QHBoxLayout()
        for w in (QtWidgets.QLabel("Level"), self.level_combo, self.reduction_combo, self.channel, self.follow,
                  self.compute):
            controls.addWidget(w)
        controls.addStretch(1)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(controls)
        layout.addWidget(self.message)
        layout.addWidget(self.graphics, 1)
        self.show_message("Run an IRSAM detector on a frame to see its WPMD and GAD feature maps.")

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def set_input(self, image8: np.ndarray) -> None:
        first = self.frame_shape != image8.shape
        self.frame_shape = image8.shape
        self.images["input"].setImage(image8, levels=(0, 255), autoLevels=False)
        if first:
            self.views["input"].autoRange(padding=0)

    def clear_maps(self, text: str) -> None:
        """No input and no maps, and why (an unreadable frame)."""
        self.features = {}
        self.frame_shape = None
        for image in self.images.values():
            image.clear()
        for key, title in TITLES.items():
            self.titles[key].setText(title)
        self.show_message(text)

    def set_features(self, features: dict[str, np.ndarray], detector_name: str, frame_name: str = "") -> None:
        """features: name -> (C, h, w) map and name + ".rect" -> the frame area (x, y, width, height) it covers;
        `frame_name` ("frame 12") says whose they are."""
        self.features = dict(features)
        if not features:
            self.show_message(f"{detector_name} has no WPMD or GAD feature maps: only IRSAM computes them. "
                              "Choose an IRSAM detector in the Detection panel.")
        else:
            whose = f"Feature maps of {frame_name} ({detector_name})." if frame_name else ""
            self.show_message(" ".join(part for part in (whose, self._coverage()) if part))
        levels = wpmd_levels(features)
        with QtCore.QSignalBlocker(self.level_combo):
            current = self.level_combo.currentText()
            self.level_combo.clear()
            self.level_combo.addItems([str(level) for level in levels])
            if current in [str(level) for level in levels]:
                self.level_combo.setCurrentText(current)
        self._redraw()
        self.views["input"].autoRange(padding=0)

    def _coverage(self) -> str:
        """A note when the maps cover only part of the frame (the centre tile of a tiled frame)."""
        rects = np.array([rect for key, rect in self.features.items() if key.endswith(".rect")])
        h, w = self.frame_shape
        x, y = rects[:, :2].min(axis=0)
        x1, y1 = np.minimum((rects[:, :2] + rects[:, 2:]).max(axis=0), (w, h))
        if x <= 0 and y <= 0 and x1 >= w and y1 >= h:
            return ""
        return ("This frame was detected in tiles: the feature maps are those of its centre tile, "
                f"x {x:.0f}-{x1:.0f}, y {y:.0f}-{y1:.0f}.")

    def _redraw(self) -> None:
        level = self.level_combo.currentText()
        keys = {"diffused": f"wpmd{level}.diffused", "edge": f"wpmd{level}.edge"}
        keys.update({k: k for k in GAD_KEYS})
        shown = {slot: self.features[key] for slot, key in keys.items() if key in self.features}
        # maps differ in channel count (WPMD by level, GAD its own): the range is that of the widest shown
        with QtCore.QSignalBlocker(self.channel):
            self.channel.setRange(0, max((len(f) for f in shown.values()), default=1) - 1)
        reduction, channel = self.reduction_combo.currentText(), self.channel.value()
        for slot in keys:
            image, title = self.images[slot], TITLES[slot]
            feature = shown.get(slot)
            if feature is None:
                image.clear()
                self.titles[slot].setText(title)
                continue
            if reduction == "channel" and channel >= len(feature):
                image.clear()
                self.titles[slot].setText(f"{title}: {len(feature)} channels, no channel {channel}")
                continue
            detail = f"channel {channel}" if reduction == "channel" else reduction
            self.titles[slot].setText(f"{title} ({detail} of {len(feature)})")
            values = reduce_channels(feature, reduction, channel)
            low, high = np.percentile(values, (1, 99.5))
            image.setImage(values, levels=(float(low), float(max(high, low + 1e-6))), autoLevels=False)
            image.setRect(QtCore.QRectF(*map(float, self.features[f"{keys[slot]}.rect"])))
