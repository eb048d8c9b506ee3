"""Background detection: a QObject worker run in a QThread, cancelled through a threading.Event per frame."""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore

from app.core.frames import FrameReadError, FrameSource
from app.core.normalization import Normalization, without_no_data
from app.core.project import ReviewProject, content_stamp
from app.core.provenance import ProposalOrigin, detector_record, sha256_of
from app.core.locks import DetectionLock, DetectionRunningError
from app.paths import DEFAULT_WEIGHTS
from model.classical import DEFAULT_TARGET_SIZE, make_classical_detector
from model.detectors import Detector
from model.evaluate import make_detector
from model.size_gate import TargetSizeGate, gated, ungated

FLUSH_EVERY_S = 5.0  # detections.csv is rewritten this often during a run, so a crash loses little
# the classical methods as the detector list offers them: (entry, method)
CLASSICAL = (("MPCM (classical)", "mpcm"), ("Top-Hat (classical)", "tophat"), ("PSTNN (classical, slow)", "pstnn"))


def classical_name(method: str) -> str:
    """A classical method's name as the detector list shows it, without its note: "Top-Hat" for "tophat"."""
    entry = next(entry for entry, listed in CLASSICAL if listed == method)
    return entry.split(" (")[0]


@dataclass(frozen=True)
class DetectorChoice:
    """What the analyst picked: a classical method by name, or IRSAM from a weights file."""

    method: str  # "irsam", "tophat", "mpcm", "pstnn"
    weights: str | None = None  # checkpoint path (IRSAM only)
    device: str = "auto"  # "auto", "cuda" or "cpu"
    tta: str = "none"  # IRSAM test-time augmentation, one of model.detectors.TTA_MODES
    refine: str = "contrast"  # IRSAM mask refinement, one of model.detectors.REFINE_MODES
    min_area: int = 1  # targets kept, in px (model.size_gate), for any method
    max_area: int | None = None
    # classical methods: longer side (px) of the largest target their windows fit (model.classical.window_for)
    target_size: int = DEFAULT_TARGET_SIZE
    # classical methods: their threshold in standard deviations above the mean, None for the method's default
    threshold_k: float | None = None

    @property
    def size_gate(self) -> TargetSizeGate:
        return TargetSizeGate(self.min_area, self.max_area)

    def same_detector(self, other: DetectorChoice | None) -> bool:
        """Whether `other` differs at most in its size gate (which is applied after the detector)."""
        return other is not None and dataclasses.replace(self, min_area=1, max_area=None) == dataclasses.replace(
            other, min_area=1, max_area=None)

    def regate(self, detector: Detector) -> Detector:
        """A detector built for a choice that differs at most in its gate, behind this choice's gate."""
        return gated(ungated(detector), self.size_gate)

    @property
    def label(self) -> str:
        gate = [f"targets {self.size_gate}"] if self.size_gate.active else []
        if self.method != "irsam":
            size = [] if self.target_size == DEFAULT_TARGET_SIZE else [f"up to {self.target_size} px across"]
            threshold = [] if self.threshold_k is None else [f"threshold mean + {self.threshold_k:g} std"]
            extras = [*size, *threshold, *gate]
            name = classical_name(self.method)
            return f"{name} ({', '.join(extras)})" if extras else name
        extras = ([] if self.tta == "none" else [self.tta]) + ([] if self.refine == "contrast" else ["unrefined"])
        return f"IRSAM ({', '.join([self.weights_name, *extras, *gate])})"

    @property
    def weights_name(self) -> str:
        """The checkpoint's file name, with its folder unless it is the shipped weights: every fine-tune run
        saves a best.pt, so the folder is what tells two runs apart."""
        path = Path(self.weights).resolve()  # (a relative path's folder has a name only once resolved)
        return path.name if path == DEFAULT_WEIGHTS.resolve() else f"{path.parent.name}/{path.name}"

    def origin(self, normalization: Normalization, detector: Detector) -> ProposalOrigin:
        """What this choice's proposals, made by `detector` (built for it), are saved as coming from (the
        record `irsam detect` stores too)."""
        network = ungated(detector)
        loaded = getattr(network, "weights_file", None)
        record = detector_record(self.method, self.size_gate, self.weights, network,
                                 network.precision if self.method == "irsam" else None,
                                 loaded.sha256 if loaded else None)
        return ProposalOrigin.of(record, normalization)

    def build(self) -> tuple[Detector, str | None]:
        """(detector, notice): the notice says why it runs on the CPU when CUDA was asked for and failed."""
        detector, notice = self._build_ungated()
        return gated(detector, self.size_gate), notice

    def weights_changed(self, detector: Detector | None) -> bool:
        """Whether this choice's weights file was rewritten since `detector` was loaded from it (a fine-tune run
        that wrote a better best.pt, a run trained again into the same folder): it must be loaded again."""
        network = ungated(detector)
        loaded = getattr(network, "weights_file", None)
        if loaded is None or self.weights is None:
            return False
        now = content_stamp(self.weights)  # None: removed since; the weights loaded still work
        return now is not None and now != loaded.stamp

    def _build_ungated(self) -> tuple[Detector, str | None]:
        if self.method != "irsam":
            return make_classical_detector(self.method, self.target_size, self.threshold_k), None
        for _attempt in range(3):  # stamped before and after loading: a file rewritten meanwhile is loaded again
            stamp = content_stamp(self.weights)
            sha256 = sha256_of(self.weights) if stamp is not None else None
            detector, notice = self._load()
            if content_stamp(self.weights) == stamp:
                break
        else:  # still being written: what was loaded cannot be told apart from the file, hashed when recorded
            stamp = sha256 = None
        detector.weights_file = LoadedWeights(sha256, stamp)
        return detector, notice

    def _load(self) -> tuple[Detector, str | None]:
        try:
            detector = make_detector(None, self.weights, self.device, tta=self.tta, refine=self.refine)
        except Exception as exc:
            if self.device == "cpu":
                raise
            # a CUDA failure while loading: the CPU may still work; a bad file fails again and is reported
            detector = make_detector(None, self.weights, "cpu", tta=self.tta, refine=self.refine)
            return detector, f"CUDA failed ({exc}); running on the CPU."
        choice = getattr(detector, "device_choice", None)
        return detector, getattr(choice, "fallback_reason", None)


@dataclass(frozen=True)
class LoadedWeights:
    """The weights file as it was when a detector was loaded from it."""

    sha256: str | None
    stamp: tuple | None  # `content_stamp`


NOT_STARTED = "Not started: "  # how `DetectionWorker.failed` begins for a run refused before it began


class DetectionWorker(QtCore.QObject):
    """Runs a detector over `indices` of a source, saving each prediction in the project as it arrives
    (with `save_logits`, its logits too: the probability heatmap reads them back for any frame).

    The detector is built in this thread when not given (loading a checkpoint can take seconds).
    With `features`, nothing is saved: the result (with feature maps) is only emitted.
    """

    detectorReady = QtCore.Signal(object, object)  # detector, notice (str or None)
    frameDone = QtCore.Signal(int, object)  # index, FrameResult
    frameFailed = QtCore.Signal(int, str)
    progress = QtCore.Signal(int, int, float)  # done, total, frames per second
    failed = QtCore.Signal(str)
    finished = QtCore.Signal(bool)  # True when cancelled

    def __init__(self, source: FrameSource, normalization: Normalization, indices: list[int],
                 choice: DetectorChoice, detector: Detector | None, project: ReviewProject | None,
                 features: bool = False, save_logits: bool = True):
        super().__init__()
        self.source = source
        self.normalization = normalization
        self.indices = list(indices)
        self.choice = choice
        self.detector = detector
        self.project = project
        self.features = features
        self.save_logits = save_logits
        self.cancel_event = threading.Event()
        self.kept_accepted = 0  # accepted frames whose replaced prediction was committed (ReviewProject.save_prediction)
        self.origin: ProposalOrigin | None = None  # what the saved proposals are recorded as coming from

    def cancel(self) -> None:
        self.cancel_event.set()

    @QtCore.Slot()
    def run(self) -> None:
        cancelled = False
        saving = self.project is not None and not self.features
        lock = None
        try:
            if saving and self.indices:  # before the weights load: a refusal comes at once
                lock = DetectionLock(self.project.folder, "the IRSAM Review window").acquire()
            if self.detector is None:
                self.detector, notice = self.choice.build()
                self.detectorReady.emit(self.detector, notice)
            if saving:
                self.origin = self.choice.origin(self.normalization, self.detector)
            cancelled = self._run_frames()
        except DetectionRunningError as exc:
            saving = False  # nothing was written
            self.failed.emit(f"{NOT_STARTED}{exc}.")
        except Exception as exc:  # reported in the UI; the worker must always finish
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        finally:
            if saving:
                try:
                    self.project.flush_detections()
                except OSError as exc:
                    self.failed.emit(f"could not write detections.csv: {exc}")
            if lock is not None:
                lock.release()
            self.finished.emit(cancelled)

    def _run_frames(self) -> bool:
        start = last_flush = time.perf_counter()
        total = len(self.indices)
        for done, index in enumerate(self.indices, start=1):
            if self.cancel_event.is_set():
                return True
            try:
                frame = self.source.frame(index)
                image, no_data = self.normalization.apply_with_no_data(frame)
            except FrameReadError as exc:
                self.frameFailed.emit(index, exc.reason)
            else:
                result = without_no_data(self._detect(image), no_data)
                if self.project is not None and not self.features:
                    self.kept_accepted += self.project.save_prediction(self.source.stems[index], result,
                                                                       self.save_logits, self.origin)
                self.frameDone.emit(index, result)
            now = time.perf_counter()  # a frame skipped as unreadable counts as done too: the bar ends full
            self.progress.emit(done, total, done / max(now - start, 1e-9))
            if self.project is not None and not self.features and now - last_flush > FLUSH_EVERY_S:
                self.project.flush_detections()
                last_flush = now
        return False

    def _detect(self, image):
        try:
            return self.detector.detect([image], features=self.features)[0]
        except RuntimeError as exc:
            if "cuda" not in str(exc).lower() or self.choice.device == "cpu":
                raise
            # the GPU failed mid-run (out of memory, driver reset): continue on the CPU, say so
            cpu_choice = dataclasses.replace(self.choice, device="cpu")
            self.detector, _ = cpu_choice.build()
            self.detectorReady.emit(self.detector, f"CUDA failed during the run ({exc}); continuing on the CPU.")
            return self.detector.detect([image], features=self.features)[0]


class CallWorker(QtCore.QObject):
    """Runs one function in the worker thread: `finished(result, error)`, error a message or None."""

    finished = QtCore.Signal(object, object)

    def __init__(self, function):
        super().__init__()
        self.function = function

    def cancel(self) -> None:
        """Nothing to cancel mid-call; the runner just waits for it."""

    @QtCore.Slot()
    def run(self) -> None:
        try:
            result, error = self.function(), None
        except Exception as exc:  # reported in the UI
            result, error = None, f"{type(exc).__name__}: {exc}"
        self.finished.emit(result, error)


class ProgressCallWorker(QtCore.QObject):
    """Runs `function(progress)` in the worker thread: `progress(done, total)` is emitted from there (it
    reaches the UI queued), then `finished(result, error)`, error a message or None. An error of the
    `expected` types says what went wrong and what to do: its message alone; any other is a bug, and keeps
    its class name. Not a CallWorker subclass: PySide runs a `run` slot overridden in a subclass in the
    main thread, not the worker's."""

    progress = QtCore.Signal(int, int)
    finished = QtCore.Signal(object, object)

    def __init__(self, function, expected: tuple[type[Exception], ...]):
        super().__init__()
        self.function = function
        self.expected = expected

    def cancel(self) -> None:
        """Nothing to cancel here: a function that can stop mid-call is cancelled through its own event, set by the
        caller before the runner stops (the fine-tune dialog's export); the runner waits for it."""

    @QtCore.Slot()
    def run(self) -> None:
        try:
            result, error = self.function(self.progress.emit), None
        except self.expected as exc:
            result, error = None, str(exc)
        except Exception as exc:
            result, error = None, f"{type(exc).__name__}: {exc}"
        self.finished.emit(result, error)


class CancellableCallWorker(CallWorker):
    """A CallWorker whose function checks `cancelled` itself (between frames): `cancel()` sets it."""

    def __init__(self, function, cancelled: threading.Event):
        super().__init__(function)
        self.cancelled = cancelled

    def cancel(self) -> None:
        self.cancelled.set()


class WorkerRunner(QtCore.QObject):
    """Owns at most one worker thread; `stop()` cancels and waits (used on close and before a new run)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.thread: QtCore.QThread | None = None
        self.worker: DetectionWorker | CallWorker | None = None

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def start(self, worker: DetectionWorker | CallWorker) -> None:
        self.stop()
        thread = QtCore.QThread()
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        # direct: quit from the worker's own thread, so wait() never races a queued quit
        worker.finished.connect(thread.quit, QtCore.Qt.DirectConnection)
        self.thread, self.worker = thread, worker
        thread.start()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def stop(self) -> None:
        if self.thread is None:
            return
        self.cancel()
        self.thread.wait()
        self.thread = self.worker = None

    def release_if_done(self, worker: DetectionWorker | CallWorker) -> None:
        """Called when `worker` finished: join its thread and drop it (unless a newer worker replaced it)."""
        if worker is self.worker and self.thread is not None:
            self.thread.wait()
            self.thread = self.worker = None
