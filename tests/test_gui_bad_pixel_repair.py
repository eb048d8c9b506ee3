"""Detection > Detector input window: the analyst can turn the repair of a 16-bit sequence's bad pixels off (a
static scene's one-pixel details can pass for stuck pixels), and the project keeps the choice."""
from __future__ import annotations

import pytest
from PySide6 import QtWidgets

from app.session import ReviewSession

pytestmark = pytest.mark.gui


def test_bad_pixel_repair_is_turned_off_and_kept(window, fresh_sequence, qtbot):
    assert window.open_path(fresh_sequence)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    found = window.session.normalization.bad_pixels
    assert found  # the generated sequence has stuck pixels
    dialog = window.choose_normalization()
    assert dialog.repair.isVisible() and dialog.repair.isChecked()
    assert dialog.repair.text() == f"Repair bad pixels (stuck hot or dead pixels; {len(found)} repaired now)"
    dialog.repair.setChecked(False)
    dialog.findChild(QtWidgets.QDialogButtonBox).button(QtWidgets.QDialogButtonBox.Ok).click()
    assert not dialog.isVisible()
    chosen = window.session.normalization
    assert chosen.bad_pixels == () and chosen.mode == "percentile"
    x, y = found[0]
    assert window.session.normalization.repair(window.frame) is window.frame  # every pixel as recorded

    window._set_session(ReviewSession.open(fresh_sequence))  # reopened: the project keeps the choice
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    assert window.session.normalization.bad_pixels == ()
    dialog = window.choose_normalization()
    assert not dialog.repair.isChecked() and dialog.repair.text().endswith("none now)")
    dialog.repair.setChecked(True)  # and back on: searched again
    dialog.findChild(QtWidgets.QDialogButtonBox).button(QtWidgets.QDialogButtonBox.Ok).click()
    assert window.session.normalization.bad_pixels == found
