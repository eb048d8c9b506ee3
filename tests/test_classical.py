from __future__ import annotations

import warnings

import numpy as np
import pytest

from model.classical import CLASSICAL_DETECTORS, ClassicalDetector, make_classical_detector, pstnn_score
from model.detectors import FrameResult
from model.metrics import components

BLOB_CENTRE = (101, 151)  # row, col


def gradient_scene(shape=(256, 256), seed=0) -> np.ndarray:
    """A smooth gradient with Gaussian noise and one bright 3x3 blob."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = 60 + 0.3 * cols + 0.2 * rows + rng.normal(0, 3, shape)
    row, col = BLOB_CENTRE
    image[row - 1 : row + 2, col - 1 : col + 2] += 60
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(CLASSICAL_DETECTORS))
def test_detector_finds_the_blob_with_few_false_alarms(name):
    detector = make_classical_detector(name)
    assert detector.name == name and detector.device == "cpu"
    (result,) = detector.detect([gradient_scene()])
    assert isinstance(result, FrameResult)
    assert result.logits.shape == (256, 256) and result.logits.dtype == np.float32
    found = components(result.mask)
    distances = np.linalg.norm(found.centroids - np.array(BLOB_CENTRE), axis=1)
    assert (distances < 3).sum() == 1
    assert len(found) - 1 <= 2


@pytest.mark.parametrize("name", sorted(CLASSICAL_DETECTORS))
@pytest.mark.parametrize("shape", [(97, 173), (40, 40), (23, 31), (5, 7)])
def test_non_square_and_small_images(name, shape):
    image = gradient_scene((max(shape[0], 104), max(shape[1], 154)))[: shape[0], : shape[1]]
    results = make_classical_detector(name).detect([image, image.T.copy()])
    assert [r.logits.shape for r in results] == [shape, shape[::-1]]
    assert all(r.logits.dtype == np.float32 and np.isfinite(r.logits).all() for r in results)


@pytest.mark.parametrize("name", sorted(CLASSICAL_DETECTORS))
def test_deterministic(name):
    image = gradient_scene((120, 90), seed=3)
    first, second = (make_classical_detector(name).detect([image])[0].logits for _ in range(2))
    np.testing.assert_array_equal(first, second)


def test_flat_image_gives_no_detection():
    flat = np.full((64, 64), 80, np.uint8)
    for name in CLASSICAL_DETECTORS:
        assert not make_classical_detector(name).detect([flat])[0].mask.any(), name


@pytest.mark.parametrize("value", [0, 80, 255])
@pytest.mark.parametrize("shape", [(64, 80), (40, 40), (5, 7)])
def test_a_constant_frame_has_no_target_and_no_numpy_warning(value, shape):
    """A blank or saturated sensor frame (8-bit 0 after a 16-bit window): PSTNN's rank estimate divided 0
    by 0 and numpy's RuntimeWarning, with a line of model/classical.py, reached the user."""
    flat = np.full(shape, value, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in CLASSICAL_DETECTORS:
            assert not make_classical_detector(name).detect([flat])[0].mask.any(), name
        score = pstnn_score(flat)
    assert score.shape == shape and score.dtype == np.float32 and not score.any()


def test_area_filter_drops_too_large_and_too_small_components():
    score = np.zeros((100, 100), np.float32)
    score[10:40, 10:40] = 10  # 900 px > max(0.5% of 10000, 100)
    score[70:73, 70:73] = 10  # 9 px: kept
    score[90, 5] = 10  # 1 px < min_area
    detector = ClassicalDetector("test", lambda image: score, k=1.0, min_area=2)
    mask = detector.detect([np.zeros((100, 100), np.uint8)])[0].mask
    assert mask.sum() == 9 and mask[70:73, 70:73].all()


def test_pstnn_target_image_is_sparse_and_non_negative():
    score = pstnn_score(gradient_scene())
    assert score.min() >= 0
    assert score[BLOB_CENTRE] > 0
    assert np.count_nonzero(score) < 0.05 * score.size


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown classical method"):
        make_classical_detector("ipi")
