"""The frame view: raw IR values through a palette and levels, with the review overlays on top."""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.frames import no_data
from app.session import FrameLayers
from app.widgets.overlays import DEFAULT_OVERLAYS, Overlay

pg.setConfigOptions(imageAxisOrder="row-major")

PALETTES = ("white-hot", "black-hot", "inferno", "gray")
MAX_BOX_LABELS = 60  # id/score labels drawn; more targets than that on one frame is noise for a reviewer
# behind the frame, shown through its no-data (NaN, infinite) pixels: a hue no palette has (black is the hottest
# value in black-hot)
NO_DATA_COLOR = (0, 84, 84)
HISTOGRAM_SETTLE_MS = 60  # the histogram curve follows a frame once it has stayed this long (not while scrubbing)
BOX_PEN_WIDTH = 1.5  # screen pixels, at any zoom
# A box's line runs outside the outlines (mask_outline: the prediction's ring lies in the 1st pixel outside a
# target, ground truth's in the 2nd), BOX_GAP_PX screen pixels clear of them at any zoom: zoomed out, where an
# image pixel is drawn smaller than the line is wide, a line on the ring's edge would cover it.
RING_CLEARANCE = 2  # image pixels
BOX_GAP_PX = 1.0


def palette_lut(name: str) -> np.ndarray:
    """256x3 uint8 lookup table of a palette (white-hot and gray are the same ramp; IR users say white-hot)."""
    ramp = np.linspace(0, 255, 256).astype(np.uint8)
    if name in ("white-hot", "gray"):
        return np.stack([ramp] * 3, axis=1)
    if name == "black-hot":
        return np.stack([ramp[::-1]] * 3, axis=1)
    return pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)


def _palette_colormap(name: str) -> pg.ColorMap:
    # few stops: the histogram's gradient editor draws one tick per stop on every repaint
    lut = palette_lut(name)
    stops = np.linspace(0, 255, 2 if name in ("white-hot", "black-hot", "gray") else 9).round().astype(int)
    return pg.ColorMap(stops / 255.0, lut[stops])


@lru_cache(maxsize=32)
def _solid_lut(color, alpha: int = 255) -> np.ndarray:
    return np.array([[0, 0, 0, 0], [*color, alpha]], np.uint8)


@lru_cache(maxsize=32)
def _ramp_lut(color) -> np.ndarray:
    """Transparent at 0, full colour at 1: weak responses fade out instead of tinting the whole frame."""
    lut = np.zeros((256, 4), np.uint8)
    lut[:, :3] = color
    lut[:, 3] = np.linspace(0, 255, 256)
    return lut


@lru_cache(maxsize=1)
def _heat_lut() -> np.ndarray:
    lut = np.zeros((256, 4), np.uint8)
    lut[:, :3] = pg.colormap.get("inferno").getLookupTable(nPts=256, alpha=False)
    lut[:, 3] = np.clip(np.linspace(0, 400, 256), 0, 255)
    return lut


def mask_outline(mask: np.ndarray, gap: int = 0) -> np.ndarray:
    """A 1-pixel ring `gap` pixels outside a boolean mask.

    Outside, so the target's own pixels stay visible under the overlay, and a 1-pixel target still gets
    a ring; ground truth uses gap 1, so its ring sits around the prediction's instead of on top of it.
    Where the ring would lie beyond the array's edge, the edge's own pixels of the grown mask are drawn
    instead: a target on the frame's border keeps its outline there, and a mask filling a 1-pixel-high frame
    is still seen. (Cropped masks: a crop must leave `gap` + 1 pixels around the mask inside the frame, so
    that only the frame's edges are edges here.)
    """
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    inner = cv2.dilate(m, kernel, iterations=gap) if gap else m
    ring = cv2.dilate(inner, kernel) & ~inner
    edge = np.zeros_like(inner)
    edge[[0, -1], :] = inner[[0, -1], :]
    edge[:, [0, -1]] |= inner[:, [0, -1]]
    return (ring | edge).astype(bool)


def _bounding_box(present: np.ndarray, margin: int = 0) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1), end-exclusive, of the nonzero pixels grown by `margin` inside the image; None if none."""
    x, y, bw, bh = cv2.boundingRect(present.view(np.uint8) if present.dtype == np.bool_ else present)
    if bw == 0:
        return None
    h, w = present.shape
    return max(y - margin, 0), min(y + bh + margin, h), max(x - margin, 0), min(x + bw + margin, w)


def _box_polyline(boxes, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """x, y of all boxes (pixels x0, y0 to x1, y1 inclusive) as one NaN-separated polyline (one curve item however
    many boxes), each line `margin` pixels outside its box's pixels."""
    if not boxes:
        return np.zeros(0), np.zeros(0)
    xs, ys = [], []
    for x0, y0, x1, y1 in boxes:
        # pixel (x, y) covers [x, x+1) in scene coordinates
        a, b, c, d = x0 - margin, y0 - margin, x1 + 1 + margin, y1 + 1 + margin
        xs += [a, c, c, a, a, np.nan]
        ys += [b, b, d, d, b, np.nan]
    return np.array(xs, float), np.array(ys, float)


class TrueColorImageItem(pg.ImageItem):
    """An ImageItem that draws integer mono images (raw uint16 frames, uint8/bool layers) through a cached
    levels-and-palette table straight into a 32-bit QImage.

    pyqtgraph rescales the whole image, builds an indexed QImage and its colour table on every new frame,
    and Qt's raster engine draws indexed images scaled several times slower than 32-bit ones (a 640x512
    frame filling the view: 3.7 ms against 0.5 ms). One table lookup per pixel replaces all of that; the
    table is rebuilt only when the levels or the palette change. Other images take pyqtgraph's path."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._table_key = None
        self._table: np.ndarray | None = None
        self._format = QtGui.QImage.Format_RGB32

    def render(self) -> None:
        image, lut, levels = self.image, self.lut, self.levels
        if (image is None or image.ndim != 2 or image.dtype not in (np.uint8, np.uint16, np.bool_)
                or not isinstance(lut, np.ndarray) or lut.ndim != 2 or lut.shape[1] not in (3, 4)
                or levels is None or np.ndim(levels) != 1):
            return super().render()
        table, image_format = self._color_table(image.dtype, lut, levels)
        pixels = np.take(table, image.view(np.uint8) if image.dtype == np.bool_ else image)
        self.qimage = pg.functions.ndarray_to_qimage(pixels, image_format)  # keeps `pixels` alive
        self._renderRequired = False
        self._unrenderable = False

    def _color_table(self, dtype, lut: np.ndarray, levels) -> tuple[np.ndarray, QtGui.QImage.Format]:
        """uint32 pixel (Qt's ARGB32, premultiplied) for every possible value, as pyqtgraph maps them:
        index = clip((value - low) * len(lut) / (high - low), 0, len(lut) - 1)."""
        low, high = float(levels[0]), float(levels[1])
        key = (np.dtype(dtype).str, low, high, lut.shape, lut.tobytes())
        if key != self._table_key:
            index = np.arange(256 if dtype != np.uint16 else 65536, dtype=np.float32)
            index -= low  # in float32, as pyqtgraph's rescaleData: the same pixels at the bin edges
            index *= len(lut) / (high - low if high != low else 1.0)
            index = np.clip(index, 0, len(lut) - 1).astype(np.intp)
            colors = np.asarray(lut, np.float64)
            alpha = colors[:, 3] / 255 if colors.shape[1] == 4 else np.ones(len(colors))
            bgra = np.empty((len(colors), 4), np.uint8)  # ARGB32 is B, G, R, A in memory (little-endian)
            bgra[:, :3] = np.rint(colors[:, 2::-1] * alpha[:, None])
            bgra[:, 3] = np.rint(alpha * 255)
            self._table = bgra.view(np.uint32)[:, 0][index]
            self._format = QtGui.QImage.Format_ARGB32_Premultiplied if (alpha < 1).any() else QtGui.QImage.Format_RGB32
            self._table_key = key
        return self._table, self._format


class FrameView(QtWidgets.QWidget):
    """pyqtgraph ImageItem on the raw frame + HistogramLUTWidget for levels/palette + overlay items."""

    cursorMoved = QtCore.Signal(int, int)  # image pixel under the mouse
    displayChanged = QtCore.Signal()  # palette or levels changed (the 3D view follows)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.graphics = pg.GraphicsView()
        self.view = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.setBackgroundColor((20, 20, 24))
        self.graphics.setCentralItem(self.view)
        self.notice = QtWidgets.QLabel()  # what the view says when it has no frame to show
        self.notice.setAlignment(QtCore.Qt.AlignCenter)
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #c8c8c8; font-size: 14px;")
        self.notice.setAttribute(QtCore.Qt.WA_TransparentForMouseEvents)
        self.warning = QtWidgets.QLabel()  # about the frame shown, over its top edge (replaced on disk)
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #1a1a1a; background: rgba(255, 190, 60, 225); padding: 4px 8px;"
                                   " font-size: 13px;")
        self.warning.setAttribute(QtCore.Qt.WA_TransparentForMouseEvents)
        layout = QtWidgets.QVBoxLayout(self.graphics)
        layout.addWidget(self.warning, 0, QtCore.Qt.AlignTop)
        layout.addWidget(self.notice, 1)
        self.notice.hide()
        self.warning.hide()
        self.no_data = QtWidgets.QGraphicsRectItem()
        self.no_data.setBrush(QtGui.QColor(*NO_DATA_COLOR))
        self.no_data.setPen(QtGui.QPen(QtCore.Qt.NoPen))
        self.no_data.setZValue(-1)
        self.no_data.hide()
        self.view.addItem(self.no_data)
        self.image = TrueColorImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.layer_items: dict[str, pg.ImageItem] = {}
        for z, key in enumerate(("probability", "edges", "committed", "prediction", "truth"), start=1):
            item = TrueColorImageItem(axisOrder="row-major")
            item.setZValue(z)
            item.hide()
            self.view.addItem(item)
            self.layer_items[key] = item
        self.boxes = pg.PlotCurveItem(connect="finite")
        self.truth_boxes = pg.PlotCurveItem(connect="finite")
        self.selection = pg.PlotCurveItem(pen=pg.mkPen((255, 255, 255), width=2, style=QtCore.Qt.DashLine))
        self.selected_box: tuple[int, int, int, int] | None = None
        self._drawn_margin: float | None = None  # the box margin the boxes were last drawn with
        self.bad_pixel_marks = pg.PlotCurveItem(connect="finite")  # the sequence's repaired pixels, boxed
        self.bad_pixels: tuple[tuple[int, int], ...] = ()
        for z, item in enumerate((self.bad_pixel_marks, self.truth_boxes, self.boxes, self.selection), start=10):
            item.setZValue(z)
            self.view.addItem(item)
        self.box_labels: list[pg.TextItem] = []
        # Not bound to the image: a bound histogram is recomputed and repainted on every frame change,
        # which doubles the cost of scrubbing. Levels and palette are forwarded; the histogram curve
        # follows the frame once it has stayed HISTOGRAM_SETTLE_MS.
        self.histogram = pg.HistogramLUTWidget()
        self.histogram.setMinimumWidth(110)
        self.histogram.gradient.showTicks(False)  # palettes are picked from the toolbar, not edited here
        self.histogram.item.sigLevelsChanged.connect(self._levels_changed)
        self.histogram.item.sigLookupTableChanged.connect(self._lookup_table_changed)
        self._histogram_timer = QtCore.QTimer(self)
        self._histogram_timer.setSingleShot(True)
        self._histogram_timer.setInterval(HISTOGRAM_SETTLE_MS)
        self._histogram_timer.timeout.connect(self._update_histogram)
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.histogram)

        self.overlays: dict[str, Overlay] = dict(DEFAULT_OVERLAYS)
        self.palette = "white-hot"
        self.auto_levels = False  # False: the sequence's fixed levels (from its normalisation window)
        self.sequence_levels = (0.0, 1.0)
        self.frame: np.ndarray | None = None
        self.layers = FrameLayers()
        self._frame_shape: tuple[int, int] | None = None
        self.set_palette(self.palette)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        self.view.sigTransformChanged.connect(self._draw_boxes_and_selection)  # zoom: the margins in screen pixels

    # display settings
    def set_palette(self, name: str) -> None:
        self.palette = name
        self.histogram.gradient.setColorMap(_palette_colormap(name))

    def set_sequence_levels(self, low: float, high: float) -> None:
        self.sequence_levels = (float(low), float(max(high, low + 1e-6)))
        if not self.auto_levels:
            self.histogram.setLevels(*self.sequence_levels)
        if self.frame is not None:  # a wider window than the frame's values: its handles stay in reach
            self.histogram.item.setHistogramRange(*self._histogram_range(self.frame))

    def set_auto_levels(self, on: bool) -> None:
        self.auto_levels = on
        if on and self.frame is not None:
            self.histogram.setLevels(*percentile_levels(self.frame))
        elif not on:
            self.histogram.setLevels(*self.sequence_levels)

    def levels(self) -> tuple[float, float]:
        low, high = self.histogram.getLevels()
        return float(low), float(high)

    def lookup_table(self) -> np.ndarray:
        return self.histogram.gradient.getLookupTable(256, alpha=False)

    def set_bad_pixels(self, pixels: tuple[tuple[int, int], ...]) -> None:
        """The pixels the detectors see repaired (the normalisation's); the frame shows them raw."""
        self.bad_pixels = tuple(pixels)
        self._draw_layers()

    def set_overlays(self, overlays: dict[str, Overlay]) -> None:
        self.overlays = dict(overlays)
        self._draw_layers()

    # content
    def show_notice(self, text: str) -> None:
        """Clear the view and say why it is empty (no sequence open, an unreadable frame). The zoom is kept for the
        next frame of the size shown before (stepping over an unreadable frame)."""
        self.clear(keep_zoom=True)
        self.notice.setText(text)
        self.notice.show()

    def set_warning(self, text: str) -> None:
        """A warning about the frame shown across the top of the view; "" hides it."""
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    def show_frame(self, frame: np.ndarray, layers: FrameLayers) -> None:
        self.notice.hide()
        self.frame = frame
        if frame.dtype.kind == "f":  # an infinite pixel is shown as no data, as the detectors get it
            infinite = np.isinf(frame)
            if infinite.any():
                frame = np.where(infinite, np.nan, frame)
        first = self._frame_shape != frame.shape
        self.no_data.setRect(0, 0, frame.shape[1], frame.shape[0])
        self.no_data.setVisible(frame.dtype.kind == "f")  # only a float frame has no-data pixels
        self.image.setImage(frame, autoLevels=False, levels=self.levels())
        if self.auto_levels and np.isfinite(frame[::4, ::4]).any():  # (a frame of no data keeps the levels)
            self.histogram.setLevels(*percentile_levels(frame))
        if first:
            self._frame_shape = frame.shape
            self.view.autoRange(padding=0.02)
            self._update_histogram()
            self.histogram.item.setHistogramRange(*self._histogram_range(frame))
        else:
            self._histogram_timer.start()
        self.layers = layers
        self._draw_layers()

    def clear(self, keep_zoom: bool = False) -> None:
        """No frame, no layers, no selected target's box, no warning. The next frame is shown whole, but with
        `keep_zoom` when it has the size of the frame shown before."""
        self.set_warning("")
        self.frame = None
        if not keep_zoom:
            self._frame_shape = None
        self.image.clear()
        self.no_data.hide()
        self._histogram_timer.stop()
        self.histogram.item.plot.setData([], [])  # the curve was the frame's shown before
        self.layers = FrameLayers()
        self._draw_layers()
        self.select_box(None)

    def select_box(self, box: tuple[int, int, int, int] | None) -> None:
        self.selected_box = box
        self.selection.setData(*_box_polyline([box] if box else [], self._box_margin()))

    def zoomed_rect(self) -> tuple[float, float, float, float] | None:
        """The part of the frame in view, (x, y, width, height) in pixels, while some of the frame is out of
        view; None when it is all in view (or no frame is shown)."""
        if self.frame is None:
            return None
        (x0, x1), (y0, y1) = self.view.viewRange()
        height, width = self.frame.shape[:2]
        if x0 <= 0 and y0 <= 0 and x1 >= width and y1 >= height:
            return None
        return (x0, y0, x1 - x0, y1 - y0)

    def show_rect(self, rect: tuple[float, float, float, float]) -> None:
        self.view.setRange(QtCore.QRectF(*rect), padding=0)

    def zoom(self, factor: float) -> None:
        """Zoom in (`factor` > 1) or out about the middle of the view; out no further than the whole frame."""
        if self.frame is None:
            return
        (x0, x1), (y0, y1) = self.view.viewRange()
        height, width = self.frame.shape[:2]
        w, h = (x1 - x0) / factor, (y1 - y0) / factor
        if factor < 1 and w >= width and h >= height:
            self.show_whole_frame()
            return
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        self.view.setRange(QtCore.QRectF(cx - w / 2, cy - h / 2, w, h), padding=0)

    def show_whole_frame(self) -> None:
        """The whole frame in view; on no frame (an unreadable one shown), the next frame is shown whole."""
        if self.frame is None:
            self._frame_shape = None
            return
        height, width = self.frame.shape[:2]
        self.view.setRange(QtCore.QRectF(0, 0, width, height), padding=0)

    def center_on(self, x: float, y: float, half_size: float = 24) -> None:
        self.view.setRange(QtCore.QRectF(x - half_size, y - half_size, 2 * half_size, 2 * half_size), padding=0)

    def _levels_changed(self) -> None:
        self.image.setLevels(self.levels())
        self.displayChanged.emit()

    def _lookup_table_changed(self) -> None:
        self.image.setLookupTable(self.lookup_table())
        self.displayChanged.emit()

    def _update_histogram(self) -> None:
        if self.frame is None:
            return
        if no_data(self.frame):
            self.histogram.item.plot.setData([], [])  # a frame of no data
        else:
            self.histogram.item.plot.setData(*self.image.getHistogram())

    def _histogram_range(self, frame: np.ndarray) -> tuple[float, float]:
        """The frame's values (up to half the window's width beyond it) and always the whole window."""
        low, high = self.sequence_levels
        margin = 0.5 * (high - low)
        finite = frame[np.isfinite(frame)] if frame.dtype.kind == "f" else frame  # a float frame's no-data NaN
        if finite.size == 0:
            return low, high
        return min(max(float(finite.min()), low - margin), low), max(min(float(finite.max()), high + margin), high)

    def _draw_layers(self) -> None:
        layers, overlays = self.layers, self.overlays
        masks = {"prediction": layers.prediction, "committed": layers.committed, "truth": layers.truth_mask}
        for key, mask in masks.items():
            overlay = overlays[key]
            box = _bounding_box(mask, margin=3) if mask is not None and overlay.visible else None
            if box is None:
                self.layer_items[key].hide()
                continue
            y0, y1, x0, x1 = box
            crop = mask[y0:y1, x0:x1]
            shown = mask_outline(crop, gap=1 if key == "truth" else 0) if overlay.contour else crop
            self._draw_at(key, shown.view(np.uint8), x0, y0, (0, 1), _solid_lut(overlay.color), overlay)
        for key, values, lut, floor in (
            ("edges", layers.edges, _ramp_lut(overlays["edges"].color), 1 / 255),
            ("probability", layers.probability, _heat_lut(), 0.02),
        ):
            if values is not None and overlays[key].visible:
                top = 255 if values.dtype == np.uint8 else 1.0
                self._draw_sparse(key, values, values >= floor * top, (0, top), lut, overlays[key])
            else:
                self.layer_items[key].hide()
        self._draw_all_boxes(self._box_margin())

    def _box_margin(self) -> float:
        """How far (in image pixels) outside a target's pixels its box's line runs at the present zoom."""
        image_pixels_per_screen_pixel = self.view.viewPixelSize()[0]
        if not 0 < image_pixels_per_screen_pixel < np.inf:  # not laid out yet
            image_pixels_per_screen_pixel = 1.0
        return RING_CLEARANCE + (BOX_PEN_WIDTH / 2 + BOX_GAP_PX) * image_pixels_per_screen_pixel

    def _draw_boxes_and_selection(self) -> None:
        margin = self._box_margin()
        if self._drawn_margin is not None and math.isclose(margin, self._drawn_margin, rel_tol=1e-6):
            return  # a pan (the view's transform changes with every move): the boxes stand as drawn
        self._draw_all_boxes(margin)
        self.selection.setData(*_box_polyline([self.selected_box] if self.selected_box else [], margin))

    def _draw_all_boxes(self, margin: float) -> None:
        self._drawn_margin = margin
        layers, overlays = self.layers, self.overlays
        self._draw_boxes(self.boxes, overlays["boxes"], [(t.x0, t.y0, t.x1, t.y1) for t in layers.targets], margin)
        self._draw_boxes(self.truth_boxes, overlays["truth"], layers.truth_boxes, margin)
        shown = self.bad_pixels if self.frame is not None else ()
        self._draw_boxes(self.bad_pixel_marks, overlays["bad_pixels"], [(x, y, x, y) for x, y in shown], margin)
        self._draw_box_labels(margin)

    def _draw_sparse(self, key: str, values: np.ndarray, present: np.ndarray, levels, lut, overlay: Overlay) -> None:
        """Draw only the box around what is there: overlays of small targets are mostly empty, and every
        full-frame overlay costs a full-frame image draw on each repaint."""
        box = _bounding_box(present)
        if box is None:
            self.layer_items[key].hide()
            return
        y0, y1, x0, x1 = box
        self._draw_at(key, values[y0:y1, x0:x1], x0, y0, levels, lut, overlay)

    def _draw_at(self, key: str, values: np.ndarray, x0: int, y0: int, levels, lut, overlay: Overlay) -> None:
        item = self.layer_items[key]
        item.setImage(values, levels=levels, lut=lut, autoLevels=False)
        item.setRect(QtCore.QRectF(x0, y0, values.shape[1], values.shape[0]))
        item.setOpacity(overlay.opacity)
        item.show()

    @staticmethod
    def _draw_boxes(curve: pg.PlotCurveItem, overlay: Overlay, boxes, margin: float) -> None:
        if not overlay.visible or not boxes:
            curve.setData([], [])
            curve.hide()
            return
        curve.setPen(pg.mkPen(overlay.color, width=BOX_PEN_WIDTH))
        curve.setOpacity(overlay.opacity)
        curve.setData(*_box_polyline(boxes, margin))
        curve.show()

    def _draw_box_labels(self, margin: float) -> None:
        overlay = self.overlays["boxes"]
        targets = self.layers.targets[:MAX_BOX_LABELS] if overlay.visible else []
        while len(self.box_labels) < len(targets):
            label = pg.TextItem(anchor=(0, 1))
            label.setZValue(20)
            self.view.addItem(label)
            self.box_labels.append(label)
        for label, target in zip(self.box_labels, targets):
            score = "" if np.isnan(target.peak_score) else f" {target.peak_score:.2f}"
            label.setText(f"{target.id}{score}", color=overlay.color)
            label.setPos(target.x0 - margin, target.y0 - margin)
            label.show()
        for label in self.box_labels[len(targets) :]:
            label.hide()

    def _mouse_moved(self, scene_pos) -> None:
        if self.frame is None:
            return
        point = self.view.mapSceneToView(scene_pos)
        x, y = int(np.floor(point.x())), int(np.floor(point.y()))
        h, w = self.frame.shape
        if 0 <= x < w and 0 <= y < h:
            self.cursorMoved.emit(x, y)


def percentile_levels(frame: np.ndarray, low: float = 0.5, high: float = 99.9) -> tuple[float, float]:
    """Levels from this frame's percentiles, on a subsample (fast enough to run on every frame change)."""
    sample = frame[::4, ::4]
    lo, hi = np.nanpercentile(sample, (low, high))  # a float frame's no-data NaN left out
    step = 1.0 if np.issubdtype(frame.dtype, np.integer) else 1e-3 * max(abs(float(lo)), 1.0)  # a flat frame
    return float(lo), float(max(hi, lo + step))
