"""Feature maps of the shown frame: WPMD diffused features and wavelet edge magnitude per level, GAD features.

Each map is drawn over the frame area its cells cover (the predictor's "<name>.rect"), so it lines up
with the input and zooms with it; a map of a tiled frame covers the centre tile only.
"""
from __future__ import annotations

import html
import re

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

REDUCTIONS = ("mean", "max", "channel")
GAD_KEYS = ("gad.shallow", "gad.deep", "gad.multi")
TITLES = {"input": "Input", "diffused": "WPMD diffused", "edge": "WPMD edge",
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


class MapTitle(pg.LabelItem):
    """A map's title in two lines, the map's name and what is drawn of it ("channel 5 of 64"). It takes the width
    of its column and never asks for more, so the maps share the row equally whatever their titles say: a detail
    too long for the column is written short ("ch. 5/64") if it has a short form, a line still too long ends in "…",
    and the tooltip then has the title whole. A title can also carry an explanation, which is then its tooltip."""

    def __init__(self, name: str, detail: str = ""):
        # set before LabelItem's setup, which already resizes the title
        self.lines, self.shown_lines, self.short_detail, self.explanation = (name, detail), (name, detail), "", ""
        super().__init__(name)
        self.item.document().setDefaultTextOption(QtGui.QTextOption(QtCore.Qt.AlignHCenter))
        self.set_title(name, detail)

    def set_title(self, name: str, detail: str = "", explanation: str = "", short_detail: str = "") -> None:
        self.lines, self.short_detail, self.explanation = (name, detail), short_detail, explanation
        self._fit(self.width())

    def _fit(self, width: float) -> None:
        room = max(width - 2 * self.item.document().documentMargin(), 0.0)
        metrics = QtGui.QFontMetricsF(self.item.font())
        name, detail = self.lines
        if self.short_detail and metrics.horizontalAdvance(detail) > room:
            detail = self.short_detail
        self.shown_lines = tuple(metrics.elidedText(line, QtCore.Qt.ElideRight, room) for line in (name, detail))
        whole = "\n".join(line for line in self.lines if line)
        self.setToolTip(self.explanation or (whole if self.shown_lines != self.lines else ""))
        text = "<br>".join(html.escape(line) for line in self.shown_lines)
        if text != self.text:
            self.item.setTextWidth(-1)  # the lines' own width, which they are then centred in
            self.setText(text)
            self.item.setTextWidth(self.item.document().idealWidth())

    def resizeEvent(self, event) -> None:
        if event is not None:  # the layout gave the title a new size (setText passes None)
            self._fit(event.newSize().width())
        super().resizeEvent(event)

    def updateMin(self) -> None:
        """LabelItem asks for its text's width here, which widened the column; the title asks for two lines'
        height only."""
        height = 2 * QtGui.QFontMetricsF(self.item.font()).lineSpacing() + 2 * self.item.document().documentMargin()
        size_hint = {QtCore.Qt.SizeHint.MinimumSize: (0, height), QtCore.Qt.SizeHint.PreferredSize: (0, height),
                     QtCore.Qt.SizeHint.MaximumSize: (-1, -1)}
        if size_hint != self._sizeHint:
            self._sizeHint = size_hint
            self.updateGeometry()


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
        self.titles: dict[str, MapTitle] = {}
        self.missing_channel_notes: dict[str, pg.TextItem] = {}
        self.missing_channel: set[str] = set()  # the maps that lack the chosen channel
        for k, (key, title) in enumerate(TITLES.items()):
            # one row: the dock is short and wide, so six maps side by side are each larger than in a grid
            view = self.graphics.addViewBox(row=1, col=k, lockAspect=True, invertY=True, enableMenu=False)
            self.titles[key] = MapTitle(title, "8-bit" if key == "input" else "")
            self.graphics.addItem(self.titles[key], row=0, col=k)
            self.graphics.ci.layout.setColumnStretchFactor(k, 1)
            image = pg.ImageItem(axisOrder="row-major")
            image.setLookupTable(pg.colormap.get("inferno").getLookupTable(nPts=256) if key != "input" else None)
            view.addItem(image)
            if key != "input":
                # written over the blank map when it lacks the chosen channel
                note = pg.TextItem(anchor=(0.5, 0.5))
                note.hide()
                view.addItem(note, ignoreBounds=True)
                view.sigResized.connect(self._show_missing_channel_notes)
                self.missing_channel_notes[key] = note
            self.views[key], self.images[key] = view, image
        # The maps show the input's range, and the input takes the range of a map the user pans or zooms. Not
        # pyqtgraph's view links: aspect-locked linked views widen each other's range at every resize, without end.
        self.views["input"].sigRangeChanged.connect(self._show_input_range)
        for key, view in self.views.items():
            if key != "input":
                view.disableAutoRange()
                view.sigRangeChangedManually.connect(lambda _axes, view=view: self._set_input_range(view))

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

    def _show_input_range(self, input_view: pg.ViewBox, *_ranges) -> None:
        for view in self.views.values():
            if view is not input_view:
                view.setRange(input_view.viewRect(), padding=0)

    def _set_input_range(self, view: pg.ViewBox) -> None:
        self.views["input"].setRange(view.viewRect(), padding=0)

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
        self.missing_channel = set()
        for key in self.missing_channel_notes:
            self.titles[key].set_title(TITLES[key])
            self.views[key].setToolTip("")
        self._show_missing_channel_notes()
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
        self.missing_channel = {slot for slot, feature in shown.items()
                                if reduction == "channel" and channel >= len(feature)}
        for slot in keys:
            image, title, note = self.images[slot], TITLES[slot], self.missing_channel_notes[slot]
            feature = shown.get(slot)
            missing_channel = slot in self.missing_channel
            explanation = self._missing_channel_explanation(slot, shown, channel) if missing_channel else ""
            self.views[slot].setToolTip(explanation)
            if feature is None:
                image.clear()
                self.titles[slot].set_title(title)
                continue
            rect = QtCore.QRectF(*map(float, self.features[f"{keys[slot]}.rect"]))
            if missing_channel:
                image.clear()
                self.titles[slot].set_title(title, f"only {len(feature)} channels", explanation,
                                            f"only {len(feature)} ch.")
                note.setText(f"no channel {channel}")
                note.setPos(rect.center())
                continue
            if reduction == "channel":
                self.titles[slot].set_title(title, f"channel {channel} of {len(feature)}",
                                            short_detail=f"ch. {channel}/{len(feature)}")
            else:
                self.titles[slot].set_title(title, f"{reduction} of {len(feature)}")
            values = reduce_channels(feature, reduction, channel)
            low, high = np.percentile(values, (1, 99.5))
            image.setImage(values, levels=(float(low), float(max(high, low + 1e-6))), autoLevels=False)
            image.setRect(rect)
        self._show_missing_channel_notes()

    def _show_missing_channel_notes(self) -> None:
        """The note over each map that lacks the chosen channel, where it fits in the map's view: cut by the view's
        edges, "no channel 319" would read "o channel 31"."""
        for slot, note in self.missing_channel_notes.items():
            fits = note.textItem.boundingRect().width() <= self.views[slot].width()
            note.setVisible(slot in self.missing_channel and fits)

    @staticmethod
    def _missing_channel_explanation(slot: str, shown: dict[str, np.ndarray], channel: int) -> str:
        """Why the map of `slot` is blank: it has fewer channels than the widest map shown, whose count the channel
        box goes up to."""
        count, widest = len(shown[slot]), max(len(feature) for feature in shown.values())
        widest_slots = [s for s, feature in shown.items() if len(feature) == widest]
        has = "has" if len(widest_slots) == 1 else "have"
        return (f"{TITLES[slot]} has {count} channels (0-{count - 1}), so it has no channel {channel} to show. "
                f"The channel box goes up to {widest - 1} for {' and '.join(TITLES[s] for s in widest_slots)}, which "
                f"{has} {widest}.")
