"""Model speed, side by side in one run: official@1024 vs paper@native-512, fp32 vs bf16, and
`irsam detect` end to end on a real clip against the model's own time on the same frames.

    python benchmarks/bench_model.py [--threads 2] [--repeats 5] [--clip ../shared/data/sequences/IR_DRONE_156]
        [--frames 60] [--device cpu] [--batch 1 32] [--weights resources/weights/irsam_paper_sirst.pt]
        [--skip-official] [--skip-latency] [--json docs/eval/bench_model.json]

`--skip-official` times the paper config only; `--skip-latency` skips the per-config timings and runs
only the `irsam detect` part; `--json` writes both parts' figures. Random weights give the same speed
as trained ones; the clip part uses the shipped weights when present and is skipped without the clip.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.frames import open_source  # noqa: E402
from app.core.normalization import default_for  # noqa: E402
from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.build import build_irsam  # noqa: E402
from model.config import preset  # noqa: E402
from model.predictor import Predictor  # noqa: E402


def latency(config_name: str, precision: str, device: str, repeats: int, batch: int) -> float:
    torch.manual_seed(0)
    predictor = Predictor(build_irsam(preset(config_name)), preset(config_name), device=device,
                          precision=precision, batch_size=batch)
    return predictor.benchmark((512, 512), repeats=repeats, batch=batch)


def detect_end_to_end(clip: Path, frames: int, weights: Path | None, device: str, precision: str) -> dict:
    from app.commands.detect import run_pipeline
    from app.core.project import ReviewProject

    source = open_source(clip)
    n = min(frames, len(source))
    norm = default_for(source)
    if weights is not None and weights.exists():
        predictor = Predictor.from_file(weights, device=device, precision=precision, refine="contrast")
    else:
        predictor = Predictor(build_irsam(preset("paper")), preset("paper"), device=device, precision=precision,
                              refine="contrast")  # as `irsam detect` runs it by default
    images = [norm.apply(source.frame(i)) for i in range(n)]
    predictor.detect(images[:4])  # warm-up
    t0 = time.perf_counter()
    for start in range(0, n, 4):
        predictor.detect(images[start : start + 4])
    model_seconds = time.perf_counter() - t0
    source.close()
    with tempfile.TemporaryDirectory() as tmp:
        source = open_source(clip)  # cold cache: decoding is part of the end-to-end time
        project = ReviewProject.create(Path(tmp) / "p", clip, source.kind, source.stems, source.shape, norm.to_dict())
        stats = run_pipeline(source, n, norm, predictor, project, 4, False, False)
        project.flush_detections()
        source.close()
    return {
        "frames": n,
        "size": f"{source.shape[1]}x{source.shape[0]}",
        "model_fps": n / model_seconds,
        "end_to_end_fps": stats["fps"],
        "overhead": model_seconds and stats["seconds"] / model_seconds - 1.0,
        "weights": str(weights) if weights is not None and weights.exists() else "random",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--clip", type=Path, default=REPO.parent / "shared/data/sequences/IR_DRONE_156")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--skip-latency", action="store_true", help="only the end-to-end detect part")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, {cpu}")

    rows = []
    precisions = ["fp32", "bf16"] + (["fp16"] if args.device.startswith("cuda") else [])
    configs = ([] if args.skip_official else [("official", "official @1024 (512 input upsampled)")]) + [
        ("paper", "paper @512 native")
    ]
    for batch in [] if args.skip_latency else args.batch:
        for name, label in configs:
            for precision in precisions:
                seconds = latency(name, precision, args.device, args.repeats, batch)
                rows.append({"config": name, "label": label, "precision": precision, "batch": batch, "seconds": seconds})
                print(f"  {label:38s} {precision:5s} batch {batch:3d}: {seconds * 1000:9.1f} ms/frame  {1 / seconds:8.2f} frames/s",
                      flush=True)
    ref = {(r["precision"], r["batch"]): r["seconds"] for r in rows if r["config"] == "official"}
    for r in rows:
        if r["config"] == "paper" and (r["precision"], r["batch"]) in ref:
            print(f"  speed-up paper-512 vs official-1024, {r['precision']} batch {r['batch']}: "
                  f"{ref[(r['precision'], r['batch'])] / r['seconds']:.1f}x")
    e2e = None
    if args.clip.exists():
        # fp32 on the CPU: without native bf16 (AVX2-only CPUs) autocast to bf16 is emulated and slower
        e2e = detect_end_to_end(args.clip, args.frames, args.weights, args.device, "fp32" if args.device == "cpu" else "fp16")
        print(f"  irsam detect on {args.clip.name} ({e2e['frames']} frames {e2e['size']}, {e2e['weights']} weights): "
              f"model {e2e['model_fps']:.2f} frames/s, end to end {e2e['end_to_end_fps']:.2f} frames/s, "
              f"overhead {e2e['overhead'] * 100:+.1f}%")
    if args.json:
        args.json.write_text(json.dumps({"latency": rows, "detect": e2e}, indent=2))


if __name__ == "__main__":
    main()
