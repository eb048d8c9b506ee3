"""Evaluation of a detector over a mask-annotated data set or a box-annotated clip, and curve plots.

Plots are drawn with OpenCV (no matplotlib dependency).
"""
from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from model.classical import CLASSICAL_DETECTORS, make_classical_detector
from model.data import (IMAGE_EXTENSIONS, FrameReadError, Sample, check_sizes_match, describe_interpolated_masks,
                        natural_key, read_image_gray, read_mask_noting_interpolation)
from model.detectors import Detector, FrameResult, logits_without_no_data
from model.metrics import (BoxMetrics, Components, FaMode, InterpolatedMaskWarning, SegmentationMetrics,
                           binarize_prediction, components, greedy_match, ground_truth_target,
                           number_clip_frames, read_boxes_csv_lines, resize_ground_truth, resize_prediction,
                           split_boxes_outside)
from model.size_gate import SizeGatedDetector

BATCH_SIZE = 8
MAX_CURVE_POINTS = 512  # points of the ROC kept in JSON
# where the frame at a path holds no data (bool HxW: NaN or infinite pixels of a float frame), None where it has data
# everywhere (app.commands.eval.SetFrames.no_data)
NoDataOf = Callable[[Path], np.ndarray | None]


def make_detector(method: str | None, weights: str | None, device: str = "auto", **predictor_options) -> Detector:
    """A classical detector by name, or IRSAM from a checkpoint (model.predictor is imported only then).

    `predictor_options` go to `Predictor.from_file` (config_name, precision, batch_size, ...)."""
    if (method is None) == (weights is None):
        raise ValueError("give exactly one of a method name or a weights file")
    if method is not None:
        return make_classical_detector(method)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    from model.predictor import Predictor

    return Predictor.from_file(path, device=device, **predictor_options)


@contextmanager
def resume_state_warning_to(report: Callable[[str], None]) -> Iterator[None]:
    """Hand the message of a ResumeStateWarning raised inside (a run's last.pt loaded as weights) to `report`, for a
    command to print it as its other warnings, in one line, rather than in Python's warning format with a source
    line; other warnings are emitted again as they were raised."""
    from model.checkpoint import ResumeStateWarning  # imports torch: only where weights are loaded

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResumeStateWarning)
            yield
    finally:  # also when the block raises: a warning said before the error may tell what led to it
        for warning in caught:
            if issubclass(warning.category, ResumeStateWarning):
                report(str(warning.message))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno,
                                       source=warning.source)


def available_methods() -> list[str]:
    return sorted(CLASSICAL_DETECTORS)


def _timed_detect(detector: Detector, images: list[np.ndarray], no_data: list[np.ndarray | None],
                  network_logits: bool = False, frame_logits: bool = True) -> tuple[list[FrameResult], float]:
    """The detector's results for `images`, with no target where a frame holds no data (`no_data`, one per image),
    and the detector's time. With `network_logits` (a Predictor whose network runs on resized frames), results
    that also hold its logits at its input size (model.predictor.NetworkFrameResult), where the no-data pixels
    are those of the frame resized there as the ground truth is (nearest); with `frame_logits` False as well (only
    those are scored), the frame-size `logits` are left as the network gave them, neither refined nor cleaned."""
    start = time.perf_counter()
    if network_logits:
        results = detector.detect(images, network_logits=True, refine_frame_logits=frame_logits)
    else:
        results = detector.detect(images)
    elapsed = time.perf_counter() - start
    cleaned = []
    for result, where in zip(results, no_data):
        if where is not None:
            if frame_logits:
                result = replace(result, logits=logits_without_no_data(result.logits, where))
            if network_logits:
                where_at_input = resize_ground_truth(where, result.network_logits.shape[0])
                result = replace(result, network_logits=logits_without_no_data(result.network_logits, where_at_input))
        cleaned.append(result)
    return cleaned, elapsed


def runs_at(detector: Detector, resize_to: int | None) -> bool:
    """Whether `resize_to` is the size of the square an IRSAM network (`official`) runs on, the frame resized there,
    size gate or not."""
    return bool(resize_to) and getattr(detector, "network_input_size", None) == resize_to


def scored_at_network_input(detector: Detector, resize_to: int | None) -> bool:
    """Whether metrics computed at `resize_to` x `resize_to` score the detector's own output at that size, as the
    official IRSAM evaluation does, rather than its logits resized back to the frame and then again to `resize_to`:
    where the network runs at that size (`runs_at`) and no size gate, which works on the frame's own pixels, stands
    between."""
    return runs_at(detector, resize_to) and not isinstance(detector, SizeGatedDetector)


def network_input_scoring(detector: Detector, size: int, refined: bool) -> dict:
    """What is scored at `size` for a detector that `runs_at` it, for the results to say it."""
    tta = getattr(detector, "tta", "none")
    if not scored_at_network_input(detector, size):
        return {"prediction": f"the network's {size}x{size} logits resized back to the frame for the size gate, "
                              f"which works on the frame's own pixels, then again to {size}x{size} (bilinear)",
                "refinement": "on the frame at its own size" if refined else None,
                "tta": "every pass's logits brought back to the frame and averaged there" if tta != "none" else None}
    return {
        "prediction": f"the network's own {size}x{size} logits (it runs on the frame resized to {size}x{size}), not "
                      f"resized back to the frame and then again to {size}x{size}; the ground truth resized to "
                      f"{size}x{size} with nearest neighbour",
        "refinement": (f"on the frame resized to {size}x{size} as the network saw it (its sizes in pixels are then "
                       f"pixels at {size}x{size})" if refined else None),
        "tta": (f"every pass's {size}x{size} logits, flipped back, averaged at {size}x{size}" if tta != "none"
                else None),
    }


def evaluate_dataset(
    detector: Detector,
    samples: Sequence[Sample],
    fa_mode: FaMode = "corrected",
    resize_to: int | None = None,
    curves: bool = False,
    progress: Callable[[int, int], None] | None = None,
    read_image: Callable[[Path], np.ndarray] = read_image_gray,
    errors: bool = False,
    no_data: NoDataOf | None = None,
) -> tuple[dict, SegmentationMetrics]:
    """IoU / nIoU / Pd / Fa (and, with `curves`, pixel ROC AUC and the Pd-Fa sweep; with `errors`, Pd by
    target area and each image's missed targets and false alarms, `SegmentationMetrics.errors`) over
    `samples`. frames/s counts only the detector's time, not reading files or scoring. `read_image`
    gives the 8-bit frame the detector sees (for 16-bit data: read, then the sequence's window applied); `no_data`,
    where a frame held no data (float frames), which is then no target whatever the detector found in the fill there
    (`logits_without_no_data`, as irsam detect and the app leave them out). Unusable samples are skipped, and
    interpolated masks listed, as `evaluate_variants` says.
    With `resize_to`, targets are matched at that size as the metrics are, but the errors give each missed
    target's and false alarm's centroid and area in the image's own pixels, and bin targets by their area
    there (`NativeErrorMetrics`); "errors" then says so ("matched_at")."""
    convention = dict(fa_mode=fa_mode, resize_to=resize_to, keep_scores=curves, keep_errors=errors)
    result, metrics = evaluate_variants(
        detector, samples, {detector.name: None}, {"": convention}, progress, read_image, no_data
    )[detector.name][""]
    if curves:
        fpr, tpr, _, roc_auc = metrics.roc()
        keep = _curve_points(fpr)
        pd_fa = metrics.pd_fa_curve()
        result["roc"] = {"auc": roc_auc, "fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}
        result["pd_fa_curve"] = {key: values.tolist() for key, values in pd_fa.items()}
    if errors:
        result["errors"] = metrics.errors()
        if resize_to:
            result["errors"]["matched_at"] = f"{resize_to}x{resize_to}"
    return result, metrics


def _curve_points(fpr: np.ndarray) -> np.ndarray:
    """Indices of at most MAX_CURVE_POINTS points of a ROC (fpr non-decreasing), the first and last among them:
    half spread evenly along the curve's points, half evenly over log10(fpr). Nearly every pixel is background,
    so points taken by index alone leave out the low false positive rates where a detector works."""
    n = len(fpr)
    if n <= MAX_CURVE_POINTS:
        return np.arange(n)
    by_index = np.linspace(0, n - 1, MAX_CURVE_POINTS // 2).astype(int)
    positive = fpr[fpr > 0]
    by_rate = np.searchsorted(fpr, np.logspace(np.log10(positive[0]), 0, MAX_CURVE_POINTS // 2)) if len(positive) else []
    return np.unique(np.concatenate([by_index, np.clip(by_rate, 0, n - 1)]).astype(int))


def evaluate_variants(
    detector: Detector,
    samples: Sequence[Sample],
    variants: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray] | None],
    conventions: dict[str, dict],
    progress: Callable[[int, int], None] | None = None,
    read_image: Callable[[Path], np.ndarray] = read_image_gray,
    no_data: NoDataOf | None = None,
) -> dict[str, dict[str, tuple[dict, SegmentationMetrics]]]:
    """One detector pass over `samples`, scored for every variant (name -> a post-processing of the
    detector's logits, `(frame, logits) -> logits`, or None) under every convention (name ->
    SegmentationMetrics options): {variant: {convention: (result, metrics)}}. A variant's frames/s
    counts the detector's time and its own post-processing's, not reading files or scoring. The detector's logits
    are no target where `no_data` says a frame held no data (`evaluate_dataset`). A sample
    whose image or mask is unreadable, or whose mask differs in size from its image, is skipped and
    listed in the result's "skipped" ({"path", "reason"}), counted in "n_skipped". A scored mask with values
    strictly between 0 and 255 (interpolated: only 255 is target) is listed in "interpolated_masks" (paths),
    counted in "n_interpolated_masks", and named in one InterpolatedMaskWarning.
    A convention at the size an IRSAM network runs at (`resize_to` 512 for `official`: `scored_at_network_input`)
    scores the network's own logits at that size, a variant's post-processing run on the frame as the network saw
    it; its results say what was scored in "network_input_scoring" (`network_input_scoring`; behind a size gate,
    the logits at the frame's size). The other conventions score the logits at the frame's size."""
    metrics = {v: {c: _segmentation_metrics(options) for c, options in conventions.items()} for v in variants}
    at_network = {c for c, options in conventions.items()
                  if scored_at_network_input(detector, options.get("resize_to"))}
    at_frame = len(at_network) < len(conventions)  # some convention scores the logits at the frame's size
    seconds = dict.fromkeys(variants, 0.0)
    skipped: list[dict] = []
    interpolated: list[str] = []
    for start in range(0, len(samples), BATCH_SIZE):
        batch = samples[start : start + BATCH_SIZE]
        read = []  # (stem, image, mask, no-data pixels), the no-data pixels asked for just after the image is read
        for sample in batch:
            pair = _read_pair(sample, read_image, skipped, interpolated)
            if pair is not None:
                read.append((sample.stem, *pair, no_data(sample.image_path) if no_data else None))
        if read:
            results, elapsed = _timed_detect(detector, [image for _, image, _, _ in read],
                                             [where for _, _, _, where in read], network_logits=bool(at_network),
                                             frame_logits=at_frame)
            for (stem, image, mask, _), result in zip(read, results):
                for name, postprocess in variants.items():
                    t0 = time.perf_counter()
                    if at_frame:
                        scored = result.logits if postprocess is None else postprocess(image, result.logits)
                    if at_network:
                        scored_at_network = (result.network_logits if postprocess is None
                                             else postprocess(result.network_frame, result.network_logits))
                    seconds[name] += time.perf_counter() - t0
                    for convention, m in metrics[name].items():
                        m.update(scored_at_network if convention in at_network else scored, mask, stem)
            for name in variants:
                seconds[name] += elapsed
        if progress:
            progress(min(start + BATCH_SIZE, len(samples)), len(samples))
    if interpolated:
        warnings.warn(describe_interpolated_masks(interpolated, len(samples)), InterpolatedMaskWarning, stacklevel=2)
    scored_count = len(samples) - len(skipped)
    out = {}
    for name, postprocess in variants.items():
        fps = scored_count / seconds[name] if seconds[name] > 0 else float("nan")
        out[name] = {c: ({"method": name, "device": detector.device, **m.result(), "frames_per_second": fps,
                          **_skipped_record(skipped), "n_interpolated_masks": len(interpolated),
                          "interpolated_masks": interpolated}, m)
                     for c, m in metrics[name].items()}
        refined = postprocess is not None or getattr(detector, "refinement", None) is not None
        for c, options in conventions.items():
            if runs_at(detector, options.get("resize_to")):
                out[name][c][0]["network_input_scoring"] = network_input_scoring(detector, options["resize_to"],
                                                                                 refined)
    return out


def _segmentation_metrics(options: dict) -> SegmentationMetrics:
    """SegmentationMetrics with these options; with both `resize_to` and `keep_errors`, errors given in the
    image's own pixels (`NativeErrorMetrics`)."""
    if options.get("resize_to") and options.get("keep_errors"):
        return NativeErrorMetrics(**options)
    return SegmentationMetrics(**options)


class NativeErrorMetrics(SegmentationMetrics):
    """SegmentationMetrics scored at `resize_to` (IoU, Pd and Fa unchanged) whose `errors()` locate each
    missed target and false alarm in the image itself, so that they can be looked up there: targets are
    matched at `resize_to` as the metrics match them, then each component found there is traced back to
    the image's components it was resized from (nearest neighbour, as the ground truth is resized), and
    its centroid (row, col) and area are theirs, in image pixels; Pd by target area bins the targets by
    that area. Each also keeps its centroid and area where it was matched ("at_512"). An image component that
    resizing split into several at `resize_to` is listed once (`_each_image_component_once`). A false alarm that
    no image component lies under nor beside (not seen: bilinear resizing draws on those) has its centroid
    mapped back by the scale, its area the image pixels it covers, and is marked "resized_only". A prediction
    made at `resize_to` (`SegmentationMetrics.at_resize_to`: a network's own output there) has no image
    components: each false alarm's centroid is mapped back by the scale and its area is the image pixels it
    covers, unmarked."""

    def update(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> None:
        keep_errors, self.keep_errors = self.keep_errors, False
        try:
            super().update(pred, gt, name)
        finally:
            self.keep_errors = keep_errors
        if keep_errors:
            self._record_native_errors(np.asarray(pred), ground_truth_target(gt),
                                       name if name is not None else str(len(self.image_ious) - 1))

    def _record_native_errors(self, pred: np.ndarray, truth: np.ndarray, name: str) -> None:
        size = self.resize_to
        resized_pred, resized_truth = resize_prediction(pred, size), resize_ground_truth(truth, size)
        predicted_parts, truth_parts = components(resized_pred), components(resized_truth)
        matched, found = greedy_match(predicted_parts, truth_parts)
        native_truth = components(truth)
        native_pred = None if pred.shape != truth.shape else components(binarize_prediction(pred))
        taken_from = _nearest_sources(truth.shape, size)
        missed = [_traced(truth_parts, t, native_truth, taken_from, truth.shape) for t in range(len(truth_parts))]
        self.target_areas.extend((target["area"], bool(hit)) for target, hit in zip(missed, found))
        if not (found.all() and matched.all()):
            self.frame_errors.append({
                "image": name,
                "missed": _each_image_component_once([target for target, hit in zip(missed, found) if not hit], size),
                "false_alarms": _each_image_component_once(
                    [_traced(predicted_parts, p, native_pred, taken_from, truth.shape)
                     for p in np.flatnonzero(~matched)], size),
            })


def _traced(resized: Components, index: int, native: Components | None, taken_from: np.ndarray,
            image_shape: tuple[int, int]) -> dict:
    """Component `index` (0-based) of a mask resized to a square, located in the image: the image components
    under it, their joint centroid and total area (see NativeErrorMetrics); mapped back by the scale where there
    are no image components (`native` None: a prediction made at the square). `taken_from`: the flat index of
    the image pixel each resized pixel was taken from."""
    size = resized.labels.shape[0]
    under = taken_from[resized.labels == index + 1]
    row_resized, col_resized = resized.centroids[index]
    at_size = {"row": round(float(row_resized), 1), "col": round(float(col_resized), 1),
               "area": int(resized.areas[index])}
    if native is None:
        return {**_mapped_back(row_resized, col_resized, under, size, image_shape), f"at_{size}": at_size}
    native_labels = np.unique(native.labels.ravel()[under])
    native_labels = native_labels[native_labels > 0]
    if not len(native_labels):  # bilinear resizing also draws on the neighbours of the pixel nearest
        around = np.zeros(native.labels.shape, np.uint8)
        around.ravel()[under] = 1
        around = cv2.dilate(around, np.ones((3, 3), np.uint8))
        native_labels = np.unique(native.labels[around > 0])
        native_labels = native_labels[native_labels > 0]
    if len(native_labels):
        areas = native.areas[native_labels - 1]
        row, col = (native.centroids[native_labels - 1] * areas[:, None]).sum(axis=0) / areas.sum()
        return {"row": round(float(row), 1), "col": round(float(col), 1), "area": int(areas.sum()),
                f"at_{size}": at_size}
    return {**_mapped_back(row_resized, col_resized, under, size, image_shape), "resized_only": True,
            f"at_{size}": at_size}


def _each_image_component_once(traced: list[dict], size: int) -> list[dict]:
    """`_traced` entries with those of the same image components (the same centroid and area in the image) merged
    into the first: resizing can split one image component into several at `size` (nearest neighbour drops the
    thin bridge of a larger image), each traced back to all of it. The merged entry's "at_<size>" is those
    components' joint centroid and total area."""
    at = f"at_{size}"
    merged: dict[tuple, dict] = {}
    for entry in traced:
        key = (entry["row"], entry["col"], entry["area"], entry.get("resized_only", False))
        first = merged.setdefault(key, entry)
        if first is not entry:
            areas = np.array([first[at]["area"], entry[at]["area"]], np.float64)
            rows, cols = [first[at]["row"], entry[at]["row"]], [first[at]["col"], entry[at]["col"]]
            merged[key] = {**first, at: {"row": round(float(areas @ rows / areas.sum()), 1),
                                         "col": round(float(areas @ cols / areas.sum()), 1),
                                         "area": int(areas.sum())}}
    return list(merged.values())


def _mapped_back(row: float, col: float, under: np.ndarray, size: int, image_shape: tuple[int, int]) -> dict:
    """A centroid (row, col) at `size` x `size` mapped back to the image by the scale, and the area of the image
    pixels `under` the component (their flat indices, repeated where several resized pixels share one)."""
    height, width = image_shape
    return {"row": round(float((row + 0.5) * height / size - 0.5), 1),
            "col": round(float((col + 0.5) * width / size - 0.5), 1), "area": len(np.unique(under))}


def _nearest_sources(shape: tuple[int, int], size: int) -> np.ndarray:
    """(size, size) map of the flat index of the image pixel that nearest-neighbour resizing (OpenCV's, as
    `resize_ground_truth` does it) takes each pixel from."""
    height, width = shape
    return cv2.resize(np.arange(height * width, dtype=np.int32).reshape(shape), (size, size),
                      interpolation=cv2.INTER_NEAREST)


def _read_pair(sample: Sample, read_image: Callable[[Path], np.ndarray], skipped: list[dict],
               interpolated: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(image, mask) of a sample, or None with the reason appended to `skipped` when either file is unusable;
    the mask's path is appended to `interpolated` when it has values strictly between 0 and 255."""
    try:
        image = read_image(sample.image_path)
        mask, mask_is_interpolated = read_mask_noting_interpolation(sample.mask_path)
        check_sizes_match(sample, image, mask)
    except FrameReadError as error:
        skipped.append({"path": error.path, "reason": error.reason})
        return None
    # only 255 would count as target, so such a "mask" scores IoU 0: refused, where a blurred mask is warned of
    mask_is_the_image = mask_is_interpolated and _same_pixels(read_image, sample.mask_path, image)
    if mask_is_the_image:
        skipped.append({"path": str(sample.mask_path),
                        "reason": "the mask is a copy of its image, not a mask (--masks names a folder of images?)"})
        return None
    if mask_is_interpolated:
        interpolated.append(str(sample.mask_path))
    return image, mask


def _same_pixels(read_image: Callable[[Path], np.ndarray], path: Path, image: np.ndarray) -> bool:
    """Whether the file at `path`, read as the images are, holds `image`'s pixels (False where it cannot be read
    so: an 8-bit mask beside 16-bit frames)."""
    try:
        return np.array_equal(read_image(path), image)
    except FrameReadError:
        return False


def _skipped_record(skipped: list[dict]) -> dict:
    return {"n_skipped": len(skipped), "skipped": skipped}


def clip_frames(clip_dir: str | Path) -> list[Path]:
    """A clip's frames in the order `irsam detect`, `irsam info` and the app number them (app.core.frames):
    the image files of images/ but hidden ones, a broken link included (it is then skipped as unreadable),
    in natural order (f2 before f10). `number_clip_frames` tells which of boxes.csv's frames each one is."""
    files = [p for p in (Path(clip_dir) / "images").iterdir()
             if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
             and (p.is_file() or p.is_symlink() and not p.exists())]
    return sorted(files, key=lambda p: natural_key(p.name))


def evaluate_clip(
    detector: Detector,
    clip_dir: str | Path,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    read_image: Callable[[Path], np.ndarray] = read_image_gray,
    start: int = 0,
    frames: tuple[int, int | None] | None = None,
    no_data: NoDataOf | None = None,
) -> dict:
    """Box-only scoring of a clip folder (images/ + boxes.csv): Pd and false alarms per frame, over the frames
    boxes.csv numbers `frames` (first, last or None for the end; 1-based, inclusive), or else over `limit`
    frames (all when None) from the 0-based frame `start`, counting the files with a frame number only. Each
    frame is scored against the boxes of its frame number (`number_clip_frames`: from its file name where the
    names are frame numbers, as in the clips' images/000001.png, else its position); "frame_numbers" says
    which. The few files whose names are not numbered as the others' are, or give the same number as another
    file's, have no frame number: they are never scored, and "frames_without_number" names every one of them
    (and "frame_numbers_why" says why). `read_image` gives the 8-bit frame
    the detector sees (for 16-bit frames: read, then the clip's window applied); `no_data`, where a frame held no
    data, which is then no target (`logits_without_no_data`).
    An unreadable frame is skipped (listed in "skipped", counted in "n_skipped"). Frames boxes.csv has boxes
    for but images/ has no image for (their targets are never scored: a frame deleted, images missing, or
    another clip's boxes) are listed in "boxes_without_image" (1-based, every one in the file), those past the
    last image also in "boxes_past_the_end"; the frames scored with no box in boxes.csv (scored as frames
    without a target) are named in "frames_without_boxes". A box of a scored frame that covers none of its pixels
    (`box_outside_frame`: an annotation error; no target there can be found) is left out of the scoring and listed
    in "boxes_outside_frame" ({"line", "frame", "box" as boxes.csv writes it, "frame_size" [width, height]})."""
    clip_dir = Path(clip_dir)
    boxes = read_boxes_csv_lines(clip_dir / "boxes.csv")
    numbering = number_clip_frames(clip_frames(clip_dir), boxes)
    files, numbers = numbering.files, numbering.numbers
    if frames is not None:
        scored = numbering.select(*frames)
        span = [frames[0], min(frames[1], numbering.last) if frames[1] is not None else numbering.last]
    else:
        scored = numbering.numbered[start : None if limit is None else start + limit]
        span = [numbers[scored[0]], numbers[scored[-1]]] if scored else [start + 1, start]
    metrics = BoxMetrics()
    seconds = 0.0
    skipped: list[dict] = []
    read: list[int] = []
    outside: list[dict] = []
    for batch in range(0, len(scored), BATCH_SIZE):
        indices, images, no_data_of_images = [], [], []
        for index in scored[batch : batch + BATCH_SIZE]:
            try:
                image = read_image(files[index])
                where = no_data(files[index]) if no_data else None
            except FrameReadError as error:
                skipped.append({"path": error.path, "reason": error.reason})
                continue
            images.append(image)
            no_data_of_images.append(where)
            indices.append(index)
        if images:
            results, elapsed = _timed_detect(detector, images, no_data_of_images)
            seconds += elapsed
            for index, image, result in zip(indices, images, results):
                kept, left_out = split_boxes_outside(boxes.get(numbers[index] - 1, []), numbers[index],
                                                     image.shape[:2])
                outside += left_out
                metrics.update(result.logits, kept)
            read += indices
        if progress:
            progress(min(batch + BATCH_SIZE, len(scored)), len(scored))
    result = {"method": detector.name, "device": detector.device, "clip": str(clip_dir), **metrics.result()}
    result["frames"] = span  # 1-based, inclusive, as in boxes.csv
    result["frame_numbers"] = numbering.by
    result["last_frame"] = numbering.last  # the number of the clip's last image
    if numbering.why:
        result["frame_numbers_why"] = numbering.why
    result["frames_per_second"] = (len(scored) - len(skipped)) / seconds if seconds > 0 else float("nan")
    result.update(_skipped_record(skipped))
    imaged = set(numbers) - {None}
    result["boxes_without_image"] = sorted(index + 1 for index in boxes if index + 1 not in imaged)
    result["boxes_past_the_end"] = [n for n in result["boxes_without_image"] if n > numbering.last]
    result["frames_without_boxes"] = [files[k].name for k in read if numbers[k] - 1 not in boxes]
    result["frames_without_number"] = [f.name for f in numbering.unnumbered]
    result["boxes_outside_frame"] = sorted(outside, key=lambda entry: entry["line"])
    return result


# --- plots ----------------------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 640, 480
_LEFT, _RIGHT, _TOP, _BOTTOM = 80, 30, 50, 60
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def plot_curve(
    x: np.ndarray,
    y: np.ndarray,
    path: str | Path,
    title: str,
    x_label: str,
    y_label: str,
    x_log: bool = False,
    y_range: tuple[float, float] = (0.0, 1.0),
    in_given_order: bool = False,
) -> None:
    """A line plot written as PNG, through the points in order of x (then y), or as given (`in_given_order`: a
    threshold sweep, whose Pd need not rise with Fa). With `x_log`, x = 0 (a Pd-Fa operating point with no false
    alarm, the ROC's first point) is drawn at a "0" tick a decade left of the smallest positive x; negative x are
    dropped."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y) & ((x >= 0) if x_log else True)
    x, y = x[keep], y[keep]
    canvas = np.full((_HEIGHT, _WIDTH, 3), 255, np.uint8)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    if x_log and len(x):
        positive = x[x > 0]
        logs = np.log10(positive) if len(positive) else np.zeros(1)
        low, high = np.floor(logs.min()), np.ceil(logs.max())
        zero_at = low - 1 if (x == 0).any() else None
        x_axis = np.log10(np.where(x > 0, x, 1.0))
        if zero_at is not None:
            x_axis[x == 0] = zero_at
            low = zero_at
        high = max(high, low + 1)
        x_ticks = np.arange(low, high + 1)
        x_tick_labels = ["0" if t == zero_at else f"1e{int(t)}" for t in x_ticks]
    else:
        x_axis = x
        low, high = (float(x.min()), float(x.max())) if len(x) else (0.0, 1.0)
        if high <= low:
            high = low + 1.0
        x_ticks = np.linspace(low, high, 6)
        x_tick_labels = [f"{t:.3g}" for t in x_ticks]
    y_low, y_high = y_range

    def to_pixel(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        px = _LEFT + (xs - low) / (high - low) * plot_w
        py = _TOP + plot_h - (ys - y_low) / (y_high - y_low) * plot_h
        return np.stack([px, py], axis=1).round().astype(np.int32)

    black, grey = (0, 0, 0), (220, 220, 220)
    for tick, label in zip(x_ticks, x_tick_labels):
        (px, _), = to_pixel(np.array([tick]), np.array([y_low]))
        cv2.line(canvas, (px, _TOP), (px, _TOP + plot_h), grey, 1)
        cv2.putText(canvas, label, (px - 18, _TOP + plot_h + 20), _FONT, 0.4, black, 1, cv2.LINE_AA)
    for tick in np.linspace(y_low, y_high, 6):
        (_, py), = to_pixel(np.array([low]), np.array([tick]))
        cv2.line(canvas, (_LEFT, py), (_LEFT + plot_w, py), grey, 1)
        cv2.putText(canvas, f"{tick:.2f}", (_LEFT - 45, py + 4), _FONT, 0.4, black, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (_LEFT, _TOP), (_LEFT + plot_w, _TOP + plot_h), black, 1)
    if len(x):
        order = np.arange(len(x)) if in_given_order else np.lexsort((y, x_axis))
        points = to_pixel(x_axis[order], np.clip(y[order], y_low, y_high))
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, (200, 80, 0), 2, cv2.LINE_AA)
    cv2.putText(canvas, title, (_LEFT, _TOP - 18), _FONT, 0.55, black, 1, cv2.LINE_AA)
    cv2.putText(canvas, x_label, (_LEFT + plot_w // 2 - 60, _HEIGHT - 15), _FONT, 0.5, black, 1, cv2.LINE_AA)
    label_image = np.full((30, plot_h, 3), 255, np.uint8)
    cv2.putText(label_image, y_label, (plot_h // 2 - 40, 20), _FONT, 0.5, black, 1, cv2.LINE_AA)
    canvas[_TOP : _TOP + plot_h, 5:35] = cv2.rotate(label_image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"cannot write {path}")


def plot_name(result: dict) -> str:
    """What the plots of `result` are named after: its method, and for a network the folder and stem of its weights
    file (result["weights"]["path"], as irsam eval records it, resolved: runs/a/best.pt gives irsam_a_best, and so
    does best.pt typed in runs/a), so that the plots of several checkpoints, a training run's best.pt among others,
    can be written into one folder."""
    weights = result.get("weights")
    if not weights:
        return result["method"]
    path = Path(weights["path"]).resolve()
    return "_".join(part for part in (result["method"], path.parent.name, path.stem) if part)


def write_curve_plots(result: dict, plots_dir: str | Path) -> list[Path]:
    """roc_<name>.png (pixel ROC) and pd_fa_<name>.png (Pd against Fa from the threshold sweep), <name> the
    `plot_name` of `result`."""
    plots_dir = Path(plots_dir)
    method, name = result["method"], plot_name(result)
    roc, pd_fa = result["roc"], result["pd_fa_curve"]
    roc_path, pd_fa_path = plots_dir / f"roc_{name}.png", plots_dir / f"pd_fa_{name}.png"
    plot_curve(  # log: a detector works at false positive rates of 1e-5, which a linear axis squeezes into its edge
        roc["fpr"], roc["tpr"], roc_path, f"{method}: pixel ROC, AUC {roc['auc']:.4f}",
        "false positive rate (log)", "true positive rate", x_log=True,
    )
    order = np.argsort(pd_fa["thresholds"])[::-1]  # from the highest threshold down: the sweep's own path
    plot_curve(
        (np.asarray(pd_fa["fa"]) * 1e6)[order], np.asarray(pd_fa["pd"])[order], pd_fa_path,
        f"{method}: Pd-Fa curve (threshold sweep, {result['fa_mode']} Fa)", "Fa x 1e-6 (log)", "Pd", x_log=True,
        in_given_order=True,
    )
    return [roc_path, pd_fa_path]
