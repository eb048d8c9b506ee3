"""How detectable the built-in demo's targets are: each detector on the demo and on other seeds of its settings.

The app's demo (`app.core.synthetic.DEMO_CONFIG`) should hold targets that the shipped IRSAM weights
mostly find, so a newcomer sees the tool work and still has misses and false alarms to review. Rows:

- the demo itself (seed DEMO_SEED, every frame), as the app shows it;
- the same settings over other seeds (every `--step`-th frame), so the figures do not hang on one draw;
- the generator's defaults (`SyntheticConfig()` at the demo's size) over the same seeds, for contrast.

Frames are normalised as the app does (per-sequence percentile window to 8 bits, the sequence's bad
pixels repaired; `--keep-bad-pixels` leaves them, as the app did before session 8) for every detector;
IRSAM runs with the app's defaults (refined, no augmentation). Same metric code as `irsam eval`.

    python benchmarks/demo_detectability.py [--seeds 1 2 ... 8] [--step 6] [--methods irsam mpcm tophat]
        [--keep-bad-pixels] [--json docs/eval/demo_detectability.json]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.atomic import atomic_write_json  # noqa: E402
from app.core.normalization import Normalization  # noqa: E402
from app.core.synthetic import DEMO_CONFIG, DEMO_SEED, SyntheticConfig, iter_frames  # noqa: E402
from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.evaluate import make_detector  # noqa: E402
from model.metrics import SegmentationMetrics  # noqa: E402


def sequence_frames(config: SyntheticConfig, seeds: list[int], step: int, repair: bool = True) -> tuple[list, list]:
    """8-bit frames (each sequence normalised over its own frames, as the app does) and their masks."""
    images, masks = [], []
    for seed in seeds:
        frames = [f for f in iter_frames(config, seed) if f.index % step == 0]
        raw = [f.frame for f in frames]
        window = Normalization.for_raw_frames(raw) if repair else Normalization.from_percentiles(raw)
        images += [window.apply(f.frame) for f in frames]
        masks += [f.mask for f in frames]
    return images, masks


def score(detector, images, masks) -> dict:
    metrics = SegmentationMetrics()
    t0 = time.perf_counter()
    for result, mask in zip(detector.detect(images), masks):
        metrics.update(result.logits, mask)
    r = metrics.result()
    return {"iou": r["iou"], "niou": r["niou"], "pd": r["pd"], "fa": r["fa"], "hits": int(r["hits"]),
            "targets": int(r["n_targets"]), "frames": len(images), "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--step", type=int, default=6, help="every N-th frame of the other seeds' sequences")
    parser.add_argument("--methods", nargs="+", default=["irsam", "mpcm", "tophat"])
    parser.add_argument("--keep-bad-pixels", action="store_true", help="do not repair the sequences' bad pixels")
    parser.add_argument("--json")
    args = parser.parse_args()

    generator_defaults = SyntheticConfig(n_frames=DEMO_CONFIG.n_frames, height=DEMO_CONFIG.height,
                                         width=DEMO_CONFIG.width, n_targets=DEMO_CONFIG.n_targets)
    repair = not args.keep_bad_pixels
    cases = {
        f"demo (seed {DEMO_SEED}, all frames)": sequence_frames(DEMO_CONFIG, [DEMO_SEED], 1, repair),
        f"demo settings, seeds {args.seeds[0]}-{args.seeds[-1]}": sequence_frames(DEMO_CONFIG, args.seeds, args.step, repair),
        f"generator defaults, seeds {args.seeds[0]}-{args.seeds[-1]}":
            sequence_frames(generator_defaults, args.seeds, args.step, repair),
    }
    detectors = {m: make_detector(None, str(DEFAULT_WEIGHTS), "cpu", refine="contrast") if m == "irsam"
                 else make_detector(m, None) for m in args.methods}
    print("| frames | detector | IoU | nIoU | Pd | Fa x1e-6 | targets found |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for case, (images, masks) in cases.items():
        for name, detector in detectors.items():
            r = score(detector, images, masks)
            rows.append({"case": case, "detector": name, **r})
            print(f"| {case} | {name} | {100 * r['iou']:.1f} | {100 * r['niou']:.1f} | {100 * r['pd']:.1f} | "
                  f"{1e6 * r['fa']:.1f} | {r['hits']}/{r['targets']} |", flush=True)
    if args.json:
        atomic_write_json(args.json, {"demo_config": DEMO_CONFIG.to_dict(), "demo_seed": DEMO_SEED, "bad_pixels_repaired": repair,
                                      "generator_defaults": generator_defaults.to_dict(), "step": args.step,
                                      "seeds": args.seeds, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
