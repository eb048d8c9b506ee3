"""Editable keyboard shortcuts: one QAction per `ShortcutMap` action, and the dialog that rebinds them.

The map is saved (only what differs from the defaults) to shortcuts.json in the app's config folder
(QStandardPaths.AppConfigLocation).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.review_queue import ShortcutMap
from app.editing import Tool
from app.widgets.edit_tools import TOOL_LABELS
from model.metrics import listed_names

SHORTCUTS_FILE = "shortcuts.json"


def shortcuts_path() -> Path:
    folder = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.AppConfigLocation)
    return Path(folder) / SHORTCUTS_FILE


ACTION_TITLES = {"accept_all_predicted": "Add all predicted targets"}


def action_title(action: str) -> str:
    """The name the toolbar and menus use: "Tool: Fill" for tool_flood_fill, "Mark rejected" for mark_rejected."""
    if action in ACTION_TITLES:
        return ACTION_TITLES[action]
    if action.startswith("tool_"):
        return f"Tool: {TOOL_LABELS[Tool(action.removeprefix('tool_'))][0]}"
    return action.replace("_", " ").capitalize()


def fixed_title(title: str) -> str:
    """A fixed shortcut's title as the shortcuts dialog shows it: "Forward 1 frame" for "forward 1 frame"."""
    return title[:1].upper() + title[1:]


# focus given back to the control it was on (its window reactivated, its popup or a menu closed): it keeps
# what it had; any other focus change decides anew whether the analyst chose the control from the keyboard
_FOCUS_RESTORED = (QtCore.Qt.ActiveWindowFocusReason, QtCore.Qt.PopupFocusReason, QtCore.Qt.MenuBarFocusReason)
_FROM_THE_KEYBOARD = (QtCore.Qt.TabFocusReason, QtCore.Qt.BacktabFocusReason, QtCore.Qt.ShortcutFocusReason)
_CHOSEN = "irsamKeysToControl"  # property: the control was focused from the keyboard and keeps its keys
_COVERED = "irsamFocusCovered"  # property: the control's focus is watched (`FocusedControlKeys.cover`)


class FocusedControlKeys(QtCore.QObject):
    """Leaves a bare key to the focused control that uses it: Space to a button or check box, typed
    characters and Space to a combo box (line edits and spin boxes claim theirs themselves). The window's
    shortcuts take such a key otherwise: Space on a focused button accepted the frame instead of pressing it.

    Only a control the analyst chose from the keyboard (Tab, Shift+Tab, a mnemonic) keeps its keys. Buttons,
    check boxes and combo boxes take the focus from Tab only (`cover`): a mouse click or a pick in a combo
    box's list leaves the keys to the frame (a clicked button would otherwise keep Space, and a combo box
    letters: D switched the sort to "detections"). A control that gets the focus because its window was
    activated (the first one of a floating dock clicked on) does not keep them either: floating docks pass
    every shortcut.

    A text or number box (the frame number, fps, brush size) keeps every key it gets, whatever gave it the
    focus; Enter (after it takes the value) and Esc give the keys back to `home`, the frame view: after a jump
    by frame number, Space and D were typed into the box, or did nothing.

    Install it with `watch` on the window: the key's ShortcutOverride event goes up from the focused widget
    to its window (a floating dock is one), and accepting it gives the key to the widget. Docks, toolbars and
    panels added to the window or to a dock later are covered when they are first shown (ChildPolished)."""

    home: QtWidgets.QWidget | None = None

    def watch(self, window: QtWidgets.QWidget, home: QtWidgets.QWidget | None = None) -> None:
        self.home = home
        self._watch_window(window)
        self.cover(window)

    def _watch_window(self, widget: QtWidgets.QWidget) -> None:
        if not widget.property(_COVERED):
            widget.setProperty(_COVERED, True)
            widget.installEventFilter(self)

    def cover(self, parent: QtWidgets.QWidget) -> None:
        """Buttons, check boxes and (non-editable) combo boxes under `parent` take the focus from Tab only,
        and their focus is watched; its docks get the ShortcutOverride filter."""
        for dock in parent.findChildren(QtWidgets.QDockWidget):
            self._watch_window(dock)
        for box in [*parent.findChildren(QtWidgets.QAbstractSpinBox), *parent.findChildren(QtWidgets.QLineEdit)]:
            if not box.property(_COVERED) and not isinstance(box.parent(), (QtWidgets.QAbstractSpinBox,
                                                                               QtWidgets.QComboBox)):
                box.setProperty(_COVERED, True)
                box.installEventFilter(self)
        controls = [*parent.findChildren(QtWidgets.QAbstractButton), *parent.findChildren(QtWidgets.QComboBox)]
        for control in controls:
            if control.property(_COVERED) or isinstance(control, QtWidgets.QComboBox) and control.isEditable():
                continue
            control.setProperty(_COVERED, True)
            control.installEventFilter(self)
            if control.focusPolicy() & QtCore.Qt.ClickFocus:  # StrongFocus or WheelFocus
                control.setFocusPolicy(QtCore.Qt.TabFocus)

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if kind == QtCore.QEvent.KeyPress and isinstance(watched, (QtWidgets.QAbstractSpinBox, QtWidgets.QLineEdit)):
            return self._box_key(watched, event)
        if kind == QtCore.QEvent.ShortcutOverride:
            if _used_by(QtWidgets.QApplication.focusWidget(), event):
                event.accept()
                return True
        elif kind in (QtCore.QEvent.FocusIn, QtCore.QEvent.FocusOut):
            if event.reason() not in _FOCUS_RESTORED:
                watched.setProperty(_CHOSEN, kind == QtCore.QEvent.FocusIn and event.reason() in _FROM_THE_KEYBOARD)
        elif kind == QtCore.QEvent.ChildPolished and isinstance(watched, (QtWidgets.QMainWindow, QtWidgets.QDockWidget)):
            self.cover(watched)  # a dock, toolbar or panel added after the shortcuts were made
        return False


    def _box_key(self, box: QtWidgets.QWidget, event: QtGui.QKeyEvent) -> bool:
        """Enter or Esc in a text or number box of the window: the keys go back to `home` (Enter once the box has
        taken its value). True: the key is used up."""
        home = self.home
        if (home is None or event.modifiers() & ~QtCore.Qt.KeypadModifier
                or event.key() not in (QtCore.Qt.Key_Return, QtCore.Qt.Key_Enter, QtCore.Qt.Key_Escape)):
            return False
        window = box.window()
        floating = isinstance(window, QtWidgets.QDockWidget) and window.parentWidget() is home.window()
        if window is not home.window() and not floating:
            return False  # a dialog's box: Enter and Esc are the dialog's

        def go_home() -> None:
            if floating:  # a floating dock is a window of its own: the frame's window takes the keys back
                home.window().activateWindow()
            home.setFocus(QtCore.Qt.OtherFocusReason)

        if event.key() == QtCore.Qt.Key_Escape:
            go_home()
            return True
        QtCore.QTimer.singleShot(0, home, lambda: go_home() if box.hasFocus() else None)
        return False


def _used_by(widget: QtWidgets.QWidget | None, event: QtGui.QKeyEvent) -> bool:
    if event.modifiers() & ~(QtCore.Qt.ShiftModifier | QtCore.Qt.KeypadModifier):
        return False  # Ctrl, Alt or Meta: a shortcut, whatever has focus
    if widget is None or not widget.property(_CHOSEN):
        return False  # clicked, or focused by its window's activation: the keys are the frame's
    space = event.key() == QtCore.Qt.Key_Space and not event.modifiers() & QtCore.Qt.ShiftModifier  # Shift+Space: play
    if isinstance(widget, QtWidgets.QAbstractButton):
        return space
    if isinstance(widget, QtWidgets.QComboBox):
        return space or bool(event.text().strip())
    return False


class ShortcutActions:
    """QActions on `window` (window-wide shortcuts) for every action that has a handler; the keys that the
    focused control chose from the keyboard stay its own, and the window's buttons, check boxes and combo
    boxes (docks included: they are its children) take the focus from Tab only (`FocusedControlKeys`)."""

    def __init__(self, window: QtWidgets.QWidget, handlers: dict[str, Callable[[], None]],
                 home: QtWidgets.QWidget | None = None):
        """`home`: the widget that Enter or Esc in a text or number box gives the keys back to (`FocusedControlKeys`)."""
        self.focus_keys = FocusedControlKeys(window)
        self.focus_keys.watch(window, home)
        self.actions: dict[str, QtGui.QAction] = {}
        for name, handler in handlers.items():
            action = QtGui.QAction(action_title(name), window)
            action.setShortcutContext(QtCore.Qt.WindowShortcut)
            action.triggered.connect(lambda _=False, h=handler: h())
            window.addAction(action)
            self.actions[name] = action
        try:
            self.map = ShortcutMap.load(shortcuts_path())
            self.load_error = None
        except ValueError as e:
            self.map, self.load_error = ShortcutMap(), str(e)
        self.apply(self.map)

    def apply(self, shortcut_map: ShortcutMap) -> None:
        self.map = shortcut_map
        for name, action in self.actions.items():
            action.setShortcut(QtGui.QKeySequence(shortcut_map.get(name)))

    def save(self) -> None:
        path = shortcuts_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.map.save(path)


class KeyField(QtWidgets.QKeySequenceEdit):
    """A one-key QKeySequenceEdit that leaves Enter and Esc to its dialog: recorded, they replaced the key just
    typed (Enter, to confirm it, bound the action to Return) and never closed the dialog. Backspace or Delete
    alone clears the field, as its clear button does: recorded, it bound the action to the key meant to unbind it
    (with a modifier, Shift+Backspace say, it is recorded)."""

    _DIALOG_KEYS = (QtCore.Qt.Key_Return, QtCore.Qt.Key_Enter, QtCore.Qt.Key_Escape)
    _CLEAR_KEYS = (QtCore.Qt.Key_Backspace, QtCore.Qt.Key_Delete)

    def __init__(self, keys: QtGui.QKeySequence, dialog: QtWidgets.QDialog):
        super().__init__(keys)
        self._dialog = dialog
        self.setMaximumSequenceLength(1)
        self.setClearButtonEnabled(True)

    def event(self, event) -> bool:
        # QKeySequenceEdit claims every key at ShortcutOverride and records it at KeyPress: both are turned away
        if (event.type() in (QtCore.QEvent.ShortcutOverride, QtCore.QEvent.KeyPress)
                and event.key() in (*self._DIALOG_KEYS, *self._CLEAR_KEYS)
                and not event.modifiers() & ~QtCore.Qt.KeypadModifier):
            if event.type() == QtCore.QEvent.KeyPress:
                if event.key() in self._CLEAR_KEYS:
                    self.clear()
                elif event.key() == QtCore.Qt.Key_Escape:
                    self._dialog.reject()
                else:
                    self._dialog.confirm()
            event.accept()
            return True
        return super().event(event)


class ShortcutsDialog(QtWidgets.QDialog):
    """A table of actions with a one-key field each (`KeyField`: Enter is OK and Esc Cancel there, as elsewhere in
    the dialog), then the fixed shortcuts, greyed; keys bound twice are shown in red and listed."""

    def __init__(self, shortcut_map: ShortcutMap, parent=None, reserved: dict[str, str] | None = None):
        """`reserved`: keys -> title of the app's fixed shortcuts (menus, frame steps), which no action may take."""
        super().__init__(parent)
        self.reserved = dict(reserved or {})
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(460, 640)
        self.map = ShortcutMap(shortcut_map.to_dict())
        self.edits: dict[str, KeyField] = {}
        self.table = QtWidgets.QTableWidget(len(self.map.actions) + len(self.reserved), 2)
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        for row, name in enumerate(self.map.actions):
            item = QtWidgets.QTableWidgetItem(action_title(name))
            item.setFlags(QtCore.Qt.ItemIsEnabled)
            self.table.setItem(row, 0, item)
            edit = KeyField(QtGui.QKeySequence(self.map.get(name)), self)
            edit.keySequenceChanged.connect(lambda keys, n=name: self.bind(n, keys.toString()))
            self.table.setCellWidget(row, 1, edit)
            self.edits[name] = edit
        fixed_rows = sorted(self.reserved.items(), key=lambda item: item[1].lower())
        for row, (keys, title) in enumerate(fixed_rows, start=len(self.map.actions)):
            for column, text in enumerate((fixed_title(title), f"{keys}  (fixed)")):
                item = QtWidgets.QTableWidgetItem(text)
                item.setFlags(QtCore.Qt.NoItemFlags)  # greyed: shown, not editable
                self.table.setItem(row, column, item)
        self.table.resizeColumnToContents(0)
        hint = QtWidgets.QLabel("Select a field and press its new key; Backspace or Delete clears it. "
                                "Enter is OK, Esc is Cancel.")
        hint.setWordWrap(True)
        self.conflicts = QtWidgets.QLabel()
        self.conflicts.setWordWrap(True)
        self.conflicts.setStyleSheet("color: #d04040;")
        reset = QtWidgets.QPushButton("Reset all")
        reset.clicked.connect(self.reset_all)
        self.buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.Ok | QtWidgets.QDialogButtonBox.Cancel)
        self.buttons.addButton(reset, QtWidgets.QDialogButtonBox.ResetRole)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.conflicts)
        layout.addWidget(self.buttons)
        self._show_conflicts()

    def confirm(self) -> None:
        """Enter in a key field: OK, unless keys are bound twice (the conflicts stay listed)."""
        if self.buttons.button(QtWidgets.QDialogButtonBox.Ok).isEnabled():
            self.accept()

    def bind(self, action: str, keys: str) -> None:
        self.map.set(action, keys)
        self._show_conflicts()

    def reset_all(self) -> None:
        self.map.reset()
        for name, edit in self.edits.items():
            with QtCore.QSignalBlocker(edit):
                edit.setKeySequence(QtGui.QKeySequence(self.map.get(name)))
        self._show_conflicts()

    def _show_conflicts(self) -> None:
        conflicts = self.map.conflicts(self.reserved)
        clashing = {a for actions in conflicts.values() for a in actions}
        for name, edit in self.edits.items():
            edit.setStyleSheet("background-color: #703030;" if name in clashing else "")
        self.conflicts.setText("\n".join(self._conflict_text(keys, actions) for keys, actions in conflicts.items()))
        self.buttons.button(QtWidgets.QDialogButtonBox.Ok).setEnabled(not conflicts)

    def _conflict_text(self, keys: str, actions: list[str]) -> str:
        """One line per key bound twice, naming the actions as the table does. A fixed shortcut comes first
        (`ShortcutMap.conflicts`)."""
        if keys not in self.reserved:
            names = listed_names([action_title(a) for a in actions])
            return f"{keys} is bound to {names}. Only one of them can keep it."
        fixed, rebound = fixed_title(actions[0]), [action_title(a) for a in actions[1:]]
        other_keys = "another key" if len(rebound) == 1 else "other keys"
        return (f"{keys} is bound to {listed_names([fixed, *rebound])}. {fixed} is fixed, so choose {other_keys} for "
                f"{listed_names(rebound)}.")
