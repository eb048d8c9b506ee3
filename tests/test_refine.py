"""Local-contrast refinement: trims each predicted component to its bright core and grows a confident one
into its bright rim, nothing else."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from model.build import build_irsam
from model.config import tiny
from model.metrics import SegmentationMetrics
from model.predictor import Predictor
from model.refine import LocalContrastRefinement, make_refinement, refinement_record


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


def test_the_trim_never_adds_pixels_nor_drops_a_component():
    rng = np.random.default_rng(1)
    for seed in range(20):
        frame = rng.integers(0, 255, (48, 56)).astype(np.uint8)
        logits = rng.normal(-1.0, 2.0, frame.shape).astype(np.float32)
        logits[rng.random(frame.shape) < 0.02] = 15.0  # confident pixels: the trim alone still adds none
        refined = make_refinement("trim")(frame, logits)
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


def rim_frame(shape=(40, 40), centre=(20, 20)):
    """A target with a bright core (radius 2, 200), a rim one pixel wide (120) and a faint halo (70) on 40."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    distance = np.hypot(yy - centre[0], xx - centre[1])
    frame = np.select([distance <= 2, distance <= 3, distance <= 4.5], [200, 120, 70], 40)
    return frame.astype(np.uint8), distance


def test_a_confident_component_grows_one_pixel_into_its_bright_rim_only():
    frame, distance = rim_frame()
    logits = np.where(distance <= 2, 30.0, -8.0).astype(np.float32)  # the network found the core only
    logits[20, 20] = 40.0
    refined = LocalContrastRefinement(grow_fraction=0.4)(frame, logits)
    # the rim clears 0.4 of the contrast (40 + 0.4 * 160 = 104); the halo (70) does not
    np.testing.assert_array_equal(refined > 0, distance <= 3)
    rim = (distance > 2) & (distance <= 3)
    np.testing.assert_array_equal(refined[rim], 30.0)  # the component's smallest positive logit
    np.testing.assert_array_equal(refined[distance <= 2], logits[distance <= 2])
    # two steps still stop at the halo; a growth fraction below the halo's takes it in
    np.testing.assert_array_equal(LocalContrastRefinement(grow_steps=2)(frame, logits) > 0, distance <= 3)
    np.testing.assert_array_equal(LocalContrastRefinement(grow_steps=2, grow_fraction=0.15)(frame, logits) > 0,
                                  distance <= 4.5)
    np.testing.assert_array_equal(make_refinement("trim")(frame, logits), logits)


def test_a_component_below_the_confidence_does_not_grow_and_growth_takes_no_other_components_pixels():
    frame, distance = rim_frame()
    timid = np.where(distance <= 2, 6.0, -8.0).astype(np.float32)
    np.testing.assert_array_equal(LocalContrastRefinement(grow_min_logit=10.0)(frame, timid), timid)
    assert (LocalContrastRefinement(grow_min_logit=5.0)(frame, timid) > 0).sum() > (timid > 0).sum()
    # two steps reach a neighbouring component's pixel in the halo: it keeps its own logit
    neighbour = np.where(distance <= 2, 30.0, -8.0).astype(np.float32)
    neighbour[20, 16] = 2.0  # its own one-pixel component, not confident
    refined = LocalContrastRefinement(grow_steps=2, grow_fraction=0.15)(frame, neighbour)
    assert refined[20, 16] == 2.0 and refined[20, 17] == 30.0 and refined[16, 20] == 30.0


def test_growth_recovers_the_rim_an_under_segmenting_network_leaves_out():
    off, trimmed, grown = SegmentationMetrics(), SegmentationMetrics(), SegmentationMetrics()
    rng = np.random.default_rng(3)
    for seed in range(12):
        centre = tuple(int(v) for v in rng.integers(12, 52, 2))
        frame = blob_frame(centre=centre, sigma=rng.uniform(1.5, 2.5), noise=2.0, seed=seed)
        labels = cv2.connectedComponents((frame > 40 + 0.3 * (frame.max() - 40)).astype(np.uint8))[1]
        truth = labels == labels[centre]
        core = cv2.erode(truth.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # the network's mask: 1 px short
        logits = np.where(core | (np.arange(64)[:, None] == centre[0]) & (np.arange(64) == centre[1]), 20.0, -10.0)
        for metrics, refine in ((off, None), (trimmed, make_refinement("trim")), (grown, make_refinement("contrast"))):
            metrics.update(logits if refine is None else refine(frame, logits.astype(np.float32)), truth)
    assert grown.result()["iou"] > trimmed.result()["iou"] + 0.2
    assert grown.result()["pd"] == off.result()["pd"] == 1.0


def test_parameters_are_checked_and_round_trip_as_data():
    with pytest.raises(ValueError, match="fraction"):
        LocalContrastRefinement(fraction=1.0)
    with pytest.raises(ValueError, match="grow_fraction"):
        LocalContrastRefinement(grow_fraction=0.0)
    with pytest.raises(ValueError, match="margin"):
        LocalContrastRefinement(margin=0)
    with pytest.raises(ValueError, match="grow_steps"):
        LocalContrastRefinement(grow_steps=-1)
    with pytest.raises(ValueError, match="refinement mode"):
        make_refinement("crf")
    with pytest.raises(ValueError, match="differ"):
        LocalContrastRefinement()(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.float32))
    assert refinement_record("off") is None
    assert refinement_record("trim")["grow_steps"] == 0 and refinement_record("contrast")["grow_steps"] >= 1
    assert refinement_record("contrast")["fraction"] == LocalContrastRefinement().fraction


def test_predictor_refines_its_final_logits_only_when_asked():
    torch.manual_seed(0)
    model = build_irsam(tiny())
    frame = blob_frame((40, 48), (20, 24), sigma=2.0, noise=2.0)
    # an untrained model: a threshold at its 90th percentile gives it components to trim
    threshold = float(np.quantile(Predictor(model, tiny(), device="cpu").detect([frame])[0].logits, 0.9))
    metadata = {"decision_threshold": threshold}
    raw = Predictor(model, tiny(), device="cpu", metadata=metadata).detect([frame])[0].logits
    for mode in ("contrast", "trim"):
        refined = Predictor(model, tiny(), device="cpu", metadata=metadata, refine=mode).detect([frame])[0].logits
        np.testing.assert_array_equal(refined, make_refinement(mode)(frame, raw))
        assert (refined != raw).any()
    with pytest.raises(ValueError, match="refine"):
        Predictor(model, tiny(), device="cpu", refine="crf")


def test_every_refine_mode_the_cli_offers_is_one_the_predictor_accepts():
    from model.detectors import REFINE_MODES

    model = build_irsam(tiny())
    for mode in REFINE_MODES:
        assert Predictor(model, tiny(), device="cpu", refine=mode).refine == mode
