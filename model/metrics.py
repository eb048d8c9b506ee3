"""IRSTD metrics exactly as shared/spec/metrics.md defines them: IoU, nIoU, Pd/Fa, pixel ROC, Pd-Fa curve,
and box-only scoring for clips annotated with boxes.

Conventions:
- prediction: `value > 0` (logits, or a 0/1, 0/255 or boolean mask);
- ground truth: 255 is target; a pure 0/1 mask is accepted; other values strictly between 0 and 255 warn;
- components are 8-connected and numbered in raster order (first pixel in row-major scan), as skimage's
  `label` does in the reference code; OpenCV's block-based labelling does not guarantee that order, so
  labels are renumbered here.
- `resize_to=512` reproduces the official IRSAM evaluation: ground truth and boolean predictions are resized
  with nearest neighbour, float logits bilinearly and then thresholded, and Fa is divided by 512*512 per image.
  A prediction already made at 512x512 (a network that runs on the frame resized to 512, as the official one
  does: its own output) is scored as it is, against the ground truth resized.
"""
from __future__ import annotations

import csv
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

import cv2
import numpy as np

EPS = np.spacing(1)
MATCH_DISTANCE = 3.0  # px, strict: a centroid at exactly 3.0 is a miss
# Target sizes for Pd by area: SPIE's small target is under 0.15 % of the frame (81 px at 256x256);
# NUAA-SIRST's are mostly 10-50 px, with a few extended ones above.
TARGET_AREA_BINS = ((1, 9), (10, 49), (50, 99), (100, None))
FaMode = Literal["corrected", "legacy"]


class InterpolatedMaskWarning(UserWarning):
    """A ground-truth mask holds values strictly between 0 and 255 (it was resized with interpolation)."""


def binarize_prediction(pred: np.ndarray) -> np.ndarray:
    return np.asarray(pred) > 0


def ground_truth_target(gt: np.ndarray) -> np.ndarray:
    """The target pixels of a mask: 255 in a 0/255 mask, 1 in a pure 0/1 mask, True in a bool one."""
    gt = np.asarray(gt)
    if gt.dtype == bool:
        return gt
    if np.all((gt == 0) | (gt == 1)):
        return gt == 1
    return gt >= 255


def interpolated_pixels(gt: np.ndarray) -> int:
    """Pixels of a mask that `ground_truth_target` drops although they are not 0: values strictly between 0
    and 255 (a mask resized with interpolation, blurred, or saved as JPEG). 0 for bool and pure 0/1 masks."""
    gt = np.asarray(gt)
    if gt.dtype == bool or np.all((gt == 0) | (gt == 1)):
        return 0
    return int(np.count_nonzero((gt > 0) & (gt < 255)))


def binarize_ground_truth(gt: np.ndarray) -> np.ndarray:
    """`ground_truth_target`, with an InterpolatedMaskWarning when it drops `interpolated_pixels`."""
    if interpolated_pixels(gt):
        warnings.warn(
            "ground-truth mask has values strictly between 0 and 255 (interpolated?); only 255 counts as target",
            InterpolatedMaskWarning,
            stacklevel=3,
        )
    return ground_truth_target(gt)


def resize_prediction(pred: np.ndarray, size: int) -> np.ndarray:
    """Float logits: bilinear then `> 0`; boolean/integer masks: nearest. Returns bool (size, size)."""
    pred = np.asarray(pred)
    if np.issubdtype(pred.dtype, np.floating):
        return cv2.resize(pred.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) > 0
    return cv2.resize((pred > 0).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0


def resize_ground_truth(gt: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(gt.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0


def resize_score(score: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(np.asarray(score, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Components:
    """8-connected components in raster label order: centroids (row, col), pixel areas, label image."""

    centroids: np.ndarray  # float64 (n, 2): row, col
    areas: np.ndarray  # int64 (n,)
    labels: np.ndarray  # int32 HxW, 0 = background, 1..n in raster order

    def __len__(self) -> int:
        return len(self.areas)


def components(mask: np.ndarray) -> Components:
    n, labels = cv2.connectedComponents(np.asarray(mask, dtype=np.uint8), connectivity=8)
    n -= 1
    if n == 0:
        return Components(np.zeros((0, 2)), np.zeros(0, np.int64), labels)
    flat = labels.ravel()
    foreground = np.flatnonzero(flat)
    cv_labels = flat[foreground]
    _, first_index = np.unique(cv_labels, return_index=True)  # first raster position of cv labels 1..n
    raster_rank = np.empty(n + 1, np.int32)
    raster_rank[0] = 0
    raster_rank[1 + np.argsort(foreground[first_index], kind="stable")] = np.arange(1, n + 1)
    labels = raster_rank[labels]
    flat_labels = labels.ravel()[foreground]
    rows, cols = np.divmod(foreground, mask.shape[1])
    areas = np.bincount(flat_labels, minlength=n + 1)[1:]
    centroids = np.stack(
        [
            np.bincount(flat_labels, weights=rows, minlength=n + 1)[1:] / areas,
            np.bincount(flat_labels, weights=cols, minlength=n + 1)[1:] / areas,
        ],
        axis=1,
    )
    return Components(centroids, areas.astype(np.int64), labels)


@dataclass(frozen=True)
class PdFaCounts:
    hits: int
    n_targets: int
    false_alarm_pixels: int  # by the chosen Fa mode


def greedy_match(predicted: Components, truth: Components) -> tuple[np.ndarray, np.ndarray]:
    """For each GT component in raster order, the first still-unmatched predicted component whose
    centroid is closer than 3 px is a hit. Returns (matched: bool per predicted component, found: bool
    per GT component)."""
    matched = np.zeros(len(predicted), bool)
    found = np.zeros(len(truth), bool)
    for t, centroid in enumerate(truth.centroids):
        distances = np.linalg.norm(predicted.centroids - centroid, axis=1)
        candidates = np.flatnonzero(~matched & (distances < MATCH_DISTANCE))
        if len(candidates):
            matched[candidates[0]] = found[t] = True
    return matched, found


def match_targets(pred: np.ndarray, gt: np.ndarray, fa_mode: FaMode = "corrected") -> PdFaCounts:
    """Greedy matching of one image (`greedy_match`): hits and false-alarm pixels."""
    predicted, truth = components(pred), components(gt)
    matched, _ = greedy_match(predicted, truth)
    if fa_mode == "corrected":
        false_alarm_pixels = int(predicted.areas[~matched].sum())
    elif fa_mode == "legacy":
        # DNANet / official IRSAM: `[a for a in areas if a not in matched_areas]`
        false_alarm_pixels = int(predicted.areas[~np.isin(predicted.areas, predicted.areas[matched])].sum())
    else:
        raise ValueError(f"fa_mode must be 'corrected' or 'legacy', not {fa_mode!r}")
    return PdFaCounts(int(matched.sum()), len(truth), false_alarm_pixels)


class SegmentationMetrics:
    """Streaming IoU / nIoU / Pd / Fa over a data set; with `keep_scores` also the pixel ROC and Pd-Fa curve."""

    def __init__(self, fa_mode: FaMode = "corrected", resize_to: int | None = None, keep_scores: bool = False,
                 keep_errors: bool = False):
        if fa_mode not in ("corrected", "legacy"):
            raise ValueError(f"fa_mode must be 'corrected' or 'legacy', not {fa_mode!r}")
        self.fa_mode = fa_mode
        self.resize_to = resize_to
        self.keep_scores = keep_scores
        self.intersection = 0
        self.union = 0
        self.image_ious: list[float] = []
        self.hits = 0
        self.n_targets = 0
        self.false_alarm_pixels = 0
        self.total_pixels = 0
        self.scores: list[np.ndarray] = []
        self.truths: list[np.ndarray] = []
        self.keep_errors = keep_errors
        self.frame_errors: list[dict] = []  # with keep_errors: images with a missed target or a false alarm
        self.target_areas: list[tuple[int, bool]] = []  # with keep_errors: (area, found) of every GT target

    def update(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> None:
        """pred: float logits (> 0 is target) or a mask; gt: 0/255 (or 0/1, bool) mask of the same size, or with
        `resize_to`, pred may already be resize_to x resize_to (only the ground truth is then resized);
        name: the image's, for `errors()`."""
        pred = np.asarray(pred)
        truth = binarize_ground_truth(gt)
        if pred.shape != truth.shape and not self.at_resize_to(pred):
            at = f" or {self.resize_to}x{self.resize_to}" if self.resize_to else ""
            raise ValueError(f"prediction {pred.shape} and ground truth {truth.shape} differ in size (the "
                             f"prediction must be at the ground truth's size{at})")
        if self.resize_to:
            predicted = resize_prediction(pred, self.resize_to)
            truth = resize_ground_truth(truth, self.resize_to)
        else:
            predicted = binarize_prediction(pred)
        intersection = int(np.count_nonzero(predicted & truth))
        union = int(np.count_nonzero(predicted | truth))
        self.intersection += intersection
        self.union += union
        self.image_ious.append(intersection / (EPS + union))
        counts = match_targets(predicted, truth, self.fa_mode)
        self.hits += counts.hits
        self.n_targets += counts.n_targets
        self.false_alarm_pixels += counts.false_alarm_pixels
        self.total_pixels += truth.size
        if self.keep_errors:
            self._record_errors(predicted, truth, name if name is not None else str(len(self.image_ious) - 1))
        if self.keep_scores:
            score = pred.astype(np.float32) if np.issubdtype(pred.dtype, np.floating) else predicted.astype(np.float32)
            if self.resize_to:
                score = resize_score(score, self.resize_to)
            self.scores.append(score)
            self.truths.append(truth)

    def at_resize_to(self, pred: np.ndarray) -> bool:
        """Whether `pred` is already at the size the metrics are computed at (`resize_to` squared): resizing it
        there (bilinear or nearest, to its own size) leaves it as it is."""
        return bool(self.resize_to) and np.shape(pred) == (self.resize_to, self.resize_to)

    def result(self) -> dict:
        return {
            "iou": self.intersection / (EPS + self.union),
            "niou": float(np.mean(self.image_ious)) if self.image_ious else 0.0,
            "pd": self.hits / self.n_targets if self.n_targets else float("nan"),
            "fa": self.false_alarm_pixels / self.total_pixels if self.total_pixels else float("nan"),
            "fa_mode": self.fa_mode,
            "resize_to": self.resize_to,
            "n_images": len(self.image_ious),
            "n_targets": self.n_targets,
            "hits": self.hits,
            "false_alarm_pixels": self.false_alarm_pixels,
            "total_pixels": self.total_pixels,
        }

    def _record_errors(self, predicted: np.ndarray, truth: np.ndarray, name: str) -> None:
        predicted_parts, truth_parts = components(predicted), components(truth)
        matched, found = greedy_match(predicted_parts, truth_parts)
        self.target_areas.extend(zip(truth_parts.areas.tolist(), found.tolist()))

        def listed(parts: Components, keep: np.ndarray) -> list[dict]:
            return [{"row": round(float(r), 1), "col": round(float(c), 1), "area": int(a)}
                    for (r, c), a in zip(parts.centroids[keep], parts.areas[keep])]

        if not (found.all() and matched.all()):
            self.frame_errors.append({"image": name, "missed": listed(truth_parts, ~found),
                                      "false_alarms": listed(predicted_parts, ~matched)})

    def errors(self) -> dict:
        """With keep_errors: Pd by ground-truth target area, and every image's missed targets and false
        alarms (8-connected components; centroid row/col and area in px, as scored). False alarms are every
        unmatched predicted component, as the corrected Fa counts them, whatever the Fa mode."""
        if not self.keep_errors:
            raise RuntimeError("errors() needs SegmentationMetrics(keep_errors=True)")
        by_area = {}
        for low, high in TARGET_AREA_BINS:
            inside = [found for area, found in self.target_areas if area >= low and (high is None or area <= high)]
            label = f"{low}-{high} px" if high is not None else f">= {low} px"
            by_area[label] = {"targets": len(inside), "hits": int(sum(inside))}
        return {"pd_by_target_area": by_area, "frames": self.frame_errors}

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Pixel ROC over every kept score map: (fpr, tpr, thresholds, auc)."""
        self._require_scores()
        fpr, tpr, thresholds = roc_curve(
            np.concatenate([s.ravel() for s in self.scores]), np.concatenate([t.ravel() for t in self.truths])
        )
        return fpr, tpr, thresholds, auc(fpr, tpr)

    def pd_fa_curve(self, thresholds: Sequence[float] | None = None, n_thresholds: int = 50) -> dict:
        """Pd and Fa with every kept score map thresholded at `score > t`, for each t (default: quantiles, and 0,
        the decision threshold of the logits the detectors give, so the table's operating point is on the curve)."""
        self._require_scores()
        if thresholds is None:
            all_scores = np.concatenate([s.ravel() for s in self.scores])
            # Quantiles concentrated in the top tail, where targets live.
            quantiles = 1.0 - np.logspace(-6, 0, n_thresholds)[::-1] * (1 - 1e-9)
            thresholds = np.unique(np.append(np.quantile(all_scores, np.clip(quantiles, 0, 1)), 0.0))
        thresholds = np.asarray(thresholds, np.float64)
        pds, fas = [], []
        total_pixels = sum(t.size for t in self.truths)
        for threshold in thresholds:
            hits = targets = false_alarms = 0
            for score, truth in zip(self.scores, self.truths):
                counts = match_targets(score > threshold, truth, self.fa_mode)
                hits += counts.hits
                targets += counts.n_targets
                false_alarms += counts.false_alarm_pixels
            pds.append(hits / targets if targets else float("nan"))
            fas.append(false_alarms / total_pixels)
        return {"thresholds": thresholds, "pd": np.array(pds), "fa": np.array(fas)}

    def _require_scores(self) -> None:
        if not self.keep_scores:
            raise RuntimeError("construct SegmentationMetrics(keep_scores=True) to compute curves")
        if not self.scores:
            raise RuntimeError("no images were added")


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's `roc_curve(drop_intermediate=False)`: one point per distinct score, starting at (0, 0)
    with threshold +inf; a pixel is positive at threshold t when score >= t."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    order = np.argsort(scores, kind="mergesort")[::-1]
    scores, labels = scores[order], labels[order]
    last_of_each_value = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_positives = np.cumsum(labels)[last_of_each_value]
    false_positives = 1 + last_of_each_value - true_positives
    positives, negatives = labels.sum(), labels.size - labels.sum()
    tpr = np.r_[0.0, true_positives / positives] if positives else np.full(true_positives.size + 1, np.nan)
    fpr = np.r_[0.0, false_positives / negatives] if negatives else np.full(false_positives.size + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, scores[last_of_each_value]]


def auc(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.trapezoid(y, x)) if hasattr(np, "trapezoid") else float(np.trapz(y, x))


# --- box-only ground truth -------------------------------------------------------------------------------

Box = tuple[float, float, float, float]  # x0, y0 (0-based column/row of the top-left pixel), w, h


BOXES_COLUMNS = ("frame", "class", "x", "y", "w", "h")


class BoxesFileError(ValueError):
    """A boxes.csv that cannot be read; the message names the file and, where it can, the line."""


def read_boxes_csv(path: str | Path) -> dict[int, list[Box]]:
    """`frame,class,x,y,w,h` with 1-based frames and 1-based MATLAB pixels -> {0-based frame: [(x0, y0, w, h)]}
    (`read_boxes_csv_lines`, without the line numbers)."""
    return {frame: [box for box, _ in boxes] for frame, boxes in read_boxes_csv_lines(path).items()}


def read_boxes_csv_lines(path: str | Path) -> dict[int, list[tuple[Box, int]]]:
    """`frame,class,x,y,w,h` with 1-based frames and 1-based MATLAB pixels -> {0-based frame: [((x0, y0, w, h),
    the box's line in the file)]}: the line names a box that turns out wrong once its frame is read (one lying
    outside the frame: `box_outside_frame`).

    UTF-8 with or without a byte-order mark (Excel writes one); the header names the columns, in any order;
    blank lines and lines of empty values (`,,,,,`) are skipped; a frame is read exactly, as digits that may end in
    a fraction of zeros (`4.0`). Anything else (a missing header, another separator, a short row, a value that is not
    a number, a frame below 1 or not whole, a coordinate that is not finite, a width or height that is not positive)
    raises BoxesFileError naming the file and line."""
    path = Path(path)
    boxes: dict[int, list[tuple[Box, int]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f)
        try:
            header = [name.strip() for name in next((row for row in rows if not _blank(row)), [])]
            if not set(BOXES_COLUMNS) <= set(header):
                found = repr(",".join(header)) if header else "an empty file"
                raise BoxesFileError(f"{path}: line {max(rows.line_num, 1)}: expected the header "
                                     f"{','.join(BOXES_COLUMNS)}, found {found}")
            for row in rows:
                if _blank(row):
                    continue
                if len(row) != len(header):
                    raise BoxesFileError(f"{path}: line {rows.line_num}: {len(row)} values where the header has "
                                         f"{len(header)}: {','.join(row)!r}")
                try:
                    frame, x, y, w, h = _box_values(dict(zip(header, row)))
                except ValueError as error:
                    raise BoxesFileError(f"{path}: line {rows.line_num}: {error}") from None
                boxes.setdefault(frame - 1, []).append(((x - 1, y - 1, w, h), rows.line_num))
        except UnicodeDecodeError:
            raise BoxesFileError(f"{path}: not UTF-8 text (a binary file, or another encoding)") from None
        except csv.Error as error:
            raise BoxesFileError(f"{path}: line {rows.line_num}: {error}") from None
    return boxes


def box_outside_frame(box: Box, shape: tuple[int, int]) -> bool:
    """Whether a box (0-based, as read_boxes_csv gives it) holds no pixel centre of a frame of `shape` (height,
    width), by `centroids_in_box`'s rectangle: an annotation error (a typo in x or y, another clip's box), since no
    target there can be seen or found."""
    x0, y0, w, h = box
    height, width = shape
    return x0 > width - 1 or y0 > height - 1 or x0 + w < 0 or y0 + h < 0


def split_boxes_outside(boxes: Sequence[tuple[Box, int]], frame: int, shape: tuple[int, int]
                        ) -> tuple[list[Box], list[dict]]:
    """One frame's boxes (`read_boxes_csv_lines`' entries; `frame` 1-based, `shape` its (height, width)): those
    covering some of its pixels, and the others as `describe_boxes_outside` takes them ({"line", "frame", "box"
    [x, y, w, h] as boxes.csv writes it, "frame_size" [width, height]})."""
    kept, outside = [], []
    for box, line in boxes:
        if box_outside_frame(box, shape):
            x0, y0, w, h = box
            outside.append({"line": line, "frame": frame, "box": [x0 + 1, y0 + 1, w, h],
                            "frame_size": [shape[1], shape[0]]})
        else:
            kept.append(box)
    return kept, outside


def describe_boxes_outside(path: str | Path, outside: Sequence[dict], consequence: str, listed: int = 5) -> str:
    """One line naming the boxes of `path` that lie outside their frame (`outside`: {"line", "frame" (1-based),
    "box" [x, y, w, h] as boxes.csv writes it, "frame_size" [width, height]}), the first `listed` of them, and
    what is done with them (`consequence`)."""
    def named(entry: dict) -> str:
        x, y, w, h = (f"{v:g}" for v in entry["box"])
        return (f"line {entry['line']} (frame {entry['frame']}: x {x}, y {y}, w {w}, h {h} on a "
                f"{entry['frame_size'][0]}x{entry['frame_size'][1]} frame)")

    shown = "; ".join(named(entry) for entry in outside[:listed])
    more = f"; and {len(outside) - listed} more" if len(outside) > listed else ""
    n = len(outside)
    return (f"{path}: {n} box{'es lie' if n > 1 else ' lies'} entirely outside {'their' if n > 1 else 'its'} frame, "
            f"{consequence}: {shown}{more}")


_NUMBERED_STEM = re.compile(r"^(.*?)(\d+)$")
ODD_NAMES_SHARE = 10  # at most one name in this many may fall outside a clip's frame numbers (a stray copy)


@dataclass(frozen=True)
class ClipNumbering:
    """Which of boxes.csv's frames (1-based) each of a clip's frames is: `numbers[k]` for `files[k]`, None for
    a file with no frame number (`unnumbered`: its name is not numbered as the others' are, gives the same
    number as another file's, or is an earlier file's but for the extension), which has no ground truth.

    `by` says how they were told: "name" (the number a file's name ends in, as in images/000001.png, the
    clips' own layout: a frame deleted from the clip leaves a gap rather than shifting every later frame
    onto the previous frame's boxes), "name, 0-based" (names numbered from 0: 000000.png is frame 1) or
    "position" (the k-th file in natural order is frame k, where the names are not frame numbers). `why`
    says what decided it where that was not plain: what in the names ruled them out (by position), which
    names have no frame number, why names without a 000000 are read as numbered from 0, or that they could
    be numbered from 0 or from 1."""

    files: list[Path]
    numbers: list[int | None]
    by: str
    why: str | None = None

    @property
    def last(self) -> int:
        return max((n for n in self.numbers if n is not None), default=0)

    @property
    def numbered(self) -> list[int]:
        """Indices into `files` of the frames with a frame number."""
        return [k for k, n in enumerate(self.numbers) if n is not None]

    @property
    def unnumbered(self) -> list[Path]:
        """The files with no frame number (None in `numbers`)."""
        return [f for f, n in zip(self.files, self.numbers) if n is None]

    def select(self, first: int, last: int | None) -> list[int]:
        """Indices into `files` of the frames numbered first..last (inclusive; None: to the end)."""
        return [k for k, n in enumerate(self.numbers)
                if n is not None and n >= first and (last is None or n <= last)]


def number_clip_frames(files: Sequence[Path], boxes: dict[int, list]) -> ClipNumbering:
    """Tell each of a clip's frames (`clip_frames`) its boxes.csv frame number from its name where the names
    are frame numbers, by position otherwise (ClipNumbering); `boxes`: read_boxes_csv's (0-based keys).

    A file named as an earlier one but for the extension (000006.png after 000006.jpg, in name order) is no frame,
    as in the app (app.core.frames takes the first file of a name): it has no number and `why` names it; the
    others are numbered as the app numbers its frames (`_number_frames`)."""
    files = list(files)
    first_of_stem: dict[str, int] = {}
    frames, repeats = [], []  # indices into `files`
    for k, file in enumerate(files):
        if file.stem in first_of_stem:
            repeats.append(k)
        else:
            first_of_stem[file.stem] = k
            frames.append(k)
    numbering = _number_frames([files[k] for k in frames], boxes)
    if not repeats:
        return numbering
    numbers: list[int | None] = [None] * len(files)
    for k, number in zip(frames, numbering.numbers):
        numbers[k] = number
    repeated = [files[k].name for k in repeats]
    read = [files[first_of_stem[files[k].stem]].name for k in repeats]
    if len(repeats) == 1:
        said = (f"{repeated[0]} has the same name as {read[0]} but for the extension: as in the app, {read[0]} is "
                f"the frame (the first in name order) and {repeated[0]} has no ground truth")
    else:
        said = (f"{listed_names(repeated)} have the same names as {listed_names(read)} but for the extension: as in "
                "the app, the first file of a name in name order is the frame and the others have no ground truth")
    return ClipNumbering(files, numbers, numbering.by, "; ".join(filter(None, [said, numbering.why])))


def listed_names(names: list[str], shown: int = 5) -> str:
    """"a", "a and b", "a, b and c", up to `shown` names and "N more"."""
    names = names[:shown] + ([f"{len(names) - shown} more"] if len(names) > shown else [])
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _number_frames(files: list[Path], boxes: dict[int, list]) -> ClipNumbering:
    """`number_clip_frames` of files of which no two have the same name but for the extension.

    The names can be frame numbers when every one is a number after one prefix shared by all (000001, f1,
    clip_000001) and no two give the same number, or all but a few: where at most one name in ODD_NAMES_SHARE
    is not a number after the prefix most share (a copy 000040a.png, or Copy of 000040.png, beside the clip's
    000001.png..000085.png) or gives the same number as another (0000040.png beside 000040.png: both count, as
    which of them is the frame cannot be told), those few get no number (None: no
    ground truth, not scored) and `why` names them; the others are numbered by the rules below, which look at
    the other names only; more such names rule the names out. They are numbered from 0 when one is 0; else from 0 only
    when that pairs more of boxes.csv's boxed frames with an image than numbering from 1 does (a 0-based clip
    whose 000000.png was deleted: its last image is then boxes.csv's last frame), from 1 on a tie (the clips'
    own images/000001.png; `why` says so where the names start at 1 and both readings leave boxed frames
    without an image: the last frame of a 1-based clip deleted, or the first of a 0-based one).
    They are then taken for frame numbers unless the clip's position explains boxes.csv clearly better, so
    that names numbered otherwise (time stamps, the frame numbers of the longer recording a clip was cut
    from) do not pair frames with other frames' boxes: position is taken when the names pair no boxed frame,
    or when all of these hold:
    - position pairs more boxed frames than the names, by more than the numbers missing between the first
      and the last name (frames deleted from the clip, after which position pairs every frame with the
      previous one's boxes and so may well pair more: the last frame's onto the deleted one's);
    - the names leave at least half of boxes.csv's boxed frames without an image (a clip whose first frames
      were deleted still pairs most of them);
    - boxes.csv has no box past the clip's last image by position, as a boxes.csv numbering this clip's own
      frames has not (a clip cut from a longer one but keeping its boxes.csv has)."""
    position = list(range(1, len(files) + 1))
    parsed = [_NUMBERED_STEM.match(f.stem) for f in files]
    if not files:
        return ClipNumbering(files, [], "position")
    prefixes = Counter(m.group(1) for m in parsed if m)
    prefix = prefixes.most_common(1)[0][0] if prefixes else None
    numbered = [k for k, m in enumerate(parsed) if m and m.group(1) == prefix]
    odd = [k for k, m in enumerate(parsed) if not (m and m.group(1) == prefix)]
    if ODD_NAMES_SHARE * len(odd) > len(files):
        if not all(parsed):
            odd_name = next(f.name for f, m in zip(files, parsed) if m is None)
            return ClipNumbering(files, position, "position", f"{odd_name} does not end in a frame number")
        first, other = sorted(prefixes)[:2]
        return ClipNumbering(files, position, "position",
                             f"the names are numbered after different prefixes ({first!r}, {other!r})")
    sharing: dict[int, list[int]] = {}  # number -> the files numbered so
    for k in numbered:
        sharing.setdefault(int(parsed[k].group(2)), []).append(k)
    same_number = [ks for ks in sharing.values() if len(ks) > 1]
    if same_number and ODD_NAMES_SHARE * (len(odd) + sum(map(len, same_number))) > len(files):
        first, other = min(same_number, key=lambda group: group[1])[:2]  # the first file to repeat a number
        return ClipNumbering(files, position, "position", f"{files[first].name} and {files[other].name} have the "
                             "same number")
    numbered = [k for k in numbered if len(sharing[int(parsed[k].group(2))]) == 1]
    numbers = [int(parsed[k].group(2)) for k in numbered]

    def paired(frames: Iterable[int]) -> int:  # how many boxed frames the 1-based `frames` give an image
        return sum(n - 1 in boxes for n in frames)

    lowest, highest = min(numbers), max(numbers)
    boxed = len(boxes)
    boxed_frames = f"{boxed} frame{'' if boxed == 1 else 's'} boxes.csv has boxes for"
    why = None
    zero_based = lowest == 0
    if not zero_based and boxes:
        from_1, from_0 = paired(numbers), paired(n + 1 for n in numbers)
        digits = len(parsed[numbered[numbers.index(lowest)]].group(2))
        zero = f"{prefix}{0:0{digits}d}"
        if from_0 > from_1:
            zero_based = True
            why = (f"numbered from 0 ({zero} missing), the names pair {from_0} of the {boxed_frames} with an "
                   f"image, numbered from 1 only {from_1}")
        elif from_0 == from_1 < boxed and lowest == 1:  # 000001 first: 000000 deleted, or the last boxed frame
            why = (f"numbered from 1 or from 0 ({zero} missing), the names pair {from_1} of the {boxed_frames} "
                   "with an image: taken as numbered from 1, as the clips' own images/000001.png")
    if zero_based:
        numbers = [n + 1 for n in numbers]
    by_name = paired(numbers)
    if boxes and not by_name:
        return ClipNumbering(files, position, "position",
                             "no name is the number of a frame boxes.csv has boxes for")
    by_position = paired(position)
    missing = highest - lowest + 1 - len(numbers)
    if boxes and by_position - by_name > missing and 2 * by_name <= boxed and max(boxes) < len(files):
        named = sorted(zip(numbers, (files[k].name for k in numbered)))
        return ClipNumbering(files, position, "position",
                             f"numbered by name, {named[0][1]} to {named[-1][1]} would pair {by_name} of the "
                             f"{boxed_frames} with an image, by position {by_position}")
    numbers_of_files: list[int | None] = [None] * len(files)
    for k, n in zip(numbered, numbers):
        numbers_of_files[k] = n
    if odd or same_number:
        unnumbered = _unnumbered_text(files, parsed, odd, same_number, files[numbered[0]].name)
        why = "; ".join(filter(None, [unnumbered, why]))
    return ClipNumbering(files, numbers_of_files, "name, 0-based" if zero_based else "name", why)


def _unnumbered_text(files: list[Path], parsed: list[re.Match | None], odd: list[int], same_number: list[list[int]],
                     numbered_name: str) -> str:
    """What is wrong with the names of the few `odd` files, not numbered as the others' are (`numbered_name` is
    one of those), and of the files in each group of `same_number` (indices of files giving one number), and what
    becomes of them."""
    not_numbers = [files[k].name for k in odd if parsed[k] is None]
    other_prefix = [files[k].name for k in odd if parsed[k] is not None]
    problems = []
    if not_numbers:
        problems.append(f"{listed_names(not_numbers)} {'does' if len(not_numbers) == 1 else 'do'} not end in a frame "
                        "number")
    if other_prefix:
        problems.append(f"{listed_names(other_prefix)} {'is' if len(other_prefix) == 1 else 'are'} numbered after "
                        f"another prefix than the others ({numbered_name})")
    problems += [f"{listed_names([files[k].name for k in group])} have the same number" for group in same_number]
    if not odd and len(same_number) == 1:  # which of them is the frame cannot be told
        fate = "neither has" if len(same_number[0]) == 2 else "none has"
    else:
        fate = "it has no" if len(odd) == 1 and not same_number else "they have no"
    return f"{', '.join(problems)}: {fate} ground truth; the others are paired by their numbers"


def _blank(row: list[str]) -> bool:
    return not any(value.strip() for value in row)


def _box_values(row: dict[str, str]) -> tuple[int, float, float, float, float]:
    """(frame, x, y, w, h) of one boxes.csv row (column name -> text); ValueError saying which value is wrong."""
    frame = _frame_number(row["frame"])
    numbers = []
    for name in ("x", "y", "w", "h"):
        try:
            number = float(row[name])
        except ValueError:
            raise ValueError(f"{name} {row[name]!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{name} {row[name]!r} is not a finite number")
        numbers.append(number)
    x, y, w, h = numbers
    if w <= 0 or h <= 0:
        raise ValueError(f"a box's width and height must be positive, found w {row['w']!r}, h {row['h']!r}")
    return frame, x, y, w, h


# a frame number as written: digits, with a fraction of zeros where a spreadsheet writes one ("12.0")
_FRAME_NUMBER = re.compile(r"\+?(\d+)(?:\.0*)?")


def _frame_number(text: str) -> int:
    """The frame number boxes.csv's frame value gives, exactly (as a float, 12345678901234567 would read as
    12345678901234568); ValueError saying why it is none."""
    match = _FRAME_NUMBER.fullmatch(text.strip())
    try:
        frame = int(match.group(1)) if match else None
    except ValueError:  # more digits than Python converts: no frame number either
        frame = None
    if frame is not None and frame >= 1:
        return frame
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"frame {text!r} is not a number") from None
    whole = math.isfinite(number) and number.is_integer()
    if frame is not None or (whole and number < 1):
        why = ""
    elif whole:  # such as 1e1
        why = ": frame numbers are written as digits (12 or 12.0)"
    else:
        why = ": frame numbers are whole numbers, written as digits (12 or 12.0)"
    raise ValueError(f"frame {text!r} is not a frame number (1 is the first frame){why}")


@dataclass(frozen=True)
class BoxFrameScore:
    hits: int
    n_targets: int
    false_alarms: int  # unmatched predicted components
    false_alarm_pixels: int


def centroids_in_box(centroids: np.ndarray, box: Box) -> np.ndarray:
    """bool per (row, col) centroid: inside the box or closer than 3 px to its centre. A box is a rectangle of
    0-based pixel-centre coordinates, corner (x0, y0) and size (w, h): boxes.csv's MATLAB spatial boxes, 1
    subtracted (a box drawn tight round 1-based pixels 1..3 is x 0.5, w 3, and holds 0-based centres 0..2)."""
    x0, y0, w, h = box
    x1, y1 = x0 + w, y0 + h
    rows, cols = centroids[:, 0], centroids[:, 1]
    inside = (cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1)
    return inside | (np.hypot(cols - (x0 + x1) / 2, rows - (y0 + y1) / 2) < MATCH_DISTANCE)


def match_boxes(centroids: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """bool per (row, col) centroid (predicted components in raster order): whether it detects a box. Each
    box in turn is detected by the first still-unmatched centroid in it (`centroids_in_box`)."""
    matched = np.zeros(len(centroids), bool)
    for box in boxes:
        candidates = np.flatnonzero(~matched & centroids_in_box(centroids, box))
        if len(candidates):
            matched[candidates[0]] = True
    return matched


def score_boxes(pred: np.ndarray, boxes: Sequence[Box]) -> BoxFrameScore:
    """Box hits (`match_boxes`); every other predicted component is a false alarm."""
    predicted = components(binarize_prediction(pred))
    matched = match_boxes(predicted.centroids, boxes)
    return BoxFrameScore(
        int(matched.sum()), len(boxes), int((~matched).sum()), int(predicted.areas[~matched].sum())
    )


class BoxMetrics:
    """Streaming Pd and false alarms per frame over a clip annotated with boxes."""

    def __init__(self):
        self.hits = 0
        self.n_targets = 0
        self.false_alarms = 0
        self.false_alarm_pixels = 0
        self.total_pixels = 0
        self.n_frames = 0

    def update(self, pred: np.ndarray, boxes: Sequence[Box]) -> BoxFrameScore:
        score = score_boxes(pred, boxes)
        self.hits += score.hits
        self.n_targets += score.n_targets
        self.false_alarms += score.false_alarms
        self.false_alarm_pixels += score.false_alarm_pixels
        self.total_pixels += np.asarray(pred).size
        self.n_frames += 1
        return score

    def result(self) -> dict:
        return {
            "pd": self.hits / self.n_targets if self.n_targets else float("nan"),
            "false_alarms_per_frame": self.false_alarms / self.n_frames if self.n_frames else float("nan"),
            "fa": self.false_alarm_pixels / self.total_pixels if self.total_pixels else float("nan"),
            "n_frames": self.n_frames,
            "n_targets": self.n_targets,
            "hits": self.hits,
            "false_alarms": self.false_alarms,
        }
