"""Numbers the review app shows next to the image: a target's local contrast (SNR) and per-frame IoU / Pd, and
the status bar's texts of them.

Qt-free, so the widgets stay thin and these are tested without a display.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from app.core.targets import Target, extract_targets, nearest_pixel
from model.metrics import Box, components, greedy_match, match_boxes

if TYPE_CHECKING:
    from app.session import FrameLayers

PEAK_RADIUS = 2  # the target's peak is searched in a (2r+1)^2 box around the cursor
RING_GAP = 3  # background ring starts this far outside the target box...
RING_WIDTH = 6  # ...and is this many pixels wide
EXTENT_RADIUS = 15  # without a mask, the target under the cursor is looked for this far around its peak


def local_snr(frame: np.ndarray, x: int, y: int, *masks: np.ndarray | None) -> tuple[float, float]:
    """(peak, SNR) of the target under the cursor, by the Targets list's definition (`target_snr`): its raw
    peak against a ring around its box, (peak - mean(ring)) / std(ring); +-inf on a flat ring, nan where
    the peak is as flat as it.

    The target is the component under (or within SNAP_RADIUS of) (x, y) of the first of `masks` that has
    one (pass first the mask whose targets the Targets list shows), with every pixel of that
    mask left out of the ring: the same number as the list's. Elsewhere it is the bright region around
    the brightest pixel within PEAK_RADIUS: the pixels 8-connected to it above half its height over the
    local median (within EXTENT_RADIUS), so the ring lies outside the whole target wherever on it the
    cursor is. Where nothing stands out (the peak no brighter than that median) the box is the
    (2r+1)^2 box around the cursor."""
    h, w = frame.shape
    for mask in masks:
        box = _component_box(mask, x, y) if mask is not None else None
        if box is not None:
            return _box_snr(frame, *box, mask)
    x0, y0 = max(x - PEAK_RADIUS, 0), max(y - PEAK_RADIUS, 0)
    x1, y1 = min(x + PEAK_RADIUS, w - 1), min(y + PEAK_RADIUS, h - 1)
    if x0 > x1 or y0 > y1:
        return float("nan"), float("nan")
    around = frame[y0 : y1 + 1, x0 : x1 + 1]
    if np.isnan(around).all():  # a float frame's no-data pixels
        return float("nan"), float("nan")
    py, px = np.unravel_index(int(np.nanargmax(around)), around.shape)
    return _box_snr(frame, *_bright_region_box(frame, x0 + int(px), y0 + int(py)), None)


def cursor_readout(frame: np.ndarray, x: int, y: int, *masks: np.ndarray | None,
                   measured: np.ndarray | None = None) -> str | None:
    """Raw value and local contrast (`local_snr`, of `measured` when given: the frame with its bad pixels
    repaired, so that a stuck pixel is neither the local peak nor the ring's noise) at (x, y); None when (x, y)
    is not on the frame."""
    if not (0 <= y < frame.shape[0] and 0 <= x < frame.shape[1]):
        return None
    value = frame[y, x]
    value_text = f"{int(value)}" if np.issubdtype(frame.dtype, np.integer) else f"{float(value):.5g}"
    if not np.isfinite(value):  # no data (NaN, infinite): no contrast to measure there
        return f"x {x}  y {y}  value {value_text} (no data)"
    peak, snr = local_snr(frame if measured is None else measured, x, y, *masks)
    snr_text = "-" if not math.isfinite(snr) else f"{snr:.1f}"
    peak_text = "-" if not math.isfinite(peak) else f"{peak:g}"
    return f"x {x}  y {y}  value {value_text}  |  local peak {peak_text}  SNR {snr_text}"


def target_snr(frame: np.ndarray, target: Target, mask: np.ndarray | None = None) -> float:
    """SNR of a target: its raw peak against a ring around its box (mask pixels left out of the ring)."""
    return _box_snr(frame, target.x0, target.y0, target.x1, target.y1, mask)[1]


def _component_box(mask: np.ndarray, x: int, y: int) -> tuple[int, int, int, int] | None:
    """Box (x0, y0, x1, y1, inclusive) of the 8-connected component of `mask` under or nearest (x, y)
    (`nearest_pixel`, as the accept tool picks a target); None when there is none."""
    pixel = nearest_pixel(mask, x, y)
    if pixel is None:
        return None
    fill = (np.asarray(mask) > 0).astype(np.uint8)
    _, _, _, (bx, by, bw, bh) = cv2.floodFill(fill, None, pixel, 2, flags=8)
    return bx, by, bx + bw - 1, by + bh - 1


def _bright_region_box(frame: np.ndarray, px: int, py: int) -> tuple[int, int, int, int]:
    """Box of the pixels 8-connected to (px, py) above half its height over the median of the window of
    EXTENT_RADIUS around it; the (2r+1)^2 box around (px, py) when it is no brighter than that median."""
    h, w = frame.shape
    x0, y0 = max(px - EXTENT_RADIUS, 0), max(py - EXTENT_RADIUS, 0)
    window = frame[y0 : min(py + EXTENT_RADIUS + 1, h), x0 : min(px + EXTENT_RADIUS + 1, w)].astype(np.float64)
    peak, background = float(frame[py, px]), float(np.nanmedian(window))
    if not peak > background:
        return (max(px - PEAK_RADIUS, 0), max(py - PEAK_RADIUS, 0), min(px + PEAK_RADIUS, w - 1),
                min(py + PEAK_RADIUS, h - 1))
    above = (window >= background + 0.5 * (peak - background)).astype(np.uint8)
    _, _, _, (bx, by, bw, bh) = cv2.floodFill(above, None, (px - x0, py - y0), 2, flags=8)
    return x0 + bx, y0 + by, x0 + bx + bw - 1, y0 + by + bh - 1


def _box_snr(frame, x0, y0, x1, y1, mask) -> tuple[float, float]:
    h, w = frame.shape
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if ix0 > ix1 or iy0 > iy1:
        return float("nan"), float("nan")
    inside = frame[iy0 : iy1 + 1, ix0 : ix1 + 1]
    if np.isnan(inside).all():  # a float frame's no-data pixels are left out throughout
        return float("nan"), float("nan")
    peak = float(np.nanmax(inside))
    ox0, oy0 = max(x0 - RING_GAP - RING_WIDTH, 0), max(y0 - RING_GAP - RING_WIDTH, 0)
    ox1, oy1 = min(x1 + RING_GAP + RING_WIDTH, w - 1), min(y1 + RING_GAP + RING_WIDTH, h - 1)
    window = frame[oy0 : oy1 + 1, ox0 : ox1 + 1].astype(np.float64)
    ring = np.ones(window.shape, bool)
    gx0, gy0 = max(x0 - RING_GAP, 0) - ox0, max(y0 - RING_GAP, 0) - oy0
    gx1, gy1 = min(x1 + RING_GAP, w - 1) - ox0, min(y1 + RING_GAP, h - 1) - oy0
    ring[gy0 : gy1 + 1, gx0 : gx1 + 1] = False
    if mask is not None:
        ring &= ~(np.asarray(mask)[oy0 : oy1 + 1, ox0 : ox1 + 1] > 0)
    values = window[ring]
    values = values[np.isfinite(values)]
    if values.size < 8:
        return peak, float("nan")
    contrast, std = peak - float(values.mean()), float(values.std())
    if std == 0:  # a flat background: no noise to measure the contrast against
        return peak, math.copysign(math.inf, contrast) if contrast else float("nan")
    return peak, contrast / std


def frame_iou_pd(prediction: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """IoU and Pd of one frame, Pd by the metrics' greedy centroid match (`model.metrics.greedy_match`).

    Returns nan for IoU when both masks are empty and nan for Pd when the frame has no ground-truth target.
    """
    p, g = np.asarray(prediction) > 0, np.asarray(truth) > 0
    either = p | g
    union = np.count_nonzero(either)
    iou = np.count_nonzero(p & g) / union if union else float("nan")
    if union:  # label only the box holding both masks: distances and 8-connectivity do not change
        rows, cols = np.flatnonzero(either.any(axis=1)), np.flatnonzero(either.any(axis=0))
        p = p[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        g = g[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    truth_targets = components(g)
    if not len(truth_targets):
        return iou, float("nan")
    _, found = greedy_match(components(p), truth_targets)
    return iou, float(found.mean())


def frame_box_pd(targets: list[Target], boxes: Sequence[Box]) -> tuple[int, int]:
    """(hits, false alarms) against box-only ground truth ((x0, y0, w, h) as `irsam eval --clip` reads
    boxes.csv), by the metrics' rule (`model.metrics.match_boxes`): predicted targets left unmatched are
    false alarms."""
    centroids = np.array([(t.cy, t.cx) for t in targets], np.float64).reshape(-1, 2)
    matched = match_boxes(centroids, boxes)
    return int(matched.sum()), int(np.count_nonzero(~matched))


def frame_scores_text(layers: FrameLayers, truth_boxes: Sequence[Box], scored: dict[str, tuple]) -> str:
    """Per-frame scores against the ground truth: of the prediction, and of the committed mask when the frame
    has one (deleted false alarms stay in the proposal, not in what will be exported). `truth_boxes` are the
    frame's boxes as `irsam eval --clip` scores them, unrounded; `scored` keeps, per layer name, the last
    (mask, truth, (IoU, Pd)) between calls."""
    named = layers.committed is not None  # with one layer scored, no name is needed
    parts = []
    for name, mask in (("prediction", layers.prediction), ("committed", layers.committed)):
        text = _score_text(layers, name, mask, truth_boxes, scored) if mask is not None else ""
        if text:
            parts.append(f"{name}: {text}" if named else text)
    return "   ".join(parts)


def _score_text(layers: FrameLayers, name: str, mask: np.ndarray, truth_boxes: Sequence[Box],
                scored: dict[str, tuple]) -> str:
    truth = layers.truth_mask
    if truth is None and layers.truth_boxes:
        targets = layers.proposals if name == "prediction" else extract_targets(mask)
        hits, false_alarms = frame_box_pd(targets, truth_boxes)
        return f"Pd {hits}/{len(truth_boxes)}  false alarms {false_alarms}"
    if truth is None:
        return ""
    # the session hands out the same arrays while a frame's files are unchanged: a re-show after a
    # status change is not scored again
    last = scored.get(name)
    if last is None or last[0] is not mask or last[1] is not truth:
        last = (mask, truth, frame_iou_pd(mask, truth))
        scored[name] = last
    iou, pd = last[2]
    iou_text = "-" if math.isnan(iou) else f"{iou:.2f}"
    pd_text = "-" if math.isnan(pd) else f"{pd:.2f}"
    return f"IoU {iou_text}  Pd {pd_text}"
