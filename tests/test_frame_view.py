"""The frame view's own drawing: the same pixels as pyqtgraph's path, through a cached colour table."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6 import QtGui

from app.widgets import frame_view
from app.widgets.frame_view import TrueColorImageItem, palette_lut

pytestmark = pytest.mark.gui


def _pixels(item: pg.ImageItem) -> np.ndarray:
    item.render()
    image = item.qimage.convertToFormat(QtGui.QImage.Format_ARGB32_Premultiplied)
    return np.array(image.constBits()).reshape(image.height(), image.width(), 4).copy()


@pytest.mark.parametrize("case", ["frame inferno", "frame white-hot", "mask", "edges", "heatmap"])
def test_true_color_item_draws_what_pyqtgraph_draws(qapp, case):
    rng = np.random.default_rng(0)
    frame = (rng.random((50, 70)) * 5000).astype(np.uint16)
    layer = (rng.random((30, 20)) * 255).astype(np.uint8)
    image, levels, lut = {
        "frame inferno": (frame, (1000, 4000), palette_lut("inferno")),
        "frame white-hot": (frame, (1000.5, 3999.5), palette_lut("white-hot")),
        "mask": (layer > 180, (0, 1), frame_view._solid_lut((255, 60, 60))),
        "edges": (layer, (0, 255), frame_view._ramp_lut((80, 200, 255))),
        "heatmap": (layer, (0, 255), frame_view._heat_lut()),
    }[case]
    ours, theirs = TrueColorImageItem(axisOrder="row-major"), pg.ImageItem(axisOrder="row-major")
    for item in (ours, theirs):
        item.setImage(image, levels=levels, lut=lut, autoLevels=False)
    np.testing.assert_array_equal(_pixels(ours), _pixels(theirs))
    assert ours.qimage.format() in (QtGui.QImage.Format_RGB32, QtGui.QImage.Format_ARGB32_Premultiplied)


def test_true_color_item_follows_levels_and_palette(qapp):
    frame = np.array([[0, 1000, 2000, 3000]], np.uint16)
    item = TrueColorImageItem(axisOrder="row-major")
    item.setImage(frame, levels=(0, 3000), lut=palette_lut("white-hot"), autoLevels=False)
    assert list(_pixels(item)[0, :, 0]) == [0, 85, 170, 255]
    item.setLevels((1000, 2000))
    assert list(_pixels(item)[0, :, 0]) == [0, 0, 255, 255]
    item.setLookupTable(palette_lut("black-hot"))
    assert list(_pixels(item)[0, :, 0]) == [255, 255, 0, 0]
