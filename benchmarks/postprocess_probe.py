"""Post-processing ideas for the shipped weights' misses and false alarms, scored on the train split
(where choices are made: 327 targets, and the network underfits, so its train predictions are a fair
sample of its errors) and on validation (which confirms or refutes). The test split is never used.

Each probe starts from the default output (refined: trim and grow, model/refine.py):

1. longer growth: confident components (peak logit >= 10) grow up to 8 px into neighbours brighter
   than 0.3 of their local contrast, kept only when the result is at most 1.5x the component (large
   targets come out under-segmented and in fragments whose centroids miss the 3 px rule);
2. hysteresis: components whose peak logit is below t are dropped (false alarms are less confident);
3. classical fusion: Top-Hat and MPCM components away from every network detection, counted as
   targets or background, by the network's peak logit on them (could they bring back missed targets?);
4. with `--second FILE`: the logits of a second network averaged in (weight 0.3), each shifted by its
   own threshold.

    python benchmarks/postprocess_probe.py [--weights resources/weights/irsam_paper_sirst.pt] [--second FILE]
        [--json OUT]

`--json` defaults to docs/eval/postprocess_probe.json. Session 12's record came from `--second
runs/s12_warm512/best.pt --json docs/eval/postprocess_probe_s12.json` (runs/ is git-ignored: that
checkpoint is not in the repository).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.atomic import atomic_write_json  # noqa: E402
from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.classical import make_classical_detector  # noqa: E402
from model.data import find_dataset, read_image_gray, read_mask  # noqa: E402
from model.metrics import SegmentationMetrics  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.refine import make_refinement  # noqa: E402

SIRST = REPO.parent / "shared" / "data" / "nuaa-sirst"
SPLITS = ("train", "val")
CROSS = np.ones((3, 3), np.uint8)
HYSTERESIS = (2.0, 4.0, 6.0, 8.0)
SECOND_WEIGHT = 0.3


def load(split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    samples = find_dataset(SIRST / "images", SIRST / "masks", SIRST / "splits" / "idx_427" / f"{split}.txt")
    return [read_image_gray(s.image_path) for s in samples], [read_mask(s.mask_path) > 0 for s in samples]


def score(logits: list[np.ndarray], masks: list[np.ndarray]) -> dict:
    metrics = SegmentationMetrics()
    for lg, mask in zip(logits, masks):
        metrics.update(lg > 0, mask)
    r = metrics.result()
    return {"iou": round(100 * r["iou"], 2), "niou": round(100 * r["niou"], 2), "pd": round(100 * r["pd"], 2),
            "fa_1e6": round(1e6 * r["fa"], 2)}


def longer_growth(frame: np.ndarray, logits: np.ndarray, fraction=0.3, steps=8, ratio=1.5, min_logit=10.0,
                  margin=12) -> np.ndarray:
    """Probe 1: geodesic growth of each confident component inside `frame > background + fraction *
    contrast`, kept when it stays within `ratio` times the component's area."""
    out, positive = logits.copy(), logits > 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(positive.astype(np.uint8), connectivity=8)
    height, width = positive.shape
    for label in range(1, count):
        x, y, w, h, area = stats[label]
        pad = margin + steps
        y0, y1, x0, x1 = max(0, y - pad), min(height, y + h + pad), max(0, x - pad), min(width, x + w + pad)
        component, block = labels[y0:y1, x0:x1] == label, out[y0:y1, x0:x1]
        if block[component].max() < min_logit:
            continue
        window = frame[y0:y1, x0:x1].astype(np.float32)
        near = cv2.dilate(positive[y0:y1, x0:x1].astype(np.uint8), CROSS, iterations=2) > 0
        if (~near).sum() < 8:
            continue
        background, peak = float(np.median(window[~near])), float(window[component].max())
        if peak - background < 1:
            continue
        allowed = (window > background + fraction * (peak - background)) | component
        grown = component
        for _ in range(steps):
            grown = (cv2.dilate(grown.astype(np.uint8), CROSS) > 0) & allowed
        if grown.sum() <= ratio * area:
            added = grown & ~component & (block <= 0)
            block[added] = block[component].min()
    return out


def hysteresis(logits: np.ndarray, min_peak: float) -> np.ndarray:
    """Probe 2: components whose peak logit is below `min_peak` turned negative."""
    out, positive = logits.copy(), logits > 0
    count, labels = cv2.connectedComponents(positive.astype(np.uint8), connectivity=8)
    peak = np.full(count, -np.inf, np.float32)
    np.maximum.at(peak, labels[positive], logits[positive])
    drop = peak < min_peak
    drop[0] = False
    out[drop[labels]] = -np.abs(out[drop[labels]])
    return out


def classical_candidates(images, masks, raw, refined, method: str) -> dict:
    """Probe 3: classical components more than 3 px from every refined detection, by the network's peak
    raw logit on them, split into targets (centroid within 3 px of a ground-truth one) and background."""
    detector = make_classical_detector(method)
    targets, background = [], []
    for image, mask, lg, ref in zip(images, masks, raw, refined):
        near_detection = cv2.dilate((ref > 0).astype(np.uint8), CROSS, iterations=3) > 0
        count, labels, _, centroids = cv2.connectedComponentsWithStats(
            (detector.detect([image])[0].logits > 0).astype(np.uint8), connectivity=8)
        n_gt, _, _, gt_centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        for c in range(1, count):
            component = labels == c
            if (component & near_detection).any():
                continue
            distance = np.hypot(*(gt_centroids[1:] - centroids[c]).T).min() if n_gt > 1 else np.inf
            (targets if distance < 3 else background).append(float(lg[component].max()))
    return {
        "targets": len(targets), "background": len(background),
        "by_min_net_logit": {str(t): {"targets": sum(v > t for v in targets), "background": sum(v > t for v in background)}
                             for t in (-10, -5, -2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--second", type=Path, help="a second checkpoint for probe 4")
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "eval" / "postprocess_probe.json")
    args = parser.parse_args()
    refine = make_refinement("contrast")
    networks = [Predictor.from_file(args.weights, device="cpu")]
    if args.second:
        networks.append(Predictor.from_file(args.second, device="cpu"))
    report = {"weights": args.weights.name, "second": args.second.name if args.second else None, "splits": {}}
    for split in SPLITS:
        images, masks = load(split)
        raw = [[r.logits for r in net.detect(images)] for net in networks]
        refined = [refine(image, lg) for image, lg in zip(images, raw[0])]
        rows = {"refined (default)": score(refined, masks),
                "longer growth": score([longer_growth(i, lg) for i, lg in zip(images, refined)], masks)}
        for t in HYSTERESIS:
            rows[f"hysteresis {t:g}"] = score([hysteresis(lg, t) for lg in refined], masks)
        if args.second:
            mixed = [(1 - SECOND_WEIGHT) * a + SECOND_WEIGHT * b for a, b in zip(*raw)]
            rows[f"second network at {SECOND_WEIGHT}, refined"] = score(
                [refine(i, lg) for i, lg in zip(images, mixed)], masks)
            rows["second network alone, refined"] = score([refine(i, lg) for i, lg in zip(images, raw[1])], masks)
        fusion = {m: classical_candidates(images, masks, raw[0], refined, m) for m in ("tophat", "mpcm")}
        report["splits"][split] = {"rows": rows, "classical_fusion": fusion}
        print(f"{split} ({len(images)} images)")
        for name, r in rows.items():
            print(f"  {name:34s} IoU {r['iou']:6.2f}  nIoU {r['niou']:6.2f}  Pd {r['pd']:6.2f}  Fa {r['fa_1e6']:6.2f}e-6")
        for m, f in fusion.items():
            print(f"  {m} components away from every detection: {f['targets']} targets, {f['background']} background; "
                  + ", ".join(f"net logit > {t}: {v['targets']} / {v['background']}" for t, v in f["by_min_net_logit"].items()))
    atomic_write_json(args.json, report)
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
