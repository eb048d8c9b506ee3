"""What the target-size gate (`--min-area/--max-area`, model/size_gate.py) does to the shipped weights' scores.

Each detector runs once per frame; every gate is then applied to the same logits, so the rows differ
only by the gate. Rows: the real clips (box ground truth: Pd and false alarms a frame, every frame)
and NUAA-SIRST splits (IoU / nIoU / Pd / Fa, native resolution, corrected Fa), IRSAM with the app's
defaults (refined, no augmentation). Same metric code as `irsam eval`.

    python benchmarks/size_gate.py [--weights resources/weights/irsam_paper_sirst.pt] [--gates 1- 1-200 1-120 ...]
        [--clips ../shared/data/sequences/IR_DRONE_146 ...] [--data ../shared/data/nuaa-sirst]
        [--splits val test] [--json docs/eval/size_gate.json]

A gate "MIN-MAX" keeps components of MIN..MAX px, "MIN-" those of at least MIN px. `--clips` are clip
folders (images/ and boxes.csv; default IR_DRONE_146 and IR_DRONE_156), `--data` the NUAA-SIRST folder
whose idx_427 `--splits` are scored; an empty `--clips` or `--splits` skips those rows.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.atomic import atomic_write_json  # noqa: E402
from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.data import find_dataset, read_image_gray, read_mask  # noqa: E402
from model.evaluate import clip_frames, make_detector  # noqa: E402
from model.metrics import BoxMetrics, SegmentationMetrics, read_boxes_csv  # noqa: E402
from model.size_gate import TargetSizeGate  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def parse_gate(text: str) -> TargetSizeGate:
    """"1-200" -> 1..200 px, "3-" -> at least 3 px."""
    low, _, high = text.partition("-")
    return TargetSizeGate(int(low), int(high) if high else None)


def logits_of(detector, images, batch: int = 8) -> list:
    out = []
    for start in range(0, len(images), batch):
        out += [r.logits for r in detector.detect(images[start : start + batch])]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--gates", nargs="+", default=["1-", "1-200", "1-150", "1-120", "1-100", "1-80"])
    p.add_argument("--clips", nargs="*", default=[str(SHARED / "sequences" / n) for n in ("IR_DRONE_146", "IR_DRONE_156")])
    p.add_argument("--data", default=str(SHARED / "nuaa-sirst"))
    p.add_argument("--splits", nargs="*", default=["val", "test"])
    p.add_argument("--json")
    args = p.parse_args()
    gates = [parse_gate(g) for g in args.gates]
    detector = make_detector(None, args.weights, "cpu", refine="contrast")
    rows = []
    for clip in map(Path, args.clips):
        boxes = read_boxes_csv(clip / "boxes.csv")
        logits = logits_of(detector, [read_image_gray(f) for f in clip_frames(clip)])
        for gate in gates:
            metrics = BoxMetrics()
            for index, frame_logits in enumerate(logits):
                metrics.update(gate(frame_logits), boxes.get(index, []))
            r = metrics.result()
            rows.append({"set": clip.name, "gate": gate.to_dict(), **r})
            print(f"{clip.name:14s} {str(gate):>11s}  Pd {100 * r['pd']:6.2f}  false alarms/frame "
                  f"{r['false_alarms_per_frame']:.2f}  ({r['n_frames']} frames)", flush=True)
    data = Path(args.data)
    for split in args.splits:
        samples = find_dataset(data / "images", data / "masks", data / "splits" / "idx_427" / f"{split}.txt")
        masks = [read_mask(s.mask_path) for s in samples]
        logits = logits_of(detector, [read_image_gray(s.image_path) for s in samples], batch=1)
        for gate in gates:
            metrics = SegmentationMetrics()
            for frame_logits, mask in zip(logits, masks):
                metrics.update(gate(frame_logits), mask)
            r = metrics.result()
            rows.append({"set": f"nuaa-sirst {split}", "gate": gate.to_dict(), **r})
            print(f"nuaa-sirst {split:4s} {str(gate):>11s}  IoU {100 * r['iou']:.2f}  nIoU {100 * r['niou']:.2f}  "
                  f"Pd {100 * r['pd']:.2f}  Fa {1e6 * r['fa']:.2f}e-6", flush=True)
    if args.json:
        atomic_write_json(args.json, {"weights": str(Path(args.weights).name), "refine": "contrast", "rows": rows})


if __name__ == "__main__":
    main()
