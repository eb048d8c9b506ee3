"""The shortcuts dialog of the real window under Xvfb: Backspace or Delete in a key field clears it, and a conflict
names the actions as the table does."""
from __future__ import annotations

import json

import pytest
from PySide6 import QtCore, QtGui, QtWidgets

pytestmark = pytest.mark.gui


def test_backspace_or_delete_alone_clears_a_key_field_and_with_a_modifier_is_recorded(window, qtbot, private_shortcuts):
    """Analyst audit 28: Backspace, pressed to clear the field, bound the action to Backspace (no conflict, OK
    enabled); only the field's clear button cleared it."""
    tools = window.review_tools
    dialog = tools.edit_shortcuts()
    ok = dialog.buttons.button(QtWidgets.QDialogButtonBox.Ok)
    field = dialog.edits["next_frame"]
    field.setFocus()
    assert field.keySequence().toString() == "D"
    qtbot.keyClick(field, QtCore.Qt.Key_Backspace)
    assert field.keySequence().isEmpty() and dialog.map.get("next_frame") == ""
    qtbot.keyClick(field, QtCore.Qt.Key_9)
    assert dialog.map.get("next_frame") == "9"
    for delete in (QtCore.Qt.NoModifier, QtCore.Qt.KeypadModifier):
        field.setKeySequence(QtGui.QKeySequence("9"))
        qtbot.keyClick(field, QtCore.Qt.Key_Delete, delete)
        assert field.keySequence().isEmpty() and dialog.map.get("next_frame") == ""
    assert dialog.isVisible() and dialog.conflicts.text() == "" and ok.isEnabled()

    qtbot.keyClick(field, QtCore.Qt.Key_Backspace, QtCore.Qt.ShiftModifier)  # with a modifier: a key like any other
    assert dialog.map.get("next_frame") == "Shift+Backspace"
    qtbot.keyClick(field, QtCore.Qt.Key_Delete)
    ok.click()
    assert json.loads(private_shortcuts.read_text())["shortcuts"] == {"next_frame": ""}
    assert tools.shortcuts.actions["next_frame"].shortcut().isEmpty()
    hints = [label.text() for label in dialog.findChildren(QtWidgets.QLabel)]  # the dialog tells the analyst so
    assert any("Backspace or Delete clears it" in text for text in hints), hints


def test_a_conflict_names_the_actions_as_the_table_does_in_a_sentence(window, qtbot, private_shortcuts):
    """Analyst audit 28: "Right is bound to forward 1 frame, Next frame: it is fixed, choose another key", beside a
    table row that reads "Forward 1 frame"."""
    dialog = window.review_tools.edit_shortcuts()
    rows = {dialog.table.item(row, 0).text() for row in range(dialog.table.rowCount())}
    assert {"Forward 1 frame", "Next frame", "Tool: Brush", "Next unreviewed"} <= rows
    dialog.edits["next_frame"].setKeySequence(QtGui.QKeySequence("Right"))
    assert dialog.conflicts.text() == ("Right is bound to Forward 1 frame and Next frame. Forward 1 frame is fixed, "
                                       "so choose another key for Next frame.")
    dialog.edits["tool_brush"].setKeySequence(QtGui.QKeySequence("Right"))
    assert dialog.conflicts.text() == ("Right is bound to Forward 1 frame, Next frame and Tool: Brush. Forward 1 frame "
                                       "is fixed, so choose other keys for Next frame and Tool: Brush.")
    dialog.edits["next_frame"].clear()
    dialog.edits["tool_brush"].setKeySequence(QtGui.QKeySequence("N"))
    assert dialog.conflicts.text() == "N is bound to Next unreviewed and Tool: Brush. Only one of them can keep it."
    assert not dialog.buttons.button(QtWidgets.QDialogButtonBox.Ok).isEnabled()
    dialog.reject()
