"""The Detection dock's progress bar before any run, the input-window dialog's "Now:" when another window changes
the normalisation, and the right column at 1500x950 with IRSAM's description shown: the real window under Xvfb,
real files, the shipped weights."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore

from app.core.normalization import Normalization, NormalizationRequest
from app.session import ReviewSession
from app.widgets.detection_panel import DetectionPanel
from app.widgets.normalization_dialog import NormalizationDialog
from tests.gui_review_helpers import open_project
from tests.test_gui_window import _choose, _run_ended

pytestmark = pytest.mark.gui


def test_the_progress_bar_says_no_run_yet_until_a_run_and_then_the_frames_done(window, fresh_sequence, qtbot):
    """Empty and without text, the bar read as a text field."""
    panel = window.detection_panel
    assert panel.progress.text() == "no run yet" and not panel.progress.isEnabled()  # before any sequence
    open_project(window, qtbot, fresh_sequence)
    assert panel.progress.text() == "no run yet" and not panel.progress.isEnabled()  # the panel enabled, not it
    _choose(window, "tophat")
    window.run_detection("frame")
    assert panel.progress.isEnabled()
    _run_ended(window, qtbot)
    assert panel.progress.text() == "1 / 1 frames" and panel.progress.isEnabled()
    assert panel.rate.text().startswith("done, ") and "ETA" not in panel.rate.text()

    window.open_path(fresh_sequence)  # opened again: an earlier sequence's run is not shown
    qtbot.waitUntil(lambda: panel.isEnabled(), timeout=10000)
    assert panel.progress.text() == "no run yet" and not panel.progress.isEnabled()


def test_a_run_that_ends_before_its_first_frame_leaves_no_count(qtbot):
    panel = DetectionPanel()
    qtbot.addWidget(panel)
    panel.set_frame_count(40)
    panel.set_running(True)  # busy: the weights load
    assert panel.progress.maximum() == 0 and panel.progress.isEnabled()
    panel.set_running(False)  # refused, failed or cancelled before a frame reported
    assert panel.progress.text() == "ended before its first frame" and not panel.progress.isEnabled()
    assert panel.progress.maximum() == 1 and panel.rate.text() == ""


def test_the_dialogs_now_follows_a_normalisation_another_window_chose(fresh_sequence, qtbot):
    session = ReviewSession.open(fresh_sequence)
    try:
        opened_with = session.normalization  # percentiles, the fixture's 9 bad pixels repaired
        assert opened_with.mode == "percentile" and len(opened_with.bad_pixels) == 9
        frame = session.frame(0)
        dialog = NormalizationDialog(opened_with, session.source.dtype, lambda: (1000.0, 9000.0), 3,
                                     shown_frame=frame)
        qtbot.addWidget(dialog)
        dialog.show()
        assert dialog.note.text().startswith(f"Now: {opened_with}. The 3 frames detected so far keep")
        assert dialog.repair.text().endswith("9 repaired now)")

        # what another window's choice becomes in this one (the normalisation it takes up from the project)
        chosen = NormalizationRequest(window=(1000, 9000), repair_bad_pixels=False).for_source(session.source)
        assert chosen == Normalization("window", 1000.0, 9000.0, bad_pixel_repair=False)
        dialog.show_current(chosen)
        assert dialog.note.text() == (f"Now: {chosen}. The 3 frames detected so far keep their proposals until "
                                      "detection runs again; accepted and corrected frames keep their masks.")
        assert "window 1000..9000, bad pixels not repaired" in dialog.note.text()
        assert dialog.repair.text().endswith("none now)")
        # the analyst's values in the boxes stay: OK asks for what they show
        assert dialog.percentiles.isChecked() and dialog.repair.isChecked()
        assert dialog.request() == NormalizationRequest(percentiles=(opened_with.p_low, opened_with.p_high))
    finally:
        session.close()


def _rows_whole_in(area, widgets) -> bool:
    viewport = area.viewport()
    for widget in widgets:
        rect = QtCore.QRect(widget.mapTo(viewport, QtCore.QPoint(0, 0)), widget.size())
        if not viewport.rect().contains(rect):
            return False
    return True


def _load_shipped_weights(window, qtbot) -> None:
    """IRSAM loads when chosen, its checkpoint's description (four lines more) then shows in the Detection dock."""
    _choose(window, "tophat")
    _choose(window, "irsam")
    qtbot.waitUntil(lambda: window.detector is not None and "validation" in window.detection_panel.info.text(),
                    timeout=60000)
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=30000)


@pytest.mark.parametrize("size", [(1500, 950), (1280, 800)])
def test_the_right_column_shows_irsams_description_and_every_overlay(window, fresh_sequence, qtbot, size):
    window.resize(*size)
    open_project(window, qtbot, fresh_sequence)
    qtbot.waitUntil(lambda: window.height() == size[1], timeout=2000)
    _load_shipped_weights(window, qtbot)
    window.right_column.size_docks()  # as the window does when its height changes
    detection, overlays = window.detection_dock.widget(), window.overlays_dock.widget()
    panel, overlay_panel = window.detection_panel, window.overlay_panel
    rows = [w for key in overlay_panel.toggles for w in (overlay_panel.toggles[key], overlay_panel.color_buttons[key],
                                                         overlay_panel.opacity_sliders[key])]
    if size == (1500, 950):
        # (a scroll area shows or hides its bar in a queued call after the layout: a loaded machine needs a few passes)
        qtbot.waitUntil(lambda: not overlays.verticalScrollBar().isVisible()
                        and not detection.verticalScrollBar().isVisible(), timeout=2000)
        assert _rows_whole_in(overlays, rows)
        assert _rows_whole_in(detection, [panel.detector_combo, panel.run_all, panel.info, panel.keep_probabilities])
    # tighter, not squeezed: no row is shorter than its text or its check box needs, none covers another
    for toggle in overlay_panel.toggles.values():
        assert toggle.height() >= toggle.sizeHint().height()
    tops = sorted(toggle.y() for toggle in overlay_panel.toggles.values())
    assert np.diff(tops).min() >= max(t.sizeHint().height() for t in overlay_panel.toggles.values())
    for swatch in overlay_panel.color_buttons.values():
        assert swatch.height() >= 12 and swatch.isVisible()
    assert panel.info.height() >= panel.info.heightForWidth(panel.info.width())
    assert panel.device_combo.width() >= panel.device_combo.sizeHint().width()  # "auto", "cuda", "cpu" whole
