"""Regression cases for model.metrics, hand-computed against shared/spec/metrics.md."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from model.metrics import (
    BoxesFileError,
    BoxMetrics,
    InterpolatedMaskWarning,
    SegmentationMetrics,
    auc,
    box_outside_frame,
    components,
    match_targets,
    read_boxes_csv,
    roc_curve,
    score_boxes,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"


def canvas(shape=(32, 32)) -> np.ndarray:
    return np.zeros(shape, np.uint8)


def square(mask: np.ndarray, row: int, col: int, size: int, value: int = 255) -> np.ndarray:
    mask[row : row + size, col : col + size] = value
    return mask


def test_several_targets_pd_and_fa():
    gt = canvas()
    for row, col in [(2, 2), (2, 20), (20, 10)]:
        square(gt, row, col, 3)
    pred = canvas()
    square(pred, 2, 3, 3)  # hit (centroid 1 px away)
    square(pred, 21, 10, 2)  # hit (centroid (21.5, 10.5) vs (21, 11))
    square(pred, 28, 28, 2)  # false alarm, 4 px
    metrics = SegmentationMetrics()
    metrics.update(pred, gt)
    result = metrics.result()
    assert (result["hits"], result["n_targets"]) == (2, 3)
    assert result["pd"] == pytest.approx(2 / 3)
    assert result["false_alarm_pixels"] == 4
    assert result["fa"] == pytest.approx(4 / (32 * 32))


def test_errors_list_missed_targets_and_false_alarms_by_image_and_pd_by_area():
    gt = canvas()
    for row, col, size in [(2, 2, 3), (2, 20, 3), (20, 10, 8)]:  # 9, 9 and 64 px
        square(gt, row, col, size)
    pred = canvas()
    square(pred, 2, 3, 3)  # finds the first target
    square(pred, 20, 10, 8)  # finds the large one
    square(pred, 28, 28, 2)  # false alarm, 4 px, centroid (28.5, 28.5)
    metrics = SegmentationMetrics(keep_errors=True)
    metrics.update(pred, gt, "a")
    metrics.update(gt, gt, "b")  # perfect: not listed
    errors = metrics.errors()
    assert errors["frames"] == [{"image": "a", "missed": [{"row": 3.0, "col": 21.0, "area": 9}],
                                 "false_alarms": [{"row": 28.5, "col": 28.5, "area": 4}]}]
    assert errors["pd_by_target_area"] == {"1-9 px": {"targets": 4, "hits": 3}, "10-49 px": {"targets": 0, "hits": 0},
                                           "50-99 px": {"targets": 2, "hits": 2}, ">= 100 px": {"targets": 0, "hits": 0}}
    found = sum(b["hits"] for b in errors["pd_by_target_area"].values())
    assert found == metrics.result()["hits"] == 5
    with pytest.raises(RuntimeError, match="keep_errors"):
        SegmentationMetrics().errors()


def test_errors_follow_the_resize_convention():
    gt, pred = canvas((64, 64)), canvas((64, 64))
    square(gt, 10, 10, 2)  # 4 px, 256 px once scored at 512
    metrics = SegmentationMetrics(resize_to=512, keep_errors=True)
    metrics.update(pred, gt, "x")
    assert metrics.errors()["frames"][0]["missed"][0]["area"] == 256


def test_touching_targets_merge_into_one():
    gt = canvas()
    square(gt, 5, 5, 2)
    square(gt, 7, 7, 2)  # diagonal neighbour of (6, 6): 8-connected
    assert len(components(gt > 0)) == 1
    counts = match_targets(gt > 0, gt > 0)
    assert (counts.hits, counts.n_targets, counts.false_alarm_pixels) == (1, 1, 0)


def test_empty_image_without_false_alarms():
    metrics = SegmentationMetrics()
    metrics.update(np.full((16, 16), -3.0, np.float32), canvas((16, 16)))
    result = metrics.result()
    assert result["n_targets"] == 0 and np.isnan(result["pd"])
    assert result["fa"] == 0
    assert result["iou"] == 0 and result["niou"] == 0  # empty union counts 0, not 1


def test_empty_image_with_false_alarms():
    pred = square(canvas((16, 16)), 3, 3, 2)
    metrics = SegmentationMetrics()
    metrics.update(pred, canvas((16, 16)))
    assert metrics.result()["fa"] == pytest.approx(4 / 256)
    assert metrics.result()["niou"] == 0


@pytest.mark.parametrize("fa_mode, expected_pixels", [("corrected", 9 + 9 + 4), ("legacy", 4)])
def test_legacy_fa_drops_unmatched_blobs_of_a_matched_area(fa_mode, expected_pixels):
    gt = square(canvas(), 10, 10, 3)
    pred = square(canvas(), 10, 10, 3)  # matched, area 9
    square(pred, 1, 1, 3)  # unmatched, area 9: dropped by legacy
    square(pred, 25, 25, 3)  # unmatched, area 9: dropped by legacy
    square(pred, 1, 25, 2)  # unmatched, area 4: counted by both
    metrics = SegmentationMetrics(fa_mode=fa_mode)
    metrics.update(pred, gt)
    assert metrics.result()["false_alarm_pixels"] == expected_pixels
    assert metrics.result()["pd"] == 1.0


def test_centroid_distance_exactly_three_is_a_miss():
    gt = canvas()
    gt[10, 10] = 255
    pred = canvas()
    pred[10, 13] = 255
    counts = match_targets(pred > 0, gt > 0)
    assert counts.hits == 0 and counts.false_alarm_pixels == 1


def test_centroid_distance_2_99_is_a_hit():
    gt = canvas()
    gt[9:11, 10] = 255  # centroid (9.5, 10)
    pred = canvas()
    pred[5:15, 8:18] = 255  # 10x10, centroid (9.5, 12.5), column sum 1250
    # Moves along rows keep the row mean and add 4*10 + 9 = 49 to the column sum: mean 12.99.
    pred[5:9, 8] = 0
    pred[5:9, 18] = 255
    pred[9, 9] = 0
    pred[9, 18] = 255
    (centroid,) = components(pred > 0).centroids
    assert centroid == pytest.approx((9.5, 12.99))
    counts = match_targets(pred > 0, gt > 0)
    assert counts.hits == 1 and counts.false_alarm_pixels == 0


def test_matching_takes_the_first_component_in_raster_order_not_the_nearest():
    gt = canvas((8, 8))
    gt[1, 2] = 255
    pred = canvas((8, 8))
    pred[0, 4] = 255  # raster-first, distance sqrt(5)
    pred[1:3, 0] = 255  # nearer (distance ~2.06), area 2; OpenCV alone would number it first
    counts = match_targets(pred > 0, gt > 0)
    assert counts.hits == 1 and counts.false_alarm_pixels == 2
    assert components(pred > 0).areas.tolist() == [1, 2]


def test_hand_computed_iou_and_niou():
    metrics = SegmentationMetrics()
    gt = square(canvas(), 4, 4, 3)
    metrics.update(square(canvas(), 4, 5, 3), gt)  # intersection 6, union 12
    gt = square(canvas(), 20, 20, 2)
    metrics.update(gt.copy(), gt)  # 4 / 4
    metrics.update(canvas(), canvas())  # 0 / 0 -> 0
    result = metrics.result()
    assert result["iou"] == pytest.approx(10 / 16)
    assert result["niou"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert result["n_images"] == 3


def test_logits_are_binarised_strictly_above_zero():
    logits = np.zeros((8, 8), np.float32)
    logits[2, 2] = 1e-3
    gt = canvas((8, 8))
    gt[2, 2] = 255
    metrics = SegmentationMetrics()
    metrics.update(logits, gt)
    assert metrics.result()["iou"] == pytest.approx(1.0)
    assert metrics.result()["false_alarm_pixels"] == 0


def test_zero_one_masks_are_accepted_and_interpolated_masks_warn():
    gt01 = (square(canvas(), 4, 4, 3) > 0).astype(np.uint8)
    metrics = SegmentationMetrics()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.update(gt01, gt01)
        metrics.update(gt01 * 255, gt01 * 255)
    assert metrics.result()["iou"] == pytest.approx(1.0)
    interpolated = gt01 * 255
    interpolated[3, 4] = 128
    with pytest.warns(InterpolatedMaskWarning):
        metrics.update(gt01, interpolated)
    assert metrics.result()["n_targets"] == 3  # 128 is not target: the component is still the 3x3


def test_resize_to_512_scores_at_512():
    gt = square(canvas((64, 48)), 10, 20, 4)
    mask_metrics = SegmentationMetrics(resize_to=512)
    mask_metrics.update(gt > 0, gt)  # nearest on both sides: identical
    assert mask_metrics.result()["iou"] == pytest.approx(1.0)
    assert mask_metrics.result()["total_pixels"] == 512 * 512
    logits = np.where(gt > 0, 5.0, -5.0).astype(np.float32)  # symmetric: the bilinear zero crossing is mid-way
    logit_metrics = SegmentationMetrics(resize_to=512)
    logit_metrics.update(logits, gt)
    assert logit_metrics.result()["pd"] == 1.0
    assert logit_metrics.result()["iou"] > 0.9


def test_roc_matches_sklearn_example():
    fpr, tpr, thresholds = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1]
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert thresholds.tolist() == [np.inf, 0.8, 0.4, 0.35, 0.1]
    assert auc(fpr, tpr) == pytest.approx(0.75)


def test_roc_auc_perfect_inverted_and_random():
    rng = np.random.default_rng(0)
    labels = rng.random(20000) < 0.1
    assert auc(*roc_curve(labels.astype(float), labels)[:2]) == pytest.approx(1.0)
    assert auc(*roc_curve(-labels.astype(float), labels)[:2]) == pytest.approx(0.0)
    assert auc(*roc_curve(rng.random(20000), labels)[:2]) == pytest.approx(0.5, abs=0.03)


def test_curves_from_kept_scores():
    gt = square(canvas(), 10, 10, 3)
    score = np.zeros((32, 32), np.float32)
    score[10:13, 10:13] = 2.0
    score[25, 25] = 1.0  # a weaker false alarm
    metrics = SegmentationMetrics(keep_scores=True)
    metrics.update(score, gt)
    fpr, tpr, _, roc_auc = metrics.roc()
    assert roc_auc == pytest.approx(1.0)
    curve = metrics.pd_fa_curve(thresholds=[0.5, 1.5, 2.5])
    assert curve["pd"].tolist() == [1.0, 1.0, 0.0]
    assert curve["fa"].tolist() == [1 / 1024, 0.0, 0.0]
    with pytest.raises(RuntimeError):
        SegmentationMetrics().roc()


def test_read_boxes_csv_converts_matlab_pixels(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("frame,class,x,y,w,h\n1,DRONE,80.000,116.000,11.000,8.000\n3,DRONE,1,1,2,2\n3,BIRD,5.5,6,3,4\n")
    boxes = read_boxes_csv(path)
    assert boxes == {0: [(79.0, 115.0, 11.0, 8.0)], 2: [(0.0, 0.0, 2.0, 2.0), (4.5, 5.0, 3.0, 4.0)]}


def test_read_boxes_csv_accepts_an_excel_bom_blank_lines_and_integral_decimal_frames(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_bytes("frame,class,x,y,w,h\r\n1,DRONE,80,116,11,8\r\n\r\n4.0,DRONE,5.5,6,3,4\r\n,,,,,\r\n"
                     .encode("utf-8-sig"))
    assert read_boxes_csv(path) == {0: [(79.0, 115.0, 11.0, 8.0)], 3: [(4.5, 5.0, 3.0, 4.0)]}


HEADER = "frame,class,x,y,w,h\n1,DRONE,80,116,11,8\n"


@pytest.mark.parametrize("text, line, reason", [
    (HEADER + "4,DRONE,79.5\n", 3, "3 values where the header has 6: '4,DRONE,79.5'"),
    (HEADER + "4,DRONE,79.5,115.7,11,8,9\n", 3, "7 values where the header has 6"),
    ("1,DRONE,80,116,11,8\n", 1, "expected the header frame,class,x,y,w,h, found '1,DRONE,80,116,11,8'"),
    ("frame;class;x;y;w;h\n1;DRONE;80;116;11;8\n", 1, "found 'frame;class;x;y;w;h'"),
    ("", 1, "found an empty file"),
    (HEADER + "4,DRONE,abc,115.7,11,8\n", 3, "x 'abc' is not a number"),
    (HEADER + "four,DRONE,80,116,11,8\n", 3, "frame 'four' is not a number"),
    (HEADER + "4.5,DRONE,80,116,11,8\n", 3, "frame '4.5' is not a frame number (1 is the first frame)"),
    (HEADER + "0,DRONE,80,116,11,8\n", 3, "frame '0' is not a frame number"),
    (HEADER + "-2,DRONE,80,116,11,8\n", 3, "frame '-2' is not a frame number"),
    (HEADER + "4,DRONE,nan,115.7,11,8\n", 3, "x 'nan' is not a finite number"),
    (HEADER + "4,DRONE,80,inf,11,8\n", 3, "y 'inf' is not a finite number"),
    (HEADER + "\n4,DRONE,79.5,115.7,-11,8\n", 4, "width and height must be positive, found w '-11', h '8'"),
    (HEADER + "4,DRONE,79.5,115.7,11,0\n", 3, "width and height must be positive, found w '11', h '0'"),
])
def test_read_boxes_csv_refuses_a_malformed_file_naming_the_file_the_line_and_the_fault(tmp_path, text, line, reason):
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    with pytest.raises(BoxesFileError) as error:
        read_boxes_csv(path)
    message = str(error.value)
    assert message.startswith(f"{path}: line {line}: ") and reason in message and "\n" not in message
    assert isinstance(error.value, ValueError)  # what the commands catch
    assert path.read_text() == text  # read only


def test_read_boxes_csv_refuses_a_binary_file(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(BoxesFileError) as error:
        read_boxes_csv(path)
    assert str(error.value) == f"{path}: not UTF-8 text (a binary file, or another encoding)"


def test_read_real_clip_boxes():
    boxes = read_boxes_csv(SHARED / "data/sequences/IR_DRONE_146/boxes.csv")
    assert len(boxes[0]) == 2
    assert boxes[0][0] == pytest.approx((187.629, 83.270, 14.432, 10.723))


def test_score_boxes_inside_near_centre_and_false_alarms():
    pred = canvas()
    pred[5, 5] = 1  # inside box A
    pred[20, 12] = 1  # outside the 1x1 box B, 2 px from its centre
    pred[28, 28] = 1  # false alarm
    pred[0, 31] = 1  # false alarm
    boxes = [(3.0, 3.0, 5.0, 5.0), (10.0, 20.0, 1.0, 1.0), (15.0, 2.0, 2.0, 2.0)]  # C has nothing near
    score = score_boxes(pred, boxes)
    assert (score.hits, score.n_targets, score.false_alarms, score.false_alarm_pixels) == (2, 3, 2, 2)
    metrics = BoxMetrics()
    metrics.update(pred, boxes)
    metrics.update(canvas(), [])
    result = metrics.result()
    assert result["pd"] == pytest.approx(2 / 3)
    assert result["false_alarms_per_frame"] == 1.0
    assert result["n_frames"] == 2


def test_boxes_are_matlab_spatial_rectangles():
    """boxes.csv holds MATLAB spatial boxes (corner and size, fractional); they were read as pixel counts, so a
    box's last column and row were left out and its centre sat half a pixel off."""
    pred = canvas()
    pred[15, 20] = 1  # boxes.csv "11,11,10.9,10.9": 0-based centres 10 .. 20.9, so column 20 is inside
    assert score_boxes(pred, [(10.0, 10.0, 10.9, 10.9)]).hits == 1
    pred = canvas()
    pred[0, 9] = 1  # a box drawn tight round 1-based pixels 1..10 (x 0.5, w 10) holds 0-based columns 0..9
    far = canvas()
    far[0, 10] = 1  # the next column: outside it, and 6 px from its centre (4.5, 4.5)
    box = [(-0.5, -0.5, 10.0, 10.0)]
    assert (score_boxes(pred, box).hits, score_boxes(far, box).hits) == (1, 0)
    # a box whose edge is column 0's centre holds that column: it lies in the frame
    assert not box_outside_frame((-3.0, 5.0, 3.0, 2.0), (32, 32))
    assert box_outside_frame((-3.1, 5.0, 3.0, 2.0), (32, 32))


def test_one_component_detects_only_one_box():
    pred = canvas()
    pred[10, 10] = 1
    score = score_boxes(pred, [(8.0, 8.0, 5.0, 5.0), (8.0, 8.0, 5.0, 5.0)])
    assert (score.hits, score.false_alarms) == (1, 0)
