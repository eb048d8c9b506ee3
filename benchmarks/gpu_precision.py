"""CUDA against the CPU on real images: does the predictor on the GPU, in fp32 / bf16 / fp16, give the
CPU fp32 masks? (The spec's rule: same binary masks except at near-zero logits.)

    python benchmarks/gpu_precision.py [--weights resources/weights/irsam_paper_sirst.pt]
        [--data ../shared/data/nuaa-sirst] [--split ../shared/data/nuaa-sirst/splits/idx_427/val.txt]
        [--margin 0.5] [--json OUT]

For every precision: the largest logit difference to CPU fp32, the pixels whose decision (logit > 0)
differs, those of them farther than `margin` from 0 (must be none), and the validation metrics, so a
precision that keeps the masks but moves the metrics would show. Needs a CUDA device.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.metrics import SegmentationMetrics  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.train import load_split, plain_numbers  # noqa: E402

SIRST = REPO.parent / "shared/data/nuaa-sirst"


def run(predictor: Predictor, images: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    predictor.detect(images[:2])  # warm-up (cuDNN autotuning, lazy initialisation)
    if predictor.device_choice.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    logits = [r.logits for r in predictor.detect(images)]
    return logits, time.perf_counter() - start


def score(logits: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, float]:
    metrics = SegmentationMetrics()
    for lg, mask in zip(logits, masks):
        metrics.update(lg, mask)
    return plain_numbers(metrics.result())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=REPO / "resources/weights/irsam_paper_sirst.pt")
    parser.add_argument("--data", type=Path, default=SIRST)
    parser.add_argument("--split", default=None, help="split file (default: DATA/splits/idx_427/val.txt)")
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check compares the GPU with the CPU")
    split = args.split or str(args.data / "splits/idx_427/val.txt")
    images, masks, stems = load_split(args.data, split)
    print(f"{len(images)} images from {split}; GPU {torch.cuda.get_device_name()}, torch {torch.__version__}")

    reference, cpu_seconds = run(Predictor.from_file(args.weights, device="cpu", precision="fp32"), images)
    rows = []
    for precision in ("fp32", "bf16", "fp16"):
        predictor = Predictor.from_file(args.weights, device="cuda", precision=precision)
        logits, seconds = run(predictor, images)
        worst = max(float(np.abs(a - b).max()) for a, b in zip(logits, reference))
        flipped = sum(int(((a > 0) != (b > 0)).sum()) for a, b in zip(logits, reference))
        far = sum(int((((a > 0) != (b > 0)) & (np.abs(b) > args.margin)).sum()) for a, b in zip(logits, reference))
        row = {"precision": precision, "max_abs_logit_diff": worst, "pixels_flipped": flipped,
               f"pixels_flipped_beyond_{args.margin}": far, "seconds": seconds,
               "frames_per_s": len(images) / seconds, **score(logits, masks)}
        rows.append(row)
        print(f"  cuda {precision}: max |logit - cpu fp32| {worst:.4f}, decisions changed {flipped} px "
              f"({far} beyond +-{args.margin}), IoU {row['iou']:.4f} Pd {row['pd']:.4f} Fa {row['fa'] * 1e6:.2f}e-6, "
              f"{row['frames_per_s']:.1f} frames/s")
    cpu_row = {"precision": "cpu fp32", "seconds": cpu_seconds, **score(reference, masks)}
    print(f"  cpu fp32: IoU {cpu_row['iou']:.4f} Pd {cpu_row['pd']:.4f} Fa {cpu_row['fa'] * 1e6:.2f}e-6")
    if args.json:
        args.json.write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                                         "split": split, "rows": rows, "cpu": cpu_row}, indent=2))


if __name__ == "__main__":
    main()
