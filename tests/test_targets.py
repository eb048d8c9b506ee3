"""Target extraction: raster-order ids, exact centroids, boxes and peaks."""
from __future__ import annotations

import numpy as np

from app.core.targets import extract_targets, label_components, nearest_pixel


def test_targets_have_raster_order_ids_exact_stats_and_peaks():
    mask = np.zeros((20, 30), bool)
    mask[2:4, 20:23] = True  # first in raster order
    mask[3, 5] = True  # second: its first row is 3
    mask[10:15, 1] = True
    mask[11, 2] = True  # 8-connected to the column above
    score = np.zeros((20, 30), np.float32)
    score[3, 5] = 7.0
    score[2, 21] = 4.0
    score[12, 1] = 2.5
    targets = extract_targets(mask, score)
    assert [t.id for t in targets] == [1, 2, 3]
    a, b, c = targets
    assert (a.x0, a.y0, a.x1, a.y1, a.area) == (20, 2, 22, 3, 6)
    assert (a.cx, a.cy) == (21.0, 2.5) and a.peak_score == 4.0
    assert (b.cx, b.cy, b.area, b.peak_score) == (5.0, 3.0, 1, 7.0)
    assert (c.x0, c.y0, c.x1, c.y1, c.area) == (1, 10, 2, 14, 6)
    assert c.peak_score == 2.5
    n, labels = label_components(mask)
    assert n == 3 and labels[2, 20] == 1 and labels[3, 5] == 2 and labels[11, 2] == 3


def test_diagonal_pixels_are_one_target_and_no_score_gives_nan():
    mask = np.eye(5, dtype=bool)
    (t,) = extract_targets(mask)
    assert t.area == 5 and np.isnan(t.peak_score)
    assert extract_targets(np.zeros((4, 4), bool)) == []


def test_the_pixel_pointed_at_is_the_one_under_else_the_nearest_within_two_pixels():
    mask = np.zeros((10, 10), bool)
    mask[5, 5] = mask[0, 9] = True
    assert nearest_pixel(mask, 5.7, 5.2) == (5, 5)  # under the cursor (a scene position inside the pixel)
    assert nearest_pixel(mask, 7, 6) == (5, 5)  # 2 px beside it
    assert nearest_pixel(mask, 8, 5) is None  # 3 px: too far
    assert nearest_pixel(mask, 9.5, 1.5) == (9, 0)  # at the frame's edge
    assert nearest_pixel(np.zeros((3, 3), bool), 1, 1) is None
