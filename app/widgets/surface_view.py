"""3D intensity surface of a small region around the selected target (or the cursor).

GL widgets need a real OpenGL context: without one (QT_QPA_PLATFORM=offscreen, remote sessions without
GLX) pyqtgraph's GL items segfault, so the context is probed first and a plain label is shown instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

CROP = 48  # a full 640x512 mesh is ~330k vertices: too slow on a software renderer
RELIEF = 16.0  # height of the crop's value range, in pixel units, so a 48-pixel crop reads as a landscape
FIELD_OF_VIEW = 60.0  # degrees across the view's width: pyqtgraph's default
MIN_VERTICAL_FIELD_OF_VIEW = 45.0  # degrees across its height, which a view much wider than tall would lack


@lru_cache(maxsize=1)
def opengl_available() -> bool:
    """True when an OpenGL context can be created (the crash-free probe: False under the offscreen platform)."""
    context = QtGui.QOpenGLContext()
    return bool(context.create())


@dataclass(frozen=True)
class SurfaceRegion:
    """The crop the surface shows: rows y0:y0+h, columns x0:x0+w of the frame."""

    x0: int
    y0: int
    w: int
    h: int

    @classmethod
    def around(cls, x: float, y: float, shape: tuple[int, int], size: int = CROP) -> "SurfaceRegion":
        height, width = shape
        w, h = min(size, width), min(size, height)
        x0 = int(np.clip(round(x) - w // 2, 0, width - w))
        y0 = int(np.clip(round(y) - h // 2, 0, height - h))
        return cls(x0, y0, w, h)

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w]


def surface_arrays(crop: np.ndarray, levels: tuple[float, float], lut: np.ndarray):
    """x, y, z and per-vertex colours for GLSurfacePlotItem.

    Colours use the frame view's levels and palette; heights span the crop's own range (a small target is
    a few percent of the sequence's level window and would otherwise be a flat bump).
    GLSurfacePlotItem maps z[i, j] to (x[i], y[j]), so it gets the transposed crop; rows are flipped
    first so the image's top row is at the far (large y) side, as on screen. A crop of one row or column (a
    frame that thin) is drawn as a strip one unit wide: a mesh needs two of each.
    """
    crop = np.repeat(crop, 2 if crop.shape[0] == 1 else 1, axis=0)
    crop = np.repeat(crop, 2 if crop.shape[1] == 1 else 1, axis=1)
    values = crop[::-1].T.astype(np.float32)
    low, high = levels
    finite = np.isfinite(values)
    if not finite.all():  # a float frame's no-data pixels: drawn at the floor of the crop (or of the levels)
        values = np.where(finite, values, values[finite].min() if finite.any() else low)
    unit = np.clip((values - low) / max(high - low, 1e-6), 0, 1)
    colors = lut[(unit * (len(lut) - 1)).astype(int)].astype(np.float32) / 255.0
    colors = np.concatenate([colors[..., :3], np.ones(colors.shape[:2] + (1,), np.float32)], axis=2)
    z = (values - values.min()) / max(float(values.max() - values.min()), 1e-6) * RELIEF
    x = np.arange(crop.shape[1], dtype=np.float32)
    y = np.arange(crop.shape[0], dtype=np.float32)
    return x, y, z, colors


def outline_segments(mask_crop: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(2k, 3) line segment end points tracing the mask's outline just above the surface.

    The vertices are the centres of the mask's boundary pixels, each at the height of the highest mask pixel
    in its 3x3 neighbourhood: the top of the mask's wall there. A boundary pixel's own height depends on how
    far it lies from the target's edge, which alternates along the outline's staircase: on a target whose
    wall is about a pixel wide that made the outline jump between the target's top and the background.
    """
    inside = mask_crop > 0
    h, w = inside.shape
    heights = z[:, ::-1].T[:h, :w]  # back to the crop's rows and columns (a one-pixel-thin crop's z is doubled)
    wall_tops = cv2.dilate(np.where(inside, heights, -np.inf).astype(np.float32), np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    segments = []
    for contour in contours:
        cols, rows = contour[:, 0, 0], contour[:, 0, 1]
        points = np.stack([cols, h - 1 - rows, wall_tops[rows, cols]], axis=1).astype(np.float32)
        if len(points) == 1:  # a 1-pixel target: a small vertical tick
            tick = np.repeat(points, 2, axis=0)
            tick[1, 2] += 2.0
            segments.append(tick)
            continue
        points[:, 2] += 0.3
        segments.append(np.stack([points, np.roll(points, -1, axis=0)], axis=1).reshape(-1, 3))
    return np.concatenate(segments) if segments else np.zeros((0, 3), np.float32)


class SurfaceView(QtWidgets.QWidget):
    """The GL widget is made on first show: a QOpenGLWidget anywhere in a window switches that whole
    window to GL composition, which makes every repaint (scrubbing included) several times slower."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._layout = QtWidgets.QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.caption = QtWidgets.QLabel("Select a target or move the cursor over the frame.")
        self._layout.addWidget(self.caption)
        self.gl_view = None
        self.fallback: QtWidgets.QLabel | None = None
        self._pending = None
        self._camera_for: tuple[int, int] | None = None

    def _build(self) -> None:
        if not opengl_available():
            self.fallback = QtWidgets.QLabel(
                "3D view unavailable: no OpenGL context could be created on this display.\n"
                "Run the app in a desktop session with OpenGL (or under Xvfb with GLX) to see it."
            )
            self.fallback.setAlignment(QtCore.Qt.AlignCenter)
            self.fallback.setWordWrap(True)
            self._layout.addWidget(self.fallback, 1)
            return
        import pyqtgraph.opengl as gl

        self.gl_view = gl.GLViewWidget()
        self.gl_view.setBackgroundColor((25, 25, 30))
        # per-vertex colours carry the palette: no shading, so no normals to compute
        self.surface = gl.GLSurfacePlotItem(shader=None, smooth=False, computeNormals=False)
        self.surface.setVisible(False)  # an empty mesh cannot be drawn
        self.outline = gl.GLLinePlotItem(mode="lines", color=(1.0, 0.2, 0.2, 1.0), width=2, antialias=True)
        self.gl_view.addItem(self.surface)
        self.gl_view.addItem(self.outline)
        self.gl_view.installEventFilter(self)
        self._layout.addWidget(self.gl_view, 1)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.gl_view and event.type() == QtCore.QEvent.Resize:
            self._fit_field_of_view(event.size())
        return super().eventFilter(watched, event)

    def _fit_field_of_view(self, size: QtCore.QSize) -> None:
        """pyqtgraph's field of view spans the view's width: in a view much wider than tall (docked under the frame)
        the surface's near and far edges were cut off. FIELD_OF_VIEW across the width, widened where the height would
        span less than MIN_VERTICAL_FIELD_OF_VIEW (the floating view keeps pyqtgraph's default)."""
        aspect = size.width() / max(size.height(), 1)
        tangent = max(math.tan(math.radians(FIELD_OF_VIEW / 2)),
                      math.tan(math.radians(MIN_VERTICAL_FIELD_OF_VIEW / 2)) * aspect)
        self.gl_view.opts["fov"] = math.degrees(2 * math.atan(tangent))

    def show_region(self, frame: np.ndarray, region: SurfaceRegion, mask: np.ndarray | None,
                    levels: tuple[float, float], lut: np.ndarray, caption: str) -> None:
        """Draw now when visible; otherwise keep the request for when the view is shown."""
        self._pending = (frame, region, mask, levels, lut, caption)
        if self.isVisible():
            self._draw()

    def show_nothing(self, caption: str) -> None:
        """An empty view and why (an unreadable frame): the surface of the frame before is not left standing."""
        self._pending = None
        self.caption.setText(caption)
        if self.gl_view is not None:
            self.surface.setVisible(False)
            self.outline.setData(pos=np.zeros((0, 3), np.float32))

    def showEvent(self, event):
        super().showEvent(event)
        if self.gl_view is None and self.fallback is None:
            self._build()
        if self._pending is not None:
            self._draw()

    def _draw(self) -> None:
        frame, region, mask, levels, lut, caption = self._pending
        self._pending = None
        self.caption.setText(caption)
        if self.gl_view is None and self.fallback is None:
            self._build()
        if self.gl_view is None:
            return
        crop = region.crop(frame)
        values = crop[np.isfinite(crop)] if crop.dtype.kind == "f" else crop  # a float frame's no-data NaN left out
        heights = f"raw {values.min():g}..{values.max():g}" if values.size else "no data"
        self.caption.setText(f"{caption}   height: {heights}")
        x, y, z, colors = surface_arrays(crop, levels, lut)
        self.surface.setData(x=x, y=y, z=z, colors=colors.reshape(-1, 4))
        self.surface.setVisible(True)
        segments = outline_segments(region.crop(mask), z) if mask is not None else np.zeros((0, 3), np.float32)
        self.outline.setData(pos=segments if len(segments) else np.zeros((0, 3), np.float32))
        if self._camera_for != (region.w, region.h):
            self._camera_for = (region.w, region.h)
            self.gl_view.setCameraPosition(pos=QtGui.QVector3D(region.w / 2, region.h / 2, RELIEF / 2),
                                           distance=1.35 * max(region.w, region.h), elevation=30, azimuth=-90)
