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
from app.core.project import is_project
from model.data import counted, name_some
from model.metrics import describe_boxes_outside, read_boxes_csv_lines, split_boxes_outside

VALUE_SAMPLE = 32
MISSING_LISTED = 5  # missing frames of a project named
CHANGED_LISTED = 10  # frames of a project changed on disk named
# frames holding a fingerprint that `irsam info PROJECT` reads by default to find those changed on disk (each is
# decoded and hashed: about 5 ms for 640x512 16-bit, so about a second); more are read with --check-frames only
CHECK_FRAMES_AUTO = 200


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="describe a frame source and list unreadable frames",
                              description="Describe a folder of frames, a multi-page TIFF or one image, with the "
                                          "normalisation irsam detect would give it (with --window or "
                                          "--percentiles: the one those options give); or a review project: "
                                          "its review progress, which runs made its proposals, and which frames "
                                          "changed on disk since their proposal, mask or status was made "
                                          f"(checked by default for up to {CHECK_FRAMES_AUTO} frames holding a "
                                          "fingerprint; see --check-frames).")
    p.add_argument("source", help="folder of frames, multi-page TIFF, image file, or review project folder")
    p.add_argument("--scan", action=argparse.BooleanOptionalAction, default=True,
                   help="decode every frame to find all unreadable ones (default); --no-scan samples frames. For a "
                   "project, --no-scan is --no-check-frames")
    p.add_argument("--check-frames", action=argparse.BooleanOptionalAction, default=None,
                   help="for a project: read every frame that holds a fingerprint (a proposal, committed mask or "
                   "status saved over it records its pixels) to find those replaced on disk since: a few ms a frame, "
                   "with progress on a terminal. Default: only when at most "
                   f"{CHECK_FRAMES_AUTO} frames hold one; --no-check-frames never")
    add_normalization_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    if is_project(Path(args.source)):
        given = [option for option, value in (("--window", args.window), ("--percentiles", args.percentiles),
                                              ("--no-bad-pixel-repair", not args.repair_bad_pixels)) if value]
        if given:
            verb = "describes" if len(given) == 1 else "describe"
            print(f"warning: {' and '.join(given)} {verb} a source; a project keeps its own normalisation (shown "
                  "below)", file=sys.stderr)
        check = args.check_frames if args.check_frames is not None else (None if args.scan else False)
        return describe_project(Path(args.source), check_frames=check)
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
            n_read += 1
            if frame.dtype.kind in "ui":
                lo, hi = int(frame.min()), int(frame.max())
            else:  # a float frame's no data (NaN, +-inf) left out
                finite = frame[np.isfinite(frame)]
                if finite.size == 0:
                    continue  # a frame of no data
                lo, hi = float(finite.min()), float(finite.max())
            low = lo if low is None else min(low, lo)
            high = hi if high is None else max(high, hi)
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
        if source.skipped_pages:
            print(f"skipped pages: {'; '.join(source.skipped_pages)}")
        print(f"size:          {source.size_text()} (width x height)")
        stored = "" if source.stored_dtype == source.dtype else f" (stored as {source.stored_dtype})"
        print(f"dtype:         {source.dtype}{stored}")
        print(f"value range:   {'no value (NaN or inf only)' if low is None else f'{low}..{high}'} over {where}")
        try:
            print(f"normalisation: {request.for_source(source)}")
            no_window = None
        except ValueError as e:  # every value sampled is no data (NaN, inf): nothing to normalise from
            no_window = str(e)
            print(f"normalisation: none: {no_window}")
        gt = find_ground_truth(source)
        if gt is not None:
            parts = ([f"masks in {gt.masks_dir}"] if gt.has_masks else []) + \
                    ([f"boxes in {gt.boxes_path}"] if gt.has_boxes else [])
            if parts:
                print(f"ground truth:  {', '.join(parts)}")
            if gt.has_boxes and not gt.boxes_error and gt.numbering.why:  # how frames were paired, when chosen
                print(f"               boxes.csv paired by {'position' if gt.numbering.by == 'position' else 'name'}: "
                      f"{gt.numbering.why}")
            if gt.boxes_error:
                print(f"warning: {gt.boxes_error}", file=sys.stderr)
            elif gt.has_boxes and (outside := boxes_outside_frames(source, gt)):
                print(f"warning: {describe_boxes_outside(gt.boxes_path, outside, 'which irsam eval --clip leaves out')}",
                      file=sys.stderr)
        if bad:
            print("unreadable (skipped):")
            for b in bad:
                print(f"  {b.path}: {b.reason}")
    if no_window is not None:
        print(f"error: {source.path} cannot be detected or reviewed: {no_window}", file=sys.stderr)
        return 2
    return 0


def boxes_outside_frames(source, gt) -> list[dict]:
    """The boxes of `gt`'s boxes.csv that cover no pixel of their frame in `source` (as `evaluate_clip` finds
    them, which leaves them out of the scoring): {"line", "frame", "box", "frame_size"}. Frames of unknown size
    are not checked."""
    boxes = read_boxes_csv_lines(gt.boxes_path)
    outside = []
    for i, number in enumerate(gt.numbering.numbers):
        if number is None:  # an image with no frame number among numbered ones has no boxes
            continue
        shape = source.frame_shape(i)
        if shape is not None:
            outside += split_boxes_outside(boxes.get(number - 1, []), number, shape)[1]
    return sorted(outside, key=lambda entry: entry["line"])


def describe_project(folder: Path, check_frames: bool | None = None) -> int:
    """A review project: its source, normalisation, review progress, which runs made its proposals, and which
    frames changed on disk since (`find_changed_frames`): `check_frames` True reads every frame holding a
    fingerprint, False none, None (default) all of them when at most CHECK_FRAMES_AUTO do."""
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
    # a damaged label (found when the project opened) is listed with the damaged files only, like a proposal
    damaged = {path for path, _ in project.damaged}
    committed = sum(project.has_committed_mask(stem) and project.folder / "labels" / f"{stem}.png" not in damaged
                    for stem in project.stems)
    try:
        source, source_error = open_source(project.source_path, prefetch=0), None
    except (SourceError, OSError) as e:
        source, source_error = None, e
    try:
        changed = _changed_frames(project, source, check_frames)
    finally:
        if source is not None:
            source.close()
    print(f"project:       {project.folder}")
    problem = _source_problem(project, source, source_error)
    print(f"source:        {project.source_path} ({project.source_kind}){problem}")
    print(f"frames:        {len(project)}, {project.size_text()} (width x height)")
    print(f"normalisation: {Normalization.from_dict(project.normalization)}")
    print("review:        " + ", ".join(f"{n} {status.value}" for status, n in counts.items()))
    print(f"committed:     {committed} frames with an analyst's mask")
    print(f"changed:       {changed}")
    print(f"proposals:     {sum(proposals.values())} frames" + (":" if proposals else ""))
    for label, n in proposals.most_common():
        print(f"  {n} by {label}")
    if project.damaged:
        print("damaged files (ignored):")
        for path, reason in project.damaged:
            print(f"  {path}: {reason}")
    return 0


def _source_problem(project, source, error) -> str:
    """", cannot be read: ..." or ", N of the project's frames missing: ..." when the source is gone (`error`:
    why `source` is None) or lacks frames (export and import-labels read it); irsam detect's refusal when its
    frames changed otherwise in a way a project cannot follow (`not_followed`: frames inserted, reordered), or
    the frames added after the project's last one, which detect takes up; "" when it holds the project's frames
    as they were. Opening a source reads file names and headers, not the frames."""
    from app.core.project import not_followed

    if source is None:
        return f", cannot be read: {error}; export and import-labels need it"
    present = set(source.stems)
    missing = [stem for stem in project.stems if stem not in present]
    if missing:
        return (f", {len(missing)} of the project's {len(project)} frames missing: "
                f"{name_some(missing, MISSING_LISTED)}")
    refusal = not_followed(project.stems, source.stems, project.source_kind, source.unreadable_stems)
    if refusal is not None:
        return f"; irsam detect refuses it now: {refusal}"
    stored = set(project.stems)
    added = [stem for stem in source.stems if stem not in stored]
    if not added:
        return ""
    return (f", {counted(len(added), 'frame', 'frames')} added since ({name_some(added, MISSING_LISTED)}): "
            f"irsam detect takes {'it' if len(added) == 1 else 'them'} up")


def _changed_frames(project, source, check: bool | None) -> str:
    """Which frames' pixels differ from those their proposal, committed mask or status was made on (the source
    replaced on disk under the same names): only frames holding a fingerprint are read (`check`: see
    `describe_project`), with a progress bar on a terminal."""
    from tqdm import tqdm

    from app.core.project import find_changed_frames

    held = [stem for stem in project.stems if any(project.recorded_frame_sha1s(stem))]  # PNG headers: no decoding
    if not held:
        return "no frame holds a fingerprint yet (recorded as frames are detected and reviewed)"
    how = f"irsam info {project.folder} --check-frames reads them to find those replaced on disk"
    if source is None:
        return f"not checked: the source cannot be read ({len(held)} frames hold a fingerprint)"
    if check is False:
        return f"not checked ({len(held)} frames hold a fingerprint): {how}"
    if check is None and len(held) > CHECK_FRAMES_AUTO:
        return (f"not checked: {len(held)} frames hold a fingerprint, more than the {CHECK_FRAMES_AUTO} read by "
                f"default (a few ms each): {how}")
    with tqdm(total=len(held), unit="frame", desc="checking frames", disable=None, dynamic_ncols=True,
              file=sys.stderr, leave=False) as progress:
        found = find_changed_frames(project, source, held, progress=lambda done, total: progress.update(1))
    if not found:
        return f"not checked: none of the {len(held)} frames holding a fingerprint can be read from the source now"
    unread = f" ({len(held) - len(found)} more cannot be read from the source now)" if len(found) < len(held) else ""
    changed = [stem for stem, change in found.items() if change.changed]
    if not changed:
        return f"none of the {len(found)} frames holding a fingerprint{unread}"
    review = sum(found[stem].review for stem in changed)
    return (f"{len(changed)} of the {len(found)} frames holding a fingerprint differ from the pixels their work was "
            f"made on, {review} of them reviewed (to review again; export skips them): "
            f"{name_some(changed, CHANGED_LISTED)}{unread}")
