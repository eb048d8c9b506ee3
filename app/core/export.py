"""Export reviewed frames as a training set in the field's layouts, and read such data sets back.

Layouts (images/<stem>.png = the 8-bit image the model saw, masks/<stem>.png = single-channel uint8 {0, 255}):

    sirst       OUT/images, OUT/masks, OUT/trainval.txt, OUT/test.txt              (SIRST idx_427, IRSAM)
                (a SIRST data set laid out as published, with its split files in idx_427/ or
                splits/idx_427/ and none at the top, is read and added to there)
    basicirstd  OUT/NAME/images, OUT/NAME/masks, OUT/NAME/img_idx/train_NAME.txt, test_NAME.txt
    dnanet      OUT/images, OUT/masks, OUT/50_50/train.txt, OUT/50_50/test.txt

An OUT that holds a data set of another layout is refused before anything is written (`_check_layout_of_folder`):
a second data set beside or inside the first would let one frame sit in both, on both sides of the split.

A project is one sequence and goes to one side of the split; its stems are prefixed with the sequence
name so several projects can share a data set (`append=True`), unless they already start with it (a TIFF
stack's pages; `dataset_stem_names`). A sequence name stands for one source in a
data set: an append that would replace or remove another source's frames (two folders both named
`images`), or add a source's frames a second time under another name, is refused before anything is
written. A source that shares only some frames with a sequence of the data set (two clips cut from one
recording, overlapping) is another source: the frames whose pixels the data set already holds as another
sequence's are left out of the export and named (`ExportReport.shared`), so no frame is held twice or lands
in both splits (`_records_of_this_source`). Beside the images: meta.json (provenance per stem: source frame,
normalisation, status, where the mask came from, the frame's proposal origin and `frame_sha1`, the
`frame_fingerprint` of its raw values) and, on request, raw/<stem>.png|.tif (raw values),
annotations/instances_<split>.json (COCO, uncompressed RLE per 8-connected target) and labels/<stem>.txt
(YOLO boxes).

A frame whose raw values differ from those its mask or status was made on (the source replaced on disk by
other frames under the same names: `ReviewProject.frame_change`) is not exported; `ExportReport.changed` names
it, and an append keeps its earlier export.

An append replaces this sequence's earlier frames: those it exports again are overwritten, those no longer
selected (rejected, or unreviewed again) are removed, and those selected but unreadable now (a frame moved
away or damaged, a damaged mask) keep their earlier export, files and record, listed with the rest of the
sequence on this export's side of the split. The side is the one asked for, else the one the data set
already has the sequence on (a new one goes to train): a re-export that is not told the split never moves a
test sequence into training. A split asked for that differs moves the sequence's frames there
(`ExportReport.moved`). A clip cut again to hold more of the recording (the sequence's old source holds only
frames of this one) replaces the sequence's frames, exported from another project or source
(`ExportReport.replaced`).

An export holds a lock on the data set (`_DatasetLock`) from its read of meta.json to its last rename, and
removes the temporary files that exports cut short left there (`_remove_stale_temporary_files`). Its renames
are not cut short by Ctrl-C or a kill (SIGTERM; `_InterruptsDeferred`): one that comes while they run takes
effect once they are done, so the data set holds the whole export or, interrupted earlier, none of it. meta.json
is renamed before the split files: whatever else cuts the renames short (a failed rename), meta.json records
every frame a split file lists, so that a later export still finds this source's frames in it.

A data set keeps the formats it has: an append also writes each of raw/, labels/ and annotations/ that the
data set already holds, whether asked or not, so no file describes a mask or split that was replaced. The
COCO files are rebuilt for both splits from every listed mask; YOLO labels are written for this export's
frames and for listed frames that lack one (a YOLO loader reads a frame without a label file as holding
no target); raw copies, which need the source, only for this export's frames.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from app.core.frames import FrameReadError, SourceError, frame_digest, frame_fingerprint, no_data, open_source
from app.core.label_import import unknown_statuses, unknown_statuses_message
from app.core.normalization import Normalization
from app.core.project import ReviewProject, ReviewStatus, is_project, utc_now
from app.core.provenance import ProposalOrigin
from app.core.targets import extract_targets, label_components
from model.atomic import encode_json, encode_png, write_temporary_beside
from model.data import find_dataset, read_image_gray, read_mask, read_split, split_line_stem
from model.folder_lock import FolderLock
from model.metrics import ground_truth_target

LAYOUTS = ("sirst", "basicirstd", "dnanet")
SPLITS = ("train", "test")
FORMATS = {"raw": "raw copies", "coco": "COCO annotations", "yolo": "YOLO boxes"}  # optional, as the analyst reads them
EXPORT_FORMAT = "irsam-review-export/1"
DEFAULT_DATASET_NAME = "IRSAM-Review"
# why a frame is skipped whose pixels differ from those its mask or status was made on (ReviewProject.frame_change)
UNREADABLE_FRAME = "unreadable frame: "  # how the reason a frame is skipped for being unreadable begins
NO_LABEL = " but no prediction or committed mask"  # how the reason a frame with nothing to export ends
FRAME_CHANGED = "changed on disk since its mask or status was made: review it again"
# held (flock) by an export while it reads and writes a data set: ROOT/.irsam-export.lock, there only meanwhile
EXPORT_LOCK = ".irsam-export.lock"
# a temporary file of an export's own naming left this long is stale even when the data set cannot be locked
STALE_TEMPORARY_S = 3600.0
# model.atomic's temporary files: mkstemp(prefix=".<target name>.", suffix=".tmp"), 8 random characters between
_TEMPORARY_FILE = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


class ExportError(Exception):
    """The export cannot run (unknown layout, bad name, non-empty target without append, unreadable source),
    or a file could not be written."""


class DatasetExistsError(ExportError):
    """The export folder already holds a data set, and the export was not asked to add to it."""

    def __init__(self, root: Path):
        super().__init__(f"{root} already holds a data set: choose another folder, or add to it")
        self.root = root


@dataclass(frozen=True)
class DatasetPaths:
    root: Path  # folder holding images/, masks/, meta.json
    images: Path
    masks: Path
    split_files: dict[str, Path]  # "train" / "test" -> split file


def dataset_paths(out: str | Path, layout: str, dataset_name: str = DEFAULT_DATASET_NAME) -> DatasetPaths:
    out = Path(out)
    if layout == "sirst":
        root = out
        splits = {"train": root / "trainval.txt", "test": root / "test.txt"}
        if not any(p.exists() for p in splits.values()):
            folders = sirst_split_folders(root)
            if len(folders) == 1:  # the published SIRST: idx_427/ or splits/idx_427/, added to there
                splits = {"train": folders[0] / "trainval.txt", "test": folders[0] / "test.txt"}
    elif layout == "basicirstd":
        root = out / dataset_name
        splits = {s: root / "img_idx" / f"{s}_{dataset_name}.txt" for s in SPLITS}
    elif layout == "dnanet":
        root = out
        splits = {s: root / "50_50" / f"{s}.txt" for s in SPLITS}
    else:
        raise ExportError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    return DatasetPaths(root, root / "images", root / "masks", splits)


def split_files_not_updated_message(report: "ExportReport") -> str:
    """What an append to a published SIRST's split folder left as it was (`ExportReport.split_files_not_updated`)."""
    folder = Path(report.split_files_not_updated[0]).parent
    names = ", ".join(Path(p).name for p in report.split_files_not_updated)
    were = "they were" if len(report.split_files_not_updated) > 1 else "it was"
    return (f"note: {folder}/ also holds {names}, which this export leaves as {were}: its frames are listed in "
            f"{folder}/trainval.txt or test.txt only")


def sirst_split_folders(root: Path) -> list[Path]:
    """The folders where a SIRST data set laid out as published keeps its split files (idx_427/ or
    splits/idx_427/, each holding trainval.txt or test.txt), sorted."""
    return [folder for folder in sorted(root.glob("idx_*")) + sorted(root.glob("splits/idx_*"))
            if (folder / "trainval.txt").is_file() or (folder / "test.txt").is_file()]


def _check_one_split_folder(paths: DatasetPaths, layout: str) -> None:
    """A SIRST data set with no split files of its own at the top and several split folders (idx_320/ and
    idx_427/, say): which of them an export or a training should use cannot be told."""
    if layout != "sirst" or any(p.exists() for p in paths.split_files.values()):
        return
    folders = sirst_split_folders(paths.root)
    if len(folders) > 1:
        names = ", ".join(str(f.relative_to(paths.root)) for f in folders)
        raise ExportError(f"{paths.root} keeps split files in {len(folders)} folders ({names}): which one to use "
                          "cannot be told; keep one, or export into a new folder")


@dataclass
class ExportReport:
    root: Path
    layout: str
    split: str | None  # the side this export's frames went to (None until resolved: `export_project`)
    exported: list[str] = field(default_factory=list)  # data set stems written
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (project stem, why)
    removed: list[str] = field(default_factory=list)  # this sequence's stems from an earlier export, now dropped
    kept: list[tuple[str, str]] = field(default_factory=list)  # (data set stem, why unreadable) of earlier exports
    # of frames still selected but skipped now: their earlier files and record stay
    formats: list[str] = field(default_factory=list)  # optional formats (FORMATS keys) written
    formats_already_held: list[str] = field(default_factory=list)  # of those, written though not asked for
    labels_added: list[str] = field(default_factory=list)  # stems of earlier exports given the YOLO file they lacked
    # project stems of frames not exported because their pixels differ from those their mask or status was made
    # on (a source replaced on disk under the same names); also in `skipped` with FRAME_CHANGED, and in `kept`
    # when an earlier export of theirs stays
    changed: list[str] = field(default_factory=list)
    # temporary files an export cut short (killed, a power cut) left in the data set's folders, removed by this one
    # (`_remove_stale_temporary_files`), relative to root
    temporary_removed: list[str] = field(default_factory=list)
    # (project stem, data set stem) of frames not exported because the data set holds their pixels as that frame
    # of another sequence (an overlapping clip: `_leave_out_shared_frames`); also in `skipped`
    shared: list[tuple[str, str]] = field(default_factory=list)
    # the other split files of a published SIRST's split folder (idx_427/train.txt, val.txt, ...), which an
    # append to its trainval.txt and test.txt leaves as they were
    split_files_not_updated: list[str] = field(default_factory=list)
    # (data set stem, its earlier split) of this sequence's frames that this export moved to the other split
    moved: list[tuple[str, str]] = field(default_factory=list)
    # (data set stem, earlier project, earlier source) of frames whose earlier export came from another project or
    # source and that this export replaced (the same clip renamed, or cut again to hold more of the recording)
    replaced: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def formats_summary(self) -> list[str]:
        """What the optional formats written mean for the data set, one sentence a line."""
        lines = []
        if self.formats:
            written = [FORMATS[f] + (" (both splits, rebuilt from the masks)" if f == "coco" else "")
                       for f in self.formats]
            lines.append(f"Also written: {', '.join(written)}.")
        if self.formats_already_held:
            names = ", ".join(FORMATS[f] for f in self.formats_already_held)
            lines.append(f"{names[0].upper()}{names[1:]} written though not asked for: the data set has them, "
                         "and they must match its new masks and splits.")
        if self.labels_added:
            lines.append("1 YOLO label file added for a frame of an earlier export that had none." if
                         len(self.labels_added) == 1 else f"{len(self.labels_added)} YOLO label files added for "
                         "frames of earlier exports that had none.")
        return lines


def label_origin(project: ReviewProject, stem: str, include_unreviewed: bool) -> tuple[str | None, str]:
    """Where a frame's exported mask comes from ("committed", "prediction", "negative"), or (None, why skipped).

    accepted: committed mask, else the prediction; corrected: committed mask; negative: all zeros;
    rejected: skipped; unreviewed: skipped, or with `include_unreviewed` the committed mask if the analyst
    made one, else the prediction.
    """
    status = project.status(stem)
    if status is ReviewStatus.REJECTED:
        return None, "rejected"
    if status is ReviewStatus.NEGATIVE:
        return "negative", ""
    if status is ReviewStatus.UNREVIEWED and not include_unreviewed:
        return None, "unreviewed"
    if project.has_committed_mask(stem):
        return "committed", ""
    if status is ReviewStatus.CORRECTED:
        return None, "corrected but no committed mask"
    if not project.has_prediction(stem):
        return None, f"{status.value}{NO_LABEL}"
    return "prediction", ""


def _name_unreadable_frames(report: ExportReport, project: ReviewProject, source) -> None:
    """Of the frames skipped for having nothing to export (`label_origin`: no proposal, no committed mask), those
    that cannot be read, which is why detect proposed nothing, are skipped as unreadable (UNREADABLE_FRAME and
    why) instead: each is read. `source` None: the project's is opened (where it cannot be, the reasons stay)."""
    unlabelled = [i for i, (_, reason) in enumerate(report.skipped) if reason.endswith(NO_LABEL)]
    if not unlabelled:
        return
    with contextlib.ExitStack() as stack:
        if source is None:
            try:
                source = stack.enter_context(open_source(project.source_path, prefetch=0))
            except (SourceError, OSError):
                return
        index = {stem: i for i, stem in enumerate(source.stems)}
        for i in unlabelled:
            stem = report.skipped[i][0]
            try:
                if stem in index:
                    source.frame(index[stem])
            except FrameReadError as e:
                report.skipped[i] = (stem, f"{UNREADABLE_FRAME}{e.reason}")


def _load_label(project: ReviewProject, stem: str, origin: str) -> tuple[np.ndarray | None, ProposalOrigin | None]:
    """The mask exported for the frame and the origin of its proposal (whatever the mask came from)."""
    if origin == "prediction":
        return project.prediction(stem)  # one read of the file for both
    mask = np.zeros(project.shape_of(stem), dtype=bool) if origin == "negative" else project.committed_mask(stem)
    return mask, project.proposal_origin(stem)


def _label_and_frame(project: ReviewProject, stem: str, origin: str, source, source_index: dict[str, int]
                     ) -> tuple[np.ndarray | None, np.ndarray | None, ProposalOrigin | None, str]:
    """(mask, raw frame, proposal origin, "") of a frame selected for export, or (None, None, None, why it is
    skipped)."""
    if stem not in source_index:
        return None, None, None, "not in the source"
    mask, proposal = _load_label(project, stem, origin)
    if mask is None:
        return None, None, None, f"damaged {origin} mask"
    try:
        frame = source.frame(source_index[stem])
    except FrameReadError as e:
        return None, None, None, f"{UNREADABLE_FRAME}{e.reason}"
    if no_data(frame):
        return None, None, None, "no data (every pixel NaN)"  # a black training image teaches nothing
    return mask, frame, proposal, ""


GENERIC_FRAME_FOLDERS = {"images", "imgs", "img", "frames"}  # a sequence's frames folder, named by its parent


def source_sequence_name(source_path: str | Path, source_kind: str) -> str:
    """The name a source's exported frames are prefixed with, a plain name (export refuses one starting with
    "."): a folder's name, or its parent's for a frames folder with a generic name (IR_DRONE_146/images); a
    file's name without its extension (flight.tif)."""
    path = Path(source_path).resolve()
    if source_kind != "folder":
        name = path.stem
    elif path.name.lower() in GENERIC_FRAME_FOLDERS and path.parent.name:
        name = path.parent.name
    else:
        name = path.name
    return name.strip().lstrip(".").strip() or "sequence"  # a plain name (_check_plain_name)


def sequence_name_for(project: ReviewProject, out: str | Path, layout: str,
                      dataset_name: str = DEFAULT_DATASET_NAME) -> str:
    """The sequence name to export `project` under when none is given: the name its source already has in
    the data set at `out` (`sequence_of_this_source`), so an append replaces that earlier export, else
    `source_sequence_name`."""
    paths = dataset_paths(out, layout, dataset_name)
    own = source_sequence_name(project.source_path, project.source_kind)
    if not (paths.root / "meta.json").is_file():
        return own
    return sequence_of_this_source(_read_meta(paths)["frames"], project) or own


def sequence_of_this_source(records: dict, project: ReviewProject) -> str | None:
    """The sequence that a data set's frame `records` (its meta.json's) give `project`'s source; None where they give
    it none, or where several sequences could be it and none is named as the source is (`source_sequence_name`).
    The source's sequence is found as the export finds its frames (`_records_of_this_source`): by path or project,
    else by the frames' values, those the project recorded its work was made on (`recorded_frame_sha1s`; the frames
    are not read): a clip renamed since, with a new project over it, keeps its name."""
    own = source_sequence_name(project.source_path, project.source_kind)
    is_this_source = _this_source(project)
    for record in records.values():
        if is_this_source(record) and record.get("sequence"):
            return record["sequence"]
    stems = set(project.stems)
    outside = {record.get("sequence") for record in records.values() if record.get("source_stem") not in stems}
    asked = {record["source_stem"] for record in records.values()
             if record.get("sequence") not in outside and record.get("source_stem") in stems}
    recorded = {}
    for stem in asked:  # two small PNG headers a frame, only for the sequences that may be this source
        recorded[stem] = next((sha1 for sha1 in project.recorded_frame_sha1s(stem) if sha1 is not None), None)

    def compare(stem: str, record: dict) -> bool | None:
        if recorded.get(stem) is None or not isinstance(record.get("frame_sha1"), str):
            return None  # a constant frame's record holds none: it tells nothing
        return record["frame_sha1"] == recorded[stem]

    candidates = _sequences_of_this_source(records, project, set(), compare)
    if own in candidates:
        return own
    return candidates[0] if len(candidates) == 1 else None


def listable_name(name: str) -> str:
    """`name` made one that a split file line gives back as written: the field's loaders (`model.data.read_split`)
    strip each line and drop a known image extension, and a line holds no line break. Characters that are not
    printable (line and paragraph breaks, tabs, non-breaking spaces), spaces at either end and the '.' of a
    trailing image extension become '_': frame "a .png" is exported as "<sequence>_a_", "b.tif.png" as
    "<sequence>_b_tif"."""
    chars = [c if c.isprintable() else "_" for c in name]
    for end in (range(len(chars)), range(len(chars) - 1, -1, -1)):  # spaces at the start, then at the end
        for i in end:
            if chars[i] != " ":
                break
            chars[i] = "_"
    name = "".join(chars)
    suffix = Path(name).suffix
    if suffix and split_line_stem(name) != name:  # an image extension that the loaders would drop
        name = f"{name[: -len(suffix)]}_{suffix[1:]}"
    return name


def dataset_stem_names(sequence: str, stems: list[str], all_stems: list[str], records: dict) -> dict[str, str]:
    """Each of `stems`' name in the data set: `<sequence>_<stem>`, or the stem itself when it already starts with
    `<sequence>_` (a TIFF stack's pages: stack.tif's page stack_000001 is exported as stack_000001, not
    stack_stack_000001), unless what follows that prefix is another of the project's stems `all_stems`, which
    would take the same name; as a split file line reads it back (`listable_name`: a frame file "a .png" is
    exported as `<sequence>_a_`). A frame that the data set's `records` (meta.json) already hold for this
    sequence keeps the name it has there, if a split file line can hold it: an append replaces data sets
    exported under the earlier rule in place. Two frames may take the same name ("a " and "a_"): export refuses
    to write both (`_check_distinct_names`)."""
    prefix = f"{sequence}_"
    held = {record["source_stem"]: name for name, record in records.items()
            if record.get("sequence") == sequence and isinstance(record.get("source_stem"), str)}
    all_stems = set(all_stems)
    names = {}
    for stem in stems:
        if stem in held and listable_name(held[stem]) == held[stem]:
            names[stem] = held[stem]
        elif stem.startswith(prefix) and stem[len(prefix):] not in all_stems:
            names[stem] = listable_name(stem)
        else:
            names[stem] = listable_name(prefix + stem)
    return names


def _check_distinct_names(dataset_stems: dict[str, str]) -> None:
    """ExportError when two frames selected for export take the same data set name (`dataset_stem_names`: "a "
    and "a_" both as `<sequence>_a_`): one would overwrite the other."""
    by_name: dict[str, list[str]] = {}
    for stem, name in dataset_stems.items():
        by_name.setdefault(name, []).append(stem)
    clashes = [(name, stems) for name, stems in by_name.items() if len(stems) > 1]
    if clashes:
        name, stems = clashes[0]
        more = f" ({len(clashes) - 1} more names are taken twice)" if len(clashes) > 1 else ""
        raise ExportError(
            f"frames {', '.join(repr(s) for s in stems)} would be exported under the same name {name}{more}: a "
            "split file line loses spaces at either end, line breaks and an image extension, so those become '_'. "
            "Nothing was written: rename one of the frame files, or leave all but one out (reject them)")


def _export_layout(folder: Path) -> str | None:
    """The layout an export's meta.json in `folder` names; None without one (or unreadable: an append reads it
    again, and says why it cannot)."""
    try:
        layout = json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("layout")
    except (OSError, ValueError, AttributeError):
        return None
    return layout if layout in LAYOUTS else None


def _layouts_held(out: Path) -> dict[str, Path]:
    """The layouts of the data sets laid out by hand that `out` (holding no export's meta.json) holds, each with
    the file or folder that shows it: their split files (SIRST's trainval.txt or a published SIRST's split folder
    idx_427/, DNANet's 50_50/, BasicIRSTD's img_idx/ in a data set folder of `out`, or in `out`)."""
    held = {}
    sirst = [p for p in (out / "trainval.txt", out / "test.txt") if p.is_file()] + sirst_split_folders(out)
    dnanet = [p for p in (out / "50_50" / "train.txt", out / "50_50" / "test.txt") if p.is_file()]
    basicirstd = [p for p in (out / "img_idx", *sorted(out.glob("*/img_idx"))) if p.is_dir()]
    basicirstd += [p for p in sorted(out.glob("*/meta.json")) if _export_layout(p.parent) == "basicirstd"]
    for layout, found in (("sirst", sirst), ("dnanet", dnanet), ("basicirstd", basicirstd)):
        if found:
            held.setdefault(layout, found[0])
    return held


def _check_layout_of_folder(out: Path, layout: str) -> None:
    """ExportError, before anything is written, when `out` holds a data set of another layout than `layout` (a
    BasicIRSTD data set folder inside a SIRST one, say): the export would make a second data set beside or
    inside the first, whose frames no check sees, so one frame could be in both, on both sides of the split.
    An export's meta.json says its folder's layout; a folder laid out by hand that holds the split files of
    several layouts is taken as the one asked for. A BasicIRSTD export is refused the folder of a BasicIRSTD data
    set too: it writes into a data set folder inside the one given."""
    named = _export_layout(out)
    if layout == "basicirstd" and (named == "basicirstd" or (out / "img_idx").is_dir()):
        raise ExportError(f"{out} is the folder of a basicirstd data set, and a basicirstd export makes its data "
                          f"set folder inside the one given: nothing was written; to add to it, export into "
                          f"{out.parent} with the data set name {out.name!r}")
    if named is not None:  # an export's meta.json says the folder's layout
        other, shown_by = (None, None) if named == layout else (named, out / "meta.json")
    else:
        held = _layouts_held(out)
        other = None if layout in held else next(iter(held), None)
        shown_by = held.get(other)
    if other is not None:
        raise ExportError(f"{out} holds a {other} data set ({shown_by}), not {layout}: nothing was written; "
                          f"export in the {other} layout to add to it, or into another folder")


def _check_not_into_own_folders(paths: DatasetPaths, project: ReviewProject) -> None:
    """ExportError when the data set would be written into the sequence's frames folder or its ground truth
    (a clip's masks/, beside its frames or a folder up: the source would gain the exported frames), or into
    a review project, at any depth (its masks/ holds the proposals), but for a folder in a project's finetune/
    (the app's fine-tune folders, PROJECT/finetune/<time>/data)."""
    root = paths.root.resolve()
    written = (root, paths.images.resolve(), paths.masks.resolve())
    source = project.source_path.resolve()
    frames = source if project.source_kind == "folder" else source.parent  # a TIFF's or an image's folder
    truth = (frames / "masks", frames.parent / "masks")
    if project.source_kind == "folder":
        into_frames = frames in written or frames in root.parents
    else:  # beside a TIFF stack is fine; in its folder's images/ or masks/ (one image of a data set) is not
        into_frames = frames in written[1:]
    into = ("the sequence's frames folder", frames) if into_frames else None
    for folder in truth:
        if into is None and (folder in written or folder in root.parents):
            into = ("the sequence's ground-truth masks", folder)
    if into is None:
        own_project = project.folder.resolve()
        for folder in (root, *root.parents):
            if (folder == own_project or is_project(folder)) and folder / "finetune" not in root.parents:
                into = ("a review project", folder)
                break
    if into is not None:
        raise ExportError(f"{paths.root} would put the exported frames into {into[0]} ({into[1]}): choose a "
                          "folder outside it")


def export_project(
    project: ReviewProject,
    out: str | Path,
    layout: str,
    split: str | None = None,
    include_unreviewed: bool = False,
    append: bool = False,
    raw: bool = False,
    coco: bool = False,
    yolo: bool = False,
    dataset_name: str = DEFAULT_DATASET_NAME,
    sequence_name: str | None = None,
    source=None,
    normalization=None,
    progress=None,
) -> ExportReport:
    """Export a project's reviewed frames; nothing is written when no frame qualifies.

    `split`: the side the sequence's frames go to; None: the side the data set already has this sequence on
    (with `append`), else "train". A split given that differs from the sequence's earlier one moves its frames
    there (`ExportReport.moved`); frames whose earlier export came from another project or source are listed in
    `ExportReport.replaced`.
    `source` (a FrameSource) and `normalization` default to the project's own (source opened from its
    stored path, `Normalization.from_dict(project.normalization)`); `sequence_name` to the name the data
    set already gives this source's frames when appending (`sequence_name_for`), else the source's
    (`source_sequence_name`).
    With `append`, the data set may already hold other sequences: split files are merged without
    duplicates, and this sequence's earlier entries are replaced, except those of frames still selected
    but unreadable now, which are kept (`ExportReport.kept`); ExportError, before anything is written, when
    those entries (or a data set stem this export writes) come from another source, or when this source's
    frames are there under another sequence name; frames whose pixels the data set holds as another
    sequence's are left out (`ExportReport.shared`). The optional formats written are
    those asked for and, when appending, those the data set already holds (module docstring).
    `progress(done, total)`, when given, is called after each frame selected for export, whether written
    or skipped (unreadable), `total` being the number selected; the split files, annotations, YOLO
    labels of earlier exports and meta.json are written after the last call.
    Every file is first written under a temporary name and renamed into place once all are written, so
    an export that fails (a full disk) or is interrupted (KeyboardInterrupt) before the renames leaves the data
    set as it was. The renames: the frames' files, then meta.json, the split files and the annotations, then
    meta.json again where frames were removed (until then it keeps their records too): a failed one leaves
    meta.json recording every frame a split file lists (ExportError saying to export again). Ctrl-C or a kill
    (SIGTERM) in the main thread waits for the renames to end (`_InterruptsDeferred`): KeyboardInterrupt (or what
    the SIGTERM handler raises) is raised once the data set holds the whole export. ExportError when another export
    is writing into the data set (`_DatasetLock`), and when the project's review statuses could not be read
    (`unknown_statuses`).
    """
    unknown = unknown_statuses(project)
    if unknown is not None:
        raise ExportError(unknown_statuses_message(
            *unknown, "an export would skip them all or, with unreviewed frames included, export rejected frames and "
            "replace negative frames' empty masks with proposals"))
    if split is not None and split not in SPLITS:
        raise ExportError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if sequence_name is not None:
        sequence = sequence_name
    elif append:
        sequence = sequence_name_for(project, out, layout, dataset_name)
    else:
        sequence = source_sequence_name(project.source_path, project.source_kind)
    _check_plain_name("sequence name", sequence)
    _check_plain_name("data set name", dataset_name)
    paths = dataset_paths(out, layout, dataset_name)
    _check_not_into_own_folders(paths, project)
    _check_layout_of_folder(Path(out), layout)
    if append:
        _check_one_split_folder(paths, layout)
    report = ExportReport(paths.root, layout, split)
    split_folder = paths.split_files["train"].parent
    if layout == "sirst" and split_folder != paths.root:
        written = {p.name for p in paths.split_files.values()}
        report.split_files_not_updated = sorted(str(p.relative_to(paths.root)) for p in split_folder.glob("*.txt")
                                                if p.name not in written)

    selected = []
    for stem in project.stems:
        origin, reason = label_origin(project, stem, include_unreviewed)
        if origin is None:
            report.skipped.append((stem, reason))
        else:
            selected.append((stem, origin))
    if not selected:
        _name_unreadable_frames(report, project, source)
        return report
    if not append and _holds_dataset(paths):
        raise DatasetExistsError(paths.root)

    lock = _DatasetLock(paths.root).acquire()  # held from the read of meta.json to the last rename
    try:
        if not append and _holds_dataset(paths):  # made by an export that ran since the check above
            raise DatasetExistsError(paths.root)
        meta = _read_meta(paths) if append else {"format": EXPORT_FORMAT, "frames": {}}
        if meta.setdefault("layout", layout) != layout:
            raise ExportError(f"{paths.root} holds a {meta['layout']} data set, not {layout}")
        earlier_splits = {s: r.get("split") for s, r in meta["frames"].items() if r.get("sequence") == sequence}
        split = report.split = split or _split_of_sequence(earlier_splits, sequence, paths.root)
        dataset_stems = dataset_stem_names(sequence, [stem for stem, _ in selected], project.stems, meta["frames"])
        _check_distinct_names(dataset_stems)
        earlier_records = dict(meta["frames"])
        asked = {name for name, wanted in (("raw", raw), ("coco", coco), ("yolo", yolo)) if wanted}
        already_held = dataset_formats(out, layout, dataset_name) - asked if append else set()
        formats = asked | already_held

        own_source = source is None
        if own_source:
            source = _open_project_source(project)
        if normalization is None:
            normalization = Normalization.from_dict(project.normalization)
        # images, masks...; meta.json, split files, annotations; meta.json without the records of frames removed
        frame_files, index_files, final_files = _StagedFiles(), _StagedFiles(), _StagedFiles()
        renaming = _InterruptsDeferred(f"{paths.root} holds the whole export: the interrupt came while its files "
                                       "were being renamed into place, and took effect once they were")
        try:
            try:
                source_index = {s: i for i, s in enumerate(source.stems)}
                for done, (stem, origin) in enumerate(selected, start=1):
                    mask, frame, proposal, why = _label_and_frame(project, stem, origin, source, source_index)
                    dataset_stem = dataset_stems[stem]
                    if mask is not None:
                        # the frame is read anyway: the check costs a hash and two small PNG reads
                        if project.frame_change(stem, frame_digest(frame)).affects_export(origin):
                            mask, why = None, FRAME_CHANGED
                            report.changed.append(stem)
                    if mask is None:
                        report.skipped.append((stem, why))
                        if _holds_earlier_export(paths, meta, dataset_stem):
                            report.kept.append((dataset_stem, why))
                    else:
                        frame_files.write(paths.images / f"{dataset_stem}.png", encode_png(normalization.apply(frame)))
                        frame_files.write(paths.masks / f"{dataset_stem}.png", encode_png(mask))
                        raw_file = None
                        if "raw" in formats:
                            raw_file = _write_raw(frame_files, paths.root, dataset_stem, frame)
                        if "yolo" in formats:
                            frame_files.write(paths.root / "labels" / f"{dataset_stem}.txt", yolo_boxes(mask).encode())
                        meta["frames"][dataset_stem] = {
                            "sequence": sequence,
                            "project": str(project.folder.resolve()),
                            "source": str(project.source_path),
                            "source_kind": project.source_kind,
                            "frame_index": project.index(stem),
                            "source_stem": stem,
                            "normalization": project.normalization,
                            "proposal": None if proposal is None else proposal.to_dict(),
                            "status": project.status(stem).value,
                            "mask_from": origin,
                            "split": split,
                            "raw": raw_file,
                            "frame_sha1": frame_fingerprint(frame),
                            "exported": utc_now(),
                        }
                        report.exported.append(dataset_stem)
                    if progress is not None:
                        progress(done, len(selected))
                _name_unreadable_frames(report, project, source)
            finally:
                if own_source:
                    source.close()
            if not report.exported:
                return report
            exported_sha1 = {meta["frames"][s]["source_stem"]: meta["frames"][s]["frame_sha1"] for s in report.exported}
            this_source = _records_of_this_source(earlier_records, project, sequence, exported_sha1)
            _check_sequence_is_this_source(earlier_records, this_source, paths.root, sequence, project,
                                           set(dataset_stems.values()))
            _leave_out_shared_frames(report, meta, earlier_records, this_source, frame_files, paths)
            if not report.exported:
                frame_files.discard()
                return report

            report.formats = [f for f in FORMATS if f in formats]
            report.formats_already_held = [f for f in FORMATS if f in already_held]
            exported = set(report.exported)
            kept_earlier = {s for s, _ in report.kept}
            listed_here = exported | kept_earlier
            this_sequence = [s for s in dataset_stems.values() if s in listed_here]
            report.removed = [s for s, record in meta["frames"].items()
                              if record.get("sequence") == sequence and s not in listed_here]
            removed_records = {s: meta["frames"].pop(s) for s in report.removed}
            for s in kept_earlier:
                meta["frames"][s]["split"] = split
            report.moved = [(s, earlier_splits[s]) for s in this_sequence
                            if earlier_splits.get(s) in SPLITS and earlier_splits[s] != split]
            is_this_source = _this_source(project)  # (the project moved, or its source: still this one)
            report.replaced = [(s, earlier_records[s].get("project"), earlier_records[s].get("source"))
                               for s in report.exported if s in earlier_records
                               and not is_this_source(earlier_records[s])]
            # as the split files list them: a name exported before names were made listable ("seq_a ") reads "seq_a"
            removed_listed = set(removed_records) | {split_line_stem(s) for s in removed_records if listable_name(s) != s}
            # renamed before the split files, keeping the records of the frames removed until they are renamed: a
            # rename that fails after it leaves every frame a split file lists (the old or the new one) recorded
            index_files.write(paths.root / "meta.json",
                              encode_json(dict(meta, frames={**meta["frames"], **removed_records})))
            splits = {}
            for name, path in paths.split_files.items():
                try:
                    listed = read_split(path) if append and path.exists() else []
                except ValueError as e:  # a split file edited by hand to list a frame twice
                    raise ExportError(f"{e}; fix it, or export into a new folder") from None
                others = [s for s in listed if s not in listed_here and s not in removed_listed]
                splits[name] = others + (this_sequence if name == split else [])
                index_files.write(path, "".join(f"{s}\n" for s in splits[name]).encode())
            if "yolo" in formats:
                for stem in (s for stems in splits.values() for s in stems if s not in exported):
                    label = paths.root / "labels" / f"{stem}.txt"
                    if not label.exists():
                        frame_files.write(label, yolo_boxes(_exported_mask(frame_files, paths, stem)).encode())
                        report.labels_added.append(stem)
            if "coco" in formats:
                for name, stems in splits.items():
                    _write_coco(index_files, frame_files, paths, name, stems)
            if removed_records:
                final_files.write(paths.root / "meta.json", encode_json(meta))
            renaming.start()  # the last step before the renames: from here Ctrl-C and SIGTERM wait for them to end
        except BaseException:  # an interrupt too: nothing of this export is in place yet
            renaming.restore()
            frame_files.discard()
            index_files.discard()
            final_files.discard()
            raise
        with renaming:
            try:
                frame_files.commit(remove_new_on_failure=True)
            except ExportError:
                index_files.discard()
                final_files.discard()
                raise
            try:
                index_files.commit(remove_new_on_failure=False)
                final_files.commit(remove_new_on_failure=False)
            except ExportError as e:
                final_files.discard()
                raise ExportError(f"{e}; {paths.root} is partly updated: export again, adding to the data set, "
                                  "to complete it") from e
            for s, record in removed_records.items():
                _remove_exported_files(paths.root, s, record)
        report.temporary_removed = _remove_stale_temporary_files(paths, None if lock.held else STALE_TEMPORARY_S)
        return report
    finally:
        lock.release()


def read_exported_dataset(
    folder: str | Path, layout: str, dataset_name: str | None = None
) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(stem, image uint8, mask bool, split) for every stem listed in the split files, in file order.

    Read as `irsam train` reads a data set (`model.data.find_dataset`, `read_image_gray`, `read_mask`): split
    file lines may carry an image extension, masks SIRST's `_pixels0` suffix. For basicirstd, `dataset_name`
    defaults to the one data set folder under `folder`.
    """
    folder = Path(folder)
    if layout == "basicirstd" and dataset_name is None:
        candidates = [p.name for p in sorted(folder.iterdir()) if (p / "img_idx").is_dir()]
        if len(candidates) != 1:
            raise ExportError(f"{folder}: expected one BasicIRSTD data set folder (with img_idx/), found {candidates}")
        dataset_name = candidates[0]
    paths = dataset_paths(folder, layout, dataset_name or DEFAULT_DATASET_NAME)
    _check_one_split_folder(paths, layout)
    samples = []
    for split, path in paths.split_files.items():
        if path.exists():  # read as training reads them (model.data)
            try:
                found = find_dataset(paths.images, paths.masks, path)
            except (OSError, ValueError) as e:
                raise ExportError(f"{path}: {e}") from None
            samples += [(s.stem, read_image_gray(s.image_path), read_mask(s.mask_path), split) for s in found]
    return samples


# --- annotation formats ----------------------------------------------------------------------------


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: column-major run lengths, starting with a (possibly empty) background run."""
    mask = np.asarray(mask, dtype=bool)
    counts = _run_lengths(mask.ravel(order="F"))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _run_lengths(flat: np.ndarray) -> list[int]:
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = [int(r) for r in np.diff(bounds)]
    if flat.size and flat[0]:
        runs = [0] + runs
    return runs


def rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    values = np.zeros(h * w, dtype=bool)
    position = 0
    for i, count in enumerate(rle["counts"]):
        if i % 2:
            values[position : position + count] = True
        position += count
    return values.reshape((h, w), order="F")


def yolo_boxes(mask: np.ndarray) -> str:
    """YOLO label lines `0 cx cy w h` (normalised) of the mask's 8-connected targets; '' for none."""
    h, w = mask.shape
    lines = []
    for t in extract_targets(mask):
        bw, bh = t.x1 - t.x0 + 1, t.y1 - t.y0 + 1
        lines.append(f"0 {(t.x0 + bw / 2) / w:.6f} {(t.y0 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}\n")
    return "".join(lines)


def _write_coco(index_files: _StagedFiles, frame_files: _StagedFiles, paths: DatasetPaths, split: str,
                stems: list[str]) -> None:
    images, annotations = [], []
    for image_id, stem in enumerate(stems, start=1):
        mask = _exported_mask(frame_files, paths, stem)
        h, w = mask.shape
        images.append({"id": image_id, "file_name": f"{stem}.png", "height": h, "width": w})
        _, labels = label_components(mask)
        for t in extract_targets(mask):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": rle_encode(labels == t.id),
                "area": t.area,
                "bbox": [t.x0, t.y0, t.x1 - t.x0 + 1, t.y1 - t.y0 + 1],
                "iscrowd": 0,
            })
    document = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "target", "supercategory": "target"}],
    }
    index_files.write(paths.root / "annotations" / f"instances_{split}.json", encode_json(document))


# --- helpers -----------------------------------------------------------------------------------------


def _cannot_write(path: Path, error: OSError, folder: bool = False) -> ExportError:
    """The error of a write to `path` (a folder, with `folder`), naming the file in the way where one is: a
    folder of the path that is a file made mkdir say "File exists" of the path, which is not there."""
    in_the_way = [p for p in (*reversed(path.parents), *([path] if folder else [])) if p.exists() and not p.is_dir()]
    if in_the_way:
        return ExportError(f"cannot write {path}: {in_the_way[0]} is a file, where a folder is needed")
    return ExportError(f"cannot write {path}: {error.strerror or error}")


class _StagedFiles:
    """Files written under temporary names beside their targets, renamed into place by `commit`: until
    then the targets are as they were, and `discard` removes what was written."""

    def __init__(self):
        self.temporary: dict[Path, Path] = {}  # target -> its temporary file, in the order written

    def write(self, path: Path, data: bytes) -> None:
        try:
            self.temporary[path] = write_temporary_beside(path, data)
        except OSError as e:
            raise _cannot_write(path, e) from e

    def current(self, path: Path) -> Path:
        """The file holding `path`'s content as it will be: its temporary file, if written."""
        return self.temporary.get(path, path)

    def commit(self, remove_new_on_failure: bool) -> None:
        """Rename the files into place; when one fails, the rest are discarded, and with
        `remove_new_on_failure` the targets that did not exist before are removed again."""
        new = []
        for path, temporary in list(self.temporary.items()):
            existed = path.exists()
            try:
                os.replace(temporary, path)
            except OSError as e:
                self.discard()
                if remove_new_on_failure:
                    for done in new:
                        done.unlink(missing_ok=True)
                raise _cannot_write(path, e) from e
            del self.temporary[path]
            if not existed:
                new.append(path)

    def drop(self, path: Path) -> None:
        """Not write `path` after all (if it was written)."""
        temporary = self.temporary.pop(path, None)
        if temporary is not None:
            temporary.unlink(missing_ok=True)

    def discard(self) -> None:
        for temporary in self.temporary.values():
            temporary.unlink(missing_ok=True)
        self.temporary.clear()


class _InterruptsDeferred:
    """Ctrl-C (SIGINT) and a kill (SIGTERM: timeout, a service manager's stop) held back while a block runs that must
    not be cut short (the renames that put an export in place), from `start()` (or entering the block) to the
    block's end. Python runs signal handlers in the main thread only, and only there can they be swapped: there,
    each signal is recorded meanwhile and delivered after the block to the handler put back. An interrupt that
    handler raises (KeyboardInterrupt, or a subclass of it: a command that takes SIGTERM as Ctrl-C) is raised with
    `note`; any other handler is called, through the signal (SIG_DFL: the process ends, as it would have).
    Elsewhere (the app's export worker, which signals never interrupt) it does nothing, as for a signal that is
    ignored. A block ending in an exception (a failed rename, whose message says what the data set holds) raises
    that one, not the interrupt: the export stops either way."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, note: str = ""):
        self.note = note
        self.previous: dict[int, object] = {}  # signal -> the handler swapped out, while held back
        self.received: list[int] = []  # the signals that came meanwhile, in order

    def start(self) -> None:
        if self.previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in self.SIGNALS:
            previous = signal.getsignal(signum)
            if previous is None or previous == signal.SIG_IGN:  # set outside Python (cannot be put back), or ignored
                continue
            try:
                signal.signal(signum, self._record)
            except ValueError:  # not the main interpreter
                return
            self.previous[signum] = previous

    def _record(self, signum, frame) -> None:
        if signum not in self.received:
            self.received.append(signum)

    def restore(self) -> list[int]:
        """Put the handlers back; the signals that came meanwhile (then forgotten)."""
        received, self.received = self.received, []
        previous, self.previous = self.previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        return received

    def __enter__(self) -> _InterruptsDeferred:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        received = self.restore()
        if exc_type is None:
            for signum in received:
                try:
                    signal.raise_signal(signum)  # its handler runs before raise_signal returns
                except KeyboardInterrupt as interrupt:
                    if not self.note:
                        raise
                    raise type(interrupt)(self.note) from None
        return False


class _DatasetLock(FolderLock):
    """The lock on ROOT/.irsam-export.lock, held by an export from its read of meta.json to its last rename: a
    second export into the data set (a window's and an irsam command's) is refused rather than losing the first
    one's frames from meta.json, and one that holds it knows that every temporary file of an export's naming in
    the data set was left by an export cut short. A data set folder that cannot be made is an ExportError."""

    def __init__(self, root: Path):
        super().__init__(root, EXPORT_LOCK, "")  # the window's export or a command's: its pid says which
        self.root = root

    def refused(self, other: str) -> Exception:
        return ExportError(f"another export{other} is writing into {self.root} now (an export window or an irsam "
                           "command): nothing was written; export again when it has finished")

    def cannot_make(self, error: OSError) -> None:
        raise _cannot_write(self.root, error, folder=True) from error


def _remove_stale_temporary_files(paths: DatasetPaths, older_than_s: float | None) -> list[str]:
    """Remove the temporary files that exports cut short (killed, a power cut) left in the data set: those of
    model.atomic's naming (`.<target>.<8 characters>.tmp`) for a file an export writes in that folder (images/
    and masks/ <stem>.png, raw/ <stem>.png|.tif, labels/ <stem>.txt, annotations/ instances_<split>.json, the
    split files and meta.json), and no other file. `older_than_s`: only those not modified for that long (None:
    any age, when the data set lock is held, so that no export is writing). Returns them, relative to the root."""
    root = paths.root
    targets: dict[Path, Callable[[str], bool]] = {
        paths.images: lambda t: t.endswith(".png"),
        paths.masks: lambda t: t.endswith(".png"),
        root / "raw": lambda t: t.endswith((".png", ".tif")),
        root / "labels": lambda t: t.endswith(".txt"),
        root / "annotations": lambda t: t in {f"instances_{s}.json" for s in SPLITS},
    }
    for index_file in (*paths.split_files.values(), root / "meta.json"):
        earlier = targets.get(index_file.parent, lambda t: False)
        targets[index_file.parent] = lambda t, name=index_file.name, earlier=earlier: t == name or earlier(t)
    removed = []
    for folder, is_target in targets.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no such folder
            continue
        for entry in entries:
            match = _TEMPORARY_FILE.fullmatch(entry.name)
            if match is None or not is_target(match["target"]):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if older_than_s is not None and time.time() - entry.stat(follow_symlinks=False).st_mtime < older_than_s:
                    continue
                os.unlink(entry.path)
            except OSError:  # gone meanwhile, or not ours to remove: the data set reads the same
                continue
            removed.append(str(Path(entry.path).relative_to(root)))
    return sorted(removed)


def _split_of_sequence(earlier_splits: dict[str, str | None], sequence: str, root: Path) -> str:
    """The split an export given none sends `sequence` to: the one its frames already sit on in the data set
    (`earlier_splits`: data set stem -> split), so that re-exporting a test sequence cannot move it into training
    unnoticed; "train" for a new sequence. ExportError when its frames sit on both sides."""
    held = [split for split in SPLITS if split in earlier_splits.values()]
    if len(held) > 1:
        counts = ", ".join(f"{sum(s == split for s in earlier_splits.values())} on {split}" for split in held)
        raise ExportError(f"{root} holds frames of sequence {sequence!r} on both sides of the split ({counts}): "
                          "say which split to export it to. Nothing was written")
    return held[0] if held else "train"


def _is_plain_name(name) -> bool:
    """Names become parts of file names and of split file lines: a path in one would write outside the data
    set, and a split file line loses the spaces around it (`read_split`) and cannot hold a line break."""
    return (isinstance(name, str) and bool(name) and not name.startswith(".") and "/" not in name
            and "\\" not in name and name.isprintable() and name == name.strip())


def _check_plain_name(what: str, name: str) -> None:
    if not _is_plain_name(name):
        raise ExportError(f"{what} {name!r} is not a plain name: it must be printable, not empty, "
                          "hold no '/' or '\\', not start with '.' and not start or end with a space")


def _exported_mask(frame_files: _StagedFiles, paths: DatasetPaths, stem: str) -> np.ndarray:
    """The mask of a frame listed in the split files, as this export leaves it."""
    path = paths.masks / f"{stem}.png"
    try:
        with Image.open(frame_files.current(path)) as im:
            return ground_truth_target(np.asarray(im.convert("L")))
    except OSError as e:
        raise ExportError(f"cannot read {path}, the mask of a frame listed in the split files ({e}); the "
                          "annotations are made from it: restore it, or remove the frame from the split files") from e


def dataset_formats(out: str | Path, layout: str, dataset_name: str = DEFAULT_DATASET_NAME) -> set[str]:
    """The optional formats (FORMATS keys) the data set in `out` already holds: an append writes them too.
    Hidden files (the temporary files of an export killed mid-way) do not count."""
    root = dataset_paths(out, layout, dataset_name).root
    patterns = {"raw": "raw/[!.]*", "coco": "annotations/instances_*.json", "yolo": "labels/[!.]*.txt"}
    return {name for name, pattern in patterns.items() if any(root.glob(pattern))}


def _records_of_this_source(records: dict, project: ReviewProject, sequence: str,
                            exported_sha1: dict[str, str | None]) -> set[str]:
    """The data set stems of `records` (the data set's frame records before this export) that are this source's
    frames: those naming this source or project (`_this_source`), and those of a sequence that
    `_sequences_of_this_source` finds this source's by the values of the frames exported now (`exported_sha1`:
    project stem -> `frame_fingerprint`): the clip renamed since, with its project or not, whose paths no longer
    tell, maybe grown since, maybe with frames replaced on disk; or this clip cut again to hold more of the
    recording. Where two sequences would be, the one named `sequence` if any, else neither."""
    is_this_source = _this_source(project)
    by_path = {dataset_stem for dataset_stem, record in records.items() if is_this_source(record)}

    def compare(stem: str, record: dict) -> bool | None:
        if stem not in exported_sha1 or "frame_sha1" not in record:
            return None
        if record["frame_sha1"] == exported_sha1[stem]:
            return True if exported_sha1[stem] is not None else None  # two constant frames tell nothing
        return False

    candidates = _sequences_of_this_source(records, project, by_path, compare)
    chosen = {sequence} if sequence in candidates else set(candidates) if len(candidates) == 1 else set()
    return by_path | {dataset_stem for dataset_stem, record in records.items() if record.get("sequence") in chosen}


def _sequences_of_this_source(records: dict, project: ReviewProject, by_path: set[str],
                              compare: Callable[[str, dict], bool | None]) -> list[str]:
    """The sequences of `records` (but the records `by_path`, which name this source or project) found this
    source's by their frames' values: a sequence holding nothing but this project's frames, each under its stem
    here, at least one of them alike (`compare(stem, record)`: True alike, False different, None not known),
    and whose recorded sources do not say otherwise (`_source_may_be_this_one`). Frames that differ (the same
    stem, other values: the frame replaced on disk since) are allowed only where every recorded source is gone
    (or is this one: `_source_gone_or_this_one`) and fewer differ than are alike: that is this clip renamed, with
    some frames replaced, and exporting it replaces them; a source still there is another clip.

    A sequence holding a frame that is not this project's is another source, even where it shares frames
    with this one (two clips cut from one recording, overlapping by a few frames): `_leave_out_shared_frames`.
    So is one whose source is still where its records say and holds frames this project does not: an
    overlapping clip of which only the frames the two share have been exported yet."""
    stems = set(project.stems)
    alike: dict = {}  # sequence -> frames found alike; None once one is not this project's
    differ: dict[str, int] = {}  # sequence -> frames of the same stem, other values
    for dataset_stem, record in records.items():
        name = record.get("sequence")
        if not isinstance(name, str) or alike.get(name, 0) is None:
            continue
        if dataset_stem in by_path:
            alike[name] = alike.get(name, 0) + 1
            continue
        stem = record.get("source_stem")
        if not isinstance(stem, str) or stem not in stems:
            alike[name] = None
            continue
        same = compare(stem, record)
        alike[name] = alike.get(name, 0) + (same is True)
        if same is False:
            differ[name] = differ.get(name, 0) + 1
    sources: dict = {}  # candidate sequence -> the sources its records name, but those naming this one
    for dataset_stem, record in records.items():
        if isinstance(record.get("sequence"), str) and alike.get(record["sequence"]) and dataset_stem not in by_path:
            sources.setdefault(record["sequence"], set()).add(record.get("source"))
    candidates = []
    for name, n in alike.items():
        if not n or not all(_source_may_be_this_one(path, project, stems) for path in sources.get(name, ())):
            continue
        changed = differ.get(name, 0)
        if changed and (changed >= n or not all(_source_gone_or_this_one(path, project)
                                                for path in sources.get(name, ()))):
            continue
        candidates.append(name)
    return candidates


def _source_gone_or_this_one(path, project: ReviewProject) -> bool:
    """Whether the source a data set's frame record names (`path`) is no longer there, or is this project's."""
    if not isinstance(path, str):
        return False
    if not os.path.lexists(path):
        return True
    try:
        return os.path.samefile(path, project.source_path)
    except OSError:
        return False


def _source_may_be_this_one(path, project: ReviewProject, stems: set[str]) -> bool:
    """Whether the source a data set's frame record names (`path`) leaves its frames to be found this project's
    by their pixels: it is this source, or no longer there (or unreadable: the paths no longer tell), or holds
    nothing but frames of this project's (`stems`): this clip is it grown, or cut again to hold more. A source
    still there that holds frames this project does not is another clip, however many frames the two share.
    Only where the paths alone do not tell (the project named is not this one either); the project a record
    names does not count: the project of a clip renamed alone stays behind, naming a source now gone."""
    if not isinstance(path, str):
        return True
    try:
        if os.path.samefile(path, project.source_path):
            return True
    except OSError:  # either gone; this project's source has just been read
        return True
    try:
        with open_source(path, cache_size=1, prefetch=0) as other:
            return set(other.stems) <= stems
    except (SourceError, OSError):
        return True


def _check_sequence_is_this_source(records: dict, this_source: set[str], root: Path, sequence: str,
                                   project: ReviewProject, dataset_stems: set[str]) -> None:
    """Refuse an append that would replace or remove frames of another source (two folders of the same
    name), or put this source's frames in the data set twice under two sequence names (maybe on both sides
    of the split). `records` are the data set's frame records before this export, `this_source` the stems of
    those that are this source's (`_records_of_this_source`)."""
    source = str(project.source_path)
    for dataset_stem, record in records.items():
        ours = dataset_stem in this_source
        other_sequence = record.get("sequence")
        if ours and other_sequence != sequence:
            raise ExportError(
                f"{root} already holds the frames of {source} as sequence {other_sequence!r} (e.g. {dataset_stem}, "
                f"from {record.get('source')}); exporting them as {sequence!r} would put them in the data set "
                f"twice. Nothing was written: export under the sequence name {other_sequence!r} to replace them")
        if not ours and other_sequence == sequence:
            raise ExportError(
                f"sequence name {sequence!r} is already used in {root} by the frames of {record.get('source')}; "
                f"exporting {source} under it would replace them. Nothing was written: export under another "
                "sequence name (frames the two share are then left out of this export, and named)")
        if not ours and dataset_stem in dataset_stems:
            raise ExportError(
                f"{root} already holds {dataset_stem}, a frame of {record.get('source')} (sequence "
                f"{other_sequence!r}); exporting {source} as sequence {sequence!r} would overwrite it. Nothing "
                "was written: export under another sequence name")


def shared_frame_reason(sequence: str) -> str:
    """Why a frame is not exported whose values the data set holds as a frame of sequence `sequence`."""
    return f"already in the data set as a frame of sequence {sequence!r} (the same pixels)"


def _leave_out_shared_frames(report: ExportReport, meta: dict, records: dict, this_source: set[str],
                             frame_files: _StagedFiles, paths: DatasetPaths) -> None:
    """Take back the frames written now whose values (`frame_fingerprint`) the data set already holds as another
    source's frames (`records` before this export, but those in `this_source`): a frame in a data set twice
    counts twice in training, and may sit on both sides of the split. Each goes to `report.skipped` and
    `report.shared`; its files are not written, and an earlier export of it under this sequence is removed
    with the frames no longer selected."""
    held = {}
    for dataset_stem, record in records.items():
        if dataset_stem not in this_source and isinstance(record.get("frame_sha1"), str):
            held.setdefault(record["frame_sha1"], dataset_stem)
    for dataset_stem in list(report.exported):
        record = meta["frames"][dataset_stem]
        other = held.get(record["frame_sha1"])
        if other is None:
            continue
        written = [paths.images / f"{dataset_stem}.png", paths.masks / f"{dataset_stem}.png",
                   paths.root / "labels" / f"{dataset_stem}.txt"]
        if record["raw"]:
            written.append(paths.root / record["raw"])
        for path in written:
            frame_files.drop(path)
        if dataset_stem in records:
            meta["frames"][dataset_stem] = records[dataset_stem]
        else:
            del meta["frames"][dataset_stem]
        report.exported.remove(dataset_stem)
        report.skipped.append((record["source_stem"], shared_frame_reason(records[other].get("sequence"))))
        report.shared.append((record["source_stem"], other))


def _this_source(project: ReviewProject) -> Callable[[dict], bool]:
    """Whether a data set's frame record names `project`'s source or the project itself (either may have been
    recreated or moved since); the paths are resolved once for all the records asked about."""
    source, project_folder = str(project.source_path), str(project.folder.resolve())
    return lambda record: record.get("source") == source or record.get("project") == project_folder


def _holds_earlier_export(paths: DatasetPaths, meta: dict, dataset_stem: str) -> bool:
    """Whether the data set holds an earlier export of the frame: its record, image and mask."""
    return (dataset_stem in meta["frames"] and (paths.images / f"{dataset_stem}.png").is_file()
            and (paths.masks / f"{dataset_stem}.png").is_file())


def _holds_dataset(paths: DatasetPaths) -> bool:
    """meta.json, a split file, or a file in images/ or masks/ (not counting hidden ones, such as the
    temporary files of an export killed mid-way)."""
    return (
        (paths.root / "meta.json").exists()
        or any(p.exists() for p in paths.split_files.values())
        or any(d.is_dir() and any(not f.name.startswith(".") for f in d.iterdir())
               for d in (paths.images, paths.masks))
    )


def _open_project_source(project: ReviewProject):
    try:
        return open_source(project.source_path, prefetch=0)
    except SourceError as e:
        raise ExportError(f"cannot read the project's source: {e}") from e


def _read_meta(paths: DatasetPaths) -> dict:
    path = paths.root / "meta.json"
    if not path.exists():
        return {"format": EXPORT_FORMAT, "frames": {}}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("format") != EXPORT_FORMAT:
            raise ValueError(f"not a {EXPORT_FORMAT} file")
        return checked_meta(meta)
    except (OSError, ValueError, AttributeError) as e:
        raise ExportError(f"{path} is unreadable ({e}); cannot append safely") from e


def checked_meta(meta: dict) -> dict:
    """An export's meta.json (of EXPORT_FORMAT), read: ValueError saying what makes it unusable."""
    if not isinstance(meta.get("frames"), dict) or not all(isinstance(r, dict) for r in meta["frames"].values()):
        raise ValueError("its frames are not a record per frame")
    for dataset_stem, record in meta["frames"].items():
        problem = _record_problem(dataset_stem, record)
        if problem:
            raise ValueError(f"the record of frame {dataset_stem!r}: {problem}")
    return meta


def _record_problem(dataset_stem: str, record: dict) -> str:
    """What makes a frame record of meta.json unusable ("" for none): its name and the files it names become
    paths in the data set (an append removes them), its sequence a file name prefix, its source stem a frame's."""
    if not _is_file_name(dataset_stem):
        return "its name is not a file name"
    if not _is_plain_name(record.get("sequence")):
        return f"its sequence {record.get('sequence')!r} is not a plain name"
    if "source_stem" in record and not isinstance(record["source_stem"], str):
        return f"its source_stem {record['source_stem']!r} is not a frame name"
    raw = record.get("raw")
    if raw is not None and not (isinstance(raw, str) and raw.startswith("raw/") and _is_file_name(raw[4:])):
        return f"its raw {raw!r} is not a file in raw/"
    return ""


def _is_file_name(name: str) -> bool:
    """A name that stays in its folder as a path part (exports before `listable_name` may hold spaces at its ends)."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def _write_raw(frame_files: _StagedFiles, root: Path, stem: str, frame: np.ndarray) -> str:
    """Lossless raw copy: PNG for 8/16-bit frames, TIFF otherwise; returns the path relative to root."""
    if frame.dtype in (np.uint8, np.uint16):
        relative = f"raw/{stem}.png"
        frame_files.write(root / relative, encode_png(frame))
    else:
        import tifffile

        relative = f"raw/{stem}.tif"
        buf = io.BytesIO()
        tifffile.imwrite(buf, np.ascontiguousarray(frame))
        frame_files.write(root / relative, buf.getvalue())
    return relative


def _remove_exported_files(root: Path, stem: str, record: dict) -> None:
    files = [root / "images" / f"{stem}.png", root / "masks" / f"{stem}.png", root / "labels" / f"{stem}.txt"]
    if record.get("raw"):
        files.append(root / record["raw"])
    for path in files:
        path.unlink(missing_ok=True)
