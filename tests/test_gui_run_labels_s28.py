"""The review window names a classical detector as its Detection list does ("Top-Hat", not "tophat"), and a run over
an unreadable last frame ends with a full bar and "done"."""
from __future__ import annotations

import pytest

from app.widgets.workers import DetectorChoice
from tests.gui_review_helpers import open_project
from tests.test_gui_window_audit_s28 import _choose, _run_ended

pytestmark = pytest.mark.gui

RUN_FRAMES = 40


@pytest.mark.parametrize("choice, label", [
    (DetectorChoice("tophat"), "Top-Hat"),
    (DetectorChoice("mpcm", target_size=16, threshold_k=6.0), "MPCM (up to 16 px across, threshold mean + 6 std)"),
    (DetectorChoice("pstnn", min_area=2), "PSTNN (targets >= 2 px)"),
])
def test_a_classical_detectors_label_uses_its_display_name(choice, label):
    assert choice.label == label


def test_the_feature_maps_panel_names_a_classical_detector_as_the_detection_list_does(window, fresh_sequence, qtbot):
    open_project(window, qtbot, fresh_sequence)
    _choose(window, "tophat")
    window.features_dock.show()
    qtbot.waitUntil(lambda: "no WPMD or GAD" in window.feature_panel.message.text(), timeout=10000)
    assert window.feature_panel.message.text().startswith("Top-Hat has no WPMD or GAD feature maps")


def test_a_run_whose_last_frame_is_unreadable_ends_with_a_full_bar_and_done(window, fresh_sequence, qtbot):
    for folder in ("images", "masks"):  # a 40-frame sequence
        for extra in sorted((fresh_sequence / folder).glob("*.png"))[RUN_FRAMES:]:
            extra.unlink()
    last = sorted((fresh_sequence / "images").glob("*.png"))[-1]
    last.write_bytes(last.read_bytes()[:200])  # truncated: no IEND chunk
    open_project(window, qtbot, fresh_sequence)
    panel = window.detection_panel
    _choose(window, "tophat")
    window.run_detection("all")
    _run_ended(window, qtbot)
    assert window.session.is_unreadable(RUN_FRAMES - 1)
    assert window.session.detection_counts[RUN_FRAMES - 2] >= 0
    assert panel.progress.text() == f"{RUN_FRAMES} / {RUN_FRAMES} frames"
    assert panel.rate.text().startswith("done, ") and "ETA" not in panel.rate.text()
