"""How the local-contrast refinement's parameters were chosen (model/refine.py, docs/model_card.md).

1. Without any model: on the train split, the trim at each fraction a applied to the ground truth
   grown by one pixel, pooled IoU against the ground truth (what outline the annotators drew).
2. With the shipped weights on the validation split: IoU / nIoU / Pd / Fa with the refinement off and
   with the trim alone at each fraction, for each test-time augmentation mode (network run once per mode).
3. With the shipped weights (no test-time augmentation) on the train split, where the choice is made
   (4x the targets of validation; the network underfits, so its train predictions are no better), and
   on validation, which confirms it: the growth after the 0.25 trim, for each number of steps, growth
   fraction and minimum peak logit.

    python benchmarks/refine_sweep.py [--weights resources/weights/irsam_paper_sirst.pt]
        [--data ../shared/data/nuaa-sirst] [--tta none scale+flips] [--device auto]
        [--json docs/eval/sirst_refine_sweep.json]

The test split is never used here.
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
from model.data import find_dataset, read_image_gray, read_mask  # noqa: E402
from model.detectors import TTA_MODES  # noqa: E402
from model.metrics import SegmentationMetrics  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.refine import LocalContrastRefinement  # noqa: E402

SIRST = REPO.parent / "shared" / "data" / "nuaa-sirst"
FRACTIONS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
GROW_STEPS = (1, 2, 3)
GROW_FRACTIONS = (0.25, 0.3, 0.4, 0.5)
GROW_MIN_LOGITS = (0.0, 5.0, 10.0, 20.0)
CROSS = np.ones((3, 3), np.uint8)


def load(data: Path, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    samples = find_dataset(data / "images", data / "masks", data / "splits" / "idx_427" / f"{split}.txt")
    return [read_image_gray(s.image_path) for s in samples], [read_mask(s.mask_path) > 0 for s in samples]


def annotation_oracle(images: list[np.ndarray], masks: list[np.ndarray]) -> dict[float, float]:
    """Pooled IoU against the ground truth of the refinement applied to the ground truth grown by one
    pixel (as if a network had found every target with a 1 px halo), per fraction."""
    grown = [cv2.dilate(mask.astype(np.uint8), CROSS) > 0 for mask in masks]
    halo_logits = [np.where(g, 1.0, -1.0).astype(np.float32) for g in grown]
    result = {}
    for a in FRACTIONS:
        refine = LocalContrastRefinement(fraction=a, grow_steps=0)
        inter = union = 0
        for image, mask, logits in zip(images, masks, halo_logits):
            guess = refine(image, logits) > 0
            inter += int((guess & mask).sum())
            union += int((guess | mask).sum())
        result[a] = inter / union
    return result


def score(logits: list[np.ndarray], masks: list[np.ndarray]) -> dict:
    metrics = SegmentationMetrics()
    for lg, mask in zip(logits, masks):
        metrics.update(lg, mask)
    return metrics.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=SIRST)
    parser.add_argument("--tta", nargs="*", default=["none", "scale+flips"], choices=TTA_MODES)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    train, (images, masks) = load(args.data, "train"), load(args.data, "val")
    oracle = annotation_oracle(*train)
    print("train split, the ground truth grown by 1 px and refined at each fraction (no model): pooled IoU")
    print("  " + "  ".join(f"a={a:.2f}: {100 * v:.1f}" for a, v in oracle.items()), flush=True)

    rows, val_logits = [], {}
    print(f"\nvalidation split ({len(images)} images), {args.weights.name}")
    print("| tta | refinement | IoU | nIoU | Pd | Fa x1e-6 |\n|---|---|---|---|---|---|")
    for tta in args.tta:
        logits = val_logits[tta] = network_logits(args.weights, args.device, images, tta)
        for fraction in (None, *FRACTIONS):
            refined = logits if fraction is None else [
                LocalContrastRefinement(fraction=fraction, grow_steps=0)(image, lg) for image, lg in zip(images, logits)]
            r = score(refined, masks)
            rows.append({"tta": tta, "fraction": fraction, **{k: r[k] for k in ("iou", "niou", "pd", "fa")}})
            name = "off" if fraction is None else f"fraction {fraction:.2f}"
            print(f"| {tta} | {name} | {100 * r['iou']:.2f} | {100 * r['niou']:.2f} | {100 * r['pd']:.2f} "
                  f"| {1e6 * r['fa']:.2f} |", flush=True)
    growth = {
        "train": growth_sweep(*train, network_logits(args.weights, args.device, train[0])),
        "val": growth_sweep(images, masks, val_logits.get("none") or network_logits(args.weights, args.device, images)),
    }
    if args.json:
        atomic_write_json(args.json, {"weights": args.weights.name, "train_oracle_iou": {str(a): v for a, v in oracle.items()},
                                      "val": rows, "growth": growth})


def network_logits(weights: Path, device: str, images: list[np.ndarray], tta: str = "none") -> list[np.ndarray]:
    """The shipped weights' unrefined logits (shifted by their decision threshold)."""
    return [r.logits for r in Predictor.from_file(weights, device=device, tta=tta).detect(images)]


def growth_sweep(images: list[np.ndarray], masks: list[np.ndarray], logits: list[np.ndarray]) -> list[dict]:
    """The trim at 0.25 followed by each growth (steps 0: the trim alone), scored on the network's
    logits without test-time augmentation."""
    print(f"\ngrowth after the 0.25 trim, {len(images)} images")
    print("| steps | growth fraction | min peak logit | IoU | nIoU | Pd | Fa x1e-6 |\n|---|---|---|---|---|---|---|")
    rows = []
    settings = [(0, 0.4, 0.0)] + [(s, f, m) for s in GROW_STEPS for f in GROW_FRACTIONS for m in GROW_MIN_LOGITS]
    for steps, fraction, min_logit in settings:
        refine = LocalContrastRefinement(grow_steps=steps, grow_fraction=fraction, grow_min_logit=min_logit)
        r = score([refine(image, lg) for image, lg in zip(images, logits)], masks)
        rows.append({"grow_steps": steps, "grow_fraction": fraction, "grow_min_logit": min_logit,
                     **{k: r[k] for k in ("iou", "niou", "pd", "fa")}})
        grow = f"{fraction:.2f} | {min_logit:g}" if steps else "- | -"
        print(f"| {steps} | {grow} | {100 * r['iou']:.2f} | {100 * r['niou']:.2f} "
              f"| {100 * r['pd']:.2f} | {1e6 * r['fa']:.2f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
