"""The review window: wires the frame view, timeline and docks to a ReviewSession and the detection worker."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.frames import FrameReadError, SourceError
from app.core.project import DiskChanges, ProjectError
from app.core.targets import Target
from app.measure import cursor_readout, frame_scores_text, target_snr
from app.session import UNREADABLE, FrameLayers, ReviewSession
from app.widgets.detection_panel import DetectionPanel, describe_metadata
from app.widgets.dialogs import replace_dialog
from app.widgets.dock_column import RightColumnDocks
from app.widgets.frame_check import FrameCheck
from app.widgets.frame_view import PALETTES, FrameView
from app.widgets.message_log import MessageLog
from app.widgets.normalization_dialog import NormalizationDialog
from app.widgets.overlays import OverlayPanel
from app.widgets.review_tools import ReviewTools
from app.widgets.scrolling import ScrollingPanel
from app.widgets.status_bar import MessageStatusBar
from app.widgets.surface_view import SurfaceRegion, SurfaceView
from app.widgets.target_list import TargetList
from app.widgets.timeline import CHANGED_ON_DISK, Timeline
from app.widgets.workers import NOT_STARTED, CallWorker, DetectionWorker, DetectorChoice, WorkerRunner
from app.widgets.wpmd_panel import FeaturePanel
from app.window_memory import WindowMemory
from model.data import counted

TARGET_ZOOM = 24  # half-size of the view when jumping to a target, pixels
TRACK_RADIUS = 10.0  # a selected target is followed to the next frame when one lies this close
# The panels follow a frame once it has stayed this long: longer than the gap between auto-repeated keys
# (25-30 per second) and between frames played at 25 fps, so scrubbing and playing compute them only
# for the frame they stop on.
PANELS_SETTLE_MS = 60
# How often the project is looked at for what other instances wrote (another window, an `irsam detect` run): a
# few stats when nothing changed
DISK_POLL_MS = 2000
# How often the review queue takes in the frames a detection run has done (each look summarises those frames,
# then sorts and filters the whole queue)
QUEUE_FOLLOW_MS = 1000
# The feature maps' height docked under the frame (px): their six maps side by side stay readable, and the frame
# keeps most of the window's height (Qt gave the dock more than the frame)
FEATURES_DOCKED_HEIGHT = 250
# The 3D view's height docked under the frame (px): the GL view has no height of its own, and Qt left it its caption
SURFACE_DOCKED_HEIGHT = 250


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, settings: QtCore.QSettings | None = None):
        super().__init__()
        self.right_column = RightColumnDocks(self)  # first: the window's events pass through it from its first child on
        self.settings = settings or QtCore.QSettings("irsam-review", "irsam-review")
        self.window_memory = WindowMemory(self.settings)
        self.session: ReviewSession | None = None
        self._truth_warnings_shown = 0  # ground-truth mask warnings already shown in the status bar
        self._source_gone = False  # the open sequence's folder or stack was found missing (said once)
        self.index = 0
        self.frame: np.ndarray | None = None
        self.layers = FrameLayers()
        self.selected: Target | None = None
        self.cursor: tuple[int, int] | None = None
        self.detector = None  # built detector for `detector_choice`, kept between runs
        self.detector_choice: DetectorChoice | None = None
        # (choice, detector) of the IRSAM network loaded before a classical method was chosen: chosen again, it is
        # taken back, not loaded again (seconds); another IRSAM chosen frees it
        self._irsam_set_aside: tuple[DetectorChoice, object] | None = None
        self._open_message = ""  # what opening the source said; shown again once its project is read
        self.detection_runner = WorkerRunner(self)
        self.feature_runner = WorkerRunner(self)
        self.details_runner = WorkerRunner(self)
        self.device_runner = WorkerRunner(self)  # `_look_up_auto_device`
        self._auto_device: str | None = None  # what IRSAM's "auto" device is here: "cuda", or "cpu (N threads)"
        self.frame_check = FrameCheck(self)
        self._painted_changed: set[int] = set()  # frames pink in the timeline: changed on disk
        self._features_pending = False
        self._feature_maps_of: str | None = None  # "frame 7": whose maps the feature panel shows
        self._pending_run: list[int] | None = None  # frames to detect once the loading detector is ready
        self._scores: dict[str, tuple] = {}  # layer name -> (mask, truth, (IoU, Pd)) last scored
        self.panels_timer = QtCore.QTimer(self)
        self.panels_timer.setSingleShot(True)
        self.panels_timer.setInterval(PANELS_SETTLE_MS)
        self.panels_timer.timeout.connect(self.update_panels)
        self._queue_frames_done: set[int] = set()  # frames the window's run has done, not yet in the queue
        self.queue_timer = QtCore.QTimer(self)
        self.queue_timer.setSingleShot(True)
        self.queue_timer.setInterval(QUEUE_FOLLOW_MS)
        self.queue_timer.timeout.connect(self._queue_takes_frames_done)
        self.disk_timer = QtCore.QTimer(self)
        self.disk_timer.setInterval(DISK_POLL_MS)
        self.disk_timer.timeout.connect(self.take_up_disk_changes)
        self.disk_timer.start()
        # the frame other instances changed while a stroke was held, and what it showed before
        self._reshow_after_stroke: tuple[int, tuple] | None = None
        self._warnings_shown = 0  # of the session's warnings, those the status bar has said
        self._frame_message: tuple[int, str] | None = None  # (frame, text) of the last `say_about_frame`
        self._message_log: MessageLog | None = None
        self._skipped_in_run: list[int] = []  # frames the current detection run found unreadable

        self.setWindowTitle("IRSAM Review")
        self.setAcceptDrops(True)
        screen = QtGui.QGuiApplication.primaryScreen().availableGeometry()
        self.resize(min(1400, screen.width()), min(900, screen.height()))  # within a laptop's screen
        self.frame_view = FrameView()
        self.frame_view.show_notice("Open a folder of frames or a TIFF stack: File > Open folder (Ctrl+O), or drop it "
                                    "here.\n\nFile > Open demo sequence opens a generated IR sequence.")
        self.timeline = Timeline()
        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.frame_view, 1)
        layout.addWidget(self.timeline)
        self.setCentralWidget(central)

        self.detection_panel = DetectionPanel()
        self.target_list = TargetList()
        self.overlay_panel = OverlayPanel()
        self.feature_panel = FeaturePanel()
        self.surface_view = SurfaceView()
        self.detection_dock = self._dock("Detection", self.detection_panel, QtCore.Qt.RightDockWidgetArea, scroll=True)
        self.targets_dock = self._dock("Targets", self.target_list, QtCore.Qt.RightDockWidgetArea)
        self.overlays_dock = self._dock("Overlays", self.overlay_panel, QtCore.Qt.RightDockWidgetArea, scroll=True)
        self.features_dock = self._dock("WPMD / GAD features", self.feature_panel, QtCore.Qt.BottomDockWidgetArea)
        self.surface_dock = self._dock("3D intensity", self.surface_view, QtCore.Qt.BottomDockWidgetArea)
        # floating by default: a GL widget inside the main window would make all of its repaints go
        # through GL composition (scrubbing several times slower on software GL)
        self.surface_dock.setFloating(True)
        self.surface_dock.resize(520, 460)
        # floating by default: docked, six maps share the frame view's height and both become too small
        self.features_dock.setFloating(True)
        self.features_dock.resize(1200, 340)
        self.features_dock.hide()
        self.surface_dock.hide()
        # a dock under the frame spans the frame's width only: the right column keeps the window's whole height
        self.setCorner(QtCore.Qt.BottomRightCorner, QtCore.Qt.RightDockWidgetArea)
        self.setCorner(QtCore.Qt.BottomLeftCorner, QtCore.Qt.LeftDockWidgetArea)

        self._measured: tuple | None = None  # (frame, normalization, repaired): `_measured_frame`
        self._normalization_dialog: NormalizationDialog | None = None
        self.device_label = QtWidgets.QLabel("device: -")
        self.metrics_label = QtWidgets.QLabel()
        self.cursor_label = QtWidgets.QLabel()
        self.frame_label = QtWidgets.QLabel()
        bar = MessageStatusBar()
        self.setStatusBar(bar)
        bar.addWidget(self.frame_label)
        bar.addWidget(self.cursor_label, 1)
        bar.addPermanentWidget(self.metrics_label, yields_to_messages=True)
        bar.addPermanentWidget(self.device_label)

        self._build_menus()
        self._build_toolbar()
        self._build_shortcuts()
        self._connect()
        self._update_device_label()
        self.review_tools = ReviewTools(self)  # editing, review queue, propagation, shortcuts, export, fine-tune
        self.right_column.layout_restored = self._restore_layout()
        # (connected after the saved layout is restored: the height the analyst left a docked dock is kept)
        for dock, height in ((self.features_dock, FEATURES_DOCKED_HEIGHT), (self.surface_dock, SURFACE_DOCKED_HEIGHT)):
            dock.topLevelChanged.connect(lambda floating, dock=dock, height=height:
                                         floating or self._dock_under_the_frame(dock, height))

    # --- construction ---------------------------------------------------------------------------

    def _dock(self, title: str, widget: QtWidgets.QWidget, area, scroll: bool = False) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(ScrollingPanel(widget) if scroll else widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction("Open &folder...", self.open_folder_dialog, QtGui.QKeySequence.Open)
        file_menu.addAction("Open &TIFF stack...", self.open_tiff_dialog)
        file_menu.addAction("Open &project...", self.open_project_dialog)
        file_menu.addAction("Open &demo sequence", self.open_demo)
        self.recent_menu = file_menu.addMenu("&Recent")
        self._fill_recent_menu()
        file_menu.addSeparator()
        file_menu.addAction("&Quit", self.close, QtGui.QKeySequence.Quit)
        run_menu = self.menuBar().addMenu("&Detection")
        run_menu.addAction("Run on this &frame", lambda: self.run_detection("frame"), "Ctrl+R")
        run_menu.addAction("Run on the &range", lambda: self.run_detection("range"))
        run_menu.addAction("Run on the &whole sequence", lambda: self.run_detection("all"), "Ctrl+Shift+R")
        run_menu.addAction("&Cancel the run", self.detection_runner.cancel, "Ctrl+.")
        run_menu.addSeparator()
        run_menu.addAction("Detector &input window...", self.choose_normalization)
        review_menu = self.menuBar().addMenu("&Review")  # filled by ReviewTools, after this entry
        review_menu.addAction("Check frames on &disk", self.frame_check.start).setToolTip(
            "Compare every frame worked on with the pixels its proposal, mask and status were made on")
        view_menu = self.menuBar().addMenu("&View")
        for dock in (self.detection_dock, self.targets_dock, self.overlays_dock, self.features_dock, self.surface_dock):
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        view_menu.addAction("&Messages...", self.show_message_log).setToolTip(
            "The status-bar messages of this session (the last 500), newest first")

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Display")
        toolbar.setObjectName("display")
        self.palette_combo = QtWidgets.QComboBox()
        self.palette_combo.addItems(PALETTES)
        self.palette_combo.setToolTip("Palette")
        self.levels_combo = QtWidgets.QComboBox()
        self.levels_combo.addItems(["sequence levels", "auto percentile"])
        self.levels_combo.setToolTip("Sequence levels: the normalisation window, fixed for every frame.\n"
                                     "Auto percentile: stretched per frame (flickers; for looking only).")
        for w in (QtWidgets.QLabel(" Palette "), self.palette_combo, QtWidgets.QLabel(" Levels "), self.levels_combo):
            toolbar.addWidget(w)

    def _build_shortcuts(self) -> None:
        # A, D, Home, End (and Space: accept and next) are the editable shortcuts of ReviewTools
        steps = {"Left": -1, "Right": 1, "PgUp": -10, "PgDown": 10}
        for key, delta in steps.items():
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(key), self, lambda d=delta: self.timeline.step(d))
            shortcut.setWhatsThis(f"{'forward' if delta > 0 else 'back'} {abs(delta)} frame{'s' * (abs(delta) > 1)}")
        QtGui.QShortcut(QtGui.QKeySequence("Shift+Space"), self, self.timeline.toggle_play).setWhatsThis("play / pause")

    def _connect(self) -> None:
        self.timeline.frameRequested.connect(self.show_frame)
        self.frame_view.cursorMoved.connect(self._cursor_moved)
        self.frame_view.displayChanged.connect(self._update_surface)
        self.overlay_panel.changed.connect(self._overlays_changed)
        self.target_list.targetSelected.connect(self.select_target)
        self.detection_panel.runRequested.connect(self.run_detection)
        self.detection_panel.cancelRequested.connect(self.cancel_detection)
        self.detection_panel.choiceChanged.connect(self._choice_changed)
        self.feature_panel.computeRequested.connect(self.compute_features)
        self.features_dock.visibilityChanged.connect(self._features_visibility)
        self.surface_dock.visibilityChanged.connect(lambda on: on and self._update_surface())
        for dock in (self.features_dock, self.surface_dock):
            dock.visibilityChanged.connect(lambda on, dock=dock: on and self._place_floating_once(dock))
        self.palette_combo.currentTextChanged.connect(self.frame_view.set_palette)
        self.levels_combo.currentIndexChanged.connect(lambda i: self.frame_view.set_auto_levels(i == 1))

    # --- opening --------------------------------------------------------------------------------

    def open_path(self, path: str | Path) -> bool:
        """Open a source or a project; on failure show why and keep what was open. False also when the
        analyst keeps the open sequence for its edits that could not be saved.

        The new sequence is opened before those edits are saved or asked about: one that cannot be opened
        leaves them as they are (not discarded for nothing). Opening reads no project yet (`details=False`),
        so one saved here is read afterwards with these edits in it."""
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.WaitCursor)
        try:
            session = ReviewSession.open(path, details=False)
        except (SourceError, ProjectError, OSError, ValueError) as e:
            QtWidgets.QApplication.restoreOverrideCursor()
            QtWidgets.QMessageBox.warning(self, "Cannot open", str(e))
            return False
        QtWidgets.QApplication.restoreOverrideCursor()
        if not self.review_tools.save_unsaved_edits():
            session.close()
            return False
        self._set_session(session)
        self.window_memory.remember_recent(str(Path(path).expanduser().resolve()))
        self._fill_recent_menu()
        return True

    def _close_session(self) -> None:
        """Stop all work on the sequence open (if any) and close it: another one opens, or the window closes."""
        self.review_tools.stop()
        self._remember_place()
        for runner in (self.detection_runner, self.feature_runner, self.details_runner):
            runner.stop()
        self.frame_check.stop()
        self._pending_run = None
        self._stop_following_run_in_queue()
        if self.session is not None:
            self.session.close()

    def _set_session(self, session: ReviewSession) -> None:
        stopped = self._describe_stopped_run()
        self._close_session()
        self.detection_panel.set_running(False)  # a run stopped above sends no `finished`
        self.session = session
        session.on_status_taken_up = self._show_status_taken_up
        self._truth_warnings_shown = 0
        self._warnings_shown = len(session.warnings)
        self._source_gone = False
        self.selected = None
        self.frame = None
        self._feature_maps_of = None
        self.feature_panel.clear_maps("No feature maps yet for this sequence: press Compute.")
        self.frame_view.clear()
        self._show_normalization(session.normalization)
        self.timeline.set_count(len(session))
        self.detection_panel.set_frame_count(len(session))
        self.detection_panel.setEnabled(False)  # until the project (if any) is read: a run must not race it
        self.review_tools.project_loading()
        self.refresh_strip()
        self.setWindowTitle(f"IRSAM Review - {session.sequence_name}")
        source = session.source
        stored = "" if source.stored_dtype == source.dtype else f" (stored as {source.stored_dtype})"
        message = (f"{len(session)} frames, {source.size_text()}, {source.dtype}{stored}, "
                   f"normalisation {session.normalization}")
        if source.bad_frames:
            unreadable = counted(len(source.bad_frames), "unreadable file", "unreadable files")
            message += f"; {unreadable} (red on the timeline, skipped by detection)"
        if source.skipped_pages:
            message += f"; skipped {'; '.join(source.skipped_pages)}"
        self._open_message = message + (f" ({stopped})" if stopped else "")
        self.show_frame(self.window_memory.last_frame(self._source_key(), session.source.stems))
        self.say_about_frame(self._open_message + "; reading earlier results...", 8000)
        self._restore_zoom()
        loader = CallWorker(session.load_details)
        loader.finished.connect(self._details_loaded)
        self.details_runner.start(loader)

    def _source_key(self) -> str:
        return str(Path(self.session.source.path).resolve())

    def _remember_place(self) -> None:
        """Where the analyst was in the sequence open now, the frame and the zoom: reopening it starts there."""
        if self.session is None:
            return
        zoomed = self.frame_view.zoomed_rect()
        view = None if zoomed is None else [*self.frame_view.frame.shape[:2], *zoomed]
        self.window_memory.remember_place(self._source_key(), self.index, self.session.stem(self.index), view)

    def _restore_zoom(self) -> None:
        """The zoom the sequence open now was left at, if its frames still have the size they had then."""
        rect = None if self.frame is None else self.window_memory.zoomed_rect(self._source_key(), self.frame.shape[:2])
        if rect is not None:
            self.frame_view.show_rect(rect)

    def _describe_stopped_run(self) -> str | None:
        """What opening another sequence stops: a detection run over the one open now, said with its progress."""
        worker = self._running_detection_worker()
        if worker is None or not worker.indices:
            return None
        done = self.detection_panel.progress.value() if self.detection_panel.progress.maximum() > 0 else 0
        return (f"detection on {self.session.name} stopped after {done} of {len(worker.indices)} frames; "
                "the proposals made are saved in its project")

    def _details_loaded(self, _result, error) -> None:
        loader = self.sender()
        if loader is None or loader is not self.details_runner.worker:
            return
        self.details_runner.release_if_done(loader)
        session = self.session
        self.detection_panel.setEnabled(True)
        truth = session.ground_truth
        self.overlay_panel.set_available("truth", truth is not None and (truth.has_masks or truth.has_boxes),
                                         "no ground truth beside the source")
        for key in ("edges", "probability"):
            self.overlay_panel.set_available(key, True)
        self.refresh_strip()
        warnings = session.warnings + ([f"reading earlier results failed: {error}"] if error else [])
        self._warnings_shown = len(session.warnings)
        self.say_about_frame("; ".join([self._open_message, *warnings]), 15000)
        self.show_frame(self.index)  # (a ground-truth warning it finds is said after this message)
        self.review_tools.project_loaded()

    def open_folder_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a folder of frames")
        if path:
            self.open_path(path)

    def open_tiff_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open a TIFF stack", "", "TIFF (*.tif *.tiff)")
        if path:
            self.open_path(path)

    def open_project_dialog(self) -> None:
        path = QtWidgets.QFileDialog.getExistingDirectory(self, "Open a review project (made by irsam detect)")
        if path:
            self.open_path(path)

    def open_demo(self) -> None:
        from app.core.synthetic import demo_sequence_dir

        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.WaitCursor)
        try:
            path = demo_sequence_dir()
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self.open_path(path)

    def offer_demo(self) -> None:
        """Shown when started without a source."""
        answer = QtWidgets.QMessageBox.question(
            self, "IRSAM Review", "No sequence given. Open the built-in demo sequence (synthetic 16-bit IR)?"
        )
        if answer == QtWidgets.QMessageBox.Yes:
            self.open_demo()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.window_memory.recent()
        for path in recent:
            self.recent_menu.addAction(path, lambda _=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(recent))

    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    # --- showing a frame ------------------------------------------------------------------------

    def show_frame(self, index: int) -> None:
        """The image, its overlays, the frame label and the cursor readout at once; the panels (targets,
        IoU / Pd, review queue, 3D view, feature maps) when the frame has stayed PANELS_SETTLE_MS.
        Showing the shown frame again (after an edit, a status, a new result) updates the panels at once."""
        if self.session is None:
            return
        same_frame = index == self.index and self.frame is not None
        if self._frame_message is not None and self._frame_message[0] != index:
            self.withdraw_frame_message()  # about the frame left; it hid this frame's scores
        self.index = index
        self.timeline.set_current(index)
        self.review_tools.review_panel.shown_index = index  # (an unreadable frame is shown too: its notice)
        was_unreadable = self.session.is_unreadable(index)  # it may read again (its file back, copied in whole)
        try:
            self.frame, self.layers = self.session.frame_and_layers(index, self._wanted_layers())
        except FrameReadError as e:
            self.session.mark_unreadable(index)
            self.refresh_strip()
            self.frame = None
            self.layers = FrameLayers()
            self.frame_view.show_notice(f"Frame {index + 1} is unreadable: {e.reason}\n\n"
                                        "It is skipped by detection and export.")
            self.frame_label.setText(f"frame {index + 1}/{len(self.session)}: unreadable ({e.reason})")
            self.panels_timer.start()
            return
        self.frame_view.show_frame(self.frame, self.layers)
        change = self.layers.change
        changed = change is not None and change.changed
        self.frame_view.set_warning(change.describe() if changed else "")
        if changed != (index in self._painted_changed) or was_unreadable:
            self.refresh_strip()  # found changed (or no longer) when shown: pink in the timeline from now on
        self._mark_missing_layers()
        self._follow_selection()
        status = self.session.status(index).value
        origin = self.layers.origin
        self.frame_label.setText(f"frame {index + 1}/{len(self.session)}  {self.session.stem(index)}  [{status}"
                                 + (", changed on disk" if changed else "") + "]"
                                 + (f"  proposal: {origin.label}" if origin else ""))
        self.frame_label.setToolTip(origin.description if origin else "")
        self._show_cursor_readout()
        self.review_tools.frame_shown(index)
        if same_frame:
            self.update_panels()
        else:
            self.panels_timer.start()  # restarted by each change: a burst of changes updates them once

    def update_panels(self) -> None:
        """Bring the panels that follow the shown frame up to date (the settle timer calls this)."""
        self.panels_timer.stop()
        if self.session is None:
            return
        self._remember_place()  # (in the settings, which Qt writes out now and then: a crash keeps the place too)
        self._update_targets()
        self._update_metrics()
        self._update_surface()
        if self.features_dock.isVisible() and self.feature_panel.follow.isChecked():
            self.compute_features()
        self.review_tools.frame_settled(self.index)

    def _wanted_layers(self) -> set[str]:
        return {key for key, overlay in self.overlay_panel.overlays.items() if overlay.visible}

    def _overlays_changed(self, overlays: dict) -> None:
        if self.session is not None and self.frame is not None:
            # a layer switched on may need files that were not read for this frame
            self.layers = self.session.layers(self.index, self._wanted_layers())
            self.frame_view.layers = self.layers
            self._mark_missing_layers()
        self.frame_view.set_overlays(overlays)

    def _mark_missing_layers(self) -> None:
        panel, layers = self.overlay_panel, self.layers
        if panel.overlays["edges"].visible:
            panel.set_available("edges", layers.edges is not None, "this detector gives no edge map (IRSAM does)")
        if panel.overlays["probability"].visible:
            panel.set_available("probability", layers.probability is not None,
                                "no probabilities saved for this frame (detect with \"Keep probabilities\" on, "
                                "or irsam detect --save-logits)")

    def _update_targets(self) -> None:
        """The Targets list: the committed mask's targets where the frame has one, else the proposal's
        (`FrameLayers.targets`), their SNR measured with the pixels of that mask left out of the ring."""
        targets = self.layers.targets if self.frame is not None else []
        mask = self.layers.committed if self.layers.committed is not None else self.layers.prediction
        snrs = [target_snr(self._measured_frame(), t, mask) for t in targets]
        # a selection kept from a frame where it was (none within reach here) is no row of this frame's list
        shown = next((t.id for t in targets if t is self.selected), None)
        count = counted(len(targets), "target", "targets")
        if self.frame is None:
            caption = ""
        elif self.layers.committed is not None:
            caption = f"committed mask ({count})"
        else:
            caption = f"proposal ({count})" if self.layers.prediction is not None else "no proposal"
        self.target_list.set_targets(targets, snrs, shown, caption)

    def _update_metrics(self) -> None:
        """Per-frame scores against the ground truth (`frame_scores_text`); a new ground-truth warning said."""
        truth = self.session.ground_truth
        boxes = truth.boxes(self.index) if truth is not None else []
        self.metrics_label.setText(frame_scores_text(self.layers, boxes, self._scores))
        if truth is not None and len(truth.mask_warnings) > self._truth_warnings_shown:
            self._truth_warnings_shown = len(truth.mask_warnings)
            path, reason = truth.mask_warnings[-1]
            self.statusBar().showMessage(f"Ground truth {path.name}: {reason}", 15000)

    def _cursor_moved(self, x: int, y: int) -> None:
        self.cursor = (x, y)
        if self._show_cursor_readout() and self.selected is None:
            self._update_surface()

    def _measured_frame(self) -> np.ndarray:
        """The frame shown with the sequence's bad pixels repaired: what contrast and SNR are measured on (a stuck
        pixel in a target's ring inflated its noise, and beside the cursor it was taken for the local peak)."""
        normalization = self.session.normalization  # (the bad pixels change with it)
        if self._measured is None or self._measured[0] is not self.frame or self._measured[1] is not normalization:
            self._measured = (self.frame, normalization, normalization.repair(self.frame))
        return self._measured[2]

    def _show_cursor_readout(self) -> bool:
        """Raw value and local contrast under the cursor; False when the cursor is not on the frame."""
        if self.cursor is None or self.frame is None:
            return False
        # the mask of the Targets list's targets first (the committed mask, where there is one): their SNR
        text = cursor_readout(self.frame, *self.cursor, self.layers.committed, self.layers.prediction,
                              measured=self._measured_frame())
        if text is None:
            return False
        self.cursor_label.setText(text)
        return True

    # --- targets and the 3D view ----------------------------------------------------------------

    def select_target(self, target: Target | None) -> None:
        """Zoom on a target and follow it from frame to frame (the 3D view shows it); None: follow the cursor (Esc on
        the frame view or the Targets list, a click below its rows)."""
        self.selected = target
        if target is None:
            self.frame_view.select_box(None)
            self._update_surface()
            return
        self.frame_view.select_box((target.x0, target.y0, target.x1, target.y1))
        self.frame_view.center_on(target.cx + 0.5, target.cy + 0.5, max(TARGET_ZOOM, target.x1 - target.x0 + 8))
        self._update_surface()

    def _follow_selection(self) -> None:
        """Keep the selection on the nearest target of the new frame (ids are per frame)."""
        if self.selected is None:
            return
        previous = self.selected
        nearest = min(self.layers.targets, key=lambda t: math.hypot(t.cx - previous.cx, t.cy - previous.cy), default=None)
        if nearest is not None and math.hypot(nearest.cx - previous.cx, nearest.cy - previous.cy) <= TRACK_RADIUS:
            self.selected = nearest
            self.frame_view.select_box((nearest.x0, nearest.y0, nearest.x1, nearest.y1))
        else:
            self.frame_view.select_box(None)

    def _update_surface(self) -> None:
        if not self.surface_dock.isVisible():
            return
        if self.frame is None:
            if self.session is not None:
                self.surface_view.show_nothing(f"frame {self.index + 1} is unreadable: nothing to draw")
            return
        layers, frame_number = self.layers, self.index + 1
        mask = layers.committed if layers.committed is not None else layers.prediction
        not_detected = mask is None and self.session.detection_counts[self.index] < 0
        if self.selected is not None:
            cx, cy = self.selected.cx, self.selected.cy
            if self.selected in layers.targets:
                caption = f"target {self.selected.id} at ({cx:.0f}, {cy:.0f}), frame {frame_number}"
            else:  # the selection waits where it was, to follow the target when it is found again
                found = (f"frame {frame_number} is not detected yet" if not_detected
                         else f"none there on frame {frame_number}")
                caption = f"where the selected target was ({cx:.0f}, {cy:.0f}): {found}"
        elif self.cursor is not None:
            cx, cy = self.cursor
            caption = f"cursor ({cx}, {cy}), frame {frame_number}"
        else:
            cy, cx = self.frame.shape[0] / 2, self.frame.shape[1] / 2
            caption = f"frame centre, frame {frame_number}"
        region = SurfaceRegion.around(cx, cy, self.frame.shape)
        if mask is None:
            if not_detected and self.selected is None:  # (a selection's caption says it already)
                caption += "; no outline: not detected yet"
        elif not mask.any():
            caption += f"; no outline: the {'committed mask' if layers.committed is not None else 'proposal'} is empty"
        else:
            caption += "; outline: " + ("committed mask" if layers.committed is not None else "predicted mask")
        self.surface_view.show_region(self.frame, region, mask, self.frame_view.levels(),
                                      self.frame_view.lookup_table(), caption)

    # --- review status --------------------------------------------------------------------------

    def refresh_strip(self) -> None:
        if self.session is not None:
            codes = self.session.status_codes
            again = [i for i, change in list(self.session.changed_frames.items()) if change.changed]
            self._painted_changed = set(again)
            self.review_tools.review_panel.set_changed_frames(self.session.changed_frames)
            self.review_tools.review_panel.set_unreadable_frames(
                set(np.flatnonzero(self.session.detection_counts == UNREADABLE).tolist()))
            if again:
                codes = codes.copy()
                codes[again] = CHANGED_ON_DISK
            self.timeline.strip.set_arrays(self.session.detection_counts, codes)

    def take_up_disk_changes(self) -> None:
        """Show what other instances on the project wrote (`ReviewSession.refresh_from_disk`): the timeline, the
        queue and the shown frame follow another window's statuses and edits, and an `irsam detect` run's
        proposals as it goes. The shown frame waits while a brush stroke is held."""
        session = self.session
        if session is None or self.details_runner.busy:
            return
        started, shown_status = time.perf_counter(), int(session.status_codes[self.index])
        normalization = session.normalization
        changes = session.refresh_from_disk()
        self._say_if_source_gone()
        if len(session.warnings) > self._warnings_shown:  # said since the project was read (a write moved it)
            self.statusBar().showMessage("; ".join(session.warnings[self._warnings_shown:]), 15000)
            self._warnings_shown = len(session.warnings)
        if session.normalization is not normalization:  # a project another instance made, or its new window
            self._show_normalization(session.normalization)
            if self._normalization_dialog is not None:  # open, it says which window the sequence has now
                self._normalization_dialog.show_current(session.normalization)
        self._show_disk_changes(changes, shown_status)
        if changes.normalization:  # after the frames' news: it changes what every later detection sees
            self._say_normalization_changed_by_another()
        # a big project's folders take tens of ms to list, its queue as long to summarise: looked at less often,
        # the window stays smooth
        took_ms = 1000 * (time.perf_counter() - started)
        self.disk_timer.setInterval(max(DISK_POLL_MS, min(3 * DISK_POLL_MS, int(20 * took_ms))))

    def _say_if_source_gone(self) -> None:
        """Say when the sequence's folder (or stack) goes away, a drive dropped or the folder moved, and when it is
        back: until then only the frames read already can be shown."""
        path = Path(self.session.source.path)
        gone = not path.exists()
        if gone == self._source_gone:
            return
        self._source_gone = gone
        if gone:
            self.statusBar().showMessage(f"{path} is gone (moved, deleted, or its drive dropped): the frames read "
                                         "already still show; the others cannot be read until it is back.")
        else:
            self.statusBar().showMessage(f"{path} is back: frames that could not be read are read again when shown.",
                                         15000)

    def _show_disk_changes(self, changes: DiskChanges, shown_status: int) -> None:
        self._show_frames_changed(changes, shown_status)
        self._say_overwritten_by_unsaved(changes)  # after the shown frame's news: it matters more

    def _show_frames_changed(self, changes: DiskChanges, shown_status: int) -> None:
        session = self.session
        if self._reshow_after_stroke is not None and not self.review_tools.editing.drawing:
            (index, before), self._reshow_after_stroke = self._reshow_after_stroke, None
            if index == self.index:
                self.show_frame(index)
                self._say_changed_by_another(*before)
        if not changes:
            return
        self.refresh_strip()
        if changes.proposals and not session.counts_pending:
            # (while a run's proposals are still being counted, summarising the queue would read them all at once)
            self.review_tools.refresh_queue()
        else:
            self.review_tools.review_panel.set_statuses(session.statuses())
        if session.stem(self.index) not in changes.stems:
            return
        before = (self.layers, shown_status, changes)
        if self.review_tools.editing.drawing:
            self._reshow_after_stroke = (self.index, before)
        else:
            self.show_frame(self.index)
            self._say_changed_by_another(*before)

    def _say_overwritten_by_unsaved(self, changes: DiskChanges) -> None:
        """Another instance committed a mask on a frame whose edit here could not be saved: the edit, shown and kept
        in memory, replaces theirs when it is saved. Said, with how to get theirs back."""
        editor = self.review_tools.editing.editor_with_unsaved_edits
        unsaved = editor.unsaved if editor is not None else {}
        frames = sorted(i for i in unsaved if self.session.stem(i) in changes.committed)
        if frames:
            names = ", ".join(str(i + 1) for i in frames)
            self.statusBar().showMessage(
                f"Frame{'s' if len(frames) > 1 else ''} {names}: another window or irsam command committed a mask "
                "over your edit that is not saved yet. Your edit replaces it when it is saved; Undo then brings "
                "theirs back.", 15000)

    def show_message_log(self) -> MessageLog:
        if self._message_log is None:
            self._message_log = MessageLog(self.statusBar(), self)
        self._message_log.show()
        self._message_log.raise_()
        self._message_log.activateWindow()
        return self._message_log

    def _show_status_taken_up(self, index: int) -> None:
        """A change on frame `index` was refused: another window or irsam command set its status since it was shown
        (`ReviewSession.on_status_taken_up`). Their status, taken up, is shown at once: the timeline, the queue and
        the frame (the refusal, said after this, tells why)."""
        self.refresh_strip()
        self.review_tools.review_panel.set_statuses(self.session.statuses())
        if index == self.index:
            self.show_frame(index)

    def say_about_frame(self, text: str, timeout_ms: int) -> None:
        """A status-bar message about the frame shown (a refusal, a warning about its status or mask) or the
        sequence just opened: cleared when another frame is shown, whose label and scores it would hide (View >
        Messages keeps it)."""
        self.statusBar().showMessage(text, timeout_ms)
        self._frame_message = (self.index, text)

    def shown_masks_current(self) -> bool:
        """Whether the shown frame's proposal and committed mask are still the ones on disk: an accept or an edit
        must act on what the analyst saw. Another window or an irsam command may have replaced them since they were
        read (the window looks at the project every few seconds); then the frame is shown again as it is on disk,
        and, where what is shown changed, that is said and False returned."""
        session = self.session
        if session is None or self.frame is None or not session.masks_replaced(self.index, self.layers):
            return True
        before, stem = self.layers, session.stem(self.index)
        session.files_rewritten([stem])
        self.show_frame(self.index)
        replaced = [name for name, was, now in (("proposal", before.prediction, self.layers.prediction),
                                                ("committed mask", before.committed, self.layers.committed))
                    if not _same_mask(was, now)]
        if not replaced:
            return True  # written again as it was (or by this window)
        self.say_about_frame(f"Frame {self.index + 1}: its {' and '.join(replaced)} changed on disk since it was "
                             "shown (another window or an irsam command): shown now as it is; check it, then do it "
                             "again.", 15000)
        return False

    def withdraw_frame_message(self) -> None:
        """Clear the last `say_about_frame` message if it is still shown (it no longer holds: the frame left, or
        its status changed)."""
        if self._frame_message is not None and self.statusBar().message() == self._frame_message[1]:
            self.statusBar().clearMessage()
        self._frame_message = None

    def _say_changed_by_another(self, shown: FrameLayers, shown_status: int, changes: DiskChanges) -> None:
        """Say in the status bar what changed on the frame shown, from what showed before (a file written again
        with the same mask is not news); a layer not read (its overlay off) is taken from `changes`."""
        stem, committed_read = self.session.stem(self.index), "committed" in self._wanted_layers()
        what = [name for name, changed in (
            ("status", shown_status != self.session.status_codes[self.index]),
            ("proposal", not _same_mask(shown.prediction, self.layers.prediction)),
            ("committed mask", not _same_mask(shown.committed, self.layers.committed) if committed_read
             else stem in changes.committed)) if changed]
        if what:
            self.say_about_frame(f"Frame {self.index + 1}: {' and '.join(what)} changed by another window or irsam "
                                 "command on this project", 8000)

    def changed_frames_found(self) -> None:
        """The frame check ended: mark what it found in the timeline and on the shown frame."""
        self.refresh_strip()
        if self.frame is not None:
            self.show_frame(self.index)

    # --- detection ------------------------------------------------------------------------------

    def _choice_changed(self, choice: DetectorChoice) -> None:
        previous = self.detector_choice
        if self.detector_choice is not None and self.detector_choice.weights_changed(self.detector):
            self.detector, self.detector_choice = None, None  # its file was rewritten: loaded again below
            self._update_device_label()
        if choice != self.detector_choice:
            if self.detector is not None and choice.same_detector(self.detector_choice):
                self.detector, self.detector_choice = choice.regate(self.detector), choice  # no reload
                self._describe_detector()
            else:
                self._take_up_choice(choice)
        if choice.method == "irsam" and choice.weights and self.detector is None and not self.detection_runner.busy:
            # load now, so the checkpoint's metadata (or why it is unusable) shows at once
            self._start_worker(self.detection_runner, [], choice, features=False)
        elif self.features_dock.isVisible() and not self.detection_runner.busy and not choice.same_detector(previous):
            self.compute_features()  # the maps shown are the detector's chosen before (a load recomputes them)

    def _take_up_choice(self, choice: DetectorChoice) -> None:
        """Another detector chosen, built when it is first used, unless it is the IRSAM network set aside when a
        classical method was chosen over it (`_irsam_set_aside`)."""
        set_aside = self._irsam_set_aside
        if self.detector is not None and self.detector_choice.method == "irsam" and choice.method != "irsam":
            set_aside = (self.detector_choice, self.detector)
        self.detector, self.detector_choice = None, None
        if set_aside is not None and choice.same_detector(set_aside[0]) and not choice.weights_changed(set_aside[1]):
            self.detector, self.detector_choice = choice.regate(set_aside[1]), choice
            set_aside = None
            self._describe_detector()
        elif choice.method == "irsam":
            set_aside = None  # another network is loaded: the one set aside would only hold memory
        self._irsam_set_aside = set_aside
        self._update_device_label()

    def run_detection(self, scope: str) -> None:
        if self.session is None:
            self.statusBar().showMessage("Open a sequence first: File > Open folder (Ctrl+O), or drop one here.", 8000)
            return
        if scope == "frame":
            indices = [self.index]
        elif scope == "range":
            first, last = self.detection_panel.frame_range()
            indices = list(range(first, last + 1))
        else:
            indices = list(range(len(self.session)))
        if refused := self.start_detection(indices):
            self.statusBar().showMessage(refused, 5000)

    def start_detection(self, indices: list[int]) -> str | None:
        """Run the panel's detector over `indices` (frame indices) and save its proposals in the project;
        while the detector is still loading (picked a moment ago), the run starts when it is loaded.
        Returns why the run was refused, or None."""
        if self.detection_runner.busy and not self.detector_loading():
            return "The detector is still running; try again when it is done."
        if self._pending_run is not None:
            return "A run is already waiting for the detector to load."
        if self.review_tools.writing:
            running = ("Propagation is running" if self.review_tools.propagation.busy
                       else "The ground-truth masks are being committed")
            return f"{running}; run the detector when it is done."
        try:
            self.session.ensure_project()
        except (ProjectError, OSError) as e:
            self.detection_panel.show_error(f"Cannot create the review project in {self.session.project_dir}: {e}")
            return f"Cannot create the review project: {e}"
        self.feature_runner.stop()
        self.detection_panel.set_running(True)
        if self.detection_runner.busy:
            self._pending_run = list(indices)
        else:
            self._start_worker(self.detection_runner, indices, self.detection_panel.choice(), features=False)
        return None

    def _running_detection_worker(self) -> DetectionWorker | None:
        worker = self.detection_runner.worker
        return worker if self.detection_runner.busy and isinstance(worker, DetectionWorker) else None

    def detector_loading(self) -> bool:
        """Whether the detection runner only loads the detector (a checkpoint just picked), detecting nothing."""
        worker = self._running_detection_worker()
        return worker is not None and not worker.indices

    def cancel_detection(self) -> None:
        if self._pending_run is not None:
            self._pending_run = None
            self.detection_panel.set_running(False, cancelled=True)
        self.detection_runner.cancel()

    def choose_normalization(self) -> NormalizationDialog | None:
        """The window (or percentiles) from raw values to the detectors' input, stored in the project."""
        if self.session is None:
            return None
        if self.details_runner.busy:  # the project, which stores the window, is still being read
            self.statusBar().showMessage("The sequence's earlier results are still loading; try again in a moment.", 5000)
            return None
        if self.review_tools.refuse_while_writing("change the input window"):
            return None
        predicted = int((self.session.detection_counts >= 0).sum())
        dialog = NormalizationDialog(self.session.normalization, self.session.source.dtype, self.frame_view.levels,
                                     predicted, self, shown_frame=self.frame)
        dialog.accepted.connect(lambda: self._apply_normalization(dialog.request()))
        dialog.open()
        self._normalization_dialog = replace_dialog(self._normalization_dialog, dialog)
        return dialog

    def _apply_normalization(self, request) -> None:
        QtWidgets.QApplication.setOverrideCursor(QtCore.Qt.WaitCursor)  # percentiles read 32 frames
        try:
            normalization = self.session.change_normalization(request)
        except (ProjectError, OSError, ValueError) as e:  # the project cannot be written; no frame for percentiles
            self.statusBar().showMessage(f"The input window was not changed: {e}", 15000)
            return
        finally:
            QtWidgets.QApplication.restoreOverrideCursor()
        self._show_normalization(normalization)
        self.statusBar().showMessage(f"Detector input: normalisation {normalization}", 10000)
        if self.features_dock.isVisible() and self.frame is not None:
            self.compute_features()

    def _say_normalization_changed_by_another(self) -> None:
        running = " (the detection run under way keeps the one it started with)" if (
            self.detection_runner.busy and not self.detector_loading()) else ""
        self.statusBar().showMessage(f"Detector input changed by another window: normalisation "
                                     f"{self.session.normalization}{running}", 15000)
        if self.features_dock.isVisible() and self.frame is not None:
            self.compute_features()

    def _show_normalization(self, normalization) -> None:
        """The frame view's sequence levels and bad-pixel boxes follow the detectors' input window."""
        self.frame_view.set_sequence_levels(normalization.low, normalization.high)
        self.frame_view.set_bad_pixels(normalization.bad_pixels)

    def compute_features(self) -> None:
        if self.session is None:
            return
        if self.frame is None:
            self._feature_maps_of = None
            self.feature_panel.clear_maps(f"Frame {self.index + 1} is unreadable: it has no feature maps.")
            return
        if self.detection_runner.busy:
            self.feature_panel.show_message("Detection is running; feature maps are computed when it is done.")
            return
        if self.review_tools.propagation.busy:
            self.feature_panel.show_message("Propagation is running; feature maps are computed when it is done.")
            return
        # the input and the maps shown stay those of one frame until this frame's maps arrive (`_features_done`)
        shown = (f" (those of {self._feature_maps_of} are shown until then)"
                 if self._feature_maps_of not in (None, f"frame {self.index + 1}") else "")
        self.feature_panel.show_message(f"Computing the feature maps of frame {self.index + 1}...{shown}")
        if self.feature_runner.busy:
            # one inference at a time; the frame shown when it ends is computed next (scrubbing skips frames)
            self._features_pending = True
            return
        self._features_pending = False
        self._start_worker(self.feature_runner, [self.index], self.detection_panel.choice(), features=True)

    def _place_floating_once(self, dock: QtWidgets.QDockWidget) -> None:
        """Put a floating dock over the main window the first time it shows (Qt puts it at the screen's
        corner, over the menus): the 3D view at the top right, the feature maps along the bottom."""
        if not dock.isFloating() or dock.property("placed"):
            return
        dock.setProperty("placed", True)
        frame = self.frameGeometry()
        if dock is self.surface_dock:
            x, y = frame.right() - dock.width() - 40, frame.top() + 80
        else:
            x, y = frame.left() + 40, frame.bottom() - dock.height() - 60
        screen = (self.screen() or QtGui.QGuiApplication.primaryScreen()).availableGeometry()
        x = max(screen.left(), min(x, screen.right() - dock.width()))
        y = max(screen.top(), min(y, screen.bottom() - dock.height()))
        dock.move(x, y)

    def _dock_under_the_frame(self, dock: QtWidgets.QDockWidget, height: int) -> None:
        """A dock docked under (or above) the frame: `height` high, once Qt has placed it."""
        QtCore.QTimer.singleShot(0, self, lambda: self._fit_docked(dock, height))

    def _fit_docked(self, dock: QtWidgets.QDockWidget, height: int) -> None:
        if not dock.isFloating() and self.dockWidgetArea(dock) in (QtCore.Qt.BottomDockWidgetArea,
                                                                   QtCore.Qt.TopDockWidgetArea):
            self.resizeDocks([dock], [height], QtCore.Qt.Vertical)

    def _features_visibility(self, visible: bool) -> None:
        if visible and self.frame is not None and self.feature_panel.follow.isChecked():
            self.compute_features()

    def _start_worker(self, runner: WorkerRunner, indices: list[int], choice: DetectorChoice, features: bool) -> None:
        same = choice == self.detector_choice and not choice.weights_changed(self.detector)
        detector = self.detector if same else None  # (built in the worker when None)
        project = None if features else self.session.project if self.session else None
        worker = DetectionWorker(self.session.source if self.session else None,
                                 self.session.normalization if self.session else None,
                                 indices, choice, detector, project, features,
                                 save_logits=self.detection_panel.keep_probabilities.isChecked())
        worker.detectorReady.connect(self._detector_ready)
        worker.frameDone.connect(self._features_done if features else self._frame_done)
        worker.frameFailed.connect(self._frame_failed)
        if not features:
            self._skipped_in_run = []
        worker.progress.connect(self._progress)
        worker.failed.connect(self._worker_failed)
        worker.finished.connect(self._worker_finished)
        runner.start(worker)

    def _from_a_current_worker(self) -> bool:
        """Whether the signal comes from the detection or feature runner's current worker (not a stopped one)."""
        return self._from_current_worker(self.detection_runner) or self._from_current_worker(self.feature_runner)

    def _from_current_worker(self, runner: WorkerRunner) -> bool:
        # sender() is None when the worker was dropped (stop) before its queued signal arrived
        sender = self.sender()
        return sender is not None and sender is runner.worker

    def _detector_ready(self, detector, notice) -> None:
        worker = self.sender()
        if worker is None:
            return
        self.detector, self.detector_choice = detector, worker.choice
        if worker.choice.method == "irsam":
            self._irsam_set_aside = None  # a network of its own is loaded: the one set aside would only hold memory
        text = self._describe_detector()
        QtCore.QTimer.singleShot(0, self, self.right_column.fit_detection_dock)  # the checkpoint's description adds lines
        if notice:
            self.detection_panel.show_error(f"{text}\n{notice}")
            self.statusBar().showMessage(notice, 15000)
        self._update_device_label(notice)

    def _describe_detector(self) -> str:
        """Show the loaded detector (its choice, device, checkpoint) in the panel; returns the text. A classical
        method's description, which the panel gave it when it was chosen (what it suits, its threshold), is kept: it
        says more than its device, the CPU."""
        if self.detector_choice.method != "irsam":
            return self.detection_panel.info.text()
        metadata = getattr(self.detector, "metadata", None)
        text = f"{self.detector_choice.label} on {self.detector.device}"
        if metadata:
            text += "\n" + describe_metadata(metadata)
        self.detection_panel.show_info(text)
        return text

    def _frame_done(self, index: int, _result) -> None:
        if not self._from_current_worker(self.detection_runner):
            return
        self.session.record_result(index)
        self.refresh_strip()
        self._queue_frames_done.add(index)
        if not self.queue_timer.isActive():
            self.queue_timer.start()
        if index == self.index:
            self.show_frame(index)

    def _queue_takes_frames_done(self) -> None:
        done, self._queue_frames_done = self._queue_frames_done, set()
        if done and self.session is not None:
            self.review_tools.refresh_queue_frames(done)

    def _stop_following_run_in_queue(self) -> None:
        """The sequence closes: the frames its run did are not taken into the queue any more."""
        self.queue_timer.stop()
        self._queue_frames_done.clear()

    def _features_done(self, index: int, result) -> None:
        if not self._from_current_worker(self.feature_runner) or index != self.index or self.frame is None:
            return
        name = self.detector_choice.label if self.detector_choice else "This detector"
        self._feature_maps_of = f"frame {index + 1}" if result.features else None
        self.feature_panel.set_input(self.session.normalization.apply(self.frame))
        self.feature_panel.set_features(result.features, name, f"frame {index + 1}")

    def _frame_failed(self, index: int, reason: str) -> None:
        if not self._from_a_current_worker():
            return  # a stopped run's queued signal: the index may belong to the sequence open before
        if self.session is not None:
            self.session.mark_unreadable(index)
            self.refresh_strip()
        earlier = self._skipped_in_run
        also = ""
        if earlier:  # each message replaces the one before: the frames it named are named again
            listed = ("..., " if len(earlier) > 5 else "") + ", ".join(str(i + 1) for i in earlier[-5:])
            also = f" (also skipped in this run: frame{'s' if len(earlier) > 1 else ''} {listed})"
        earlier.append(index)
        self.statusBar().showMessage(f"frame {index + 1} skipped: {reason}{also}", 8000)

    def _progress(self, done: int, total: int, fps: float) -> None:
        if self._from_current_worker(self.detection_runner):
            self.detection_panel.set_progress(done, total, fps)

    def _worker_failed(self, message: str) -> None:
        if not self._from_a_current_worker():
            return
        worker = self.sender()
        label = worker.choice.label
        what = "failed"
        if message.startswith(NOT_STARTED):  # refused before it began: nothing failed
            what, message = "not started", message.removeprefix(NOT_STARTED)
        self.detection_panel.show_error(f"{label} {what}:\n{message}")
        if worker is self.feature_runner.worker:
            self.feature_panel.show_message(f"Feature maps failed: {message}")
        self.statusBar().showMessage(f"{label} {what}: {message}", 15000)

    def _worker_finished(self, cancelled: bool) -> None:
        worker = self.sender()
        if worker is None:  # dropped by stop() (a new sequence, or closing) before this queued call arrived
            return
        if worker is self.detection_runner.worker:
            self.detection_runner.release_if_done(worker)
            if self._pending_run is not None:  # the detector is loaded (or failed to: the run says why again)
                indices, self._pending_run = self._pending_run, None
                self._start_worker(self.detection_runner, indices, self.detection_panel.choice(), features=False)
                return
            if not worker.indices and worker.choice != self.detection_panel.choice():
                self._choice_changed(self.detection_panel.choice())  # changed while it loaded: load that one
            if worker.indices:
                self.detection_panel.set_running(False, cancelled)
                if worker.kept_accepted:
                    self.statusBar().showMessage(
                        f"{worker.kept_accepted} accepted frame(s) keep the mask they were accepted with; "
                        "the new proposal is in the prediction layer", 15000)
                self.queue_timer.stop()
                self._queue_takes_frames_done()  # the last second's frames
            if self.features_dock.isVisible():
                self.compute_features()  # refused while the run went on, or a new detector was loaded
        elif worker is self.feature_runner.worker:
            self.feature_runner.release_if_done(worker)
            if self._features_pending:
                self.compute_features()

    def _update_device_label(self, notice: str | None = None) -> None:
        choice = self.detection_panel.choice()
        if self.detector is not None:
            device, tip = self.detector.device, ""
        elif choice.method != "irsam":
            device, tip = "cpu", ""
        elif choice.device == "auto" and self._auto_device is not None:
            device = self._auto_device
            tip = ("auto: CUDA is available; whether it works is known when IRSAM loads" if device == "cuda"
                   else "auto: CUDA is not available here, so IRSAM runs on the CPU")
        else:  # torch is imported with IRSAM, not at start: whether CUDA works is known then
            device = choice.device
            tip = "" if device == "cpu" else f"{device} as asked; whether CUDA works is known when IRSAM loads"
        self.device_label.setText(f"device: {device}" + ("  (CPU fallback)" if notice else ""))
        self.device_label.setStyleSheet("color: #e0a030;" if notice else "")
        self.device_label.setToolTip(notice or tip)

    def _look_up_auto_device(self) -> None:
        """Find what the "auto" device is on this machine, once, in a thread: importing torch takes seconds, which
        the window's start does not wait for."""
        if self._auto_device is None and self.device_runner.worker is None:
            worker = CallWorker(auto_device)
            worker.finished.connect(self._auto_device_found)
            self.device_runner.start(worker)

    def _auto_device_found(self, device: str | None, _error) -> None:
        worker = self.sender()
        if worker is None:  # the window closed meanwhile
            return
        self.device_runner.release_if_done(worker)
        if device is not None:  # (otherwise "auto" stays shown: IRSAM's load says what it runs on)
            self._auto_device = device
            self._update_device_label()

    def _restore_layout(self) -> bool:
        """The window's size and place, and its docks and toolbars (which are open, floating, where, how tall), as
        the window was last closed. False when none was saved (or saved by an older layout of docks)."""
        if not self.window_memory.restore_layout(self):
            return False
        for dock in (self.surface_dock, self.features_dock):
            if dock.isVisible() or not dock.isFloating():  # where the analyst left it (else placed when first shown)
                dock.setProperty("placed", True)
        return True

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        self.right_column.window_shown()
        self._look_up_auto_device()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self.right_column.window_resized(event)

    def event(self, event: QtCore.QEvent) -> bool:
        return self.right_column.window_event(event, super().event)

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        """Esc that no control used (pressed on the frame view, say): the target selection is cleared, and the 3D
        view follows the cursor again."""
        if event.key() == QtCore.Qt.Key_Escape and not event.modifiers() and self.selected is not None:
            self.target_list.clear_target_selection()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        dialog = self.review_tools.finetune_dialog
        if dialog is not None and dialog.isVisible():
            dialog.reject()  # asks while training runs (No keeps the app open); refused while it exports
            if dialog.isVisible():
                event.ignore()
                return
        if not self.review_tools.save_unsaved_edits():
            event.ignore()
            return
        self.panels_timer.stop()
        self.disk_timer.stop()
        self.device_runner.stop()
        self._close_session()
        self.window_memory.save_layout(self)
        super().closeEvent(event)


def auto_device() -> str:
    """What IRSAM's "auto" device is on this machine (`model.predictor.choose_device`) as far as can be told without
    starting CUDA: "cuda" when PyTorch sees a GPU, else "cpu (N threads)"."""
    import torch

    return "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"


def _same_mask(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
