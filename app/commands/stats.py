"""`irsam stats`: parameters and MACs per model config, as the paper's cost table reports them."""
from __future__ import annotations

import json
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("stats", help="parameter and MAC counts of the model configs")
    p.add_argument("--config", action="append", choices=("official", "paper", "tiny"),
                   help="config(s) to count (default: official and paper)")
    p.add_argument("--size", type=int, default=512, help="input side in pixels, 32..2048 (default 512)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from model.complexity import complexity_report

    try:
        # dict.fromkeys: a config given twice is counted once, in the order first given
        configs = dict.fromkeys(args.config or ["official", "paper"])
        reports = [complexity_report(name, args.size) for name in configs]
    except ValueError as error:
        print(f"error: --size: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    modules = sorted({m for r in reports for m in r["gmacs_by_module"]})
    print(f"{'config':10s} {'input':>6s} {'encoder at':>10s} {'parameters':>12s} {'GMAC':>8s}  " +
          "  ".join(f"{m:>14s}" for m in modules))
    for r in reports:
        per_module = "  ".join(f"{r['gmacs_by_module'].get(m, 0.0):14.2f}" for m in modules)
        print(f"{r['config']:10s} {r['input_size']:6d} {r['encoder_input_size']:10d} {r['parameters']:12,d} "
              f"{r['gmacs']:8.2f}  {per_module}")
    return 0
