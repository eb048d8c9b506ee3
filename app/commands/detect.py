"""`irsam detect`: run a detector over a folder, a TIFF stack or one image into a review project.

Decoding + normalisation (a reader thread) and PNG writing (a pool of writer threads) overlap with
the network, so the end-to-end rate stays close to the model's own. One writer cannot keep up with a
GPU: encoding, target extraction and fsync of each frame's files take several ms
(`benchmarks/bench_pipeline.py` profiles them).
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Set
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from app.commands import (Terminated, add_normalization_options, add_size_gate_options, add_target_size_option,
                          add_threshold_k_option, check_device_fallback, interruption, normalization_request_of,
                          positive_int, sigterm_as_interrupt, size_gate_of, warn_classical_only, warn_irsam_only)
from app.core.frames import FrameReadError, SourceError, frame_digest, frames_folder, open_source
from app.core.normalization import Normalization, without_no_data
from app.core.project import ProjectError, ReviewProject, is_project, utc_now
from app.core.provenance import ProposalOrigin, detector_record
from app.core.locks import DETECT_LOCK, DetectionLock, DetectionRunningError
from app.paths import DEFAULT_WEIGHTS
from model.config import PRESETS
from model.data import counted, name_some
from model.detectors import REFINE_MODES, TTA_MODES
from model.evaluate import available_methods

DEFAULT_WRITERS = min(4, os.cpu_count() or 1)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "detect",
        help="run IRSAM or a classical detector over frames into a review project",
        description="Writes OUT/masks/<stem>.png (0/255), OUT/detections.csv and OUT/project.json (the review "
        "project the app opens); IRSAM also writes its edge maps, OUT/edges/<stem>.png (the classical methods have "
        "none); with --save-logits also OUT/logits/<stem>.npy.",
    )
    p.add_argument("source", help="folder of frames, multi-page TIFF or one image")
    p.add_argument("--out", required=True,
                   help="project folder (created; an existing project of the same source is updated and keeps "
                        "its normalisation: --window/--percentiles/--no-bad-pixel-repair must then ask for that one or be "
                        "left out)")
    p.add_argument("--follow-source", action="store_true",
                   help="let an existing --out project made over another source path take SOURCE as its source "
                        "(a clip moved or copied elsewhere; refused without this option). Its proposals, committed "
                        "masks and statuses stay. Those that recorded a fingerprint of the pixels they were made on "
                        "and whose frame now differs are flagged (irsam info OUT) and export skips them; work saved "
                        "without one (before fingerprints were recorded) cannot be checked, and is taken as made on "
                        "SOURCE's frames")
    p.add_argument("--method", default="irsam", choices=["irsam", *available_methods()], help="detector (default: irsam)")
    p.add_argument("--weights", help=f"IRSAM checkpoint (default: {DEFAULT_WEIGHTS.relative_to(DEFAULT_WEIGHTS.parents[2])})")
    p.add_argument("--config", choices=tuple(PRESETS),
                   help="network of a weights file that does not name one (a bare state_dict); a file that names "
                        "another network is refused")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--tta", default="none", choices=TTA_MODES,
                   help="test-time augmentation: passes averaged (flips: 2 or 4; scale: plus a 1.25x magnified "
                        "pass, 2.6x the time; scale+flips: 10x). With the shipped weights they do not help on "
                        "NUAA-SIRST test (model card); try them on frames unlike the training data")
    p.add_argument("--refine", default="contrast", choices=REFINE_MODES,
                   help="IRSAM only: contrast (default) fits each detected target to its local contrast, the "
                        "outline annotators draw: pixels above a quarter of it stay, and a confident target "
                        "grows 1 px into neighbours above 0.4 of it; trim only trims; off keeps the network's mask")
    add_target_size_option(p)
    add_threshold_k_option(p)
    add_size_gate_options(p)
    add_normalization_options(p)
    p.add_argument("--save-logits", action="store_true", help="also write float32 logits at frame resolution")
    p.add_argument("--writers", type=positive_int, default=DEFAULT_WRITERS,
                   help="threads writing the output files (mask/edge PNGs, logits, targets) in parallel "
                        f"(default: {DEFAULT_WRITERS}, this machine's cores up to 4)")
    p.add_argument("--limit", type=positive_int, help="only the first N frames")
    p.add_argument("--skip-done", action="store_true",
                   help="skip frames whose proposal was already made with these same settings (detector, weights, "
                        "options, input window) on the pixels the frame holds now: resumes an interrupted run. A "
                        "frame replaced on disk since its proposal is detected again (each skipped frame is read "
                        "and hashed to tell; a proposal saved before fingerprints were recorded is kept unread)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def make_detector(
    method: str, weights: str | None, config: str | None, device: str, precision: str, batch_size: int,
    tta: str = "none", refine: str = "contrast", size_gate=None, target_size: int | None = None,
    threshold_k: float | None = None,
):
    """The detector and the record of it stored in the project (size_gate: a model.size_gate.TargetSizeGate;
    target_size: a classical method's largest target, px, None for its default; threshold_k: its threshold in
    standard deviations above the mean, None for the method's default)."""
    from model.checkpoint import check_weights_path
    from model.classical import make_classical_detector
    from model.evaluate import make_detector as make_named_detector, resume_state_warning_to
    from model.size_gate import gated

    if method != "irsam":
        detector = make_classical_detector(method, target_size, threshold_k)
        record = detector_record(method, size_gate, network=detector)
        return gated(detector, size_gate), record
    path = check_weights_path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not path.exists():
        hint = "" if weights else " (the shipped default weights are missing: pass --weights FILE or --method tophat)"
        raise FileNotFoundError(f"weights file not found: {path}{hint}")
    with resume_state_warning_to(lambda message: print(f"warning: {message}", file=sys.stderr)):
        predictor = make_named_detector(
            None, str(path), device, config_name=config, precision=precision, batch_size=batch_size, tta=tta,
            refine=refine,
        )
    if predictor.precision != precision:
        print(f"warning: --precision {precision} runs on CUDA only; {predictor.precision} on the "
              f"{predictor.device}", file=sys.stderr)
    record = detector_record("irsam", size_gate, path, predictor, predictor.precision)  # what runs, as the app
    return gated(predictor, size_gate), record


def run(args) -> int:
    try:
        request = normalization_request_of(args)
        source = open_source(args.source)
    except (ValueError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with source:
        return _detect(args, request, source)


def _detect(args, request, source) -> int:
    if args.method != "irsam":
        warn_irsam_only([option for option, given in (
            ("--weights", args.weights), ("--config", args.config), ("--device", args.device != "auto"),
            ("--precision", args.precision != "fp32"), ("--tta", args.tta != "none"),
            ("--refine", args.refine != "contrast")) if given], args.method)
    else:
        warn_classical_only([option for option, value in (
            ("--target-size", args.target_size), ("--threshold-k", args.threshold_k)) if value is not None],
            "--method irsam")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: {out} is a file, not a folder: detect into a new or empty folder (nothing was written)",
              file=sys.stderr)
        return 2
    if _refused_as_foreign(out):  # checked before the lock file is made there too: nothing is written into it
        return 2
    try:
        lock = DetectionLock(out).acquire()
    except DetectionRunningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _detect_locked(args, request, source, out)
    finally:
        lock.release()


def _refused_as_foreign(out: Path) -> bool:
    """Whether `out` is a folder holding files but no review project (a detection run's lock file aside); if so,
    says so."""
    try:
        foreign = out.is_dir() and not is_project(out) and any(p.name != DETECT_LOCK for p in out.iterdir())
    except OSError:  # unreadable: creating the project there says why
        return False
    if foreign:
        print(f"error: {out} is not a review project and not empty: detect into a new or empty folder "
              "(nothing was written)", file=sys.stderr)
    return foreign


def _detect_locked(args, request, source, out: Path) -> int:
    if _refused_as_foreign(out):  # made since the check before the lock
        return 2
    moved_from = known_stems = None
    try:
        if is_project(out):
            existing = ReviewProject.open(out)
            known_stems = set(existing.stems)
            for path, reason in existing.damaged:  # project.json restored from its backup, say (as irsam info does)
                print(f"warning: {path}: {reason}", file=sys.stderr)
            moved_from = _other_source(existing, Path(args.source), args.follow_source, source)
            # The stored normalisation is the sequence's: never recomputed on a re-run, and never changed,
            # since the project's earlier predictions (and the app's later ones) were made through it.
            normalization = Normalization.from_dict(existing.normalization)
            if not request.is_met_by(normalization):
                raise ProjectError(f"{out} was made with normalisation {normalization}, not the {request} asked for: "
                                   "detect into a new --out, or leave out --window/--percentiles/--no-bad-pixel-repair "
                                   "to keep it")
        else:
            normalization = request.for_source(source)
    except (ProjectError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        detector, record = make_detector(
            args.method, args.weights, args.config, args.device, args.precision, args.batch_size, args.tta,
            args.refine, size_gate_of(args), args.target_size, args.threshold_k,
        )
    except Exception as exc:  # a bad checkpoint: one line, never a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        check_device_fallback(args.device, detector)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record["device"] = detector.device

    try:
        project = ReviewProject.create(
            out, Path(args.source).resolve(), source.kind, source.stems, source.size_record(), normalization.to_dict(), record,
            exist_ok=True, unreadable=source.unreadable_stems,
        )
    except (ProjectError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if known_stems is not None and len(project.stems) > len(known_stems):
        added = [stem for stem in project.stems if stem not in known_stems]
        print(f"{out}: {counted(len(added), 'frame', 'frames')} added to the source since the project was made, "
              f"now frames of it (unreviewed): {name_some(added, 5)}")
    if moved_from is not None:
        print(f"{out}: source changed from {moved_from} to {project.source_path} (--follow-source); frames whose "
              "pixels differ from those their proposals, masks and statuses recorded are named by irsam info, and "
              "export skips them (work saved before fingerprints were recorded cannot be checked)")
    n = len(source) if args.limit is None else min(len(source), args.limit)
    origin = ProposalOrigin.of(record, normalization)
    selected = counted(n, "frame", "frames") if n == len(source) else f"the first {n} of {len(source)} frames,"
    threshold = f", threshold mean + {origin.threshold_k} std" if origin.threshold_k else ""
    print(f"{source.kind} {source.path}: {selected} {source.size_text(n)} {source.dtype}; "
          f"detector {record['name']}"
          + (f" (targets up to {record['target_size']} px across{threshold})" if record.get("target_size") else "")
          + f" on {detector.device}"
          + (f", targets of {detector.gate} kept" if record["size_gate"] else "") + f"; normalisation {normalization}")
    done_before = _same_settings(project, source.stems[:n], origin, args.save_logits) if args.skip_done else {}
    if done_before:
        checked = sum(sha1 is not None for sha1 in done_before.values())
        print(f"{len(done_before)} frame(s) already proposed with these settings: skipped (--skip-done)"
              + (f" unless their frame changed on disk since ({checked} of them hold a fingerprint to tell)"
                 if checked else ""))
    started = utc_now()
    try:
        with sigterm_as_interrupt():
            stats = run_pipeline(source, n, normalization, detector, project, args.batch_size, args.save_logits,
                                 not args.quiet, writers=args.writers, origin=origin, skip=done_before)
    except KeyboardInterrupt as stop:
        project.flush_detections()
        saved = _saved_since(project, source.stems[:n], started)
        said, status = interruption(isinstance(stop, Terminated))
        print(f"{said}: the proposals of {saved} frame(s) of this run are saved in {out}; run the same command with "
              "--skip-done to go on", file=sys.stderr)
        return status
    except (OSError, RuntimeError) as exc:  # a write failed (disk full, permissions), or reading or the detector
        try:
            project.flush_detections()
        except OSError:
            pass  # the failure above is the one to report; detections.csv keeps its last good version
        saved = _saved_since(project, source.stems[:n], started)
        print(f"error: {exc}\nthe proposals of {saved} frame(s) of this run are saved in {out} (each frame's files "
              "whole or not at all); fix the cause and run the same command with --skip-done to go on",
              file=sys.stderr)
        return 1
    try:
        project.flush_detections()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    bad = _bad_frames_within(source, n)
    print(f"{stats['frames']} frames in {stats['seconds']:.1f} s ({stats['fps']:.2f} frames/s), "
          f"{stats['targets']} targets; project: {out}")
    if stats["changed"]:
        print(f"{stats['changed']} of the frames already proposed were detected again: their frame changed on disk "
              "since their proposal")
    if stats["kept_accepted"]:
        print(f"{stats['kept_accepted']} accepted frame(s) keep the mask they were accepted with "
              "(committed to labels/; the new prediction is in masks/)")
    if bad:
        print(f"{len(bad)} unreadable frame(s) skipped:")
        for b in bad:
            print(f"  {b.path}: {b.reason}{_what_the_stem_keeps(source, project, b)}")
    _report_other_proposals(project, source.stems[n:], origin)
    return 0 if stats["frames"] > 0 or done_before else 1


def _bad_frames_within(source, n: int) -> list:
    """The source's unreadable frames (`bad_frames`) among the first `n`, those a run with --limit n covers: a
    frame's own entry by its index, a second file of a stem by that stem's frame, the pages lost at the end of a
    TIFF stack only when the run goes to the end."""
    covered = set(source.stems[:n])
    return [b for b in source.bad_frames
            if (b.index < n if b.index is not None else b.stem in covered if b.stem is not None else n == len(source))]


def _what_the_stem_keeps(source, project: ReviewProject, bad) -> str:
    """What a skipped file's stem holds in the project: for a file that is not the stem's frame (a second file of
    that stem), which file is; for an unreadable frame, an earlier run's proposal if it has one."""
    if bad.stem is None:
        return ""
    if bad.index is None:  # the stem's frame is another file, read (and maybe proposed) as usual
        index = source.stems.index(bad.stem) if bad.stem in source.stems else None
        return "" if index is None else f" (not used: frame {bad.stem} is {source.frame_path(index)})"
    return " (keeps an earlier run's proposal)" if project.has_prediction(bad.stem) else ""


def _other_source(project: ReviewProject, source_path: Path, follow: bool, source=None) -> Path | None:
    """The project's recorded source when `source_path` is another one (None: the same frames). ProjectError unless
    `follow` (--follow-source): frames of another clip under the same names would silently take the project's
    proposals, committed masks and statuses, and committed masks made before fingerprints (or without the
    frame at hand) cannot tell that their frame changed.

    A clip folder CLIP holding no image is read from CLIP/images (`open_source`): CLIP and CLIP/images are the same
    frames, so the folders the frames are read from are compared (`source`: the opened `source_path`), not the
    paths given."""
    recorded, given = project.source_path, source_path.resolve()
    if recorded == given or _same_path(recorded, given):
        return None
    given_frames = getattr(source, "image_dir", None) or _frames_folder(given)
    if _same_path(_frames_folder(recorded), given_frames):
        return None
    if not follow:
        where = "" if recorded.exists() else " (no longer there)"
        raise ProjectError(f"{project.folder} is the review project of {recorded}{where}, not of {given}: detect into "
                           f"a new --out, or give --follow-source to make {given} its source (a moved clip)")
    return recorded


def _frames_folder(path: Path) -> Path:
    """`frames_folder` for a folder (a TIFF or an image is its own source), `path` when it cannot be read."""
    try:
        return frames_folder(path) if path.is_dir() else path
    except OSError:
        return path


def _same_path(a: Path, b: Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve() or os.path.samefile(a, b)
    except OSError:  # one of them is gone
        return False


def _same_settings(project: ReviewProject, stems, origin: ProposalOrigin, with_logits: bool) -> dict[str, str | None]:
    """Frames whose proposal these settings made (and, `with_logits`, whose logits were saved): stem -> the
    `frame_digest` that proposal recorded of the frame it was detected on (None: saved before fingerprints were
    recorded, or without the frame)."""
    return {stem: project.proposal_frame_sha1(stem) for stem in stems
            if origin.same_run_settings(project.proposal_origin(stem)) and (not with_logits or project.has_logits(stem))}


def _saved_since(project: ReviewProject, stems, started: str) -> int:
    """Frames whose proposal was saved at or after `started` (a utc_now() string: they sort in time order)."""
    return sum(1 for stem in stems
               if (origin := project.proposal_origin(stem)) is not None and (origin.time or "") >= started)


def _report_other_proposals(project: ReviewProject, stems, origin: ProposalOrigin) -> None:
    """Name the frames this run left alone (beyond --limit) that keep an earlier run's different proposal."""
    others: dict[str, int] = {}
    for stem in stems:
        if project.has_prediction(stem):
            earlier = project.proposal_origin(stem)
            if not origin.same_run_settings(earlier):
                label = ProposalOrigin.label_of(earlier)
                others[label] = others.get(label, 0) + 1
    for label, count in others.items():
        print(f"{count} frame(s) after --limit keep the proposal of an earlier run: {label}")


_END = object()
_CHECKED = object()  # a frame of `skip` read and found unchanged (run_pipeline's reader)


def run_pipeline(source, n: int, normalization: Normalization, detector, project: ReviewProject,
                 batch_size: int, save_logits: bool, show_progress: bool, *, writers: int = DEFAULT_WRITERS,
                 origin: ProposalOrigin | None = None, skip: Mapping[str, str | None] | Set[str] = frozenset()) -> dict:
    """reader thread -> detector (this thread, in batches) -> `writers` writer threads, over the first `n`
    frames but those in `skip`: stem -> the `frame_digest` its proposal recorded, or None (or a set of stems:
    None for each). A frame skipped with a digest is read and hashed, and detected all the same when it holds
    other pixels now (replaced on disk since: `stats["changed"]` counts them); with None it is not read.

    Writers finish frames in any order; the project's files and detections.csv do not depend on it
    (one file set per frame, detections kept per stem and written in frame order). A failed write
    raises here.
    """
    frames: queue.Queue = queue.Queue(maxsize=4 * batch_size)
    stop_reading = threading.Event()  # set when this thread leaves (done, or a failure): the reader ends too
    # each proposal records the pixels it was detected on (ReviewProject.frame_change): hashed by the reader,
    # taken by the frame's save_prediction
    digests: dict[str, str] = {}
    given_sha1_of, project.frame_sha1_of = project.frame_sha1_of, digests.pop
    if not isinstance(skip, Mapping):
        skip = dict.fromkeys(skip)
    changed: list[str] = []  # frames of `skip` read and found changed: detected again

    def put(item) -> None:
        while not stop_reading.is_set():
            try:
                frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read() -> None:
        try:
            for i in range(n):
                if stop_reading.is_set():
                    return
                stem = source.stems[i]
                if stem in skip and skip[stem] is None:
                    continue  # no fingerprint to compare: done, as before fingerprints were recorded
                try:
                    frame = source.frame(i)
                    digest = frame_digest(frame)
                    if stem in skip:
                        if digest == skip[stem]:
                            put(_CHECKED)  # proposed on these very pixels: counted in the progress only
                            continue
                        changed.append(stem)
                    digests[stem] = digest
                    put((stem, *normalization.apply_with_no_data(frame)))
                except FrameReadError:
                    continue  # recorded in source.bad_frames
            put(_END)
        except Exception as error:  # anything else: raised in the detecting thread, which would wait forever
            put(error)

    reader = threading.Thread(target=read, name="detect-reader", daemon=True)
    reader.start()
    writer_pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="detect-writer")
    # bounded memory (each pending write holds its frame's logits and edge map), yet work for every writer
    max_pending = max(4 * batch_size, 2 * writers)
    pending: deque[Future] = deque()
    # frames read to check their fingerprint count in the progress too (a pass over a done run reads them all)
    progress = _progress_bar(sum(1 for stem in source.stems[:n] if stem not in skip or skip[stem] is not None),
                             show_progress)
    done = kept_accepted = 0
    detected: list[str] = []
    t0 = time.perf_counter()
    try:
        finished = False
        while not finished:
            batch = []
            while len(batch) < batch_size:
                item = frames.get()
                if item is _END:
                    finished = True
                    break
                if isinstance(item, Exception):
                    raise RuntimeError(f"reading the frames failed: {type(item).__name__}: {item}") from item
                if item is _CHECKED:
                    progress.update(1)
                    continue
                batch.append(item)
            if not batch:
                break
            results = detector.detect([image for _, image, _ in batch])
            for (stem, _, no_data), result in zip(batch, results):
                result = without_no_data(result, no_data)
                pending.append(writer_pool.submit(project.save_prediction, stem, result, save_logits, origin))
                detected.append(stem)
            done += len(batch)
            progress.update(len(batch))
            # waiting on the oldest write also surfaces write errors early
            while len(pending) > max_pending:
                kept_accepted += pending.popleft().result()
        for f in pending:
            kept_accepted += f.result()
    except KeyboardInterrupt:
        stop_reading.set()
        writer_pool.shutdown(wait=True)  # frames already detected are written, so --skip-done need not redo them
        raise
    finally:
        stop_reading.set()
        # after a failed write the queued ones are dropped, not finished
        writer_pool.shutdown(cancel_futures=True)
        progress.close()
        project.frame_sha1_of = given_sha1_of
    seconds = time.perf_counter() - t0
    targets = sum(len(project.detections(stem)) for stem in detected)  # frames left alone keep earlier ones
    return {"frames": done, "seconds": seconds, "fps": done / seconds if seconds > 0 else 0.0, "targets": targets,
            "kept_accepted": kept_accepted, "changed": len(changed)}


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=not enabled, dynamic_ncols=True, file=sys.stderr)
