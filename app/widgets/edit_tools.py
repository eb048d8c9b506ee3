"""Mask editing on the frame view: the tool palette, and the mouse handling that turns strokes and clicks
into edits (app.editing.FrameEditor).

Mouse events are taken from the frame view's viewport by an event filter, before pyqtgraph sees them:
pyqtgraph rate-limits scene mouse moves, and a fast brush stroke would lose positions. The stroke keeps
every position it got, and `paint_stroke` interpolates between them, so a stroke has no gaps however
fast it is drawn. In the navigate tool, events go through to pyqtgraph (pan, zoom).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.edits import paint_stroke
from app.core.project import ProjectWriteError
from app.core.targets import committed_targets
from app.editing import EditRefused, FrameEditor, MaskNotUndone, StatusNotSaved, Tool, brush_offsets

TOOL_LABELS = {
    Tool.NAVIGATE: ("Navigate", "Pan and zoom (no editing)"),
    Tool.BRUSH: ("Brush", "Paint target pixels; one stroke = one undo step"),
    Tool.ERASER: ("Eraser", "Erase target pixels"),
    Tool.POLYGON: ("Polygon", "Click the vertices, double-click (or click the first vertex) to fill; Esc cancels"),
    Tool.FLOOD_FILL: ("Fill", "Flood-fill the region under the click (fills a closed outline)"),
    Tool.DELETE_COMPONENT: ("Delete", "Delete the connected component under the click (a false alarm)"),
    Tool.ACCEPT_TARGET: ("Add target", "Add the predicted target under the click to the committed mask"),
    Tool.GROW_TARGET: ("Grow", "Grow a target from the bright region around the click (raw values)"),
}
MAX_BRUSH = 41
ACCEPT_ALL_TIP = "Add every predicted target of this frame to the committed mask"
# diff colours: distinct from the prediction (red), committed (green), truth (cyan) and box (yellow) overlays
ONLY_PREDICTED = (255, 0, 255)
ONLY_COMMITTED = (30, 120, 255)
IN_BOTH = (255, 255, 255)
BRUSH_PREVIEW = (60, 220, 90, 200)
ERASER_PREVIEW = (40, 40, 40, 220)


def pixel_outline(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x, y of the outline of a set of (x, y) pixels as segment pairs (for `connect="pairs"`): the exact
    pixel edges a brush stamp covers, so the cursor shows which pixels a click paints."""
    cells = {(int(x), int(y)) for x, y in pixels}
    xs, ys = [], []
    for x, y in cells:
        for (nx, ny), (ax, ay, bx, by) in (((x - 1, y), (x, y, x, y + 1)), ((x + 1, y), (x + 1, y, x + 1, y + 1)),
                                           ((x, y - 1), (x, y, x + 1, y)), ((x, y + 1), (x, y + 1, x + 1, y + 1))):
            if (nx, ny) not in cells:
                xs += [ax, bx]
                ys += [ay, by]
    return np.array(xs, float), np.array(ys, float)


def diff_rgba(only_predicted: np.ndarray, only_committed: np.ndarray, both: np.ndarray) -> np.ndarray:
    rgba = np.zeros(only_predicted.shape + (4,), np.uint8)
    for mask, color in ((only_predicted, ONLY_PREDICTED), (only_committed, ONLY_COMMITTED), (both, IN_BOTH)):
        rgba[mask] = (*color, 255)
    return rgba


DIFF_TIP = "Prediction vs committed mask: magenta only predicted, blue only committed, white both"


class EditPalette(QtWidgets.QToolBar):
    """Tool buttons, brush size, the diff toggle, undo/redo and accept-all."""

    toolChanged = QtCore.Signal(object)  # Tool
    brushSizeChanged = QtCore.Signal(int)
    diffToggled = QtCore.Signal(bool)
    undoRequested = QtCore.Signal()
    redoRequested = QtCore.Signal()
    acceptAllRequested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__("Edit", parent)
        self.setObjectName("edit tools")
        self.tool_actions: dict[Tool, QtGui.QAction] = {}
        group = QtGui.QActionGroup(self)
        for tool, (label, tip) in TOOL_LABELS.items():
            action = self.addAction(label)
            action.setCheckable(True)
            action.setToolTip(tip)
            action.setData(tool)
            group.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions[Tool.NAVIGATE].setChecked(True)
        group.triggered.connect(lambda action: self.toolChanged.emit(action.data()))
        self.addSeparator()
        self.brush_size = QtWidgets.QSpinBox()
        self.brush_size.setRange(1, MAX_BRUSH)
        self.brush_size.setValue(1)
        self.brush_size.setSuffix(" px")
        self.brush_size.setToolTip("Brush / eraser size across, in pixels ([ and ] change it)")
        self.brush_size.valueChanged.connect(self.brushSizeChanged)
        self.addWidget(QtWidgets.QLabel(" Size "))
        self.addWidget(self.brush_size)
        self.addSeparator()
        self.accept_all = self.addAction("Add all", self.acceptAllRequested.emit)
        self.accept_all.setToolTip(ACCEPT_ALL_TIP)
        self.undo = self.addAction("Undo", self.undoRequested.emit)
        self.redo = self.addAction("Redo", self.redoRequested.emit)
        self.diff = self.addAction("Diff")
        self.diff.setCheckable(True)
        self.diff.setToolTip(DIFF_TIP)
        self.diff.toggled.connect(self.diffToggled)
        self.editing_enabled = True

    @property
    def tool(self) -> Tool:
        return next(tool for tool, action in self.tool_actions.items() if action.isChecked())

    def set_tool(self, tool: Tool) -> None:
        self.tool_actions[tool].setChecked(True)
        self.toolChanged.emit(tool)

    def step_brush(self, delta: int) -> None:
        self.brush_size.setValue(self.brush_size.value() + delta)

    def show_keys(self, keys: dict[str, str]) -> None:
        """Each tool's and button's tooltip with its current keys (`keys`: shortcut action name -> keys, as
        `ShortcutMap` names them: "tool_brush", "undo", ...; "" unbound)."""
        shown = {action: (TOOL_LABELS[tool][1], f"tool_{tool.value}") for tool, action in self.tool_actions.items()}
        shown.update({self.accept_all: (ACCEPT_ALL_TIP, "accept_all_predicted"), self.diff: (DIFF_TIP, "toggle_diff"),
                      self.undo: ("Undo the last edit of this frame", "undo"),
                      self.redo: ("Redo the edit undone", "redo")})
        for action, (tip, name) in shown.items():
            bound = keys.get(name, "")
            action.setToolTip(f"{tip} ({bound})" if bound else tip)

    def set_history(self, can_undo: bool, can_redo: bool) -> None:
        self.undo.setEnabled(can_undo and self.editing_enabled)
        self.redo.setEnabled(can_redo and self.editing_enabled)

    def set_editing_enabled(self, enabled: bool) -> None:
        """Enable or disable everything that changes a mask (Navigate and Diff stay usable)."""
        self.editing_enabled = enabled
        for tool, action in self.tool_actions.items():
            action.setEnabled(enabled or tool is Tool.NAVIGATE)
        self.accept_all.setEnabled(enabled)
        if not enabled:
            self.set_history(False, False)


class MaskEditing(QtCore.QObject):
    """Drives the edit tools on the window's frame view; emits `edited(index)` after every saved change.

    `window` gives the current session, frame index and raw frame (`session`, `index`, `frame`).
    """

    edited = QtCore.Signal(int)  # frame index whose committed mask (and status) changed
    writeFailed = QtCore.Signal(str, str)  # the error, what became of the change

    def __init__(self, window, palette: EditPalette):
        super().__init__(window)
        self.window = window
        self.palette = palette
        self.frame_view = window.frame_view
        self.tool = Tool.NAVIGATE
        self.brush_size = palette.brush_size.value()
        self.stroke: list[tuple[float, float]] = []
        self.stroke_preview: np.ndarray | None = None
        self.polygon: list[tuple[float, float]] = []
        # (session, frame index) the unfinished stroke or polygon is drawn on: changing frame drops it
        self._drawn_on: tuple[object, int] | None = None
        self.diff_shown = False
        self._last_pixel: tuple[int, int] | None = None  # under the mouse, for redrawing the brush outline
        self.blocked: str | None = None  # why edits are refused now (a worker is writing masks), else None
        self._editor: FrameEditor | None = None
        self._hidden_for_diff: list[str] = []  # overlays switched off while the diff is shown
        view = self.frame_view.view
        self.preview = pg.ImageItem(axisOrder="row-major")
        self.diff_item = pg.ImageItem(axisOrder="row-major")
        self.cursor_outline = pg.PlotCurveItem(pen=pg.mkPen((255, 255, 255), width=1), connect="pairs")
        self.polygon_line = pg.PlotCurveItem(pen=pg.mkPen((255, 200, 0), width=1.5))
        self.diff_item.setOpacity(0.8)  # the raw values stay faintly visible under the diff
        for z, item in enumerate((self.diff_item, self.preview, self.polygon_line, self.cursor_outline), start=30):
            item.setZValue(z)
            item.hide()
            view.addItem(item)
        self.viewport = self.frame_view.graphics.viewport()
        self.viewport.installEventFilter(self)
        # Esc drops the polygon wherever the focus is (after a click in a dock it is on the dock's scroll
        # area, not the view); enabled only while one is drawn, so Esc is free for everything else
        self.escape = QtGui.QShortcut(QtGui.QKeySequence(QtCore.Qt.Key_Escape), window, self._cancel_polygon)
        self.escape.setWhatsThis("drop the polygon being drawn")
        self.escape.setEnabled(False)
        palette.toolChanged.connect(self.set_tool)
        palette.brushSizeChanged.connect(self._set_brush_size)
        palette.diffToggled.connect(self.show_diff)
        palette.undoRequested.connect(self.undo)
        palette.redoRequested.connect(self.redo)
        palette.acceptAllRequested.connect(self.accept_all)

    @property
    def editor(self) -> FrameEditor | None:
        """The session's editor (it holds masks whose save failed), None without a frame to edit."""
        session = self.window.session
        if session is None or self.window.frame is None:
            return None
        if self._editor is None or self._editor.session is not session:
            self._editor = FrameEditor(session)
        return self._editor

    @property
    def editor_with_unsaved_edits(self) -> FrameEditor | None:
        """The editor of the session shown when it holds edited masks whose save failed, whatever frame is shown
        (`editor` is None while an unreadable frame is)."""
        editor = self._editor
        return editor if editor is not None and editor.session is self.window.session and editor.unsaved else None

    @property
    def drawing(self) -> bool:
        """A brush or eraser stroke is held on the frame shown."""
        return bool(self.stroke)

    # --- tool state -----------------------------------------------------------------------------

    def set_blocked(self, reason: str | None) -> None:
        """Refuse every edit while `reason` is set (shown in the status bar when one is tried); None allows them."""
        self.blocked = reason
        if reason is not None:
            self._cancel_stroke()
            self._cancel_polygon()
        self.palette.set_editing_enabled(reason is None)
        self.refresh()

    def refuse(self) -> None:
        """Say in the status bar why an edit or status change was not made."""
        self.window.statusBar().showMessage(self.blocked)

    def set_tool(self, tool: Tool) -> None:
        self.tool = Tool(tool)
        self._cancel_polygon()
        self.cursor_outline.setVisible(self.tool in (Tool.BRUSH, Tool.ERASER))
        shape = QtCore.Qt.ArrowCursor if self.tool is Tool.NAVIGATE else QtCore.Qt.CrossCursor
        self.viewport.setCursor(shape)

    def _set_brush_size(self, size: int) -> None:
        self.brush_size = size
        if self.cursor_outline.isVisible() and self._last_pixel is not None:
            self._draw_cursor(*self._last_pixel)

    # --- actions --------------------------------------------------------------------------------

    def undo(self) -> None:
        self._step(redo=False)

    def redo(self) -> None:
        self._step(redo=True)

    def _step(self, redo: bool) -> None:
        editor, index = self.editor, self.window.index
        if editor is not None and self.blocked is None and not (editor.can_redo if redo else editor.can_undo)(index):
            self.window.say_about_frame(f"Frame {index + 1}: nothing to {'redo' if redo else 'undo'}.", 4000)
            return
        self._run(lambda editor, index: editor.redo(index) if redo else editor.undo(index), "redo" if redo else "undo")

    def accept_all(self) -> None:
        self._run(lambda editor, index: editor.accept_all(index))

    def show_diff(self, on: bool) -> None:
        """The diff replaces the prediction and committed overlays while it is shown (it holds both)."""
        self.diff_shown = on
        toggles = self.window.overlay_panel.toggles
        if on:
            self._hidden_for_diff = [k for k in ("prediction", "committed") if toggles[k].isChecked()]
        for key in self._hidden_for_diff:
            toggles[key].setChecked(not on)
        if not on:
            self._hidden_for_diff = []
        self.refresh()

    def refresh(self) -> None:
        """Redraw what depends on the frame's masks (the diff) and the undo/redo buttons. Called with every frame
        shown: a stroke or polygon left unfinished on another frame is dropped (it would be written to this one)."""
        self._drop_if_frame_changed()
        editor = self.editor
        if editor is None:
            self.diff_item.hide()
            self.palette.set_history(False, False)
            return
        index = self.window.index
        self.palette.set_history(editor.can_undo(index), editor.can_redo(index))
        if index in editor.unsaved:
            layers = self.window.layers
            layers.committed = editor.unsaved[index]
            layers.targets = committed_targets(layers.committed, layers.prediction, layers.proposals)
            self.frame_view.show_frame(self.window.frame, layers)
        if self.diff_shown:
            self.diff_item.setImage(diff_rgba(*editor.diff(index)), autoLevels=False)
            self.diff_item.show()
        else:
            self.diff_item.hide()

    def _run(self, edit, step: str | None = None) -> bool:
        """Apply `edit(editor, index)` to the current frame; True when the mask changed and was saved. `step`: "undo"
        or "redo" when the edit is one."""
        editor = self.editor
        index = self.window.index
        if editor is None:
            if self.window.session is not None:  # no frame: it failed to decode
                self.window.say_about_frame(f"Frame {index + 1} is unreadable: there is nothing to edit.", 8000)
            return False
        if self.blocked is not None:
            self.refuse()
            return False
        if index not in editor.unsaved and not self.window.shown_masks_current():
            return False  # the edit would apply to masks the analyst has not seen
        try:
            changed = edit(editor, index)
        except ProjectWriteError as e:
            if isinstance(e, StatusNotSaved) and step is not None:
                # its status is not kept to save again; the mask on disk changed: shown as it is now
                self.edited.emit(index)
                outcome = (f"The {step} on frame {index + 1} is saved (its mask) but not its status change: "
                           f"the frame stays {self.window.session.status(index).value}")
            elif isinstance(e, MaskNotUndone):
                self.edited.emit(index)  # its status changed
                outcome = (f"The undo on frame {index + 1} gave back its status "
                           f"({self.window.session.status(index).value}) but could not change its mask, which is still "
                           "the edited one: press C to mark it corrected again, or undo again once the project can "
                           "be written")
            elif isinstance(e, StatusNotSaved):
                outcome = (f"The edited mask of frame {index + 1} is saved but not its status, which stays "
                           f"{self.window.session.status(index).value} (your next change, or closing the sequence, "
                           "saves it again)")
            elif index in editor.unsaved:
                outcome = (f"The edited mask of frame {index + 1} is kept in memory (your next change, or closing "
                           "the sequence, saves it again); the files on disk are unchanged")
            else:  # an undo or redo that could not be written: the project is as it was
                outcome = f"Frame {index + 1} is as it was, on screen and on disk"
            self.writeFailed.emit(str(e), outcome)
            self.refresh()  # shows the unsaved mask
            return False
        except EditRefused as e:
            self.window.say_about_frame(str(e), 8000)
            return False
        if changed:
            self.edited.emit(index)
        return changed

    # --- mouse ----------------------------------------------------------------------------------

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if watched is not self.viewport:
            return False
        if self.tool is Tool.NAVIGATE or kind not in (
                QtCore.QEvent.MouseButtonPress, QtCore.QEvent.MouseMove, QtCore.QEvent.MouseButtonRelease,
                QtCore.QEvent.MouseButtonDblClick):
            return False
        if self.editor is None:
            if (kind == QtCore.QEvent.MouseButtonPress and event.button() == QtCore.Qt.LeftButton
                    and self.window.session is not None):  # an unreadable frame: said, as the keys' tools say it
                self.window.say_about_frame(f"Frame {self.window.index + 1} is unreadable: there is nothing to edit.",
                                            8000)
            return False
        x, y = self._image_point(event.position())
        if kind == QtCore.QEvent.MouseMove:
            self._draw_cursor(int(np.floor(x)), int(np.floor(y)))
            if self.stroke and event.buttons() & QtCore.Qt.LeftButton:
                self._extend_stroke(x, y)
            return bool(self.stroke)
        if event.button() == QtCore.Qt.RightButton:
            self._cancel_polygon()
            return False  # pyqtgraph's right-drag zoom still works
        if event.button() != QtCore.Qt.LeftButton:
            return False
        if self.blocked is not None:
            if kind != QtCore.QEvent.MouseButtonRelease:
                self.refuse()
            return True
        if kind == QtCore.QEvent.MouseButtonPress:
            self._press(x, y)
        elif kind == QtCore.QEvent.MouseButtonDblClick and self.tool is Tool.POLYGON:
            self._add_vertex(x, y)
            self._finish_polygon()
        elif kind == QtCore.QEvent.MouseButtonRelease and self.stroke:
            self._finish_stroke()
        return True

    def _image_point(self, position: QtCore.QPointF) -> tuple[float, float]:
        scene = self.frame_view.graphics.mapToScene(position.toPoint())
        point = self.frame_view.view.mapSceneToView(scene)
        return point.x(), point.y()

    def _press(self, x: float, y: float) -> None:
        frame = self.window.frame
        self._drop_if_frame_changed()
        if self.tool in (Tool.BRUSH, Tool.ERASER):
            self._drawn_on = self._current_frame()
            self.stroke = [(x, y)]
            self.stroke_preview = np.zeros(frame.shape, bool)
            self._extend_stroke(x, y)
        elif self.tool is Tool.POLYGON:
            if len(self.polygon) >= 3 and _same_pixel(self.polygon[0], (x, y)):
                self._finish_polygon()
            else:
                self._add_vertex(x, y)
        elif self.tool is Tool.FLOOD_FILL:
            self._run(lambda editor, i: editor.flood_fill(i, x, y))
        elif self.tool is Tool.DELETE_COMPONENT:
            self._run(lambda editor, i: editor.delete_component(i, x, y))
        elif self.tool is Tool.ACCEPT_TARGET:
            self._run(lambda editor, i: editor.accept_target(i, x, y))
        elif self.tool is Tool.GROW_TARGET:
            self._run(lambda editor, i: editor.grow_target(i, frame, x, y))

    def _extend_stroke(self, x: float, y: float) -> None:
        segment = [self.stroke[-1], (x, y)]
        if (x, y) != self.stroke[-1]:
            self.stroke.append((x, y))
        self.stroke_preview = paint_stroke(self.stroke_preview, segment, self.brush_size, True)
        color = ERASER_PREVIEW if self.tool is Tool.ERASER else BRUSH_PREVIEW
        lut = np.array([[0, 0, 0, 0], color], np.uint8)
        self.preview.setImage(self.stroke_preview.view(np.uint8), levels=(0, 1), lut=lut, autoLevels=False)
        self.preview.show()

    def _finish_stroke(self) -> None:
        if self._drop_if_frame_changed():
            return
        points, erase = self.stroke, self.tool is Tool.ERASER
        self._cancel_stroke()
        self._run(lambda editor, i: editor.paint(i, points, self.brush_size, erase))

    def _cancel_stroke(self) -> None:
        self.stroke, self.stroke_preview = [], None
        self.preview.hide()

    def _finish_polygon(self) -> None:
        if self._drop_if_frame_changed():
            return
        vertices = self.polygon
        self._cancel_polygon()
        if len(vertices) >= 3:
            self._run(lambda editor, i: editor.fill_polygon(i, vertices))

    def _add_vertex(self, x: float, y: float) -> None:
        self._drop_if_frame_changed()
        if not self.polygon or not _same_pixel(self.polygon[-1], (x, y)):  # a double-click may press first
            if not self.polygon:
                self._drawn_on = self._current_frame()
            self.polygon.append((x, y))
            self.escape.setEnabled(True)
            self._draw_polygon()

    def _cancel_polygon(self) -> None:
        self.polygon = []
        self.escape.setEnabled(False)
        self.polygon_line.hide()

    def _current_frame(self) -> tuple[object, int]:
        return self.window.session, self.window.index

    def _drop_if_frame_changed(self) -> bool:
        """Drop the unfinished stroke and polygon when the frame shown is no longer the one they were drawn on
        (a key, the timeline or playback changed it while a vertex was pending or the button held): finished
        there, they would be written to a frame they were not drawn on. True when something was dropped."""
        session, index = self._current_frame()
        if not (self.stroke or self.polygon) or (
                self._drawn_on is not None and self._drawn_on[0] is session and self._drawn_on[1] == index):
            return False
        what = "brush stroke" if self.stroke else "polygon"
        if self.stroke and self.tool is Tool.ERASER:
            what = "eraser stroke"
        drawn_on = self._drawn_on[1] if self._drawn_on is not None else None
        self._cancel_stroke()
        self._cancel_polygon()
        if drawn_on is not None and session is not None:
            self.window.statusBar().showMessage(f"The unfinished {what} of frame {drawn_on + 1} was dropped: the "
                                                "frame changed before it was finished.", 8000)
        return True

    def _draw_polygon(self) -> None:
        centres = [(np.floor(x) + 0.5, np.floor(y) + 0.5) for x, y in self.polygon]
        xs, ys = zip(*centres)
        self.polygon_line.setData(np.array(xs), np.array(ys))
        self.polygon_line.show()

    def _draw_cursor(self, x: int, y: int) -> None:
        self._last_pixel = (x, y)
        if self.tool not in (Tool.BRUSH, Tool.ERASER):
            return
        xs, ys = pixel_outline(brush_offsets(self.brush_size) + (x, y))
        self.cursor_outline.setData(xs, ys)
        self.cursor_outline.show()


def _same_pixel(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return int(np.floor(a[0])) == int(np.floor(b[0])) and int(np.floor(a[1])) == int(np.floor(b[1]))
