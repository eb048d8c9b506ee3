"""Review-app benchmark: time to first frame, frame-change latency with overlays, memory after a full scrub.

    xvfb-run -a -s "-screen 0 1600x1000x24 +extension GLX" .venv/bin/python benchmarks/bench_app.py
    ... --frames 2000      a shorter sequence (default 10000)
    ... --size 1280x1024   the frame size (default 640x512)
    ... --data DIR         prepare the sequence in DIR once and reuse it on later runs
    ... --changes 300      frame changes timed in each pass (default 600)
    ... --settles 20       single changes timed for the panels (default 40)
    ... --no-full-scrub    skip scrubbing every frame (no memory-after-scrub figure)
    ... --profile          cProfile the timed frame changes (top functions by cumulative time)
    ... --logits           save logits with the predictions (what the app's runs do), so the heatmap draws

The sequence is 16-bit PNGs in a temp folder (or under `--data`): `--distinct` frames (default 100)
rendered by the synthetic generator, the rest hard links to them (rendering 10,000 frames would take longer than the benchmark;
opening and decoding cost the same per file). Predictions are the generator's masks written through
ReviewProject.save_prediction, committed masks are written for every 10th frame, so every overlay
has something to draw. Targets: first frame < 1 s, p95 frame change < 30 ms, memory bounded by the
frame cache.

A frame change is timed from the request until the new frame and its overlays are painted, in two passes:
back to back (each change starts when the previous one is painted: a stress test, the prefetch threads
get no slack) and paced (one change every `--pace-ms`, default 40 ms: holding an arrow key or playing at
25 fps, the event loop running in between). The panels
that follow the frame (target list, IoU/Pd, review queue) are updated once it has stayed on screen, so
they are timed apart: single changes, each waited on until the panels are up to date.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_sequence(folder: Path, frames: int, distinct: int, height: int, width: int) -> Path:
    from app.core.synthetic import SyntheticConfig, iter_frames, write_sequence

    config = SyntheticConfig(n_frames=distinct, height=height, width=width, n_targets=(2, 4))
    write_sequence(iter_frames(config, seed=1), folder, layout="folder")
    images, masks = folder / "images", folder / "masks"
    for i in range(distinct, frames):
        source = f"{i % distinct + 1:06d}.png"
        os.link(images / source, images / f"{i + 1:06d}.png")
        os.link(masks / source, masks / f"{i + 1:06d}.png")
    return folder


def add_predictions(folder: Path, distinct: int, logits: bool) -> None:
    import cv2

    from app.core.frames import open_source
    from app.core.normalization import default_for
    from app.core.project import ReviewProject
    from app.core.project import project_dir_for
    from model.detectors import FrameResult

    source = open_source(folder)
    project = ReviewProject.create(project_dir_for(folder), source.path, source.kind, source.stems, source.shape,
                                   default_for(source).to_dict())
    masks = [cv2.imread(str(folder / "masks" / f"{k + 1:06d}.png"), cv2.IMREAD_GRAYSCALE) > 0 for k in range(distinct)]
    for i, stem in enumerate(source.stems):
        mask = masks[i % distinct]
        scores = np.where(mask, 4.0, -12.0).astype(np.float32)
        edge = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(np.float32)
        project.save_prediction(stem, FrameResult(scores, edge), save_logits=logits)
        if i % 10 == 0:
            project.commit_mask(stem, mask)
    project.flush_detections()
    source.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--distinct", type=int, default=100, help="frames actually rendered (the rest are links)")
    parser.add_argument("--size", default="640x512", help="WIDTHxHEIGHT")
    parser.add_argument("--changes", type=int, default=600, help="frame changes timed for the latency numbers")
    parser.add_argument("--no-full-scrub", action="store_true", help="skip scrubbing every frame for the memory number")
    parser.add_argument("--data", type=Path, help="folder for the prepared sequence, kept and reused (default: a temp folder)")
    parser.add_argument("--profile", action="store_true", help="print the top functions of the timed frame changes")
    parser.add_argument("--logits", action="store_true", help="save logits with the predictions (heatmap overlay)")
    parser.add_argument("--settles", type=int, default=40, help="single changes waited on until the panels are updated")
    parser.add_argument("--pace-ms", type=float, default=40.0,
                        help="second pass: one change every this many ms (key repeat / 25 fps playback); 0 skips it")
    args = parser.parse_args()
    width, height = map(int, args.size.lower().split("x"))
    distinct = min(args.distinct, args.frames)

    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    try:
        t = time.perf_counter()
        folder = (args.data or tmp) / f"sequence-{args.frames}-{distinct}-{width}x{height}{'-logits' if args.logits else ''}"
        from app.core.project import project_dir_for

        if not (project_dir_for(folder) / "detections.csv").is_file():  # absent too when a preparation was cut short
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(project_dir_for(folder), ignore_errors=True)
            make_sequence(folder, args.frames, distinct, height, width)
            add_predictions(folder, distinct, args.logits)
            print(f"prepared {args.frames} frames {width}x{height} uint16 + predictions in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        from PySide6 import QtCore, QtWidgets

        app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
        from app.main_thread_gc import MainThreadGarbageCollector
        from app.main_window import MainWindow

        MainThreadGarbageCollector(app).start()  # as app.main does

        window = MainWindow(QtCore.QSettings(str(tmp / "settings.ini"), QtCore.QSettings.IniFormat))
        window.resize(1500, 950)
        window.show()
        app.processEvents()
        print(f"window ready (imports + construction): {time.perf_counter() - t:.2f} s")
        rss_start = rss_mib()

        t = time.perf_counter()
        assert window.open_path(folder)
        app.processEvents()  # the first frame is painted
        first_frame = time.perf_counter() - t
        print(f"time to first frame ({args.frames} frames, project with predictions): {first_frame * 1000:.0f} ms "
              f"(target < 1000 ms)")
        while not window.detection_panel.isEnabled():
            app.processEvents()
            time.sleep(0.005)
        print(f"earlier results and ground truth shown (read in the background): "
              f"{(time.perf_counter() - t) * 1000:.0f} ms after opening")

        for toggle in window.overlay_panel.toggles.values():
            toggle.setChecked(True)
        n = len(window.session)
        profiler = cProfile.Profile() if args.profile else None

        def timed_changes(pace_s: float) -> tuple[dict[str, list[float]], list[float]]:
            """`args.changes` changes, three steps to one random jump; the next one starts `pace_s` after
            the previous one started (0: at once, back to back)."""
            rng = np.random.default_rng(0)
            latencies: dict[str, list[float]] = {"step": [], "jump": []}
            cpu = []  # the GUI thread's own CPU time: what the change costs without other processes competing
            for k in range(args.changes):
                kind = "jump" if k % 4 == 3 else "step"
                index = int(rng.integers(0, n)) if kind == "jump" else (window.index + 1) % n
                t, c = time.perf_counter(), time.thread_time()
                window.timeline.go_to(index)
                app.processEvents()
                latencies[kind].append(time.perf_counter() - t)
                cpu.append(time.thread_time() - c)
                while time.perf_counter() - t < pace_s:  # the event loop runs between changes, as between key repeats
                    app.processEvents()
                    time.sleep(0.001)
            return latencies, cpu

        def report(name: str, latencies: dict[str, list[float]], cpu: list[float]) -> None:
            all_ms = np.array(latencies["step"] + latencies["jump"]) * 1000
            for kind, values in latencies.items():
                ms = np.array(values) * 1000
                print(f"frame change, {name} ({kind}, all overlays on): median {np.median(ms):.1f} ms, "
                      f"p95 {np.percentile(ms, 95):.1f} ms")
            print(f"frame change, {name} (all): median {np.median(all_ms):.1f} ms, p95 {np.percentile(all_ms, 95):.1f} ms "
                  f"(target p95 < 30 ms)")
            cpu_ms = np.array(cpu) * 1000
            print(f"frame change, {name}, GUI-thread CPU time: median {np.median(cpu_ms):.1f} ms, "
                  f"p95 {np.percentile(cpu_ms, 95):.1f} ms (machine load average {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} CPUs)")

        if profiler:
            profiler.enable()
        back_to_back = timed_changes(0.0)
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        report("back to back", *back_to_back)
        if args.pace_ms > 0:
            report(f"one every {args.pace_ms:.0f} ms", *timed_changes(args.pace_ms / 1000))

        panels_timer = getattr(window, "panels_timer", None)  # absent before the panels were deferred
        settle, settle_cpu = [], []
        rng = np.random.default_rng(1)
        for _ in range(args.settles):
            index = int(rng.integers(0, n))
            t, c = time.perf_counter(), time.thread_time()
            window.timeline.go_to(index)
            app.processEvents()
            while panels_timer is not None and panels_timer.isActive():
                time.sleep(0.002)
                app.processEvents()
            settle.append(time.perf_counter() - t)
            settle_cpu.append(time.thread_time() - c)
        settle_ms, settle_cpu_ms = np.array(settle) * 1000, np.array(settle_cpu) * 1000
        print(f"single change until the panels are up to date: median {np.median(settle_ms):.1f} ms, "
              f"p95 {np.percentile(settle_ms, 95):.1f} ms (including the wait for the frame to stay); "
              f"GUI-thread CPU time median {np.median(settle_cpu_ms):.1f} ms")

        if not args.no_full_scrub:
            t = time.perf_counter()
            window.timeline.go_to(0)
            rss_half = float("nan")
            for i in range(n):
                window.timeline.step(1)
                app.processEvents()
                if i == n // 2:
                    rss_half = rss_mib()
            stats = window.session.source.cache_stats()
            frame_mib = width * height * 2 / 2**20
            print(f"scrubbed all {n} frames in {time.perf_counter() - t:.0f} s; RSS {rss_start:.0f} MiB before opening, "
                  f"{rss_half:.0f} MiB half-way, {rss_mib():.0f} MiB after; frame cache {stats['size']}/{stats['capacity']} frames "
                  f"({stats['capacity'] * frame_mib:.0f} MiB bound)")
        window.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
