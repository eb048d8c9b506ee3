"""Reference labels taken into the analyst's layer, to check and correct an existing data set.

A data set's own masks (the ground truth found beside the source, or any folder of 0/255 masks by stem)
become the committed masks of the project's frames, each as one undoable edit from what the frame
showed before (its proposal, else nothing). Statuses are left alone: the frames stay unreviewed until
the analyst has looked at them, and export then takes the (corrected) committed masks.

What the analyst already did is never overwritten: reviewed frames are left as they are, and a frame
whose committed mask differs from the reference keeps it unless `replace` is asked (then the reference
replaces it as an undoable edit).

Each mask committed records the fingerprint of the frame it is committed over, so a frame replaced on disk
later is found changed and not exported with it; a frame that cannot be read then has its mask refused. The
frames are read from a source of their own (`irsam import-labels` passes its reader; in the app, where the
project's `frame_sha1_of` reads the view's frame cache, one is opened without read-ahead), so an import in a
worker neither evicts the frames the analyst looks at nor turns the view's read-ahead round.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from app.core.frames import FrameReadError, GroundTruth, SourceError, UnusableMask, frame_digest, open_source
from app.core.project import ReviewProject, ReviewStatus
from model.data import counted, name_some

READ_ERRORS = (FrameReadError, OSError, KeyError, IndexError, ValueError)


class LabelImportError(Exception):
    """The import cannot run: nothing was committed."""


def unknown_statuses(project: ReviewProject) -> tuple[Path, str] | None:
    """(file, why) when some of the project's review statuses could not be read (`statuses_incomplete`: review.json
    damaged, or entries of it, with no readable backup standing in). Their frames then read as unreviewed, rejected
    and negative frames too; None when every status was read."""
    if not project.statuses_incomplete:
        return None
    damaged = dict(project.damaged)
    for path in (project.folder / "review.json", project.folder / "review.json.bak"):
        if path in damaged:
            return path, damaged[path]
    return project.folder / "review.json", "unreadable review statuses"


def unknown_statuses_message(path: Path, reason: str, harm: str) -> str:
    """One line refusing a run that `harm`s a project whose review statuses are not known (`unknown_statuses`)."""
    return (f"{path}: {reason}. Some frames' review statuses are not known, and such a frame reads as unreviewed: "
            f"{harm}. Nothing was written: restore {path.name} (from a copy), or review the frames again in the app")


@dataclass
class LabelImportReport:
    imported: list[str] = field(default_factory=list)  # committed from the reference masks
    unchanged: list[str] = field(default_factory=list)  # the committed mask already was the reference
    kept: list[str] = field(default_factory=list)  # the analyst's own committed mask kept (no `replace`)
    reviewed: list[str] = field(default_factory=list)  # reviewed frames with a reference mask, left as they are
    missing: list[str] = field(default_factory=list)  # unreviewed frames without a reference mask
    refused: list[tuple[str, str]] = field(default_factory=list)  # (stem, why the mask cannot be used)
    stopped: bool = False  # `cancelled` stopped it before its last frame

    def summary(self) -> str:
        parts = [counted(len(self.imported), "mask committed", "masks committed")]
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} already committed")
        if self.kept:
            parts.append(counted(len(self.kept), "frame kept its own committed mask",
                                 "frames kept their own committed mask"))
        if self.reviewed:
            parts.append(counted(len(self.reviewed), "reviewed frame left alone", "reviewed frames left alone"))
        if self.missing:
            parts.append(counted(len(self.missing), "frame without a mask", "frames without a mask"))
        if self.refused:
            parts.append(counted(len(self.refused), "mask refused", "masks refused"))
        return ", ".join(parts)


@dataclass(frozen=True)
class ExportedMasks:
    """The masks an irsam export (app.core.export) holds of a project's frames. Its masks/ are named after the data
    set's frames (<sequence>_<frame>), and its meta.json records each one's sequence and source frame: a project's
    frames take the masks of its source's sequence, by the source frame's name."""

    root: Path  # the data set folder: meta.json and masks/
    sequence: str  # the project's source's sequence in the export
    dataset_stems: dict[str, str]  # project stem -> the data set's name of that frame
    others: int  # frames of other sequences in the export, left out
    truth: GroundTruth  # masks/, read as ground truth is

    def mask(self, stem: str) -> np.ndarray | None:
        """`GroundTruth.mask` of the frame's mask in the export; None for a frame it does not hold."""
        dataset_stem = self.dataset_stems.get(stem)
        return None if dataset_stem is None else self.truth.mask(dataset_stem)

    def has_mask(self, stem: str) -> bool:
        """Whether the export holds a mask file of the frame (`GroundTruth.has_mask`), without reading it."""
        dataset_stem = self.dataset_stems.get(stem)
        return dataset_stem is not None and self.truth.has_mask(dataset_stem)

    def describe(self) -> str:
        """Where the masks came from, for the import's summary."""
        others = (f"; its {counted(self.others, 'frame', 'frames')} of other sequences left out" if self.others
                  else "")
        return (f"an irsam export: its frames of sequence {self.sequence!r}, this project's source, matched to the "
                f"project's frames by the source frame names {self.root / 'meta.json'} records{others}")


def exported_masks(project: ReviewProject, folder: str | os.PathLike) -> ExportedMasks | None:
    """The masks of `project`'s frames in the irsam export that `folder` is (its data set folder, holding meta.json
    and masks/) or whose masks/ folder it is; None for a folder that is neither (a folder of masks named after the
    frames). LabelImportError when the export's meta.json cannot be read, and when the export holds no sequence of
    the project's source (`sequence_of_this_source`), or none of that sequence's frames is one of the project's: its
    masks are of other frames."""
    from app.core.export import EXPORT_FORMAT, checked_meta, sequence_of_this_source

    folder = Path(folder)
    roots = (folder, folder.parent) if folder.name == "masks" else (folder,)
    root = next((r for r in roots if (r / "meta.json").is_file() and (r / "masks").is_dir()), None)
    if root is None:
        return None
    meta_path = root / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
            return None  # another tool's meta.json
        records = checked_meta(meta)["frames"]
    except (OSError, ValueError) as e:
        raise LabelImportError(f"{meta_path}, which tells the frames of the irsam export {root} apart, is unreadable "
                               f"({e}); nothing was committed") from e
    sequence = sequence_of_this_source(records, project)
    if sequence is None:
        sources: dict[str, set] = {}
        for record in records.values():
            sources.setdefault(record.get("sequence"), set()).add(record.get("source"))
        held = [f"{name!r} (from {', '.join(sorted(str(s) for s in paths))})" for name, paths in sources.items()]
        which = (f"sequence {held[0]}, not of" if len(held) == 1
                 else f"sequences {name_some(held, 3)}, none of them")
        raise LabelImportError(f"{root} is an irsam export of {which} this project's source {project.source_path}: "
                               "its masks are of other frames. Nothing was committed: import from an export of this "
                               "source, or from a folder of masks named after the project's frames")
    stems = set(project.stems)
    of_sequence = {name: record.get("source_stem") for name, record in records.items()
                   if record.get("sequence") == sequence}
    dataset_stems = {stem: name for name, stem in of_sequence.items() if stem in stems}
    if not dataset_stems:
        raise LabelImportError(f"{root} holds sequence {sequence!r}, of this project's source, but none of its "
                               f"{counted(len(of_sequence), 'frame', 'frames')} is named after one of the project's "
                               f"frames in {meta_path} (the source's frames were renamed since?); nothing was "
                               "committed")
    return ExportedMasks(root, sequence, dataset_stems, len(records) - len(of_sequence),
                         GroundTruth(root / "masks", None))


def import_labels(
    project: ReviewProject,
    read_mask: Callable[[str], np.ndarray | None],
    stems: Sequence[str] | None = None,
    replace: bool = False,
    cancelled: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
    frame_sha1_of: Callable[[str], str] | None = None,
    source_path: str | os.PathLike | None = None,
    has_mask: Callable[[str], bool] | None = None,
) -> LabelImportReport:
    """Commit `read_mask(stem)` (bool, frame-sized; None: no mask) for each of `stems` (default: every frame).
    A reviewed frame is left alone, and counted in the report's `reviewed` when it has a mask: `has_mask(stem)`
    tells, without reading it (`GroundTruth.has_mask`, `ExportedMasks.has_mask`); without `has_mask`, `read_mask` reads it.

    Each commit records the `frame_digest` of the frame it is committed over: `frame_sha1_of(stem)` when given;
    else, when the project's `frame_sha1_of` is set (the app's session: it reads the view's frame cache), each
    frame is read from a source of its own opened on `source_path` (default: the project's source) without
    read-ahead, and only when that cannot be opened through the project's `frame_sha1_of`; else none is recorded.

    A mask that cannot be read, is unusable (`read_mask` raises UnusableMask: such as a ground-truth mask whose
    nonzero pixels are all interpolated, which would commit an empty mask), has another size than its frame, or
    would be committed over a frame that cannot be read now (when fingerprints are recorded) is refused with the
    reason; the rest go on.
    `cancelled` stops between frames (what was committed stays, each frame whole; the report's `stopped` says that
    frames were left, none when it is set during the last one); `progress(done, total)` after each frame.
    LabelImportError, before anything is committed, for `replace` where the project's review statuses could not
    be read (`unknown_statuses`): the frames the analyst reviewed would read as unreviewed, and lose their masks."""
    unknown = unknown_statuses(project) if replace else None
    if unknown is not None:
        raise LabelImportError(unknown_statuses_message(
            *unknown, "replacing committed masks would replace those of frames already reviewed (corrected)"))
    report = LabelImportReport()
    stems = project.stems if stems is None else list(stems)
    with contextlib.ExitStack() as stack:
        if frame_sha1_of is None and project.frame_sha1_of is not None:
            frame_sha1_of = _own_reader(stack, source_path or project.source_path) or project.frame_sha1_of
        for done, stem in enumerate(stems, start=1):
            if cancelled is not None and cancelled.is_set():
                report.stopped = True
                break
            _import_one(project, stem, read_mask, replace, report, frame_sha1_of, has_mask)
            if progress is not None:
                progress(done, len(stems))
    return report


def frame_sha1_reader(source) -> Callable[[str], str]:
    """stem -> `frame_digest` of that frame of `source` (a FrameSource); FrameReadError for a frame the source lacks
    or cannot read."""
    index = {stem: i for i, stem in enumerate(source.stems)}

    def sha1_of(stem: str) -> str:
        if stem not in index:
            raise FrameReadError(source.path, f"the source has no frame {stem!r}")
        return frame_digest(source.frame(index[stem]))

    return sha1_of


def _own_reader(stack: contextlib.ExitStack, path) -> Callable[[str], str] | None:
    """`frame_sha1_reader` over a source opened on `path` without read-ahead (closed with `stack`); None when it
    cannot be opened."""
    try:
        source = stack.enter_context(open_source(path, prefetch=0))
    except (SourceError, OSError):
        return None
    return frame_sha1_reader(source)


def _import_one(project: ReviewProject, stem: str, read_mask, replace: bool, report: LabelImportReport,
                frame_sha1_of: Callable[[str], str] | None, has_mask: Callable[[str], bool] | None) -> None:
    reviewed = project.status(stem) is not ReviewStatus.UNREVIEWED
    if reviewed and has_mask is not None:
        if has_mask(stem):  # (one without a mask is not counted: there was nothing to leave alone)
            report.reviewed.append(stem)
        return
    try:
        reference = read_mask(stem)
    except (UnusableMask, FrameReadError, OSError, ValueError) as e:
        if reviewed:  # a mask of its own is there: left alone all the same
            report.reviewed.append(stem)
        elif isinstance(e, UnusableMask):
            report.refused.append((stem, str(e)))
        else:
            report.refused.append((stem, f"unreadable mask: {getattr(e, 'reason', e)}"))
        return
    if reviewed:
        if reference is not None:  # (one without a mask is not counted: there was nothing to leave alone)
            report.reviewed.append(stem)
        return
    if reference is None:
        report.missing.append(stem)
        return
    reference = np.asarray(reference, dtype=bool)
    shape = project.known_shape(stem)
    if shape is None:
        report.refused.append((stem, "the frame is unreadable, so its size is not known"))
        return
    if reference.shape != shape:
        report.refused.append((stem, f"mask {reference.shape[1]}x{reference.shape[0]} differs from the frame's "
                                     f"{shape[1]}x{shape[0]}"))
        return
    committed = project.committed_mask(stem)
    if committed is not None and np.array_equal(committed, reference):
        report.unchanged.append(stem)
        return
    if committed is not None and not replace:
        report.kept.append(stem)
        return
    frame_sha1 = None
    if frame_sha1_of is not None:  # the fingerprint the commit records: the frame must be read now
        try:
            frame_sha1 = frame_sha1_of(stem)
        except READ_ERRORS as e:
            report.refused.append((stem, f"its frame cannot be read to record which pixels the mask is committed "
                                         f"over: {getattr(e, 'reason', e)}"))
            return
    # a proposal that was exactly the reference is committed all the same
    project.commit_edit(stem, reference, frame_sha1)
    report.imported.append(stem)
