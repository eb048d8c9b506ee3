"""PSTNN on growing frames: time and peak memory of model.classical.pstnn_score against the implementation it
replaced (a private copy below), which built the patch tensor through a copy of every 40x40 window of the
chosen rows and allocated every intermediate of the ADMM loop anew.

    .venv/bin/python benchmarks/bench_pstnn.py        # 256x256, 640x512, 1920x1080, 4000x3000, old and new
    .venv/bin/python benchmarks/bench_pstnn.py --sizes 640x512 --impl new

Every (size, implementation) runs once in a fresh subprocess: its peak RSS (VmHWM) is the honest peak,
numpy's, OpenCV's and LAPACK's buffers included; "+MB" is the rise of that peak during the pstnn_score call
(over the interpreter, the imports and the 8-bit frame, which the parent process draws and saves). The
frames are synthetic and seeded: a smooth background, Gaussian noise and a few small Gaussian targets.
The old 4000x3000 run takes about half a minute and 4 GB.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.classical import _from_patches, _patch_origins, _tubal_rank_estimate, pstnn_score  # noqa: E402

SIZES = ["256x256", "640x512", "1920x1080", "4000x3000"]  # width x height


def synthetic_frame(width: int, height: int, seed: int = 0, n_targets: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    image = 80 + 30 * np.sin(rows / height * 3) * np.cos(cols / width * 2) + rng.normal(0, 3, (height, width))
    for row, col in zip(rng.integers(20, height - 20, n_targets), rng.integers(20, width - 20, n_targets)):
        image += 50 * np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * 1.2**2))
    return np.clip(image, 0, 255).astype(np.uint8)


# --- the implementation before the memory fix, the same code without its comments ------------------------------


def _old_structure_tensor_prior(image: np.ndarray) -> np.ndarray:
    blur = lambda a: cv2.GaussianBlur(a, (3, 3), 2, borderType=cv2.BORDER_REPLICATE)  # noqa: E731
    smoothed = blur(image)
    grad_y, grad_x = np.gradient(smoothed)
    j11, j22, j12 = blur(grad_x * grad_x), blur(grad_y * grad_y), blur(grad_x * grad_y)
    root = np.sqrt((j11 - j22) ** 2 + 4 * j12**2)
    large, small = 0.5 * (j11 + j22 + root), 0.5 * (j11 + j22 - root)
    prior = large * small / (large + small + 1e-12) * large
    span = prior.max() - prior.min()
    return (prior - prior.min()) / span if span > 0 else np.zeros_like(prior)


def _old_to_patches(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(image, (patch, patch))
    return windows[rows][:, cols].reshape(-1, patch, patch)


def _old_prox_partial_tnn(tensor: np.ndarray, rank: int, tau: float) -> np.ndarray:
    spectrum = np.fft.rfft(tensor, axis=0)
    u, s, vh = np.linalg.svd(spectrum, full_matrices=False)
    s[:, rank:] = np.maximum(s[:, rank:] - tau, 0)
    return np.fft.irfft((u * s[:, None, :]) @ vh, n=tensor.shape[0], axis=0)


def old_pstnn_score(image, patch=40, step=40, lambda_scale=0.7, mu=2e-3, rho=1.05, tol=1e-7, max_iterations=500):
    original_shape = image.shape
    if image.size == 0 or image.min() == image.max():
        return np.zeros(original_shape, np.float32)
    pad = [(0, max(patch - n, 0)) for n in original_shape]
    data = np.pad(image.astype(np.float64), pad, mode="reflect" if min(original_shape) > 1 else "edge")
    rows, cols = _patch_origins(data.shape[0], patch, step), _patch_origins(data.shape[1], patch, step)
    observed = _old_to_patches(data, rows, cols, patch)
    prior = _old_to_patches(_old_structure_tensor_prior(data), rows, cols, patch)
    lam = lambda_scale / np.sqrt(patch * len(observed))
    rank = _tubal_rank_estimate(observed)
    observed_norm = np.sqrt(np.sum(observed**2)) or 1.0
    target = np.zeros_like(observed)
    dual = np.zeros_like(observed)
    weight = np.ones_like(observed)
    support = 0
    for _ in range(max_iterations):
        background = _old_prox_partial_tnn(observed - target - dual / mu, rank, 1.0 / mu)
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
    target_image = _from_patches(target, data.shape, rows, cols)
    return np.maximum(target_image[: original_shape[0], : original_shape[1]], 0).astype(np.float32)


# --- measurement -----------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child would report
    # the parent's peak (the float64 grids that drew the frame) when that is higher than its own
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024  # kilobytes


def measure_one(frame_path: Path, impl: str, score_path: Path) -> dict:
    """In this process: one pstnn_score call on the frame saved at frame_path."""
    image = np.load(frame_path)
    score_fn = old_pstnn_score if impl == "old" else pstnn_score
    before = peak_rss_mb()
    start = time.perf_counter()
    score = score_fn(image)
    seconds = time.perf_counter() - start
    np.save(score_path, score)
    return {"seconds": seconds, "peak_mb": peak_rss_mb(), "rise_mb": peak_rss_mb() - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="WIDTHxHEIGHT")
    parser.add_argument("--impl", nargs="+", choices=["old", "new"], default=["old", "new"])
    parser.add_argument("--one", nargs=3, metavar=("FRAME_NPY", "IMPL", "SCORE_NPY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        frame_path, impl, score_path = args.one
        print(json.dumps(measure_one(Path(frame_path), impl, Path(score_path))))
        return

    print(f"{'size':>10} | {'old s':>6} {'old peak MB':>11} {'old +MB':>8} | {'new s':>6} {'new peak MB':>11} "
          f"{'new +MB':>8} | max |new - old| / max score", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            # made here, so that the float64 grids that draw it do not count in the measured peak
            frame_path = Path(tmp) / "frame.npy"
            np.save(frame_path, synthetic_frame(*map(int, size.split("x"))))
            results, scores = {}, {}
            for impl in args.impl:
                score_path = Path(tmp) / f"{impl}.npy"
                run = subprocess.run([sys.executable, __file__, "--one", str(frame_path), impl, str(score_path)],
                                     check=True, capture_output=True, text=True)
                results[impl] = json.loads(run.stdout.splitlines()[-1])
                scores[impl] = np.load(score_path)
            cells = []
            for impl in ("old", "new"):
                r = results.get(impl)
                cells.append(f"{r['seconds']:6.1f} {r['peak_mb']:11.0f} {r['rise_mb']:8.0f}" if r else f"{'-':>27}")
            if len(scores) == 2:
                difference = np.abs(scores["new"] - scores["old"]).max() / max(float(scores["old"].max()), 1e-12)
                same = f"{difference:.1e}" + (" (identical)" if np.array_equal(scores["new"], scores["old"]) else "")
            else:
                same = "-"
            print(f"{size:>10} | {cells[0]} | {cells[1]} | {same}", flush=True)


if __name__ == "__main__":
    main()
