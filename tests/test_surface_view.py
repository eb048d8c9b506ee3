"""The 3D intensity surface on frames one pixel thin: drawn as a strip, not an empty panel."""
from __future__ import annotations

import numpy as np
import pytest

from app.widgets import surface_view
from app.widgets.surface_view import SurfaceRegion, SurfaceView, outline_segments, surface_arrays

GRAY = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 64), (64, 1)])
def test_a_one_pixel_thin_crop_makes_a_strip_two_vertices_wide(shape):
    crop = np.arange(64, dtype=np.uint16).reshape(shape)
    x, y, z, colors = surface_arrays(crop, (0.0, 63.0), GRAY)
    long = 64
    assert (len(x), len(y)) == ((long, 2) if shape[0] == 1 else (2, long))
    assert z.shape == (len(x), len(y)) and colors.shape == (len(x), len(y), 4)
    assert np.array_equal(z[:, 0], z[:, 1]) if shape[0] == 1 else np.array_equal(z[0], z[1])
    assert z.max() == pytest.approx(surface_view.RELIEF)
    mask = np.zeros(shape, bool)
    mask[tuple(s // 2 for s in shape)] = True  # a 1-pixel target: its tick stands on its pixel
    ticks = outline_segments(mask, z)
    expected = (32, 0) if shape[0] == 1 else (0, 31)  # (column, rows flipped)
    assert len(ticks) and (ticks[:, :2] == expected).all()


@pytest.fixture
def view(qtbot) -> SurfaceView:
    """A surface view shown on screen, with a real OpenGL context."""
    if not surface_view.opengl_available():
        pytest.fail("no OpenGL context: run the GUI tests under xvfb-run with GLX")
    view = SurfaceView()
    qtbot.addWidget(view)
    view.resize(300, 240)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_the_surface_of_a_one_row_frame_is_drawn(view):
    blank = view.gl_view.grabFramebuffer()
    frame = (np.arange(64, dtype=np.uint16) * 100).reshape(1, 64)
    view.show_region(frame, SurfaceRegion.around(32, 0, frame.shape), None, (0.0, 6300.0), GRAY, "cursor (32, 0)")
    assert view.surface.visible()
    drawn = view.gl_view.grabFramebuffer()
    assert drawn != blank  # before the fix the mesh had no quads: the panel stayed the background colour


def test_the_height_caption_of_a_float_frame_leaves_its_no_data_out(view):
    """One NaN pixel in the crop made the caption read "height: raw nan..nan"."""
    frame = np.full((40, 40), 21.5, np.float32)
    frame[20, 20], frame[10, 10] = 23.25, np.nan
    region = SurfaceRegion.around(20, 20, frame.shape)
    view.show_region(frame, region, None, (21.0, 24.0), GRAY, "cursor (20, 20)")
    assert view.caption.text() == "cursor (20, 20)   height: raw 21.5..23.25"
    view.show_region(np.full((40, 40), np.nan, np.float32), region, None, (21.0, 24.0), GRAY, "cursor (20, 20)")
    assert view.caption.text() == "cursor (20, 20)   height: no data"
