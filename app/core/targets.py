"""Targets: the 8-connected components of a mask, with the numbers an analyst reads."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Target:
    id: int  # 1-based, raster label order
    cx: float  # centroid column (unweighted mean of pixel x), 0-based pixels
    cy: float  # centroid row
    area: int
    x0: int  # bbox, inclusive
    y0: int
    x1: int
    y1: int
    peak_score: float  # max of the score map inside the component (nan without one)


def label_components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """8-connected labels in raster order: (count, labels int32 HxW, 0 = background)."""
    n, labels = cv2.connectedComponents((np.asarray(mask) > 0).astype(np.uint8), connectivity=8)
    return n - 1, labels


def extract_targets(mask: np.ndarray, score: np.ndarray | None = None) -> list[Target]:
    """Targets of a boolean (or 0/255) mask; `score` is a float map of the same size (logits or probabilities)."""
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    targets = []
    for i in range(1, n):
        ys, xs = _component_pixels(labels, stats, i)
        peak = float(score[ys, xs].max()) if score is not None else float("nan")
        targets.append(
            Target(
                id=i,
                cx=float(xs.mean()),
                cy=float(ys.mean()),
                area=int(len(xs)),
                x0=int(xs.min()),
                y0=int(ys.min()),
                x1=int(xs.max()),
                y1=int(ys.max()),
                peak_score=peak,
            )
        )
    return targets


def _component_pixels(labels: np.ndarray, stats: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    x, y, w, h = stats[i, :4]
    ys, xs = np.nonzero(labels[y : y + h, x : x + w] == i)
    return ys + y, xs + x
