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


class FocusedControlKeys(QtCore.QObject):
    """Leaves a bare key to the focused control that uses it: Space to a button or check box, typed
    characters and Space to a combo box (line edits and spin boxes claim theirs themselves). The window's
    shortcuts take such a key otherwise: Space on a focused button accepted the frame instead of pressing it.

    Install it on the window and on its dock widgets: the key's ShortcutOverride event goes up from the
    focused widget to its window (a floating dock is one), and accepting it gives the key to the widget.
    Buttons and check boxes should take focus from the keyboard (Tab) only (`tab_focus_only`): one clicked
    with the mouse would otherwise keep Space, and the next Space would press it again."""

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QtCore.QEvent.ShortcutOverride and _used_by(QtWidgets.QApplication.focusWidget(), event):
            event.accept()
            return True
        return False


def tab_focus_only(parent: QtWidgets.QWidget) -> None:
    """Buttons and check boxes under `parent` that take focus on a click take it from Tab only: a click
    leaves the keyboard focus where it was (the frame view), so Space still accepts the frame."""
    for button in parent.findChildren(QtWidgets.QAbstractButton):
        if button.focusPolicy() == QtCore.Qt.StrongFocus:
            button.setFocusPolicy(QtCore.Qt.TabFocus)


def _used_by(widget: QtWidgets.QWidget | None, event: QtGui.QKeyEvent) -> bool:
    if event.modifiers() & ~(QtCore.Qt.ShiftModifier | QtCore.Qt.KeypadModifier):
        return False  # Ctrl, Alt or Meta: a shortcut, whatever has focus
    space = event.key() == QtCore.Qt.Key_Space and not event.modifiers() & QtCore.Qt.ShiftModifier  # Shift+Space: play
    if isinstance(widget, QtWidgets.QAbstractButton):
        return space
    if isinstance(widget, QtWidgets.QComboBox):
        return space or bool(event.text().strip())
    return False


class ShortcutActions:
    """QActions on `window` (window-wide shortcuts) for every action that has a handler; the keys that the
    focused control uses stay its own (`FocusedControlKeys`), and the window's buttons and check boxes
    (docks included: they are its children) take the focus from Tab only (`tab_focus_only`)."""

    def __init__(self, window: QtWidgets.QWidget, handlers: dict[str, Callable[[], None]]):
        self.focus_keys = FocusedControlKeys(window)
        for widget in (window, *window.findChildren(QtWidgets.QDockWidget)):
            widget.installEventFilter(self.focus_keys)
        tab_focus_only(window)
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


class ShortcutsDialog(QtWidgets.QDialog):
    """A table of actions with a QKeySequenceEdit each; keys bound twice are shown in red and listed."""

    def __init__(self, shortcut_map: ShortcutMap, parent=None, reserved: dict[str, str] | None = None):
        """`reserved`: keys -> title of the app's fixed shortcuts (menus, frame steps), which no action may take."""
        super().__init__(parent)
        self.reserved = dict(reserved or {})
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(460, 640)
        self.map = ShortcutMap(shortcut_map.to_dict())
        self.edits: dict[str, QtWidgets.QKeySequenceEdit] = {}
        self.table = QtWidgets.QTableWidget(len(self.map.actions), 2)
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        for row, name in enumerate(self.map.actions):
            item = QtWidgets.QTableWidgetItem(action_title(name))
            item.setFlags(QtCore.Qt.ItemIsEnabled)
            self.table.setItem(row, 0, item)
            edit = QtWidgets.QKeySequenceEdit(QtGui.QKeySequence(self.map.get(name)))
            edit.setMaximumSequenceLength(1)
            edit.setClearButtonEnabled(True)
            edit.keySequenceChanged.connect(lambda keys, n=name: self.bind(n, keys.toString()))
            self.table.setCellWidget(row, 1, edit)
            self.edits[name] = edit
        self.table.resizeColumnToContents(0)
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
        layout.addWidget(self.table, 1)
        layout.addWidget(self.conflicts)
        layout.addWidget(self.buttons)
        self._show_conflicts()

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
        self.conflicts.setText("\n".join(
            f"{keys} is bound to {', '.join(a if a in self.reserved.values() else action_title(a) for a in actions)}"
            + (": it is fixed, choose another key" if keys in self.reserved else ": only one can keep it")
            for keys, actions in conflicts.items()))
        self.buttons.button(QtWidgets.QDialogButtonBox.Ok).setEnabled(not conflicts)
