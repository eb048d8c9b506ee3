"""`irsam import-labels`: a data set's own masks committed into a review project, to check and correct them."""
from __future__ import annotations

import sys
from pathlib import Path

from app.commands import Terminated, interruption, open_project_or_say_why, sigterm_as_interrupt, stop_requests

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
        "2 when the import cannot run (with --replace, where the project's review statuses cannot be read; a --masks "
        "that is an irsam export of other sequences only). Ctrl-C "
        "(exit status 130) and SIGTERM (143) stop it between two frames: the masks committed stay, and the same "
        "command goes on.",
    )
    p.add_argument("project", help="review project folder (made by `irsam detect` or the app)")
    p.add_argument("--masks", help="folder of masks (default: the ground truth beside the project's source, "
                   "a masks/ folder next to its images); or an irsam export (its data set folder, or its masks/ "
                   "folder with meta.json beside it), whose frames of the project's source are matched to the "
                   "project's by the source frame names its meta.json records")
    p.add_argument("--replace", action="store_true",
                   help="also replace committed masks of unreviewed frames that differ from the reference")
    p.set_defaults(run=run)


def run(args) -> int:
    from tqdm import tqdm

    from app.core.label_import import LabelImportError, frame_sha1_reader, import_labels
    from app.core.project import ProjectWriteError
    from model.data import counted

    try:
        with sigterm_as_interrupt():  # a kill as Ctrl-C
            prepared = _prepare(args)
    except KeyboardInterrupt as stop:
        said, status = interruption(isinstance(stop, Terminated))
        print(f"{said}: nothing was committed", file=sys.stderr)
        return status
    if isinstance(prepared, int):
        return prepared
    project, exported, source, truth = prepared
    with source:
        progress = tqdm(total=len(project), unit="frame", disable=None, dynamic_ncols=True, file=sys.stderr,
                        desc="import-labels")
        looked_at = [0]  # frames, for the message of a stopped import (a disabled tqdm counts none)

        def on_progress(done: int, total: int) -> None:
            looked_at[0] = done
            progress.update(done - progress.n)

        try:
            # each committed mask records the pixels of the frame it is committed over (ReviewProject.frame_change):
            # a frame replaced on disk later is then found changed, and export skips it
            read_mask = exported.mask if exported else truth.mask  # interpolated masks: named below
            has_mask = exported.has_mask if exported else truth.has_mask
            with stop_requests() as stop:  # Ctrl-C and a kill stop between frames: none is committed in part
                report = import_labels(project, read_mask, replace=args.replace, cancelled=stop.event,
                                       progress=on_progress, frame_sha1_of=frame_sha1_reader(source),
                                       has_mask=has_mask)
        except (ProjectWriteError, LabelImportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        finally:
            progress.close()
    if report.stopped:  # (a stop asked during the last frame stopped nothing: the import is whole)
        said, status = interruption(stop.terminated)
        print(f"{said}: {project.folder}: stopped between two frames, after {looked_at[0]} of {len(project)}: "
              f"{report.summary()}; the same command goes on (the masks committed now count as already committed)",
              file=sys.stderr)
        return status
    for file, reason in truth.mask_warnings:
        print(f"warning: {file}: {reason}", file=sys.stderr)
    for stem, reason in report.refused[:MAX_LISTED]:
        print(f"refused {stem}: {reason}", file=sys.stderr)
    if len(report.refused) > MAX_LISTED:
        print(f"... and {len(report.refused) - MAX_LISTED} more refused", file=sys.stderr)
    if report.missing and not (report.imported or report.unchanged or report.kept or report.refused):
        if exported is not None:
            left_alone = f" ({counted(len(report.reviewed), 'reviewed frame', 'reviewed frames')} left alone)"
            print(f"error: the irsam export {exported.root} holds no mask of any of the {len(report.missing)} "
                  f"unreviewed frames of {project.folder}{left_alone if report.reviewed else ''}: its masks are those "
                  f"of {counted(len(exported.dataset_stems), 'frame', 'frames')} of sequence {exported.sequence!r}",
                  file=sys.stderr)
        else:
            print(f"error: no mask file in {truth.masks_dir} is named after one of the {len(report.missing)} "
                  f"unreviewed frames of {project.folder}: {_mismatch_example(report.missing[0], truth.masks_dir)}",
                  file=sys.stderr)
        return 1
    origin = f": {exported.describe()}" if exported is not None else ""
    print(f"{project.folder}: {report.summary()} (masks from {truth.masks_dir}{origin})")
    if report.kept:
        print("frames with their own committed mask kept it: --replace takes the reference there too")
    if report.refused and not (report.imported or report.unchanged or report.kept):
        print(f"error: no mask committed: {len(report.refused)} refused (named above)", file=sys.stderr)
        return 1
    return 0


def _prepare(args):
    """(project, ExportedMasks or None, its source, the GroundTruth the masks are read from) of the import, or the exit
    status, the error said."""
    from app.core.frames import GroundTruth, SourceError, find_ground_truth, open_source
    from app.core.label_import import LabelImportError, exported_masks

    project = open_project_or_say_why(args.project)
    if project is None:
        return 2
    exported = None
    if args.masks is not None:
        if not Path(args.masks).is_dir():
            what = "a file, not a folder of masks" if Path(args.masks).exists() else "no such folder"
            print(f"error: --masks {args.masks}: {what}", file=sys.stderr)
            return 2
        try:
            exported = exported_masks(project, args.masks)
        except LabelImportError as e:
            print(f"error: --masks {args.masks}: {e}", file=sys.stderr)
            return 2
    try:
        source = open_source(project.source_path)
    except SourceError as e:
        what = "read the frames the masks are committed over" if args.masks else "look for masks beside it"
        print(f"error: cannot open the project's source to {what}: {e}", file=sys.stderr)
        return 2
    if exported is not None:
        truth = exported.truth
    elif args.masks is not None:
        truth = GroundTruth(Path(args.masks), None)
    else:
        truth = find_ground_truth(source)
        if truth is None or not truth.has_masks:
            source.close()
            print(f"error: no masks/ folder beside {project.source_path}; give --masks", file=sys.stderr)
            return 2
    return project, exported, source, truth


def _mismatch_example(stem: str, masks_dir: Path) -> str:
    """A frame's name and the mask file it would take beside a file the folder holds, to show the mismatch."""
    from app.core.frames import IMAGE_SUFFIXES

    wanted = f"frame {stem!r} takes a mask named {stem}.png or {stem}_pixels0.png (or another image type)"
    held = sorted(p.name for p in masks_dir.iterdir()
                  if not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not held:
        return f"{wanted}, and the folder holds no image file"
    return f"{wanted}, but the folder holds names such as {held[0]!r}"
