"""Target extraction: raster-order ids, exact centroids, boxes and peaks; the committed mask's targets with the
scores of the proposal targets they overlap."""
from __future__ import annotations

import math

import numpy as np

from app.core.project import ReviewProject
from app.core.targets import committed_targets, extract_targets, label_components, nearest_pixel
from model.detectors import FrameResult


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


def _proposal(shape=(20, 30)):
    """A proposal of three targets (peaks 4, 7, 2.5 in raster order) and its targets, as a detector's run saves them."""
    logits = np.full(shape, -5.0, np.float32)
    logits[2:4, 20:23], logits[2, 21] = 1.0, 4.0
    logits[3, 5] = 7.0
    logits[10:15, 1], logits[12, 1] = 1.0, 2.5
    return logits > 0, extract_targets(logits > 0, logits)


def test_committed_targets_keep_the_peak_of_the_proposal_they_overlap_and_hand_made_ones_have_none():
    prediction, proposals = _proposal()
    assert [t.peak_score for t in proposals] == [4.0, 7.0, 2.5]
    committed = np.zeros_like(prediction)
    committed[0, 0] = True  # drawn by hand, first in raster order
    committed[3, 4:7] = True  # the second proposal target, grown by a pixel each side
    committed[12:14, 1] = True  # part of the third
    targets = committed_targets(committed, prediction, proposals)
    assert [t.id for t in targets] == [1, 2, 3]
    assert [(t.x0, t.y0) for t in targets] == [(0, 0), (4, 3), (1, 12)]
    assert math.isnan(targets[0].peak_score) and targets[1].peak_score == 7.0 and targets[2].peak_score == 2.5
    assert [(t.cx, t.cy, t.area) for t in targets] == [(t.cx, t.cy, t.area) for t in extract_targets(committed)]


def test_a_committed_target_over_two_proposal_targets_takes_the_higher_peak():
    prediction, proposals = _proposal()
    committed = prediction.copy()
    committed[3, 6:20] = True  # joins the first two proposal targets
    (joined, third) = committed_targets(committed, prediction, proposals)
    assert joined.peak_score == 7.0 and third.peak_score == 2.5


def test_without_a_proposal_that_describes_the_prediction_no_score_is_inherited():
    prediction, proposals = _proposal()
    for mask, listed in ((None, proposals), (prediction, []), (prediction, proposals[:2])):
        (target,) = committed_targets(prediction & (label_components(prediction)[1] == 2), mask, listed)
        assert math.isnan(target.peak_score)
    assert committed_targets(np.zeros_like(prediction), prediction, proposals) == []


def test_detections_ids_are_the_raster_order_labels_of_the_saved_proposal_mask(tmp_path):
    """What `committed_targets` relies on: detections.csv, read back, numbers a frame's targets as
    `label_components` numbers the proposal mask the project hands out."""
    prediction, proposals = _proposal((24, 32))
    logits = np.where(prediction, 3.0, -5.0).astype(np.float32)
    logits[3, 5] = 7.0
    project = ReviewProject.create(tmp_path / "p", tmp_path / "frames", "folder", ["f0"], (24, 32),
                                   {"mode": "window", "low": 0.0, "high": 1.0}, {"name": "test"})
    project.save_prediction("f0", FrameResult(logits))
    project.flush_detections()
    reopened = ReviewProject.open(tmp_path / "p")
    assert reopened.detections_known("f0")  # read from detections.csv, not recomputed from the mask
    detections, mask = reopened.detections("f0"), reopened.prediction_mask("f0")
    count, labels = label_components(mask)
    assert [t.id for t in detections] == list(range(1, count + 1)) and count == 3
    for t in detections:
        ys, xs = np.nonzero(labels == t.id)
        assert (xs.min(), ys.min(), xs.max(), ys.max(), xs.size) == (t.x0, t.y0, t.x1, t.y1, t.area)
    assert [t.peak_score for t in detections] == [3.0, 7.0, 3.0]
