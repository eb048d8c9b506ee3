"""Classical infrared small-target detectors: white Top-Hat, MPCM (multiscale patch-based contrast measure,
Wei et al. 2016) and PSTNN (partial sum of the tensor nuclear norm, Zhang & Peng 2019).

Each method gives a float score map (higher = more target-like). The detectors turn it into logits with
an adaptive per-image threshold, `logits = score - (mean + k * std)`, then push components whose area is
outside [min_area, max_area] below zero, so `logits > 0` is the detection like for every other detector.
That threshold needs frames much larger than their targets: alone in a frame, a target of A pixels raises
the std until it sits under mean + k * std, unless the frame has more than about k^2 * A pixels (README).
`threshold_k` is the analyst's sensitivity: the defaults (`DEFAULT_THRESHOLD_K`) were tuned on NUAA-SIRST, and
on a cluttered clip (clouds) the clutter raises the std until the threshold passes over the targets; a lower k
finds dimmer targets, and more clutter.

Top-Hat and MPCM only see targets that fit their window: a target larger than Top-Hat's structuring element
survives the opening and leaves no top-hat, and one larger than MPCM's largest cell is brighter than its own
neighbour cells. `target_size`, the longest side of the largest target sought, sizes both windows and the
area filter (`window_for`); the default, 7 px, is the windows the methods were tuned with (Top-Hat's 9 px
element, MPCM's scales 3 to 9).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import cv2
import numpy as np

from model.detectors import Detector, FrameResult

# --- score maps -----------------------------------------------------------------------------------------


def tophat_score(image: np.ndarray, size: int = 9) -> np.ndarray:
    """White top-hat (image minus its opening) with a size x size elliptical structuring element."""
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.morphologyEx(image.astype(np.float32), cv2.MORPH_TOPHAT, element, borderType=cv2.BORDER_REPLICATE)


_DIRECTIONS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, 1)])  # the other four are their opposites


def mpcm_score(image: np.ndarray, scales: Sequence[int] = (3, 5, 7, 9)) -> np.ndarray:
    """Bright-target MPCM: at each scale s, the centre s x s cell mean minus each of its 8 neighbouring cells'
    means (clipped at 0, so only brighter-than-surround counts), multiplied pairwise across opposite
    directions; the minimum over the 4 pairs is the scale's contrast, the maximum over scales the score."""
    smoothed = cv2.blur(image.astype(np.float32), (3, 3), borderType=cv2.BORDER_REFLECT)
    height, width = smoothed.shape
    score = np.zeros_like(smoothed)
    for s in scales:
        means = cv2.blur(smoothed, (s, s), borderType=cv2.BORDER_REFLECT)
        padded = np.pad(means, s, mode="edge")

        def shifted(dy: int, dx: int) -> np.ndarray:
            return padded[s + dy * s : s + dy * s + height, s + dx * s : s + dx * s + width]

        contrast = np.full_like(means, np.inf)
        for dy, dx in _DIRECTIONS:
            forward = np.maximum(means - shifted(dy, dx), 0)
            backward = np.maximum(means - shifted(-dy, -dx), 0)
            contrast = np.minimum(contrast, forward * backward)
        score = np.maximum(score, contrast)
    return np.sqrt(score)  # back to intensity units


def _structure_tensor_prior(image: np.ndarray) -> np.ndarray:
    """PSTNN's local prior: corner strength l1*l2/(l1+l2) times max(l1, l2) of the structure tensor,
    min-max scaled to [0, 1]."""
    blur = lambda a: cv2.GaussianBlur(a, (3, 3), 2, borderType=cv2.BORDER_REPLICATE)  # noqa: E731
    # Each array here is frame-sized (96 MB at 4000x3000 in float64): they are dropped as soon as they
    # are used, which keeps at most five alive.
    grad_y, grad_x = np.gradient(blur(image))
    j11, j12 = blur(grad_x * grad_x), blur(grad_x * grad_y)
    del grad_x
    j22 = blur(grad_y * grad_y)
    del grad_y
    root = np.sqrt((j11 - j22) ** 2 + 4 * j12**2)
    trace = j11 + j22
    del j11, j22, j12
    large, small = 0.5 * (trace + root), 0.5 * (trace - root)
    del trace, root
    prior = large * small / (large + small + 1e-12) * large
    lowest, span = prior.min(), prior.max() - prior.min()
    if span == 0:
        return np.zeros_like(prior)
    prior -= lowest
    prior /= span
    return prior


def _patch_origins(length: int, patch: int, step: int) -> np.ndarray:
    # The original stops at the last full step and leaves the far border uncovered; one more patch flush
    # with the border covers it.
    origins = np.arange(0, length - patch + 1, step)
    return origins if origins[-1] + patch == length else np.r_[origins, length - patch]


def _to_patches(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(image, (patch, patch))
    # np.ix_ picks the patches straight from the view; windows[rows][:, cols] first copied every window of the
    # chosen rows, patch * patch / step values per pixel (3.8 GB at 4000x3000)
    return windows[np.ix_(rows, cols)].reshape(-1, patch, patch)  # (n_patches, patch, patch): frontal slices first


def _from_patches(patches: np.ndarray, shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Mean of overlapping patches."""
    patch = patches.shape[1]
    total = np.zeros(shape, np.float64)
    count = np.zeros(shape, np.float64)
    for values, (r, c) in zip(patches, ((r, c) for r in rows for c in cols)):
        total[r : r + patch, c : c + patch] += values
        count[r : r + patch, c : c + patch] += 1
    return total / count


def _tubal_rank_estimate(tensor: np.ndarray, ratio: float = 0.1) -> int:
    """Number of leading singular values of the mode-1 unfolding above `ratio` times the largest (>= 1)."""
    unfolding = tensor.transpose(1, 0, 2).reshape(tensor.shape[1], -1)
    singular = np.linalg.svd(unfolding, compute_uv=False)
    if singular[0] == 0:  # an all-zero tensor: rank 1, as for any other
        return 1
    below = np.flatnonzero(singular / singular[0] < ratio)
    return max(int(below[0]) if len(below) else len(singular), 1)


_SVD_SLICES = 64  # Fourier slices per SVD call, so that its factors stay small next to the spectrum


def _prox_partial_tnn(tensor: np.ndarray, rank: int, tau: float, out: np.ndarray) -> np.ndarray:
    """Partial-sum TNN proximal step: in every Fourier slice along the patch axis, keep the `rank` largest
    singular values and soft-threshold the rest by tau. The real input makes the spectrum conjugate
    symmetric, so only the rfft half is decomposed. Writes the result into `out` (which may be `tensor`)."""
    spectrum = np.fft.rfft(tensor, axis=0)
    for start in range(0, len(spectrum), _SVD_SLICES):
        slices = spectrum[start : start + _SVD_SLICES]
        u, s, vh = np.linalg.svd(slices, full_matrices=False)
        s[:, rank:] = np.maximum(s[:, rank:] - tau, 0)
        np.matmul(u * s[:, None, :], vh, out=slices)
    out[...] = np.fft.irfft(spectrum, n=tensor.shape[0], axis=0)  # (irfft's out= needs NumPy 2)
    return out


def pstnn_score(
    image: np.ndarray,
    patch: int = 40,
    step: int = 40,
    lambda_scale: float = 0.7,
    mu: float = 2e-3,
    rho: float = 1.05,
    tol: float = 1e-7,
    max_iterations: int = 500,
) -> np.ndarray:
    """PSTNN target image: the patch tensor D (40x40 patches, step 40) is split by ADMM into a low-rank
    background B (partial-sum TNN) plus a sparse target T (weighted L1, reweighted each iteration by
    1 / (|T| + 0.01) and divided by the structure-tensor prior), stopping when T's support stops changing.
    The model is global, so the whole frame is one tensor: peak memory is about nine float64 copies of the
    frame, 0.9 GB at 4000x3000 (benchmarks/bench_pstnn.py)."""
    original_shape = image.shape
    if image.size == 0 or image.min() == image.max():
        # a constant frame (a blank sensor frame, a saturated one) holds no target; its patch tensor is all
        # background and has no singular value to scale the rank by
        return np.zeros(original_shape, np.float32)
    pad = [(0, max(patch - n, 0)) for n in original_shape]
    data = np.pad(image.astype(np.float64), pad, mode="reflect" if min(original_shape) > 1 else "edge")
    padded_shape = data.shape
    rows, cols = _patch_origins(data.shape[0], patch, step), _patch_origins(data.shape[1], patch, step)
    prior = _to_patches(_structure_tensor_prior(data), rows, cols, patch)
    observed = _to_patches(data, rows, cols, patch)
    del data

    lam = lambda_scale / np.sqrt(patch * len(observed))
    rank = _tubal_rank_estimate(observed)
    observed_norm = np.sqrt(np.sum(observed**2)) or 1.0
    # The textbook updates, computed in place in seven tensor-sized arrays: every temporary of the patch tensor's
    # size costs 96 MB at 4000x3000. The arithmetic, operation by operation, is the same:
    #   B = prox(D - T - Y / mu);  R = D - B - Y / mu;  T = sign(R) * max(|R| - W * lam / mu, 0)
    #   W = 1 / ((|T| + 0.01) * (prior + 1e-12));  Y += mu * (B + T - D);  mu *= rho
    prior += 1e-12
    target = np.zeros_like(observed)
    dual = np.zeros_like(observed)
    weight = np.ones_like(observed)
    scratch = np.empty_like(observed)
    background = np.empty_like(observed)
    support = 0
    for _ in range(max_iterations):
        scaled_dual = np.divide(dual, mu, out=scratch)
        np.subtract(observed, target, out=background)
        background -= scaled_dual
        _prox_partial_tnn(background, rank, 1.0 / mu, out=background)
        np.subtract(observed, background, out=target)  # R goes into T, whose old value is no longer needed
        target -= scaled_dual
        sign = np.sign(target, out=scratch)
        np.abs(target, out=target)
        weight *= lam  # W becomes the threshold W * lam / mu; it is recomputed from the new T below
        weight /= mu
        target -= weight
        np.maximum(target, 0, out=target)
        target *= sign
        np.abs(target, out=weight)
        weight += 0.01
        weight *= prior
        np.divide(1.0, weight, out=weight)
        gap = np.add(background, target, out=background)
        gap -= observed
        dual += np.multiply(gap, mu, out=scratch)
        mu *= rho
        new_support = int(np.count_nonzero(target))
        # sum of squares, not np.linalg.norm: its BLAS dot is slow on a busy multi-threaded OpenBLAS
        gap_norm = np.sqrt(np.sum(np.square(gap, out=scratch)))
        if gap_norm / observed_norm < tol or (support > 0 and new_support == support):
            break
        support = new_support
    del observed, prior, dual, weight, scratch, background  # only T is needed from here on
    target_image = _from_patches(target, padded_shape, rows, cols)
    return np.maximum(target_image[: original_shape[0], : original_shape[1]], 0).astype(np.float32)


# --- detectors ------------------------------------------------------------------------------------------


DEFAULT_TARGET_SIZE = 7  # px, a target's longer side: what Top-Hat's 9 px element and MPCM's scales 3..9 fit
# The largest target size taken (the Detection dock's and --target-size's bound): far beyond a small target, and
# MPCM's time grows with the number of its scales (a 100000 px window also overflows OpenCV's element).
MAX_TARGET_SIZE = 128


def check_target_size(target_size: int) -> None:
    """ValueError unless `target_size` (px) is within 1..MAX_TARGET_SIZE."""
    if target_size < 1:
        raise ValueError(f"the target size must be at least 1 px, got {target_size}")
    if target_size > MAX_TARGET_SIZE:
        raise ValueError(f"the target size must be at most {MAX_TARGET_SIZE} px, got {target_size}")


def window_for(target_size: int) -> int:
    """The window (Top-Hat's element, MPCM's largest cell) that holds a target of `target_size` px with a
    pixel of background on each side: the smallest odd number of at least target_size + 2."""
    check_target_size(target_size)
    return target_size + 3 - target_size % 2


@dataclass
class ClassicalDetector:
    """A score map turned into logits: score - (mean + k * std), components outside the area range dropped."""

    name: str
    score_fn: Callable[[np.ndarray], np.ndarray]
    k: float
    min_area: int = 1
    max_area_fraction: float = 0.005  # of the image; larger components are background structures
    max_area_floor: int = 100  # small images still admit targets of this many pixels
    target_size: int = DEFAULT_TARGET_SIZE  # longest side (px) of the largest target sought
    device: str = "cpu"

    def detect(self, images: Sequence[np.ndarray], features: bool = False) -> list[FrameResult]:
        return [FrameResult(logits=self.logits(np.asarray(image))) for image in images]

    def logits(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D gray image, got shape {image.shape}")
        score = self.score_fn(image).astype(np.float32)
        logits = score - np.float32(score.mean() + self.k * score.std())
        n, labels, stats, _ = cv2.connectedComponentsWithStats((logits > 0).astype(np.uint8), connectivity=8)
        # a target of `target_size` fills at most the square window around it (81 px at the default size, under
        # the floor)
        max_area = max(self.max_area_fraction * image.size, self.max_area_floor, window_for(self.target_size) ** 2)
        areas = stats[:, cv2.CC_STAT_AREA]
        rejected = (areas < self.min_area) | (areas > max_area)
        rejected[0] = False
        if rejected.any():
            logits[rejected[labels]] = min(float(logits.min()), -1e-6)
        return logits


def _tophat_detector(target_size: int, k: float) -> ClassicalDetector:
    return ClassicalDetector("tophat", partial(tophat_score, size=window_for(target_size)), k=k,
                             target_size=target_size)


def _mpcm_detector(target_size: int, k: float) -> ClassicalDetector:
    scales = tuple(range(3, window_for(target_size) + 1, 2))
    return ClassicalDetector("mpcm", partial(mpcm_score, scales=scales), k=k, target_size=target_size)


def _pstnn_detector(target_size: int, k: float) -> ClassicalDetector:
    # PSTNN has no target-sized window: its 40 px patches model the background, and a target is whatever the
    # low-rank background leaves over, so the size only widens the area filter.
    return ClassicalDetector("pstnn", pstnn_score, k=k, target_size=target_size)


# The default k maximises IoU on every 4th NUAA-SIRST idx_427 train image (64 images, k from 2 to 40): Top-Hat IoU
# 44.8 / Pd 92.0 at k=12, MPCM 36.2 / 88.0 at k=15 (k=20 gives 37.7 but Pd 78.7), PSTNN 39.8 / 82.7 at k=15.
# No minimum area: min_area=2 raised IoU by under 1 point there but lost Top-Hat's 1-px hits (and every
# hit on the distant drone of IR_DRONE_156). All at the default target size.
DEFAULT_THRESHOLD_K = {"tophat": 12.0, "mpcm": 15.0, "pstnn": 15.0}
# The highest threshold factor taken (the Detection dock's and --threshold-k's bound), 8 times the defaults: a huge
# k overflows the float32 threshold to infinity.
MAX_THRESHOLD_K = 100.0
CLASSICAL_DETECTORS: dict[str, Callable[[int, float], Detector]] = {
    "tophat": _tophat_detector,
    "mpcm": _mpcm_detector,
    "pstnn": _pstnn_detector,
}


def make_classical_detector(name: str, target_size: int | None = None,
                            threshold_k: float | None = None) -> ClassicalDetector:
    """The classical method `name`, its windows sized for targets up to `target_size` px (longer side; None:
    DEFAULT_TARGET_SIZE), detecting where its score exceeds mean + `threshold_k` std (None: the method's default,
    `DEFAULT_THRESHOLD_K`)."""
    try:
        factory = CLASSICAL_DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown classical method {name!r}; choose from {sorted(CLASSICAL_DETECTORS)}") from None
    if target_size is None:
        target_size = DEFAULT_TARGET_SIZE
    check_target_size(target_size)
    if threshold_k is None:
        threshold_k = DEFAULT_THRESHOLD_K[name]
    elif not (math.isfinite(threshold_k) and threshold_k > 0):
        raise ValueError(f"the threshold factor k must be a number above 0, got {threshold_k}")
    elif threshold_k > MAX_THRESHOLD_K:
        raise ValueError(f"the threshold factor k must be at most {MAX_THRESHOLD_K:g}, got {threshold_k}")
    return factory(target_size, threshold_k)
