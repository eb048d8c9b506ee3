"""A review project: one folder holding a sequence's proposals, committed masks, statuses and edit history.

The folder format is described in docs/architecture.md ("Review project folder"). Predictions (the
detector's proposal layer) and committed masks (the analyst's layer) live in separate folders, so
re-running detection never touches human work. Every write is atomic; a file that fails to load when the
project is opened is reported in `ReviewProject.damaged` and the rest of the project still opens.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import struct
import threading
import time
import zlib
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence, Union

import cv2
import numpy as np

from app.core.edits import EditHistory, MaskEdit, StaleRedo, make_edit, unchanged_edit
from app.core.frames import FrameReadError, describe_sizes, frame_digest
from app.core.normalization import Normalization
from app.core.provenance import PNG_TEXT_KEY, ProposalOrigin
from app.core.targets import Target, extract_targets
from model.atomic import atomic_create_bytes, atomic_write_bytes, atomic_write_json, atomic_write_npy, atomic_write_png
from model.data import counted, name_some
from model.detectors import FrameResult

PROJECT_FORMAT = "irsam-review-project/1"
REVIEW_FORMAT = "irsam-review-status/1"
META_BACKUP = "project.json.bak"  # the last project.json written, standing in for a damaged one
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DETECTION_COLUMNS = ("frame", "stem", "target_id", "cx", "cy", "area", "x0", "y0", "x1", "y1", "peak_score")
LOCK_FILE = "project.lock"
LOCK_WAIT_S = 10.0  # how long a write waits for another instance's lock before it fails
FRAME_TEXT_KEY = "irsam-frame-sha1"  # PNG tEXt of masks/ and labels/: `frame_digest` of the frame it was made on
WATCHED_LAYERS = ("masks", "labels")  # the folders `changes_on_disk` looks into
# File times come from a coarse clock (a tick of a few ms) behind the real one: a file or folder stamped within
# CLOCK_TICK_NS of a look may change again with the same stamp, and the first look takes a file stamped up to
# CLOCK_TICK_NS before the project was opened as written since
CLOCK_TICK_NS = 100_000_000
FRAMES_NAMED = 5  # frames named in full where a source's frame list no longer fits its project's
OWN_WRITES_KEPT_NS = 10_000_000_000  # how long an instance knows a file it wrote as its own (`changes_on_disk`)


class ReviewStatus(str, Enum):
    UNREVIEWED = "unreviewed"
    ACCEPTED = "accepted"  # right as shown: the committed mask, else the proposal (committed before a re-run)
    CORRECTED = "corrected"  # the committed mask is the truth
    REJECTED = "rejected"  # unusable frame: not exported
    NEGATIVE = "negative"  # confirmed: no target in this frame


@dataclasses.dataclass(frozen=True)
class FrameChange:
    """What of a frame's stored work was made on other pixels than the frame holds now (`ReviewProject.frame_change`):
    the source was replaced on disk by other frames under the same names (a re-recorded clip, frames extracted
    again at another offset). Nothing is flagged where no fingerprint was recorded (projects and files written
    before fingerprints were): unknown is not changed.

    A status set over the current pixels vouches for what the analyst saw then (the committed mask or the
    proposal shown): the frame is reviewed again by setting its status again.
    """

    stem: str
    review: bool = False  # its status (and the mask it exports) was set over other pixels: to be reviewed again
    mask: bool = False  # its committed mask was drawn over other pixels, and no status set since vouches for it
    proposal: bool = False  # its proposal was detected on other pixels (detect it again)
    reviewed: bool = False  # it has a stored status other than unreviewed (kept on disk, whatever the pixels)

    @property
    def changed(self) -> bool:
        """Anything stored about the frame was made on other pixels."""
        return self.review or self.mask or self.proposal

    def affects_export(self, mask_from: str) -> bool:
        """Whether the mask export would take (`app.core.export.label_origin`: "committed", "prediction",
        "negative") was made or reviewed on other pixels: the frame must not be exported with it."""
        if self.reviewed:
            return self.review
        return self.mask if mask_from == "committed" else self.proposal if mask_from == "prediction" else False

    def describe(self) -> str:
        """One sentence for people ("" when nothing changed)."""
        parts = []
        if self.review:
            parts.append("Its status was set on other pixels: review it again (setting its status records the "
                         "new pixels).")
        elif self.mask:
            parts.append("Its committed mask was drawn on other pixels: check it and set its status.")
        if self.proposal:
            parts.append("Its proposal was detected on other pixels: detect it again.")
        if not parts:
            return ""
        return " ".join([f"Frame {self.stem} changed on disk since it was worked on.", *parts])


@dataclasses.dataclass
class DiskChanges:
    """What other instances on a project (another window, an `irsam detect` run) wrote since this one last looked
    (`ReviewProject.changes_on_disk`): the stems whose status, proposal (masks/) or committed mask (labels/)
    changed, and whether the project's normalisation did (`set_normalization`)."""

    statuses: set[str] = dataclasses.field(default_factory=set)
    proposals: set[str] = dataclasses.field(default_factory=set)
    committed: set[str] = dataclasses.field(default_factory=set)
    normalization: bool = False

    @property
    def stems(self) -> set[str]:
        return self.statuses | self.proposals | self.committed

    def __bool__(self) -> bool:
        return bool(self.stems) or self.normalization


class ProjectError(Exception):
    """The folder is not a usable project (missing or unreadable project.json, bad arguments)."""


class ProjectWriteError(OSError):
    """A project file could not be written; the previous version of that file is intact."""


class StatusSetElsewhere(Exception):
    """A status change refused, nothing written: another instance on the project (another window, an `irsam`
    command) set the frame's status since this one last read it (`ReviewProject.set_status`). Theirs stands, and is
    this instance's now; `status` is it."""

    def __init__(self, stem: str, frame: int, status: ReviewStatus, asked: ReviewStatus | None):
        self.stem, self.status = stem, status
        refused = "" if asked is None else f", so it was not marked {asked.value}"
        super().__init__(f"Frame {frame} ({stem}) was marked {status.value} by another window on this project since "
                         f"its status was last read here{refused}: check the frame, then set its status again if it "
                         "is to change")


# one size for every frame (a sequence or a stack), or stem -> size for a folder of frames of several sizes
FrameShapes = Union[tuple[int, int], Mapping[str, tuple[int, int]]]


PROJECT_SUFFIX = ".irsam-review"


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "irsam-review"


def project_dir_for(source_path: Path) -> Path:
    """Where the review project of a plain source lives: beside it as <name>.irsam-review when that exists or
    the source's folder is writable, else under the user's data folder (a name plus a hash of the path).
    Symbolic links are followed: a source reached through a link has the project of the folder it points to."""
    source_path = Path(source_path).resolve()
    sibling = source_path.parent / f"{source_path.name}{PROJECT_SUFFIX}"
    if sibling.exists() or os.access(source_path.parent, os.W_OK):
        return sibling
    digest = hashlib.sha1(str(source_path).encode()).hexdigest()[:10]
    return user_data_dir() / "projects" / f"{source_path.name}-{digest}"


def is_project(path: Path) -> bool:
    """A review project folder: its project.json, or (that lost) its backup."""
    return (Path(path) / "project.json").is_file() or (Path(path) / META_BACKUP).is_file()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ReviewProject:
    """Open with `ReviewProject.open(folder)` or make a new one with `ReviewProject.create(...)`.

    Several instances (windows, `irsam` commands, in one process or several) may hold the same project
    open. Each write of a file that holds more than one thing (review.json, project.json, a frame's
    history) is a read-modify-write under an exclusive lock on project.lock (`_exclusive`): the file is
    read again from disk and only what this write is about is changed, so no instance deletes another's
    statuses, settings or edits; what was read refreshes this instance's copy.
    """

    def __init__(self, folder: Path, meta: dict):
        self.folder = folder
        self._meta = meta
        self.stems: list[str] = list(meta["stems"])
        self._index = {stem: i for i, stem in enumerate(self.stems)}
        self.damaged: list[tuple[Path, str]] = []
        self._lock = threading.RLock()
        self._lock_file: int | None = None  # descriptor of project.lock while `_exclusive` holds it
        self._lock_depth = 0
        self._statuses: dict[str, tuple[ReviewStatus, str, str | None]] = {}  # stem -> status, time, frame_sha1
        # stem -> `frame_digest` of the frame's raw values now, when the project is used beside its source (the
        # session and `irsam detect` set it): each proposal, committed mask and status saved records it, the
        # fingerprint of the pixels it was made on (`frame_change`); it may raise FrameReadError or return None
        self.frame_sha1_of: Callable[[str], str | None] | None = None
        self._review_file: tuple | None = None  # `_file_identity` of review.json when last read or written
        # review.json as last read was damaged (unreadable, or with entries that cannot be read): it is kept aside
        # before a status is written over it (`_keep_damaged_review`)
        self._review_damaged = False
        # statuses review.json held could not be read and no backup stood in for them: those frames count as
        # unreviewed (the file is reported in `damaged`)
        self.statuses_incomplete = False
        # (path, what it says) of each damaged review.json kept aside by an earlier write (`_keep_damaged_review`),
        # found when the project was opened: said at each opening until removed, as it may hold statuses the project
        # lost (`_find_kept_reviews`)
        self.kept_aside: list[tuple[Path, str]] = []
        self._detections: dict[str, list[Target]] = {}
        # frames whose proposal on disk detections.csv may not describe (saved after the csv was written, by a run
        # killed before its flush, or no readable csv): `flush_detections` recomputes them from masks/
        self._unlisted: set[str] = set()
        # stem -> `_file_identity` of masks/<stem>.png as this instance wrote it, for the frames it proposed since
        # its last `flush_detections`: their rows replace those on disk (the other frames' are read from disk)
        self._proposed: dict[str, tuple | None] = {}
        self._csv_file: tuple | None = None  # `_file_identity` of detections.csv when last read or written
        self._histories: dict[str, EditHistory] = {}
        self._history_files: dict[str, tuple | None] = {}  # stem -> `_file_identity` of the history read
        # what `changes_on_disk` last saw: the statuses, and per WATCHED_LAYERS folder its identity and its files'
        # (stem -> `_content_identity`); and this instance's own writes into those folders, which it does not report
        # (no file is listed before the first look: the files changed since the project was opened are those
        # stamped after `_opened_ns`, less a tick of the file system's coarse clock)
        self._statuses_seen = self._statuses
        self._opened_ns = time.time_ns()
        # (a file stamped within a tick of a look may be replaced again with the same stamp, and ext4 gives it back
        # the inode it had before: those stems, the third item, are reported again at the next look)
        self._folders_seen: dict[str, tuple[tuple | None, dict[str, tuple] | None, set[str]]] = {
            layer: (_file_identity(folder / layer), None, set()) for layer in WATCHED_LAYERS}
        self._csv_seen: tuple | None = None  # `_file_identity` of detections.csv at the last look
        self._meta_seen: tuple | None = None  # `_file_identity` of project.json at the last look (None: read it)
        # the same, at the last look for frames another instance added (`_take_up_added_frames`)
        self._stems_seen: tuple | None = None
        self._own_files: dict[tuple[str, str], list[tuple]] = {}  # in the order written
        self._writing: dict[tuple[str, str], int] = {}  # (layer, stem) -> this instance's writes of it under way

    # --- creating and opening -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        folder: str | Path,
        source_path: str | Path,
        source_kind: str,
        stems: Sequence[str],
        frame_shape: FrameShapes,
        normalization: dict,
        detector: dict | None = None,
        exist_ok: bool = False,
        unreadable: Collection[str] = (),
    ) -> "ReviewProject":
        """A new project in `folder` (created if needed).

        `detector` is {name, weights, sha256, config, device} or None. With `exist_ok`, an existing project
        over the same stems, or over the first of them (a folder of frames that grew: `follow_source` adds the
        others; `unreadable`: the source's unreadable frames, see `follows`), is opened instead and its source,
        normalisation and detector are updated (a detection re-run); its predictions, labels, statuses and history
        are kept.
        `frame_shape`: (height, width) of every frame, or stem -> (height, width) when they differ (frames
        unreadable at open may be left out: their size is not known).
        """
        folder = Path(folder)
        stems = [str(s) for s in stems]
        _check_stems(stems)
        if folder.exists() and not folder.is_dir():
            raise ProjectWriteError(f"could not write to {folder}: a file of that name is there, not a folder")
        if is_project(folder):
            if not exist_ok:
                raise ProjectError(f"{folder} already holds a project")
            project = cls.open(folder)
            project._check_sizes(frame_shape)
            project.follow_source(stems, frame_shape, unreadable)
            project._update_meta(lambda meta: meta.update(
                source=_source_meta(source_path, source_kind, frame_shape, meta["source"]),
                normalization=normalization,
                detector=detector,
            ))
            return project
        now = utc_now()
        meta = {
            "format": PROJECT_FORMAT,
            "source": _source_meta(source_path, source_kind, frame_shape),
            "normalization": normalization,
            "detector": detector,
            "stems": stems,
            "created": now,
            "modified": now,
        }
        project = cls(folder, meta)
        project._write_meta(meta)
        return project

    @classmethod
    def open(cls, folder: str | Path) -> "ReviewProject":
        folder = Path(folder)
        meta, damage = read_project_meta(folder)
        project = cls(folder, meta)
        if damage:
            project._report(folder / "project.json", damage)
        project._load_review()
        project._find_kept_reviews()
        project._statuses_seen = project._statuses
        project._load_detections()
        project._csv_seen = project._csv_file
        project._check_labels()
        return project

    # --- metadata -------------------------------------------------------------------------------

    @property
    def source_path(self) -> Path:
        return Path(self._meta["source"]["path"])

    @property
    def source_kind(self) -> str:
        return self._meta["source"]["kind"]

    @property
    def frame_shape(self) -> tuple[int, int] | None:
        """(height, width) of every frame; None when the frames differ in size (see `shape_of`)."""
        shape = self._meta["source"]["frame_shape"]
        return None if shape is None else (int(shape[0]), int(shape[1]))

    def shape_of(self, stem: str) -> tuple[int, int]:
        """(height, width) of one frame; KeyError for a frame whose size is not known (unreadable so far)."""
        shape = self.frame_shape
        if shape is not None:
            return shape
        h, w = self._meta["source"]["frame_shapes"][stem]
        return int(h), int(w)

    def size_text(self) -> str:
        """"320x240", or the range of a mixed-size project's sizes."""
        shapes = [self.frame_shape] if self.frame_shape is not None else self._meta["source"]["frame_shapes"].values()
        return describe_sizes(shapes)

    def _check_sizes(self, frame_shape: FrameShapes) -> None:
        """Refuse a source whose frames no longer fit this project's masks: a frame that now has another
        size and already holds a proposal, a committed mask or an edit history."""
        changed = []
        for stem in self.stems:
            old = self.known_shape(stem)
            new = _shape_in(frame_shape, stem)
            if old is not None and new is not None and old != new and any(
                    self._path(layer, stem, suffix).exists()
                    for layer, suffix in (("masks", ".png"), ("labels", ".png"), ("history", ".npz"))):
                changed.append(f"{stem}: {old[1]}x{old[0]} in the project, {new[1]}x{new[0]} now")
        if changed:
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise ProjectError(f"{self.folder} holds a project over frames of another size ({'; '.join(changed[:3])}"
                               f"{more})")

    def known_shape(self, stem: str) -> tuple[int, int] | None:
        """`shape_of`, or None for a frame whose size is not known."""
        try:
            return self.shape_of(stem)
        except KeyError:
            return None

    @property
    def normalization(self) -> dict:
        return self._meta["normalization"]

    @property
    def detector(self) -> dict | None:
        return self._meta["detector"]

    @property
    def created(self) -> str:
        return self._meta["created"]

    @property
    def name(self) -> str:
        """The project folder's name (export names the sequence after its source: app.core.export)."""
        return self.folder.resolve().name

    def __len__(self) -> int:
        return len(self.stems)

    def index(self, stem: str) -> int:
        return self._index[stem]

    def follow_source(self, stems: Sequence[str], frame_shape: FrameShapes | None = None,
                      unreadable: Collection[str] = ()) -> None:
        """Take the source's frame list `stems` when it holds this project's frames followed by frames added since
        (`follows`): those are added, unreviewed and with no proposal, and the frames' sizes (`frame_shape`, as
        `create` takes it; None: the sizes recorded are kept, and a frame added takes the project's one size) are
        recorded. ProjectError, naming the frames and what to do, when the source no longer holds the project's
        frames as they were (`not_followed`), or a frame holding work now has another size (`_check_sizes`).
        Everything is kept per stem, so only project.json changes."""
        stems = [str(s) for s in stems]
        if stems == self.stems:
            return
        refusal = not_followed(self.stems, stems, self.source_kind, unreadable)
        if refusal is not None:
            raise ProjectError(f"{self.folder} holds a project over different frames: in {self.source_path}, "
                               f"{refusal}")
        if frame_shape is not None:
            self._check_sizes(frame_shape)

        def record(meta: dict) -> None:
            if meta["stems"][:len(stems)] == stems:  # another instance took them up meanwhile (and maybe more)
                return
            meta["stems"] = stems
            if frame_shape is not None:
                meta["source"] = _source_meta(meta["source"]["path"], meta["source"]["kind"], frame_shape,
                                              meta["source"])

        with self._lock:
            self._update_meta(record)
            self.stems = list(self._meta["stems"])
            self._index = {stem: i for i, stem in enumerate(self.stems)}

    def _take_up_added_frames(self) -> bool:
        """With `_exclusive` held: take up the frames another instance added to project.json since this one read it
        (`follow_source`: a window open before the source grew, an `irsam detect` run that followed it), so a
        write of a file that lists every frame (detections.csv) keeps theirs. Whether there were any. project.json is
        read only when it was replaced since the last look (each flush of detections.csv looks)."""
        identity = _settled_identity(self.folder / "project.json")
        if identity is not None and identity == self._stems_seen:
            return False
        self._stems_seen = identity
        meta = self._meta_on_disk()
        stems = meta["stems"]
        if len(stems) <= len(self.stems) or stems[:len(self.stems)] != self.stems:
            return False
        with self._lock:
            self._meta = meta
            self.stems = list(stems)
            self._index = {stem: i for i, stem in enumerate(stems)}
        return True

    def set_normalization(self, normalization: dict) -> None:
        """Store the normalisation chosen for the sequence from now on (existing predictions keep theirs
        until detection runs again). ValueError for one `Normalization.from_dict` cannot read."""
        try:
            Normalization.from_dict(normalization)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"unusable normalisation {normalization!r}: {_why(e)}") from None
        self._update_meta(lambda meta: meta.update(normalization=normalization))

    def _update_meta(self, change) -> None:
        """Write project.json as it is on disk now with `change(meta)` applied, and take that as this
        project's metadata (another instance's changes to other keys are kept). A project.json that cannot
        be read now is replaced by this instance's copy, changed."""
        with self._exclusive():
            meta = self._meta_on_disk()
            change(meta)
            meta["modified"] = utc_now()
            self._write_meta(meta)
            self._meta = meta

    def _write_meta(self, meta: dict) -> None:
        """project.json, and its backup, which stands in for a damaged project.json (`read_project_meta`)."""
        self._write(lambda: atomic_write_json(self.folder / "project.json", meta))
        with contextlib.suppress(OSError):  # brought up to date by the next write
            atomic_write_json(self.folder / META_BACKUP, meta)

    def _meta_on_disk(self) -> dict:
        """project.json as another instance may have written it since; this instance's copy where it is damaged
        (a damaged one, written on, would reach its backup too)."""
        try:
            return _checked_meta(self.folder / "project.json")
        except ProjectError:
            return copy.deepcopy(self._meta)

    # --- predictions (proposal layer) -----------------------------------------------------------

    def save_prediction(self, stem: str, result: FrameResult, save_logits: bool = False,
                        origin: ProposalOrigin | None = None, frame_sha1: str | None = None) -> bool:
        """Write the frame's predicted mask and edge map (and logits) and update its detections in memory.

        `origin` (what made the proposal) is stored in the mask PNG, stamped with the time; see
        `proposal_origin`. So is `frame_sha1`, the `frame_digest` of the raw frame detected (default:
        `frame_sha1_of(stem)`, if set; none recorded without either); see `frame_change`.

        Files of an earlier prediction that this one does not replace (edge, logits) are removed, so the
        folder never mixes two runs. Call `flush_detections()` to write detections.csv.

        An accepted frame without a committed mask was accepted as shown: its prediction, or nothing when
        it had none. That is committed before the prediction is replaced, so a re-run never changes what
        the analyst accepted (nor its export). Returns True when it did so.
        """
        self._check_stem(stem)
        logits = np.asarray(result.logits, dtype=np.float32)
        if logits.shape != self._expected_shape(stem, logits.shape):
            raise ValueError(f"{stem}: logits shape {logits.shape} != frame shape {self.shape_of(stem)}")
        if frame_sha1 is None:
            frame_sha1 = self._current_sha1(stem)
        mask = logits > 0
        edge_path, logits_path = self._path("edges", stem, ".png"), self._path("logits", stem, ".npy")
        # what they hold now: put back if a later write of this proposal fails (a full disk), so the frame never
        # shows an earlier run's mask over this run's edge map or logits
        earlier = {path: self._file_bytes(path) for path in (edge_path, logits_path)}
        try:
            if result.edge is not None:
                edge = np.clip(np.rint(np.asarray(result.edge, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
                self._write(lambda: atomic_write_png(edge_path, edge))
            else:
                self._remove(edge_path)
            if save_logits:
                self._write(lambda: atomic_write_npy(logits_path, logits))
            else:
                self._remove(logits_path)
            # the mask last: its origin says the frame's files are complete (irsam detect --skip-done)
            text = {} if origin is None else {PNG_TEXT_KEY: dataclasses.replace(origin, time=utc_now()).to_text()}
            if frame_sha1 is not None:
                text[FRAME_TEXT_KEY] = frame_sha1
            mask_path = self._path("masks", stem, ".png")
            # the check and the new proposal under the project's lock: an accept (in another thread or instance, the
            # app during a long detect run) comes before the check, or after the new proposal is in place. Not the
            # file lock while no instance ever took it (a fresh `irsam detect` run: no project.lock among its files)
            with self._exclusive() if (self.folder / LOCK_FILE).exists() else self._lock:
                kept_accepted = self._keep_accepted_proposal(stem)
                with self._own_write("masks", stem):
                    self._write(lambda: atomic_write_png(mask_path, mask, text))
        except ProjectWriteError:
            for path, data in earlier.items():
                with contextlib.suppress(ProjectWriteError):  # the first error is the one to report
                    self._put_back(path, data)
            raise
        targets = extract_targets(mask, logits)
        with self._lock:
            self._detections[stem] = targets
            self._proposed[stem] = _file_identity(mask_path)
        return kept_accepted

    def _keep_accepted_proposal(self, stem: str) -> bool:
        """Before the frame's proposal is replaced, under the project's lock: an accepted frame without a committed
        mask commits the proposal it was accepted over (`save_prediction`). Whether it did."""
        self._read_review_if_replaced()  # another instance may have accepted it
        if self.status(stem) is not ReviewStatus.ACCEPTED or self.has_committed_mask(stem):
            return False
        # made on the pixels it was accepted over (else those its proposal was detected on)
        made_on = self.status_frame_sha1(stem) or self.proposal_frame_sha1(stem)
        self._commit_mask(stem, self.working_mask(stem), made_on)
        return True

    def flush_detections(self) -> None:
        """Write detections.csv (atomically): the rows of the frames this instance proposed since its last flush,
        and of those whose proposal the csv did not describe when the project was opened (a run killed before its
        flush, whose frames `irsam detect --skip-done` then skips), recomputed from masks/ and logits/; every other
        frame keeps the rows the csv on disk holds now.

        Several instances may hold the project (the app open while `irsam detect` runs): a csv another instance
        wrote since this one last read or wrote it is read again, and the csv is written under the project's lock
        (`_exclusive`), as review.json is, so no instance writes back its stale rows over those another wrote. A
        frame whose masks/ file another instance replaced after this one's proposal, or saved after the csv on disk
        was written (and never flushed: a run killed), is recomputed from masks/. What was read refreshes this
        instance's detections. Costs a stat per proposal (and a read of the csv when another instance wrote it),
        before the lock is taken when the csv does not change meanwhile."""
        with self._lock:
            unknown = sorted(self._unlisted - self._detections.keys(), key=self._index.__getitem__)
        for stem in unknown:
            self.detections(stem)  # read from masks/ (and logits/): the csv's rows for it were another proposal's
        path = self.folder / "detections.csv"
        if not self._write_detections_csv(path, self._detections_on_disk(path)):
            # another instance's first csv, made meanwhile (or a name there that is no csv, a dangling link):
            # merged with it under the lock
            self._write_detections_csv(path, self._detections_on_disk(path), may_be_first=False)

    def _write_detections_csv(self, path: Path, found: tuple, may_be_first: bool = True) -> bool:
        """`flush_detections`' write, given what `_detections_on_disk` found; False when a new project's first csv
        could not be made because another instance made its own meanwhile (nothing written)."""
        # a new project's first csv, with no lock ever taken on it (a fresh `irsam detect` run): nothing on disk to
        # merge, and no project.lock made among its files; it is only made where no csv is
        first = may_be_first and found[0] is None and not (self.folder / LOCK_FILE).exists()
        with contextlib.nullcontext() if first else self._exclusive(), self._lock:
            if first:
                if _file_identity(path) != found[0]:  # written meanwhile
                    return False
            elif self._take_up_added_frames() or _file_identity(path) != found[0]:
                # frames another instance added (their rows were not read), or the csv written meanwhile
                found = self._detections_on_disk(path)
            identity, on_disk, newer = found
            with self._lock:
                own = {stem for stem, written in self._proposed.items()
                       if _file_identity(self._path("masks", stem, ".png")) == written}
                stale = (set(self._proposed) - own) | (newer - own - self._unlisted)  # masks/ tells
                own |= self._unlisted
                if on_disk is None:  # as this instance last read or wrote it (or no readable csv)
                    rows = dict(self._detections)
                else:
                    rows = {stem: targets for stem, targets in on_disk.items() if stem not in own}
                    rows.update((stem, self._detections[stem]) for stem in own if stem in self._detections)
            for stem in stale:
                rows[stem] = self._targets_on_disk(stem)
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(DETECTION_COLUMNS)
            for stem in sorted(rows, key=self._index.__getitem__):
                for t in rows[stem]:
                    writer.writerow([self._index[stem], stem, t.id, repr(t.cx), repr(t.cy), t.area,
                                     t.x0, t.y0, t.x1, t.y1, repr(t.peak_score)])
            data = buf.getvalue().encode("utf-8")
            if first:
                if not self._write(lambda: atomic_create_bytes(path, data)):
                    return False
            else:
                self._write(lambda: atomic_write_bytes(path, data))
            with self._lock:
                self._csv_file = _file_identity(path)
                self._detections = rows
                self._unlisted.clear()  # each recomputed above (or without a readable mask now)
                self._proposed.clear()
        return True

    def _detections_on_disk(self, path: Path) -> tuple[tuple | None, dict[str, list[Target]] | None, set[str]]:
        """detections.csv's `_file_identity`; its rows when another instance wrote it since this one last read or
        wrote it (None: unchanged, absent or unreadable); and the frames whose masks/ file is newer than it, but
        for those this instance proposed since its last flush (none without a csv: this instance's rows stand)."""
        identity = _file_identity(path)
        if identity is None:
            return None, None, set()
        with self._lock:
            own = set(self._proposed)
        newer = self._proposals_saved_after(identity[1], own)
        if identity == self._csv_file:
            return identity, None, newer
        try:
            rows, _ = self._read_detections_csv(path)
        except (OSError, ValueError, TypeError, KeyError, csv.Error):
            return identity, None, newer  # reported when opened; written whole by this flush
        return identity, rows, newer

    def _targets_on_disk(self, stem: str) -> list[Target]:
        """The frame's targets recomputed from masks/ (and logits/): [] without a readable proposal."""
        mask = self.prediction_mask(stem)
        return [] if mask is None else extract_targets(mask, self.prediction_logits(stem))

    def detections_known(self, stem: str) -> bool:
        """Whether `detections(stem)` is at hand (read from detections.csv or counted before), not to be recomputed
        from masks/."""
        with self._lock:
            return stem in self._detections

    def has_prediction(self, stem: str) -> bool:
        return self._path("masks", stem, ".png").exists()

    def is_predicted(self, stem: str) -> bool:
        """`has_prediction`, without touching the disk for frames detections.csv lists."""
        with self._lock:
            if self._detections.get(stem):
                return True
        return self.has_prediction(stem)

    def prediction_mask(self, stem: str) -> np.ndarray | None:
        """bool (H, W), or None without a prediction."""
        return self.prediction(stem)[0]

    def proposal_origin(self, stem: str) -> ProposalOrigin | None:
        """What made the frame's proposal (`prediction(stem)[1]`), read without decoding the mask."""
        path = self._path("masks", stem, ".png")
        data = self._read_png_bytes(path)
        return None if data is None else self._origin_in(path, data)

    def has_logits(self, stem: str) -> bool:
        return self._path("logits", stem, ".npy").exists()

    def prediction(self, stem: str) -> tuple[np.ndarray | None, ProposalOrigin | None]:
        """The predicted mask (bool (H, W)) and what made it, from one read of the file: (None, None)
        without a prediction; the origin is None for a proposal saved without one (by a version before
        origins were recorded) or with a damaged record (reported)."""
        path = self._path("masks", stem, ".png")
        data = self._read_png_bytes(path)
        if data is None:
            return None, None
        image = self._decode_png(path, data)
        return (None if image is None else image > 0), self._origin_in(path, data)

    def _origin_in(self, path: Path, data: bytes) -> ProposalOrigin | None:
        text = _png_text(data).get(PNG_TEXT_KEY)
        if text is None:
            return None
        try:
            return ProposalOrigin.from_text(text)
        except ValueError as e:
            self._report(path, f"unreadable proposal origin: {e}")
            return None

    def prediction_edge(self, stem: str) -> np.ndarray | None:
        """uint8 (H, W) edge probability * 255, or None."""
        return self._read_png(self._path("edges", stem, ".png"))

    def prediction_logits(self, stem: str) -> np.ndarray | None:
        """float32 (H, W), or None when the run did not save logits."""
        path = self._path("logits", stem, ".npy")
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            self._report(path, f"unreadable logits: {e}")
            return None

    def detections(self, stem: str) -> list[Target]:
        """The predicted targets of a frame ([] without a prediction).

        Frames predicted but missing from detections.csv (a run interrupted before its flush) are
        recomputed from the saved mask and logits.
        """
        self._check_stem(stem)
        with self._lock:
            if stem in self._detections:
                return list(self._detections[stem])
        mask = self.prediction_mask(stem)
        if mask is None:
            return []
        targets = extract_targets(mask, self.prediction_logits(stem))
        with self._lock:
            self._detections[stem] = targets
        return list(targets)

    # --- committed masks (human layer) ----------------------------------------------------------

    def committed_mask(self, stem: str) -> np.ndarray | None:
        """bool (H, W), or None when the analyst has not committed a mask for this frame."""
        image = self._read_png(self._path("labels", stem, ".png"))
        return None if image is None else image > 0

    def has_committed_mask(self, stem: str) -> bool:
        return self._path("labels", stem, ".png").exists()

    def commit_mask(self, stem: str, mask: np.ndarray, frame_sha1: str | None = None) -> None:
        """Save the analyst's mask for a frame (atomically, 0/255 PNG), with the `frame_digest` of the frame it
        was drawn on: `frame_sha1`, else `frame_sha1_of(stem)` (none recorded without either)."""
        self._commit_mask(stem, mask, self._sha1_for(stem, frame_sha1))  # before any lock: it may decode the frame

    def _commit_mask(self, stem: str, mask: np.ndarray, frame_sha1: str | None) -> None:
        mask = np.asarray(mask) > 0
        if mask.shape != self._expected_shape(stem, mask.shape):
            raise ValueError(f"{stem}: mask shape {mask.shape} != frame shape {self.shape_of(stem)}")
        path = self._path("labels", stem, ".png")
        text = None if frame_sha1 is None else {FRAME_TEXT_KEY: frame_sha1}
        with self._own_write("labels", stem):
            self._write(lambda: atomic_write_png(path, mask, text))
        self.damaged = [(p, reason) for p, reason in self.damaged if p != path]

    def shown_mask(self, stem: str) -> np.ndarray:
        """The mask the frame shows as its targets: the committed mask, else the prediction, else all background."""
        for mask in (self.committed_mask(stem), self.prediction_mask(stem)):
            if mask is not None:
                return mask
        return np.zeros(self.shape_of(stem), dtype=bool)

    def working_mask(self, stem: str) -> np.ndarray:
        """The mask the edit tools start from: `shown_mask`, except on a frame marked negative, where it is all
        background: the analyst said the frame has no target, so a target drawn there must not commit the
        proposal's false alarms (or an earlier committed mask) with it. The undo history records each edit
        against `shown_mask`, what is on disk, whatever it started from."""
        if self.status(stem) is ReviewStatus.NEGATIVE:
            return np.zeros(self.shape_of(stem), dtype=bool)
        return self.shown_mask(stem)

    # --- edit history ---------------------------------------------------------------------------

    def history(self, stem: str) -> EditHistory:
        """The frame's undo/redo history as its file holds it (a fresh one if the file is damaged).

        The history is the frame's, not this instance's: it is read again whenever another instance has
        written the file since, and each step is recorded in the file as it is then (`_change_mask`), so
        two instances editing one frame share one history, and undo takes back the frame's last edit,
        whoever made it. That edit's result is the mask on disk, so undoing it never drops another
        instance's later edit unseen.
        """
        self._check_stem(stem)
        path = self._path("history", stem, ".npz")
        identity = _file_identity(path)
        with self._lock:
            if stem not in self._histories or self._history_files.get(stem) != identity:
                history = EditHistory()
                if identity is not None:
                    try:
                        history = EditHistory.from_npz(path)
                    except ValueError as e:
                        self._report(path, str(e))
                self._histories[stem] = history
                self._history_files[stem] = identity
            return self._histories[stem]

    def edit_mask(self, stem: str, new_mask: np.ndarray, frame_sha1: str | None = None,
                  status_before: str | None = None) -> MaskEdit | None:
        """Record the change from the mask shown (`shown_mask`: what is on disk) to `new_mask` as one undoable edit
        (None if no change).
        `frame_sha1`: as `commit_mask`'s; `status_before`: the frame's status, when the edit is to change it (the
        edit keeps it, for undo to give back)."""
        return self._edit_mask(stem, new_mask, self._sha1_for(stem, frame_sha1), status_before)

    def _edit_mask(self, stem: str, new_mask: np.ndarray, frame_sha1: str | None,
                   status_before: str | None = None) -> MaskEdit | None:
        with self._exclusive():
            edit = make_edit(self.shown_mask(stem), new_mask)
            if edit is not None:
                edit = edit.with_status_before(status_before).with_committed_before(self.has_committed_mask(stem))
                self._change_mask(stem, lambda history, mask: history.apply(mask, edit), frame_sha1)
        return edit

    def commit_edit(self, stem: str, new_mask: np.ndarray, frame_sha1: str | None = None,
                    status_before: str | None = None) -> bool:
        """Make `new_mask` the frame's committed mask: one undoable edit from the mask shown (`edit_mask`).

        When it equals the mask shown there is nothing to change, but a frame with no committed mask yet
        (none, or one that cannot be read) showed its proposal (or nothing): that is committed all the same, as an
        undoable step that changes no pixel when the commit changes the frame's status (`status_before` given, a
        tool's), with no step otherwise (the analyst's C). Returns whether the committed mask was written (False: it already was
        `new_mask`). `frame_sha1`: as `commit_mask`'s (found before the project's lock is taken: it may decode
        the frame); `status_before`: as `edit_mask`'s.
        """
        frame_sha1 = self._sha1_for(stem, frame_sha1)
        with self._exclusive():
            if self._edit_mask(stem, new_mask, frame_sha1, status_before) is None:
                if self.committed_mask(stem) is not None:
                    return False
                if status_before is not None and not self.has_committed_mask(stem):
                    # a tool committing the proposal as it is, which marks the frame corrected: one undo step
                    edit = unchanged_edit().with_status_before(status_before).with_committed_before(False)
                    self._change_mask(stem, lambda history, mask: history.apply(mask, edit), frame_sha1)
                else:
                    self._commit_mask(stem, new_mask, frame_sha1)
        return True

    def keep_status_on_undo(self, stem: str) -> None:
        """The analyst set the frame's status: it stands, so undoing or redoing its edits no longer gives back the
        statuses they changed (`MaskEdit.status_before` dropped from its history). A failed write leaves the
        history as it was: its undo may then give back a status, as it would have before."""
        path = self._path("history", stem, ".npz")
        with self._exclusive():
            history = self.history(stem)
            if not history.drop_statuses():
                return
            try:
                self._write(lambda: history.to_npz(path))
            except ProjectWriteError:
                del self._histories[stem]  # read again from its file
                return
            self._history_files[stem] = _file_identity(path)

    def undo(self, stem: str) -> np.ndarray:
        """Take back the frame's last edit: the committed mask it started from, or none when it was the first (the
        frame shows its proposal again). Returns the mask shown."""
        return self._change_mask(stem, EditHistory.undo, self._sha1_for(stem, None), step="undo")

    def redo(self, stem: str) -> np.ndarray:
        """Make the frame's last undone edit again; returns the mask shown. StaleRedo, nothing changed, when the mask
        shown no longer holds, in the edit's box, the pixels the edit was undone from (`MaskEdit.fits`): an undo took
        the frame's first edit back, so it showed its proposal, and a re-run replaced that proposal with one that
        differs there. Where the new proposal is the same there, the edit is made over it, as over the old one."""
        try:
            return self._change_mask(stem, EditHistory.redo, self._sha1_for(stem, None), step="redo")
        except StaleRedo:
            raise StaleRedo(f"Frame {self.index(stem) + 1} ({stem}): redo refused: where the edit would change it, "
                            "the mask shown is no longer the one the edit was undone from (a new proposal replaced the "
                            "one the undo went back to); redone, the edit would paste pieces of the old mask into the "
                            "new one. Draw the change again on the mask shown.") from None

    def _undoes_to_no_committed_mask(self, stem: str, edit: MaskEdit, mask: np.ndarray) -> bool:
        """Whether undoing `edit` (giving `mask`) leaves the frame as it was before it: no committed mask, its proposal
        shown. Only when the frame had none (and the analyst has set no status since: `EditHistory.drop_statuses`),
        and `mask` is the proposal now: after a re-run replaced it, a copy of the proposal undone to is committed, as
        that is what the frame showed (and was accepted over)."""
        if edit.committed_before:
            return False
        proposal = self.prediction_mask(stem)
        if proposal is None:
            proposal = np.zeros(self.shape_of(stem), dtype=bool)
        return np.array_equal(mask, proposal)

    def _sha1_for(self, stem: str, frame_sha1: str | None) -> str | None:
        """The fingerprint a commit of the frame records: `frame_sha1`, else `frame_sha1_of(stem)`. Called before
        the project's lock is taken, as it may decode the frame while other instances wait."""
        self._check_stem(stem)
        return frame_sha1 if frame_sha1 is not None else self._current_sha1(stem)

    def _change_mask(self, stem: str, change, frame_sha1: str | None, step: str | None = None) -> np.ndarray:
        """`change(history, working mask)` (which records the step in the frame's history and returns the
        new mask) applied to the history and mask on disk, under the project's file lock, and saved: the
        history file and the committed mask (recording `frame_sha1`), or, undoing (`step` "undo") an edit made when
        there was none, its removal. Returns the new mask shown.

        A failed save leaves the frame as it was before the step: its history file and committed mask on disk,
        and its history in memory (read again from the file): the file written first is put back when the second
        write fails. A new edit writes its history first, an undo or redo (`step`) its mask first, so that after a
        crash between the two writes (or a failed second write whose first cannot be put back either) the history
        is behind the mask, never ahead of it: the history's next undo (or redo) then repeats what the mask on disk
        already shows, and changes nothing.
        """
        path, mask_path = self._path("history", stem, ".npz"), self._path("labels", stem, ".png")
        with self._exclusive():  # a detection run or another instance may change this frame meanwhile
            saved_history = self._file_bytes(path)
            saved_mask = self._file_bytes(mask_path) if step is not None else None  # an undo or redo puts it back
            history = self.history(stem)
            mask = change(history, self.shown_mask(stem))
            uncommit = step == "undo" and self._undoes_to_no_committed_mask(stem, history.next_redo(), mask)

            def write_history() -> None:
                self._write(lambda: history.to_npz(path))
                self._history_files[stem] = _file_identity(path)

            aside = mask_path.with_name(f".{stem}.undone")  # a removed committed mask, until its history is written

            def write_mask() -> None:
                if uncommit:
                    with self._own_write("labels", stem):
                        self._write(lambda: os.replace(mask_path, aside))
                    self.damaged = [(p, reason) for p, reason in self.damaged if p != mask_path]
                else:
                    self._commit_mask(stem, mask, frame_sha1)

            def put_back_mask() -> None:
                with self._own_write("labels", stem):
                    if uncommit:
                        self._write(lambda: os.replace(aside, mask_path))
                    else:
                        self._put_back(mask_path, saved_mask)

            first, second, put_back_first = ((write_history, write_mask, lambda: self._put_back(path, saved_history))
                                             if step is None else (write_mask, write_history, put_back_mask))
            try:
                first()
            except ProjectWriteError:
                del self._histories[stem]  # read again from its file, unchanged
                raise
            try:
                second()
            except ProjectWriteError:
                with contextlib.suppress(ProjectWriteError):  # the second write's error is the one to report
                    put_back_first()
                del self._histories[stem]
                raise
            if uncommit:
                with contextlib.suppress(OSError):  # a leftover dot file is harmless
                    aside.unlink(missing_ok=True)
        return self.shown_mask(stem) if uncommit else mask

    # --- review status --------------------------------------------------------------------------

    def status(self, stem: str) -> ReviewStatus:
        """The stored status, whatever the frame's pixels now (`frame_change` says whether it was set on these)."""
        self._check_stem(stem)
        entry = self._statuses.get(stem)
        return entry[0] if entry else ReviewStatus.UNREVIEWED

    def set_status(self, stem: str, status: ReviewStatus | str, frame_sha1: str | None = None,
                   seen: ReviewStatus | str | None = None, over_others: bool = False) -> None:
        """Set a frame's status and write review.json (and its backup) at once.

        A status other than unreviewed records the `frame_digest` of the frame it was set over: `frame_sha1`,
        else `frame_sha1_of(stem)` (none without either); see `frame_change`.

        The statuses are read again from disk first and only this frame's is changed: statuses another
        instance set meanwhile are kept, and this instance's statuses of the other frames become theirs.
        This frame's is not written over blindly: when another instance set it since (it is no longer `seen`, the
        status the caller showed, by default the one this instance last read or wrote), the change is refused with
        StatusSetElsewhere and theirs is this instance's from now on, unless it already is `status` (both agree) or
        `over_others` (the caller replaces whatever was set: an edit whose save failed, saved now, as its mask
        replaces theirs). A failed write changes nothing in memory.
        """
        self._check_stem(stem)
        status = ReviewStatus(status)
        if status is ReviewStatus.UNREVIEWED:
            frame_sha1 = None  # no verdict on any pixels
        elif frame_sha1 is None:
            frame_sha1 = self._current_sha1(stem)  # before the lock: it may decode the frame
        with self._exclusive():
            known = self.status(stem) if seen is None else ReviewStatus(seen)
            self._read_review_if_replaced()  # read again only when another instance wrote it since
            if not over_others:
                self._refuse_if_set_elsewhere(stem, known, status)
            statuses = {**self._statuses, stem: (status, utc_now(), frame_sha1)}
            document = {"format": REVIEW_FORMAT,
                        "frames": {stem: _review_entry(*entry) for stem, entry in statuses.items()}}
            if self._review_damaged:
                self._keep_damaged_review()
            self._write(lambda: atomic_write_json(self.folder / "review.json", document))
            self._statuses, self._review_file = statuses, _file_identity(self.folder / "review.json")
            self._statuses_seen = {**self._statuses_seen, stem: statuses[stem]}  # not another instance's
            # the backup only stands in for a damaged review.json: the status is set without it, and the next
            # status written brings it up to date
            with contextlib.suppress(OSError):
                atomic_write_json(self.folder / "review.json.bak", document)

    def check_status(self, stem: str, seen: ReviewStatus | str, asked: ReviewStatus | str | None = None) -> None:
        """StatusSetElsewhere when another instance set the frame's status since the caller showed it as `seen`
        (review.json read again when written since), to another than `asked`: an edit, which marks the frame
        corrected, must not write over it unseen. Theirs is this instance's from then on."""
        self._check_stem(stem)
        with self._lock:
            self._read_review_if_replaced()
            self._refuse_if_set_elsewhere(stem, ReviewStatus(seen), None if asked is None else ReviewStatus(asked))

    def _refuse_if_set_elsewhere(self, stem: str, known: ReviewStatus, asked: ReviewStatus | None) -> None:
        """StatusSetElsewhere when the frame's status as just read is neither `known` nor `asked`."""
        now = self.status(stem)
        if now is not known and now is not asked:
            raise StatusSetElsewhere(stem, self.index(stem) + 1, now, asked)

    # --- other instances' writes ----------------------------------------------------------------

    def changes_on_disk(self) -> DiskChanges:
        """What other instances on the project (another window, an `irsam detect` run) wrote since this one last
        looked: the frames whose status, proposal (masks/) or committed mask (labels/) changed, a file added,
        replaced or removed; and whether project.json holds another normalisation (another window chose it), which
        becomes this project's `normalization`. This instance's own writes are not reported, but other instances' statuses it took up
        with its own status changes are. The statuses are read again (as every status change does) and the
        proposals found changed are read again on demand (`detections`).

        The first look lists the folders (call it once when the project is opened to start from there): it reports
        the files written since the project was opened, but not a file removed meanwhile. Costs a stat of
        review.json and of the two folders when nothing changed, and a stat per file of a folder that changed
        (about 90 ms for 10,000 files on the 2-core machine)."""
        with self._lock:
            self._read_review_if_replaced()
            now, seen = self._statuses, self._statuses_seen
            statuses = set() if now is seen else {stem for stem in now.keys() | seen.keys()
                                                  if now.get(stem) != seen.get(stem)}
            self._statuses_seen = now
        found: dict[str, set[str]] = {}
        replaced: set[str] = set()  # masks/ files that are not those the proposals known here were read from
        for layer in WATCHED_LAYERS:
            seen_identity, seen_files, seen_recent = self._folders_seen[layer]
            if seen_files is not None and _file_identity(self.folder / layer) == seen_identity:
                found[layer] = set()
                continue
            identity, files, stamps, recent = self._folder_files(layer)
            with self._lock:
                own = {stem for (of, stem), written in self._own_files.items()
                       if of == layer and _is_own(files.get(stem), written)}
                # what this instance wrote is known as its own for a while: a look may list an earlier write of the
                # file, or the next may come before the rename
                old = time.time_ns() - OWN_WRITES_KEPT_NS
                for key in [key for key in self._own_files if key[0] == layer]:
                    self._own_files[key] = [written for written in self._own_files[key] if written[1] >= old]
                    if not self._own_files[key]:
                        del self._own_files[key]
                writing = {stem for of, stem in self._writing if of == layer}  # its file may be renamed in any moment
            own |= writing
            recent |= writing
            if seen_files is None:  # the first look
                since = self._opened_ns - CLOCK_TICK_NS
                differs = {stem for stem, stamp in stamps.items() if stamp >= since}
            else:
                differs = {stem for stem in files.keys() | seen_files.keys() if files.get(stem) != seen_files.get(stem)}
            found[layer] = (differs | seen_recent) - own
            if layer == "masks":  # (opening read detections.csv: a file stamped before it may be the one it read)
                replaced = differs - own if seen_files is not None else {
                    stem for stem in differs - own if stamps[stem] >= self._opened_ns}
            self._folders_seen[layer] = (identity, files, recent)
        with self._lock:
            for stem in replaced:
                self._detections.pop(stem, None)  # another proposal's rows: recomputed from masks/ on demand
        found["masks"] |= self._take_up_detections_csv()
        return DiskChanges(statuses, found["masks"], found["labels"], self._take_up_normalization())

    def _take_up_normalization(self) -> bool:
        """When another instance stored another normalisation in project.json since the last look, take it up as
        this project's; whether it did. project.json is read only when it was replaced since."""
        path = self.folder / "project.json"
        identity = _settled_identity(path)
        if identity is not None and identity == self._meta_seen:
            return False
        self._meta_seen = identity
        try:
            normalization = _checked_meta(path)["normalization"]
        except ProjectError:
            return False  # (a damaged one: this instance's copy stands)
        with self._lock:
            if normalization == self._meta["normalization"]:
                return False
            self._meta = {**self._meta, "normalization": normalization}
        return True

    def _take_up_detections_csv(self) -> set[str]:
        """When another instance wrote detections.csv since the last look (an `irsam detect` run at its end), its
        rows become the targets of the frames whose masks/ file it describes (their peak scores need the logits
        the run may not have kept); returns the frames whose targets changed so."""
        path = self.folder / "detections.csv"
        identity = _file_identity(path)
        if identity == self._csv_seen:
            return set()
        self._csv_seen = identity
        if identity is None or identity == self._csv_file:  # this instance's own
            return set()
        try:
            rows, written = self._read_detections_csv(path)
        except (OSError, ValueError, TypeError, KeyError, csv.Error):
            return set()  # recomputed from masks/ on demand, as the csv cannot be read
        changed = set()
        files = self._folders_seen["masks"][1] or {}
        with self._lock:
            for stem, mask_file in files.items():
                if stem in self._proposed or written is None or mask_file[1] > written:
                    continue  # this instance's proposal, or one saved after the csv: masks/ tells
                targets = rows.get(stem, [])
                if repr(self._detections.get(stem)) != repr(targets):  # (a NaN peak score is not equal to itself)
                    self._detections[stem] = targets
                    changed.add(stem)
        return changed

    def _folder_files(self, layer: str) -> tuple[tuple | None, dict[str, tuple], dict[str, int], set[str]]:
        """A WATCHED_LAYERS folder's `_file_identity` (taken first: a file written meanwhile makes the next look
        list the folder again; None when stamped within CLOCK_TICK_NS, as it may change again with that stamp);
        stem -> `_content_identity` of each of its frames' PNG files; stem -> the file's last stamp (modified or
        changed, ns); and the stems of those stamped within CLOCK_TICK_NS."""
        folder = self.folder / layer
        looked = time.time_ns()
        identity, files, stamps, recent = _file_identity(folder), {}, {}, set()
        if identity is not None and looked - max(identity[1:3]) < CLOCK_TICK_NS:
            identity = None
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return identity, files, stamps, recent
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix != ".png" or stem not in self._index:
                continue  # an atomic write's temporary file, or another file
            try:
                st = entry.stat()
            except OSError:
                continue  # removed meanwhile
            files[stem] = _content_identity(st)
            stamps[stem] = max(st.st_mtime_ns, st.st_ctime_ns)
            if looked - stamps[stem] < CLOCK_TICK_NS:
                recent.add(stem)
        return identity, files, stamps, recent

    @contextlib.contextmanager
    def _own_write(self, layer: str, stem: str):
        """Around this instance's write (or removal) of masks/ or labels/<stem>.png: a look meanwhile takes the file
        as its own (the rename may come at any moment), and afterwards the file written (or its absence) is known as
        this instance's."""
        key = (layer, stem)
        with self._lock:
            self._writing[key] = self._writing.get(key, 0) + 1
        try:
            yield
            # the file written, or its absence (this instance removed it), with when that was
            written = content_stamp(self._path(layer, stem, ".png")) or (None, time.time_ns(), None)
            with self._lock:
                self._own_files.setdefault(key, []).append(written)
        finally:
            with self._lock:
                self._writing[key] -= 1
                if not self._writing[key]:
                    del self._writing[key]

    # --- frame fingerprints ---------------------------------------------------------------------

    def status_frame_sha1(self, stem: str) -> str | None:
        """`frame_digest` of the frame the stored status was set over; None when not recorded (unreviewed, or
        set before fingerprints were recorded or without the frame)."""
        self._check_stem(stem)
        entry = self._statuses.get(stem)
        return entry[2] if entry else None

    def committed_frame_sha1(self, stem: str) -> str | None:
        """`frame_digest` of the frame the committed mask was drawn on (labels/<stem>.png's text), or None."""
        return self._frame_sha1_in(self._path("labels", stem, ".png"))

    def proposal_frame_sha1(self, stem: str) -> str | None:
        """`frame_digest` of the frame the proposal was detected on (masks/<stem>.png's text), or None."""
        return self._frame_sha1_in(self._path("masks", stem, ".png"))

    def _frame_sha1_in(self, path: Path) -> str | None:
        data = self._read_png_bytes(path)  # the chunks only: nothing decoded
        return None if data is None else _png_text(data).get(FRAME_TEXT_KEY)

    def recorded_frame_sha1s(self, stem: str) -> tuple[str | None, str | None, str | None]:
        """(status's, committed mask's, proposal's) `frame_digest`s; all None for a frame never touched since
        fingerprints were recorded: nothing about it can be found changed, and it need not be read."""
        return self.status_frame_sha1(stem), self.committed_frame_sha1(stem), self.proposal_frame_sha1(stem)

    def frame_change(self, stem: str, frame: np.ndarray | str,
                     recorded: tuple[str | None, str | None, str | None] | None = None) -> FrameChange:
        """What of the frame's stored work was made on other pixels than `frame` (its raw values now, or their
        `frame_digest`): see `FrameChange`. Reads two small PNG headers and hashes `frame` (about 0.3 ms for
        640x512 uint16); `recorded` (`recorded_frame_sha1s`) spares the reads when the caller has it."""
        current = frame if isinstance(frame, str) else frame_digest(np.asarray(frame))
        status_sha1, committed_sha1, proposal_sha1 = recorded or self.recorded_frame_sha1s(stem)
        status = self.status(stem)
        reviewed = status is not ReviewStatus.UNREVIEWED
        vouched = reviewed and status_sha1 == current  # set over these pixels: what was shown then stands
        mask = committed_sha1 is not None and committed_sha1 != current and not vouched
        proposal = proposal_sha1 is not None and proposal_sha1 != current
        if proposal and vouched and committed_sha1 is None and not self.has_committed_mask(stem):
            proposal = False  # accepted as proposed over these pixels: the proposal is what was vouched for
        if not reviewed:
            review = False
        elif status_sha1 is not None:
            review = status_sha1 != current
        elif committed_sha1 is not None or self.has_committed_mask(stem):
            review = mask  # a status from before fingerprints: the mask it exports tells
        else:
            review = status is ReviewStatus.ACCEPTED and proposal  # accepted as proposed
        return FrameChange(stem, review=review, mask=mask, proposal=proposal, reviewed=reviewed)

    def current_frame_sha1(self, stem: str) -> str | None:
        """The `frame_digest` a commit of the frame records now (`frame_sha1_of`), found before a caller takes the
        project's lock (`holding`): it may decode the frame."""
        return self._sha1_for(stem, None)

    def _current_sha1(self, stem: str) -> str | None:
        """`frame_sha1_of(stem)`; None without it or a readable frame."""
        sha1_of = self.frame_sha1_of
        if sha1_of is None:
            return None
        try:
            return sha1_of(stem)
        except (FrameReadError, OSError, KeyError, IndexError, ValueError):
            return None

    # --- loading --------------------------------------------------------------------------------

    def _load_review(self) -> None:
        self._review_file = _file_identity(self.folder / "review.json")
        self._statuses = self._read_review(otherwise={})

    def _read_review_if_replaced(self) -> None:
        """Read the statuses again when review.json was written since this instance last read or wrote it."""
        identity = _file_identity(self.folder / "review.json")
        if identity != self._review_file:
            self._review_file = identity
            self._statuses = self._read_review(otherwise=self._statuses)

    def _read_review(self, otherwise: dict[str, tuple[ReviewStatus, str, str | None]]
                     ) -> dict[str, tuple[ReviewStatus, str, str | None]]:
        """The statuses in review.json, else in its backup; a copy of `otherwise` when neither can be read.
        A file is read entry by entry: an entry of review.json that cannot be read takes the backup's entry for its
        frame where that one can be read, and the frames of the others count as unreviewed; the other frames keep
        their statuses. A damaged review.json is reported saying what its backup stood in for, and is kept aside
        before a status is written over it (`_keep_damaged_review`)."""
        review, backup, errors = self.folder / "review.json", self.folder / "review.json.bak", {}
        for path in (review, backup):
            if not path.exists():
                continue
            try:
                statuses, unreadable = self._read_review_file(path)
            except (OSError, ValueError) as e:
                errors[path] = e
                continue
            restored = self._restore_entries(statuses, unreadable, backup) if path == review else set()
            # a copy is kept aside only where it holds what the project lost: entries its backup did not restore
            self._review_damaged = review in errors or (path == review and bool(unreadable.keys() - restored))
            self.statuses_incomplete = bool(unreadable.keys() - restored)
            lost = _unreadable_statuses(unreadable, restored)
            if review in errors:
                self._report(review, f"unreadable review statuses ({errors[review]}); the statuses were restored "
                                     f"from its backup, review.json.bak{'; in that backup, ' + lost if lost else ''}")
            elif lost:
                self._report(path, lost)
            return statuses
        self._review_damaged = review in errors
        self.statuses_incomplete = bool(errors)
        for path, e in errors.items():
            self._report(path, f"unreadable review statuses: {e}")
        return dict(otherwise)

    @staticmethod
    def _read_review_file(path: Path) -> tuple[dict[str, tuple[ReviewStatus, str, str | None]], dict[str, str]]:
        """`_parse_review` of a statuses file; OSError or ValueError when it cannot be read as one."""
        return ReviewProject._parse_review(json.loads(path.read_text(encoding="utf-8")))

    def _restore_entries(self, statuses: dict[str, tuple[ReviewStatus, str, str | None]],
                         unreadable: Mapping[str, str], backup: Path) -> set[str]:
        """Fill in `statuses` the frames of review.json's `unreadable` entries whose entry in the `backup` can be read
        (the file as last written before: an entry damaged since, by hand or on the disk, is whole there); returns
        those frames."""
        if not unreadable or not backup.exists():
            return set()
        try:
            kept, _ = self._read_review_file(backup)
        except (OSError, ValueError):
            return set()  # it stands in for nothing: the frames count as unreviewed, as said
        restored = {stem for stem in unreadable if stem in kept}
        statuses.update((stem, kept[stem]) for stem in restored)
        return restored

    @staticmethod
    def _parse_review(document) -> tuple[dict[str, tuple[ReviewStatus, str, str | None]], dict[str, str]]:
        """Every frame's status, those of frames this project does not list (yet) included: a write keeps them;
        and stem -> why, for each entry that cannot be read. A "frame_sha1" that is not a string (written by hand)
        counts as none. ValueError for a document that is not a statuses file."""
        if not isinstance(document, dict) or document.get("format") != REVIEW_FORMAT:
            raise ValueError(f"not a {REVIEW_FORMAT} file")
        frames = document.get("frames")
        if not isinstance(frames, dict):
            raise ValueError('no "frames" object')
        statuses, unreadable = {}, {}
        for stem, entry in frames.items():
            if not isinstance(entry, dict):
                unreadable[stem] = f"{entry!r} is not an entry"
            elif "time" not in entry:
                unreadable[stem] = 'no "time"'
            else:
                try:
                    status = ReviewStatus(entry.get("status"))
                except ValueError:
                    unreadable[stem] = f"unknown status {entry.get('status')!r}"
                    continue
                sha1 = entry.get("frame_sha1")
                statuses[stem] = (status, str(entry["time"]), sha1 if isinstance(sha1, str) else None)
        return statuses, unreadable

    def _keep_damaged_review(self) -> None:
        """Copy review.json, damaged as last read, aside as review.json.damaged-<UTC time> before a status is written
        over it: the statuses it holds that could not be read are not lost. The copy is named in its report."""
        review = self.folder / "review.json"
        data = self._file_bytes(review)
        if data is not None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            for attempt in range(1, 100):
                kept = review.with_name(f"review.json.damaged-{stamp}" + (f"-{attempt}" if attempt > 1 else ""))
                if self._write(lambda: atomic_create_bytes(kept, data)):
                    break
            else:
                raise ProjectWriteError(f"could not keep the damaged {review} aside, so no status was written")
            with self._lock:
                self.damaged = [(p, f"{reason}; the file as it was is kept as {kept.name}" if p == review else reason)
                                for p, reason in self.damaged]
        self._review_damaged = False

    def _find_kept_reviews(self) -> None:
        """`kept_aside`: each review.json.damaged-* in the folder, with the entries it holds that could not be read and
        whether their frames have a status now. The window said the damage when the project was opened before the
        copy was made; the statuses it lost are said again at each opening until the copy is removed."""
        for path in sorted(self.folder.glob("review.json.damaged-*")):
            try:
                _, unreadable = self._read_review_file(path)
            except (OSError, ValueError) as e:
                self.kept_aside.append((path, f"review.json as it was when found unreadable ({e}), kept aside when "
                                              "a status was written over it: the statuses it held may be missing from "
                                              "the project (those its backup stood in for are not). Check the frames' "
                                              "statuses against it, then delete this file."))
                continue
            lost = [stem for stem in unreadable if stem in self._index and self.status(stem) is ReviewStatus.UNREVIEWED]
            if lost:
                one = len(lost) == 1
                now = (f"{name_some(lost, FRAMES_NAMED)} {'is' if one else 'are'} unreviewed now: set "
                       f"{'its status' if one else 'their statuses'} again (this file shows what "
                       f"{'it' if one else 'they'} held), then delete this file.")
            else:
                now = (f"{'that frame has' if len(unreadable) == 1 else 'each of those frames has'} a status now (from "
                       "the backup, or set since): delete this file once checked.")
            self.kept_aside.append((path, f"review.json as it was when found damaged, kept aside when a status was "
                                          f"written over it: {_unreadable_entries(unreadable)}; {now}"))

    def _load_detections(self) -> None:
        """The targets detections.csv lists, but for frames whose proposal was saved after it was written (a run
        killed before its flush): their rows are an earlier proposal's, so they are recomputed from masks/ on
        demand and at the next `flush_detections` (`_unlisted`), as are all frames without a readable csv.
        Costs a stat per proposal (no read unless written after the csv)."""
        path = self.folder / "detections.csv"
        self._csv_file = _file_identity(path)  # before the read: a csv written meanwhile is read again at a flush
        try:
            detections, written = self._read_detections_csv(path)
        except FileNotFoundError:
            self._unlisted = self._proposals_saved_after(None)
            return
        except (OSError, ValueError, TypeError, KeyError, csv.Error) as e:
            self._report(path, f"unreadable detections (recomputed from masks/ on demand): {e}")
            self._unlisted = self._proposals_saved_after(None)
            return
        self._unlisted = self._proposals_saved_after(written)
        self._detections = {stem: targets for stem, targets in detections.items() if stem not in self._unlisted}

    def _read_detections_csv(self, path: Path) -> tuple[dict[str, list[Target]], int | None]:
        """The targets detections.csv lists per frame of this project, and its st_mtime_ns (None when it cannot
        be stat'ed). FileNotFoundError without the file; OSError, ValueError, ... when it cannot be read."""
        try:
            written = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            raise
        except OSError:
            written = None
        detections: dict[str, list[Target]] = {}
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != DETECTION_COLUMNS:
                raise ValueError(f"columns {reader.fieldnames} != {list(DETECTION_COLUMNS)}")
            for row in reader:
                stem = row["stem"]
                if stem not in self._index:
                    continue
                detections.setdefault(stem, []).append(
                    Target(
                        id=int(row["target_id"]), cx=float(row["cx"]), cy=float(row["cy"]), area=int(row["area"]),
                        x0=int(row["x0"]), y0=int(row["y0"]), x1=int(row["x1"]), y1=int(row["y1"]),
                        peak_score=float(row["peak_score"]),
                    )
                )
        return detections, written

    def _proposals_saved_after(self, written_ns: int | None, skip: set[str] | frozenset = frozenset()) -> set[str]:
        """Frames whose masks/ file was saved after `written_ns` (detections.csv's st_mtime_ns; None: every frame
        with a proposal). A file newer than the csv whose recorded origin time (whole seconds) is before the csv's
        second was copied or touched since, not proposed again: its rows stand (a project copied without its
        times keeps its peak scores)."""
        found: set[str] = set()
        try:
            entries = list(os.scandir(self.folder / "masks"))
        except OSError:
            return found
        written_s = None if written_ns is None else written_ns // 1_000_000_000
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix != ".png" or stem not in self._index or stem in skip:
                continue  # another file (an atomic write's temporary one, hidden), or one the caller knows
            if written_ns is not None:
                try:
                    if entry.stat().st_mtime_ns <= written_ns:
                        continue
                except OSError:
                    continue
                origin = self.proposal_origin(stem)
                if origin is not None and origin.time and _epoch_s(origin.time) < written_s:
                    continue
            found.add(stem)
        return found

    def _check_labels(self) -> None:
        # Chunk structure and CRCs only, no decoding: opening a project with thousands of labels stays fast.
        for stem in self.stems:
            self._read_png_bytes(self._path("labels", stem, ".png"))

    def _read_png_bytes(self, path: Path) -> bytes | None:
        """The file's bytes if it is a complete frame-sized 8-bit gray PNG; None if absent or damaged (reported)."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            self._report(path, f"unreadable: {e}")
            return None
        shape = self.known_shape(path.stem)
        problem = "size not known: the frame was unreadable" if shape is None else _png_problem(data, shape)
        if problem:
            self._report(path, problem)
            return None
        return data

    def _read_png(self, path: Path) -> np.ndarray | None:
        """The image (uint8, frame-sized, single channel), or None if absent or damaged (reported)."""
        data = self._read_png_bytes(path)
        return None if data is None else self._decode_png(path, data)

    def _decode_png(self, path: Path, data: bytes) -> np.ndarray | None:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            self._report(path, "PNG data does not decode")
        return image

    # --- helpers --------------------------------------------------------------------------------

    def _expected_shape(self, stem: str, shape: tuple[int, int]) -> tuple[int, int]:
        """The frame's size; a frame of a mixed-size project unreadable until now takes `shape` and keeps it."""
        known = self.known_shape(stem)
        if known is not None:
            return known

        def record(meta: dict) -> None:
            if meta["source"]["frame_shape"] is None:
                meta["source"]["frame_shapes"].setdefault(stem, [int(shape[0]), int(shape[1])])

        self._update_meta(record)
        return self.shape_of(stem)

    def mask_file_stamps(self, stem: str) -> dict[str, tuple | None]:
        """The identities of a frame's proposal file ("masks") and committed mask file ("labels"; None: absent):
        either changes whenever its file is written, by this instance or another."""
        return {layer: _file_identity(self._path(layer, stem, ".png")) for layer in ("masks", "labels")}

    def _path(self, layer: str, stem: str, suffix: str) -> Path:
        return self.folder / layer / f"{stem}{suffix}"

    def _check_stem(self, stem: str) -> None:
        if stem not in self._index:
            raise KeyError(f"{stem!r} is not a frame of this project")

    def _report(self, path: Path, reason: str) -> None:
        with self._lock:
            if not any(p == path for p, _ in self.damaged):
                self.damaged.append((path, reason))

    @contextlib.contextmanager
    def holding(self):
        """Hold the project against every other writer (threads, instances, processes) for a check-then-write of
        several calls, with the statuses other instances set read again first (`_exclusive`)."""
        with self._exclusive():
            self._read_review_if_replaced()
            yield

    @contextlib.contextmanager
    def _exclusive(self):
        """Hold the project against other threads (its lock) and other processes and instances (an
        exclusive flock on project.lock) for a read-modify-write of its files; reentrant.

        When project.lock cannot be opened or locked (a read-only folder, a file system without locks),
        this goes on unlocked: the write that follows says why it fails, or succeeds as before locks."""
        with self._lock:
            if self._lock_depth == 0:
                self._lock_file = _locked(self.folder / LOCK_FILE)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_file is not None:
                    os.close(self._lock_file)  # releases the flock
                    self._lock_file = None

    def _write(self, write):
        try:
            return write()
        except OSError as e:
            raise ProjectWriteError(f"could not write to {self.folder}: {e}") from e

    def _file_bytes(self, path: Path) -> bytes | None:
        """A file's bytes, kept to put it back if a write after it fails; None when there is no such file."""
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ProjectWriteError(f"could not read {path}, so nothing was changed: {e}") from e

    def _put_back(self, path: Path, data: bytes | None) -> None:
        """Make `path` hold `data` again (`_file_bytes` before a write), or not exist when it was None."""
        if data is None:
            self._remove(path)
        else:
            self._write(lambda: atomic_write_bytes(path, data))

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise ProjectWriteError(f"could not remove {path}: {e}") from e


def _locked(path: Path) -> int | None:
    """A descriptor of `path` (created if missing) holding an exclusive flock on it; None if that fails."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        try:  # another user's lock file, not writable to this one, locks all the same
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:  # another instance writes: for milliseconds, unless it is stuck
            if time.monotonic() > deadline:
                os.close(fd)
                raise ProjectWriteError(f"{path} has been held by another process for {LOCK_WAIT_S:g} s (a window or "
                                        "an irsam command stuck on this project?): nothing was written") from None
            time.sleep(0.01)
        except OSError:  # a file system without locks
            os.close(fd)
            return None


def _is_own(current: tuple | None, written: list[tuple]) -> bool:
    """Whether a file's `_content_identity` (None: absent) is one this instance left it with (`_own_write`, in the
    order written): a file it wrote, or its absence when its last write of it was its removal (another's removal of
    a file this instance wrote again since is not its own)."""
    if current is None:
        return bool(written) and written[-1][0] is None
    return current in written


def _content_identity(st: os.stat_result) -> tuple:
    """What changes when a file is written again (inode, modified time, size), and not when only its permissions or
    owner change (`chmod -R`, a hard-link backup): those change its ctime, not what it holds."""
    return st.st_ino, st.st_mtime_ns, st.st_size


def content_stamp(path: str | os.PathLike) -> tuple | None:
    """`_content_identity` of the file at `path`; None when it cannot be stat'ed."""
    try:
        return _content_identity(os.stat(path))
    except OSError:
        return None


def read_project_meta(folder: Path, restore: bool = True) -> tuple[dict, str]:
    """A project's project.json, checked, and ""; or, where project.json is damaged, its backup (project.json.bak),
    written back as project.json (with `restore`, where it can be), and what was wrong. ProjectError when neither
    can be used, and for a project.json of another format (a later version's: its backup must not replace it)."""
    meta_path = folder / "project.json"
    try:
        return _checked_meta(meta_path), ""
    except ProjectError as e:
        if not meta_path.exists() and not (folder / META_BACKUP).exists():
            raise ProjectError(f"{folder} is not a review project (no project.json)") from None
        later = _later_format(meta_path)
        if later:
            raise ProjectError(f"{meta_path}: a project of a later version ({later}); this version reads "
                               f"{PROJECT_FORMAT}") from None
        damage = str(e) if meta_path.exists() else f"{meta_path} is missing"
        try:
            meta = _checked_meta(folder / META_BACKUP)
        except ProjectError:
            raise e from None
    if not restore:
        return meta, f"{damage}; its backup, {META_BACKUP}, stands in"
    try:
        atomic_write_json(meta_path, meta)
    except OSError:  # read-only media: the backup stands in, and the next write tries again
        return meta, f"{damage}; the project opens from its backup, {META_BACKUP}"
    return meta, f"{damage}; it was restored from its backup, {META_BACKUP}"


def _later_format(path: Path) -> str | None:
    """The format of a project.json a later version of this app wrote ("irsam-review-project/2"), else None."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    stored = meta.get("format") if isinstance(meta, dict) else None
    family, _, version = str(stored).rpartition("/")
    if family == PROJECT_FORMAT.rpartition("/")[0] and version.isdigit() and stored != PROJECT_FORMAT:
        return stored
    return None


def _checked_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ProjectError(f"{path} is unreadable: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != PROJECT_FORMAT:
        raise ProjectError(f"{path}: not a {PROJECT_FORMAT} project")
    try:
        _check_meta_values(meta)
    except KeyError as e:
        raise ProjectError(f"{path} is incomplete: {e}") from None
    except ValueError as e:
        raise ProjectError(f"{path} holds an unusable value: {e}") from None
    return meta


def _check_meta_values(meta: dict) -> None:
    """ValueError naming the field of a project.json that holds a value the project cannot use; KeyError naming one
    missing."""
    if not isinstance(meta["stems"], list):
        raise ValueError(f"stems is {meta['stems']!r}, not a list")
    _check_stems(meta["stems"])
    source = meta["source"]
    if not isinstance(source, dict):
        raise ValueError(f"source is {source!r}, not an object")
    for key in ("path", "kind"):
        if not isinstance(source[key], str) or not source[key]:
            raise ValueError(f"source.{key} is {source[key]!r}, not a non-empty string")
    if source["frame_shape"] is not None:
        if not _is_size(source["frame_shape"]):
            raise ValueError(f"source.frame_shape is {source['frame_shape']!r}, not [height, width]")
    elif not isinstance(source["frame_shapes"], dict):
        raise ValueError(f"source.frame_shapes is {source['frame_shapes']!r}, not an object")
    else:
        for stem, shape in source["frame_shapes"].items():
            if not _is_size(shape):
                raise ValueError(f"source.frame_shapes[{stem!r}] is {shape!r}, not [height, width]")
    try:
        Normalization.from_dict(meta["normalization"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"normalization is {meta['normalization']!r}: {_why(e)}") from None
    if meta["detector"] is not None and not isinstance(meta["detector"], dict):
        raise ValueError(f"detector is {meta['detector']!r}, not an object")


def _is_size(value) -> bool:
    """A [height, width] of positive integers."""
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value))


def _why(error: Exception) -> str:
    """An exception as a clause: a KeyError's bare key said as the field missing."""
    return f"no {error}" if isinstance(error, KeyError) else str(error)


def _unreadable_statuses(unreadable: Mapping[str, str], restored: Collection[str] = ()) -> str:
    """What a report says of review.json entries that cannot be read (stem -> why), those of the frames `restored`
    taken from its backup; "" for none."""
    if not unreadable:
        return ""
    said = _unreadable_entries(unreadable)
    lost = len(unreadable) - len(restored)
    if not restored:
        return f"{said}; {'its frame counts' if lost == 1 else 'those frames count'} as unreviewed"
    if not lost:
        return f"{said}; {'it was' if len(restored) == 1 else 'they were'} restored from its backup, review.json.bak"
    others = "the other frame counts" if lost == 1 else f"the other {lost} frames count"
    taken = name_some([stem for stem in unreadable if stem in restored], FRAMES_NAMED)
    return f"{said}; restored from its backup, review.json.bak: {taken}; {others} as unreviewed"


def _unreadable_entries(unreadable: Mapping[str, str]) -> str:
    """"2 frames' statuses unreadable (f001: no "time", f002: unknown status 'bogus')"."""
    named = [f"{stem}: {why}" for stem, why in unreadable.items()]
    frames = counted(len(named), "frame's status", "frames' statuses")
    return f"{frames} unreadable ({name_some(named, FRAMES_NAMED)})"


def _settled_identity(path: Path) -> tuple | None:
    """`_file_identity` of a file, None when it does not exist or was stamped within CLOCK_TICK_NS (it may be
    replaced again within the same stamp: a look then reads it again at the next look)."""
    identity = _file_identity(path)
    if identity is not None and time.time_ns() - max(identity[1:3]) < CLOCK_TICK_NS:
        return None
    return identity


def _file_identity(path: Path) -> tuple | None:
    """What changes whenever a file is replaced (atomic writes make a new inode); None when it is absent."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # (a folder on its path is a file: not there either)
        return None
    return st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size


def find_changed_frames(project: ReviewProject, source, stems: Sequence[str] | None = None, progress=None,
                        cancelled: threading.Event | None = None) -> dict[str, FrameChange]:
    """Every frame of `stems` (default: all) that holds a fingerprint, read from `source` (a FrameSource) and
    compared (`ReviewProject.frame_change`): stem -> FrameChange, changed or not. Frames without any
    fingerprint are not read (an old project costs nothing), nor are unreadable ones or those not in the source.
    `progress(done, total)` after each frame looked at; `cancelled` stops between frames."""
    index = {stem: i for i, stem in enumerate(source.stems)}
    stems = project.stems if stems is None else list(stems)
    found = {}
    for done, stem in enumerate(stems, start=1):
        if cancelled is not None and cancelled.is_set():
            break
        recorded = project.recorded_frame_sha1s(stem)
        if any(recorded) and stem in index:
            try:
                frame = source.frame(index[stem])
            except FrameReadError:
                frame = None
            if frame is not None:
                found[stem] = project.frame_change(stem, frame, recorded)
        if progress is not None:
            progress(done, len(stems))
    return found


def _epoch_s(when: str) -> float:
    """A `utc_now()` string as seconds since the epoch (inf when unreadable: never taken as older)."""
    try:
        return datetime.fromisoformat(when).timestamp()
    except (TypeError, ValueError):
        return float("inf")


def _review_entry(status: ReviewStatus, when: str, frame_sha1: str | None) -> dict:
    """review.json's record of a frame: {"status", "time"}, and "frame_sha1" when the frame's pixels were known."""
    entry = {"status": status.value, "time": when}
    if frame_sha1 is not None:
        entry["frame_sha1"] = frame_sha1
    return entry


def follows(stored: Sequence[str], current: Sequence[str], kind: str = "folder",
            unreadable: Collection[str] = ()) -> bool:
    """Whether a project over the frames `stored` can follow its source (of `kind`: "folder", "tiff", "image") now
    holding `current`: the same frames; or, for a folder, more frames added after the project's last one (a clip
    that grew). A frame added anywhere else would move the frames after it to other indices (detections.csv's
    frame column, the frame the window reopens on), save for the source's `unreadable` files, which projects made
    before session 11 left out of their frames. A TIFF stack's pages are named by position: a page appended cannot
    be told from a page inserted, which renames every page after it, so a stack is followed only as it was."""
    if list(current) == list(stored):
        return True
    if kind != "folder":
        return False
    stored_set = set(stored)
    k = 0
    for stem in current:
        if k == len(stored):
            break
        if stem == stored[k]:
            k += 1
        elif stem in stored_set or stem not in unreadable:
            return False
    return k == len(stored)


def frame_list_change(stored: Sequence[str], current: Sequence[str]) -> str:
    """How the frame list `current` differs from a project's `stored` one, each kind of change counted and its
    frames named (the first FRAMES_NAMED): "1 frame removed (000005), 3 added (000041, 000042, 000043)", the
    frames added before the last of the project's still there counted apart as inserted; or the frames in
    another order."""
    current = list(current)
    stored_set, current_set = set(stored), set(current)
    removed = [stem for stem in stored if stem not in current_set]
    kept = [stem for stem in current if stem in stored_set]
    last_kept = current.index(kept[-1]) if kept else -1
    inserted = [stem for stem in current[:last_kept] if stem not in stored_set]
    added = [stem for stem in current[last_kept + 1:] if stem not in stored_set]
    changes = []  # (count, what, names)
    if removed:
        changes.append((len(removed), "removed", removed))
    else:
        moved = [new for old, new in zip(stored, kept) if old != new]
        if moved:
            changes.append((len(moved), "in another order", moved))
    if inserted:
        changes.append((len(inserted), "inserted among the project's frames", inserted))
    if added:
        changes.append((len(added), "added", added))
    return ", ".join(f"{counted(n, 'frame', 'frames') if k == 0 else n} {what} ({name_some(names, FRAMES_NAMED)})"
                     for k, (n, what, names) in enumerate(changes))


def not_followed(stored: Sequence[str], current: Sequence[str], kind: str = "folder",
                 unreadable: Collection[str] = ()) -> str | None:
    """Why a project over the frames `stored` cannot follow its source (of `kind`) now holding `current`
    (`follows`): the frames that differ named, and what to do; None when it can."""
    if follows(stored, current, kind, unreadable):
        return None
    stored_set, current_set = set(stored), set(current)
    new = "start a new project over the frames there now (irsam detect into a new --out)"
    positions = "the frame column of detections.csv, the frame the window reopens on"
    if any(stem not in current_set for stem in stored):
        why = ("The project keeps its review work per frame, and would lose that of the frames gone: restore the "
               f"frames as they were and run again, or {new}")
    elif kind != "folder":
        why = ("A TIFF stack's pages are named by their position, so a page added to it cannot be told from a page "
               "inserted, which would put the project's statuses and masks of the pages after it on other pages: "
               f"restore the stack as it was, or {new}")
    elif [stem for stem in current if stem in stored_set] != list(stored):
        why = (f"The project's frames would take other positions ({positions}): restore the frames as they were and "
               f"run again, or {new}")
    else:
        last = stored[-1]
        why = (f"A project takes up only frames added after its last frame ({last}): a frame inserted before it moves "
               f"the frames after it to other positions ({positions}). Move the inserted frames out of the folder (or "
               f"name them to sort after {last}) and run again, or {new}")
    return f"{frame_list_change(stored, current)}. {why}"


def _source_meta(source_path: str | Path, source_kind: str, frame_shape: FrameShapes,
                 previous: dict | None = None) -> dict:
    """project.json's "source": one "frame_shape" [h, w], or "frame_shape" null and "frame_shapes" {stem: [h, w]}
    (sizes `previous` knew and `frame_shape` does not, frames unreadable now, are kept)."""
    meta = {"path": str(Path(source_path).resolve()), "kind": source_kind}
    if not isinstance(frame_shape, Mapping):
        h, w = frame_shape
        return {**meta, "frame_shape": [int(h), int(w)]}
    shapes = {}
    if previous is not None and previous.get("frame_shape") is None:
        shapes.update(previous.get("frame_shapes", {}))
    shapes.update({stem: [int(h), int(w)] for stem, (h, w) in frame_shape.items()})
    return {**meta, "frame_shape": None, "frame_shapes": shapes}


def _shape_in(frame_shape: FrameShapes, stem: str) -> tuple[int, int] | None:
    if not isinstance(frame_shape, Mapping):
        return int(frame_shape[0]), int(frame_shape[1])
    shape = frame_shape.get(stem)
    return None if shape is None else (int(shape[0]), int(shape[1]))


def _check_stems(stems: Sequence[str]) -> None:
    if len(set(stems)) != len(stems):
        raise ValueError("frame stems must be unique")
    for stem in stems:
        if not isinstance(stem, str) or not stem or stem.startswith(".") or any(c in stem for c in '/\\:'):
            raise ValueError(f"unusable frame stem {stem!r} (it names files in the project)")


def _png_chunks(data: bytes):
    """(kind, data, crc_ok) of each complete chunk of a PNG after its signature, in order."""
    position = len(PNG_SIGNATURE)
    while position + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if end > len(data):
            return
        crc_ok = zlib.crc32(data[position + 4 : end - 4]) == struct.unpack(">I", data[end - 4 : end])[0]
        yield kind, data[position + 8 : end - 4], crc_ok
        position = end


def _png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks before the image data of a PNG already checked by `_png_problem`."""
    text = {}
    for kind, body, _ in _png_chunks(data):
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            text[key.decode("latin-1")] = value.decode("latin-1")
    return text


def _png_problem(data: bytes, shape: tuple[int, int]) -> str | None:
    """Why `data` is not a complete 8-bit gray PNG of `shape` (chunk structure and CRCs), or None."""
    if not data.startswith(PNG_SIGNATURE):
        return "not a PNG"
    for k, (kind, body, crc_ok) in enumerate(_png_chunks(data)):
        if not crc_ok:
            return f"corrupt PNG ({kind!r} chunk fails its CRC)"
        if k == 0:
            if kind != b"IHDR":
                return "corrupt PNG (no IHDR)"
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            if (height, width) != shape or depth != 8 or color != 0:
                return f"expected {shape[1]}x{shape[0]} 8-bit gray, got {width}x{height} depth {depth} color {color}"
        if kind == b"IEND":
            return None
    return "truncated PNG (no IEND chunk)"
