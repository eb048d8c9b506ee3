"""`irsam info SOURCE`: what a frame source holds, which normalisation it would get, and which frames are bad."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from app.commands import add_normalization_options, normalization_request_of
from app.core.frames import FrameReadError, SourceError, find_ground_truth, open_source
from app.core.normalization import Normalization
from model.data import name_some

VALUE_SAMPLE = 32
MISSING_LISTED = 5  # missing frames of a project named


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="describe a frame source and list unreadable frames",
                              description="Describe a folder of frames, a multi-page TIFF or one image, with the "
                                          "normalisation irsam detect would give it (with --window or "
                                          "--percentiles: the one those options give); or a review project: "
                                          "its review progress and which runs made its proposals.")
    p.add_argument("source", help="folder of frames, multi-page TIFF, image file, or review project folder")
    p.add_argument("--scan", action=argparse.BooleanOptionalAction, default=True,
                   help="decode every frame to find all unreadable ones (default); --no-scan samples frames")
    add_normalization_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if (Path(args.source) / "project.json").is_file():
        if args.window or args.percentiles or not args.scan:
            print("warning: --window, --percentiles and --no-scan describe a source; a project keeps its own "
                  "normalisation (shown below)", file=sys.stderr)
        return describe_project(Path(args.source))
    try:
        request = normalization_request_of(args)
        source = open_source(args.source)
    except (ValueError, SourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with source:
        if args.scan:
            source.scan()
            indices = source.readable_indices()
        else:
            indices = np.unique(np.linspace(0, len(source) - 1, min(VALUE_SAMPLE, len(source))).round().astype(int))
        low, high, n_read = None, None, 0
        for i in indices:
            try:
                frame = source.frame(int(i))
            except FrameReadError:
                continue
            lo, hi = int(frame.min()), int(frame.max())
            low = lo if low is None else min(low, lo)
            high = hi if high is None else max(high, hi)
            n_read += 1
        if n_read == 0:
            print(f"error: {source.path}: no readable frame", file=sys.stderr)
            return 2
        bad = source.bad_frames
        readable = len(source) - sum(1 for b in bad if b.index is not None)
        where = "all readable frames" if args.scan else f"{n_read} sampled frames"
        print(f"source:        {source.path}")
        print(f"kind:          {source.kind}" + (" (memory-mapped)" if getattr(source, "memory_mapped", False) else ""))
        print(f"frames:        {readable} readable, {len(bad)} unreadable"
              + ("" if args.scan else " so far (--scan decodes every frame)"))
        print(f"size:          {source.size_text()} (width x height)")
        print(f"dtype:         {source.dtype}")
        print(f"value range:   {low}..{high} over {where}")
        print(f"normalisation: {request.for_source(source)}")
        gt = find_ground_truth(source)
        if gt is not None:
            parts = ([f"masks in {gt.masks_dir}"] if gt.has_masks else []) + \
                    ([f"boxes in {gt.boxes_path}"] if gt.has_boxes else [])
            if parts:
                print(f"ground truth:  {', '.join(parts)}")
            if gt.boxes_error:
                print(f"warning: {gt.boxes_error}", file=sys.stderr)
        if bad:
            print("unreadable (skipped):")
            for b in bad:
                print(f"  {b.path}: {b.reason}")
    return 0


def describe_project(folder: Path) -> int:
    """A review project: its source, normalisation, review progress, and which runs made its proposals."""
    from app.core.project import ProjectError, ReviewProject
    from app.core.provenance import ProposalOrigin
    from app.core.review_queue import status_counts

    try:
        project = ReviewProject.open(folder)
    except ProjectError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    proposals: Counter[str] = Counter()
    for stem in project.stems:
        mask, origin = project.prediction(stem)
        if mask is not None:  # a damaged proposal is listed with the damaged files only
            proposals[ProposalOrigin.label_of(origin)] += 1
    counts = status_counts(project)
    committed = sum(project.has_committed_mask(stem) for stem in project.stems)
    print(f"project:       {project.folder}")
    print(f"source:        {project.source_path} ({project.source_kind}){_source_problem(project)}")
    print(f"frames:        {len(project)}, {project.size_text()} (width x height)")
    print(f"normalisation: {Normalization.from_dict(project.normalization)}")
    print("review:        " + ", ".join(f"{n} {status.value}" for status, n in counts.items()))
    print(f"committed:     {committed} frames with an analyst's mask")
    print(f"proposals:     {sum(proposals.values())} frames" + (":" if proposals else ""))
    for label, n in proposals.most_common():
        print(f"  {n} by {label}")
    if project.damaged:
        print("damaged files (ignored):")
        for path, reason in project.damaged:
            print(f"  {path}: {reason}")
    return 0


def _source_problem(project) -> str:
    """", cannot be read: ..." or ", N of the project's frames missing: ..." when the source is gone or lacks
    frames (export and import-labels read it); "" when it holds them all. Opening a source reads file names
    and headers, not the frames."""
    try:
        with open_source(project.source_path, prefetch=0) as source:
            present = set(source.stems)
    except (SourceError, OSError) as e:
        return f", cannot be read: {e}; export and import-labels need it"
    missing = [stem for stem in project.stems if stem not in present]
    if not missing:
        return ""
    return f", {len(missing)} of the project's {len(project)} frames missing: {name_some(missing, MISSING_LISTED)}"
