"""A detector that is only loading (a checkpoint just picked) writes nothing to the project: export, fine-tuning
and the other project writers are not refused for it, as they are while detection runs."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_export_waits_for_a_run_but_not_for_a_detector_loading(window, fresh_sequence, tiny_checkpoint, qtbot):
    assert window.open_path(fresh_sequence)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    tools = window.review_tools

    window.detection_panel.add_checkpoint(tiny_checkpoint)
    assert window.detection_runner.busy and window.detector_loading()
    assert tools.writing_refusal("export") is None
    assert tools.writing_refusal("start fine-tuning") is None
    qtbot.waitUntil(lambda: window.detector is not None and not window.detection_runner.busy, timeout=30000)

    window.run_detection("all")
    assert window.detection_runner.busy and not window.detector_loading()
    assert tools.writing_refusal("export") == "Detection, propagation or an import is running; export when it is done."
    window.cancel_detection()
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=30000)
    assert tools.writing_refusal("export") is None
