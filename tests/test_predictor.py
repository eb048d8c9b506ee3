"""Predictor: device choice, size handling, tiling, batching, precision, features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.build import build_irsam
from model.checkpoint import save_checkpoint
from model.config import official, tiny
from model.predictor import Predictor, choose_device, tile_spans


@pytest.fixture(scope="module")
def tiny_predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(build_irsam(tiny()), tiny(), device="cpu")


def test_choose_device_reports_the_cpu_and_explains_a_cuda_fallback():
    auto = choose_device("auto")
    assert auto.device.type in ("cpu", "cuda") and auto.description
    if not torch.cuda.is_available():
        asked = choose_device("cuda")
        assert asked.device.type == "cpu"
        assert "CUDA" in asked.fallback_reason
        assert auto.fallback_reason is None
    for unknown in ("tpu", "mps", "cuda:x", "cuda:"):
        with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
            choose_device(unknown)


def break_cuda_allocation(monkeypatch) -> None:
    """CUDA reports a GPU, but allocating on it fails (a broken driver)."""
    zeros = torch.zeros

    def failing_zeros(*size, device=None, **kwargs):
        if device is not None and torch.device(device).type == "cuda":
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device\n"
                               "CUDA kernel errors might be asynchronously reported at some other API call")
        return zeros(*size, device=device, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "zeros", failing_zeros)


def test_auto_reports_a_gpu_that_fails_but_not_a_machine_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == choose_device("cpu")
    assert choose_device("auto").fallback_reason is None
    assert choose_device("cuda:1").fallback_reason == "CUDA is not available in this PyTorch build or on this machine"

    break_cuda_allocation(monkeypatch)
    for requested in ("auto", "cuda", "cuda:0"):
        choice = choose_device(requested)
        assert choice.device == torch.device("cpu")
        assert choice.fallback_reason == "CUDA failed: CUDA error: no kernel image is available for execution on the device"


@pytest.mark.parametrize("length,tile,overlap", [(100, 64, 16), (64, 64, 16), (30, 64, 16), (1000, 256, 64), (257, 256, 64)])
def test_tile_spans_cover_every_pixel_exactly_once_inside_their_tile(length, tile, overlap):
    covered = np.zeros(length, int)
    for start, own0, own1 in tile_spans(length, tile, overlap):
        assert start <= own0 < own1 <= min(start + tile, length)
        covered[own0:own1] += 1
    assert (covered == 1).all()


def test_results_are_at_frame_resolution_for_odd_sizes_and_batched_per_size(tiny_predictor):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, s, dtype=np.uint8) for s in [(37, 53), (64, 64), (37, 53)]]
    results = tiny_predictor.detect(frames)
    assert [r.logits.shape for r in results] == [(37, 53), (64, 64), (37, 53)]
    assert all(r.logits.dtype == np.float32 and r.edge.shape == r.logits.shape for r in results)
    alone = tiny_predictor.detect([frames[2]])[0]
    np.testing.assert_allclose(alone.logits, results[2].logits, atol=1e-4)


def test_wrong_input_type_is_refused(tiny_predictor):
    with pytest.raises(ValueError, match="uint8"):
        tiny_predictor.detect([np.zeros((32, 32), np.uint16)])


def test_tiled_frames_match_untiled_away_from_tile_seams():
    torch.manual_seed(0)
    model = build_irsam(tiny())
    whole = Predictor(model, tiny(), device="cpu", tile_size=512)
    tiled = Predictor(model, tiny(), device="cpu", tile_size=96)
    frame = np.random.default_rng(1).integers(0, 255, (100, 200), dtype=np.uint8)
    a, b = whole.detect([frame])[0], tiled.detect([frame])[0]
    assert b.logits.shape == (100, 200) and np.isfinite(b.logits).all()
    # a tile's own result equals running that crop alone
    crop = whole.detect([np.ascontiguousarray(frame[:96, :96])])[0]
    spans_y, spans_x = tile_spans(100, 96, 64), tile_spans(200, 96, 64)
    (_, oy0, oy1), (_, ox0, ox1) = spans_y[0], spans_x[0]
    np.testing.assert_allclose(b.logits[oy0:oy1, ox0:ox1], crop.logits[oy0:oy1, ox0:ox1], atol=1e-4)
    assert not np.allclose(a.logits, b.logits)  # context differs: tiling is a real code path


def test_features_are_returned_on_request_only(tiny_predictor):
    frame = np.random.default_rng(2).integers(0, 255, (64, 64), dtype=np.uint8)
    plain = tiny_predictor.detect([frame])[0]
    assert plain.features == {}
    rich = tiny_predictor.detect([frame], features=True)[0]
    levels = tiny().wpmd_levels
    for level in levels:
        assert rich.features[f"wpmd{level}.diffused"].ndim == 3
        assert rich.features[f"wpmd{level}.edge"].shape == rich.features[f"wpmd{level}.diffused"].shape
    assert {"gad.shallow", "gad.deep", "gad.multi"} <= set(rich.features)
    np.testing.assert_allclose(plain.logits, rich.logits, atol=1e-5)


def test_bf16_agrees_with_fp32_except_near_zero_logits():
    torch.manual_seed(0)
    model = build_irsam(tiny())
    frame = np.random.default_rng(3).integers(0, 255, (64, 96), dtype=np.uint8)
    frame[30:33, 40:43] = 255
    fp32 = Predictor(model, tiny(), device="cpu").detect([frame])[0].logits
    bf16 = Predictor(model, tiny(), device="cpu", precision="bf16").detect([frame])[0].logits
    differ = (fp32 > 0) != (bf16 > 0)
    margin = 0.05 * np.abs(fp32).max()
    assert np.all(np.abs(fp32[differ]) < margin)


def test_official_config_runs_at_512_and_returns_frame_size(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "official.pt"
    save_checkpoint(path, build_irsam(official()), official(), {"note": "random"})
    predictor = Predictor.from_file(path, device="cpu")
    assert predictor.config.name == "official" and predictor.metadata["note"] == "random"
    result = predictor.detect([np.zeros((100, 140), np.uint8)])[0]
    assert result.logits.shape == (100, 140)


def test_stored_decision_threshold_shifts_logits(tiny_predictor):
    frame = np.random.default_rng(4).integers(0, 255, (32, 32), dtype=np.uint8)
    shifted = Predictor(tiny_predictor.model, tiny(), device="cpu", metadata={"decision_threshold": 1.5})
    np.testing.assert_allclose(shifted.detect([frame])[0].logits, tiny_predictor.detect([frame])[0].logits - 1.5, atol=1e-5)


def test_flip_tta_averages_the_flipped_passes_flipped_back(tiny_predictor):
    # An odd size also checks that the padding is cropped after un-flipping, not before.
    frame = np.random.default_rng(5).integers(0, 255, (37, 45), dtype=np.uint8)
    passes = {
        name: np.flip(tiny_predictor.detect([np.ascontiguousarray(np.flip(frame, axes))])[0].logits, axes)
        for name, axes in {"id": (), "h": (1,), "v": (0,), "hv": (0, 1)}.items()
    }
    hflip = Predictor(tiny_predictor.model, tiny(), device="cpu", tta="hflip").detect([frame])[0]
    flips = Predictor(tiny_predictor.model, tiny(), device="cpu", tta="flips").detect([frame])[0]
    np.testing.assert_allclose(hflip.logits, (passes["id"] + passes["h"]) / 2, atol=1e-4)
    np.testing.assert_allclose(flips.logits, sum(passes.values()) / 4, atol=1e-4)
    assert not np.allclose(hflip.logits, passes["id"], atol=1e-3)  # the extra pass changed something
    assert hflip.edge.shape == frame.shape
    with pytest.raises(ValueError, match="tta"):
        Predictor(tiny_predictor.model, tiny(), device="cpu", tta="rot90")


def test_scale_tta_averages_the_magnified_pass_brought_back_to_the_frame(tiny_predictor):
    import torch.nn.functional as F

    frame = np.random.default_rng(6).integers(0, 255, (37, 45), dtype=np.uint8)
    plain = tiny_predictor.detect([frame])[0].logits
    x = torch.from_numpy(frame).float()[None, None].expand(-1, 3, -1, -1)
    magnified = F.interpolate(x, size=(46, 56), mode="bilinear", align_corners=False)  # 1.25x, rounded
    logits = tiny_predictor._forward(magnified, False).mask
    back = F.interpolate(logits, size=(37, 45), mode="area")[0, 0].numpy()
    scaled = Predictor(tiny_predictor.model, tiny(), device="cpu", tta="scale").detect([frame])[0]
    np.testing.assert_allclose(scaled.logits, (plain + back) / 2, atol=1e-4)
    assert scaled.edge.shape == frame.shape and not np.allclose(scaled.logits, plain, atol=1e-3)
    both = Predictor(tiny_predictor.model, tiny(), device="cpu", tta="scale+flips").detect([frame])[0]
    assert both.logits.shape == frame.shape and np.isfinite(both.logits).all()
    assert not np.allclose(both.logits, scaled.logits, atol=1e-3)


def test_every_tta_mode_the_cli_offers_is_one_the_predictor_runs():
    from model.detectors import TTA_MODES
    from model.predictor import TTA_PASSES

    assert tuple(TTA_PASSES) == TTA_MODES
    assert all(1.0 in passes.scales for passes in TTA_PASSES.values())


def bright_target(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A flat dark frame with one bright square at rows box[0]:box[1], columns box[2]:box[3]."""
    frame = np.full(shape, 40, np.uint8)
    frame[box[0] : box[1], box[2] : box[3]] = 250
    return frame


def assert_peak_on_target(features: dict, name: str, box: tuple[int, int, int, int]) -> None:
    """The cell where the channel mean of map `name` peaks, placed by its rect, lies within a cell of the target."""
    response = features[name].mean(axis=0)
    x, y, width, height = features[f"{name}.rect"]
    cell_h, cell_w = height / response.shape[0], width / response.shape[1]
    row, col = np.unravel_index(np.argmax(response), response.shape)
    peak_y, peak_x = y + (row + 0.5) * cell_h, x + (col + 0.5) * cell_w
    assert box[0] - cell_h <= peak_y <= box[1] + cell_h and box[2] - cell_w <= peak_x <= box[3] + cell_w


@pytest.mark.parametrize("shape", [(240, 320), (250, 330)])
def test_native_feature_maps_are_cropped_to_the_frame_on_the_encoder_grid(tiny_predictor, shape):
    # 240 is not a multiple of 32: the network sees 256 rows, of which the maps keep the frame's
    box = (174, 178, 229, 233)
    features = tiny_predictor.detect([bright_target(shape, box)], features=True)[0].features
    h, w = shape
    for name in (k for k in features if not k.endswith(".rect")):
        x, y, width, height = features[f"{name}.rect"]
        cell = height / features[name].shape[1]
        assert width / features[name].shape[2] == cell and cell in (4, 8, 16)  # the encoder's strides
        assert (x, y) == (0, 0) and h <= height < h + cell and w <= width < w + cell
    assert_peak_on_target(features, "wpmd0.edge", box)


def test_resized_input_feature_maps_cover_the_whole_frame():
    torch.manual_seed(0)
    config = tiny().replace(encoder_input="upsample2x")
    predictor = Predictor(build_irsam(config), config, device="cpu")
    box = (174, 178, 229, 233)
    features = predictor.detect([bright_target((240, 320), box)], features=True)[0].features
    assert features["wpmd0.edge"].shape[1:] == (256, 256)  # the 512 input, upsampled 2x, at stride 4
    for name in (k for k in features if k.endswith(".rect")):
        np.testing.assert_array_equal(features[name], [0, 0, 320, 240])
    assert_peak_on_target(features, "wpmd0.edge", box)


def test_tiled_frames_place_the_centre_tiles_feature_maps_at_its_offset(tiny_predictor):
    tiled = Predictor(tiny_predictor.model, tiny(), device="cpu", tile_size=96)
    box = (48, 52, 98, 102)
    features = tiled.detect([bright_target((100, 200), box)], features=True)[0].features
    assert features["wpmd0.edge"].shape[1:] == (24, 24)
    for name in (k for k in features if k.endswith(".rect")):
        np.testing.assert_array_equal(features[name], [52, 2, 96, 96])  # the tile at (200 - 96) / 2, (100 - 96) / 2
    assert_peak_on_target(features, "wpmd0.edge", box)
