"""What the review window has open: a frame source, its normalisation, its review project and ground truth.

Qt-free view-model: the widgets ask it for a frame's raw values and layers and draw them.

Where predictions go when a plain folder/TIFF is opened (not a project): a sibling folder
`<source name>.irsam-review` next to the source when its parent folder is writable, otherwise
`$XDG_DATA_HOME/irsam-review/projects/<source name>-<hash of the path>` (~/.local/share/... by default).
Reopening the same source finds that project again, so earlier results show up at once. The project
is created on the first detection run; committed masks (labels/) are never touched by a run.
"""
from __future__ import annotations

import math
import os
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from app.core.export import source_sequence_name
from app.core.frames import (FrameReadError, FrameSource, GroundTruth, find_ground_truth, frame_digest,
                             lower_thread_priority, open_source)
from app.core.normalization import Normalization, NormalizationRequest, default_for
from app.core.project import (DiskChanges, FrameChange, ProjectError, ReviewProject, ReviewStatus, StatusSetElsewhere,
                              find_changed_frames, follows, is_project, not_followed, project_dir_for,
                              read_project_meta)
from app.core.provenance import ProposalOrigin
from app.core.targets import Target, committed_targets
from model.data import counted, name_some

LAYER_CACHE = 32  # frames whose layer files (masks, edges, probabilities) are kept decoded (about 1.3 MB each at 640x512)
LAYER_PREFETCH = 3  # frames ahead (in the scrubbing direction) whose layer files are read in the background
FILE_LAYERS = ("prediction", "edges", "probability", "committed", "truth")
# read whatever overlays are shown: the frame's targets come from its committed mask where it has one, with the
# scores of the proposal's
TARGET_LAYERS = {"prediction", "committed"}
STATUS_CODES = {s: k for k, s in enumerate(ReviewStatus)}  # unreviewed 0 ... negative 4 (timeline colours)
NOT_RUN, UNREADABLE = -1, -2
COUNTS_PER_LOOK = 32  # targets of other instances' proposals counted per `refresh_from_disk` (1-3 ms each)
PROBABILITY_ZERO_BELOW = -6.25  # 255 * sigmoid(logit) rounds to 0 below this


@dataclass
class FrameLayers:
    """Everything drawn over one frame; None / [] where the layer does not exist for that frame."""

    prediction: np.ndarray | None = None  # bool (H, W)
    committed: np.ndarray | None = None  # bool (H, W)
    edges: np.ndarray | None = None  # uint8 0..255 (edge probability, as stored in the project)
    probability: np.ndarray | None = None  # uint8 0..255 (sigmoid of the saved logits)
    # the targets listed and boxed: those of the committed mask where there is one (`committed_targets`), else
    # `proposals`
    targets: list[Target] = field(default_factory=list)
    proposals: list[Target] = field(default_factory=list)  # the detector's targets of `prediction` (detections.csv)
    origin: ProposalOrigin | None = None  # what made the prediction, when recorded
    truth_mask: np.ndarray | None = None  # bool (H, W)
    truth_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)  # x0, y0, x1, y1 inclusive
    # what of the frame's stored work was made on other pixels (the source replaced on disk under the same names);
    # None without a project or a readable frame (ReviewSession.frame_change)
    change: FrameChange | None = None
    # the identities of the mask files read for `prediction` ("masks") and `committed` ("labels"), taken before
    # they were read (`ReviewProject.mask_file_stamps`); a layer not read has none
    stamps: dict[str, tuple | None] = field(default_factory=dict)


def probability_u8(logits: np.ndarray) -> np.ndarray:
    """sigmoid(logits) * 255 as uint8: a quarter of the float map's memory in the layer cache.

    Only logits above PROBABILITY_ZERO_BELOW are evaluated: IR frames are mostly sky, far below it."""
    out = np.zeros(logits.shape, np.uint8)
    above = logits > PROBABILITY_ZERO_BELOW
    out[above] = np.rint(255 / (1 + np.exp(-logits[above].astype(np.float32))))
    return out


class ReviewSession:
    """Open with `ReviewSession.open(path)`. The window opens with `details=False` and calls
    `load_details()` in a worker thread: reading a big project's masks index, labels and ground truth
    takes seconds on 10k-frame folders, and the first frame should not wait for it."""

    def __init__(self, source: FrameSource, normalization: Normalization, project_dir: Path):
        self.source = source
        self.normalization = normalization
        self.project_dir = project_dir
        self.project: ReviewProject | None = None
        self.ground_truth: GroundTruth | None = None
        # held while load_details reads the project: a project created or changed meanwhile (a status set,
        # an edit) would be replaced by the one it reads
        self._project_lock = threading.Lock()
        self.warnings: list[str] = []
        self.detection_counts = np.full(len(source), NOT_RUN, np.int32)
        for bad in source.bad_frames:  # known at open (an empty file, another size): red on the timeline at once
            if bad.index is not None:
                self.detection_counts[bad.index] = UNREADABLE
        self.status_codes = np.zeros(len(source), np.uint8)
        self._files: OrderedDict[int, dict[str, object]] = OrderedDict()  # index -> layer key -> array/None
        self._file_generation = np.zeros(len(source), np.int64)  # bumped when a frame's files change
        self._files_lock = threading.Lock()
        self._prefetcher: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None  # the shown frame's layer files, beside its frame decode
        self._last_index = 0
        self._stem_index = {stem: i for i, stem in enumerate(source.stems)}
        # index -> FrameChange of the frames found changed on disk so far: each frame shown (`layers`,
        # `frame_and_layers`), each status set here, and every frame `check_frames` read
        self.changed_frames: dict[int, FrameChange] = {}
        self._changes_lock = threading.Lock()
        # index -> (the frame array hashed, its frame_digest): a frame shown again from the source's cache is the
        # same array, and is not hashed again
        self._digests: OrderedDict[int, tuple[weakref.ref, str]] = OrderedDict()
        self._counts_pending: set[int] = set()  # frames another instance proposed, their targets not counted yet
        self._readable_again: set[int] = set()  # frames marked unreadable that read since: `refresh_from_disk` says so
        self._adoption_refused = False  # `project_dir` holds another instance's project over other frames
        # (folder, why) of each project found beside the source that could not be opened: its files are left as
        # they are, and this session's work goes to a new folder beside it
        self.projects_set_aside: list[tuple[Path, str]] = []
        # frames whose layers were not read since `ensure_project` took up a project another instance made meanwhile:
        # the window shows them as they were without it, with no proposal and no committed mask (`masks_not_shown`)
        self._not_shown_since_adoption: set[int] = set()
        # called with a frame's index when a change on it was refused because another instance changed it since it
        # was shown, and it became theirs here: they set its status since `status_codes` were read
        # (`StatusSetElsewhere`), or wrote its proposal or committed mask in the project taken up meanwhile
        # (`masks_not_shown`). The window shows it
        self.on_status_taken_up: Callable[[int], None] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, details: bool = True) -> "ReviewSession":
        """A review project folder, or a source (folder / TIFF stack / image). Raises SourceError/ProjectError."""
        path = Path(path).expanduser()
        meta = read_project_meta(path, restore=False)[0] if is_project(path) else None
        source = open_source(path if meta is None else meta["source"]["path"])
        try:  # a failed open closes the source (a TIFF stack's file and memory map)
            if meta is not None:
                refusal = not_followed(meta["stems"], source.stems, meta["source"]["kind"], source.unreadable_stems)
                if refusal is not None:
                    raise ProjectError(f"{meta['source']['path']} no longer holds the frames of the project {path}: "
                                       f"{refusal}")
                session = cls(source, Normalization.from_dict(meta["normalization"]), path)
            else:
                project_dir = project_dir_for(path)
                normalization = None
                if is_project(project_dir):
                    try:
                        # a peek for the first frame: ReviewProject.open restores and reports a damaged one
                        existing, _ = read_project_meta(project_dir, restore=False)
                        if follows(existing["stems"], source.stems, existing["source"]["kind"],
                                   source.unreadable_stems):
                            normalization = Normalization.from_dict(existing["normalization"])
                    except (ProjectError, ValueError):
                        pass  # reported by load_details
                session = cls(source, normalization or default_for(source), project_dir)
            if details:
                session.load_details()
        except BaseException:
            source.close()
            raise
        return session

    def load_details(self) -> None:
        """Ground truth, the existing project (if any), per-frame detection counts and statuses.
        `ensure_project` (every write) waits for it, so nothing written meanwhile is lost."""
        with self._project_lock:
            self.ground_truth = find_ground_truth(self.source)
            if self.ground_truth is not None and self.ground_truth.boxes_error:
                self.warnings.append(self.ground_truth.boxes_error)
            elif self.ground_truth is not None and self.ground_truth.has_boxes and self.ground_truth.numbering.why:
                numbering = self.ground_truth.numbering  # how its frames were paired with boxes.csv's, when chosen
                self.warnings.append(f"boxes.csv paired by {'position' if numbering.by == 'position' else 'name'}: "
                                     f"{numbering.why}")
            project = self.project  # set when a write created (or reopened) it before this started
            if project is None:
                self._open_project()
            else:
                self._take_project(project)
            self._forget_all_files()  # layers read before the ground truth was known lack it

    def _forget_all_files(self) -> None:
        with self._files_lock:
            self._file_generation += 1  # a read begun before must not be stored
            self._files.clear()

    def _open_project(self, adopt: bool = False) -> bool:
        """Open the project in `project_dir` when there is one (with `_project_lock` held) and make it this
        session's (`_take_project`). When the session opens (`adopt` False), an unusable one is reported in
        `warnings` and this session's project goes to a new folder beside it (opened in turn: the work of an
        earlier session that met the same project). One another instance made since the session opened (`adopt`:
        an `irsam detect` run started later) brings its normalisation too, and one over other frames is left
        alone, and not tried again."""
        if (adopt and self._adoption_refused) or not is_project(self.project_dir):
            return False
        try:
            project = ReviewProject.open(self.project_dir)
            known = set(project.stems)
            unreadable = self.source.unreadable_stems
            project.follow_source(self.source.stems, self.source.size_record(), unreadable)
            # (an unreadable file: a frame the project made before session 11 left out, or said as unreadable)
            added = [stem for stem in project.stems if stem not in known and stem not in unreadable]
            if added:
                self.warnings.append(f"{counted(len(added), 'frame', 'frames')} added to the source since the project "
                                     f"was made, now frames of it (unreviewed): {name_some(added, 5)}")
            normalization = Normalization.from_dict(project.normalization) if adopt else self.normalization
        except (ProjectError, KeyError, TypeError, ValueError) as e:
            if adopt:
                self._adoption_refused = True
                return False
            new = self.project_dir.with_name(self.project_dir.name + "-new")
            self.warnings.append(f"earlier results not used: {e}; this sequence's work is kept in {new}")
            self.projects_set_aside.append((self.project_dir, str(e)))
            self.project_dir = new
            return self._open_project()
        self.normalization = normalization  # (taken up: what its proposals were made with; nothing here changed it)
        self._take_project(project)
        return True

    def _take_project(self, project: ReviewProject) -> None:
        """Its statuses and proposals become this session's, and the layers read before it was known are read
        again."""
        project.frame_sha1_of = self._frame_sha1_of
        self.warnings += [f"{p}: {reason}" for p, reason in project.damaged + project.kept_aside]
        project.changes_on_disk()  # `refresh_from_disk` reports what other instances write from now on
        self._load_project_state(project)
        self.project = project
        self._forget_all_files()  # layers read before the project was known lack its proposals and masks

    def refresh_from_disk(self) -> DiskChanges:
        """Take up what other instances on the project (another window, an `irsam detect` run) wrote since the
        last call (`ReviewProject.changes_on_disk`): the normalisation they chose (`change_normalization`), which
        detection and the other tools use from now on, their statuses, their committed masks, and their proposals,
        whose layers are read again when shown and whose targets are counted for the timeline: those to be read
        from masks/ up to COUNTS_PER_LOOK a call, nearest the frame shown first (a run writing hundreds of frames
        between two calls would otherwise hold the window for seconds). A project another instance created in
        `project_dir` since this session opened is taken up (`_open_project`: every frame it holds counts as
        changed). The frames
        found changed on disk before are checked again. Nothing is done while `load_details` reads the project.
        Returns what changed: the proposals of the frames counted in this call; and, among the statuses, the frames
        marked unreadable that read since (`mark_readable`): the queue's "unreadable" is theirs no more."""
        if not self._project_lock.acquire(blocking=False):
            return DiskChanges()
        readable_again, self._readable_again = {self.stem(i) for i in self._readable_again}, set()
        try:
            project = self.project
            if project is None:
                if not self._open_project(adopt=True):
                    return DiskChanges(readable_again)
                stems, project = self.source.stems, self.project
                return DiskChanges({s for s in stems if project.status(s) is not ReviewStatus.UNREVIEWED}
                                   | readable_again,
                                   {s for s in stems if project.is_predicted(s)},
                                   {s for s in stems if project.has_committed_mask(s)})
            changes = project.changes_on_disk()
            if changes.normalization:  # (one that cannot be used is not taken up: `_checked_meta` reads it)
                self.normalization = Normalization.from_dict(project.normalization)
        finally:
            self._project_lock.release()
        for stem in changes.proposals:
            index = self._stem_index.get(stem)
            if index is not None and not self.is_unreadable(index):
                self._forget_files(index, ("prediction", "edges", "probability"))
                self._counts_pending.add(index)
        for stem in changes.committed:
            if stem in self._stem_index:
                self._forget_files(self._stem_index[stem], ("committed",))
        if changes.statuses:
            self._load_statuses(project)
        known = {i for i in self._counts_pending if project.detections_known(self.stem(i))}  # no mask to read
        counted = sorted(known) + sorted(self._counts_pending - known,
                                         key=lambda i: abs(i - self._last_index))[:COUNTS_PER_LOOK]
        for index in counted:
            self._counts_pending.discard(index)
            stem = self.stem(index)
            self.detection_counts[index] = len(project.detections(stem)) if project.has_prediction(stem) else NOT_RUN
        changes = DiskChanges(changes.statuses | readable_again, {self.stem(i) for i in counted}, changes.committed,
                              changes.normalization)
        with self._changes_lock:
            rechecked = [i for i in self.changed_frames if self.stem(i) in changes.stems]
        for index in rechecked:
            self.frame_change(index)
        return changes

    @property
    def counts_pending(self) -> int:
        """Frames another instance proposed whose targets `refresh_from_disk` has still to count."""
        return len(self._counts_pending)

    @property
    def name(self) -> str:
        return Path(self.source.path).resolve().name  # "." opened from inside the folder has a name too

    @property
    def sequence_name(self) -> str:
        """The name exported frames are prefixed with (app.core.export.source_sequence_name)."""
        return source_sequence_name(self.source.path, self.source.kind)

    def __len__(self) -> int:
        return len(self.source)

    def close(self) -> None:
        for executor in (self._prefetcher, self._reader):
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
        self.source.close()

    def ensure_project(self) -> ReviewProject:
        """The project, created on first use (an existing one over the same frames is reused). Waits while
        `load_details` is reading it."""
        with self._project_lock:
            if self.project is None and self._open_project(adopt=True):  # another instance made it since
                self._not_shown_since_adoption = set(range(len(self.source)))
            elif self.project is None:
                if self._adoption_refused and is_project(self.project_dir):  # over other frames: as load_details
                    self.warnings.append(f"{self.project_dir} holds a project over other frames: this sequence's "
                                         "work goes to a new folder beside it")
                    self.project_dir = self.project_dir.with_name(self.project_dir.name + "-new")
                self.project = ReviewProject.create(
                    self.project_dir, self.source.path, self.source.kind, self.source.stems,
                    self.source.size_record(), self.normalization.to_dict(), None, exist_ok=True,
                    unreadable=self.source.unreadable_stems,
                )
                self.project.frame_sha1_of = self._frame_sha1_of
            return self.project

    def change_normalization(self, request: NormalizationRequest) -> Normalization:
        """Map raw values to the detectors' input as `request` asks from now on (detection, propagation,
        export, fine-tuning). The project stores it, created now if there is none yet: the analyst's choice
        outlives the session even before anything is detected."""
        normalization = request.for_source(self.source)
        previous, self.normalization = self.normalization, normalization  # what a project created now stores
        try:
            project = self.ensure_project()
            self.normalization = normalization  # (a project another instance made is taken up with its own)
            project.set_normalization(normalization.to_dict())
        except BaseException:
            self.normalization = previous
            raise
        return normalization

    def frame(self, index: int) -> np.ndarray:
        """Raw frame (raises FrameReadError for an unreadable one). A frame marked unreadable that reads now (its
        file is back, or was copied in whole since) is marked readable again (`mark_readable`)."""
        frame = self.source.frame(index)
        if self.is_unreadable(index):
            self.mark_readable(index)
        return frame

    def stem(self, index: int) -> str:
        return self.source.stems[index]

    # --- results --------------------------------------------------------------------------------

    def record_result(self, index: int) -> list[Target]:
        """A frame the worker has just detected and saved in the project: count its targets, drop old layers."""
        targets = self.project.detections(self.stem(index))
        self.detection_counts[index] = len(targets)
        self._forget_files(index)
        return targets

    def is_unreadable(self, index: int) -> bool:
        return bool(self.detection_counts[index] == UNREADABLE)

    def mark_unreadable(self, index: int) -> None:
        self.detection_counts[index] = UNREADABLE

    def mark_readable(self, index: int) -> None:
        """Undo `mark_unreadable`: the frame read after all. Its targets are counted again, its layers read again
        (those read while it was unreadable lack its proposal), and `refresh_from_disk` reports it among the
        statuses changed, for the timeline and the queue to follow."""
        project, stem = self.project, self.stem(index)
        predicted = project is not None and project.has_prediction(stem)
        self.detection_counts[index] = len(project.detections(stem)) if predicted else NOT_RUN
        self._forget_files(index)
        self._readable_again.add(index)

    def commit_mask(self, index: int, mask: np.ndarray) -> None:
        self.ensure_project().commit_mask(self.stem(index), mask)
        self._forget_files(index, ("committed",))

    def set_status(self, index: int, status: ReviewStatus) -> None:
        """Set and save a frame's status; the other frames' statuses are refreshed with it, as another
        instance on the project may have set some (`ReviewProject.set_status`). The status records the
        frame's pixels (the project's `frame_sha1_of`): a frame changed on disk is reviewed again by this.

        StatusSetElsewhere, nothing written, when another instance set the frame's status since `status_codes` (what
        the window shows) were read: theirs is taken up (`on_status_taken_up`)."""
        self._set_status(index, status, over_others=False)

    def replace_status(self, index: int, status: ReviewStatus) -> None:
        """`set_status` over whatever status another instance set on the frame: an edit whose save failed, saved now,
        replaces theirs, as its mask replaces their mask."""
        self._set_status(index, status, over_others=True)

    def _set_status(self, index: int, status: ReviewStatus, over_others: bool) -> None:
        seen = self._shown_status(index)  # (before a project another instance made is taken up with its statuses)
        project = self.ensure_project()
        try:
            project.set_status(self.stem(index), status, seen=seen, over_others=over_others)
        except StatusSetElsewhere:
            self._take_up_status(index)
            raise
        self._load_statuses(project)
        self.frame_change(index)

    def check_status_shown(self, index: int, asked: ReviewStatus | None = None) -> None:
        """StatusSetElsewhere when another instance set the frame's status since `status_codes` were read, to another
        than `asked`, and theirs is taken up (`on_status_taken_up`): an edit, an undo or a redo must act on the status
        the window shows. Without a project yet, it is made first (`ensure_project`: the change checked is about to
        write it), so one another instance made since the window last looked is checked as any other."""
        seen = self._shown_status(index)  # (before a project another instance made is taken up with its statuses)
        project = self.ensure_project()
        try:
            project.check_status(self.stem(index), seen, asked)
        except StatusSetElsewhere:
            self._take_up_status(index)
            raise

    def masks_not_shown(self, index: int) -> list[str]:
        """The layers of frame `index` ("proposal", "committed mask") that another instance wrote in the project
        `ensure_project` took up since the frame was last shown, which the window showed without them: an edit must
        start from the mask the analyst saw. Asked, the frame is taken up as it is on disk (`on_status_taken_up`) and
        counts as shown."""
        if index not in self._not_shown_since_adoption:
            return []
        self._not_shown_since_adoption.discard(index)
        stem = self.stem(index)
        not_shown = [name for name, on_disk in (("proposal", self.project.has_prediction(stem)),
                                                 ("committed mask", self.project.has_committed_mask(stem))) if on_disk]
        if not_shown and self.on_status_taken_up is not None:
            self.on_status_taken_up(index)
        return not_shown

    def _shown_status(self, index: int) -> ReviewStatus:
        return list(ReviewStatus)[self.status_codes[index]]

    def _take_up_status(self, index: int) -> None:
        """The status another instance set on frame `index`, read by a refused change, becomes the one shown."""
        self._load_statuses(self.project)
        self.frame_change(index)
        self._not_shown_since_adoption.discard(index)  # shown as it is on disk, its masks too
        if self.on_status_taken_up is not None:
            self.on_status_taken_up(index)

    # --- frames changed on disk -----------------------------------------------------------------

    def _frame_sha1_of(self, stem: str) -> str:
        """The project's `frame_sha1_of`: the fingerprint of the frame (as shown: from the source's cache) that
        each of its writes records."""
        index = self._stem_index[stem]
        return self._digest(index, self.source.frame(index))

    def _digest(self, index: int, frame: np.ndarray) -> str:
        """`frame_digest(frame)`, remembered for the frame's array while the source's cache holds it."""
        with self._changes_lock:
            known = self._digests.get(index)
        if known is not None and known[0]() is frame:
            return known[1]
        digest = frame_digest(frame)
        with self._changes_lock:
            self._digests[index] = (weakref.ref(frame), digest)
            self._digests.move_to_end(index)
            while len(self._digests) > 2 * LAYER_CACHE:
                self._digests.popitem(last=False)
        return digest

    def frame_change(self, index: int, frame: np.ndarray | None = None) -> FrameChange | None:
        """What of the frame's stored work (status, committed mask, proposal) was made on other pixels than it
        holds now (`ReviewProject.frame_change`): the source replaced on disk under the same names. `frame`: its
        raw values, when the caller has them (else read, from the cache when shown). None without a project
        or a readable frame. Keeps `changed_frames` up to date. Costs two small PNG reads, and the hash of the
        frame (about 0.4 ms for 640x512 uint16) the first time its array is seen."""
        project = self.project
        if project is None:
            return None
        try:
            if frame is None:
                frame = self.frame(index)
            change = project.frame_change(self.stem(index), self._digest(index, frame))
        except (FrameReadError, KeyError):
            return None
        self._note_change(index, change)
        return change

    def needs_review_again(self, index: int) -> bool:
        """The frame's status was set on other pixels than it holds now, as far as found (`changed_frames`): its
        stored status stands on disk, but it is to be reviewed again (`next_unreviewed` stops on it)."""
        with self._changes_lock:
            change = self.changed_frames.get(index)
        return change is not None and change.review

    def check_frames(self, progress=None, cancelled: threading.Event | None = None) -> dict[int, FrameChange]:
        """Read every frame holding a fingerprint (from a source of its own: the view's cache and read-ahead are
        left alone) and compare it with what the project recorded (`find_changed_frames`): index -> FrameChange
        of the changed ones, also kept in `changed_frames`. Seconds for thousands of frames: run it in a worker.
        `progress(done, total)`; `cancelled` stops between frames."""
        project = self.project
        if project is None:
            return {}
        with open_source(self.source.path, prefetch=0) as source:
            found = find_changed_frames(project, source, progress=progress, cancelled=cancelled)
        for stem, change in found.items():
            index = self._stem_index.get(stem)
            if index is not None:
                self._note_change(index, change)
        # the view's cache may hold pixels read before the files were replaced: shown, they would seem unchanged
        self.source.forget(self._stem_index[stem] for stem, change in found.items()
                           if change.changed and stem in self._stem_index)
        with self._changes_lock:
            return {i: c for i, c in self.changed_frames.items() if c.changed}

    def _note_change(self, index: int, change: FrameChange) -> None:
        with self._changes_lock:
            if change.changed:
                self.changed_frames[index] = change
            else:
                self.changed_frames.pop(index, None)

    def status(self, index: int) -> ReviewStatus:
        return self.project.status(self.stem(index)) if self.project else ReviewStatus.UNREVIEWED

    def statuses(self) -> list[ReviewStatus]:
        """Every frame's status as last read (`status_codes`): refreshed by each status change, which
        brings in the statuses another instance on the project has set."""
        order = list(ReviewStatus)
        return [order[code] for code in self.status_codes]

    def next_unreviewed(self, index: int, step: int = 1, order: list[int] | None = None) -> int | None:
        """The nearest unreviewed frame after `index` in `step`'s direction (1 or -1), wrapping round;
        unreadable frames have nothing to review and are stepped over. None when no frame is left.

        `order`: the frames to look through, in the order to take them (the review queue's rows, sorted and
        filtered), in place of every frame in frame order; when `index` is not among them the search starts
        at their start (their end for -1)."""
        if step not in (1, -1):
            raise ValueError(f"step must be 1 or -1, got {step}")
        order = list(range(len(self))) if order is None else list(order)
        if step == -1:
            order.reverse()
        start = order.index(index) + 1 if index in order else 0
        for i in order[start:] + order[:start]:
            if i != index and not self.is_unreadable(i) and (
                    self.status(i) is ReviewStatus.UNREVIEWED or self.needs_review_again(i)):
                return i
        return None

    def frame_and_layers(self, index: int, wanted: set[str]) -> tuple[np.ndarray, FrameLayers]:
        """`frame(index)` and `layers(index, wanted)`. Layer files not in the cache (a jump, or a scrub
        faster than the prefetch) are decoded in a worker thread while the frame is decoded in this one,
        so a jump waits for the slower of the two rather than for both. The layers' `change` is the frame's
        (`frame_change`): whether it changed on disk since its work was made."""
        with self._files_lock:
            cached = (wanted | TARGET_LAYERS) & set(FILE_LAYERS) <= self._files.get(index, {}).keys()
        if cached or self.is_unreadable(index):  # (one that reads now has its layers read again after it)
            frame, layers = self.frame(index), self._layers(index, wanted)
        else:
            if self._reader is None:
                self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layer-reader")
            reading = self._reader.submit(self._layers, index, wanted)
            try:
                frame = self.frame(index)
            finally:
                layers = reading.result()
        layers.change = self.frame_change(index, frame)
        return frame, layers

    def layers(self, index: int, wanted: set[str]) -> FrameLayers:
        """The layers of a frame; files are read only for the wanted layers ("edges", "probability", ...).
        `change` says whether the frame changed on disk since its work was made (`frame_change`)."""
        layers = self._layers(index, wanted)
        layers.change = self.frame_change(index)
        return layers

    def _layers(self, index: int, wanted: set[str]) -> FrameLayers:
        """`layers` without `change` (`frame_and_layers` sets it from the frame it decodes beside them)."""
        direction = 1 if index >= self._last_index else -1
        self._last_index = index
        project = self.project  # (a project taken up while the files are read: they may be read without it)
        files = self._layer_files(index, wanted | TARGET_LAYERS)
        if project is not None:
            self._not_shown_since_adoption.discard(index)
        layers = FrameLayers(prediction=files.get("prediction"), edges=files.get("edges"),
                             probability=files.get("probability"), origin=files.get("origin"))
        if self.project is not None and self.detection_counts[index] >= 0:
            layers.proposals = self.project.detections(self.stem(index))
        layers.committed = files.get("committed")
        layers.targets = (layers.proposals if layers.committed is None
                          else self._committed_targets(index, files, layers.proposals))
        layers.stamps = {layer: files[f"{layer}_stamp"] for layer in ("masks", "labels") if f"{layer}_stamp" in files}
        layers.truth_mask = files.get("truth")
        if self.ground_truth is not None and "truth" in wanted:
            layers.truth_boxes = [  # the pixels whose centres the box holds (`model.metrics.centroids_in_box`)
                (math.ceil(x), math.ceil(y), math.floor(x + w), math.floor(y + h))
                for x, y, w, h in self.ground_truth.boxes(index)
            ]
        self._prefetch_files(index, direction, wanted | TARGET_LAYERS)
        return layers

    def _committed_targets(self, index: int, files: dict[str, object], proposals: list[Target]) -> list[Target]:
        """`committed_targets` of a frame's cached files, labelled once for the arrays cached: the cache hands out
        the same arrays until the frame's files change (an edit, an undo, a new proposal), and new ones after."""
        committed, prediction = files["committed"], files.get("prediction")
        kept = files.get("committed_targets")  # (committed, prediction, their targets)
        if kept is None or kept[0] is not committed or kept[1] is not prediction:
            kept = (committed, prediction, committed_targets(committed, prediction, proposals))
            with self._files_lock:
                if index in self._files:
                    self._files[index]["committed_targets"] = kept
        return list(kept[2])

    def _layer_files(self, index: int, wanted: set[str]) -> dict[str, object]:
        """Decoded layer files of a frame (cached); only the wanted keys are read."""
        wanted = wanted & set(FILE_LAYERS)
        with self._files_lock:
            cached = dict(self._files.get(index, {}))
            if index in self._files:
                self._files.move_to_end(index)
            generation = self._file_generation[index]
        missing = wanted - cached.keys()
        if missing:
            cached.update(self._read_files(index, missing))
            cached = self._store_files(index, cached, generation)
        return cached

    def _read_files(self, index: int, keys: set[str]) -> dict[str, object]:
        stem, project, out = self.stem(index), self.project, {}
        if project is not None:  # before the reads: a file replaced meanwhile then shows as replaced
            stamps = project.mask_file_stamps(stem)
            for layer, key in (("masks", "prediction"), ("labels", "committed")):
                if key in keys:
                    out[f"{layer}_stamp"] = stamps[layer]
        predicted = project is not None and self.detection_counts[index] >= 0
        for key in keys:
            value = None
            if key == "prediction" and predicted:
                value, out["origin"] = project.prediction(stem)
            elif key == "edges" and predicted:
                value = project.prediction_edge(stem)  # uint8: a quarter of the memory of floats in the cache
            elif key == "probability" and predicted:
                logits = project.prediction_logits(stem)  # saved by the app's runs and by irsam detect --save-logits
                value = None if logits is None else probability_u8(logits)
            elif key == "committed" and project is not None:
                value = project.committed_mask(stem)
            elif key == "truth" and self.ground_truth is not None:
                # None for a mask not to be drawn or scored there; `ground_truth.mask_warnings` says why
                value = self.ground_truth.frame_mask(stem, self.source.frame_shape(index))
            out[key] = value
        return out

    def _store_files(self, index: int, files: dict[str, object], generation: int) -> dict[str, object]:
        """Cache what was read of a frame's files; returns its layers as cached now. A layer another thread cached
        meanwhile (the read-ahead and the GUI thread reading one frame at once) keeps that array: arrays handed out
        stay the cached ones, which the window's scores are kept by."""
        with self._files_lock:
            if self._file_generation[index] != generation:
                return files  # the frame's files changed while they were read
            files = {**files, **self._files.get(index, {})}
            self._files[index] = files
            self._files.move_to_end(index)
            while len(self._files) > LAYER_CACHE:
                self._files.popitem(last=False)
            return dict(files)

    def masks_replaced(self, index: int, layers: FrameLayers) -> bool:
        """Whether the proposal or committed mask read for `layers` was written again on disk since (by another
        window or an irsam command, before the window's next look at the project took it up; or by this one)."""
        if self.project is None:
            return False
        now = self.project.mask_file_stamps(self.stem(index))
        return any(stamp != now[layer] for layer, stamp in layers.stamps.items())

    def files_rewritten(self, stems) -> None:
        """Frames whose layer files were written outside the session (propagation, a ground-truth import): their
        cached arrays go."""
        for stem in stems:
            if stem in self._stem_index:
                self._forget_files(self._stem_index[stem])

    def _forget_files(self, index: int, keys: tuple[str, ...] = FILE_LAYERS) -> None:
        """Drop a frame's cached layer files (`keys`: the ones that changed; the others keep their arrays)."""
        with self._files_lock:
            self._file_generation[index] += 1
            files = self._files.get(index)
            if files is not None:
                for key in keys + (("origin", "masks_stamp") if "prediction" in keys else ()) + (
                        ("labels_stamp",) if "committed" in keys else ()):
                    files.pop(key, None)

    def _prefetch_files(self, index: int, direction: int, wanted: set[str]) -> None:
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="layer-prefetch",
                                                  initializer=lower_thread_priority)
        for k in range(1, LAYER_PREFETCH + 1):
            j = index + direction * k
            if 0 <= j < len(self.source):
                with self._files_lock:
                    done = j in self._files and wanted <= self._files[j].keys()
                if not done:
                    self._prefetcher.submit(self._prefetch_one, j, wanted)

    def _prefetch_one(self, index: int, wanted: set[str]) -> None:
        if abs(index - self._last_index) <= LAYER_PREFETCH:  # skip requests a fast scrub has left behind
            self._layer_files(index, wanted)

    def _load_project_state(self, project: ReviewProject) -> None:
        masks_dir = project.folder / "masks"
        predicted = {name[:-4] for name in os.listdir(masks_dir) if name.endswith(".png")} if masks_dir.is_dir() else set()
        for i, stem in enumerate(self.source.stems):
            if stem in predicted:
                self.detection_counts[i] = len(project.detections(stem))
        self._load_statuses(project)

    def _load_statuses(self, project: ReviewProject) -> None:
        self.status_codes[:] = [STATUS_CODES[project.status(stem)] for stem in self.source.stems]
