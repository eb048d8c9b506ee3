"""`irsam export`: a review project's reviewed frames as a training set (SIRST / BasicIRSTD / DNANet layout)."""
from __future__ import annotations

import sys
from collections import Counter

from app.commands import Terminated, interruption, open_project_or_say_why, sigterm_as_interrupt

CHANGED_LISTED = 20  # frames changed on disk named in full
SKIPPED_LISTED = 5  # frames named per kind of problem that skipped them
COUNTED_ONLY = ("unreviewed", "rejected")  # skipped as the analyst decided: counted, not named


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export reviewed frames as a training data set",
        description="Write a project's reviewed frames as images/ (8-bit, through the project's normalisation) and "
        "masks/ (0/255) with split files. accepted: committed mask or prediction; corrected: committed mask; "
        "negative: all-zero mask; rejected and unreviewed frames are skipped. A project is one sequence: all "
        "its frames go to one split, stems prefixed with the sequence name (--sequence). A frame whose pixels "
        "differ from those its mask or status was made on (the source replaced on disk under the same names) "
        "is not exported, and is named; so is one whose pixels the data set already holds as another sequence's "
        "frame (two clips that overlap).",
    )
    p.add_argument("project", help="review project folder (made by `irsam detect` or the app)")
    p.add_argument("--out", required=True, help="data set folder")
    p.add_argument("--layout", choices=["sirst", "basicirstd", "dnanet"], default="sirst",
                   help="sirst: trainval.txt/test.txt; basicirstd: NAME/img_idx/{train,test}_NAME.txt; "
                   "dnanet: 50_50/{train,test}.txt (default: sirst); an --out holding a data set of another "
                   "layout is refused")
    p.add_argument("--split", choices=["train", "test"], default=None,
                   help="the side this sequence goes to (default: with --append, the side the data set already has "
                   "it on, else train); a side other than its earlier one moves its frames there, and says so")
    p.add_argument("--include-unreviewed", action="store_true",
                   help="also export unreviewed frames (their committed mask, else the prediction)")
    p.add_argument("--append", action="store_true",
                   help="add to an existing data set (split files merged; this sequence's earlier entries replaced, "
                   "but frames unreadable now keep their earlier export; "
                   "the raw, COCO and YOLO files it already has are written too, so they match the new masks)")
    p.add_argument("--dataset-name", default=None,
                   help="BasicIRSTD data set name, a plain folder name (default IRSAM-Review)")
    p.add_argument("--sequence", default=None,
                   help="stem prefix, a plain name: no '/', not starting with '.' or a space, not ending with a space "
                   "(default: the name the data set already gives this source's frames, else the source's name as the "
                   "app gives it: the frames folder's, its parent's for a folder named images, imgs, img or frames, a "
                   "TIFF stack's without .tif)")
    p.add_argument("--raw", action="store_true", help="also write raw/<stem>.png (or .tif): the raw frame values")
    p.add_argument("--coco", action="store_true", help="also write annotations/instances_<split>.json (COCO, RLE)")
    p.add_argument("--yolo", action="store_true", help="also write labels/<stem>.txt (YOLO boxes)")
    p.set_defaults(run=run)


def run(args) -> int:
    from app.core.export import (DEFAULT_DATASET_NAME, FRAME_CHANGED, DatasetExistsError, ExportError, export_project,
                             split_files_not_updated_message)
    from model.data import counted

    project = open_project_or_say_why(args.project)
    if project is None:
        return 2
    dataset_name = DEFAULT_DATASET_NAME if args.dataset_name is None else args.dataset_name
    try:
        with sigterm_as_interrupt():  # a kill leaves the data set as Ctrl-C does: as it was, or the whole export
            report = export_project(
                project, args.out, args.layout, split=args.split, include_unreviewed=args.include_unreviewed,
                append=args.append, raw=args.raw, coco=args.coco, yolo=args.yolo,
                dataset_name=dataset_name, sequence_name=args.sequence,
            )
    except KeyboardInterrupt as e:  # during the renames it is held back to their end, and says so
        stopped, status = interruption(isinstance(e, Terminated))
        print(f"{stopped}: {e}" if str(e) else f"{stopped}: nothing of this export was written to {args.out}",
              file=sys.stderr)
        return status
    except DatasetExistsError as e:
        print(f"error: {e.root} already holds a data set: choose another --out, or add to it with --append",
              file=sys.stderr)
        return 2
    except (ExportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reasons = Counter(reason for _, reason in report.skipped)
    skipped = _skipped_summary(report)
    if report.changed:
        print(_changed_frames_message(report), file=sys.stderr)
    if report.shared:
        print(_shared_frames_message(report), file=sys.stderr)
    if not report.exported:
        hint = (" (--include-unreviewed exports unreviewed frames too: their committed mask, else the prediction)"
                if reasons["unreviewed"] else "")
        print(f"nothing exported from {args.project}: {skipped or 'no frames'}{hint}", file=sys.stderr)
        return 1
    print(f"exported {counted(len(report.exported), 'frame', 'frames')} to {report.root} ({args.layout}, "
          f"{report.split})")
    if report.split_files_not_updated:
        print(split_files_not_updated_message(report))
    for line in _moved_and_replaced_lines(report):
        print(line)
    if skipped:
        print(f"skipped: {skipped}")
    if report.removed:
        print(f"removed {counted(len(report.removed), 'frame', 'frames')} of an earlier export of this sequence (no "
              "longer selected)")
    unreadable = [(stem, why) for stem, why in report.kept if why != FRAME_CHANGED]
    if len(unreadable) == 1:
        stem, why = unreadable[0]
        print(f"kept the earlier export of 1 frame that cannot be read now ({stem}: {why}); restore it and export "
              "again to update it")
    elif unreadable:
        stem, why = unreadable[0]
        print(f"kept the earlier export of {len(unreadable)} frames that cannot be read now (e.g. {stem}: {why}); "
              "restore them and export again to update them")
    changed = len(report.kept) - len(unreadable)
    if changed == 1:
        print("kept the earlier export of 1 frame changed on disk since (its old pixels and mask); review it again "
              "and export again to replace it")
    elif changed:
        print(f"kept the earlier export of {changed} frames changed on disk since (their old pixels and mask); "
              "review them again and export again to replace them")
    for line in report.formats_summary():
        print(line)
    if report.temporary_removed:
        n = len(report.temporary_removed)
        print(f"removed {counted(n, 'temporary file', 'temporary files')} that an export cut short had left "
              f"({'' if n == 1 else 'e.g. '}{report.temporary_removed[0]})")
    return 0


def _skipped_summary(report) -> str:
    """The frames skipped, counted by why; those skipped for a problem named (SKIPPED_LISTED a kind), but for
    those that warnings name already (changed on disk, held as another sequence's)."""
    from app.core.export import UNREADABLE_FRAME
    from model.data import name_some

    named_elsewhere = set(report.changed) | {stem for stem, _ in report.shared}
    by_kind: dict[str, list[str]] = {}
    for stem, reason in report.skipped:
        if reason.startswith(UNREADABLE_FRAME):
            by_kind.setdefault(UNREADABLE_FRAME[:-2], []).append(f"{stem} ({reason[len(UNREADABLE_FRAME):]})")
        else:
            by_kind.setdefault(reason, []).append(stem)
    parts = []
    for kind, stems in sorted(by_kind.items(), key=lambda item: -len(item[1])):
        if kind in COUNTED_ONLY or set(stems) <= named_elsewhere:
            parts.append(f"{len(stems)} {kind}")
        else:
            parts.append(f"{len(stems)} {kind}: {name_some(stems, SKIPPED_LISTED)}")
    return "; ".join(parts)


def _changed_frames_message(report) -> str:
    """The frames not exported because their pixels changed on disk, named (the first CHANGED_LISTED)."""
    from model.data import name_some

    if len(report.changed) == 1:
        return (f"warning: 1 frame not exported: its pixels differ from those its mask or status was made on (the "
                f"source was replaced on disk under the same names): {report.changed[0]}. Review it again in the app "
                "(setting a frame's status records its new pixels), then export again")
    return (f"warning: {len(report.changed)} frames not exported: their pixels differ from those their mask or status "
            f"was made on (the source was replaced on disk under the same names): "
            f"{name_some(report.changed, CHANGED_LISTED)}. Review them again in the app (setting a frame's status "
            "records its new pixels), then export again")


def _shared_frames_message(report) -> str:
    """The frames not exported because the data set holds them as another sequence's, named (the first
    CHANGED_LISTED)."""
    from model.data import name_some

    named = [f"{stem} (as {held})" for stem, held in report.shared]
    if len(named) == 1:
        return (f"warning: 1 frame not exported: the data set already holds its pixels as a frame of another "
                f"sequence (a clip that overlaps this one; a frame held twice counts twice in training, and may sit in "
                f"both splits): {named[0]}. To export it with this sequence instead, leave it out of the other one "
                "(reject it in its project and export it again, adding to the data set), then export this one again")
    return (f"warning: {len(report.shared)} frames not exported: the data set already holds their pixels as frames of "
            f"another sequence (a clip that overlaps this one; a frame held twice counts twice in training, and may "
            f"sit in both splits): {name_some(named, CHANGED_LISTED)}. To export them with this sequence instead, "
            "leave them out of the other one (reject them in its project and export it again, adding to the data "
            "set), then export this one again")


def _moved_and_replaced_lines(report) -> list[str]:
    """Say which frames this export moved from the other split, and which earlier exports of another project or
    source it replaced: both change a data set's training or test side without a frame being named."""
    from model.data import counted

    lines = []
    moved = Counter(earlier for _, earlier in report.moved)
    for earlier, n in moved.items():
        lines.append(f"moved {counted(n, 'frame', 'frames')} of this sequence from {earlier} to {report.split} "
                     f"({'it was' if n == 1 else 'they were'} exported to {earlier} before; leave out --split to keep "
                     "a sequence on its side)")
    by_origin = Counter((project, source) for _, project, source in report.replaced)
    for (project, source), n in by_origin.items():
        lines.append(f"replaced the labels of {counted(n, 'frame', 'frames')} that another project or source had "
                     f"exported under this sequence name (project {project}, source {source}): this clip holds every "
                     "frame that one exported, so it takes the sequence over")
    return lines
