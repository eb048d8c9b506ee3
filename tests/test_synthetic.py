import json

import numpy as np
import pytest

from app.core.frames import find_ground_truth, open_source
from app.core.synthetic import (DEMO_CONFIG, SyntheticConfig, demo_sequence_dir, generate_sequence, iter_frames,
                                write_sequence)
from app.core.targets import extract_targets

SMALL = SyntheticConfig(n_frames=60, height=96, width=128, n_targets=(2, 3), empty_fraction=0.25, empty_run=5)


@pytest.fixture(scope="module")
def seq():
    return generate_sequence(SMALL, seed=11)


def test_deterministic_from_seed(seq):
    again = generate_sequence(SMALL, seed=11)
    np.testing.assert_array_equal(again.frames, seq.frames)
    np.testing.assert_array_equal(again.masks, seq.masks)
    assert again.targets == seq.targets
    other = generate_sequence(SMALL, seed=12)
    assert not np.array_equal(other.frames, seq.frames)


def test_iter_frames_streams_the_same_frames(seq):
    for f in iter_frames(SMALL, seed=11):
        np.testing.assert_array_equal(f.frame, seq.frames[f.index])
        np.testing.assert_array_equal(f.mask, seq.masks[f.index])
        assert f.targets == seq.targets[f.index]


def test_types_and_levels(seq):
    assert seq.frames.dtype == np.uint16 and seq.frames.shape == (60, 96, 128)
    assert seq.masks.dtype == bool and seq.masks.shape == seq.frames.shape
    assert 7000 < np.median(seq.frames) < 13000


def test_masks_match_drawn_targets(seq):
    checked = 0
    for t in range(len(seq.frames)):
        found = extract_targets(seq.masks[t])
        drawn = seq.targets[t]
        assert sum(tg.area for tg in drawn) >= seq.masks[t].sum()
        if len(found) != len(drawn):  # two blobs touching: centroids are not separable
            continue
        for tg in drawn:
            best = min(found, key=lambda c: (c.cx - tg.cx) ** 2 + (c.cy - tg.cy) ** 2)
            assert abs(best.cx - tg.cx) <= 0.5 and abs(best.cy - tg.cy) <= 0.5
            assert best.area == tg.area and 1 <= tg.area
            checked += 1
    assert checked > 60


def test_scr_in_range_and_visible(seq):
    lo, hi = SMALL.scr
    ratios = []
    for t in range(len(seq.frames)):
        frame = seq.frames[t].astype(float)
        for tg in seq.targets[t]:
            assert lo <= tg.scr <= hi
            x, y = int(round(tg.cx)), int(round(tg.cy))
            yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]]
            ring = (np.hypot(xx - tg.cx, yy - tg.cy) > 4 * tg.sigma_x + 2) & \
                   (np.hypot(xx - tg.cx, yy - tg.cy) < 4 * tg.sigma_x + 8) & ~seq.masks[t]
            background = np.median(frame[ring])
            ratios.append((frame[y, x] - background) / tg.amplitude)
    # the centre pixel is the peak minus sub-pixel offset, over a cluttered background
    assert 0.5 < np.median(ratios) < 1.3


def test_empty_frames_have_empty_masks(seq):
    empty = [t for t in range(len(seq.frames)) if not seq.targets[t]]
    assert 0 < len(empty) < len(seq.frames)
    for t in range(len(seq.frames)):
        assert seq.masks[t].any() == bool(seq.targets[t])


def test_hot_pixels_are_not_targets(seq):
    assert len(seq.hot_pixels) == SMALL.n_hot_pixels and len(seq.dead_pixels) == SMALL.n_dead_pixels
    for x, y in seq.hot_pixels:
        assert not seq.masks[:, y, x].any()
        assert (seq.frames[:, y, x] > np.percentile(seq.frames, 99.9)).all()
    for x, y in seq.dead_pixels:
        assert not seq.masks[:, y, x].any() and (seq.frames[:, y, x] == 0).all()


def test_targets_move_smoothly_some_subpixel(seq):
    steps = []
    for t in range(1, len(seq.frames)):
        before = {tg.id: tg for tg in seq.targets[t - 1]}
        for tg in seq.targets[t]:
            if tg.id in before:
                steps.append(np.hypot(tg.cx - before[tg.id].cx, tg.cy - before[tg.id].cy))
    assert steps and max(steps) < 2.5


@pytest.mark.parametrize("layout", ["folder", "tiff"])
def test_write_and_read_back(tmp_path, seq, layout):
    write_sequence(seq, tmp_path, layout=layout)
    path = tmp_path if layout == "folder" else tmp_path / "stack.tif"
    with open_source(path) as src:
        assert len(src) == 60 and src.dtype == np.uint16 and src.shape == (96, 128)
        gt = find_ground_truth(src)
        assert gt is not None and gt.has_masks
        for t in (0, 17, 59):
            np.testing.assert_array_equal(src.frame(t), seq.frames[t])
            np.testing.assert_array_equal(gt.mask(src.stems[t]), seq.masks[t])
    assert (tmp_path / "targets.csv").read_text().startswith("frame,stem,target_id,cx,cy,area")


def test_demo_made_with_other_settings_is_remade_and_its_review_project_kept(tmp_path):
    demo = demo_sequence_dir(tmp_path / "demo")
    stamp = json.loads((demo / "demo.json").read_text())
    stamp["config"]["scr"] = [6.0, 15.0]  # as an older version made it
    (demo / "demo.json").write_text(json.dumps(stamp))
    project = tmp_path / "demo.irsam-review"
    (project / "labels").mkdir(parents=True)
    (project / "labels" / "000001.png").write_bytes(b"an analyst's mask")

    assert demo_sequence_dir(tmp_path / "demo") == demo
    assert json.loads((demo / "demo.json").read_text())["config"]["scr"] == list(DEMO_CONFIG.scr)
    assert not project.exists()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("demo.irsam-review.old-")]
    assert len(kept) == 1 and (kept[0] / "labels" / "000001.png").read_bytes() == b"an analyst's mask"
    with open_source(demo) as src:
        assert len(src) == DEMO_CONFIG.n_frames


def test_demo_generated_once(tmp_path):
    demo = demo_sequence_dir(tmp_path / "demo")
    stamp = (demo / "demo.json").stat().st_mtime_ns
    assert demo_sequence_dir(tmp_path / "demo") == demo
    assert (demo / "demo.json").stat().st_mtime_ns == stamp
    with open_source(demo) as src:
        assert len(src) == DEMO_CONFIG.n_frames == 120 and src.shape == (256, 320) and src.dtype == np.uint16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo-")]
