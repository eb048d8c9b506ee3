import numpy as np
import pytest

from app.editing import brush_offsets
from app.core.edits import (
    EditHistory,
    accept_targets,
    delete_component,
    fill_polygon,
    flood_fill,
    grow_target,
    make_edit,
    mask_diff,
    paint_stroke,
    stroke_pixels,
)
from app.core.targets import label_components


def blank(h=40, w=50):
    return np.zeros((h, w), dtype=bool)


def test_one_pixel_brush_sets_exactly_one_pixel():
    out = paint_stroke(blank(), [(7, 3)], size=1, value=True)
    assert np.argwhere(out).tolist() == [[3, 7]]


def test_float_points_are_floored_to_the_pixel_they_fall_in():
    out = paint_stroke(blank(), [(7.9, 3.2)], size=1, value=True)
    assert np.argwhere(out).tolist() == [[3, 7]]


@pytest.mark.parametrize("size, pixels", [(1, 1), (2, 4), (3, 9), (4, 12), (5, 21), (6, 32), (9, 69)])
def test_a_brush_of_size_n_is_n_pixels_across_and_round(size, pixels):
    out = paint_stroke(blank(), [(10, 10)], size=size, value=True)
    ys, xs = np.nonzero(out)
    assert out[10, 10] and out.sum() == pixels
    assert xs.max() - xs.min() + 1 == size and ys.max() - ys.min() + 1 == size
    assert sorted(map(tuple, brush_offsets(size) + (10, 10))) == sorted(zip(xs.tolist(), ys.tolist()))


def test_fast_stroke_with_far_apart_points_has_no_gaps():
    points = [(1, 1), (45, 30), (2, 38)]
    out = paint_stroke(blank(), points, size=1, value=True)
    n, labels = label_components(out)
    assert n == 1
    for x, y in points:
        assert out[y, x]
    # a 1 px line between (1,1) and (45,30) steps once per column: 45 new pixels, then 43 more
    assert out.sum() == 1 + 44 + 43


def test_stroke_is_clipped_at_the_border():
    out = paint_stroke(blank(10, 10), [(-5, 5), (15, 5)], size=3, value=True)
    assert out[5].all() and out[4].all() and out[6].all() and out.sum() == 30


def test_stroke_is_the_union_of_stamps_at_every_line_pixel():
    rng = np.random.default_rng(3)
    for _ in range(50):
        h, w = rng.integers(5, 30, 2)
        points = [tuple(rng.integers(-10, 40, 2)) for _ in range(rng.integers(1, 5))]
        size = int(rng.choice([1, 2, 3, 4, 7, 10]))
        yy, xx = np.mgrid[:h, :w]
        expected = np.zeros((h, w), dtype=bool)
        for x, y in stroke_pixels(points):
            # the stamp's kernel index of each pixel (index k lands at size // 2 - k), from its centre
            kx, ky = size // 2 - (xx - x), size // 2 - (yy - y)
            inside = (kx >= 0) & (kx < size) & (ky >= 0) & (ky < size)
            c = (size - 1) / 2
            expected |= inside & ((kx - c) ** 2 + (ky - c) ** 2 <= (size / 2) ** 2)
        np.testing.assert_array_equal(paint_stroke(np.zeros((h, w), bool), points, size, True), expected)


def test_eraser_clears_and_leaves_the_input_untouched():
    mask = np.ones((20, 20), dtype=bool)
    out = paint_stroke(mask, [(5, 5), (5, 14)], size=1, value=False)
    assert mask.all()
    assert (~out).sum() == 10 and not out[5:15, 5].any()


def test_fill_polygon_includes_the_boundary_pixels():
    out = fill_polygon(blank(), [(2, 2), (5, 2), (5, 5), (2, 5)])
    expected = blank()
    expected[2:6, 2:6] = True
    np.testing.assert_array_equal(out, expected)


def test_fill_polygon_with_false_cuts_a_hole():
    mask = np.ones((10, 10), dtype=bool)
    out = fill_polygon(mask, [(3, 3), (4, 3), (4, 4), (3, 4)], value=False)
    assert (~out).sum() == 4 and not out[3:5, 3:5].any()


def test_flood_fill_is_4_connected_and_held_by_an_8_connected_outline():
    outline = paint_stroke(blank(20, 20), [(5, 2), (9, 6), (5, 10), (1, 6), (5, 2)], size=1, value=True)
    inside = flood_fill(outline, 5, 6, True)
    assert not inside[0, 0]  # did not leak through the diagonal steps
    assert inside[6, 5] and inside[3, 5]
    added = inside & ~outline
    assert added.sum() == 25  # diamond interior: 1 + 3 + 5 + 7 + 5 + 3 + 1
    assert np.array_equal(flood_fill(outline, 5, 2, True), outline)  # already that value


def test_flood_fill_with_false_empties_a_region():
    mask = blank()
    mask[5:10, 5:10] = True
    mask[20, 20] = True
    out = flood_fill(mask, 7, 7, False)
    assert out.sum() == 1 and out[20, 20]


def test_delete_component_removes_only_the_8_connected_component_under_the_click():
    mask = blank()
    mask[5, 5] = mask[6, 6] = mask[7, 7] = True  # diagonal chain: one 8-connected target
    mask[20:23, 30:33] = True
    out = delete_component(mask, 6, 6)
    assert out.sum() == 9 and out[20:23, 30:33].all()
    assert np.array_equal(delete_component(mask, 0, 0), mask)


def test_accept_targets_unions_chosen_predicted_components():
    predicted = blank()
    predicted[2, 2] = True  # id 1 (raster order)
    predicted[10:12, 10:12] = True  # id 2
    predicted[30, 40] = True  # id 3
    committed = blank()
    committed[0, 49] = True
    out = accept_targets(committed, predicted, [2, 3])
    assert out[0, 49] and out[10:12, 10:12].all() and out[30, 40] and not out[2, 2]
    assert out.sum() == 1 + 4 + 1
    np.testing.assert_array_equal(accept_targets(None, predicted), predicted)


def synthetic_blob(raw=False):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    blob = (xx - 30) ** 2 / 4.0 + (yy - 20) ** 2 / 2.25 <= 1.0  # 5 x 3 ellipse
    if raw:
        image = 12000 + rng.normal(0, 40, (64, 64))
        image[blob] += 2000
        return np.clip(image, 0, 65535).astype(np.uint16), blob
    image = 60 + rng.normal(0, 3, (64, 64))
    image[blob] += 120
    return np.clip(image, 0, 255).astype(np.uint8), blob


@pytest.mark.parametrize("raw", [False, True])
def test_grow_target_recovers_a_synthetic_blob(raw):
    image, blob = synthetic_blob(raw)
    for click in [(30, 20), (32, 21)]:  # on the target, and a pixel off its centre
        grown = grow_target(image, *click)
        assert np.count_nonzero(grown ^ blob) <= 2
        assert label_components(grown)[0] == 1


def test_grow_target_on_float_temperatures_leaves_no_data_pixels_out():
    """A NaN (no data) pixel in the background ring made the threshold NaN: nothing ever grew."""
    image, blob = synthetic_blob(raw=True)
    temperatures = (20.0 + image / 1000.0).astype(np.float32)
    temperatures[7:9, 17:19] = np.nan  # no data, in the background ring of a click at (30, 20)
    assert np.count_nonzero(grow_target(temperatures, 30, 20) ^ blob) <= 2
    assert not grow_target(np.full((20, 20), np.nan, np.float32), 10, 10).any()


def test_grow_target_snaps_to_the_nearby_peak_and_caps_area():
    image, blob = synthetic_blob()
    near = grow_target(image, 34, 22)  # just outside the ellipse
    assert np.count_nonzero(near ^ blob) <= 2
    assert grow_target(image, 30, 20, max_area=5).sum() == 5
    assert not grow_target(image, 5, 50).any()  # background only


def ring_of(image, x, y, half=7):
    """The pixels of grow_target's background ring around (x, y) at the default window (15 px: half 7)."""
    box = np.asarray(image, dtype=np.float64)[y - 2 * half : y + 2 * half + 1, x - 2 * half : x + 2 * half + 1]
    inside = np.zeros(box.shape, dtype=bool)
    inside[half : 3 * half + 1, half : 3 * half + 1] = True
    ring = box[~inside]
    return ring[np.isfinite(ring)]


def dim_target_on_a_gradient(kind):
    """A 2 x 2 target 2.2 ring std above the ring's mean on a sky gradient (1 noise std a row, noise std 2 on
    the 8-bit scale): the gradient makes the ring's std about 9.5, so the target is under mean + 3 std, though
    it is 9 noise std above its own rows."""
    rng = np.random.default_rng(0)
    rows = np.arange(64)[:, None]
    image = 60 + 1.0 * rows + rng.normal(0, 2, (64, 64))
    target = np.zeros((64, 64), dtype=bool)
    target[30:32, 30:32] = True
    ring = ring_of(image, 30, 30)
    image[target] = ring.mean() + 2.2 * ring.std()
    if kind == "uint8":
        return np.round(image).astype(np.uint8), target
    if kind == "uint16":
        return np.round(12000 + 20 * image).astype(np.uint16), target
    temperatures = (20.0 + image / 100.0).astype(np.float32)
    temperatures[17:19, 40:42] = np.nan  # no data, in the background ring
    return temperatures, target


@pytest.mark.parametrize("kind", ["uint8", "uint16", "float32"])
def test_grow_target_finds_a_dim_target_on_a_gradient(kind):
    """The fixed ring mean + 3 std found nothing here (as on 21 of NUAA-SIRST's 533 targets, mostly on sky
    gradients and cloud slopes): the plane fitted to the ring takes the gradient out of the std."""
    image, target = dim_target_on_a_gradient(kind)
    ring = ring_of(image, 30, 30)
    assert image[30, 30] < ring.mean() + 3 * ring.std()  # dim: under the old threshold
    for click in [(30, 30), (31.5, 31.5), (33, 28)]:  # on the target, and within the snap radius of it
        assert np.array_equal(grow_target(image, *click), target)


def test_grow_target_finds_a_target_beside_a_cloud_bank_and_not_the_cloud():
    """A target as bright as the cloud bank 8 px away, whose edge in the ring raised the old threshold over
    the target; the grown region is the target alone, not the cloud's edge inside the window."""
    rng = np.random.default_rng(0)
    xx = np.arange(64)[None, :]
    image = 100 + 60 / (1 + np.exp(-(xx - 38) / 1.5)) + rng.normal(0, 2, (64, 64))
    target = np.zeros((64, 64), dtype=bool)
    target[30:32, 30:32] = True
    image[target] += 60
    image = np.round(image).astype(np.uint8)
    assert np.array_equal(grow_target(image, 30, 30), target)


def test_grow_target_on_pure_noise_grows_nothing():
    rng = np.random.default_rng(1)
    rows = np.arange(64)[:, None]
    flat = np.round(100 + rng.normal(0, 8, (64, 64))).astype(np.uint8)
    sloped = np.round(40 + 1.5 * rows + rng.normal(0, 8, (64, 64))).astype(np.uint8)
    assert not grow_target(flat, 32, 32).any() and not grow_target(sloped, 32, 32).any()
    # a flat ring fits a flat plane exactly: nothing stands out of a saturated patch or a raw frame's constant
    assert not grow_target(np.full((64, 64), 255, np.uint8), 32, 32).any()
    assert not grow_target(np.full((64, 64), 12345.678), 32, 32).any()
    # a noiseless ramp fits its plane to rounding, and a strip's 2-pixel ring fits any plane (diff review 26)
    yy, xx = np.mgrid[:64, :64]
    assert not grow_target((yy * 3 + xx * 2).astype(np.uint16), 32, 32).any()
    assert not grow_target(yy * 0.37 + xx * 0.11, 32, 32).any()
    strips = rng.normal(100, 5, (200, 17, 1))
    assert np.mean([grow_target(strip, 0, 8).any() for strip in strips]) < 0.6  # the plane took 0.9
    # the plane grows no more often on noise over a gradient than the mean does on flat noise, where the
    # brightest of the 49 pixels within the snap radius passes k = 3 about 6 % of the time
    noise = rng.normal(0, 8, (300, 64, 64))
    grows_on_flat = np.mean([grow_target(100 + n, 32, 32).any() for n in noise])
    grows_on_slope = np.mean([grow_target(40 + 1.5 * rows + n, 32, 32).any() for n in noise])
    assert grows_on_flat < 0.1 and grows_on_slope <= grows_on_flat + 0.03


def test_grow_target_takes_no_clutter_running_past_its_window_nor_a_lone_pixel_off_the_slope():
    """GUI audit 26: on a real clip a click on a fence pole grew a 31-px square of it, cut off by the window, and
    1-px regions grew on cloud: the slope's lower threshold took clutter the ring's mean refused."""
    rng = np.random.default_rng(2)
    rows = np.arange(64)[:, None]
    image = 60 + 1.0 * rows + rng.normal(0, 2, (64, 64))
    ring = ring_of(image, 32, 32)
    pole = image.copy()
    pole[:, 31:33] = ring.mean() + 2.2 * ring.std()  # a dim pole from the top of the frame to the bottom
    assert not grow_target(np.round(pole).astype(np.uint8), 32, 32).any()
    speck = image.copy()
    speck[32, 32] = ring.mean() + 2.2 * ring.std()
    assert not grow_target(np.round(speck).astype(np.uint8), 32, 32).any()
    # at the frame's edge the window is cut by the frame, not by clutter: a dim target there still grows
    edge = image.copy()
    edge[0:2, 30:32] = ring.mean() + 2.2 * ring.std()
    grown = grow_target(np.round(edge).astype(np.uint8), 30, 0)
    assert grown[0:2, 30:32].all() and grown.sum() == 4


def test_grow_target_takes_no_infinite_pixel_and_snaps_past_one():
    """Docs audit 26: +inf (no data, as NaN) stood out of any ring, so a click on it grew a 1-px target, and one
    within the snap radius was taken as the seed and the target beside it was not found."""
    rng = np.random.default_rng(4)
    frame = (280 + rng.normal(0, 0.05, (64, 64))).astype(np.float32)
    frame[32, 32] = np.inf
    assert not grow_target(frame, 32, 32).any()
    frame[30:32, 34:36] = 283.0  # a target 2 px from the infinite pixel
    grown = grow_target(frame, 32, 32)
    assert grown[30:32, 34:36].all() and grown.sum() == 4


def test_mask_diff_partitions_the_union():
    pred, committed = blank(), blank()
    pred[1:4, 1:4] = True
    committed[2:6, 2:6] = True
    only_pred, only_committed, both = mask_diff(pred, committed)
    assert only_pred.sum() == 5 and only_committed.sum() == 12 and both.sum() == 4
    np.testing.assert_array_equal(only_pred | only_committed | both, pred | committed)


def test_make_edit_crops_to_the_changed_box():
    before = blank()
    after = paint_stroke(before, [(10, 5), (12, 8)], size=1, value=True)
    edit = make_edit(before, after)
    assert (edit.y0, edit.x0, edit.y1, edit.x1) == (5, 10, 9, 13)
    assert edit.before.shape == edit.after.shape == (4, 3)
    assert make_edit(before, before.copy()) is None


def random_edits(n, shape=(32, 48), seed=1):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=bool)
    states, edits = [mask], []
    for _ in range(n):
        points = [tuple(rng.integers(0, 48, 2)) for _ in range(rng.integers(1, 4))]
        new = paint_stroke(mask, points, size=int(rng.integers(1, 6)), value=bool(rng.random() < 0.7))
        edit = make_edit(mask, new)
        if edit is None:
            continue
        edits.append(edit)
        states.append(new)
        mask = new
    return states, edits


def test_deep_undo_redo_is_exact():
    states, edits = random_edits(300)
    assert len(edits) >= 200
    history = EditHistory()
    mask = states[0]
    for edit, expected in zip(edits, states[1:]):
        mask = history.apply(mask, edit)
        np.testing.assert_array_equal(mask, expected)
    for expected in reversed(states[:-1]):
        mask = history.undo(mask)
        np.testing.assert_array_equal(mask, expected)
    assert not history.can_undo and history.can_redo
    for expected in states[1:]:
        mask = history.redo(mask)
        np.testing.assert_array_equal(mask, expected)
    assert not history.can_redo
    with pytest.raises(IndexError):
        history.redo(mask)


def test_new_edit_after_undo_drops_the_redo_stack():
    states, edits = random_edits(3)
    history = EditHistory()
    mask = history.apply(states[0], edits[0])
    mask = history.undo(mask)
    history.apply(mask, edits[0])
    assert not history.can_redo and len(history) == 1


def test_history_depth_bound_drops_the_oldest():
    states, edits = random_edits(20)
    history = EditHistory(max_depth=5)
    mask = states[0]
    for edit in edits:
        mask = history.apply(mask, edit)
    assert len(history) == 5
    for _ in range(5):
        mask = history.undo(mask)
    np.testing.assert_array_equal(mask, states[len(edits) - 5])


def test_history_npz_round_trip(tmp_path):
    states, edits = random_edits(30)
    history = EditHistory()
    mask = states[0]
    for edit in edits:
        mask = history.apply(mask, edit)
    for _ in range(7):
        mask = history.undo(mask)
    history.to_npz(tmp_path / "h.npz")
    loaded = EditHistory.from_npz(tmp_path / "h.npz")
    assert len(loaded) == len(history) and loaded.can_redo
    a = b = mask
    while history.can_undo:
        a, b = history.undo(a), loaded.undo(b)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, states[0])
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError):
        EditHistory.from_npz(tmp_path / "bad.npz")


def test_history_keeps_each_edits_status_before_and_reads_a_history_without_them(tmp_path):
    """And whether the frame had a committed mask before each edit (a history without those flags: it had)."""
    states, edits = random_edits(12)
    assert len(edits) >= 3  # some random strokes change nothing
    history = EditHistory()
    mask = history.apply(states[0], edits[0].with_status_before("negative").with_committed_before(False))
    mask = history.apply(mask, edits[1])
    mask = history.apply(mask, edits[2].with_status_before("unreviewed"))
    history.undo(mask)
    history.to_npz(tmp_path / "h.npz")
    loaded = EditHistory.from_npz(tmp_path / "h.npz")
    assert loaded.next_redo().status_before == "unreviewed"
    assert loaded.next_undo().status_before is None
    assert loaded.next_redo().committed_before and loaded.next_undo().committed_before
    loaded.undo(mask)
    assert loaded.next_undo().status_before == "negative" and loaded.next_undo().committed_before is False

    # a history written before statuses were kept: every edit left the status alone
    with np.load(tmp_path / "h.npz") as data:
        older = {k: data[k] for k in data.files if not k.endswith(("_status", "_committed"))}
    np.savez_compressed(tmp_path / "old.npz", **older)
    old = EditHistory.from_npz(tmp_path / "old.npz")
    assert len(old) == 2 and old.next_undo().status_before is None and old.next_redo().status_before is None
    old.undo(mask)
    assert old.next_undo().committed_before is True
