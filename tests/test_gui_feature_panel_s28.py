"""The feature panel's titles and layout: a long title (channel 319 at level 3) never widens its column, so every
map stays in view whatever the level, reduction and channel were before; a map without the chosen channel says why
it is blank; resizing the panel keeps the maps' range."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtWidgets

from app.widgets.wpmd_panel import FeaturePanel

# the (channels, rows, columns) of the maps IRSAM's predictor gives for a 256x320 frame
WPMD_SHAPES = [(64, 64, 80), (128, 32, 40), (160, 16, 20), (320, 16, 20)]
GAD_SHAPE = (32, 64, 80)
FRAME_RECT = np.array([0, 0, 320, 256], np.float32)


def wait(ms: int) -> None:
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(ms, loop.quit)
    loop.exec()


def irsam_features() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    features = {}
    for level, shape in enumerate(WPMD_SHAPES):
        for kind in ("diffused", "edge"):
            features[f"wpmd{level}.{kind}"] = rng.random(shape, dtype=np.float32)
            features[f"wpmd{level}.{kind}.rect"] = FRAME_RECT
    for key in ("gad.shallow", "gad.deep", "gad.multi"):
        features[key] = rng.random(GAD_SHAPE, dtype=np.float32)
        features[f"{key}.rect"] = FRAME_RECT
    return features


@pytest.fixture
def panel(qtbot) -> FeaturePanel:
    """The panel at the size the review window gives its floating dock, with the maps of frame 1."""
    panel = FeaturePanel()
    qtbot.addWidget(panel)
    panel.resize(1200, 340)
    panel.show()
    wait(200)
    panel.set_input(np.random.default_rng(1).integers(0, 255, (256, 320), dtype=np.uint8))
    panel.set_features(irsam_features(), "IRSAM", "frame 1")
    wait(200)
    return panel


def choose(panel: FeaturePanel, level: str | None = None, reduction: str | None = None,
           channel: int | None = None) -> None:
    if level is not None:
        panel.level_combo.setCurrentText(level)
    if reduction is not None:
        panel.reduction_combo.setCurrentText(reduction)
    if channel is not None:
        panel.channel.setValue(channel)
    wait(200)  # the layout settles in the event loop


def assert_all_in_view(panel: FeaturePanel, step: str) -> None:
    """Every map view lies inside the viewport, and every title's text inside its own cell and the viewport."""
    graphics = panel.graphics
    viewport = graphics.mapToScene(graphics.viewport().rect()).boundingRect().adjusted(-0.5, -0.5, 0.5, 0.5)
    for key, view in panel.views.items():
        drawn = view.mapRectToScene(view.boundingRect())
        assert viewport.contains(drawn), f"{step}: the {key} map reaches {drawn.right():.0f} of {viewport.right():.0f}"
    for key, title in panel.titles.items():
        text = title.mapRectToScene(title.itemRect())
        cell = title.mapRectToScene(title.rect()).adjusted(-0.5, -0.5, 0.5, 0.5)
        assert viewport.contains(text) and cell.contains(text), f"{step}: the {key} title is clipped"
        if "…" in title.text:
            assert title.toolTip(), f"{step}: the {key} title is cut short without a tooltip"


def test_a_long_title_widens_no_column_and_every_map_stays_in_view_after_it(panel):
    assert_all_in_view(panel, "mean, level 0")
    choose(panel, level="3", reduction="channel", channel=319)
    assert_all_in_view(panel, "channel 319, level 3")
    choose(panel, reduction="mean", level="0")
    assert_all_in_view(panel, "back to mean, level 0")
    # the next frame's maps
    panel.set_features(irsam_features(), "IRSAM", "frame 2")
    wait(200)
    assert_all_in_view(panel, "the next frame")
    # the six maps share the row equally, whatever their titles say
    widths = {round(view.width()) for view in panel.views.values()}
    assert max(widths) - min(widths) <= 1


def test_a_map_without_the_chosen_channel_says_why_it_is_blank(panel):
    choose(panel, level="3", reduction="channel", channel=319)
    assert panel.titles["edge"].lines == ("WPMD edge", "channel 319 of 320")
    for key, name in (("gad.shallow", "GAD shallow"), ("gad.deep", "GAD deep"), ("gad.multi", "GAD multi")):
        assert panel.images[key].image is None
        title = panel.titles[key]
        assert title.lines == (name, "only 32 channels")
        assert title.shown_lines == title.lines  # at 1200 pixels it is written whole
        why = (f"{name} has 32 channels (0-31), so it has no channel 319 to show. "
               "The channel box goes up to 319 for WPMD diffused and WPMD edge, which have 320.")
        assert title.toolTip() == why
        assert panel.views[key].toolTip() == why
        # over the blank map, where it would be
        note = panel.missing_channel_notes[key]
        assert note.isVisible() and note.toPlainText() == "no channel 319"
        assert note.pos() == QtCore.QPointF(160, 128)
    for key in ("diffused", "edge"):
        assert not panel.missing_channel_notes[key].isVisible()
        assert panel.views[key].toolTip() == ""

    choose(panel, channel=5)
    for key in ("gad.shallow", "gad.deep", "gad.multi"):
        assert panel.images[key].image is not None
        assert panel.titles[key].lines[1] == "channel 5 of 32"
        assert panel.titles[key].toolTip() == panel.views[key].toolTip() == ""
        assert not panel.missing_channel_notes[key].isVisible()

    panel.clear_maps("Frame 3 is unreadable: it has no feature maps.")
    assert panel.titles["gad.deep"].lines == ("GAD deep", "")
    assert not panel.missing_channel_notes["gad.deep"].isVisible()
    assert panel.views["gad.deep"].toolTip() == ""


def test_titles_of_a_narrow_panel_are_cut_short_with_the_whole_title_in_their_tooltip(panel):
    panel.resize(520, 300)
    choose(panel, level="3", reduction="channel", channel=319)
    assert_all_in_view(panel, "520 pixels wide")
    edge = panel.titles["edge"]
    # written short, and what is cut is the end, not the channel
    assert edge.shown_lines[1].startswith("ch. 319/") and edge.toolTip() == "WPMD edge\nchannel 319 of 320"
    assert panel.titles["gad.deep"].shown_lines[1] == "only 32 ch."
    assert panel.titles["gad.deep"].toolTip().startswith("GAD deep has 32 channels (0-31)")
    # "no channel 319" is wider than these maps: cut by their edges it would read "o channel 31"
    assert not any(panel.missing_channel_notes[key].isVisible() for key in ("gad.shallow", "gad.deep", "gad.multi"))
    metrics = QtGui.QFontMetricsF(edge.item.font())
    margin = 2 * edge.item.document().documentMargin()
    for title in panel.titles.values():
        assert all(metrics.horizontalAdvance(line) <= title.width() - margin for line in title.shown_lines)

    panel.resize(1200, 340)
    choose(panel)
    assert edge.shown_lines == edge.lines and edge.toolTip() == ""
    assert all(panel.missing_channel_notes[key].isVisible() for key in ("gad.shallow", "gad.deep", "gad.multi"))
    assert_all_in_view(panel, "1200 pixels wide again")


def test_resizing_the_panel_keeps_the_maps_range_and_each_map_shows_the_inputs(panel):
    def ranges() -> dict[str, np.ndarray]:
        return {key: np.array(view.viewRange()) for key, view in panel.views.items()}

    x_range = ranges()["input"][0]
    np.testing.assert_allclose(x_range, (0, 320), atol=0.5)  # the frame fills the width of its view
    for width in (900, 700, 1200, 700, 1200):
        panel.resize(width, 340)
        wait(200)
        shown = ranges()
        np.testing.assert_allclose(shown["input"][0], x_range, atol=0.5, err_msg=f"{width} pixels wide")
        for key, view_range in shown.items():
            np.testing.assert_allclose(view_range, shown["input"], atol=0.5, err_msg=f"{key}, {width} pixels wide")


def test_zooming_a_map_zooms_the_input_and_every_other_map(panel):
    graphics = panel.graphics
    view = panel.views["gad.deep"]
    at = graphics.mapFromScene(view.mapToScene(view.boundingRect().center()))
    wheel = QtGui.QWheelEvent(QtCore.QPointF(at), QtCore.QPointF(graphics.viewport().mapToGlobal(at)),
                              QtCore.QPoint(0, 0), QtCore.QPoint(0, 240), QtCore.Qt.NoButton, QtCore.Qt.NoModifier,
                              QtCore.Qt.NoScrollPhase, False)
    QtWidgets.QApplication.sendEvent(graphics.viewport(), wheel)
    wait(200)
    zoomed = np.array(panel.views["input"].viewRange())
    assert zoomed[0, 1] - zoomed[0, 0] < 200  # zoomed in from the frame's 320 columns
    for key, other in panel.views.items():
        np.testing.assert_allclose(np.array(other.viewRange()), zoomed, atol=0.5, err_msg=key)
