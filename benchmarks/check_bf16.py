"""bf16 autocast against fp32: same binary masks except where the fp32 logit is near zero?

    python benchmarks/check_bf16.py [--weights resources/weights/irsam_paper_sirst.pt] [--images 20] [--device cpu]

Checks the official parity fixture (random official weights, 512x512) and the first `--images`
NUAA-SIRST test images through `--weights` (skipped when absent), both on `--device`. Prints, per
case, the pixels whose decision flips and the largest |fp32 logit| among them. On CPUs without
native bf16 (AVX2 only) bf16 is emulated and slower than fp32; the predictor's default there is fp32.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.build import build_irsam  # noqa: E402
from model.checkpoint import load_into, load_state_dict_file  # noqa: E402
from model.config import official  # noqa: E402
from model.data import find_dataset, read_image_gray  # noqa: E402
from model.predictor import Predictor  # noqa: E402

SHARED = REPO.parent / "shared"


def compare(name: str, fp32: np.ndarray, bf16: np.ndarray, seconds: tuple[float, float]) -> None:
    flips = (fp32 > 0) != (bf16 > 0)
    worst = float(np.abs(fp32[flips]).max()) if flips.any() else 0.0
    scale = float(np.abs(fp32).max())
    print(f"{name:40s} flips {int(flips.sum()):6d} / {fp32.size} px, max |fp32 logit| at a flip {worst:.4f} "
          f"(logit range {scale:.1f}), max |diff| {np.abs(fp32 - bf16).max():.4f}; fp32 {seconds[0]:.2f} s, bf16 {seconds[1]:.2f} s")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    fixture = torch.load(SHARED / "fixtures/irsam-official/random_io_512.pt", map_location="cpu", weights_only=True)
    model = build_irsam(official())
    load_into(model, load_state_dict_file(SHARED / "fixtures/irsam-official/random_state.pt"))
    frame = fixture["input"][0, 0].numpy()  # its first channel as a gray frame: a precision check, not parity
    fp32, t32 = timed(lambda: Predictor(model, official(), device=args.device).detect([frame])[0].logits)
    bf16, t16 = timed(lambda: Predictor(model, official(), device=args.device, precision="bf16").detect([frame])[0].logits)
    compare("official fixture (random weights)", fp32, bf16, (t32, t16))

    if args.weights.exists():
        data = SHARED / "data/nuaa-sirst"
        samples = find_dataset(data / "images", data / "masks", data / "splits/idx_427/test.txt")[: args.images]
        p32 = Predictor.from_file(args.weights, device=args.device)
        p16 = Predictor.from_file(args.weights, device=args.device, precision="bf16")
        flips = worst = 0
        total = 0
        for s in samples:
            img = read_image_gray(s.image_path)
            a, b = p32.detect([img])[0].logits, p16.detect([img])[0].logits
            f = (a > 0) != (b > 0)
            flips += int(f.sum())
            total += a.size
            worst = max(worst, float(np.abs(a[f]).max()) if f.any() else 0.0)
        print(f"{'shipped weights on ' + str(len(samples)) + ' SIRST test images':40s} flips {flips} / {total} px, "
              f"max |fp32 logit| at a flip {worst:.4f}")


if __name__ == "__main__":
    main()
