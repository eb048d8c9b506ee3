"""Targets: the 8-connected components of a mask, with the numbers an analyst reads.

Ids follow raster order (the first pixel of target 1 comes before that of target 2 in row-major
scan), the order the field's Pd/Fa code matches targets in; OpenCV's own labels do not guarantee it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from model.metrics import components


@dataclass(frozen=True)
class Target:
    id: int  # 1-based, raster order
    cx: float  # centroid column (unweighted mean of pixel x), 0-based pixels
    cy: float  # centroid row
    area: int
    x0: int  # bbox, inclusive
    y0: int
    x1: int
    y1: int
    peak_score: float  # max of the score map inside the component (nan without one)


SNAP_RADIUS = 2  # px: a click or the cursor this far beside a target still points at it


def nearest_pixel(mask: np.ndarray, x: float, y: float, radius: int = SNAP_RADIUS) -> tuple[int, int] | None:
    """(x, y) of the pixel of `mask` under the pixel at (x, y), else of the nearest one within `radius` in each
    axis; None when there is none."""
    h, w = np.shape(mask)
    px, py = int(np.floor(x)), int(np.floor(y))
    x0, y0 = max(px - radius, 0), max(py - radius, 0)
    window = np.asarray(mask)[y0 : min(py + radius + 1, h), x0 : min(px + radius + 1, w)] > 0
    if not window.any():
        return None
    ys, xs = np.nonzero(window)
    nearest = int(np.argmin((ys + y0 - py) ** 2 + (xs + x0 - px) ** 2))
    return int(xs[nearest]) + x0, int(ys[nearest]) + y0


def label_components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """8-connected labels in raster order: (count, labels int32 HxW, 0 = background)."""
    found = components((np.asarray(mask) > 0).astype(np.uint8))
    return len(found), found.labels


def extract_targets(mask: np.ndarray, score: np.ndarray | None = None) -> list[Target]:
    """Targets of a boolean (or 0/255) mask; `score` is a float map of the same size (logits or probabilities)."""
    found = components((np.asarray(mask) > 0).astype(np.uint8))
    return _targets(found, None if score is None else lambda ys, xs: np.asarray(score)[ys, xs])


def _targets(found, score_at) -> list[Target]:
    """The Targets of `components`' result; `score_at(ys, xs)` gives the score of those pixels (None: no score)."""
    n = len(found)
    if n == 0:
        return []
    ys, xs = np.nonzero(found.labels)
    ids = found.labels[ys, xs]
    x0 = np.full(n + 1, np.iinfo(np.int64).max)
    y0 = x0.copy()
    x1 = np.full(n + 1, -1)
    y1 = x1.copy()
    np.minimum.at(x0, ids, xs)
    np.minimum.at(y0, ids, ys)
    np.maximum.at(x1, ids, xs)
    np.maximum.at(y1, ids, ys)
    peak = np.full(n + 1, np.nan)
    if score_at is not None:
        peak[:] = -np.inf
        np.maximum.at(peak, ids, np.asarray(score_at(ys, xs), np.float64))
    return [
        Target(
            id=i,
            cx=float(found.centroids[i - 1, 1]),
            cy=float(found.centroids[i - 1, 0]),
            area=int(found.areas[i - 1]),
            x0=int(x0[i]),
            y0=int(y0[i]),
            x1=int(x1[i]),
            y1=int(y1[i]),
            peak_score=float(peak[i]),
        )
        for i in range(1, n + 1)
    ]


def committed_targets(committed: np.ndarray, prediction: np.ndarray | None, proposals: list[Target]) -> list[Target]:
    """The targets of the analyst's committed mask, as export writes them (`extract_targets`: 8-connected, ids in
    raster order), each with the highest peak score of the proposal targets it overlaps, and NaN for one that
    overlaps none (drawn by hand).

    `proposals` are the targets of `prediction` with the ids `extract_targets` gives its components (detections.csv:
    the saved proposal mask's components, peaks of its logits). Without them, or when their ids are not those of
    `prediction`'s components (1..n), no target inherits a score."""
    count, labels = (0, None) if prediction is None else label_components(prediction)
    if count == 0 or sorted(t.id for t in proposals) != list(range(1, count + 1)):
        return extract_targets(committed)
    peak_of_label = np.full(count + 1, -np.inf)  # label 0 (outside the proposal) gives no score
    for t in proposals:
        peak_of_label[t.id] = t.peak_score
    # scored at the committed pixels only (a full-frame score map tripled the time, in the GUI thread)
    found = components((np.asarray(committed) > 0).astype(np.uint8))
    return [replace(t, peak_score=math.nan) if t.peak_score == -math.inf else t
            for t in _targets(found, lambda ys, xs: peak_of_label[labels[ys, xs]])]
