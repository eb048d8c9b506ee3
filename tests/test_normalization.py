import dataclasses
import json

import cv2
import numpy as np
import pytest

from app.core.frames import open_source
from app.core.normalization import Normalization, NormalizationRequest, default_for
from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence
from tests.datasets import BANDED_HOT_PIXEL, banded_16bit_frames


def test_identity8_leaves_8bit_unchanged():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = Normalization.identity8().apply(values)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, values)


def test_fixed_window_linear_clipped_rounded_half_up():
    n = Normalization.fixed(1000, 1510)  # 2 counts per output level
    raw = np.array([[0, 999, 1000, 1001, 1002, 1003, 1255, 1510, 1511, 65535]], np.uint16)
    np.testing.assert_array_equal(n.apply(raw), [[0, 0, 0, 1, 1, 2, 128, 255, 255, 255]])
    floats = np.array([1000.0, 1001.0, 1510.0])
    np.testing.assert_array_equal(n.apply(floats), [0, 1, 255])


def test_invalid_windows_rejected():
    with pytest.raises(ValueError):
        Normalization.fixed(10, 10)
    with pytest.raises(ValueError):
        Normalization("stretch", 0, 1)
    with pytest.raises(ValueError):
        Normalization.from_percentiles([np.zeros((4, 4), np.uint16)], p_low=50, p_high=10)


def test_percentiles_match_numpy_and_fill_range():
    rng = np.random.default_rng(0)
    frames = [rng.normal(10000, 300, (64, 80)).astype(np.uint16) for _ in range(5)]
    n = Normalization.from_percentiles(frames, 1, 99)
    values = np.concatenate([f.ravel() for f in frames])
    assert n.low == np.percentile(values, 1, method="inverted_cdf")
    assert n.high == np.percentile(values, 99, method="inverted_cdf")
    assert n.mode == "percentile" and n.sample == 5
    full = Normalization.from_percentiles(frames, 0, 100)
    assert (full.low, full.high) == (values.min(), values.max())
    assert np.concatenate([full.apply(f).ravel() for f in frames]).min() == 0
    assert np.concatenate([full.apply(f).ravel() for f in frames]).max() == 255


def test_flat_sample_still_valid():
    n = Normalization.from_percentiles([np.full((8, 8), 500, np.uint16)])
    assert n.low == 500 and n.high == 501


def test_percentile_computed_once_per_sequence(tmp_path):
    seq = generate_sequence(SyntheticConfig(n_frames=40, height=48, width=64), seed=3)
    write_sequence(seq, tmp_path, layout="tiff")
    with open_source(tmp_path / "stack.tif") as src:
        n = default_for(src)
        assert n.mode == "percentile" and n.sample == 32
        assert 8000 - 1000 < n.low < n.high < 12000 + 3000
        window = dataclasses.replace(n, bad_pixels=())  # the window alone (this small sequence's hot pixels set its top)
        outs = [window.apply(src.frame(i)) for i in range(len(src))]
        # a stored window, not a per-frame stretch: a flat frame stays flat at its own level
        assert (n.apply(np.full((4, 4), int(n.high), np.uint16)) == 255).all()
        assert (n.apply(np.full((4, 4), int(n.low), np.uint16)) == 0).all()
        mid = int((n.low + n.high) / 2)
        assert (n.apply(np.full((4, 4), mid, np.uint16)) == 128).all() or \
            (n.apply(np.full((4, 4), mid, np.uint16)) == 127).all()
        all_out = np.stack(outs)
        assert all_out.min() == 0 and all_out.max() == 255


def test_default_for_8bit_is_identity():
    class Source:
        dtype = np.dtype(np.uint8)
    assert default_for(Source()) == Normalization.identity8()


def test_dict_round_trip_is_json_safe():
    for n in (Normalization.identity8(), Normalization.fixed(100, 4000.5),
              Normalization.from_percentiles([np.arange(1000, dtype=np.uint16).reshape(25, 40)], 0.5, 99.99)):
        d = json.loads(json.dumps(n.to_dict()))
        assert Normalization.from_dict(d) == n


def test_bad_pixels_are_the_stuck_ones_and_never_a_moving_target():
    from app.core.bad_pixels import find_bad_pixels

    for seed in (0, 1, 2, 3):
        seq = generate_sequence(SyntheticConfig(n_frames=40, height=64, width=80, n_targets=(2, 3)), seed=seed)
        found = set(find_bad_pixels(list(seq.frames)))
        assert found == set(seq.hot_pixels) | set(seq.dead_pixels), seed  # and no target pixel
    frames = list(seq.frames)
    assert find_bad_pixels(frames[:7]) == ()  # too few frames to tell a stuck pixel from a target
    assert find_bad_pixels(frames[:7] + [np.zeros((8, 8), np.uint16)] * 3) == ()  # mixed sizes


def test_a_static_scene_with_fine_structure_keeps_its_lone_stuck_pixels():
    """A static scene whose thin lines pass the 3x3-median test in every frame (over 1 % of the pixels) made the
    search give up, and a pixel stuck at 65535 was neither repaired nor shown."""
    from app.core.bad_pixels import find_bad_pixels

    rng = np.random.default_rng(0)
    scene = np.full((64, 80), 3000.0)
    scene[::6, :] += 800  # thin horizontal wires, 1 px high: 11 % of the pixels
    scene[25:30, 30] += 900  # a pole, 1 px wide, between two wires
    frames = []
    for _ in range(12):
        frame = np.clip(scene + rng.normal(0, 20, scene.shape), 0, 65535).astype(np.uint16)
        frame[33, 50] = 65535  # hot
        frame[9, 70] = 0  # dead, beside a wire
        frames.append(frame)
    assert set(find_bad_pixels(frames)) == {(50, 33), (70, 9)}
    for frame in frames:  # lone bright specks everywhere (over 1 % again): scene, nothing is taken
        frame[1::4, 1::4] = 65000
    assert find_bad_pixels(frames) == ()


def test_repair_takes_the_median_of_good_neighbours():
    from app.core.bad_pixels import BadPixelRepair

    frame = np.arange(36, dtype=np.uint16).reshape(6, 6) * 10
    frame[2, 2], frame[2, 3], frame[0, 0] = 60000, 60000, 0  # a 2-pixel cluster and a dead corner
    repaired = BadPixelRepair(((2, 2), (3, 2), (0, 0)))(frame)
    assert repaired[2, 2] == np.median([70, 80, 90, 130, 190, 200, 210])  # not its bad neighbour
    assert repaired[2, 3] == np.median([80, 90, 100, 160, 200, 210, 220])
    assert repaired[0, 0] == np.median([10, 60, 70])
    assert frame[2, 2] == 60000  # a copy: the raw frame is untouched
    float_frame = np.zeros((3, 3), np.float32)
    float_frame[0, 1], float_frame[1, 0], float_frame[1, 1] = 0.25, 0.5, 0.75
    assert BadPixelRepair(((0, 0),))(float_frame)[0, 0] == 0.5  # float frames are not rounded
    untouched = np.ones(frame.shape, bool)
    untouched[2, 2:4] = untouched[0, 0] = False
    assert (repaired[untouched] == frame[untouched]).all()


def test_raw_sequence_normalisation_repairs_its_hot_pixels(tmp_path):
    seq = generate_sequence(SyntheticConfig(n_frames=40, height=48, width=64), seed=3)
    write_sequence(seq, tmp_path, layout="tiff")
    with open_source(tmp_path / "stack.tif") as src:
        n = default_for(src)
    assert set(n.bad_pixels) == set(seq.hot_pixels) | set(seq.dead_pixels)
    plain = Normalization.from_percentiles(list(seq.frames))
    assert (n.low, n.high) == (plain.low, plain.high)  # the window as before
    assert "bad pixels repaired" in str(n)
    out = n.apply(seq.frames[0])
    for x, y in seq.hot_pixels:
        assert out[y, x] < 255  # a hot pixel no longer reaches the model as the brightest thing in view
    assert Normalization.from_dict(json.loads(json.dumps(n.to_dict()))) == n
    assert "bad_pixels" not in Normalization.identity8().to_dict()  # projects without any read as before


class FrameList(list):
    """Frames in memory with the `dtype` a source has."""

    def __init__(self, frames):
        super().__init__(frames)
        self.dtype = frames[0].dtype


def test_a_folder_of_several_frame_sizes_gets_no_bad_pixel_list(tmp_path):
    seq = generate_sequence(SyntheticConfig(n_frames=40, height=48, width=64), seed=3)
    folder = write_sequence(seq, tmp_path / "seq")
    with open_source(folder) as src:
        assert default_for(src).bad_pixels  # one size: its stuck pixels are found
    frames = sorted((folder / "images").glob("*.png"))
    cv2.imwrite(str(frames[2]), np.zeros((30, 40), np.uint16))  # one frame of another size, not among the sampled
    with open_source(folder) as src:
        assert src.mixed_sizes and default_for(src).bad_pixels == ()


@pytest.mark.parametrize("request_args, message", [
    (dict(window=(5.0, 5.0)), "a fixed window needs LO < HI, got 5 5"),
    (dict(window=(0.0, float("nan"))), "a fixed window needs LO < HI, got 0 nan"),
    (dict(percentiles=(-1.0, 5.0)), "percentiles need 0 <= LO < HI <= 100, got -1 5"),
    (dict(percentiles=(5.0, 100.5)), "percentiles need 0 <= LO < HI <= 100, got 5 100.5"),
    (dict(percentiles=(50.0, 10.0)), "percentiles need 0 <= LO < HI <= 100, got 50 10"),
    (dict(window=(0.0, 10.0), percentiles=(1.0, 99.0)), "give a fixed window or percentiles, not both"),
])
def test_impossible_requests_are_refused_with_one_line(request_args, message):
    with pytest.raises(ValueError) as error:
        NormalizationRequest(**request_args)
    assert str(error.value) == message


def test_a_fixed_window_on_8bit_frames_samples_nothing():
    class Source:  # no frames to read: the window alone
        dtype = np.dtype(np.uint8)
    assert NormalizationRequest(window=(10, 200)).for_source(Source()) == Normalization.fixed(10, 200)
    assert NormalizationRequest().for_source(Source()) == Normalization.identity8()


def test_percentiles_of_8bit_frames_search_no_bad_pixels():
    frames = [np.full((16, 16), 40 + i, np.uint8) for i in range(10)]
    for frame in frames:
        frame[3, 4] = 255  # stuck, but 8-bit sources are left as the camera corrected them
    n = NormalizationRequest(percentiles=(0, 100)).for_source(FrameList(frames))
    assert (n.mode, n.low, n.high, n.p_low, n.p_high, n.sample, n.bad_pixels) == ("percentile", 40, 255, 0, 100, 10, ())


def test_a_fixed_window_on_raw_frames_still_repairs_their_bad_pixels():
    frames = banded_16bit_frames()
    n = NormalizationRequest(window=(1000, 4000)).for_source(FrameList(frames))
    assert (n.mode, n.low, n.high, n.bad_pixels) == ("window", 1000, 4000, (BANDED_HOT_PIXEL,))
    x, y = BANDED_HOT_PIXEL
    assert frames[0][y, x] == 60000 and n.apply(frames[0])[y, x] == 0  # repaired to its band's 500, below the window
    default = NormalizationRequest().for_source(FrameList(frames))
    assert default == Normalization.for_raw_frames(frames)  # what default_for gave before requests existed


def test_a_stored_normalisation_meets_the_request_that_made_it():
    window = Normalization.fixed(1000, 4000)
    percentile = Normalization.from_percentiles(banded_16bit_frames(), 1, 99)
    repaired_window = dataclasses.replace(window, bad_pixels=(BANDED_HOT_PIXEL,))
    assert NormalizationRequest(window=(1000, 4000)).is_met_by(repaired_window)
    assert not NormalizationRequest(window=(1000, 4001)).is_met_by(window)
    assert not NormalizationRequest(window=(percentile.low, percentile.high)).is_met_by(percentile)
    assert NormalizationRequest(percentiles=(1, 99)).is_met_by(percentile)
    assert not NormalizationRequest(percentiles=(0.5, 99.99)).is_met_by(percentile)
    assert not NormalizationRequest(percentiles=(1, 99)).is_met_by(window)
    assert NormalizationRequest().is_met_by(window) and NormalizationRequest().is_met_by(percentile)


def test_bad_pixel_repair_can_be_turned_off():
    """In a static scene a one-pixel detail can pass for a stuck pixel: the analyst may keep every pixel."""
    frames = banded_16bit_frames()
    x, y = BANDED_HOT_PIXEL
    for request in (NormalizationRequest(repair_bad_pixels=False),
                    NormalizationRequest(window=(1000, 4000), repair_bad_pixels=False),
                    NormalizationRequest(percentiles=(1, 99), repair_bad_pixels=False)):
        n = request.for_source(FrameList(frames))
        assert n.bad_pixels == () and n.apply(frames[0])[y, x] == 255  # the hot pixel as recorded, saturated
        assert not request.is_default and str(request).endswith(", bad pixels not repaired")
        assert request.is_met_by(n)
        assert not request.is_met_by(dataclasses.replace(n, bad_pixels=(BANDED_HOT_PIXEL,)))
    repaired = NormalizationRequest().for_source(FrameList(frames))
    assert repaired.bad_pixels == (BANDED_HOT_PIXEL,) and NormalizationRequest().is_met_by(repaired)
    # an 8-bit sequence: no search either way, and the identity window as by default
    frames8 = [np.full((16, 16), 40 + i, np.uint8) for i in range(10)]
    assert NormalizationRequest(repair_bad_pixels=False).for_source(FrameList(frames8)) == Normalization.identity8()
