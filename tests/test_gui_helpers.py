"""The review app's Qt-free parts: readouts, per-frame scores, session/project location, drawing helpers."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.core.targets import extract_targets
from app.measure import frame_iou_pd, local_snr, target_snr
from app.core.project import project_dir_for
from app.session import ReviewSession
from app.widgets.detection_panel import describe_metadata, format_eta
from app.widgets.frame_view import mask_outline
from app.widgets.surface_view import SurfaceRegion, outline_segments, surface_arrays
from app.widgets.timeline import HAS_TARGET, NOT_RUN, strip_rgb
from app.widgets.wpmd_panel import reduce_channels, wpmd_levels
from model.detectors import FrameResult

REPO = Path(__file__).resolve().parents[1]


def test_local_snr_of_a_point_target():
    rng = np.random.default_rng(0)
    frame = rng.normal(1000, 10, (64, 64)).astype(np.uint16)
    frame[30, 40] = 1200
    peak, snr = local_snr(frame, 41, 31)  # cursor one pixel off: the peak is searched around it
    assert peak == 1200
    assert 15 < snr < 25  # (1200 - 1000) / 10
    mask = np.zeros(frame.shape, bool)
    mask[30, 40] = True
    (target,) = extract_targets(mask)
    assert target_snr(frame, target, mask) == pytest.approx(snr, rel=0.2)


def test_snr_on_a_flat_background_is_infinite_not_a_huge_number():
    frame = np.full((64, 64), 12345, np.uint16)
    frame[30:33, 30:33] = 15000
    assert local_snr(frame, 31, 31) == (15000, math.inf)
    assert local_snr(frame, 5, 5) == (12345, pytest.approx(math.nan, nan_ok=True))  # nothing stands out
    frame[30:33, 30:33] = 12000
    mask = np.zeros(frame.shape, bool)
    mask[30:33, 30:33] = True
    (target,) = extract_targets(mask)
    assert target_snr(frame, target, mask) == -math.inf  # darker than its background


def test_checkpoint_description_summarises_training_validation_and_threshold():
    from app.paths import DEFAULT_WEIGHTS
    from model.checkpoint import load_checkpoint

    meta = load_checkpoint(DEFAULT_WEIGHTS)[2]
    lines = describe_metadata(meta).splitlines()
    val = meta["metrics"]["val_at_threshold"]
    assert lines[0] == f"trained on nuaa-sirst (idx_427), epoch {meta['training']['epoch']} of {meta['training']['recipe']['epochs']}"
    assert f"IoU {100 * val['iou']:.1f}," in lines[1] and f"Fa {1e6 * val['fa']:.1f}e-6" in lines[1]
    assert lines[2] == f"decision threshold {meta['decision_threshold']:+.2f} (logit)"
    assert lines[3].startswith("saved 20") and len(lines) == 4  # no raw dicts, no build details
    # a foreign checkpoint's metadata: what cannot be summarised is shown short, not dropped
    foreign = describe_metadata({"metrics": {"acc": 0.9}, "note": "x" * 200}).splitlines()
    assert foreign == ["metrics: acc=0.9", "note: " + "x" * 80 + "..."]


def test_frame_iou_and_pd_follow_the_centroid_rule():
    truth = np.zeros((40, 40), bool)
    truth[5:8, 5:8] = True  # centroid (6, 6)
    truth[20, 30] = True
    prediction = np.zeros_like(truth)
    prediction[6:9, 5:8] = True  # centroid 1 px away: a hit
    iou, pd = frame_iou_pd(prediction, truth)
    assert pd == 0.5
    assert iou == pytest.approx(6 / 13)
    assert np.isnan(frame_iou_pd(np.zeros_like(truth), np.zeros_like(truth))[1])
    shifted = np.zeros_like(truth)
    shifted[5:8, 8:11] = True  # exactly 3 px: not a hit
    assert frame_iou_pd(shifted, truth[:, :] & (np.arange(40)[None, :] < 10))[1] == 0.0


def test_outline_keeps_one_pixel_targets_and_leaves_their_pixels_visible():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    ring = mask_outline(mask)
    assert ring.sum() == 8 and not ring[4, 4]
    outer = mask_outline(mask, gap=1)
    assert outer.sum() == 16 and not (outer & ring).any()


def test_outline_of_a_mask_on_the_frames_edge_is_drawn_along_that_edge():
    """Odd-input audit 25: a mask on a 1-pixel-high frame had no outline at all (its ring lay outside the frame),
    and a target on the border lost its outline on that side."""
    row = np.ones((1, 64), bool)
    assert mask_outline(row).all() and mask_outline(row, gap=1).all()
    mask = np.zeros((9, 9), bool)
    mask[0:2, 3:5] = True  # touching the top edge
    ring = mask_outline(mask)
    assert ring[0, 3] and ring[0, 4] and not ring[1, 3:5].any()  # the edge's own pixels; the rest stay visible
    assert ring[0, 2] and ring[2, 4] and ring.sum() == 2 + 8  # the ring elsewhere, unchanged
    inner = np.zeros((9, 9), bool)
    inner[4, 4] = True  # away from the edges: the ring alone, as before
    assert mask_outline(inner).sum() == 8


def test_strip_colours_come_from_arrays():
    pixels = strip_rgb(np.array([-1, 0, 3]), np.array([0, 1, 4], np.uint8))
    assert pixels.shape == (2, 3, 3)
    assert tuple(pixels[0, 0]) == NOT_RUN and tuple(pixels[0, 2]) == HAS_TARGET
    assert len({tuple(p) for p in pixels[1]}) == 3


def test_surface_gets_the_transposed_crop():
    frame = np.arange(100 * 80, dtype=np.uint16).reshape(80, 100)
    region = SurfaceRegion.around(2, 78, frame.shape, size=48)  # clipped into the frame
    assert (region.x0, region.y0, region.w, region.h) == (0, 32, 48, 48)
    crop = region.crop(frame)
    lut = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)
    x, y, z, colors = surface_arrays(crop, (float(crop.min()), float(crop.max())), lut)
    assert z.shape == (48, 48) and colors.shape == (48, 48, 4)
    # z[i, j] is at (x[i], y[j]): column i, and row 47 - j (rows flipped so the top row is far away)
    assert z[0, 47] == pytest.approx(0.0) and z[47, 0] == z.max()
    mask = np.zeros((48, 48), bool)
    mask[10:13, 20:23] = True
    segments = outline_segments(mask, z)
    assert len(segments) % 2 == 0 and segments[:, 0].min() >= 20 and segments[:, 1].max() <= 47 - 10
    # a float frame's no-data (NaN) pixels: at the floor, not a NaN index into the palette
    temperatures = crop.astype(np.float32) / 100
    temperatures[5, 5] = np.nan
    _, _, z, colors = surface_arrays(temperatures, (float(np.nanmin(temperatures)), 80.0), lut)
    assert np.isfinite(z).all() and np.isfinite(colors).all() and z[5, 47 - 5] == 0.0
    _, _, z, colors = surface_arrays(np.full((4, 4), np.nan, np.float32), (20.0, 30.0), lut)
    assert np.isfinite(z).all() and (z == 0).all()


def test_feature_reductions_and_levels():
    feature = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert reduce_channels(feature, "mean").shape == (3, 4)
    assert reduce_channels(feature, "max")[0, 0] == 12
    assert reduce_channels(feature, "channel", 9)[0, 0] == 12  # clamped to the last channel
    assert wpmd_levels({"wpmd0.edge": 0, "wpmd2.diffused": 0, "gad.deep": 0}) == [0, 2]
    assert format_eta(75) == "1:15" and format_eta(float("inf")) == "--:--"


def test_project_beside_a_writable_source_else_in_user_data(tmp_path, monkeypatch):
    source = tmp_path / "clip"
    source.mkdir()
    assert project_dir_for(source) == tmp_path / "clip.irsam-review"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("os.access", lambda path, mode: False)
    fallback = project_dir_for(source)
    assert fallback.parent == tmp_path / "data" / "irsam-review" / "projects"
    assert fallback.name.startswith("clip-")


def test_session_results_survive_reopening(fresh_sequence):
    session = ReviewSession.open(fresh_sequence)
    assert session.project is None and session.ground_truth is not None
    assert session.frame(0).dtype == np.uint16
    project = session.ensure_project()
    logits = np.full(session.source.shape, -5, np.float32)
    logits[10:12, 10:12] = 5
    result = FrameResult(logits)
    project.save_prediction(session.stem(3), result, save_logits=True)
    project.flush_detections()
    assert len(session.record_result(3)) == 1
    layers = session.layers(3, {"prediction", "probability", "truth"})
    assert layers.probability is not None and layers.truth_mask is not None
    assert layers.probability[10, 10] == 253 and layers.probability[0, 0] == 2  # sigmoid(+-5) * 255
    committed = np.zeros(session.source.shape, bool)
    committed[0, 0] = True
    session.commit_mask(3, committed)
    session.close()

    reopened = ReviewSession.open(fresh_sequence)
    assert reopened.detection_counts[3] == 1 and (reopened.detection_counts[:3] == -1).all()
    layers = reopened.layers(3, {"prediction", "committed"})
    assert layers.prediction.sum() == 4 and layers.committed.sum() == 1
    assert len(layers.targets) == 1
    # the project folder opens the same session
    assert ReviewSession.open(reopened.project_dir).detection_counts[3] == 1
    reopened.close()


def test_entry_points_start_without_a_display():
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0 and "--demo" in result.stdout


def test_box_ground_truth_scores_by_centroid():
    from app.measure import frame_box_pd

    mask = np.zeros((50, 50), bool)
    mask[10:12, 10:12] = True  # inside the first box
    mask[40, 40] = True  # far from every box: a false alarm
    targets = extract_targets(mask)
    assert frame_box_pd(targets, [(5, 5, 16, 16), (30, 5, 6, 4)]) == (1, 1)  # (x0, y0, w, h), as boxes.csv


def test_box_scores_in_the_app_are_the_ones_irsam_eval_gives():
    from app.measure import frame_box_pd
    from model.metrics import score_boxes

    rng = np.random.default_rng(3)
    for _ in range(50):
        mask = rng.random((40, 40)) > 0.97
        boxes = [tuple(rng.uniform(0, 30, 2)) + tuple(rng.uniform(0.5, 8, 2)) for _ in range(rng.integers(0, 4))]
        expected = score_boxes(np.where(mask, 1.0, -1.0), boxes)  # fractional boxes: nothing rounded
        assert frame_box_pd(extract_targets(mask), boxes) == (expected.hits, expected.false_alarms)


def test_detector_choice_retries_on_the_cpu_when_cuda_fails(monkeypatch):
    from app.widgets import workers

    calls = []

    def fake_make_detector(method, weights, device, tta="none", refine="contrast"):
        calls.append((device, tta, refine))
        if device != "cpu":
            raise RuntimeError("CUDA error: no kernel image is available")
        return type("D", (), {"name": "irsam", "device": "cpu"})()

    monkeypatch.setattr(workers, "make_detector", fake_make_detector)
    detector, notice = workers.DetectorChoice("irsam", "w.pt", "cuda", "hflip", "off").build()
    assert calls == [("cuda", "hflip", "off"), ("cpu", "hflip", "off")] and detector.device == "cpu" and "CUDA failed" in notice


def test_the_detection_panel_offers_every_classical_method():
    from app.widgets.detection_panel import CLASSICAL
    from model.evaluate import available_methods

    assert sorted(method for _, method in CLASSICAL) == available_methods()
