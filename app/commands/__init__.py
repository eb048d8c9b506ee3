"""The `irsam` subcommands; options several of them share."""
from __future__ import annotations

import argparse
import contextlib
import gc
import math
import signal
import sys
import threading
import traceback
from pathlib import Path


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a service manager's stop, timeout) taken as Ctrl-C: the command saves and says what it saved."""


def interruption(terminated: bool) -> tuple[str, int]:
    """How a command stopped by Ctrl-C or by SIGTERM (`Terminated`) says so, and its exit status (128 + the
    signal's number): ("interrupted", 130) or ("terminated", 143)."""
    return ("terminated", 143) if terminated else ("interrupted", 130)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread, so that what a command
    does on Ctrl-C it does on a kill too; elsewhere, or where SIGTERM is ignored, nothing changes.

    A SIGTERM sent to the command's process group (timeout, a service manager, the app's fine-tune Stop) also ends
    the worker processes it started (a DataLoader's, which leave Ctrl-C to the main process but die of SIGTERM),
    and PyTorch's SIGCHLD handler would raise their deaths as a failure at any point of the command's report. So
    from the SIGTERM on, a SIGCHLD handler is set aside; it is put back once the frames the interrupt came through
    are cleared, which shuts down the workers they held."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous in (None, signal.SIG_IGN):
        yield  # (None: a handler set outside Python, which could not be put back)
        return
    child_handler = []  # the SIGCHLD handler set aside, once SIGTERM came

    def terminate(signum, frame):
        handler = signal.getsignal(signal.SIGCHLD)
        if not child_handler and callable(handler):
            child_handler.append(handler)
            # a handler that does nothing, not SIG_DFL: Python warns of a SIGCHLD already received that finds none
            # (and SIG_IGN would reap the children before their waiters)
            signal.signal(signal.SIGCHLD, _child_ended)
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except Terminated as stop:
        if child_handler:
            traceback.clear_frames(stop.__traceback__)
            gc.collect()  # what reference cycles kept of those frames' objects
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child_handler:
            signal.signal(signal.SIGCHLD, child_handler[0])


def _child_ended(signum, frame) -> None:
    """The SIGCHLD handler of a command being terminated (`sigterm_as_interrupt`)."""


class StopRequest:
    """Ctrl-C or SIGTERM received within `stop_requests`: `event` is set once one came, `terminated` tells a
    SIGTERM."""

    def __init__(self):
        self.event = threading.Event()
        self.terminated = False

    def _record(self, signum, frame) -> None:
        self.terminated = self.terminated or signum == signal.SIGTERM
        self.event.set()


@contextlib.contextmanager
def stop_requests():
    """Within the block, Ctrl-C (SIGINT) and SIGTERM set the `StopRequest` yielded rather than interrupt, for work
    that checks its `event` between steps (app.core.label_import's `cancelled`), so that no step is cut short. In
    the main thread only, and for a signal not ignored; elsewhere nothing changes."""
    request = StopRequest()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler not in (None, signal.SIG_IGN):  # (None: set outside Python, which could not be put back)
                previous[signum] = handler
                signal.signal(signum, request._record)
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def positive_int(text: str) -> int:
    """argparse type for counts: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def target_size_px(text: str) -> int:
    """argparse type for --target-size: an integer of 1 to model.classical.MAX_TARGET_SIZE."""
    from model.classical import MAX_TARGET_SIZE

    value = positive_int(text)
    if value > MAX_TARGET_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TARGET_SIZE} px, got {value}")
    return value


def threshold_factor(text: str) -> float:
    """argparse type for --threshold-k: a number above 0 and at most model.classical.MAX_THRESHOLD_K."""
    from model.classical import MAX_THRESHOLD_K

    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    if value > MAX_THRESHOLD_K:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THRESHOLD_K:g}, got {text}")
    return value


def warn_irsam_only(options: list[str], method: str) -> None:
    """Say on stderr that these options, given with a classical --method, do nothing."""
    if options:
        verb = "applies" if len(options) == 1 else "apply"
        print(f"warning: {', '.join(options)} only {verb} to IRSAM; ignored for --method {method}", file=sys.stderr)


def warn_classical_only(options: list[str], irsam_option: str) -> None:
    """Say on stderr that these options, given for IRSAM (`irsam_option`: "--method irsam", "--weights"), do
    nothing."""
    if options:
        verb = "applies" if len(options) == 1 else "apply"
        print(f"warning: {', '.join(options)} only {verb} to the classical methods; ignored for {irsam_option}",
              file=sys.stderr)


def add_target_size_option(parser: argparse.ArgumentParser) -> None:
    """--target-size N: the classical methods' largest target (None when not given, so that giving it for IRSAM
    can be warned about)."""
    from model.classical import DEFAULT_TARGET_SIZE, MAX_TARGET_SIZE, window_for

    window = window_for(DEFAULT_TARGET_SIZE)
    parser.add_argument("--target-size", type=target_size_px, metavar="PX",
                        help="classical methods only: the longer side in pixels of the largest target to find, "
                             f"1 to {MAX_TARGET_SIZE} (default {DEFAULT_TARGET_SIZE}: Top-Hat's {window} px element, "
                             f"MPCM's scales 3 to {window}). Top-Hat finds no target larger than its element (it "
                             "survives the opening), MPCM none larger than its largest cell: the element and MPCM's "
                             "largest scale become PX + 2, rounded up to odd, and the area filter admits targets of "
                             "that square. PSTNN has no such window (its 40 px patches model the background): only "
                             "its area filter follows. Larger windows also pass more background clutter")


def add_threshold_k_option(parser: argparse.ArgumentParser) -> None:
    """--threshold-k K: the classical methods' sensitivity (None when not given: each method's default, and giving
    it for IRSAM can be warned about)."""
    from model.classical import DEFAULT_THRESHOLD_K, MAX_THRESHOLD_K

    defaults = ", ".join(f"{name} {k:g}" for name, k in DEFAULT_THRESHOLD_K.items())
    parser.add_argument("--threshold-k", type=threshold_factor, metavar="K",
                        help="classical methods only: detect where the method's response exceeds its mean over the "
                             f"frame by K standard deviations, above 0 and at most {MAX_THRESHOLD_K:g} (default: "
                             f"{defaults}, tuned on NUAA-SIRST). Lower finds dimmer targets, and more clutter; "
                             "higher, fewer of both. On cluttered frames (clouds) the clutter raises the standard "
                             "deviation until the default threshold passes over the targets: on the first 60 frames "
                             "of the real clip IR_DRONE_146 Top-Hat finds no drone at 12, 92.5%% of them at 9 (1.5 "
                             "false alarms a frame) and all at 8 (5 a frame) or 6 (19 a frame)")


def add_size_gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-area", type=int, default=1, metavar="PX",
                        help="drop detected targets (8-connected components) smaller than this (default 1: keep all)")
    parser.add_argument("--max-area", type=int, metavar="PX",
                        help="drop detected targets larger than this, e.g. cloud tops (default: no limit; "
                             "model/size_gate.py)")


def add_normalization_options(parser: argparse.ArgumentParser) -> None:
    from app.core.bad_pixels import MIN_FRAMES as BAD_PIXEL_MIN_FRAMES

    which = parser.add_mutually_exclusive_group()
    which.add_argument("--window", nargs=2, type=float, metavar=("LO", "HI"),
                       help="normalise with this fixed window in raw sensor units: LO -> 0 and HI -> 255 of the "
                            "model's 8-bit input, values outside saturate (a 16-bit sequence's bad pixels are "
                            "still repaired, unless --no-bad-pixel-repair)")
    which.add_argument("--percentiles", nargs=2, type=float, metavar=("LO", "HI"),
                       help="normalise with the window from these percentiles (0..100) of 32 frames spread over the "
                            "sequence (default: 0.5 99.99 for 16-bit frames; 8-bit frames go to the model unchanged)")
    parser.add_argument("--no-bad-pixel-repair", dest="repair_bad_pixels", action="store_false",
                        help="give the detector every pixel of a raw (16-bit or float) sequence as recorded: by "
                             "default its bad pixels (stuck far from their neighbours in nearly every sampled frame) "
                             f"are repaired, in a sequence of at least {BAD_PIXEL_MIN_FRAMES} frames (fewer cannot "
                             "tell a stuck pixel from a target: none is searched); in a static scene a one-pixel "
                             "detail of the scene can pass for one")


def normalization_request_of(args: argparse.Namespace):
    """The NormalizationRequest the options ask for (raises ValueError for an impossible range)."""
    from app.core.normalization import NormalizationRequest

    return NormalizationRequest(window=tuple(args.window) if args.window else None,
                                percentiles=tuple(args.percentiles) if args.percentiles else None,
                                repair_bad_pixels=args.repair_bad_pixels)


def size_gate_of(args: argparse.Namespace):
    """The TargetSizeGate the options ask for (raises ValueError for an impossible range, in the options' words)."""
    if args.min_area < 1:
        raise ValueError(f"--min-area must be at least 1 px, got {args.min_area}")
    if args.max_area is not None and args.max_area < args.min_area:
        raise ValueError(f"--max-area {args.max_area} is below --min-area {args.min_area}")
    from model.size_gate import TargetSizeGate

    return TargetSizeGate(args.min_area, args.max_area)


def check_device_fallback(requested: str, detector) -> None:
    """A detector that runs on the CPU although `requested` (--device) named another device: an error
    (ValueError) when that device was asked for explicitly, a warning on stderr with auto."""
    fallback = getattr(getattr(detector, "device_choice", None), "fallback_reason", None)
    if fallback and requested.lower() != "auto":
        raise ValueError(f"--device {requested}: {fallback}; use --device cpu or auto to run on the CPU")
    if fallback:
        print(f"warning: {fallback}; running on the CPU", file=sys.stderr)


def open_project_or_say_why(folder):
    """The review project in `folder` (app.core.project.ReviewProject), its damaged files named on stderr as
    warnings; None, with the error on stderr, when the folder is no usable project."""
    from app.core.project import ProjectError, ReviewProject

    if not Path(folder).exists():
        print(f"error: {folder} does not exist", file=sys.stderr)
        return None
    try:
        project = ReviewProject.open(folder)
    except ProjectError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    for path, reason in project.damaged:
        print(f"warning: {path}: {reason}", file=sys.stderr)
    return project
