"""The model card's accuracy table: IRSAM (`--weights`, default the shipped ones) and the classical
detectors on a NUAA-SIRST idx_427 split (`--split`, default test: 86 images), with the same metric
code as `irsam eval`.

    python benchmarks/eval_sirst.py [--weights resources/weights/irsam_paper_sirst.pt]
        [--data ../shared/data/nuaa-sirst] [--split test] [--methods tophat mpcm pstnn] [--device auto]
        [--tta none ...] [--refine contrast ...] [--json OUT]

IRSAM gives one row per `--refine` mode for each `--tta` mode (none when the weights file is absent),
each classical method one row; an empty `--methods` or `--tta` leaves those rows out. The model card's
files (docs/model_card.md) come from:

    ... --methods --tta none flips scale+flips --refine off trim contrast --json docs/eval/sirst_test_irsam.json
    ... --tta --json docs/eval/sirst_test_classical.json
    ... --split val --methods --tta none flips scale+flips --refine off trim contrast --json docs/eval/sirst_val_irsam.json

Two conventions side by side: the default (corrected Fa, native resolution) and the paper's
(legacy Fa, everything resized to 512x512), so our numbers sit next to the published ones.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.atomic import atomic_write_json  # noqa: E402
from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.data import find_dataset  # noqa: E402
from model.detectors import REFINE_MODES, TTA_MODES  # noqa: E402
from model.evaluate import evaluate_variants, make_detector  # noqa: E402
from model.refine import make_refinement  # noqa: E402

SIRST = REPO.parent / "shared" / "data" / "nuaa-sirst"
CONVENTIONS = {"native_corrected": dict(fa_mode="corrected"), "legacy_512": dict(fa_mode="legacy", resize_to=512)}
PAPER = {"IRSAM (paper)": (80.78, 78.39, 99.53, 3.95), "Top-Hat (paper)": (1.5, None, None, None),
         "PSTNN (paper)": (30.3, None, None, None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=SIRST)
    parser.add_argument("--split", default="test")
    parser.add_argument("--methods", nargs="*", default=["tophat", "mpcm", "pstnn"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tta", nargs="*", default=["none"], choices=TTA_MODES,
                        help="IRSAM rows: one per test-time augmentation mode")
    parser.add_argument("--refine", nargs="*", default=["contrast"], choices=REFINE_MODES,
                        help="IRSAM rows: one per mask refinement for each --tta mode")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    samples = find_dataset(args.data / "images", args.data / "masks", args.data / "splits/idx_427" / f"{args.split}.txt")
    rows = []
    if args.weights.exists():
        for tta in args.tta:
            detector = make_detector(None, str(args.weights), args.device, tta=tta, refine="off")
            variants = {"irsam" + ("" if tta == "none" else f"+{tta}") + ("" if refine == "off" else f"+{refine}"):
                        make_refinement(refine) for refine in args.refine}
            rows += score(detector, samples, variants)
    for method in args.methods:
        rows += score(make_detector(method, None), samples, {method: None})

    print(f"NUAA-SIRST idx_427 {args.split} ({len(samples)} images)\n")
    print("| method | IoU | nIoU | Pd | Fa x1e-6 (corrected, native) | IoU@512 | nIoU@512 | Pd@512 | Fa x1e-6 (legacy, 512) | frames/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        n, lg = r["native_corrected"], r["legacy_512"]
        print(f"| {r['method']} | {100 * n['iou']:.2f} | {100 * n['niou']:.2f} | {100 * n['pd']:.2f} | {1e6 * n['fa']:.2f} "
              f"| {100 * lg['iou']:.2f} | {100 * lg['niou']:.2f} | {100 * lg['pd']:.2f} | {1e6 * lg['fa']:.2f} "
              f"| {n['frames_per_second']:.1f} |")
    for name, (iou, niou, pd, fa) in PAPER.items():
        cells = [f"{v:.2f}" if v is not None else "-" for v in (iou, niou, pd, fa)]
        print(f"| {name} | - | - | - | - | {' | '.join(cells)} | - |")
    if args.json:
        atomic_write_json(args.json, {"split": args.split, "n_images": len(samples), "rows": rows})


def score(detector, samples, variants: dict) -> list[dict]:
    """Rows of the table: one detector pass scored in both conventions for each variant (row name ->
    refinement applied to the detector's logits, or None)."""
    rows = []
    for name, by_convention in evaluate_variants(detector, samples, variants, CONVENTIONS).items():
        rows.append({"method": name, **{c: result for c, (result, _) in by_convention.items()}})
        print(f"{name}: done", file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    main()
