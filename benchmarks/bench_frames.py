"""Frame source benchmark on a long 16-bit folder: open time, frame() latency while scrubbing, memory.

    python benchmarks/bench_frames.py --frames 10000 --unique 500   # temp dir, deleted afterwards (--keep: kept)
    python benchmarks/bench_frames.py --dir /data/seq               # generate into (or reuse) a folder, kept
    ... --width 640 --height 512       the generated frames' size
    ... --cache-size 64 --prefetch 4   the frame source's cache and prefetch depth, in frames
    ... --scrub 0 --compare 500        frames scrubbed with prefetch (0: all) and without it (0: skip)
    ... --paced 300                    frames scrubbed at 30 fps (0: skip)

Writing 16-bit PNGs costs tens of ms per frame, so by default `--unique` distinct frames are generated
and the folder is filled up to `--frames` files with hard links to them (decode cost per file is the
same; the frame source sees N separate files). `--unique 0` generates every frame.
Latencies are with the OS page cache warm (the files were just written); a cold disk adds read time.
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

from app.core.frames import open_source  # noqa: E402
from app.core.normalization import default_for  # noqa: E402
from app.core.synthetic import SyntheticConfig, iter_frames, write_sequence  # noqa: E402


def rss_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ms(values) -> str:
    a = np.asarray(values) * 1e3
    return f"median {np.median(a):.2f} ms, p95 {np.percentile(a, 95):.2f} ms, max {a.max():.2f} ms"


def generate(out: Path, frames: int, unique: int, width: int, height: int) -> None:
    unique = frames if unique <= 0 else min(unique, frames)
    config = SyntheticConfig(n_frames=unique, height=height, width=width)
    start = time.perf_counter()
    write_sequence(iter_frames(config, seed=0), out, layout="folder")
    took = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (out / "images").iterdir()) / 2 ** 20
    print(f"generated {unique} frames {width}x{height} uint16 PNG in {took:.1f} s "
          f"({took / unique * 1e3:.1f} ms/frame incl. mask), images {size:.0f} MiB")
    if frames > unique:
        images = out / "images"
        start = time.perf_counter()
        for i in range(unique, frames):
            (images / f"{i + 1:06d}.png").hardlink_to(images / f"{i % unique + 1:06d}.png")
        print(f"linked up to {frames} files in {time.perf_counter() - start:.1f} s")


def scrub(path: Path, cache_size: int, prefetch: int, paced_fps: float | None, limit: int | None) -> list[float]:
    with open_source(path, cache_size=cache_size, prefetch=prefetch) as src:
        n = len(src) if limit is None else min(limit, len(src))
        latencies = []
        period = 1.0 / paced_fps if paced_fps else 0.0
        for i in range(n):
            start = time.perf_counter()
            src.frame(i)
            took = time.perf_counter() - start
            latencies.append(took)
            if period > took:
                time.sleep(period - took)
        return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--unique", type=int, default=500, help="distinct frames to generate (0: all)")
    parser.add_argument("--compare", type=int, default=500, help="frames scrubbed without prefetch, to compare")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--dir", type=Path, help="folder to generate into / reuse (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    parser.add_argument("--scrub", type=int, default=0, help="frames in the prefetched scrub (0: whole sequence)")
    parser.add_argument("--cache-size", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--paced", type=int, default=300, help="frames scrubbed at 30 fps (0: skip)")
    args = parser.parse_args()

    out = args.dir or Path(tempfile.mkdtemp(prefix="irsam-bench-"))
    try:
        if not (out / "images").is_dir():
            generate(out, args.frames, args.unique, args.width, args.height)
        rss_start = rss_mib()

        start, cpu_start = time.perf_counter(), time.process_time()
        src = open_source(out, cache_size=args.cache_size, prefetch=args.prefetch)
        opened, opened_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        src.frame(0)
        first = time.perf_counter() - start
        print(f"open: {opened * 1e3:.0f} ms wall ({opened_cpu * 1e3:.0f} ms CPU) for {len(src)} frames "
              f"({len(src.bad_frames)} bad), open + first frame {first * 1e3:.0f} ms")
        start = time.perf_counter()
        norm = default_for(src)
        print(f"default normalisation ({norm}) in {(time.perf_counter() - start) * 1e3:.0f} ms")
        frame = src.frame(0)
        norm.apply(frame)
        start = time.perf_counter()
        for _ in range(50):
            norm.apply(frame)
        print(f"Normalization.apply {frame.shape[1]}x{frame.shape[0]} uint16: "
              f"{(time.perf_counter() - start) / 50 * 1e3:.2f} ms")
        src.close()

        for prefetch, limit in ((0, args.compare), (args.prefetch, args.scrub or None)):
            if limit == 0:
                continue
            start = time.perf_counter()
            lat = scrub(out, args.cache_size, prefetch, None, limit)
            took = time.perf_counter() - start
            print(f"back-to-back scrub, prefetch={prefetch}: {len(lat)} frames in {took:.1f} s "
                  f"({len(lat) / took:.0f} fps), frame() {ms(lat)}")
        print(f"RSS after the scrubs: {rss_mib():.0f} MiB (before opening: {rss_start:.0f} MiB, "
              f"peak {rss_mib('VmHWM'):.0f} MiB; cache {args.cache_size} frames)")
        if args.paced:
            lat = scrub(out, args.cache_size, args.prefetch, 30.0, args.paced)
            print(f"30 fps playback, prefetch={args.prefetch}, {len(lat)} frames: frame() {ms(lat)}")
    finally:
        if args.dir is None and not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        elif args.keep:
            print(f"kept {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
