"""The status bar's SNR under the cursor is the target's, by the Targets list's definition, wherever on the
target the cursor is (GUI audit 6): `app.measure.local_snr`, and the real window under Xvfb."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.targets import extract_targets
from app.measure import local_snr, target_snr
from model.detectors import FrameResult
from tests.gui_review_helpers import open_project, predict_ground_truth, viewport_point

pytestmark = pytest.mark.gui


# --- 4. the cursor's SNR is the target's, wherever on it the cursor is ----------------------------------


def _elongated_blob(shape, y: int, x0: int, amplitude: float):
    """A 10x4 px target brightest at its left end (as a drone seen side-on): the values it adds, and its mask."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    body = np.exp(-((yy - float(y)) ** 2) / (2 * 1.2 ** 2)) * ((xx >= x0) & (xx <= x0 + 9))
    added = amplitude * body * (1.0 - 0.025 * (xx - x0))  # the right end at 0.78 of the left
    return added, amplitude * body > amplitude / 3


def test_cursor_snr_is_the_targets_wherever_the_cursor_is_on_it():
    """The readout took a 5x5 box around the cursor and a ring 3-9 px outside it: the target's own pixels,
    on a target wider than 5 px, fell in its background ring (on a real drone 29.1 on the brightest pixel,
    69.9 on the centroid, 63.7 in the Targets list)."""
    added, mask = _elongated_blob((96, 128), 40, 60, 900)
    frame = np.clip(np.random.default_rng(0).normal(9000, 20, mask.shape) + added, 0, 65535).astype(np.uint16)
    (target,) = extract_targets(mask)
    listed = target_snr(frame, target, mask)
    ys, xs = np.nonzero(mask)
    for x, y in zip(xs, ys):
        assert local_snr(frame, x, y, mask) == (float(frame[mask].max()), listed)  # the list's own number
        assert local_snr(frame, x, y)[1] == pytest.approx(listed, rel=0.1), (x, y)  # no mask: the bright region
    # a mask without a target there: the next one is tried, then the bright region
    assert local_snr(frame, 64, 40, np.zeros_like(mask), mask)[1] == listed
    assert local_snr(frame, 64, 40, None)[1] == pytest.approx(listed, rel=0.1)


def test_status_bar_snr_agrees_with_the_targets_list(window, fresh_sequence, qtbot):
    """The real window: the cursor over each pixel of a wide target reads the SNR the Targets list gives it."""
    from app.session import ReviewSession

    image_path = sorted((fresh_sequence / "images").glob("*.png"))[0]
    image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    added, blob = _elongated_blob(image.shape, 20, 90, 4000)  # away from the sequence's own targets
    cv2.imwrite(str(image_path), np.clip(image + added, 0, 65535).astype(np.uint16))
    predict_ground_truth(fresh_sequence)
    session = ReviewSession.open(fresh_sequence)
    truth = session.ground_truth.mask(session.stem(0))
    session.project.save_prediction(session.stem(0), FrameResult(np.where(truth | blob, 5.0, -5.0).astype(np.float32)))
    session.project.flush_detections()
    session.close()
    open_project(window, qtbot, fresh_sequence)
    window.update_panels()
    target = next(t for t in window.layers.targets if t.x0 <= 94 <= t.x1 and t.y0 <= 20 <= t.y1)
    assert target.x1 - target.x0 == 9
    table = window.target_list
    row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == str(target.id))
    listed = float(table.item(row, 5).text())
    viewport = window.frame_view.graphics.viewport()
    window.frame_view.center_on(target.cx + 0.5, target.cy + 0.5, 24)
    qtbot.waitUntil(lambda: QtWidgets.QApplication.activeWindow() is window, timeout=5000)
    qtbot.wait(200)  # the view's new range is applied when it is painted
    readings = {}
    for x in range(target.x0, target.x1 + 1):
        qtbot.wait(40)  # pyqtgraph's scene drops mouse moves that come faster than 60 a second
        point = QtCore.QPointF(viewport_point(window, x, 20))
        QtWidgets.QApplication.sendEvent(viewport, QtGui.QMouseEvent(
            QtCore.QEvent.MouseMove, point, viewport.mapToGlobal(point), QtCore.Qt.NoButton, QtCore.Qt.NoButton,
            QtCore.Qt.NoModifier))
        assert window.cursor_label.text().startswith(f"x {x}  y 20 ")
        readings[x] = float(re.search(r"SNR (\S+)", window.cursor_label.text()).group(1))
    assert all(snr == pytest.approx(listed, abs=0.051) for snr in readings.values()), (listed, readings)  # as listed
