"""`irsam eval`: IoU / nIoU / Pd / Fa of IRSAM or a classical method over a data set or a box-annotated clip."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from app.commands import (add_normalization_options, add_size_gate_options, add_target_size_option,
                          add_threshold_k_option, check_device_fallback, normalization_request_of, positive_int,
                          size_gate_of, warn_classical_only, warn_irsam_only)
from model.atomic import encode_json, json_values, write_output_file
from app.core.frames import FrameReadError, SourceError, open_source, read_gray
from app.core.normalization import NormalizationRequest, no_data_pixels
from model.classical import make_classical_detector
from model.config import PRESETS
from model.data import (counted, describe_interpolated_masks, find_dataset, natural_key, read_image_gray,
                        stack_samples)
from model.detectors import REFINE_MODES, TTA_MODES
from model.evaluate import (available_methods, clip_frames, evaluate_clip, evaluate_dataset, make_detector,
                            resume_state_warning_to, write_curve_plots)
from model.metrics import (ClipNumbering, InterpolatedMaskWarning, describe_boxes_outside, number_clip_frames,
                           read_boxes_csv)
from model.refine import refinement_record
from model.size_gate import gated


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a detector on a data set (masks) or a clip (boxes)",
        description="Metrics as in shared/spec/metrics.md: IoU pooled, nIoU per-image mean, Pd/Fa with "
        "8-connected components and a < 3 px centroid match.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", help="IRSAM checkpoint file")
    which.add_argument("--method", choices=available_methods(), help="classical method")
    p.add_argument("--config", choices=tuple(PRESETS),
                   help="network of a --weights file that does not name one (a bare state_dict); a file that "
                        "names another network is refused")
    p.add_argument("--images", help="folder of images (16-bit ones are mapped to 8 bits by one window for the "
                                    "whole folder, whatever --split or --limit select, percentiles unless "
                                    "--window/--percentiles say otherwise, with its bad pixels repaired unless "
                                    "--no-bad-pixel-repair, as irsam detect and the app do for a sequence; a frame of another sample type than the "
                                    "folder's is skipped and named, as they skip it; a float frame's no-data pixels, "
                                    "NaN or infinite, are no target, as they leave them out of their proposals), or a "
                                    "TIFF stack, whose "
                                    "pages are paired with the masks by the names detect gives them "
                                    "(STACK_000001, ...; make-demo --tiff writes such masks)")
    p.add_argument("--masks", help="folder of 0/255 masks (<stem>.png or <stem>_pixels0.png)")
    p.add_argument("--split", help="text file listing the stems to evaluate (default: every image)")
    p.add_argument("--clip", help="clip folder with images/ and boxes.csv (box-only scoring; 16-bit frames are "
                                  "normalised as --images ones are, by the whole clip's window whatever --limit or "
                                  "--frames select). Frames are paired with boxes.csv's frame numbers by their file "
                                  "names (images/000001.png is frame 1; names from 000000 are taken as 0-based) "
                                  "where the names are frame numbers, else by position (the k-th image is frame k); "
                                  "where at most one name in ten is not numbered as the others are (a copy "
                                  "000040a.png) or gives another's number (000040.jpg beside 000040.png), those "
                                  "images are not scored, and are named")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N frames or samples (of a "
                   "--clip: its first N images with a frame number)")
    p.add_argument("--frames", type=frame_range, metavar="A-B",
                   help="with --clip: only frames A to B (1-based, inclusive, as boxes.csv numbers them; 'A-' to "
                        "the end), e.g. the frames after those reviewed and fine-tuned on")
    p.add_argument("--json", dest="json_out",
                   help="write the results here as JSON (an undefined value, such as Pd with no target, is null)")
    p.add_argument("--plots", metavar="DIR",
                   help="folder for the ROC and Pd-Fa curve PNGs (data sets only): roc_NAME.png and pd_fa_NAME.png, "
                        "NAME the --method, or for --weights irsam_FOLDER_STEM, the weights file's folder and name "
                        "less its extension (runs/a/best.pt: roc_irsam_a_best.png), so that the plots of several "
                        "checkpoints can share a folder; none for a data set with no target (ROC and Pd-Fa are then "
                        "undefined)")
    p.add_argument("--errors", action="store_true",
                   help="also list each image's missed targets and false alarms (centroid row, col and area, in "
                        "the image's own pixels, also with --resize-512, where targets are matched at 512x512) "
                        "and Pd by target area, after the table and in the JSON (data sets only)")
    p.add_argument(
        "--fa", choices=["corrected", "legacy"], default="corrected",
        help="legacy: drop unmatched components whose area equals a matched one (DNANet / official IRSAM)",
    )
    p.add_argument(
        "--resize-512", action="store_true",
        help="score at 512x512 like the official IRSAM code (logits bilinear, masks nearest; a network that runs "
             "at 512x512, config official, is scored on its own 512x512 logits, refined there with --refine)",
    )
    # IRSAM-only options default to None so that giving one with a classical --method can be warned about
    p.add_argument("--device", help="device for --weights (auto, cpu, cuda or cuda:N; default auto)")
    p.add_argument("--tta", choices=TTA_MODES,
                   help="IRSAM only: average the logits of flipped (hflip, flips) and 1.25x magnified "
                        "(scale, scale+flips) passes (default none)")
    p.add_argument("--refine", choices=REFINE_MODES,
                   help="IRSAM only: contrast (default) fits each detected target to its local contrast, "
                        "trimming the dim halo and growing a confident target 1 px into its bright rim "
                        "(model/refine.py); trim only trims; off scores the network's own mask")
    add_target_size_option(p)
    add_threshold_k_option(p)
    add_size_gate_options(p)
    add_normalization_options(p)
    p.set_defaults(run=run)


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.2f}"


def format_dataset_table(result: dict) -> str:
    header = f"{'method':<10} {'IoU':>7} {'nIoU':>7} {'Pd':>7} {'Fa x1e-6':>10} {'frames/s':>9}"
    row = (
        f"{result['method']:<10} {_percent(result['iou']):>7} {_percent(result['niou']):>7} "
        f"{_percent(result['pd']):>7} {result['fa'] * 1e6:>10.2f} {result['frames_per_second']:>9.1f}"
    )
    return f"{header}\n{row}"


def format_errors(errors: dict) -> str:
    """Pd by target area, then one line per image with a missed target or a false alarm: centroid (row, col)
    and area in the image's own pixels (with --resize-512 too: the first line says targets were matched at
    512x512, and a false alarm that only the resized logits hold says so)."""
    bins = ", ".join(f"{label} {b['hits']}/{b['targets']}" for label, b in errors["pd_by_target_area"].items())
    matched_at = errors.get("matched_at")
    where = f" (targets matched at {matched_at}; positions and areas in image pixels)" if matched_at else ""
    lines = [f"Pd by target area{where}: {bins}"]

    def described(c: dict) -> str:
        return f"({c['row']:.0f}, {c['col']:.0f}) {c['area']} px" + (
            f" (only at {matched_at})" if c.get("resized_only") else "")

    for frame in errors["frames"]:
        parts = [f"{kind} " + ", ".join(map(described, found))
                 for kind, found in (("missed", frame["missed"]), ("false alarm", frame["false_alarms"])) if found]
        lines.append(f"  {frame['image']}: " + "; ".join(parts))
    if not errors["frames"]:
        lines.append("  no missed target and no false alarm")
    return "\n".join(lines)


def format_network_input_scoring(scoring: dict) -> str:
    """The note saying what --resize-512 scored for a network that runs at 512x512 (model.evaluate.
    network_input_scoring)."""
    parts = [f"scored {scoring['prediction']}"]
    if scoring["refinement"]:
        parts.append(f"refined {scoring['refinement']}")
    if scoring["tta"]:
        parts.append(f"test-time augmentation: {scoring['tta']}")
    return "note: " + "; ".join(parts)


def format_clip_table(result: dict) -> str:
    header = f"{'method':<10} {'frames':>9} {'Pd':>7} {'FA/frame':>9} {'Fa x1e-6':>10} {'frames/s':>9}"
    first, last = result["frames"]
    row = (
        f"{result['method']:<10} {f'{first}-{last}':>9} {_percent(result['pd']):>7} "
        f"{result['false_alarms_per_frame']:>9.3f} {result['fa'] * 1e6:>10.2f} {result['frames_per_second']:>9.1f}"
    )
    return f"{header}\n{row}"


class SetFrames:
    """The frames of a folder (a clip's images/, a data set's images) as `irsam detect`, `irsam info` and the
    app open it (`open_source`), so that each is scored as they would see it, whatever part of the folder is
    evaluated (--limit, --frames, --split) and whatever else was selected with it:

    - `window`: the normalisation they would use for the whole folder (`NormalizationRequest.for_source`:
      percentiles of up to 32 frames spread over all of it, and for 16-bit frames its bad pixels, found only
      in 8 or more frames of one size), or None for 8-bit frames with none asked for (read as they are);
    - `read(path)`: a file's 8-bit image through that window. Through a window, a file that is not one of the
      folder's frames as they take them (another sample type than the folder's, such as a stray 8-bit frame
      in a 16-bit folder, or in a clip another size) raises FrameReadError saying so: it is skipped and
      named, as detect and info skip it, rather than mapped through a window made for other values;
    - `no_data(path)`: where that frame holds no data (NaN or infinite pixels of a float frame), which detect and
      the app leave out of their proposals, and so eval out of the scored ones."""

    def __init__(self, folder: str | Path, request: NormalizationRequest):
        try:
            self.source = open_source(folder, cache_size=2, prefetch=0)
        except SourceError:  # no readable image: each file is skipped, and named, when it is read
            self.source = None
        self.window = None
        if self.source is not None and not (self.source.dtype == np.uint8 and request.is_default):
            self.window = request.for_source(self.source)
        files = getattr(self.source, "files", [])
        if self.source is not None and self.source.kind == "tiff":  # pages, named STACK/<stem> (`stack_samples`)
            files = [Path(folder) / stem for stem in self.source.stems]
            self.window = self.window or request.for_source(self.source)  # (8-bit pages: the identity window)
        self._index = {os.path.abspath(file): i for i, file in enumerate(files)}
        self._not_frames = {os.path.abspath(bad.path): bad.reason for bad in getattr(self.source, "bad_frames", [])
                            if bad.index is None}  # such as a second file of the same stem
        self._last_read: tuple[str, np.ndarray | None] | None = None  # (path, its no-data pixels) of the last `read`

    def read(self, path) -> np.ndarray:
        if self.window is None:
            return read_image_gray(path)
        where = os.path.abspath(path)
        i = self._index.get(where)
        if i is not None:
            frame = self.source.frame(i)
        elif where in self._not_frames:
            raise FrameReadError(path, self._not_frames[where])
        else:
            frame = self._raw(path)
        image, no_data = self.window.apply_with_no_data(frame)
        self._last_read = where, no_data
        return image

    def no_data(self, path) -> np.ndarray | None:
        """Where the frame `read(path)` gave holds no data (bool HxW), None where it holds data everywhere: as that
        read found it when it was the last one (asked just after it, as the evaluation asks), else from the frame."""
        if self.window is None or self.source.dtype.kind != "f":  # integer frames hold data everywhere
            return None
        where = os.path.abspath(path)
        if self._last_read is not None and self._last_read[0] == where:
            return self._last_read[1]
        i = self._index.get(where)
        return no_data_pixels(self.source.frame(i) if i is not None else self._raw(path))

    def _raw(self, path) -> np.ndarray:
        """A file the folder's listing leaves out, read as it is; FrameReadError for another sample type."""
        image = read_gray(path)
        if image.dtype != self.source.dtype:
            raise FrameReadError(path, f"sample type {image.dtype} differs from the sequence's {self.source.dtype}")
        return image

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def frame_range(text: str) -> tuple[int, int | None]:
    """argparse type for --frames: "A-B" or "A-" -> (A, B or None), 1 <= A <= B."""
    first, dash, last = text.partition("-")
    try:
        a, b = int(first), (int(last) if last else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A-B or A-, got {text!r}") from None
    if not dash or a < 1 or (b is not None and b < a):
        raise argparse.ArgumentTypeError(f"expected A-B with 1 <= A <= B, or A-, got {text!r}")
    return a, b


def check_clip_folder(clip: str) -> None:
    """ValueError saying what a --clip folder lacks, unless it holds images/ and boxes.csv."""
    folder = Path(clip)
    if not folder.is_dir():
        what = "a file, not a folder" if folder.exists() else "no such folder"
        hint = f" (give {folder.parent})" if folder.name == "boxes.csv" else ""
        raise ValueError(f"--clip {clip}: {what}; --clip takes a clip folder holding images/ and boxes.csv{hint}")
    missing = [name for name, there in (("images/ folder", (folder / "images").is_dir()),
                                        ("boxes.csv", (folder / "boxes.csv").is_file())) if not there]
    if missing:
        hint = (f" (this is the frames folder of {folder.parent}: give that)"
                if folder.name == "images" and (folder.parent / "boxes.csv").is_file() else "")
        raise ValueError(f"--clip {clip}: no {' and no '.join(missing)} in it; --clip takes a clip folder holding "
                         f"its frames in images/ and their boxes in boxes.csv{hint}")


def check_data_paths(images: str, masks: str) -> str:
    """What --images is, "folder" or "stack" (a file, read as a TIFF stack); ValueError naming each of --images and
    --masks that does not exist, and a --masks that is a file."""
    problems = []
    if not Path(images).exists():
        problems.append(f"--images {images}: no such folder or TIFF stack")
    if not Path(masks).is_dir():
        problems.append(f"--masks {masks}: " + ("a file; give the folder of the masks" if Path(masks).exists()
                                                else "no such folder"))
    if problems:
        raise ValueError("; ".join(problems))
    return "stack" if Path(images).is_file() else "folder"


def run(args: argparse.Namespace) -> int:
    if args.frames and not args.clip:
        return _error("--frames selects frames of a --clip")
    if args.frames and args.limit:
        return _error("give --frames or --limit, not both")
    if args.clip and (args.images or args.masks or args.split):
        return _error("--clip cannot be combined with --images/--masks/--split")
    if not args.clip and not (args.images and args.masks):
        return _error("give --images and --masks, or --clip")
    if args.clip and (args.plots or args.errors):
        return _error(f"{'--plots' if args.plots else '--errors'} needs pixel ground truth (--images/--masks)")
    if args.clip and (args.resize_512 or args.fa != "corrected"):
        # boxes are scored by centroid in box, at native size: there is no 512x512 or legacy-Fa variant of it
        why = ("are scored at native size" if args.resize_512
               else "give false alarms per frame, not a count of false-alarm pixels")
        return _error(f"{'--resize-512' if args.resize_512 else '--fa legacy'} needs pixel ground truth "
                      f"(--images/--masks): a clip's boxes {why}")
    try:
        request = normalization_request_of(args)
        gate = size_gate_of(args)
        _check_writable(args.json_out, args.plots, _inputs_read(args))
    except ValueError as e:
        return _error(str(e))
    if args.method:
        warn_irsam_only([f"--{name}" for name in ("config", "tta", "refine", "device")
                         if getattr(args, name) is not None], args.method)
        options = {}
    else:
        warn_classical_only([option for option, value in (
            ("--target-size", args.target_size), ("--threshold-k", args.threshold_k)) if value is not None],
            "--weights")
        options = {"tta": args.tta or "none", "refine": args.refine or "contrast"}
    frames = None
    try:
        if args.clip:
            check_clip_folder(args.clip)
            numbering = number_clip_frames(clip_frames(args.clip), read_boxes_csv(Path(args.clip) / "boxes.csv"))
            # the few images with no frame number are not scored, nor counted by --limit: its first N frames
            n_frames = len(numbering.numbered)
            n_inputs = min(n_frames, args.limit or n_frames)
            if args.frames and numbering.files:  # a bad file or range is reported before the weights load
                n_inputs = len(_frames_asked(numbering, *args.frames))
                if args.frames[1] is not None and args.frames[1] > numbering.last:
                    print(f"warning: --frames {_range_text(*args.frames)}: the clip's last frame is {numbering.last}; "
                          f"scoring frames {args.frames[0]} to {numbering.last}", file=sys.stderr)
        elif check_data_paths(args.images, args.masks) == "stack":  # its pages, as detect and the app number them
            frames = SetFrames(args.images, request)
            if frames.source is None or frames.source.kind != "tiff":
                raise ValueError(f"--images {args.images} is neither a folder of images nor a readable TIFF stack")
            inputs = stack_samples(args.images, frames.source.stems, args.masks, args.split)[: args.limit]
            n_inputs = len(inputs)
        else:
            if Path(args.images).resolve() == Path(args.masks).resolve():
                raise ValueError(f"--masks {args.masks} is the --images folder: give the folder of the masks")
            inputs = find_dataset(args.images, args.masks, args.split)
            if not args.split:  # the order irsam detect and info take a folder's frames in, for the same --limit
                inputs.sort(key=lambda sample: natural_key(sample.stem))
            inputs = inputs[: args.limit]
            n_inputs = len(inputs)
        if not n_inputs:
            raise ValueError(f"no images to evaluate in {args.clip or args.split or args.images}")
        # the window of the whole folder, as detect and the app take it, whatever part of it is evaluated
        frames = frames or SetFrames(Path(args.clip) / "images" if args.clip else args.images, request)
        window = frames.window
        detector = gated(_make_detector(args, options), gate)
        if args.clip:
            result = evaluate_clip(detector, args.clip, limit=args.limit, read_image=frames.read, frames=args.frames,
                                   no_data=frames.no_data)
            table = format_clip_table(result)
        else:
            with warnings.catch_warnings():  # the masks it names are reported below, with the skipped files
                warnings.simplefilter("ignore", InterpolatedMaskWarning)
                result, _ = evaluate_dataset(
                    detector, inputs, fa_mode=args.fa, resize_to=512 if args.resize_512 else None,
                    curves=bool(args.plots), read_image=frames.read, errors=args.errors, no_data=frames.no_data,
                )
            table = format_dataset_table(result)
            if args.errors:
                table += "\n" + format_errors(result["errors"])
    except (ValueError, OSError) as e:  # OSError: a missing or unreadable folder, split file or boxes.csv
        return _error(str(e))
    finally:
        if frames is not None:
            frames.close()
    for bad in result["skipped"]:
        print(f"skipped {bad['path']}: {bad['reason']}", file=sys.stderr)
    if args.clip:
        _warn_about_clip_numbering(result, Path(args.clip))
    if result.get("n_interpolated_masks"):
        masks = result["interpolated_masks"]
        print(f"warning: {describe_interpolated_masks(masks, result['n_images'])}", file=sys.stderr)
    scored = result["n_frames" if args.clip else "n_images"]
    if not scored:
        return _error(f"none of the {result['n_skipped']} images could be scored")
    if window:
        result["normalization"] = window.to_dict()
    result["detector_options"] = {**options, "refinement": refinement_record(options["refine"])} if options else {}
    if args.method:  # as the detector resolved them (None: the method's defaults)
        result["detector_options"].update(target_size=detector.target_size, threshold_k=detector.k)
    result.update(_inputs_record(args))
    if not args.method:  # what the network was scored with: a resume state (last.pt) has threshold 0
        result["weights"].update(decision_threshold=detector.decision_threshold,
                                 resume_state=detector.metadata.get("resume_state"))
    if gate.active:
        result["detector_options"]["size_gate"] = gate.to_dict()
    print(table)
    if "network_input_scoring" in result:
        print(format_network_input_scoring(result["network_input_scoring"]), file=sys.stderr)
    if result["n_skipped"]:
        print(f"{result['n_skipped']} of {result['n_skipped'] + scored} skipped as unusable (listed on stderr); "
              "the metrics exclude them")
    return _write_outputs(result, args.json_out, args.plots)


def _frames_asked(numbering: ClipNumbering, first: int, last: int | None) -> list[int]:
    """The clip's frames --frames first-last selects (indices into numbering.files); ValueError when none."""
    if first > numbering.last:
        count = len(numbering.numbered)  # (images with no frame number are none of them)
        numbered = f", the last numbered {numbering.last}" if numbering.last != count else ""
        raise ValueError(f"--frames {_range_text(first, last)}: the clip has {count} frames{numbered}")
    selected = numbering.select(first, last)
    if not selected:
        raise ValueError(f"--frames {_range_text(first, last)}: images/ has no image for frames {first} to "
                         f"{last or 'the end'} (frames are told by {_numbering_text(numbering)})")
    return selected


def _range_text(first: int, last: int | None) -> str:
    """--frames as the user gave it: "A-B" or "A-"."""
    return f"{first}-{'' if last is None else last}"


def _numbering_text(numbering: ClipNumbering | dict) -> str:
    by = numbering.by if isinstance(numbering, ClipNumbering) else numbering["frame_numbers"]
    return {"name": "their file names, the number a name ends in",
            "name, 0-based": "their file names, numbered from 0: the number a name ends in, plus 1",
            "position": "their position in images/: the k-th image is frame k"}[by]


def _warn_about_clip_numbering(result: dict, clip: Path) -> None:
    """Name boxes.csv's frames with no image, the images not scored for having no frame number, the frames scored
    with no box, and frames told by position."""
    boxes = clip / "boxes.csv"
    past, without = result["boxes_past_the_end"], result["boxes_without_image"]
    if past:
        print(f"warning: {boxes} has boxes for {counted(len(past), 'frame', 'frames')} past the clip's last image "
              f"({result['last_frame']}): frame {past[0]}{' and more' if len(past) > 1 else ''}; their "
              "targets are not scored", file=sys.stderr)
    if gaps := [n for n in without if n not in past]:
        shown = ", ".join(map(str, gaps[:5])) + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
        print(f"warning: {boxes} has boxes for {len(gaps)} frame{'s' if len(gaps) > 1 else ''} that images/ has no "
              f"image for (frames are told by {_numbering_text(result)}): frame{'s' if len(gaps) > 1 else ''} "
              f"{shown}; their targets are not scored", file=sys.stderr)
    if result["frame_numbers"] == "position" and result.get("frame_numbers_why"):
        print(f"note: frames are paired with {boxes}'s frame numbers by {_numbering_text(result)}, not by "
              f"their file names ({result['frame_numbers_why']})", file=sys.stderr)
    elif unnumbered := result["frames_without_number"]:
        print(f"warning: {len(unnumbered)} image{'s' if len(unnumbered) > 1 else ''} of images/ not scored; frames "
              f"are paired with {boxes}'s frame numbers by {_numbering_text(result)}: {result['frame_numbers_why']}",
              file=sys.stderr)
    elif result.get("frame_numbers_why"):  # by name, with a choice made (counted from 0, or either count fits)
        print(f"note: frames are paired with {boxes}'s frame numbers by {_numbering_text(result)}: "
              f"{result['frame_numbers_why']}", file=sys.stderr)
    if outside := result["boxes_outside_frame"]:
        print(f"warning: {describe_boxes_outside(boxes, outside, 'left out of the scoring')}", file=sys.stderr)
    if empty := result["frames_without_boxes"]:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        print(f"note: {len(empty)} of the {result['n_frames']} frames scored have no box in {boxes} and are scored "
              f"as frames without a target: {shown}", file=sys.stderr)


def _inputs_record(args: argparse.Namespace) -> dict:
    """What the results were made from, so that a JSON file tells it: the weights (absolute path, sha256) or None
    for a classical method, and the data's absolute paths (images, masks and split file, or the clip's)."""
    from app.core.provenance import sha256_of

    def absolute(path: str | None) -> str | None:
        return None if path is None else os.path.abspath(path)

    weights = None if args.method else {"path": absolute(args.weights), "sha256": sha256_of(args.weights)}
    if args.clip:
        data = {"clip": absolute(args.clip), "images": absolute(str(Path(args.clip) / "images")),
                "boxes": absolute(str(Path(args.clip) / "boxes.csv"))}
    else:
        data = {"images": absolute(args.images), "masks": absolute(args.masks), "split": absolute(args.split)}
    return {"weights": weights, "data": data}


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _make_detector(args: argparse.Namespace, options: dict):
    if args.method:
        return make_classical_detector(args.method, args.target_size, args.threshold_k)
    from model.checkpoint import CheckpointError, check_weights_path  # imports torch: only for --weights

    device = args.device or "auto"
    try:
        # an empty --weights (an unset shell variable) or a directory is said as such, not as a file not found
        path = check_weights_path(args.weights)
        with resume_state_warning_to(lambda message: print(f"warning: {message}", file=sys.stderr)):
            detector = make_detector(None, str(path), device, config_name=args.config, **options)
    except CheckpointError as e:
        raise ValueError(str(e)) from None
    check_device_fallback(device, detector)
    return detector


def _inputs_read(args: argparse.Namespace) -> list[tuple[str, str, bool]]:
    """(what it is, path, whether it is a folder) of each input the evaluation reads: the --images folder (or TIFF
    stack), the --masks folder, the --split file, the --weights file, or a --clip's images/ and boxes.csv."""
    if args.clip:
        inputs = [("the --clip's frames folder", str(Path(args.clip) / "images"), True),
                  ("the --clip's boxes file", str(Path(args.clip) / "boxes.csv"), False)]
    else:
        stack = bool(args.images) and Path(args.images).is_file()
        inputs = [(f"the --images {'stack' if stack else 'folder'}", args.images, not stack),
                  ("the --masks folder", args.masks, True), ("the --split file", args.split, False)]
    return [entry for entry in [*inputs, ("the --weights file", args.weights, False)] if entry[1]]


def _check_not_an_input(option: str, given: str, written: Path, inputs: list[tuple[str, str, bool]]) -> None:
    """ValueError when `written` (the resolved path of the output `option` `given`) is one of `inputs` or lies in
    one of their folders: the results would overwrite, or be added to, the data being scored."""
    through = f" (resolved: {written})" if os.path.abspath(given) != str(written) else ""
    for what, path, is_folder in inputs:
        read = Path(os.path.realpath(path))
        if is_folder and read in written.parents:
            raise ValueError(f"{option} {given}{through} is inside {what} {path}: eval writes nothing into the data "
                             "it scores; give a path outside it")
        if written == read:
            raise ValueError(f"{option} {given}{through} is {what} {path}: "
                             + ("eval writes nothing into the data it scores; give another folder" if is_folder
                                else "writing the results would overwrite it; give another path"))


def _check_writable(json_out: str | None, plots: str | None, inputs: list[tuple[str, str, bool]] = ()) -> None:
    """Refuse, before a long evaluation, output paths that could not be written, or that are among the `inputs`
    it reads (`_inputs_read`) or inside their folders (ValueError)."""
    if json_out and Path(json_out).is_dir():
        raise ValueError(f"--json {json_out} is a folder; give a file name")
    target = json_out and Path(os.path.realpath(json_out))  # written through a link, as the shell's > would
    if json_out and Path(json_out).exists() and not Path(json_out).is_file() and os.access(json_out, os.W_OK):
        target = None  # a pipe or a device (/dev/stdout) is written into, whatever its folder allows
    if target:
        _check_not_an_input("--json", json_out, target, inputs)
    if plots:
        _check_not_an_input("--plots", plots, Path(os.path.realpath(plots)), inputs)
    for option, folder in (("--json", target and target.parent), ("--plots", plots and Path(plots))):
        if folder:
            # the nearest folder that exists is where the missing ones would be created
            existing = next(p for p in (folder, *folder.parents) if p.exists())
            if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
                raise ValueError(f"{option}: cannot write into {folder} ({existing} is not a writable folder)")


def _write_outputs(result: dict, json_out: str | None, plots: str | None) -> int:
    """Plots, then JSON (recording the plots written); a failed write is reported and the other still tried."""
    failed = False
    if plots and not result["n_targets"]:
        result["plots"] = []
        print(f"note: no plots written into {plots}: the masks hold no target to detect, so ROC and Pd-Fa are "
              "undefined", file=sys.stderr)
    elif plots:
        try:
            result["plots"] = [str(p) for p in write_curve_plots(result, plots)]
        except OSError as e:
            print(f"error: writing the plots into {plots}: {e}", file=sys.stderr)
            failed = True
    if json_out:
        try:
            write_output_file(json_out, encode_json(json_values(json.loads(json.dumps(result, default=float)))))
        except OSError as e:
            print(f"error: writing {json_out}: {e}", file=sys.stderr)
            failed = True
    return 2 if failed else 0
