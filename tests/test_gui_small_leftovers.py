"""Detection boxes never hide the proposal's and the ground truth's outlines; the review queue's change column has
nothing to count on the first frame."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PySide6 import QtCore, QtGui

from app.core.normalization import Normalization
from app.core.project import ReviewProject
from app.core.review_queue import sort_frames, summarize
from app.core.targets import extract_targets
from app.session import FrameLayers
from model.detectors import FrameResult

SHAPE = (16, 20)


def _wait(ms: int) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _grab(view) -> np.ndarray:
    """The frame view's pixels as drawn on screen, (H, W, RGB)."""
    image = view.graphics.grab().toImage().convertToFormat(QtGui.QImage.Format_RGB32)
    pixels = np.array(image.constBits()).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return pixels[:, : image.width(), 2::-1].copy()  # B, G, R, A in memory


def _near(pixels: np.ndarray, color) -> np.ndarray:
    return (np.abs(pixels.astype(int) - color) <= 60).all(axis=2)


@pytest.mark.gui
def test_detection_boxes_hide_no_outline_pixel_at_any_zoom(qapp):
    from app.widgets.frame_view import FrameView

    view = FrameView()
    view.resize(400, 330)  # a 320x256 frame drawn whole: about 0.85 screen pixel per image pixel
    view.show()
    frame = np.full((256, 320), 1000, np.uint16)
    target = np.zeros(frame.shape, bool)
    target[100, 150:154] = True  # 1 pixel high
    frame[target] = 3000
    view.set_sequence_levels(0, 4000)
    view.show_frame(frame, FrameLayers(prediction=target, targets=extract_targets(target), truth_mask=target))
    (box,) = [(t.x0, t.y0, t.x1, t.y1) for t in view.layers.targets]
    view.select_box(box)
    rings = {key: view.overlays[key].color for key in ("prediction", "truth")}
    box_overlay = view.overlays["boxes"]
    try:
        # zoomed in first, then out: the boxes follow the zoom
        for show in (lambda: view.center_on(152, 100, 6), view.show_whole_frame):
            show()
            _wait(150)
            with_boxes = _grab(view)
            view.set_overlays({**view.overlays, "boxes": replace(box_overlay, visible=False)})
            view.select_box(None)
            _wait(150)
            without_boxes = _grab(view)
            view.set_overlays({**view.overlays, "boxes": box_overlay})
            view.select_box(box)
            assert _near(with_boxes, box_overlay.color).sum() > _near(without_boxes, box_overlay.color).sum()
            for key, color in rings.items():
                ring = _near(without_boxes, color)
                assert ring.sum() >= 6, key
                np.testing.assert_array_equal(_near(with_boxes, color), ring, err_msg=key)
    finally:
        view.close()


def _prediction(*corners):
    """2x2 targets at each (y, x)."""
    logits = np.full(SHAPE, -5.0, np.float32)
    for y, x in corners:
        logits[y : y + 2, x : x + 2] = 3.0
    return FrameResult(logits)


@pytest.fixture
def project(tmp_path):
    """Frames with 3, 3 (unmoved), 1 (two gone) targets, and one not detected."""
    stems = ["a", "b", "c", "d"]
    project = ReviewProject.create(tmp_path / "p", tmp_path / "src", "folder", stems, SHAPE,
                                   Normalization.identity8().to_dict())
    for stem, corners in (("a", [(2, 2), (8, 8), (2, 14)]), ("b", [(2, 2), (8, 8), (2, 14)]), ("c", [(2, 2)])):
        project.save_prediction(stem, _prediction(*corners))
    project.flush_detections()
    return ReviewProject.open(project.folder)


def test_the_first_frame_has_no_change_and_sorts_last(project):
    summaries = summarize(project)
    assert [s.n_detections for s in summaries] == [3, 3, 1, None]
    assert [s.change_from_previous for s in summaries] == [None, 0, 2, None]
    assert summarize(project, [0]) == summaries[:2]
    # a frame without a change comes last either way, as one not detected does
    assert [s.index for s in sort_frames(summaries, "change", descending=True)] == [2, 1, 0, 3]
    assert [s.index for s in sort_frames(summaries, "change")] == [1, 2, 0, 3]


@pytest.mark.gui
def test_the_queue_shows_a_dash_as_the_first_frames_change(qapp, project):
    from app.widgets.review_panel import COLUMNS, FrameQueueModel

    model = FrameQueueModel()
    model.set_summaries(summarize(project))
    change = COLUMNS.index("change")
    assert [model.data(model.index(row, change)) for row in range(model.rowCount())] == ["-", "0", "2", "-"]
    detections = COLUMNS.index("det.")
    assert model.data(model.index(0, detections)) == "3"
