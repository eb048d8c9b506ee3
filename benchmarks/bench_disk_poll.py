"""What the window's look for other instances' writes costs (`ReviewProject.changes_on_disk`, every 2 s), on a project
of N proposals, side by side with opening the project and summarising its queue (`refresh_queue` after a change).

    python benchmarks/bench_disk_poll.py --frames 10000      # temp dir, deleted afterwards

Prints: how long writing the proposals took; opening the project; the first look (lists masks/ and labels/); a look
when nothing changed; a look after another instance replaced one proposal and one committed mask (lists both folders
again), with the number of frames it reported; the queue's summary.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.project import CLOCK_TICK_NS, ReviewProject  # noqa: E402
from app.core.review_queue import summarize  # noqa: E402
from model.detectors import FrameResult  # noqa: E402


def timed(call, repeat: int = 1) -> float:
    """Milliseconds per call (the best of `repeat`)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_disk_poll_"))
    try:
        stems = [f"f{i:05d}" for i in range(args.frames)]
        folder = root / "project"
        writer = ReviewProject.create(folder, root / "frames", "folder", stems, (64, 80),
                                      {"mode": "window", "low": 0, "high": 255}, None)
        logits = np.full((64, 80), -5.0, np.float32)
        logits[3:6, 3:6] = 5.0
        started = time.perf_counter()
        for stem in stems:
            writer.save_prediction(stem, FrameResult(logits))
        writer.flush_detections()
        print(f"{args.frames} proposals written in {time.perf_counter() - started:.1f} s")
        time.sleep(2 * CLOCK_TICK_NS / 1e9)

        opened: list[ReviewProject] = []
        print(f"open the project          {timed(lambda: opened.append(ReviewProject.open(folder))):8.1f} ms")
        window = opened[-1]
        print(f"first look (lists)        {timed(window.changes_on_disk):8.1f} ms")
        print(f"look, nothing changed     {timed(window.changes_on_disk, repeat=20):8.3f} ms")
        other = ReviewProject.open(folder)
        other.save_prediction(stems[5], FrameResult(logits))
        other.commit_mask(stems[6], logits > 0)
        time.sleep(2 * CLOCK_TICK_NS / 1e9)
        changes: list = []
        print(f"look, 2 files replaced    {timed(lambda: changes.append(window.changes_on_disk())):8.1f} ms"
              f"   ({len(changes[-1].stems)} frames reported)")
        print(f"summarise the queue       {timed(lambda: summarize(window), repeat=3):8.1f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
