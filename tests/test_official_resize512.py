"""`irsam eval --resize-512` with a network that runs at 512x512 (`official`) scores the network's own 512x512
logits, as the official IRSAM evaluation does, not those logits resized to the frame and then again to 512.
Native networks (`paper`) and every evaluation without --resize-512 score what they scored before."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from app import cli
from model.build import build_irsam
from model.checkpoint import save_checkpoint
from model.config import tiny
from model.data import find_dataset
from model.evaluate import NativeErrorMetrics, evaluate_dataset, evaluate_variants
from model.metrics import SegmentationMetrics, ground_truth_target, resize_ground_truth
from model.predictor import NetworkFrameResult, Predictor
from model.refine import LocalContrastRefinement
from model.size_gate import TargetSizeGate, gated

THRESHOLD = 0.01  # the random network's logits lie within +-0.1: this puts a few per cent of pixels above it
SHAPES = ((60, 80), (75, 97))


def resized_input_config():
    """The tiny network with the official config's input handling: every frame resized to 512x512."""
    return tiny().replace(encoder_input="upsample2x")


@pytest.fixture(scope="module")
def network():
    """(model, config) with random weights, and the list each forward pass appends its 512x512 mask logits to."""
    torch.manual_seed(0)
    config = resized_input_config()
    model = build_irsam(config)
    outputs: list[np.ndarray] = []
    model.register_forward_hook(lambda module, inputs, out: outputs.append(out.mask_logits.float().numpy().copy()))
    return model, config, outputs


def predictor(network, **options) -> Predictor:
    model, config, outputs = network
    outputs.clear()
    return Predictor(model, config, device="cpu", metadata={"decision_threshold": THRESHOLD}, **options)


def write_frames_of_other_sizes(root: Path) -> list:
    """Two frames of other sizes than 512 (SHAPES), each with a bright 4x4 target and its 0/255 mask, in
    root/images and root/masks; returns their samples."""
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate(SHAPES):
        image = rng.integers(0, 60, (h, w)).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        image[20:24, 30:34], mask[20:24, 30:34] = 250, 255
        cv2.imwrite(str(root / "images" / f"frame{k}.png"), image)
        cv2.imwrite(str(root / "masks" / f"frame{k}.png"), mask)
    return find_dataset(root / "images", root / "masks")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("resize512")
    return root, write_frames_of_other_sizes(root)


def read_pairs(samples):
    return [(cv2.imread(str(s.image_path), cv2.IMREAD_GRAYSCALE), cv2.imread(str(s.mask_path), cv2.IMREAD_GRAYSCALE))
            for s in samples]


def expected_metrics(predictions, pairs, **options) -> SegmentationMetrics:
    """SegmentationMetrics fed each prediction at 512x512 against the ground truth resized nearest to 512x512."""
    metrics = SegmentationMetrics(**options)
    for prediction, (_, mask) in zip(predictions, pairs):
        metrics.update(prediction, resize_ground_truth(ground_truth_target(mask), 512).astype(np.uint8) * 255)
    return metrics


def test_resize_512_scores_the_networks_own_512_logits_not_the_round_trip(network, dataset):
    _, samples = dataset
    official_like = predictor(network, refine="off")
    result, metrics = evaluate_dataset(official_like, samples, resize_to=512, curves=True)
    outputs = network[2]
    assert len(outputs) == len(samples)  # one forward pass a frame (two sizes: two batches), in sample order
    network_logits = [out[0, 0] - THRESHOLD for out in outputs]
    for scored, own in zip(metrics.scores, network_logits):
        np.testing.assert_array_equal(scored, own)
    pairs = read_pairs(samples)
    expected = expected_metrics(network_logits, pairs, resize_to=512).result()
    for key in ("iou", "niou", "pd", "fa", "false_alarm_pixels", "total_pixels"):
        assert result[key] == expected[key], key
    assert result["network_input_scoring"]["refinement"] is None and result["network_input_scoring"]["tta"] is None
    # what was scored before: the logits at the frame's size (the 512 ones resized back), resized again to 512
    round_trip = [cv2.resize(frame_logits, (512, 512), interpolation=cv2.INTER_LINEAR)
                  for frame_logits in (r.logits for r in official_like.detect([image for image, _ in pairs]))]
    assert sum(np.count_nonzero((a > 0) != (b > 0)) for a, b in zip(round_trip, network_logits)) > 0
    assert expected_metrics(round_trip, pairs, resize_to=512).result()["iou"] != result["iou"]


def test_frame_size_logits_are_the_512_logits_resized_back_as_before(network):
    official_like = predictor(network)
    frame = np.random.default_rng(1).integers(0, 255, (70, 90), dtype=np.uint8)
    plain = official_like.detect([frame])[0]
    rich = official_like.detect([frame], network_logits=True)[0]
    assert type(plain) is not NetworkFrameResult and isinstance(rich, NetworkFrameResult)
    own = torch.from_numpy(network[2][0])
    back = F.interpolate(own, size=frame.shape, mode="bilinear", align_corners=False)[0, 0].numpy() - THRESHOLD
    np.testing.assert_array_equal(plain.logits, back)
    np.testing.assert_array_equal(rich.logits, plain.logits)
    np.testing.assert_array_equal(rich.network_logits, network[2][1][0, 0] - THRESHOLD)


def test_refinement_runs_on_the_frame_as_the_network_saw_it(network, dataset):
    _, samples = dataset
    refined = predictor(network, refine="contrast")
    result, metrics = evaluate_dataset(refined, samples, resize_to=512, curves=True)
    for scored, own, (image, _) in zip(metrics.scores, network[2], read_pairs(samples)):
        seen = F.interpolate(torch.from_numpy(image).float()[None, None], size=(512, 512), mode="bilinear",
                             align_corners=False)[0, 0].numpy()
        np.testing.assert_array_equal(scored, LocalContrastRefinement()(seen, own[0, 0] - THRESHOLD))
    assert "512x512 as the network saw it" in result["network_input_scoring"]["refinement"]


def test_a_variants_post_processing_also_runs_at_512_and_native_conventions_stay_at_frame_size(network, dataset):
    _, samples = dataset
    official_like = predictor(network, refine="off")
    trim = LocalContrastRefinement(grow_steps=0)
    conventions = {"native": dict(fa_mode="corrected", keep_scores=True),
                   "at_512": dict(fa_mode="legacy", resize_to=512, keep_scores=True)}
    results = evaluate_variants(official_like, samples, {"off": None, "trim": trim}, conventions)
    pairs = read_pairs(samples)
    frame_logits = [r.logits for r in official_like.detect([image for image, _ in pairs])]
    network_logits = [out[0, 0] - THRESHOLD for out in network[2][: len(samples)]]
    frames_seen = [official_like.detect([image], network_logits=True)[0].network_frame for image, _ in pairs]
    for name, post in (("off", lambda frame, logits: logits), ("trim", trim)):
        native, at_512 = results[name]["native"][1], results[name]["at_512"][1]
        for k, (image, _) in enumerate(pairs):
            np.testing.assert_array_equal(native.scores[k], post(image, frame_logits[k]))
            np.testing.assert_array_equal(at_512.scores[k], post(frames_seen[k], network_logits[k]))
        assert "network_input_scoring" in results[name]["at_512"][0]
        assert "network_input_scoring" not in results[name]["native"][0]


def test_flip_tta_averages_every_pass_at_512(network):
    frame = np.random.default_rng(2).integers(0, 255, (64, 96), dtype=np.uint8)
    tta = predictor(network, tta="flips").detect([frame], network_logits=True)[0]
    passes = network[2]  # identity, then flipped across width, height, both
    expected = (passes[0] + np.flip(passes[1], 3) + np.flip(passes[2], 2) + np.flip(passes[3], (2, 3))) / 4
    np.testing.assert_allclose(tta.network_logits, expected[0, 0] - THRESHOLD, atol=1e-6)


def test_metrics_take_a_prediction_made_at_resize_to_and_resize_only_the_truth():
    truth = np.zeros((100, 50), np.uint8)
    truth[40:44, 20:23] = 255
    resized_truth = resize_ground_truth(truth > 0, 512)
    prediction = np.full((512, 512), -1.0, np.float32)
    prediction[resized_truth] = 1.0
    prediction[200:215, 200:210] = 1.0  # the target, grown
    prediction[10:14, 400:404] = 2.0  # a false alarm
    metrics = SegmentationMetrics("corrected", resize_to=512)
    metrics.update(prediction, truth)
    predicted = prediction > 0
    expected_iou = np.count_nonzero(predicted & resized_truth) / np.count_nonzero(predicted | resized_truth)
    result = metrics.result()
    assert result["iou"] == pytest.approx(expected_iou) and result["hits"] == 1
    assert result["false_alarm_pixels"] == 16 and result["total_pixels"] == 512 * 512
    with pytest.raises(ValueError, match="differ in size"):
        SegmentationMetrics().update(prediction, truth)  # at native resolution it must be the truth's size
    with pytest.raises(ValueError, match="differ in size"):
        SegmentationMetrics(resize_to=256).update(prediction, truth)


def test_errors_of_a_prediction_made_at_512_are_located_in_the_image_by_the_scale():
    truth = np.zeros((128, 256), np.uint8)
    truth[64:66, 128:130] = 255
    prediction = np.zeros((512, 512), bool)
    prediction[100:104, 40:48] = True  # a false alarm; the target is missed
    metrics = NativeErrorMetrics("corrected", resize_to=512, keep_errors=True)
    metrics.update(prediction, truth, "frame")
    (frame,) = metrics.errors()["frames"]
    (missed,) = frame["missed"]
    assert (missed["row"], missed["col"], missed["area"]) == (64.5, 128.5, 4)
    (false_alarm,) = frame["false_alarms"]
    # rows 100-103 of 512 come from image row 25 (scale 4), cols 40-47 from image cols 20-23 (scale 2); its
    # centroid (101.5, 43.5) is mapped back by the scale, pixel centres to pixel centres
    assert false_alarm == {"row": 25.0, "col": 21.5, "area": 4, "at_512": {"row": 101.5, "col": 43.5, "area": 32}}


def test_native_networks_size_gates_and_frame_size_scoring_score_as_before(network, dataset):
    """Everything but a network at 512 scored at 512 scores the logits at the frame's size, resized by the metrics
    where they are at 512: what --resize-512 and the default did before."""
    _, samples = dataset
    pairs = read_pairs(samples)
    torch.manual_seed(0)
    native = Predictor(build_irsam(tiny()), tiny(), device="cpu", metadata={"decision_threshold": THRESHOLD})
    official_like = predictor(network)
    gate = TargetSizeGate(min_area=2)
    cases = [(native, 512), (native, None), (official_like, None), (gated(official_like, gate), 512)]
    for detector, resize_to in cases:
        result, _ = evaluate_dataset(detector, samples, resize_to=resize_to, errors=True)
        expected = SegmentationMetrics(resize_to=resize_to)
        for (image, mask), frame in zip(pairs, detector.detect([image for image, _ in pairs])):
            expected.update(frame.logits, mask)
        for key, value in expected.result().items():
            assert result[key] == value, (detector, resize_to, key)
        if detector is native or resize_to is None:
            assert "network_input_scoring" not in result
        else:  # the gate works on the frame's own pixels: said, not hidden
            assert "resized back to the frame for the size gate" in result["network_input_scoring"]["prediction"]
    with pytest.raises(ValueError, match="runs at each frame's own size"):
        native.detect([pairs[0][0]], network_logits=True)


def test_eval_cli_says_what_it_scored_at_512(network, dataset, tmp_path, capsys):
    root, samples = dataset
    model, config, _ = network
    weights = tmp_path / "official_like.pt"
    save_checkpoint(weights, model, config, {"decision_threshold": THRESHOLD})
    out = tmp_path / "result.json"
    common = ["eval", "--weights", str(weights), "--images", str(root / "images"), "--masks", str(root / "masks"),
              "--device", "cpu", "--refine", "off"]
    assert cli.main([*common, "--resize-512", "--json", str(out)]) == 0
    assert "note: scored the network's own 512x512 logits" in capsys.readouterr().err
    result = json.loads(out.read_text())
    pairs = read_pairs(samples)
    predictor(network, refine="off").detect([image for image, _ in pairs])  # the same weights, in this process
    expected = expected_metrics([o[0, 0] - THRESHOLD for o in network[2]], pairs, resize_to=512).result()
    assert result["iou"] == pytest.approx(expected["iou"]) and result["fa"] == pytest.approx(expected["fa"])
    assert result["network_input_scoring"]["refinement"] is None
    assert cli.main([*common, "--json", str(out)]) == 0
    assert "note: scored" not in capsys.readouterr().err
    assert "network_input_scoring" not in json.loads(out.read_text())
