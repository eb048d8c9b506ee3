"""Propagation: carry one corrected target into the neighbouring frames, forward or backward.

Each step predicts where the target went from its last two positions (constant velocity; for the first
step, from the committed target of the frame behind the start, else no motion), looks for it in a search
window (the previous mask's box, shifted by that motion, plus a margin) and accepts the candidate only if
it still looks like the same target. The candidate comes from:

- the detector's proposal (the frame's stored prediction, else that of a `detector` passed in: the app
  passes the detector it has loaded, so frames not yet detected are re-detected by the model): the
  component in the window that overlaps the shifted previous mask most (nearest to the predicted centre
  when none do);
- otherwise re-segmentation of the normalised frame: `grow_target` from the window's brightest spot
  (measured above its surroundings, see `_regrow`). It is also tried when the proposal has no component
  in the window, or one that does not look like the same target: the target carried is often one the
  detector missed (drawn by hand), or found next to or merged with clutter, and the image still shows it;
- in "copy" mode, the previous mask itself, shifted by the predicted motion (no re-detection).

Propagation stops at the first frame with no candidate, an area jump (ratio above `max_area_ratio`
either way, areas counted as at least MIN_AREA_FOR_RATIO px), an area drift (the same ratio against the
target carried from the start: re-segmentation grows each frame from the previous frame's mask, so a
target can swell a little at every step, each step passing), too little overlap with the shifted
previous mask (IoU of both masks grown by one pixel, below `min_iou`), an unreadable frame, a frame of
another size (a folder of single images of several sizes is no sequence), or a frame the analyst has
already reviewed: reviewed frames are never proposed for overwriting.
`PropagationResult` says where and why it stopped; where both the proposal and re-segmentation were
tried, the reason gives re-segmentation's refusal and then the proposal's.

`apply_propagation` writes the result as one undoable edit per frame (frames with no committed mask get
the carried target alone, not their other predicted components) and leaves statuses alone: the
frames stay unreviewed, so the analyst confirms each one (accept-and-next exports the committed mask).
The run records the status and committed mask it read of each frame it carries (`PropagationResult.read`); a frame
whose status or committed mask is no longer that when the result is written (another window or an `irsam` command
on the project reviewed or edited it meanwhile) is left alone, and `PropagationResult.skipped` says which and why.

`target_to_carry` picks the mask to carry from a frame; `CancellableSource` wraps the frame source so
that a run in another thread stops before its next frame once cancelled.
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from app.core.edits import grow_target
from app.core.frames import FrameReadError
from app.core.project import ReviewProject, ReviewStatus
from app.core.targets import label_components

MODES = ("track", "copy")
# Areas are compared as at least this many pixels: a 1-3 px target gains or loses whole pixels with
# sub-pixel motion, which is no sign of a different target.
MIN_AREA_FOR_RATIO = 4
TARGET_GAP = 4  # px of background at most between components of a mask to carry that are fragments of one target

STOP_END = "end of sequence"
STOP_MAX_FRAMES = "frame limit reached"  # the panel's "at most N frames" (propagate's max_frames)
STOP_REVIEWED = "frame already reviewed"
STOP_NO_TARGET = "no target found in the search window"
STOP_LEFT_FRAME = "target left the frame"
STOP_AREA = "area jump"
STOP_AREA_DRIFT = "area drift"
STOP_OVERLAP = "overlap with the predicted position too low"
STOP_UNREADABLE = "unreadable frame"
STOP_SIZE = "frame of another size"
# why `apply_propagation` left a carried frame alone (`PropagationResult.skipped`)
SKIP_REVIEWED = "reviewed meanwhile"  # its status changed since the run read it, with the status after a colon
SKIP_EDITED = "committed mask changed meanwhile"


@dataclass
class PropagationResult:
    start_stem: str
    direction: int
    frames: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (stem, bool mask of the target only)
    stopped_at: str | None = None  # the stem propagation refused (None: end of sequence or max_frames)
    reason: str = ""  # one of the STOP_* texts, with details after a colon
    # stem -> (status, `mask_digest` of the committed mask) as the run read them, for each frame carried
    read: dict[str, tuple[ReviewStatus, str | None]] = field(default_factory=dict)
    # (stem, one of the SKIP_* texts): the frames `apply_propagation` left alone, changed since the run read them
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def stems(self) -> list[str]:
        return [stem for stem, _ in self.frames]

    @property
    def end_stem(self) -> str | None:
        """Where the run ended: the frame it refused, else the last frame it carried (None: neither)."""
        if self.stopped_at is not None:
            return self.stopped_at
        return self.frames[-1][0] if self.frames else None


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), end-exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def shift_mask(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """`mask` moved by whole pixels; what moves past the border is lost."""
    h, w = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    ys, xs = ys + dy, xs + dx
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    out[ys[inside], xs[inside]] = True
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def dilated_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU after growing both masks by one pixel, so that a 1-2 px target one pixel off the prediction
    still counts as the same target."""
    return _iou(_grow(a), _grow(b))


def target_to_carry(working: np.ndarray, selected_box: tuple[int, int, int, int] | None) -> np.ndarray:
    """The mask to carry: the components inside the selected target's box, else the whole working mask."""
    if selected_box is None:
        return working
    x0, y0, x1, y1 = selected_box
    _, labels = label_components(working)
    ids = np.unique(labels[y0 : y1 + 1, x0 : x1 + 1])
    picked = np.isin(labels, ids[ids > 0])
    return picked if picked.any() else working


class PropagationCancelled(Exception):
    pass


class CancellableSource:
    """The frame source as `propagate` sees it: reading a frame after `cancelled` is set raises."""

    def __init__(self, source, cancelled: threading.Event):
        self.source, self.cancelled = source, cancelled
        self.stems = source.stems

    def frame(self, index: int) -> np.ndarray:
        if self.cancelled.is_set():
            raise PropagationCancelled()
        return self.source.frame(index)


def initial_velocity(project: ReviewProject, start_stem: str, direction: int, target_mask: np.ndarray,
                     search_margin: int) -> tuple[float, float]:
    """Motion per step from the committed target in the frame behind the start (the opposite direction),
    when that frame has one within `search_margin` of the target; else no motion."""
    behind = project.index(start_stem) - direction
    if not 0 <= behind < len(project.stems):
        return 0.0, 0.0
    previous = project.committed_mask(project.stems[behind])
    if previous is None or not previous.any():
        return 0.0, 0.0
    window = _search_window(target_mask, search_margin, previous.shape)
    component = _component_nearest(previous, window, centroid(target_mask))
    if component is None:
        return 0.0, 0.0
    (cx, cy), (px, py) = centroid(target_mask), centroid(component)
    return cx - px, cy - py


def propagate(
    project: ReviewProject,
    source,
    normalization,
    start_stem: str,
    direction: int = 1,
    target_mask: np.ndarray | None = None,
    detector=None,
    max_frames: int = 50,
    search_margin: int = 8,
    max_area_ratio: float = 2.0,
    min_iou: float = 0.3,
    mode: str = "track",
) -> PropagationResult:
    """Follow the target from `start_stem` through the next frames in `direction` (+1 or -1).

    `source` is the project's FrameSource, `normalization` its Normalization (for detection and
    re-segmentation). `target_mask` (bool, frame-sized) is the target to carry; by default the start
    frame's committed mask. Its components within TARGET_GAP px of each other (a target in fragments) travel
    together as one target; targets further apart are each followed on their own, and the run carries the
    frames where every one of them was found: it stops where the first is lost, saying which. Nothing is
    written.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if target_mask is None:
        target_mask = project.committed_mask(start_stem)
        if target_mask is None:
            raise ValueError(f"{start_stem} has no committed mask to propagate; pass target_mask")
    prior = np.asarray(target_mask) > 0
    if prior.shape != project.shape_of(start_stem):
        raise ValueError(f"target mask shape {prior.shape} != frame shape {project.shape_of(start_stem)}")
    if not prior.any():
        raise ValueError("the target mask is empty")

    targets = separate_targets(prior)
    if len(targets) > 1:
        detector = None if detector is None else _DetectedOnce(detector)  # a frame: detected once, not per target
        return _together([propagate(project, source, normalization, start_stem, direction, target, detector,
                                    max_frames, search_margin, max_area_ratio, min_iou, mode) for target in targets],
                         targets)
    result = PropagationResult(start_stem, direction, reason=STOP_MAX_FRAMES)
    start_area = int(prior.sum())
    source_index = {stem: i for i, stem in enumerate(source.stems)}
    velocity = initial_velocity(project, start_stem, direction, prior, search_margin)
    index = project.index(start_stem)
    for _ in range(max_frames):
        index += direction
        if not 0 <= index < len(project.stems):
            result.reason = STOP_END
            break
        stem = project.stems[index]
        candidate, refusal = None, ""
        committed = mask_digest(project.committed_mask(stem))  # what the result is to be written over
        status = project.status(stem)
        shape = project.known_shape(stem)
        if shape is not None and shape != prior.shape:
            result.stopped_at = stem
            result.reason = f"{STOP_SIZE}: {shape[1]}x{shape[0]}, not {prior.shape[1]}x{prior.shape[0]}"
            break
        expected = shift_mask(prior, round(velocity[0]), round(velocity[1]))
        if status is not ReviewStatus.UNREVIEWED:
            refusal = f"{STOP_REVIEWED}: {status.value}"
        elif not expected.any():
            refusal = STOP_LEFT_FRAME
        elif mode == "copy":
            candidate = expected
        elif stem not in source_index:
            refusal = f"{STOP_UNREADABLE}: not in the source"
        else:
            try:
                image = normalization.apply(source.frame(source_index[stem]))
            except FrameReadError as e:
                refusal = f"{STOP_UNREADABLE}: {e.reason}"
            else:
                candidate, refusal = _find_target(project, stem, image, detector, prior, expected, start_area,
                                                  search_margin, max_area_ratio, min_iou)
        if refusal:
            result.stopped_at, result.reason = stem, refusal
            break
        if mode != "copy":
            (x_new, y_new), (x_old, y_old) = centroid(candidate), centroid(prior)
            velocity = (x_new - x_old, y_new - y_old)
        result.frames.append((stem, candidate))
        result.read[stem] = (status, committed)
        prior = candidate
    return result


def separate_targets(mask: np.ndarray) -> list[np.ndarray]:
    """The targets of a mask to carry: its 8-connected components, those within TARGET_GAP px of each other (the
    fragments of one target) taken together; in the order of their first pixel."""
    size = TARGET_GAP + 1  # each grown by half the gap: what is then 8-connected was at most TARGET_GAP apart
    near = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))) > 0
    count, groups = label_components(near)
    return [mask & (groups == k) for k in range(1, count + 1)]


class _DetectedOnce:
    """A detector for the runs of several targets over the same frames: each frame is detected once, and its result
    given to every run that asks for it."""

    def __init__(self, detector):
        self.detector = detector
        self._results: dict[bytes, object] = {}

    def detect(self, images: list[np.ndarray]) -> list:
        keys = [hashlib.sha1(f"{image.shape}{image.dtype}".encode() + image.tobytes()).digest() for image in images]
        missing = [(key, image) for key, image in zip(keys, images) if key not in self._results]
        if missing:
            for (key, _), result in zip(missing, self.detector.detect([image for _, image in missing])):
                self._results[key] = result
        return [self._results[key] for key in keys]


def _together(results: list[PropagationResult], targets: list[np.ndarray]) -> PropagationResult:
    """The runs of each of `targets` (one mask's) as one: the frames where every target was carried (each frame's
    targets in one mask), up to where the first run ended; its stop, naming the target lost and where it was last
    when the others were not stopped there alike (a reviewed frame stops them all)."""
    ended = min(range(len(results)), key=lambda k: len(results[k].frames))
    first = results[ended]
    together = PropagationResult(first.start_stem, first.direction, stopped_at=first.stopped_at, reason=first.reason)
    for k, (stem, _) in enumerate(first.frames):
        together.frames.append((stem, np.logical_or.reduce([result.frames[k][1] for result in results])))
        together.read[stem] = results[0].read[stem]  # the first run's read, the earliest
    if any((result.stopped_at, result.reason) != (first.stopped_at, first.reason) for result in results):
        # one target was lost (the others' frames were not refused): which, and where it was last
        x, y = centroid(first.frames[-1][1] if first.frames else targets[ended])
        together.reason = f"{first.reason} (target {ended + 1} of {len(results)}, last at ({x:.0f}, {y:.0f}))"
    return together


def _find_target(project, stem, image, detector, prior, expected, start_area, search_margin, max_area_ratio,
                 min_iou) -> tuple[np.ndarray | None, str]:
    """(the target's mask in this frame, "") or (None, why it was refused): the proposal's component when
    it passes, else the re-segmented target when that passes."""
    window = _search_window(expected, search_margin)
    proposal = project.prediction_mask(stem)
    if proposal is None and detector is not None:
        proposal = detector.detect([image])[0].mask
    if proposal is not None:
        candidate = _best_component(proposal, window, expected)
        proposal_refusal = _refusal(candidate, prior, expected, start_area, max_area_ratio, min_iou)
        if not proposal_refusal:
            return candidate, ""
    candidate = _regrow(image, window, expected, max_area_ratio)
    refusal = _refusal(candidate, prior, expected, start_area, max_area_ratio, min_iou)
    if not refusal:
        return candidate, ""
    if proposal is not None:
        refusal = f"{refusal} (re-segmentation, after the proposal: {proposal_refusal})"
    return None, refusal


def _refusal(candidate: np.ndarray | None, prior: np.ndarray, expected: np.ndarray, start_area: int,
             max_area_ratio: float, min_iou: float) -> str:
    """Why `candidate` is not the target carried from `prior` (one of the STOP_* texts; `start_area`: the area
    of the target carried from the start); "" when it is."""
    if candidate is None or not candidate.any():
        return STOP_NO_TARGET
    area = int(candidate.sum())
    if _area_ratio(area, int(prior.sum())) > max_area_ratio:
        return f"{STOP_AREA}: {int(prior.sum())} -> {area} px"
    if _area_ratio(area, start_area) > max_area_ratio:
        return f"{STOP_AREA_DRIFT}: {area} px, {start_area} px at the start"
    overlap = dilated_iou(candidate, expected)
    if overlap < min_iou:
        return f"{STOP_OVERLAP}: IoU {overlap:.2f} < {min_iou:.2f}"
    return ""


def _area_ratio(a: int, b: int) -> float:
    a, b = max(a, MIN_AREA_FOR_RATIO), max(b, MIN_AREA_FOR_RATIO)
    return max(a / b, b / a)


def mask_digest(mask: np.ndarray | None) -> str | None:
    """A fingerprint of a committed mask's pixels (None: no committed mask), to tell whether it changed."""
    if mask is None:
        return None
    return hashlib.sha1(f"{mask.shape}".encode() + np.packbits(mask > 0).tobytes()).hexdigest()


def apply_propagation(project: ReviewProject, result: PropagationResult) -> list[str]:
    """Write each propagated target into its frame's committed mask, one undoable edit per frame.

    A frame that already has a committed mask keeps everything in it except the components touching
    the new target, which the target replaces. A frame without one gets the target alone: its other
    predicted components are unreviewed proposals (often false alarms the analyst deleted on the start
    frame) and must not become labels by being carried along; they stay visible in the prediction
    overlay and can be accepted one by one. Statuses are left as they are (unreviewed). Returns the
    stems whose mask changed.

    Each frame is checked and written under the project's lock (no other instance writes it between the two): a
    frame whose status (read again from disk) is no longer the one the run read (`result.read`; unreviewed for a
    frame it has no record of), or whose committed mask is no longer the one the run read, was reviewed or edited
    by someone else while the run went on: it is left alone and listed in `result.skipped` with why.
    """
    changed = []
    result.skipped = []
    for stem, target in result.frames:
        status_read, committed_read = result.read.get(stem, (ReviewStatus.UNREVIEWED, None))
        frame_sha1 = project.current_frame_sha1(stem)  # before the lock, as `commit_edit` does: it may decode the frame
        with project.holding():  # the statuses another instance set since this one last read them, read again
            status, committed = project.status(stem), project.committed_mask(stem)
            if status is not status_read:
                result.skipped.append((stem, f"{SKIP_REVIEWED}: {status.value}"))
                continue
            if stem in result.read and mask_digest(committed) != committed_read:
                result.skipped.append((stem, SKIP_EDITED))
                continue
            if committed is None:
                new_mask = target.copy()
            else:
                _, labels = label_components(committed)
                touching = np.unique(labels[_grow(target)])
                new_mask = (committed & ~np.isin(labels, touching[touching > 0])) | target
            # where the prediction was exactly the target, it becomes the committed layer all the same
            if project.commit_edit(stem, new_mask, frame_sha1):
                changed.append(stem)
    return changed


def describe_skipped(project: ReviewProject, result: PropagationResult) -> str:
    """The frames `apply_propagation` left alone, numbered from 1, each with why ("frame 4 (reviewed meanwhile:
    corrected)"); "" when none."""
    return ", ".join(f"frame {project.index(stem) + 1} ({why})" for stem, why in result.skipped)


def _grow(mask: np.ndarray) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def _search_window(around: np.ndarray, margin: int, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The bounding box of `around` grown by `margin` on every side, as a bool mask of `shape` (default:
    `around`'s own)."""
    x0, y0, x1, y1 = bounding_box(around)
    window = np.zeros(around.shape if shape is None else shape, dtype=bool)
    window[max(y0 - margin, 0) : y1 + margin, max(x0 - margin, 0) : x1 + margin] = True
    return window


def _best_component(proposal: np.ndarray, window: np.ndarray, expected: np.ndarray) -> np.ndarray | None:
    """The proposal component inside the window overlapping `expected` most; the one nearest to its
    centre when none overlaps."""
    _, labels = label_components(proposal)
    in_window = np.unique(labels[window & proposal])
    in_window = in_window[in_window > 0]
    if len(in_window) == 0:
        return None
    overlaps = [np.count_nonzero((labels == i) & expected) for i in in_window]
    if max(overlaps) > 0:
        return labels == in_window[int(np.argmax(overlaps))]
    return _component_nearest(proposal, window, centroid(expected))


def _component_nearest(mask: np.ndarray, window: np.ndarray, point: tuple[float, float]) -> np.ndarray | None:
    _, labels = label_components(mask)
    ids = np.unique(labels[window & mask])
    ids = ids[ids > 0]
    if len(ids) == 0:
        return None
    distances = [np.hypot(*np.subtract(centroid(labels == i), point)) for i in ids]
    return labels == ids[int(np.argmin(distances))]


def _regrow(image: np.ndarray, window: np.ndarray, expected: np.ndarray, max_area_ratio: float) -> np.ndarray:
    """`grow_target` from the window's brightest spot, with the seed, grow window and threshold (k) that
    reproduce `expected` best.

    "Brightest" is measured above the surroundings (white top-hat), since clouds outshine dim targets.
    Two seeds are tried, the brightest spot of the window and of the expected position, so that a hot
    pixel in the window does not hide the target. A fixed k = 3 finds nothing over clutter (the
    background ring is too varied), so a few tight windows and lower ks are tried too.
    """
    ex0, ey0, ex1, ey1 = bounding_box(expected)
    size = max(ex1 - ex0, ey1 - ey0)
    x0, y0, x1, y1 = bounding_box(window)
    h, w = image.shape
    # the top-hat is computed beyond the window too: at a crop's border it sees no surroundings
    r = size + 1
    py0, px0 = max(y0 - r, 0), max(x0 - r, 0)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    contrast = cv2.morphologyEx(image[py0 : min(y1 + r, h), px0 : min(x1 + r, w)], cv2.MORPH_TOPHAT, element)
    contrast = contrast[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
    near_expected = _grow(expected)[y0:y1, x0:x1]
    seeds = set()
    for region in (np.ones_like(near_expected), near_expected):
        iy, ix = np.unravel_index(int(np.argmax(np.where(region, contrast.astype(np.int32), -1))), contrast.shape)
        seeds.add((x0 + int(ix), y0 + int(iy)))

    expected_area = max(int(expected.sum()), MIN_AREA_FOR_RATIO)
    # room to grow past the area limit, so that an area jump is seen rather than clipped
    max_area = int(expected_area * max_area_ratio * 2) + 1
    best, best_key = np.zeros_like(expected), None
    for seed_x, seed_y in sorted(seeds):
        # grow_target reads at most two grow windows around the seed: crop there (cheap on large frames)
        reach = 2 * size + 8
        cy0, cx0 = max(seed_y - reach, 0), max(seed_x - reach, 0)
        cy1, cx1 = min(seed_y + reach + 1, h), min(seed_x + reach + 1, w)
        crop, crop_expected = image[cy0:cy1, cx0:cx1], expected[cy0:cy1, cx0:cx1]
        # nothing brighter than the seed: a hot pixel in grow_target's background ring would raise its
        # threshold above the target
        crop = np.minimum(crop, image[seed_y, seed_x])
        for grow_window in (size + 2, size + 4, 2 * size + 3):
            for k in (3.0, 2.0, 1.5, 1.0):
                grown = grow_target(crop, seed_x - cx0, seed_y - cy0, window=max(grow_window, 5), k=k,
                                    max_area=max_area, fit_slope=False)
                if not grown.any():
                    continue
                key = (_iou(grown, crop_expected), dilated_iou(grown, crop_expected))
                if best_key is None or key > best_key:
                    best_key = key
                    best = np.zeros_like(expected)
                    best[cy0:cy1, cx0:cx1] = grown
    return best
