"""The WPMD / GAD feature panel: each map drawn over the frame area it covers, one channel per map truthfully."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore

from app.widgets.wpmd_panel import FeaturePanel
from model.predictor import Predictor
from tests.test_predictor import bright_target

MAP_SLOTS = {"diffused": "wpmd0.diffused", "edge": "wpmd0.edge", "gad.shallow": "gad.shallow",
             "gad.deep": "gad.deep", "gad.multi": "gad.multi"}  # level 0 is shown first


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint) -> Predictor:
    return Predictor.from_file(tiny_checkpoint, device="cpu")


def show(qtbot, predictor: Predictor, frame: np.ndarray) -> tuple[FeaturePanel, dict[str, np.ndarray]]:
    panel = FeaturePanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_input(frame)
    features = predictor.detect([frame], features=True)[0].features
    panel.set_features(features, "IRSAM")
    return panel, features


def drawn_rect(panel: FeaturePanel, slot: str) -> tuple[float, float, float, float]:
    """Where the map of `slot` lies in its view, which shares the input's frame-pixel coordinates."""
    item = panel.images[slot]
    rect = item.mapRectToParent(item.boundingRect())
    return rect.x(), rect.y(), rect.width(), rect.height()


@pytest.mark.parametrize("shape", [(240, 320), (250, 330)])
def test_each_map_is_drawn_over_the_frame_area_its_cells_cover(qtbot, predictor, shape):
    box = (174, 178, 229, 233)
    panel, features = show(qtbot, predictor, bright_target(shape, box))
    assert panel.message.text() == ""
    for slot, key in MAP_SLOTS.items():
        rows, cols = features[key].shape[1:]
        # level 0 and GAD are on the stride-4 grid: a 250-row frame gets 63 rows reaching to 252
        assert drawn_rect(panel, slot) == (0, 0, 4 * cols, 4 * rows)
    # the edge map's strongest cell is drawn on the target, as the input beside it shows it
    response = features["wpmd0.edge"].mean(axis=0)
    row, col = np.unravel_index(np.argmax(response), response.shape)
    peak = panel.images["edge"].mapToParent(QtCore.QPointF(col + 0.5, row + 0.5))
    assert box[0] - 4 <= peak.y() <= box[1] + 4 and box[2] - 4 <= peak.x() <= box[3] + 4


def test_the_channel_range_follows_the_maps_shown_and_a_map_without_the_channel_says_so(qtbot, predictor):
    panel, features = show(qtbot, predictor, bright_target((64, 96), (30, 34, 40, 44)))
    wpmd0, wpmd3, gad = (len(features[k]) for k in ("wpmd0.edge", "wpmd3.edge", "gad.deep"))
    assert gad < wpmd0 < wpmd3
    assert panel.channel.maximum() == wpmd0 - 1
    panel.reduction_combo.setCurrentText("channel")
    panel.channel.setValue(gad)  # one past GAD's last channel
    np.testing.assert_array_equal(panel.images["edge"].image, features["wpmd0.edge"][gad])
    assert panel.images["gad.deep"].image is None
    assert panel.titles["gad.deep"].lines == ("GAD deep", f"only {gad} channels")
    assert panel.titles["edge"].lines == ("WPMD edge", f"channel {gad} of {wpmd0}")

    panel.level_combo.setCurrentText("3")
    assert panel.channel.maximum() == wpmd3 - 1
    panel.channel.setValue(wpmd3 - 1)
    np.testing.assert_array_equal(panel.images["edge"].image, features["wpmd3.edge"][-1])
    panel.level_combo.setCurrentText("0")
    assert panel.channel.value() == wpmd0 - 1


def test_a_tiled_frame_shows_its_centre_tiles_maps_where_the_tile_lies_and_says_so(qtbot, tiny_checkpoint):
    tiled = Predictor.from_file(tiny_checkpoint, device="cpu", tile_size=96)
    panel, _ = show(qtbot, tiled, bright_target((100, 200), (48, 52, 98, 102)))
    assert drawn_rect(panel, "edge") == (52, 2, 96, 96)
    assert "centre tile, x 52-148, y 2-98" in panel.message.text()
