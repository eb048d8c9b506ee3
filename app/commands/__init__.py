"""The `irsam` subcommands; options two of them share."""
from __future__ import annotations

import argparse


def add_size_gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-area", type=int, default=1, metavar="PX",
                        help="drop detected targets (8-connected components) smaller than this (default 1: keep all)")
    parser.add_argument("--max-area", type=int, metavar="PX",
                        help="drop detected targets larger than this, e.g. cloud tops (default: no limit; "
                             "model/size_gate.py)")


def size_gate_of(args: argparse.Namespace):
    """The TargetSizeGate the options ask for (raises ValueError for an impossible range)."""
    from model.size_gate import TargetSizeGate

    return TargetSizeGate(args.min_area, args.max_area)
