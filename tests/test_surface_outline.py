"""The mask's outline on the 3D surface keeps to the top of a steep target's wall instead of zig-zagging."""
from __future__ import annotations

import numpy as np
import pytest

from app.widgets import surface_view
from app.widgets.surface_view import SurfaceRegion, SurfaceView, outline_segments, surface_arrays

GRAY = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)
LIFT = 0.3  # how far the outline is drawn above the surface


def steep_target(radius: float, cx: float, cy: float, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc on a flat background whose wall is one pixel wide, and its mask (every lit pixel)."""
    rows, cols = np.mgrid[:size, :size]
    coverage = np.clip(radius - np.hypot(rows - cy, cols - cx) + 0.5, 0, 1)
    frame = (100 + 900 * coverage).astype(np.uint16)
    return frame, frame > 150


@pytest.mark.parametrize("radius, cx, cy", [(3.3, 24.0, 24.0), (2.6, 24.3, 23.8), (4.2, 23.6, 24.4)])
def test_the_outline_of_a_steep_target_stays_at_its_top(radius, cx, cy):
    """Before, each vertex stood on its own boundary pixel: along the staircase those alternate between
    pixels barely lit and pixels on the plateau, so the outline jumped between background and top."""
    frame, mask = steep_target(radius, cx, cy)
    _, _, z, _ = surface_arrays(frame, (100.0, 1000.0), GRAY)
    segments = outline_segments(mask, z)
    assert len(segments) >= 16 and len(segments) % 2 == 0
    assert segments[:, 2] == pytest.approx(surface_view.RELIEF + LIFT)
    # the vertices are still the mask's boundary pixels (columns, rows flipped)
    cols, rows = segments[:, 0].astype(int), 47 - segments[:, 1].astype(int)
    assert mask[rows, cols].all()
    assert not mask[rows.min() - 1, cols].any() and not mask[rows.max() + 1, cols].any()


def test_the_outline_follows_the_surface_where_the_mask_lies_on_a_slope():
    """The height is the mask's top next to each vertex, not one height for the whole outline."""
    frame = np.tile(np.arange(48, dtype=np.uint16) * 10, (48, 1))  # brighter to the right
    mask = np.zeros(frame.shape, bool)
    mask[10:30, 5:40] = True
    _, _, z, _ = surface_arrays(frame, (0.0, 470.0), GRAY)
    segments = outline_segments(mask, z)
    step = surface_view.RELIEF / 47  # the height of one column's step
    own = z[segments[:, 0].astype(int), segments[:, 1].astype(int)] + LIFT
    assert (segments[:, 2] >= own - 1e-4).all() and (segments[:, 2] <= own + step + 1e-4).all()
    assert segments[:, 2].max() - segments[:, 2].min() > 30 * step


def test_a_mask_at_the_edge_of_the_crop_and_a_one_pixel_target():
    frame, _ = steep_target(3.3, 2.0, 24.0)  # cut by the crop's left edge
    _, _, z, _ = surface_arrays(frame, (100.0, 1000.0), GRAY)
    mask = frame > 150
    assert outline_segments(mask, z)[:, 2] == pytest.approx(surface_view.RELIEF + LIFT)
    single = np.zeros(frame.shape, bool)
    single[24, 2] = True
    tick = outline_segments(single, z)
    assert tick == pytest.approx(np.array([[2, 23, z[2, 23]], [2, 23, z[2, 23] + 2.0]]))
    assert len(outline_segments(np.zeros(frame.shape, bool), z)) == 0


@pytest.fixture
def view(qtbot) -> SurfaceView:
    """A surface view shown on screen, with a real OpenGL context."""
    if not surface_view.opengl_available():
        pytest.fail("no OpenGL context: run the GUI tests under xvfb-run with GLX")
    view = SurfaceView()
    qtbot.addWidget(view)
    view.resize(400, 320)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_the_view_draws_a_level_outline_round_a_small_bright_target(view):
    frame = np.full((120, 160), 100, np.uint16)
    target, mask_crop = steep_target(4.2, 23.6, 24.4)
    frame[40:88, 60:108] = target
    mask = np.zeros(frame.shape, bool)
    mask[40:88, 60:108] = mask_crop
    region = SurfaceRegion.around(84, 64, frame.shape)
    assert (region.x0, region.y0) == (60, 40)
    view.show_region(frame, region, mask, (100.0, 1000.0), GRAY, "target 1 at (84, 64), frame 1")
    outline = view.outline.pos
    assert outline is not None and len(outline) >= 20
    heights = outline[:, 2]
    assert heights == pytest.approx(surface_view.RELIEF + LIFT)  # before: from 1.6 to 16.3, up and down
    assert np.abs(np.diff(heights)).max() < 1e-4
