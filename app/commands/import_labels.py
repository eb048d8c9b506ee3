"""`irsam import-labels`: a data set's own masks committed into a review project, to check and correct them."""
from __future__ import annotations

import sys
from pathlib import Path

from app.commands import open_project_or_say_why

MAX_LISTED = 20


def add_parser(sub) -> None:
    p = sub.add_parser(
        "import-labels",
        help="commit a data set's masks into a review project, to check and correct them",
        description="Commit reference masks (0/255 PNG by stem, SIRST's _pixels0 suffix accepted) as the "
        "project's committed masks, each one undoable edit. Frames stay unreviewed until you review them; "
        "reviewed frames are left alone, and a frame with its own committed mask keeps it unless --replace. "
        "Each mask committed records the fingerprint of the frame it is committed over (the project's source is "
        "read), so a frame replaced on disk later is named by irsam info and skipped by export. Masks of another "
        "size than their frame, and masks whose frame cannot be read, are refused and named. Exit status 1 when "
        "nothing is committed because no mask is named after an unreviewed frame, or because every such mask was "
        "refused (a frame that keeps its own committed mask is not a failure: --replace takes the reference there); "
        "2 when the import cannot run (with --replace, where the project's review statuses cannot be read).",
    )
    p.add_argument("project", help="review project folder (made by `irsam detect` or the app)")
    p.add_argument("--masks", help="folder of masks (default: the ground truth beside the project's source, "
                   "a masks/ folder next to its images)")
    p.add_argument("--replace", action="store_true",
                   help="also replace committed masks of unreviewed frames that differ from the reference")
    p.set_defaults(run=run)


def run(args) -> int:
    from tqdm import tqdm

    from app.core.frames import GroundTruth, SourceError, find_ground_truth, open_source
    from app.core.label_import import LabelImportError, frame_sha1_reader, import_labels
    from app.core.project import ProjectWriteError

    project = open_project_or_say_why(args.project)
    if project is None:
        return 2
    if args.masks is not None and not Path(args.masks).is_dir():
        what = "is a file, not a folder of masks" if Path(args.masks).exists() else "no such folder"
        print(f"error: {args.masks}: {what}", file=sys.stderr)
        return 2
    try:
        source = open_source(project.source_path)
    except SourceError as e:
        what = "read the frames the masks are committed over" if args.masks else "look for masks beside it"
        print(f"error: cannot open the project's source to {what}: {e}", file=sys.stderr)
        return 2
    with source:
        if args.masks is not None:
            truth = GroundTruth(Path(args.masks), None)
        else:
            truth = find_ground_truth(source)
            if truth is None or not truth.has_masks:
                print(f"error: no masks/ folder beside {project.source_path}; give --masks", file=sys.stderr)
                return 2
        progress = tqdm(total=len(project), unit="frame", disable=None, dynamic_ncols=True, file=sys.stderr,
                        desc="import-labels")
        try:
            # each committed mask records the pixels of the frame it is committed over (ReviewProject.frame_change):
            # a frame replaced on disk later is then found changed, and export skips it
            report = import_labels(project, truth.mask, replace=args.replace,  # interpolated masks: named below
                                   progress=lambda done, total: progress.update(done - progress.n),
                                   frame_sha1_of=frame_sha1_reader(source))
        except (ProjectWriteError, LabelImportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        finally:
            progress.close()
    for file, reason in truth.mask_warnings:
        print(f"warning: {file}: {reason}", file=sys.stderr)
    for stem, reason in report.refused[:MAX_LISTED]:
        print(f"refused {stem}: {reason}", file=sys.stderr)
    if len(report.refused) > MAX_LISTED:
        print(f"... and {len(report.refused) - MAX_LISTED} more refused", file=sys.stderr)
    if report.missing and not (report.imported or report.unchanged or report.kept or report.refused):
        print(f"error: no mask file in {truth.masks_dir} is named after one of the {len(report.missing)} unreviewed "
              f"frames of {project.folder}: {_mismatch_example(report.missing[0], truth.masks_dir)}",
              file=sys.stderr)
        return 1
    print(f"{project.folder}: {report.summary()} (masks from {truth.masks_dir})")
    if report.kept:
        print("frames with their own committed mask kept it: --replace takes the reference there too")
    if report.refused and not (report.imported or report.unchanged or report.kept):
        print(f"error: no mask committed: {len(report.refused)} refused (named above)", file=sys.stderr)
        return 1
    return 0


def _mismatch_example(stem: str, masks_dir: Path) -> str:
    """A frame's name and the mask file it would take beside a file the folder holds, to show the mismatch."""
    from app.core.frames import IMAGE_SUFFIXES

    wanted = f"frame {stem!r} takes a mask named {stem}.png or {stem}_pixels0.png (or another image type)"
    held = sorted(p.name for p in masks_dir.iterdir()
                  if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not held:
        return f"{wanted}, and the folder holds no image file"
    return f"{wanted}, but the folder holds names such as {held[0]!r}"
