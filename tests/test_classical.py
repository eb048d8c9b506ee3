from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

from model import classical
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


def reference_pstnn(image, patch=40, step=40, lambda_scale=0.7, mu=2e-3, rho=1.05, tol=1e-7, max_iterations=500):
    """PSTNN as written before its memory was cut: patches sliced one by one, every update a new array, one SVD
    call for all Fourier slices."""
    data = np.pad(image.astype(np.float64), [(0, max(patch - n, 0)) for n in image.shape], mode="reflect")
    rows, cols = (classical._patch_origins(length, patch, step) for length in data.shape)

    def to_patches(frame):
        return np.stack([frame[r : r + patch, c : c + patch] for r in rows for c in cols])

    observed, prior = to_patches(data), to_patches(classical._structure_tensor_prior(data))
    lam = lambda_scale / np.sqrt(patch * len(observed))
    rank = classical._tubal_rank_estimate(observed)
    observed_norm = np.sqrt(np.sum(observed**2))
    target, dual, weight = np.zeros_like(observed), np.zeros_like(observed), np.ones_like(observed)
    support = 0
    for _ in range(max_iterations):
        spectrum = np.fft.rfft(observed - target - dual / mu, axis=0)
        u, s, vh = np.linalg.svd(spectrum, full_matrices=False)
        s[:, rank:] = np.maximum(s[:, rank:] - 1.0 / mu, 0)
        background = np.fft.irfft((u * s[:, None, :]) @ vh, n=len(observed), axis=0)
        residual = observed - background - dual / mu
        target = np.sign(residual) * np.maximum(np.abs(residual) - weight * lam / mu, 0)
        weight = 1.0 / ((np.abs(target) + 0.01) * (prior + 1e-12))
        gap = background + target - observed
        dual += mu * gap
        mu *= rho
        new_support = int(np.count_nonzero(target))
        if np.sqrt(np.sum(gap**2)) / observed_norm < tol or (support > 0 and new_support == support):
            break
        support = new_support
    target_image = classical._from_patches(target, data.shape, rows, cols)
    return np.maximum(target_image[: image.shape[0], : image.shape[1]], 0).astype(np.float32)


@pytest.mark.parametrize("shape", [(256, 256), (250, 333), (23, 31)])
def test_pstnn_equals_the_reference_computation_exactly(monkeypatch, shape):
    """The in-place updates and the SVD in blocks of Fourier slices change where the numbers are kept, not
    the arithmetic: the score is bit for bit the reference's (tolerance 0)."""
    monkeypatch.setattr(classical, "_SVD_SLICES", 7)  # several SVD calls, the last one shorter
    image = gradient_scene((max(shape[0], 104), max(shape[1], 154)))[: shape[0], : shape[1]]
    np.testing.assert_array_equal(pstnn_score(image), reference_pstnn(image))


def test_patch_tensor_holds_the_patches_at_the_origins():
    image = np.arange(130 * 97, dtype=np.float64).reshape(130, 97)
    rows, cols = classical._patch_origins(130, 40, 40), classical._patch_origins(97, 40, 40)
    patches = classical._to_patches(image, rows, cols, 40)
    expected = np.stack([image[r : r + 40, c : c + 40] for r in rows for c in cols])
    np.testing.assert_array_equal(patches, expected)


def large_scene(shape=(1080, 1920), seed=5):
    """A smooth background with noise and six 3x3 targets spread over the frame; returns it and their centres."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    image = 80 + 30 * np.sin(rows / shape[0] * 3) * np.cos(cols / shape[1] * 2) + rng.normal(0, 3, shape)
    fractions = [(0.1, 0.1), (0.2, 0.8), (0.5, 0.5), (0.75, 0.3), (0.9, 0.93), (0.4, 0.15)]
    centres = np.array([(int(shape[0] * fr), int(shape[1] * fc)) for fr, fc in fractions])
    for row, col in centres:
        image[row - 1 : row + 2, col - 1 : col + 2] += 50
    return np.clip(image, 0, 255).astype(np.uint8), centres


def test_pstnn_finds_every_target_of_a_full_hd_frame():
    image, centres = large_scene()
    found = components(make_classical_detector("pstnn").detect([image])[0].mask)
    distances = np.linalg.norm(found.centroids[:, None] - centres[None], axis=2)
    assert (distances.min(axis=0) < 2).all()  # every target found where it is
    assert len(found) <= len(centres) + 2


def test_pstnn_peak_memory_is_a_few_frames():
    """The patch tensor (40x40 patches, step 40) is as large as the frame in float64. The ADMM keeps seven such
    arrays plus the half spectrum; it used to peak near 45 (a copy of every window of the chosen rows, 3.8 GB
    at 4000x3000). numpy's arrays are seen by tracemalloc; LAPACK's small workspaces are not."""
    image, _ = large_scene((720, 1280))
    tracemalloc.start()
    try:
        pstnn_score(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * image.size * 8


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown classical method"):
        make_classical_detector("ipi")
