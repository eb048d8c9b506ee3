"""`irsam detect`'s pipeline ceiling: the reader, batching and writer threads of `run_pipeline` around a
null detector that answers instantly, so the frames/s here is the most any real detector can reach.
Writer counts side by side in one run, with and without logits; then where one frame's time goes.

    python benchmarks/bench_pipeline.py [--clip ../shared/data/sequences/IR_DRONE_156] [--frames 200]
        [--writers 1 2 4] [--repeats 2] [--batch 4] [--tmp DIR] [--json OUT]

The null detector returns the same float32 logits (-10 with one 4x5 blob at +5) and a zero edge map
for every frame. Projects are written under --tmp (default: the system's temp folder), whose disk and
fsync speed are part of the figures; the clip is read through the OS page cache (warm after the
first run). Runs are interleaved (repeat, then logits, then writers) so drifting load on a shared
machine hits every configuration alike; each configuration's best run is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.commands.detect import run_pipeline  # noqa: E402
from model.atomic import atomic_write_bytes, atomic_write_npy, encode_png  # noqa: E402
from app.core.frames import open_source  # noqa: E402
from app.core.normalization import default_for  # noqa: E402
from app.core.project import ReviewProject  # noqa: E402
from app.core.targets import extract_targets  # noqa: E402
from model.detectors import FrameResult  # noqa: E402


class NullDetector:
    name = "null"
    device = "none"

    def __init__(self, shape: tuple[int, int]):
        h, w = shape
        logits = np.full(shape, -10.0, np.float32)
        logits[h // 2 : h // 2 + 4, w // 2 : w // 2 + 5] = 5.0
        self.result = FrameResult(logits=logits, edge=np.zeros(shape, np.float32))

    def detect(self, images, features: bool = False) -> list[FrameResult]:
        return [self.result] * len(images)


def pipeline_seconds(clip: Path, frames: int, writers: int, save_logits: bool, batch: int, tmp: Path) -> tuple[int, float]:
    """(frames written, seconds) of one run_pipeline over a fresh project."""
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        source = open_source(clip)
        n = min(frames, len(source))
        norm = default_for(source)
        project = ReviewProject.create(Path(folder) / "p", clip, source.kind, source.stems, source.shape, norm.to_dict())
        stats = run_pipeline(source, n, norm, NullDetector(source.shape), project, batch, save_logits, False,
                             writers=writers)
        source.close()
    return stats["frames"], stats["seconds"]


def profile_frame(clip: Path, frames: int, tmp: Path) -> dict[str, float]:
    """ms per frame of each step, one thread: the reader's two, then save_prediction's, as it does them."""
    source = open_source(clip, prefetch=0)  # every frame() decodes, here in this thread
    n = min(frames, len(source))
    norm = default_for(source)
    result = NullDetector(source.shape).result
    seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def step(name: str):
        t0 = time.perf_counter()
        yield
        seconds[name] += time.perf_counter() - t0

    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        out = Path(folder)
        for i in range(n):
            with step("read: decode"):
                raw = source.frame(i)
            with step("read: normalise"):
                norm.apply(raw)
            with step("write: binarise"):
                logits = np.asarray(result.logits, dtype=np.float32)
                mask = logits > 0
            with step("write: mask PNG encode"):
                data = encode_png(mask)
            with step("write: mask file (atomic, fsync)"):
                atomic_write_bytes(out / "masks" / f"{i}.png", data)
            with step("write: edge quantise"):
                edge = np.clip(np.rint(result.edge * 255), 0, 255).astype(np.uint8)
            with step("write: edge PNG encode"):
                data = encode_png(edge)
            with step("write: edge file (atomic, fsync)"):
                atomic_write_bytes(out / "edges" / f"{i}.png", data)
            with step("write: targets (connected components)"):
                extract_targets(mask, logits)
            with step("--save-logits: logits .npy (atomic, fsync)"):
                atomic_write_npy(out / "logits" / f"{i}.npy", logits)
        project = ReviewProject.create(out / "p", clip, source.kind, source.stems, source.shape, norm.to_dict())
        for stem in source.stems[:n]:
            with step("save_prediction, whole (no logits)"):
                project.save_prediction(stem, result, False)
    source.close()
    return {name: total / n * 1000 for name, total in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=REPO.parent / "shared/data/sequences/IR_DRONE_156")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="detector batch size (irsam detect's --batch-size)")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()), help="where the projects are written")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"{os.cpu_count()} CPUs ({cpu}), clip {args.clip}, {args.frames} frames, batch {args.batch}, "
          f"best of {args.repeats}, projects under {args.tmp}")

    best: dict[tuple[bool, int], float] = {}
    written = 0
    for _ in range(args.repeats):
        for save_logits in (False, True):
            for writers in args.writers:
                written, seconds = pipeline_seconds(args.clip, args.frames, writers, save_logits, args.batch, args.tmp)
                key = (save_logits, writers)
                best[key] = min(best.get(key, seconds), seconds)
    rows = []
    reference = args.writers[0]  # the ratios are against the first writer count given (1 by default)
    for save_logits in (False, True):
        for writers in args.writers:
            seconds = best[(save_logits, writers)]
            row = {"save_logits": save_logits, "writers": writers, "frames": written, "seconds": seconds,
                   "fps": written / seconds, "ms_per_frame": seconds / written * 1000,
                   "speedup": best[(save_logits, reference)] / seconds}
            rows.append(row)
            print(f"  {'--save-logits' if save_logits else 'no logits':13s} {writers:2d} writer(s): "
                  f"{row['fps']:7.1f} frames/s {row['ms_per_frame']:6.2f} ms/frame  "
                  f"x{row['speedup']:.2f} vs {reference} writer(s)", flush=True)

    profile = profile_frame(args.clip, args.frames, args.tmp)
    print("where one frame's time goes, one thread (ms/frame):")
    for step, ms in profile.items():
        print(f"  {step:45s} {ms:6.3f}")
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "cpu": cpu, "clip": str(args.clip), "batch": args.batch,
                                         "speedup_against_writers": reference, "pipeline": rows, "profile_ms": profile}, indent=2))


if __name__ == "__main__":
    main()
