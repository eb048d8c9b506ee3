"""Does the analyst's loop (review a real clip, export, fine-tune) cut the shipped weights' false alarms?

The loop runs through the app's own core, as the Review and Tools menus do:

1. `irsam detect` over a real clip (shipped weights) makes the review project;
2. a simulated analyst reviews the first `--review` frames, every `--every`-th one: a proposal
   component whose centroid falls in a ground-truth box (or within 3 px of its centre, the box scoring
   rule, `centroids_in_box`) is kept, every other component is deleted as a false alarm; a box with
   no component gets "Grow target here" at its centre (`grow_target`). The frame is marked corrected
   (or accepted when nothing changed);
3. the reviewed frames are exported (SIRST layout) and a `FineTuneJob` trains from the shipped weights,
   holding the last block of reviewed frames out for checkpoint selection and threshold calibration;
   with `--keep-sirst` NUAA-SIRST's trainval frames (its split file: never test) are added to training,
   as the fine-tune dialog's "Also train on" does, so that the network does not forget them;
4. shipped and fine-tuned weights are scored side by side, same code as `irsam eval`: on the clip's
   frames after the reviewed ones and a gap of `--gap` frames (later in time, never trained on), on
   the other clip (never reviewed), and on NUAA-SIRST test (what the fine-tune costs there).

    python benchmarks/clip_adaptation.py [--clip IR_DRONE_156] [--other IR_DRONE_146] [--review 90]
        [--every 3] [--gap 30] [--epochs 10] [--keep-sirst] [--train-args "--crop 256 --batch-size 8 ..."]
        [--work runs/clip_adapt] [--json OUT]

`--clip` and `--other` name folders of ../shared/data/sequences; `--train-args` are passed on to
`irsam train` (default "--crop 256 --batch-size 8 --precision bf16 --val-every 2"). A later run with
the same `--work` reuses its detect project, review and export. Session 15's records:
docs/eval/clip_adaptation_s15/.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.atomic import atomic_write_json  # noqa: E402
from app.core.edits import grow_target  # noqa: E402
from app.core.export import export_project  # noqa: E402
from app.core.finetune import FineTuneJob  # noqa: E402
from app.core.frames import open_source  # noqa: E402
from app.core.project import ReviewProject, ReviewStatus  # noqa: E402
from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.data import find_dataset  # noqa: E402
from model.evaluate import clip_frames, evaluate_clip, evaluate_dataset, make_detector  # noqa: E402
from model.metrics import centroids_in_box, components, read_boxes_csv  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SIRST = SHARED / "nuaa-sirst"


def review_frame(project: ReviewProject, stem: str, image: np.ndarray, boxes) -> None:
    """The simulated analyst's corrections on one frame, as one undoable edit."""
    mask = project.working_mask(stem).copy()
    found = components(mask)
    hits = [centroids_in_box(found.centroids, box) for box in boxes]  # the box scoring's own rule
    kept = np.logical_or.reduce(hits) if hits else np.zeros(len(found), bool)
    mask &= np.isin(found.labels, 1 + np.flatnonzero(kept))  # the false alarms deleted
    for (x0, y0, w, h), hit in zip(boxes, hits):
        if not hit.any():  # a missed target: "Grow target here" at the box centre
            mask |= grow_target(image, x0 + w / 2, y0 + h / 2, window=int(max(w, h)) + 6, max_area=int(w * h))
    changed = project.edit_mask(stem, mask) is not None  # committed as the app commits an edit
    project.set_status(stem, ReviewStatus.CORRECTED if changed else ReviewStatus.ACCEPTED)


def score_clip(detector, clip: Path, frames: range) -> dict:
    r = evaluate_clip(detector, clip, start=frames.start, limit=len(frames))
    return {"frames": len(frames), "pd": round(100 * r["pd"], 2),
            "false_alarms_per_frame": round(r["false_alarms_per_frame"], 3), "fa_1e6": round(1e6 * r["fa"], 2)}


def score_sirst(detector, split: str) -> dict:
    samples = find_dataset(SIRST / "images", SIRST / "masks", SIRST / "splits" / "idx_427" / f"{split}.txt")
    r, _ = evaluate_dataset(detector, samples)
    return {"iou": round(100 * r["iou"], 2), "niou": round(100 * r["niou"], 2), "pd": round(100 * r["pd"], 2),
            "fa_1e6": round(1e6 * r["fa"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="IR_DRONE_156")
    parser.add_argument("--other", default="IR_DRONE_146")
    parser.add_argument("--review", type=int, default=90, help="the analyst reviews frames 1..N")
    parser.add_argument("--every", type=int, default=3, help="... every k-th of them")
    parser.add_argument("--gap", type=int, default=30, help="frames skipped after the reviewed ones")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--keep-sirst", action="store_true", help="train on NUAA-SIRST trainval too")
    parser.add_argument("--train-args", default="--crop 256 --batch-size 8 --precision bf16 --val-every 2")
    parser.add_argument("--work", default=str(REPO / "runs" / "clip_adapt"))
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    clip = SHARED / "sequences" / args.clip
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    project_dir = work / "project"
    started = time.time()
    if not (project_dir / "project.json").exists():
        subprocess.run([sys.executable, "-m", "app.cli", "detect", str(clip / "images"), "--out", str(project_dir),
                        "--quiet"], cwd=REPO, check=True)
    project = ReviewProject.open(project_dir)
    source = open_source(clip / "images")
    boxes = read_boxes_csv(clip / "boxes.csv")
    reviewed = list(range(0, min(args.review, len(source)), args.every))
    for index in reviewed:
        stem = source.stems[index]
        if project.status(stem) == ReviewStatus.UNREVIEWED:  # a second run reuses the first one's review
            review_frame(project, stem, source.frame(index), boxes.get(index, []))
    corrected = sum(project.status(source.stems[i]) == ReviewStatus.CORRECTED for i in reviewed)
    print(f"reviewed {len(reviewed)} frames ({corrected} corrected) in {time.time() - started:.0f} s")

    export_dir = work / ("export_sirst" if args.keep_sirst else "export")
    run_dir = work / ("run_sirst" if args.keep_sirst else "run")
    if not any(export_dir.rglob("meta.json")):
        report = export_project(project, export_dir, "sirst", split="train")
        print(f"exported {len(report.exported)} frames to {report.root}")
    base = [SIRST / "splits" / "idx_427" / "trainval.txt"] if args.keep_sirst else None  # never its test frames
    job = FineTuneJob(export_dir, run_dir, init_weights=DEFAULT_WEIGHTS, base_data=base, epochs=args.epochs,
                      device="cpu", extra_args=args.train_args.split())
    t_train = time.time()
    job.start()
    code = job.wait()
    train_minutes = (time.time() - t_train) / 60
    if code != 0:
        print((run_dir / "train.log").read_text()[-3000:])
        return 1
    print(f"fine-tune: {len(job.holdout.train)} frames trained, {len(job.holdout.val)} held out "
          f"({job.holdout.by}), {train_minutes:.1f} min")

    other = SHARED / "sequences" / args.other
    later = range(min(args.review + args.gap, len(source)), len(source))
    result = {"clip": args.clip, "other": args.other, "reviewed_frames": len(reviewed), "corrected": corrected,
              "keep_sirst": args.keep_sirst, "epochs": args.epochs, "train_args": args.train_args,
              "train_minutes": round(train_minutes, 1), "held_out": {"train": len(job.holdout.train),
                                                                      "val": len(job.holdout.val)}}
    for name, weights in (("shipped", DEFAULT_WEIGHTS), ("fine-tuned", job.best_path)):
        detector = make_detector(None, str(weights), device="cpu", refine="contrast")  # the app's default
        result[name] = {
            f"{args.clip} frames {later.start + 1}-{later.stop}": score_clip(detector, clip, later),
            f"{args.other} all frames": score_clip(detector, other, range(len(clip_frames(other)))),
            "NUAA-SIRST test": score_sirst(detector, "test"),
        }
        print(name, json.dumps(result[name], indent=1))
    if args.json_out:
        atomic_write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
