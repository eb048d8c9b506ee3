"""`irsam make-demo OUT`: write a synthetic 16-bit sequence with exact masks (folder or multi-page TIFF)."""
from __future__ import annotations

import sys
from dataclasses import replace

from app.core.synthetic import DEMO_CONFIG, DEMO_SEED, iter_frames, write_sequence


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("make-demo", help="write a synthetic 16-bit IR sequence with ground-truth masks",
                              description="Write images/ (or <name>.tif) + masks/ + targets.csv into OUT: with the defaults, "
                                          "the app's built-in demo sequence.")
    p.add_argument("out", help="output folder")
    p.add_argument("--frames", type=int, default=DEMO_CONFIG.n_frames)
    p.add_argument("--width", type=int, default=DEMO_CONFIG.width)
    p.add_argument("--height", type=int, default=DEMO_CONFIG.height)
    p.add_argument("--seed", type=int, default=DEMO_SEED)
    p.add_argument("--tiff", action="store_true", help="one multi-page stack.tif instead of images/*.png")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.frames < 1 or args.width < 32 or args.height < 32:
        print("error: need --frames >= 1 and --width/--height >= 32", file=sys.stderr)
        return 2
    config = replace(DEMO_CONFIG, n_frames=args.frames, height=args.height, width=args.width)
    try:
        out = write_sequence(iter_frames(config, args.seed), args.out, layout="tiff" if args.tiff else "folder")
    except OSError as e:
        print(f"error: {args.out}: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.frames} frames {args.width}x{args.height} uint16 to {out}")
    return 0
