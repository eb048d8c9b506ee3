"""Local-contrast refinement: trims each predicted component to its bright core, nothing else."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from model.build import build_irsam
from model.config import tiny
from model.metrics import SegmentationMetrics
from model.predictor import Predictor
from model.refine import LocalContrastRefinement


def blob_frame(shape=(64, 64), centre=(30, 20), sigma=1.5, peak=200.0, background=40.0, noise=0.0, seed=0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    frame = background + (peak - background) * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))
    frame += np.random.default_rng(seed).normal(0, noise, shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def disc_logits(shape, centre, radius, value=3.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    return np.where(inside, value, -5.0).astype(np.float32)


def test_a_blurred_halo_is_trimmed_to_the_pixels_above_the_contrast_fraction():
    frame = blob_frame()
    logits = disc_logits(frame.shape, (30, 20), radius=5)  # the network's mask: wider than the blob
    refined = LocalContrastRefinement(fraction=0.25)(frame, logits)
    kept = refined > 0
    bright = frame > 40 + 0.25 * (200 - 40)
    np.testing.assert_array_equal(kept, (logits > 0) & bright)
    assert 3 < kept.sum() < (logits > 0).sum() / 2
    # removed pixels keep their magnitude with the sign turned; untouched pixels are unchanged
    removed = (logits > 0) & ~kept
    np.testing.assert_array_equal(refined[removed], -logits[removed])
    np.testing.assert_array_equal(refined[~removed], logits[~removed])


def test_never_adds_pixels_nor_drops_a_component():
    rng = np.random.default_rng(1)
    for seed in range(20):
        frame = rng.integers(0, 255, (48, 56)).astype(np.uint8)
        logits = rng.normal(-1.0, 2.0, frame.shape).astype(np.float32)
        refined = LocalContrastRefinement()(frame, logits)
        assert not ((refined > 0) & ~(logits > 0)).any()
        count, labels = cv2.connectedComponents((logits > 0).astype(np.uint8), connectivity=8)
        for label in range(1, count):
            assert (refined[labels == label] > 0).any(), f"seed {seed}: component {label} vanished"


def test_components_are_measured_against_their_own_neighbourhood():
    # A faint target far from a bright one: each keeps its own core (a global threshold would drop the faint one).
    frame = np.maximum(blob_frame(centre=(15, 15), peak=250), blob_frame(centre=(48, 48), peak=70))
    logits = np.maximum(disc_logits(frame.shape, (15, 15), 4), disc_logits(frame.shape, (48, 48), 4))
    refined = LocalContrastRefinement()(frame, logits) > 0
    assert refined[15, 15] and refined[48, 48]
    assert refined[40:, 40:].sum() == refined[:25, :25].sum()  # same shape, different contrast


def test_only_the_largest_components_are_trimmed_past_the_cap():
    frame = np.maximum(blob_frame(centre=(15, 15)), blob_frame(centre=(48, 48)))
    logits = np.maximum(disc_logits(frame.shape, (15, 15), 6), disc_logits(frame.shape, (48, 48), 4))
    refined = LocalContrastRefinement(max_components=1)(frame, logits)
    np.testing.assert_array_equal(refined[32:, 32:], logits[32:, 32:])  # the smaller one, past the cap
    assert (refined[:32, :32] > 0).sum() < (logits[:32, :32] > 0).sum()
    np.testing.assert_array_equal(LocalContrastRefinement(max_components=2)(frame, logits),
                                  LocalContrastRefinement()(frame, logits))


def test_a_cold_target_and_a_component_without_background_are_left_alone():
    cold = 255 - blob_frame()  # darker than its surroundings
    logits = disc_logits(cold.shape, (30, 20), radius=5)
    np.testing.assert_array_equal(LocalContrastRefinement()(cold, logits), logits)
    everywhere = np.full((20, 20), 2.0, np.float32)  # the whole frame predicted: nothing to compare with
    np.testing.assert_array_equal(LocalContrastRefinement()(blob_frame((20, 20), (10, 10)), everywhere), everywhere)


def test_refinement_raises_iou_on_noisy_synthetic_targets():
    metrics = {"off": SegmentationMetrics(), "on": SegmentationMetrics()}
    rng = np.random.default_rng(2)
    for seed in range(12):
        centre = tuple(int(v) for v in rng.integers(12, 52, 2))
        frame = blob_frame(centre=centre, sigma=rng.uniform(1.0, 2.5), noise=3.0, seed=seed)
        labels = cv2.connectedComponents((frame > 40 + 0.3 * (frame.max() - 40)).astype(np.uint8))[1]
        truth = labels == labels[centre]  # the annotator's outline: the bright blob around the target
        logits = disc_logits(frame.shape, centre, radius=int(rng.integers(4, 7)))
        metrics["off"].update(logits, truth)
        metrics["on"].update(LocalContrastRefinement()(frame, logits), truth)
    off, on = metrics["off"].result(), metrics["on"].result()
    assert on["iou"] > off["iou"] + 0.2 and on["pd"] == off["pd"] == 1.0


def test_parameters_are_checked_and_round_trip_as_data():
    with pytest.raises(ValueError, match="fraction"):
        LocalContrastRefinement(fraction=1.0)
    with pytest.raises(ValueError, match="margin"):
        LocalContrastRefinement(margin=0)
    with pytest.raises(ValueError, match="differ"):
        LocalContrastRefinement()(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.float32))
    refinement = LocalContrastRefinement(fraction=0.4, margin=6)
    assert LocalContrastRefinement.from_dict(refinement.to_dict()) == refinement
    with pytest.raises(ValueError, match="unknown refinement"):
        LocalContrastRefinement.from_dict({"method": "crf"})


def test_predictor_refines_its_final_logits_only_when_asked():
    torch.manual_seed(0)
    model = build_irsam(tiny())
    frame = blob_frame((40, 48), (20, 24), sigma=2.0, noise=2.0)
    # an untrained model: a threshold at its 90th percentile gives it components to trim
    threshold = float(np.quantile(Predictor(model, tiny(), device="cpu").detect([frame])[0].logits, 0.9))
    metadata = {"decision_threshold": threshold}
    raw = Predictor(model, tiny(), device="cpu", metadata=metadata).detect([frame])[0].logits
    refined = Predictor(model, tiny(), device="cpu", metadata=metadata, refine="contrast").detect([frame])[0].logits
    np.testing.assert_array_equal(refined, LocalContrastRefinement()(frame, raw))
    assert (refined != raw).any() and ((refined > 0) <= (raw > 0)).all()
    with pytest.raises(ValueError, match="refine"):
        Predictor(model, tiny(), device="cpu", refine="crf")


def test_every_refine_mode_the_cli_offers_is_one_the_predictor_accepts():
    from model.detectors import REFINE_MODES

    model = build_irsam(tiny())
    for mode in REFINE_MODES:
        assert Predictor(model, tiny(), device="cpu", refine=mode).refine == mode
