"""The window does not mislead or change review work by accident, under Xvfb: keys pressed on a focused
control stay that control's."""
from __future__ import annotations

import pytest
from PySide6 import QtCore

from app.core.project import ReviewStatus
from app.editing import Tool
from app.widgets import shortcuts_dialog
from tests.gui_review_helpers import open_project

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def private_shortcuts(tmp_path, monkeypatch):
    monkeypatch.setattr(shortcuts_dialog, "shortcuts_path", lambda: tmp_path / "config" / "shortcuts.json")


def _press(window, qtbot, widget, key) -> None:
    """Focus `widget` and press `key` as the window system delivers it to the window."""
    widget.setFocus(QtCore.Qt.TabFocusReason)
    qtbot.waitUntil(widget.hasFocus, timeout=2000)
    qtbot.keyClick(window.windowHandle(), key)


def test_keys_on_a_focused_button_check_box_or_combo_box_stay_theirs(review, qtbot):
    review.activateWindow()
    qtbot.waitUntil(review.isActiveWindow, timeout=5000)
    edges = review.overlay_panel.toggles["edges"]
    _press(review, qtbot, edges, QtCore.Qt.Key_Space)
    assert edges.isChecked() and review.index == 0 and review.session.status(0) is ReviewStatus.UNREVIEWED
    _press(review, qtbot, review.review_tools.review_panel.next_unreviewed, QtCore.Qt.Key_Space)
    assert review.index == 1 and review.session.status(0) is ReviewStatus.UNREVIEWED  # pressed, not accepted
    for key in (QtCore.Qt.Key_B, QtCore.Qt.Key_R, QtCore.Qt.Key_0):  # brush, reject, negative: a combo box's search
        _press(review, qtbot, review.palette_combo, key)
    assert review.session.status(1) is ReviewStatus.UNREVIEWED and review.review_tools.palette.tool is Tool.NAVIGATE
    assert review.palette_combo.currentText() == "black-hot"
    _press(review, qtbot, review.frame_view.graphics, QtCore.Qt.Key_Space)  # the view leaves Space to the shortcut
    assert review.session.status(1) is ReviewStatus.ACCEPTED and review.index == 2


def test_opening_another_sequence_clears_the_selected_targets_box(review, sequence_16bit, qtbot):
    qtbot.waitUntil(lambda: review.target_list.rowCount() > 0, timeout=2000)
    review.target_list.selectRow(0)
    assert review.selected is not None and len(review.frame_view.selection.xData) > 0
    open_project(review, qtbot, sequence_16bit)
    xs = review.frame_view.selection.xData
    assert review.selected is None and (xs is None or len(xs) == 0)
