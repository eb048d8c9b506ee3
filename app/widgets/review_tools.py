"""The review tools of the main window (part 2): mask editing, the review queue, propagation, shortcuts,
export and fine-tuning, wired to the window in one place so the window itself stays thin.

The window calls `frame_shown(index)` after showing a frame, `frame_settled(index)` when that frame has
stayed on screen (the queue's selection follows it then, not on every frame of a scrub), `project_loaded()`
when the project has been read, `refresh_queue_frames(indices)` for the frames its detection run has done (once a
second), `refresh_queue()` when another instance's proposals have all been counted, and `save_unsaved_edits()`
then `stop()` before closing its session.
"""
from __future__ import annotations

import threading
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.label_import import LabelImportReport, import_labels
from app.core.project import ProjectError, ProjectWriteError, ReviewStatus
from app.core.propagation import (
    PropagationResult,
    apply_propagation,
    describe_skipped,
    target_to_carry,
)
from app.core.review_queue import summarize, unreviewed_summaries
from app.editing import EditRefused, FrameEditor, StatusNotSaved, Tool
from app.paths import DEFAULT_WEIGHTS
from app.widgets.dialogs import replace_dialog
from app.widgets.edit_tools import EditPalette, MaskEditing
from app.widgets.export_dialog import ExportDialog
from app.widgets.finetune_dialog import FineTuneDialog
from app.widgets.propagation_panel import Propagation, PropagationPanel
from app.widgets.review_panel import ReviewPanel
from app.widgets.scrolling import ScrollingPanel
from app.widgets.shortcuts_dialog import ShortcutActions, ShortcutsDialog
from app.widgets.workers import CancellableCallWorker, DetectorChoice, WorkerRunner
from model.data import counted

ZOOM_STEP = 1.5  # one zoom key press: the view 1.5x closer, or farther
MAX_DAMAGED_LISTED = 20
STATUS_MENU_ORDER = (ReviewStatus.ACCEPTED, ReviewStatus.CORRECTED, ReviewStatus.REJECTED, ReviewStatus.NEGATIVE,
                     ReviewStatus.UNREVIEWED)
PROPAGATION_BLOCKS = ("Propagation is running: mask edits and status changes are paused until it ends "
                      "(Cancel under the Targets list stops it).")
IMPORT_BLOCKS = "Committing the ground-truth masks: mask edits and status changes are paused until it ends."
LOADING_BLOCKS = "Reading this sequence's earlier results: mask edits and status changes wait until they are read."
# frame by frame, each an undoable edit: those written before the failure stay
PARTLY_WRITTEN = "The {what} written before it are kept (each one can be undone); the other frames are as they were"


class ReviewTools(QtCore.QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.palette = EditPalette(window)
        window.addToolBar(QtCore.Qt.LeftToolBarArea, self.palette)
        self.editing = MaskEditing(window, self.palette)
        self.review_panel = ReviewPanel()
        self.propagation_panel = PropagationPanel()
        self.propagation = Propagation(self)
        self.label_import = WorkerRunner(self)
        self.importing = False  # from the import's start until its result is taken in (or it is stopped)
        self._settled_on: int | None = None  # the frame the queue was last scrolled to by `frame_settled`
        self.review_dock = QtWidgets.QDockWidget("Review", window)
        self.review_dock.setObjectName("Review")
        self.review_dock.setWidget(ScrollingPanel(self.review_panel))
        self._put_propagation_under_the_targets()
        window.addDockWidget(QtCore.Qt.RightDockWidgetArea, self.review_dock)
        window.tabifyDockWidget(window.targets_dock, self.review_dock)
        self.review_dock.raise_()
        self.finetune_dialog: FineTuneDialog | None = None
        self.latest_export_dialog: ExportDialog | None = None
        self._shortcuts_dialog: ShortcutsDialog | None = None

        self.shortcuts = ShortcutActions(window, self._shortcut_handlers(), home=window.frame_view.graphics)
        if self.shortcuts.load_error:
            window.statusBar().showMessage(f"Default shortcuts in use: {self.shortcuts.load_error}", 15000)
        self.palette.show_keys(self.shortcuts.map.to_dict())
        self._build_menus()
        self.editing.edited.connect(self._frame_edited)
        self.editing.writeFailed.connect(self.show_write_error)
        self.review_panel.statusRequested.connect(self.set_status)
        self.review_panel.acceptAndNextRequested.connect(self.accept_and_next)
        self.review_panel.nextUnreviewedRequested.connect(lambda: self.next_unreviewed(1))
        self.review_panel.frameChosen.connect(window.timeline.go_to)
        self.propagation_panel.propagateRequested.connect(self.propagate)
        self.propagation_panel.cancelRequested.connect(self.propagation.cancel)
        self.propagation_panel.goToStopRequested.connect(window.timeline.go_to)
        self.propagation.finished.connect(self._propagated)

    def _put_propagation_under_the_targets(self) -> None:
        """Propagation carries the target selected in the Targets list: its controls sit under that list, in the
        same tab (in the Review tab they were a tab away from the selection, and squeezed the queue to 4 rows)."""
        window = self.window
        propagation = QtWidgets.QGroupBox("Propagation")
        QtWidgets.QVBoxLayout(propagation).addWidget(self.propagation_panel)
        widget = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(window.target_list.caption)  # whose targets the list shows
        layout.addWidget(window.target_list, 1)
        layout.addWidget(propagation)
        # on a short screen the list keeps its minimum and the dock scrolls: squeezed, the propagation's
        # result lost its first line under the list
        window.targets_dock.setWidget(ScrollingPanel(widget))

    def _build_menus(self) -> None:
        menus = {action.text(): action.menu() for action in self.window.menuBar().actions()}
        file_menu = menus["&File"]
        quit_action = file_menu.actions()[-1]
        export = QtGui.QAction("&Export labels...", file_menu)
        export.triggered.connect(self.export_dialog)
        file_menu.insertAction(quit_action, export)
        file_menu.insertSeparator(quit_action)
        review_menu = menus["&Review"]
        self.status_actions = [self.shortcuts.actions[f"mark_{status.value}"] for status in ReviewStatus]
        for group in (("accept_and_next", "next_unreviewed", "previous_unreviewed"),
                      tuple(f"mark_{status.value}" for status in STATUS_MENU_ORDER),
                      ("undo", "redo", "accept_all_predicted", "propagate_forward", "propagate_backward")):
            if review_menu.actions():
                review_menu.addSeparator()
            for name in group:
                review_menu.addAction(self.shortcuts.actions[name])
        review_menu.addSeparator()
        review_menu.addAction("Commit &ground-truth masks", self.commit_ground_truth)
        tools_menu = self.window.menuBar().addMenu("&Tools")
        tools_menu.addAction("&Fine-tune on corrections...", self.finetune_dialog_open)
        tools_menu.addAction("&Keyboard shortcuts...", self.edit_shortcuts)
        view_menu = menus["&View"]
        view_menu.addAction(self.review_dock.toggleViewAction())
        view_menu.addAction(self.palette.toggleViewAction())
        view_menu.addSeparator()
        for name in ("zoom_in", "zoom_out", "zoom_whole_frame"):
            view_menu.addAction(self.shortcuts.actions[name])

    def _shortcut_handlers(self) -> dict:
        timeline, palette, toggles = self.window.timeline, self.palette, self.window.overlay_panel.toggles
        handlers = {
            "next_frame": lambda: timeline.step(1),
            "previous_frame": lambda: timeline.step(-1),
            "first_frame": lambda: timeline.go_to(0),
            "last_frame": lambda: timeline.go_to(timeline.count - 1),
            "accept_and_next": self.accept_and_next,
            "next_unreviewed": lambda: self.next_unreviewed(1),
            "previous_unreviewed": lambda: self.next_unreviewed(-1),
            **{f"mark_{status.value}": lambda s=status: self.set_status(s) for status in ReviewStatus},
            "undo": self.editing.undo,
            "redo": self.editing.redo,
            "brush_smaller": lambda: palette.step_brush(-1),
            "brush_larger": lambda: palette.step_brush(1),
            "accept_all_predicted": self.editing.accept_all,
            "propagate_forward": lambda: self.propagate(1),
            "propagate_backward": lambda: self.propagate(-1),
            "toggle_prediction_overlay": toggles["prediction"].toggle,
            "toggle_committed_overlay": toggles["committed"].toggle,
            "toggle_edge_overlay": toggles["edges"].toggle,
            "toggle_target_boxes": toggles["boxes"].toggle,
            "toggle_probability_overlay": toggles["probability"].toggle,
            "toggle_truth_overlay": toggles["truth"].toggle,
            "toggle_bad_pixels_overlay": toggles["bad_pixels"].toggle,
            "toggle_diff": palette.diff.toggle,
            "zoom_in": lambda: self.window.frame_view.zoom(ZOOM_STEP),
            "zoom_out": lambda: self.window.frame_view.zoom(1 / ZOOM_STEP),
            "zoom_whole_frame": self.window.frame_view.show_whole_frame,
        }
        for tool in (Tool.NAVIGATE, Tool.BRUSH, Tool.ERASER, Tool.POLYGON, Tool.FLOOD_FILL, Tool.DELETE_COMPONENT,
                     Tool.GROW_TARGET, Tool.ACCEPT_TARGET):
            handlers[f"tool_{tool.value}"] = lambda t=tool: palette.set_tool(t)
        return handlers

    # --- called by the window -------------------------------------------------------------------

    def frame_shown(self, index: int) -> None:
        self.editing.refresh()

    def frame_settled(self, index: int) -> None:
        """The shown frame has stayed: its row is selected, and scrolled to when another frame was shown before (the
        same frame shown again, after a new result or an edit, leaves the queue scrolled where the analyst put it)."""
        session = self.window.session
        self.review_panel.set_frame_status(index, session.status(index))
        self.review_panel.show_current(index, session.status(index), scroll=index != self._settled_on)
        self._settled_on = index

    def project_loading(self) -> None:
        """A sequence was opened and its project is being read (ReviewSession.load_details in a worker). The
        last propagation's result, its stop and the queue's marker of it were the sequence before's: cleared."""
        self._block_edits(LOADING_BLOCKS)
        self.propagation_panel.clear_result()
        self.review_panel.model.set_marked({})
        self.window.timeline.strip.set_stop_marker(None)

    def project_loaded(self) -> None:
        self._block_edits(None)
        self.refresh_queue()
        session = self.window.session
        for folder, why in session.projects_set_aside:
            restore = (f" To take the earlier work up again, restore {folder.name}/project.json from a copy, then open "
                       "the sequence again." if "project.json" in why else "")
            QtWidgets.QMessageBox.warning(
                self.window, "Earlier work not opened",
                f"This sequence's project {folder} cannot be opened: {why}.\n\nIts files are left as they are; "
                f"this sequence's work now goes to {session.project_dir}.{restore}")
        if session.project is not None and session.project.damaged:
            self._show_damaged(session.project.damaged)

    def refresh_queue(self) -> None:
        """Re-read every frame's summary (after opening, or another instance's run)."""
        session = self.window.session
        project = session.project if session else None
        if project is not None:
            summaries = summarize(project)
        else:  # before the first run or edit creates the project, the queue still lists every frame
            summaries = unreviewed_summaries([session.stem(i) for i in range(len(session))]) if session else []
        self.review_panel.set_summaries(summaries)
        if session is not None:
            self.review_panel.show_current(self.window.index, session.status(self.window.index))

    def refresh_queue_frames(self, indices: set[int]) -> None:
        """Re-read the summaries of `indices` and of the frame after each (a detection run's frames done since
        the last call): cheaper than `refresh_queue` while a run goes on."""
        session = self.window.session
        project = session.project if session else None
        if project is None or not self.review_panel.model.summaries:
            return
        self.review_panel.update_summaries(summarize(project, indices), self.window.index)

    def stop(self) -> None:
        self._settled_on = None
        if self.importing:
            self.label_import.stop()  # cancels between frames and waits: `finished` does not come
            self.importing = False
            self._block_edits(None)
        if self.propagation.busy:
            self.propagation.stop()  # drops the run: `finished` does not come
            self._propagation_ended()
        if self.latest_export_dialog is not None:
            self.latest_export_dialog.wait_for_export()  # it reads the session's source, closed next
        if self.finetune_dialog is not None:
            self.finetune_dialog.sequence_closing()  # the same; training goes on

    def save_unsaved_edits(self) -> bool:
        """Before the session closes (the window closes, another sequence opens): save again the edits whose
        save failed: the edited mask, or only its status when the mask was written and review.json was not
        (StatusNotSaved). While one still fails, ask whether to try again, discard them, or cancel. An edit that can
        no longer be saved at all (its frame became unreadable) is discarded, and said, and the others saved.
        False: cancelled, the session must stay open."""
        editor = self.editing.editor_with_unsaved_edits
        while editor is not None and editor.unsaved:
            masks, statuses, error, refused = [], [], "", []
            for index in sorted(editor.unsaved):
                try:
                    editor.set_status(index, ReviewStatus.CORRECTED)  # what the edit's own save would have set
                except EditRefused as e:
                    del editor.unsaved[index]
                    refused.append(f"Frame {index + 1}: its edited mask, kept in memory since its save failed, is "
                                   f"discarded: {e}")
                except StatusNotSaved as e:
                    statuses.append(index)
                    error = str(e)
                except ProjectWriteError as e:
                    masks.append(index)
                    error = str(e)
            if refused:
                QtWidgets.QMessageBox.warning(self.window, "Edits that cannot be saved", "\n".join(refused))
            if not editor.unsaved:
                break
            answer = self._ask_about_unsaved_edits(masks, statuses, error)
            if answer == QtWidgets.QMessageBox.Cancel:
                return False
            if answer == QtWidgets.QMessageBox.Discard:
                editor.unsaved.clear()
        return True

    def _ask_about_unsaved_edits(self, masks: list[int], statuses: list[int],
                                 error: str) -> QtWidgets.QMessageBox.StandardButton:
        """`masks`: frames whose edited mask is not saved (Discard loses it); `statuses`: frames whose edited
        mask is saved but not their status, corrected (Discard leaves them with the status they had)."""
        def frames(indices: list[int]) -> str:
            listed = ", ".join(str(i + 1) for i in indices)
            return f"frame {listed}" if len(indices) == 1 else f"frames {listed}"

        unsaved, saved, discard = [], "", []
        if masks:
            one = len(masks) == 1
            unsaved.append(f"the edited mask{'' if one else 's'} of {frames(masks)} {'is' if one else 'are'} still "
                           "not saved")
            discard.append(f"loses the edit{'' if one else 's'} of {frames(masks)}")
        if statuses:
            one = len(statuses) == 1
            was = sorted({self.window.session.status(i).value for i in statuses})
            unsaved.append(f"the status of {frames(statuses)} is still not saved")
            saved = f" The edited mask{'' if one else 's'} of {frames(statuses)} {'is' if one else 'are'} saved."
            discard.append(f"keeps the saved mask{'' if one else 's'} of {frames(statuses)} but leaves "
                           f"{'it' if one else 'them'} {' or '.join(was)}: mark {'it' if one else 'them'} "
                           "Corrected once the project can be written")
        text = "; ".join(unsaved)
        box = QtWidgets.QMessageBox(
            QtWidgets.QMessageBox.Warning, "Unsaved edits", f"{text[0].upper()}{text[1:]}: {error}.{saved}",
            QtWidgets.QMessageBox.Save | QtWidgets.QMessageBox.Discard | QtWidgets.QMessageBox.Cancel, self.window)
        box.setInformativeText(f"Free some space or reconnect {self.window.session.project_dir}, then save again. "
                               f"Discard {' and '.join(discard)}; Cancel keeps this sequence open.")
        box.button(QtWidgets.QMessageBox.Save).setText("Save again")
        box.setDefaultButton(QtWidgets.QMessageBox.Save)
        box.exec()
        return box.standardButton(box.clickedButton())

    # --- review status --------------------------------------------------------------------------

    def set_status(self, status: ReviewStatus) -> bool:
        session, index = self.window.session, self.window.index
        if session is None:
            return False
        if self.editing.blocked is not None:
            self.editing.refuse()
            return False
        editor = self.editing.editor or FrameEditor(session)  # none without a frame shown: nothing unsaved there
        if (status in (ReviewStatus.ACCEPTED, ReviewStatus.CORRECTED) and index not in editor.unsaved
                and not self.window.shown_masks_current()):
            return False  # it would say another mask than the one seen is right
        try:
            editor.set_status(index, status)
        except EditRefused as e:
            self.window.say_about_frame(str(e), 8000)
            return False
        except StatusNotSaved as e:
            self.show_write_error(str(e), f"The mask shown on frame {index + 1} is saved but not its status, which "
                                          f"stays {session.status(index).value}")
            return False
        except ProjectWriteError as e:
            kept = ", its edited mask is kept in memory" if index in editor.unsaved else ""
            self.show_write_error(str(e), f"Frame {index + 1} stays {session.status(index).value}{kept}; the "
                                          "files on disk are unchanged")
            return False
        self.window.withdraw_frame_message()  # a warning about the status it had, or a refusal of it
        self.window.refresh_strip()
        self._show_status(index)
        self.window.show_frame(index)
        if status is ReviewStatus.NEGATIVE:
            shown = session.project.shown_mask(session.stem(index))
            if shown.any():
                self.window.say_about_frame(
                    f"Frame {index + 1} marked negative: it will export an empty mask, not the {int(shown.sum())} "
                    "target pixels shown.", 8000)
        return True

    def _show_status(self, index: int) -> None:
        """After frame `index`'s status changed: the queue and its counts take every frame's status, as the
        change also read those another instance on the project has set (the timeline shows them too)."""
        if not self.review_panel.model.summaries:  # the project was created by this change
            self.refresh_queue()
        self.review_panel.set_statuses(self.window.session.statuses())

    def _following(self, step: int, queue: list[int]) -> int | None:
        """The next unreviewed frame in `step`'s direction: in the review queue's order, as sorted and filtered
        (`queue`: its frames, taken before a status change could drop the shown one from it), else, when the
        queue holds none, in frame order."""
        session, index = self.window.session, self.window.index
        following = session.next_unreviewed(index, step, queue) if queue else None
        return session.next_unreviewed(index, step) if following is None else following

    def _queue_order(self) -> list[int]:
        return [summary.index for summary in self.review_panel.model.rows]

    def accept_and_next(self) -> None:
        queue = self._queue_order()
        if not self.set_status(ReviewStatus.ACCEPTED):
            return
        following = self._following(1, queue)
        if following is None:
            self.window.statusBar().showMessage("Every readable frame is reviewed.", 8000)
        else:
            self.window.timeline.go_to(following)

    def next_unreviewed(self, step: int) -> None:
        if self.window.session is None:
            return
        session, index = self.window.session, self.window.index
        following = self._following(step, self._queue_order())
        if following is None:
            shown_left = not session.is_unreadable(index) and (
                session.status(index) is ReviewStatus.UNREVIEWED or session.needs_review_again(index))
            self.window.say_about_frame(f"Frame {index + 1}, shown, is the last unreviewed frame." if shown_left
                                        else "No unreviewed frame left.", 8000)
        else:
            self.window.timeline.go_to(following)

    def _frame_edited(self, index: int) -> None:
        self.window.withdraw_frame_message()  # one about the status the edit (or its undo) changed
        self.window.refresh_strip()
        self._show_status(index)
        if index == self.window.index:
            self.window.show_frame(index)

    # --- propagation ----------------------------------------------------------------------------

    def propagate(self, direction: int) -> None:
        window, session = self.window, self.window.session
        if session is None or window.frame is None or self.writing:
            return
        if self.editing.blocked is not None:
            self.editing.refuse()
            return
        editor = self.editing.editor
        selected = window.selected
        box = None if selected is None else (selected.x0, selected.y0, selected.x1, selected.y1)
        target = target_to_carry(editor.working_mask(window.index), box)
        if not target.any():
            self.propagation_panel.show_result("This frame has no target to carry: draw or accept one first.", None)
            return
        try:
            session.ensure_project()
        except (ProjectError, OSError) as e:
            self.propagation_panel.show_result(f"Cannot create the review project in {session.project_dir}: {e}", None)
            return
        self.propagation_panel.set_running(True)
        self.review_panel.model.set_marked({})
        window.timeline.strip.set_stop_marker(None)
        self._block_edits(PROPAGATION_BLOCKS)
        # the loaded detector proposes on frames not yet detected; it is free: the window runs nothing
        # on it while propagation goes on
        idle = not (window.detection_runner.busy or window.feature_runner.busy)
        self.propagation.start(session, window.index, target, direction, self.propagation_panel.mode.currentText(),
                               self.propagation_panel.max_frames.value(), detector=window.detector if idle else None)

    def _block_edits(self, reason: str | None) -> None:
        """While a worker writes masks, edits and status changes would race it: refuse them, say why."""
        self.editing.set_blocked(reason)
        buttons = [*self.review_panel.status_buttons.values(), self.review_panel.accept_next]
        for widget in buttons + self.status_actions:
            widget.setEnabled(reason is None)
        bar = self.window.statusBar()
        if reason is not None:
            bar.showMessage(reason)
        elif bar.message() in (PROPAGATION_BLOCKS, IMPORT_BLOCKS, LOADING_BLOCKS):
            bar.clearMessage()  # a message shown since (a result, an error) stays

    def _propagation_ended(self) -> None:
        self.propagation_panel.set_running(False)
        self._block_edits(None)

    def _propagated(self, result: PropagationResult | None, error) -> None:
        panel, session = self.propagation_panel, self.window.session
        self._propagation_ended()
        if self.window.features_dock.isVisible():
            self.window.compute_features()  # refused while propagation held the detector
        if result is None:
            panel.show_result(f"Propagation failed: {error}" if error else "Cancelled; nothing was changed.", None)
            return
        try:
            changed = apply_propagation(session.project, result)
        except ProjectWriteError as e:
            self.show_write_error(str(e), PARTLY_WRITTEN.format(what="propagated masks"))
            return
        session.files_rewritten(result.stems)
        end = None if result.end_stem is None else session.project.index(result.end_stem)
        if end is None:
            where = "nothing carried"
        elif result.stopped_at is not None:
            where = f"stopped at frame {end + 1}"
        else:
            where = f"ended at frame {end + 1}"
        # an unchanged frame's committed mask already held the carried target: nothing was written; a frame left
        # alone was reviewed or edited elsewhere (another window, an irsam command) while the run went on
        unchanged = len(result.frames) - len(changed) - len(result.skipped)
        left_alone = f", {len(result.skipped)} left alone" if result.skipped else ""
        text = (f"Carried to {counted(len(result.frames), 'frame', 'frames')} "
                f"({counted(len(changed), 'mask', 'masks')} changed, {unchanged} already held the target{left_alone}); "
                f"{where}: {result.reason}")
        if result.skipped:
            text += f"; left alone: {describe_skipped(session.project, result)}"
        panel.show_result(text, end)
        self.review_panel.model.set_marked({} if end is None else {end: result.reason})
        self.window.timeline.strip.set_stop_marker(end, result.reason, stopped=result.stopped_at is not None)
        self.window.statusBar().showMessage(text, 15000)
        self.window.show_frame(self.window.index)

    # --- errors ---------------------------------------------------------------------------------

    def show_write_error(self, message: str, outcome: str = "Nothing was changed on disk") -> None:
        """`outcome`: what became of the change that was not saved."""
        text = f"Not saved: {message}. {outcome}."
        self.window.statusBar().showMessage(text)
        QtWidgets.QMessageBox.warning(self.window, "Could not save", text)

    def _show_damaged(self, damaged) -> None:
        """Each file with what stands in for it: a mask file's frame opens with what is left, the statuses
        with review.json's backup (its reason says so) or, when that is damaged too, none."""
        lines = [f"{path.parent.name}/{path.name}: {reason}" for path, reason in damaged[:MAX_DAMAGED_LISTED]]
        if len(damaged) > MAX_DAMAGED_LISTED:
            lines.append(f"... and {len(damaged) - MAX_DAMAGED_LISTED} more")
        names = {path.name for path, _ in damaged}
        notes = []
        if any(path.parent.name == "labels" for path, _ in damaged):
            notes.append("A frame whose committed mask is listed opens with what is left (its prediction, or an "
                         "empty mask).")
        restored = any(path.name == "review.json" and "restored from its backup" in reason for path, reason in damaged)
        if "review.json" in names and not restored:
            notes.append("review.json could not be read and no backup of it could stand in: every frame opens "
                         "unreviewed (set their statuses again, or restore review.json from a copy before "
                         "changing any).")
        QtWidgets.QMessageBox.warning(
            self.window, "Damaged project files",
            "These files of the project could not be read; the rest opens as saved:\n\n" + "\n".join(lines)
            + "".join(f"\n\n{note}" for note in notes))

    # --- dialogs --------------------------------------------------------------------------------

    def export_dialog(self) -> ExportDialog | None:
        session = self.window.session
        if session is None or session.project is None:
            self.window.statusBar().showMessage("Nothing to export: run detection or review some frames first.", 8000)
            return None
        if self.refuse_while_writing("export"):
            return None
        dialog = ExportDialog(session.project, session, self.window)
        dialog.open()
        self.latest_export_dialog = replace_dialog(self.latest_export_dialog, dialog)
        return dialog

    @property
    def writing(self) -> bool:
        """Whether propagation or a ground-truth import is writing the project's masks."""
        return self.propagation.busy or self.importing

    def writing_refusal(self, action: str) -> str | None:
        """Why `action` must wait (detection, propagation or an import is writing the project), or None. A
        detector that is only loading (a checkpoint just picked, to describe it) writes nothing."""
        window = self.window
        if (window.detection_runner.busy and not window.detector_loading()) or self.writing:
            return f"Detection, propagation or an import is running; {action} when it is done."
        return None

    def refuse_while_writing(self, action: str) -> bool:
        """Whether `action` must wait (`writing_refusal`), said in the status bar."""
        refusal = self.writing_refusal(action)
        if refusal:
            self.window.statusBar().showMessage(refusal, 8000)
        return refusal is not None

    # --- ground truth as committed masks --------------------------------------------------------

    def commit_ground_truth(self) -> None:
        """Take the masks found beside the source as the committed masks (app.core.label_import), in a
        worker; frames stay unreviewed, reviewed frames and the analyst's own committed masks are kept."""
        window, session = self.window, self.window.session
        truth = None if session is None else session.ground_truth
        if truth is None or not truth.has_masks:
            window.statusBar().showMessage("No ground-truth masks beside this sequence (a masks/ folder next to "
                                           "its images, masks named by frame).", 8000)
            return
        if self.refuse_while_writing("commit the ground truth"):
            return
        try:
            project = session.ensure_project()
        except (ProjectError, OSError) as e:
            self.show_write_error(str(e))
            return
        self._block_edits(IMPORT_BLOCKS)
        cancelled = threading.Event()
        worker = CancellableCallWorker(lambda: import_labels(project, truth.mask, cancelled=cancelled,
                                                             source_path=session.source.path,
                                                             has_mask=truth.has_mask), cancelled)
        worker.finished.connect(self._ground_truth_committed)
        self.importing = True
        self.label_import.start(worker)

    def _ground_truth_committed(self, report: LabelImportReport | None, error) -> None:
        worker = self.sender()
        if worker is None or worker is not self.label_import.worker:
            return
        self.label_import.release_if_done(worker)
        self.importing = False
        self._block_edits(None)
        window, session = self.window, self.window.session
        if report is None:
            self.show_write_error(error, PARTLY_WRITTEN.format(what="ground-truth masks"))
            return
        session.files_rewritten(report.imported)
        text = f"Ground truth: {report.summary()}; the frames stay unreviewed until you review them."
        refused = [f"{stem}: {why}" for stem, why in report.refused[:MAX_DAMAGED_LISTED]]
        if refused:
            QtWidgets.QMessageBox.warning(window, "Some ground-truth masks were not used", text + "\n\n" +
                                          "\n".join(refused))
        window.statusBar().showMessage(text, 15000)
        window.refresh_strip()
        self.refresh_queue()
        window.show_frame(window.index)

    def edit_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self.shortcuts.map, self.window, self.fixed_shortcuts())
        dialog.accepted.connect(lambda: self._save_shortcuts(dialog))
        dialog.open()
        self._shortcuts_dialog = replace_dialog(self._shortcuts_dialog, dialog)
        return dialog

    def fixed_shortcuts(self) -> dict[str, str]:
        """keys -> title of every shortcut in the window that the shortcut map does not own (menu entries,
        frame steps), in Qt's portable text form."""
        editable = set(self.shortcuts.actions.values())
        fixed = {}
        for action in self.window.findChildren(QtGui.QAction):
            if action not in editable and not action.shortcut().isEmpty():
                fixed[action.shortcut().toString()] = action.text().replace("&", "")
        for shortcut in self.window.findChildren(QtGui.QShortcut):
            fixed[shortcut.key().toString()] = shortcut.whatsThis() or "a fixed frame shortcut"
        # bound to an action, they would no longer move the keyboard focus between the window's controls
        # (Shift+Tab arrives as Backtab: normalize_keys reads it as Shift+Tab)
        fixed.update({"Tab": "Next control (focus)", "Shift+Tab": "Previous control (focus)"})
        return fixed

    def _save_shortcuts(self, dialog: ShortcutsDialog) -> None:
        self.shortcuts.apply(dialog.map)
        self.palette.show_keys(self.shortcuts.map.to_dict())
        try:
            self.shortcuts.save()
        except OSError as e:
            self.window.statusBar().showMessage(f"Shortcuts apply now but could not be saved: {e}", 15000)

    def finetune_dialog_open(self) -> FineTuneDialog | None:
        """The fine-tune dialog, modeless: the window stays free for reviewing while it trains (it blocks the
        window only while it exports). One at a time: an open one is raised, unless it sits idle over a sequence
        closed since (then a new one opens over the sequence shown)."""
        dialog = self.finetune_dialog
        if dialog is not None and dialog.isVisible() and dialog.session is None and not dialog.busy:
            dialog.close()  # idle over a sequence closed since: replaced by one over the sequence open now
        if dialog is not None and dialog.isVisible():
            dialog.raise_()
            dialog.activateWindow()
            return dialog
        session = self.window.session
        if session is None or session.project is None:
            self.window.statusBar().showMessage("Review some frames first: fine-tuning trains on them.", 8000)
            return None
        choice = self.window.detection_panel.choice()
        # a classical method has no weights to refine: start from the shipped IRSAM weights, not from scratch
        weights = choice.weights if choice.method == "irsam" else (str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file()
                                                                   else None)
        self.finetune_dialog = replace_dialog(self.finetune_dialog, FineTuneDialog(
            session, weights, self.window, self.window.settings,
            export_refusal=lambda: self.writing_refusal("start fine-tuning")))
        self.finetune_dialog.useWeightsRequested.connect(self.redetect_unreviewed)
        self.finetune_dialog.show()
        return self.finetune_dialog

    def redetect_unreviewed(self, weights: str) -> None:
        """Select the fine-tuned weights and detect every unreviewed frame with them (reviewed frames keep
        their masks; the run starts once the weights are loaded)."""
        window, session = self.window, self.window.session
        window.detection_panel.add_checkpoint(weights)
        name = DetectorChoice("irsam", str(weights)).weights_name  # with its run's folder: every run saves a best.pt
        dialog = self.finetune_dialog
        trained_on = dialog.project_folder if dialog is not None else None
        if session is None or session.project is None or Path(session.project.folder).resolve() != trained_on:
            # another sequence was opened while it trained (the same one closed and opened again is that one)
            open_now = "no sequence is open" if session is None else "they were trained on another sequence"
            window.statusBar().showMessage(
                f"New weights selected ({name}); nothing was re-detected: {open_now}. Run the detector "
                "on a sequence if you want their proposals.", 15000)
            return
        indices = [i for i in range(len(session))
                   if session.status(i) is ReviewStatus.UNREVIEWED and not session.is_unreadable(i)]
        if not indices:
            window.statusBar().showMessage("New weights selected; every frame is reviewed, so none was re-detected.",
                                           8000)
        elif refused := window.start_detection(indices):
            window.statusBar().showMessage(f"New weights selected; unreviewed frames not re-detected: {refused}", 8000)
        else:
            window.statusBar().showMessage(f"Re-detecting {len(indices)} unreviewed frames with {name}.",
                                           8000)
