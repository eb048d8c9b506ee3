"""`irsam make-demo OUT`: write a synthetic 16-bit sequence with exact masks (folder or multi-page TIFF)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from app.commands import positive_int
from app.core.synthetic import DEMO_CONFIG, DEMO_SEED, demo_projects, iter_frames, set_aside_projects, write_sequence
from model.atomic import atomic_write_json, current_umask
from model.data import name_some

MARKER = "demo.json"  # the settings the demo was made with; the app's built-in demo has one too
MIN_SIDE, MAX_SIDE = 32, 8192  # frame width and height; an 8192x8192 frame takes about 2.5 GB of memory to make


def frame_side(text: str) -> int:
    """argparse type for --width/--height: MIN_SIDE..MAX_SIDE pixels."""
    value = int(text)
    if not MIN_SIDE <= value <= MAX_SIDE:
        raise argparse.ArgumentTypeError(f"must lie in {MIN_SIDE}..{MAX_SIDE} pixels, got {value}")
    return value


def seed_value(text: str) -> int:
    """argparse type for --seed: a non-negative integer."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("make-demo", help="write a synthetic 16-bit IR sequence with ground-truth masks",
                              description="Write images/ (or stack.tif) + masks/ + targets.csv + demo.json into OUT: "
                                          "with the defaults, the app's built-in demo sequence. OUT must be new, "
                                          "empty, or hold an earlier make-demo sequence and nothing else: that one "
                                          "is replaced whole, once the new one is written (a review project made over "
                                          "it, its images/ or its stack.tif is renamed aside beside OUT, kept). Any other "
                                          "folder is refused.")
    p.add_argument("out", help="output folder")
    p.add_argument("--frames", type=positive_int, default=DEMO_CONFIG.n_frames,
                   help=f"number of frames, at least 1 (default {DEMO_CONFIG.n_frames})")
    p.add_argument("--width", type=frame_side, default=DEMO_CONFIG.width,
                   help=f"frame width in pixels, {MIN_SIDE}..{MAX_SIDE} (default {DEMO_CONFIG.width})")
    p.add_argument("--height", type=frame_side, default=DEMO_CONFIG.height,
                   help=f"frame height in pixels, {MIN_SIDE}..{MAX_SIDE} (default {DEMO_CONFIG.height})")
    p.add_argument("--seed", type=seed_value, default=DEMO_SEED,
                   help=f"random seed, 0 or more: the same seed and settings give the same sequence (default "
                        f"{DEMO_SEED}, the built-in demo's)")
    p.add_argument("--tiff", action="store_true", help="one multi-page stack.tif instead of images/*.png")
    p.set_defaults(run=run)


def run(args) -> int:
    out = Path(args.out).resolve()
    try:
        refusal = _why_not_replaceable(out)
    except OSError as e:
        refusal = f"cannot look through it ({e.strerror or e})"
    if refusal:
        print(f"error: {out}: {refusal}; choose a new or empty folder", file=sys.stderr)
        return 2
    layout = "tiff" if args.tiff else "folder"
    config = replace(DEMO_CONFIG, n_frames=args.frames, height=args.height, width=args.width)
    replacing = out.exists() and any(out.iterdir())
    new, moved = None, []
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        new = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        new.chmod(stat.S_IMODE(out.stat().st_mode) if out.exists() else 0o777 & ~current_umask())  # not mkdtemp's 0700
        write_sequence(iter_frames(config, args.seed), new, layout=layout)
        atomic_write_json(new / MARKER, {"config": config.to_dict(), "seed": args.seed, "layout": layout})
        moved = set_aside_projects(out)
        _replace_folder(new, out)
    except OSError as e:
        print(f"error: {out}: {e}", file=sys.stderr)
        for project, kept in moved:  # the earlier demo stays: its review projects go back where they were
            try:
                os.replace(kept, project)
            except OSError:
                print(f"the review project of the earlier frames is kept as {kept}", file=sys.stderr)
        return 2
    finally:
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)  # gone already when it took OUT's place
    print(f"wrote {args.frames} frames {args.width}x{args.height} uint16 to {out}"
          + (", replacing the earlier demo" if replacing else ""))
    for _, kept in moved:
        print(f"the review project of the earlier frames is kept as {kept}")
    return 0


def _why_not_replaceable(out: Path) -> str | None:
    """Why make-demo must not write into `out`; None when it is new, empty or an earlier make-demo sequence
    alone (its marker, and only files the marker's settings say make-demo wrote)."""
    if not out.exists():
        # the nearest existing folder above it, where make-demo would create the folders
        above = next((parent for parent in out.parents if parent.exists()), None)
        if above is not None and not above.is_dir():
            return f"{above} is a file, not a folder: no folder can be made inside it"
        return None
    if not out.is_dir():
        return "not a folder"
    if not any(out.iterdir()):
        return None
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
        written = _files_written(marker)
    except FileNotFoundError:
        return f"not empty, and holds no {MARKER} of an earlier make-demo sequence"
    except OSError as e:
        return f"not empty, and its {MARKER} cannot be read ({e.strerror or e})"
    except (ValueError, TypeError, KeyError):
        return f"not empty, and holds a damaged {MARKER} (not the settings of an earlier make-demo sequence)"
    projects = [project.name for project in demo_projects(out) if project.parent == out]  # set aside, not foreign
    foreign = []
    for path in out.rglob("*"):  # does not descend into linked folders: a link is foreign itself
        name = path.relative_to(out).as_posix()
        if name.split("/")[0] in projects:
            continue
        if name not in written and not (name in ("images", "masks") and path.is_dir() and not path.is_symlink()):
            foreign.append(name)
    if foreign:
        foreign.sort()
        return f"holds an earlier demo, but also {name_some(foreign, 3)}, which make-demo did not write"
    return None


def _files_written(marker: dict) -> set[str]:
    """The files (relative paths) make-demo writes with the settings of its marker (`write_sequence`'s
    names); the app's built-in demo, whose marker names no layout, is a folder one."""
    n_frames = marker["config"]["n_frames"]
    if not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"{MARKER}: n_frames {n_frames!r}")
    layout = marker.get("layout", "folder")
    if layout == "folder":
        stems = [f"{i:06d}" for i in range(1, n_frames + 1)]
        frames = {f"images/{stem}.png" for stem in stems}
    elif layout == "tiff":
        stems = [f"stack_{i:06d}" for i in range(1, n_frames + 1)]
        frames = {"stack.tif"}
    else:
        raise ValueError(f"{MARKER}: layout {layout!r}")
    return {MARKER, "targets.csv", *frames, *(f"masks/{stem}.png" for stem in stems)}


def _replace_folder(new: Path, out: Path) -> None:
    """Rename `new` to `out`; an existing `out` is renamed aside first, and removed once `new` is in place."""
    if not out.exists():
        os.replace(new, out)
        return
    old = new.with_name(f"{new.name}.old")
    os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
