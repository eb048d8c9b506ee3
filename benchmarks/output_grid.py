"""Output-grid study on NUAA-SIRST val (idx_427, 85 images): what the decoder's grid costs small targets.

The official pipeline upsamples a 512 frame to 1024, so its decoder's mask grid is 1/2 of the input;
the `paper` config's native encoder gives 1/4. Two measurements:

1. Ceiling of each grid: the ground truth itself, area-averaged down to the grid, bilinearly
   upsampled back and thresholded (best threshold per grid). A perfect decoder on that grid can do
   no better; targets of 1-3 px are where the grids differ.
2. The trained `paper` weights with and without the full-resolution refinement head
   (`model.mask_decoder.HighResRefinement`), each at its best validation threshold.

    python benchmarks/output_grid.py [--weights resources/weights/irsam_paper_sirst.pt] [--data ../shared/data/nuaa-sirst]
        [--json docs/eval/output_grid.json]
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.atomic import atomic_write_json  # noqa: E402
from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.metrics import SegmentationMetrics  # noqa: E402

SIRST = REPO.parent / "shared" / "data" / "nuaa-sirst"
GRIDS = {"full (1/1)": 1, "official (1/2)": 2, "native paper (1/4)": 4}
SMALL_AREA = 9  # px: the targets the grid question is about


def scores(logit_maps: list[np.ndarray], masks: list[np.ndarray]) -> dict:
    metrics = SegmentationMetrics()
    for logits, mask in zip(logit_maps, masks):
        metrics.update(logits, mask)
    r = metrics.result()
    return {k: float(r[k]) for k in ("iou", "niou", "pd", "fa")} | {"hits": int(r["hits"]), "n_targets": int(r["n_targets"])}


def small_target_pd(logit_maps: list[np.ndarray], masks: list[np.ndarray]) -> tuple[int, int]:
    """(found, total) over ground-truth targets of at most SMALL_AREA pixels (any predicted pixel on them)."""
    found = total = 0
    for logits, mask in zip(logit_maps, masks):
        n, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] <= SMALL_AREA:
                total += 1
                found += bool((logits[labels == i] > 0).any())
    return found, total


def best_over_thresholds(maps: list[np.ndarray], masks: list[np.ndarray], thresholds) -> tuple[float, dict]:
    results = {float(t): scores([m - t for m in maps], masks) for t in thresholds}
    best = max(results, key=lambda t: results[t]["iou"])
    return best, results[best]


def grid_ceiling(masks: list[np.ndarray], factor: int) -> tuple[float, dict, tuple[int, int]]:
    maps = []
    for mask in masks:
        h, w = mask.shape
        truth = (mask > 0).astype(np.float32)
        if factor > 1:
            coarse = cv2.resize(truth, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
            truth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
        maps.append(truth)
    t, result = best_over_thresholds(maps, masks, np.arange(0.05, 0.95, 0.05))
    return t, result, small_target_pd([m - t for m in maps], masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=SIRST)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from model.checkpoint import load_checkpoint
    from model.train import load_split, predict_logits

    images, masks, _ = load_split(args.data, str(args.data / "splits/idx_427/val.txt"))
    report = {"split": "idx_427 val", "n_images": len(images), "small_area_px": SMALL_AREA, "ceiling": {}, "trained": {}}
    print(f"NUAA-SIRST idx_427 val ({len(images)} images); small targets: <= {SMALL_AREA} px\n")
    print("| ceiling of the grid | IoU | nIoU | Pd | small targets found |")
    print("|---|---|---|---|---|")
    for name, factor in GRIDS.items():
        t, r, (found, total) = grid_ceiling(masks, factor)
        report["ceiling"][name] = r | {"threshold": t, "small_found": found, "small_total": total}
        print(f"| {name} | {100 * r['iou']:.2f} | {100 * r['niou']:.2f} | {100 * r['pd']:.2f} | {found}/{total} |")

    model, _, _ = load_checkpoint(args.weights)
    coarse = copy.deepcopy(model)
    coarse.refinement = None
    print(f"\n| {args.weights.name} on val | IoU | nIoU | Pd | Fa x1e-6 | small targets found | threshold |")
    print("|---|---|---|---|---|---|---|")
    for name, net in {"with refinement (full res)": model, "without refinement (1/4 grid, bilinear)": coarse}.items():
        maps = predict_logits(net, images, torch.device("cpu"), None)
        # Without the head (trained with it) the logits' offset is not the one training saw: search the top tail of them.
        pooled = np.concatenate([m.ravel() for m in maps])
        t, r = best_over_thresholds(maps, masks, np.concatenate([np.arange(-2.0, 4.01, 0.25), np.quantile(pooled, 1 - np.logspace(-5, -2, 40))]))
        found, total = small_target_pd([m - t for m in maps], masks)
        report["trained"][name] = r | {"threshold": t, "small_found": found, "small_total": total}
        print(f"| {name} | {100 * r['iou']:.2f} | {100 * r['niou']:.2f} | {100 * r['pd']:.2f} | {1e6 * r['fa']:.2f} "
              f"| {found}/{total} | {t:+.2f} |")
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    main()
