"""A normalisation records that the analyst turned a raw sequence's bad-pixel repair off (a search that found none
reads otherwise), and a second window on the project takes up the normalisation another window chose."""
from __future__ import annotations

import json

import numpy as np
import pytest

from app.core.normalization import Normalization, NormalizationRequest
from app.core.project import ReviewProject
from tests.datasets import BANDED_HOT_PIXEL, banded_16bit_frames
from tests.gui_review_helpers import open_project, predict_ground_truth
from tests.test_normalization import FrameList


def test_turning_the_repair_off_is_recorded_and_read_back():
    frames = FrameList(banded_16bit_frames())
    off = NormalizationRequest(window=(1000, 4000), repair_bad_pixels=False).for_source(frames)
    assert off == Normalization("window", 1000.0, 4000.0, bad_pixel_repair=False)
    assert str(off) == "window 1000..4000, bad pixels not repaired"
    assert off.to_dict() == {"mode": "window", "low": 1000.0, "high": 4000.0, "bad_pixel_repair": False}
    assert Normalization.from_dict(json.loads(json.dumps(off.to_dict()))) == off
    percentile = NormalizationRequest(repair_bad_pixels=False).for_source(frames)
    assert percentile.bad_pixel_repair is False and str(percentile).endswith(", bad pixels not repaired")

    # repaired ones, and those stored before the flag existed, read and write as before
    repaired = NormalizationRequest(window=(1000, 4000)).for_source(frames)
    assert repaired.to_dict() == {"mode": "window", "low": 1000.0, "high": 4000.0,
                                  "bad_pixels": [list(BANDED_HOT_PIXEL)]}
    assert str(repaired) == "window 1000..4000, 1 bad pixels repaired"
    old = {"mode": "window", "low": 1000.0, "high": 4000.0}
    assert Normalization.from_dict(old).bad_pixel_repair and Normalization.from_dict(old).to_dict() == old
    assert Normalization.identity8().to_dict() == {"mode": "window", "low": 0.0, "high": 255.0}
    # an 8-bit sequence's bad pixels are never searched: no flag, whatever was asked
    frames8 = FrameList([np.full((16, 16), 40 + i, np.uint8) for i in range(10)])
    assert NormalizationRequest(repair_bad_pixels=False).for_source(frames8) == Normalization.identity8()
    assert NormalizationRequest(window=(10, 200), repair_bad_pixels=False).for_source(frames8).bad_pixel_repair


def test_a_stored_normalisation_without_repair_meets_only_requests_without_it():
    off = Normalization("window", 1000.0, 4000.0, bad_pixel_repair=False)
    assert NormalizationRequest(window=(1000, 4000), repair_bad_pixels=False).is_met_by(off)
    assert not NormalizationRequest(window=(1000, 4000)).is_met_by(off)  # the repair asked for: not this one
    assert NormalizationRequest().is_met_by(off)  # the default keeps whatever is stored
    # a raw sequence searched and clean gives the detectors what one without the repair gives
    assert NormalizationRequest(window=(1000, 4000), repair_bad_pixels=False).is_met_by(Normalization.fixed(1000, 4000))
    assert NormalizationRequest(window=(0, 255), repair_bad_pixels=False).is_met_by(Normalization.identity8())


@pytest.mark.gui
@pytest.mark.disk_poll
def test_a_second_window_takes_up_the_input_window_another_chose(window, fresh_sequence, tmp_path, qtbot):
    from PySide6 import QtCore, QtWidgets

    from app.main_window import MainWindow
    from tests.test_gui_window import _choose

    predict_ground_truth(fresh_sequence)  # the project both windows open
    open_project(window, qtbot, fresh_sequence)
    other = MainWindow(QtCore.QSettings(str(tmp_path / "other.ini"), QtCore.QSettings.IniFormat))
    qtbot.addWidget(other)
    other.resize(1200, 800)
    other.show()
    try:
        open_project(other, qtbot, fresh_sequence)
        assert other.session.normalization.bad_pixels and other.frame_view.bad_pixels

        dialog = window.choose_normalization()
        dialog.repair.setChecked(False)
        dialog.fixed.setChecked(True)
        dialog.low.setValue(1000)
        dialog.high.setValue(9000)
        dialog.findChild(QtWidgets.QDialogButtonBox).button(QtWidgets.QDialogButtonBox.Ok).click()
        chosen = window.session.normalization
        assert chosen == Normalization("window", 1000.0, 9000.0, bad_pixel_repair=False)
        assert window.statusBar().message().startswith("Detector input: normalisation window 1000..9000, bad pixels "
                                                       "not repaired")

        qtbot.waitUntil(lambda: other.session.normalization == chosen, timeout=15000)
        assert other.frame_view.sequence_levels == (1000.0, 9000.0) and other.frame_view.bad_pixels == ()
        assert other.statusBar().message() == ("Detector input changed by another window: normalisation window "
                                               "1000..9000, bad pixels not repaired")
        again = other.choose_normalization()
        assert again.fixed.isChecked() and not again.repair.isChecked()
        again.reject()

        _choose(other, "tophat")
        other.activateWindow()
        other.run_detection("frame")
        qtbot.waitUntil(lambda: not other.detection_runner.busy and other.detection_panel.run_all.isEnabled(),
                        timeout=15000)
        project = ReviewProject.open(other.session.project_dir)
        assert Normalization.from_dict(project.normalization) == chosen
        assert project.proposal_origin(other.session.stem(other.index)).normalization == str(chosen)  # not the old
    finally:
        other.close()


@pytest.mark.gui
def test_the_dialog_ticks_the_repair_from_the_flag_not_from_pixels_found(qtbot):
    from app.widgets.normalization_dialog import NormalizationDialog

    def repair_box(current) -> tuple[bool, str]:
        dialog = NormalizationDialog(current, np.uint16, lambda: (0.0, 1.0))
        qtbot.addWidget(dialog)
        return dialog.repair.isChecked(), dialog.repair.text()

    ticked, text = repair_box(Normalization.fixed(1000, 4000))  # searched, none found: the repair is on
    assert ticked and text.endswith("none now)")
    assert not repair_box(Normalization("window", 1000.0, 4000.0, bad_pixel_repair=False))[0]
    assert repair_box(Normalization("window", 1000.0, 4000.0, bad_pixels=((3, 4),)))[0]
