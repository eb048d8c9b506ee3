"""The review window after audit 28's leftovers, under Xvfb: a classical method described by its name, the feature maps
of the sequence open before cleared, the 3D view docked under the frame, and the progress and pace a run leaves."""
from __future__ import annotations

import math
import shutil

import pytest
from PySide6 import QtCore

from app.main_window import SURFACE_DOCKED_HEIGHT
from app.widgets.detection_panel import DetectionPanel
from tests.gui_review_helpers import open_project
from tests.test_gui_window_audit_s28 import _choose, _run_ended

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("method, name", [("tophat", "Top-Hat"), ("mpcm", "MPCM"), ("pstnn", "PSTNN")])
def test_a_classical_methods_description_names_it_as_the_detector_list_does(window, method, name):
    _choose(window, method)
    assert window.detection_panel.info.text().startswith(f"{name}: classical method, runs on the CPU; ")


def test_opening_another_sequence_clears_the_feature_maps_of_the_one_before(
        window, fresh_sequence, tiny_checkpoint, tmp_path, qtbot):
    other = shutil.copytree(fresh_sequence, tmp_path / "other sequence")
    open_project(window, qtbot, fresh_sequence)
    window.detection_panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: window.detector is not None and not window.detection_runner.busy, timeout=30000)
    panel = window.feature_panel
    window.features_dock.show()
    qtbot.waitUntil(lambda: not window.feature_runner.busy and panel.message.text().startswith("Feature maps of "),
                    timeout=30000)
    assert panel.images["input"].image is not None and panel.features
    panel.follow.setChecked(False)  # nothing computes the new sequence's maps: what opening leaves stays shown

    open_project(window, qtbot, other)
    assert panel.message.text() == "No feature maps yet for this sequence: press Compute."
    assert not panel.features
    assert all(image.image is None for image in panel.images.values())


def test_the_3d_view_docked_under_the_frame_leaves_the_frame_most_of_the_height_and_shows_its_whole_surface(
        window, fresh_sequence, qtbot):
    open_project(window, qtbot, fresh_sequence)
    dock = window.surface_dock
    dock.show()
    qtbot.waitUntil(lambda: window.surface_view.gl_view is not None, timeout=5000)
    dock.setFloating(False)
    qtbot.waitUntil(lambda: dock.height() == SURFACE_DOCKED_HEIGHT, timeout=5000)
    assert window.dockWidgetArea(dock) == QtCore.Qt.BottomDockWidgetArea
    assert window.frame_view.height() > 1.5 * dock.height()
    gl_view = window.surface_view.gl_view
    assert gl_view.width() > 2 * gl_view.height()
    # pyqtgraph's field of view spans the width: the height keeps at least 45 degrees
    vertical = 2 * math.degrees(math.atan(math.tan(math.radians(gl_view.opts["fov"] / 2)) * gl_view.height()
                                          / gl_view.width()))
    assert vertical == pytest.approx(45.0, abs=0.5)
    window.surface_view._fit_field_of_view(QtCore.QSize(518, 422))  # the floating view's size
    assert gl_view.opts["fov"] == pytest.approx(60.0)  # keeps pyqtgraph's default


def test_a_classical_run_that_ended_gives_its_pace_and_no_eta(window, fresh_sequence, qtbot):
    open_project(window, qtbot, fresh_sequence)
    panel = window.detection_panel
    _choose(window, "tophat")
    window.run_detection("frame")
    _run_ended(window, qtbot)
    assert panel.progress.text() == "1 / 1 frames"
    assert panel.rate.text().startswith("done, ") and panel.rate.text().endswith(" frames/s")


def test_a_run_cancelled_while_its_detector_loads_says_no_frame_was_detected(
        window, fresh_sequence, tiny_checkpoint, qtbot):
    open_project(window, qtbot, fresh_sequence)
    panel = window.detection_panel
    panel.add_checkpoint(tiny_checkpoint)  # loading: the run waits for it
    window.run_detection("all")
    assert window._pending_run is not None
    window.cancel_detection()
    assert panel.progress.text() == "ended before its first frame"
    assert panel.rate.text() == "cancelled; no frame was detected"
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=30000)


def test_the_rate_line_at_a_runs_end_says_how_it_ended(qtbot):
    panel = DetectionPanel()
    qtbot.addWidget(panel)
    panel.set_frame_count(40)
    panel.set_running(True)
    panel.set_running(False, cancelled=True)  # cancelled before its first frame: it kept nothing
    assert panel.progress.text() == "ended before its first frame"
    assert panel.rate.text() == "cancelled; no frame was detected"

    panel.set_running(True)
    panel.set_progress(11, 40, 9.2)
    panel.set_running(False, cancelled=True)
    assert panel.progress.text() == "11 / 40 frames" and panel.rate.text() == "cancelled; results so far are kept"

    panel.set_running(True)
    panel.set_progress(38, 40, 9.2)
    panel.set_running(False)  # failed, or its last frames unreadable: no ETA of frames that will not come
    assert panel.rate.text() == "9.2 frames/s"

    panel.set_running(True)
    panel.set_progress(40, 40, 1 / 216)
    panel.set_running(False)
    assert panel.progress.text() == "40 / 40 frames" and panel.rate.text() == "done, 216.0 s a frame"
