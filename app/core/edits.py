"""Raster mask editing: pixel-exact tools and a per-frame undo/redo history of changed patches.

Masks are 2-D bool arrays (row y, column x). Tools never modify their input; they return the new
mask, and callers turn (before, after) into one undoable `MaskEdit` with `make_edit`.
Points are (x, y) pixel indices; float coordinates are floored (pixel i spans [i, i + 1)).
"""
from __future__ import annotations

import heapq
import io
import zipfile
import zlib
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from app.core.targets import label_components
from model.atomic import atomic_write_bytes

HISTORY_FORMAT = "irsam-edit-history/1"
DEFAULT_HISTORY_DEPTH = 1000


@dataclass(frozen=True, eq=False)
class MaskEdit:
    """One undoable change: the patch [y0:y1, x0:x1] (end-exclusive) before and after the edit, the frame's review
    status before it when the edit changed that (it marks the frame corrected), so undo can give it back, and
    whether the frame had a committed mask before it: undoing a frame's first edit takes the committed mask away
    again (the frame shows its proposal, and a re-run may replace that), not a copy of the proposal."""

    y0: int
    x0: int
    y1: int
    x1: int
    before: np.ndarray  # bool (y1 - y0, x1 - x0)
    after: np.ndarray
    status_before: str | None = None  # None: the edit left the status as it was
    committed_before: bool = True

    def with_status_before(self, status: str | None) -> "MaskEdit":
        return replace(self, status_before=status)

    def with_committed_before(self, committed: bool) -> "MaskEdit":
        return replace(self, committed_before=committed)

    def fits(self, mask: np.ndarray) -> bool:
        """Whether `mask` holds, in the edit's box, the pixels the edit was made on, or those it left (a step whose
        history write was lost, repeated: `ReviewProject._change_mask`)."""
        patch = np.asarray(mask, dtype=bool)[self.y0 : self.y1, self.x0 : self.x1]
        return np.array_equal(patch, self.before) or np.array_equal(patch, self.after)


class StaleRedo(ValueError):
    """A redo refused, nothing changed: the mask it would change no longer holds, in its edit's box, the pixels the
    edit was undone from (a new proposal replaced the one the undo went back to). Redone, it would paste pieces of
    the old mask into the new one."""


def make_edit(before_mask: np.ndarray, after_mask: np.ndarray) -> MaskEdit | None:
    """The edit turning `before_mask` into `after_mask`, cropped to the changed box; None if nothing changed."""
    before_mask = np.asarray(before_mask, dtype=bool)
    after_mask = np.asarray(after_mask, dtype=bool)
    if before_mask.shape != after_mask.shape:
        raise ValueError(f"mask shapes differ: {before_mask.shape} vs {after_mask.shape}")
    changed = before_mask != after_mask
    if not changed.any():
        return None
    rows = np.flatnonzero(changed.any(axis=1))
    cols = np.flatnonzero(changed.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return MaskEdit(y0, x0, y1, x1, before_mask[y0:y1, x0:x1].copy(), after_mask[y0:y1, x0:x1].copy())


def unchanged_edit() -> MaskEdit:
    """A step that changes no pixel: a tool committing the mask shown as it is (the proposal of a frame with no
    committed mask), which marks the frame corrected all the same; undo takes that back."""
    nothing = np.zeros((0, 0), dtype=bool)
    return MaskEdit(0, 0, 0, 0, nothing, nothing)


class EditHistory:
    """Undo/redo stacks of `MaskEdit`s for one frame. The oldest edits drop off past `max_depth`."""

    def __init__(self, max_depth: int = DEFAULT_HISTORY_DEPTH):
        self.max_depth = max_depth
        self._undo: deque[MaskEdit] = deque(maxlen=max_depth)
        self._redo: list[MaskEdit] = []

    def __len__(self) -> int:
        """How many edits can be undone."""
        return len(self._undo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def next_undo(self) -> MaskEdit | None:
        """The edit `undo` would take back, or None."""
        return self._undo[-1] if self._undo else None

    def next_redo(self) -> MaskEdit | None:
        """The edit `redo` would make again, or None."""
        return self._redo[-1] if self._redo else None

    def drop_statuses(self) -> bool:
        """A status the analyst set since stands, over the mask the frame shows: forget every edit's `status_before`,
        and undo commits the mask it gives back rather than taking the committed mask away (`committed_before`).
        Whether anything changed."""
        changed = any(e.status_before or not e.committed_before for e in (*self._undo, *self._redo))
        if changed:
            def verdict_kept(edit: MaskEdit) -> MaskEdit:
                return replace(edit, status_before=None, committed_before=True)

            self._undo = deque((verdict_kept(e) for e in self._undo), maxlen=self.max_depth)
            self._redo = [verdict_kept(e) for e in self._redo]
        return changed

    def apply(self, mask: np.ndarray, edit: MaskEdit) -> np.ndarray:
        """Record `edit` (clearing the redo stack) and return `mask` with it applied."""
        self._undo.append(edit)
        self._redo.clear()
        return _paste(mask, edit, edit.after)

    def undo(self, mask: np.ndarray) -> np.ndarray:
        if not self._undo:
            raise IndexError("nothing to undo")
        edit = self._undo.pop()
        self._redo.append(edit)
        return _paste(mask, edit, edit.before)

    def redo(self, mask: np.ndarray) -> np.ndarray:
        """`mask` with the last undone edit made again; StaleRedo, the history unchanged, when it does not fit `mask`
        (`MaskEdit.fits`)."""
        if not self._redo:
            raise IndexError("nothing to redo")
        if not self._redo[-1].fits(mask):
            raise StaleRedo  # (the project says which frame, and why, to the analyst: `ReviewProject.redo`)
        edit = self._redo.pop()
        self._undo.append(edit)
        return _paste(mask, edit, edit.after)

    def to_npz(self, path: str | Path) -> None:
        """Write both stacks (bit-packed patches) atomically."""
        arrays = {"format": np.array(HISTORY_FORMAT), "max_depth": np.array(self.max_depth)}
        for name, edits in (("undo", list(self._undo)), ("redo", self._redo)):
            arrays[f"{name}_boxes"] = np.array([(e.y0, e.x0, e.y1, e.x1) for e in edits], dtype=np.int64).reshape(-1, 4)
            arrays[f"{name}_before"] = _pack([e.before for e in edits])
            arrays[f"{name}_after"] = _pack([e.after for e in edits])
            arrays[f"{name}_status"] = np.array([e.status_before or "" for e in edits], dtype=np.str_)
            arrays[f"{name}_committed"] = np.array([e.committed_before for e in edits], dtype=bool)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def from_npz(cls, path: str | Path) -> "EditHistory":
        """Read a history written by `to_npz`; raises ValueError if the file is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != HISTORY_FORMAT:
                    raise ValueError(f"unknown history format {data['format']!r}")
                history = cls(int(data["max_depth"]))
                stacks = {
                    name: _unpack(data[f"{name}_boxes"], data[f"{name}_before"], data[f"{name}_after"],
                                  data[f"{name}_status"] if f"{name}_status" in data else None,
                                  data[f"{name}_committed"] if f"{name}_committed" in data else None)
                    for name in ("undo", "redo")
                }
        except (OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise ValueError(f"not an edit history: {e}") from e
        history._undo.extend(stacks["undo"])
        history._redo.extend(stacks["redo"])
        return history


def _paste(mask: np.ndarray, edit: MaskEdit, patch: np.ndarray) -> np.ndarray:
    out = np.array(mask, dtype=bool, copy=True)
    out[edit.y0 : edit.y1, edit.x0 : edit.x1] = patch
    return out


def _pack(patches: list[np.ndarray]) -> np.ndarray:
    if not patches:
        return np.zeros(0, dtype=np.uint8)
    return np.packbits(np.concatenate([p.ravel() for p in patches]))


def _unpack(boxes: np.ndarray, before_bits: np.ndarray, after_bits: np.ndarray,
            statuses: np.ndarray | None, committed: np.ndarray | None) -> list[MaskEdit]:
    """The edits of one stack; `statuses`: each one's status before it ("" for none), None in a history written
    before statuses were kept; `committed`: whether the frame had a committed mask before each, None in a history
    written before that was kept (all had, as undo then assumed)."""
    sizes = [(int(y1 - y0), int(x1 - x0)) for y0, x0, y1, x1 in boxes]
    total = sum(h * w for h, w in sizes)
    before = np.unpackbits(before_bits, count=total).astype(bool)
    after = np.unpackbits(after_bits, count=total).astype(bool)
    for name, values in (("statuses", statuses), ("committed flags", committed)):
        if values is not None and len(values) != len(boxes):
            raise ValueError(f"{len(values)} {name} for {len(boxes)} edits")
    edits, offset = [], 0
    for k, ((y0, x0, y1, x1), (h, w)) in enumerate(zip(boxes, sizes)):
        n = h * w
        status = None if statuses is None else str(statuses[k]) or None
        edits.append(
            MaskEdit(int(y0), int(x0), int(y1), int(x1),
                     before[offset : offset + n].reshape(h, w), after[offset : offset + n].reshape(h, w), status,
                     True if committed is None else bool(committed[k]))
        )
        offset += n
    return edits


# --- tools ---------------------------------------------------------------------------------------


def _pixel(x: float, y: float) -> tuple[int, int]:
    return int(np.floor(x)), int(np.floor(y))


def stroke_pixels(points: Sequence[tuple[float, float]]) -> np.ndarray:
    """(N, 2) int (x, y) centres along the polyline through `points`, 8-connected with no gaps."""
    pixels = [_pixel(x, y) for x, y in points]
    if not pixels:
        return np.zeros((0, 2), dtype=np.int64)
    out = [np.array([pixels[0]], dtype=np.int64)]
    for (xa, ya), (xb, yb) in zip(pixels[:-1], pixels[1:]):
        steps = max(abs(xb - xa), abs(yb - ya))
        if steps == 0:
            continue
        t = np.arange(1, steps + 1) / steps
        xs = np.floor(xa + t * (xb - xa) + 0.5).astype(np.int64)
        ys = np.floor(ya + t * (yb - ya) + 0.5).astype(np.int64)
        out.append(np.stack([xs, ys], axis=1))
    return np.concatenate(out)


def brush_kernel(size: int) -> np.ndarray:
    """uint8 (size, size) round stamp `size` pixels across: the pixel centres within size/2 of its centre.
    Size 1 is one pixel, 2 a 2x2 square, 3 a 3x3 square, 4 a 4x4 square less its corners. Stamped on a
    pixel by dilation (OpenCV's anchor size // 2), kernel index k lands at offset size // 2 - k: even sizes
    reach one pixel further down and right than up and left."""
    if size < 1:
        raise ValueError(f"a brush is at least 1 pixel across, got {size}")
    offsets = np.arange(size) - (size - 1) / 2
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= (size / 2) ** 2).astype(np.uint8)


def paint_stroke(mask: np.ndarray, points: Sequence[tuple[float, float]], size: int, value: bool) -> np.ndarray:
    """Brush (value=True) or eraser (False): a `brush_kernel(size)` stamp at every pixel of the polyline
    through `points`."""
    out = np.array(mask, dtype=bool, copy=True)
    h, w = out.shape
    kernel = brush_kernel(size)
    r = kernel.shape[0] // 2
    centres = stroke_pixels(points)
    xs, ys = centres[:, 0], centres[:, 1]
    near = (xs >= -r) & (xs < w + r) & (ys >= -r) & (ys < h + r)  # discs that can reach the image
    xs, ys = xs[near], ys[near]
    if len(xs) == 0:
        return out
    # union of discs = the centre pixels dilated by the disc, on a canvas just big enough to hold them
    x0, y0 = int(xs.min()) - r, int(ys.min()) - r
    canvas = np.zeros((int(ys.max()) + r + 1 - y0, int(xs.max()) + r + 1 - x0), dtype=np.uint8)
    canvas[ys - y0, xs - x0] = 1
    stamped = cv2.dilate(canvas, kernel) > 0
    cy0, cx0 = max(y0, 0), max(x0, 0)
    cy1, cx1 = min(y0 + canvas.shape[0], h), min(x0 + canvas.shape[1], w)
    region = stamped[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    out[cy0:cy1, cx0:cx1][region] = value
    return out


def fill_polygon(mask: np.ndarray, points: Sequence[tuple[float, float]], value: bool = True) -> np.ndarray:
    """Set the polygon's interior and its boundary pixels (the polygon through the vertex pixels) to `value`."""
    out = np.array(mask, dtype=bool, copy=True)
    if len(points) == 0:
        return out
    vertices = np.array([_pixel(x, y) for x, y in points], dtype=np.int32).reshape(-1, 1, 2)
    region = np.zeros(out.shape, dtype=np.uint8)
    cv2.fillPoly(region, [vertices], 1)
    cv2.polylines(region, [vertices], True, 1)
    out[region > 0] = value
    return out


def flood_fill(mask: np.ndarray, x: float, y: float, value: bool = True) -> np.ndarray:
    """Set the 4-connected region of equal pixels around (x, y) to `value`.

    4-connectivity so that a closed outline drawn with a 1 px brush (8-connected) holds the fill.
    """
    out = np.array(mask, dtype=bool, copy=True)
    px, py = _pixel(x, y)
    h, w = out.shape
    if not (0 <= px < w and 0 <= py < h) or out[py, px] == value:
        return out
    region = out.astype(np.uint8)
    fill_mask = np.zeros((h + 2, w + 2), dtype=np.uint8)
    cv2.floodFill(region, fill_mask, (px, py), 2, flags=4)
    out[region == 2] = value
    return out


def delete_component(mask: np.ndarray, x: float, y: float) -> np.ndarray:
    """Clear the 8-connected component under (x, y) (a false alarm); unchanged if (x, y) is background."""
    out = np.array(mask, dtype=bool, copy=True)
    px, py = _pixel(x, y)
    h, w = out.shape
    if not (0 <= px < w and 0 <= py < h) or not out[py, px]:
        return out
    _, labels = label_components(out)
    out[labels == labels[py, px]] = False
    return out


def accept_targets(
    committed: np.ndarray | None, predicted: np.ndarray, target_ids: Iterable[int] | None = None
) -> np.ndarray:
    """`committed` plus the chosen predicted targets (ids as in `extract_targets`; None = all of them)."""
    predicted = np.asarray(predicted) > 0
    out = np.zeros(predicted.shape, dtype=bool) if committed is None else np.array(committed, dtype=bool, copy=True)
    if target_ids is None:
        return out | predicted
    _, labels = label_components(predicted)
    ids = [i for i in target_ids if i > 0]
    return out | np.isin(labels, ids)


def grow_target(
    image: np.ndarray,
    x: float,
    y: float,
    window: int = 15,
    k: float = 3.0,
    max_area: int = 256,
    snap_radius: int = 3,
    fit_slope: bool = True,
) -> np.ndarray:
    """"Grow target here": the bright region around a click, as a full-size bool mask (empty if none).

    A pixel stands out when it is more than k * std above the background ring, the band between the
    `window` x `window` box centred on the click and a box twice its size: above the ring's mean, or, when
    nothing near the click stands out so, above the plane fitted to the ring (std about the plane), so that
    a sky gradient or a cloud's slope across the ring does not count as noise. On NUAA-SIRST, a click at each
    of the 533 targets' brightest pixel then finds nothing on 6 instead of 21 (benchmarks/grow_probe.py). What
    stands out of the plane alone is refused when it is one pixel, or runs into an edge of the window inside
    the frame (clutter).
    The region is grown from the click (or from the pixel standing out most within `snap_radius` of it,
    when the click itself does not stand out), brightest neighbour first over 8-connected pixels that stand
    out inside the window, stopping at `max_area`. Works on the 8-bit image or on raw values; no-data (NaN,
    +-inf) pixels never stand out and are left out of the ring. `fit_slope=False` keeps to the ring's mean
    (propagation, which tries its own thresholds and must see a target vanish).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"grow_target needs a 2-D image, got shape {image.shape}")
    h, w = image.shape
    out = np.zeros((h, w), dtype=bool)
    px, py = _pixel(x, y)
    if not (0 <= px < w and 0 <= py < h):
        return out
    half = max(int(window) // 2, 1)
    wy0, wy1, wx0, wx1 = max(py - half, 0), min(py + half + 1, h), max(px - half, 0), min(px + half + 1, w)
    ry0, ry1 = max(py - 2 * half, 0), min(py + 2 * half + 1, h)
    rx0, rx1 = max(px - 2 * half, 0), min(px + 2 * half + 1, w)
    values = image[ry0:ry1, rx0:rx1].astype(np.float64)
    in_window = np.zeros(values.shape, dtype=bool)
    in_window[wy0 - ry0 : wy1 - ry0, wx0 - rx0 : wx1 - rx0] = True
    ring = in_window.copy() if in_window.all() else ~in_window  # the window covers the whole image: its pixels
    ring &= np.isfinite(values)
    if not ring.any():
        return out

    click = (py - wy0, px - wx0)
    # a plane needs a ring to fit (a 1-px-wide strip's ring is 2 pixels, which any plane fits exactly)
    fit_slope = fit_slope and ring.sum() >= MIN_RING_FOR_PLANE
    flat_spread = None
    for planar in (False, True) if fit_slope else (False,):
        level, spread = _ring_background(values, ring, planar)
        if planar:
            # a noiseless ramp fits its plane to rounding: what stands out of that is no target
            spread = max(spread, 0.5 if np.issubdtype(image.dtype, np.integer) else 0.0, 1e-3 * flat_spread)
        flat_spread = spread
        excess = (values - level)[wy0 - ry0 : wy1 - ry0, wx0 - rx0 : wx1 - rx0]
        region = _grow_above(excess, k * spread, click, snap_radius, max_area)
        if planar and (region.sum() < 2 or _cut_by_window(region, (wy0, wy1, wx0, wx1), (h, w))):
            # the slope's threshold is the lower one: a lone pixel there is noise, and a region running into
            # the window's edge inside the frame is clutter (a pole, a cloud's rim) larger than any target
            region[:] = False
        if region.any():
            out[wy0:wy1, wx0:wx1] = region
            break
    return out


MIN_RING_FOR_PLANE = 12


def _cut_by_window(region: np.ndarray, window: tuple[int, int, int, int], frame_shape: tuple[int, int]) -> bool:
    """Whether `region` (window-sized) reaches an edge of its window that lies inside the frame."""
    wy0, wy1, wx0, wx1 = window
    h, w = frame_shape
    return bool((wy0 > 0 and region[0].any()) or (wy1 < h and region[-1].any())
                or (wx0 > 0 and region[:, 0].any()) or (wx1 < w and region[:, -1].any()))


def _ring_background(values: np.ndarray, ring: np.ndarray, planar: bool) -> tuple[np.ndarray | float, float]:
    """(background level over `values`, std of the ring's pixels about it): the ring's mean, or the plane
    a + b * row + c * column fitted to the ring by least squares."""
    samples = values[ring]
    mean = samples.mean()
    if not planar:
        return mean, samples.std()
    rows, cols = np.nonzero(ring)
    design = np.column_stack([np.ones(len(rows)), rows, cols])
    # fitted about the mean, so that a flat ring gives a flat plane exactly (not one off by rounding)
    a, b, c = np.linalg.lstsq(design, samples - mean, rcond=None)[0]
    yy, xx = np.mgrid[: values.shape[0], : values.shape[1]]
    return mean + a + b * yy + c * xx, float(np.std(samples - mean - design @ (a, b, c)))


def _grow_above(
    excess: np.ndarray, threshold: float, click: tuple[int, int], snap_radius: int, max_area: int
) -> np.ndarray:
    """The 8-connected pixels of `excess` above `threshold` grown brightest first from the click (or from the
    highest pixel within `snap_radius` of it), at most `max_area` of them; empty when the seed is not above."""
    h, w = excess.shape
    region = np.zeros((h, w), dtype=bool)
    above = np.isfinite(excess) & (excess > threshold)  # no data (NaN, +-inf) never stands out
    seed = click
    if not above[seed]:
        cy, cx = click
        sy0, sx0 = max(cy - snap_radius, 0), max(cx - snap_radius, 0)
        near = excess[sy0 : cy + snap_radius + 1, sx0 : cx + snap_radius + 1]
        iy, ix = np.unravel_index(int(np.argmax(np.where(np.isfinite(near), near, -np.inf))), near.shape)
        seed = (sy0 + int(iy), sx0 + int(ix))
        if not above[seed]:
            return region
    heap = [(-excess[seed], seed)]
    queued = {seed}
    area = 0
    while heap and area < max_area:
        _, (cy, cx) = heapq.heappop(heap)
        region[cy, cx] = True
        area += 1
        for ny in (cy - 1, cy, cy + 1):
            for nx in (cx - 1, cx, cx + 1):
                if 0 <= ny < h and 0 <= nx < w and (ny, nx) not in queued and above[ny, nx]:
                    queued.add((ny, nx))
                    heapq.heappush(heap, (-excess[ny, nx], (ny, nx)))
    return region


def mask_diff(predicted: np.ndarray, committed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(only in the prediction, only in the committed mask, in both) as bool arrays."""
    predicted = np.asarray(predicted) > 0
    committed = np.asarray(committed) > 0
    return predicted & ~committed, committed & ~predicted, predicted & committed
