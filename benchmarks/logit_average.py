"""Averages of several networks' logits on a NUAA-SIRST idx_427 split: every combination of the
`--weights` given (one network alone included), scored unrefined and refined (the default
refinement), corrected Fa at native resolution, as `irsam eval` scores them.

    python benchmarks/logit_average.py --weights A.pt B.pt [C.pt ...] [--split val]
        [--data ../shared/data/nuaa-sirst] [--device auto] [--json OUT]

Each network's logits come already shifted by its own decision threshold (the one stored in its
checkpoint), so the average is taken over each network's margin and 0 is the average's threshold.
Each network runs once over the split; the combinations are scored from those logits. The model
card's logit averages of sessions 8, 9 and 21 used the same method before this script existed; session
25's were scored with it:

    ... --split val --json docs/eval/gpu_training_s25/val_logit_averages.json
    ... --split test --json docs/eval/gpu_training_s25/test_logit_averages.json
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.atomic import atomic_write_json  # noqa: E402
from model.data import check_sizes_match, find_dataset, read_image_gray, read_mask_noting_interpolation  # noqa: E402
from model.evaluate import make_detector  # noqa: E402
from model.metrics import SegmentationMetrics  # noqa: E402
from model.refine import make_refinement  # noqa: E402

SIRST = REPO.parent / "shared" / "data" / "nuaa-sirst"
BATCH = 8


def network_logits(weights: Path, images: list[np.ndarray], device: str) -> list[np.ndarray]:
    detector = make_detector(None, str(weights), device, tta="none", refine="off")
    logits = []
    for start in range(0, len(images), BATCH):
        logits += [r.logits.astype(np.float32) for r in detector.detect(images[start : start + BATCH])]
    return logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, nargs="+", required=True,
                        help="checkpoints, each named in the table by its file's stem")
    parser.add_argument("--data", type=Path, default=SIRST, help="NUAA-SIRST root (images/, masks/, splits/)")
    parser.add_argument("--split", default="val", help="a split of splits/idx_427/ by name: val, test, train ...")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--json", type=Path, help="write every combination's figures here")
    args = parser.parse_args()
    names = [w.stem for w in args.weights]
    if len(set(names)) != len(names):
        parser.error("--weights: give files of different names (the table names each network by its file's stem)")

    split_file = args.data / "splits/idx_427" / f"{args.split}.txt"
    samples = find_dataset(args.data / "images", args.data / "masks", split_file)
    images, masks = [], []
    for sample in samples:
        image, mask = read_image_gray(sample.image_path), read_mask_noting_interpolation(sample.mask_path)[0]
        check_sizes_match(sample, image, mask)
        images.append(image)
        masks.append(mask)
    logits = {name: network_logits(w, images, args.device) for name, w in zip(names, args.weights)}
    print(f"{len(names)} networks, {len(samples)} images, computed", file=sys.stderr, flush=True)

    refine = make_refinement("contrast")
    results = {}
    print(f"NUAA-SIRST idx_427 {args.split} ({len(samples)} images), logits averaged, corrected Fa, native\n")
    print("| networks | IoU | nIoU | Pd | Fa x1e-6 | refined IoU | nIoU | Pd | Fa x1e-6 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in range(1, len(names) + 1):
        for combination in itertools.combinations(names, size):
            raw, refined = SegmentationMetrics(fa_mode="corrected"), SegmentationMetrics(fa_mode="corrected")
            for i, (sample, image, mask) in enumerate(zip(samples, images, masks)):
                average = np.mean([logits[name][i] for name in combination], axis=0)
                raw.update(average, mask, sample.stem)
                refined.update(refine(image, average), mask, sample.stem)
            key = " + ".join(combination)
            results[key] = {"unrefined": raw.result(), "refined": refined.result()}
            cells = [f"{100 * r['iou']:.2f} | {100 * r['niou']:.2f} | {100 * r['pd']:.2f} | {1e6 * r['fa']:.2f}"
                     for r in (raw.result(), refined.result())]
            print(f"| {key} | {' | '.join(cells)} |", flush=True)
    if args.json:
        atomic_write_json(args.json, {
            "what": f"NUAA-SIRST idx_427 {args.split}: logits of each network, shifted by its own decision "
                    "threshold, averaged; corrected Fa, native resolution; refined = the default refinement",
            "weights": {name: str(w) for name, w in zip(names, args.weights)},
            "n_images": len(samples), "results": results})


if __name__ == "__main__":
    main()
