"""Work done once: a float frame's no-data mask is found once per frame (with its 8-bit image) by `irsam detect`, the
app's detection worker and `irsam eval`; a network that runs at 512x512 resizes each frame once, and scoring at 512
refines only the logits it scores; `json_values` lives with the JSON writers (model.atomic)."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F

import app.core.normalization as normalization_module
from app import cli
from app.commands.eval import SetFrames
from app.core.frames import open_source
from app.core.normalization import Normalization, NormalizationRequest, no_data_pixels
from app.widgets.workers import DetectionWorker, DetectorChoice
from model.build import build_irsam
from model.classical import make_classical_detector
from model.config import tiny
from model.evaluate import evaluate_dataset, evaluate_variants
from model.predictor import Predictor
from model.refine import LocalContrastRefinement
from tests.test_official_resize512 import write_frames_of_other_sizes

N_FRAMES = 5
SHAPE = (48, 64)
NO_DATA_BLOCK = np.s_[30:40, 5:20]


@pytest.fixture(scope="module")
def float_stack(tmp_path_factory):
    """A float32 stack (temperatures, a no-data block and a warm target in every frame, and a no-data pixel of each
    frame's own) with its masks, named as `irsam eval` pairs a stack's pages with masks (stack_000001.png, ...)."""
    root = tmp_path_factory.mktemp("float_stack")
    rng = np.random.default_rng(0)
    frames = (290.0 + rng.normal(0, 0.05, (N_FRAMES, *SHAPE))).astype(np.float32)
    frames[:, 10:13, 40:43] += 3.0
    frames[:, NO_DATA_BLOCK[0], NO_DATA_BLOCK[1]] = np.nan
    for k in range(N_FRAMES):
        frames[k, 0, k] = np.nan  # and one pixel of its own
    tifffile.imwrite(root / "stack.tif", frames, photometric="minisblack")
    (root / "masks").mkdir()
    mask = np.zeros(SHAPE, np.uint8)
    mask[10:13, 40:43] = 255
    for k in range(N_FRAMES):
        cv2.imwrite(str(root / "masks" / f"stack_{k + 1:06d}.png"), mask)
    return root


@pytest.fixture
def no_data_calls(monkeypatch):
    """Counts the calls of `no_data_pixels`, wherever a module took it from app.core.normalization."""
    calls = []

    def counted(frame):
        calls.append(frame.shape)
        return no_data_pixels(frame)

    monkeypatch.setattr(normalization_module, "no_data_pixels", counted)
    for module in ("app.commands.detect", "app.commands.eval", "app.widgets.workers"):
        monkeypatch.setattr(f"{module}.no_data_pixels", counted, raising=False)
    return calls


def test_apply_with_no_data_gives_the_image_and_the_no_data_of_the_frame_as_read():
    frame = np.full(SHAPE, 290.0, np.float32)
    frame[NO_DATA_BLOCK] = np.nan
    frame[5, 5] = np.nan  # a bad pixel with data around it: repaired to data for the image, still no data as read
    window = Normalization.fixed(280.0, 300.0)
    with_bad_pixel = Normalization.from_dict({**window.to_dict(), "bad_pixels": [[5, 5]]})
    for normalization in (window, with_bad_pixel):
        image, no_data = normalization.apply_with_no_data(frame)
        assert np.array_equal(image, normalization.apply(frame))
        assert np.array_equal(no_data, no_data_pixels(frame))
    assert with_bad_pixel.apply(frame)[5, 5] == 128  # the repaired value, 290, mid-window
    counts = np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(SHAPE)
    image, no_data = window.apply_with_no_data(counts)
    assert no_data is None and np.array_equal(image, window.apply(counts))


def test_irsam_detect_finds_each_frames_no_data_once(float_stack, tmp_path, no_data_calls):
    out = tmp_path / "project"
    assert cli.main(["detect", str(float_stack / "stack.tif"), "--out", str(out), "--method", "tophat"]) == 0
    assert no_data_calls == [SHAPE] * N_FRAMES
    proposals = [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in sorted(out.rglob("*.png"))]
    assert proposals and not any(np.any(p[NO_DATA_BLOCK]) for p in proposals if p.shape == SHAPE)


def test_the_apps_detection_worker_finds_each_frames_no_data_once(float_stack, qtbot, no_data_calls):
    results = {}
    with open_source(float_stack / "stack.tif") as source:
        normalization = NormalizationRequest().for_source(source)
        no_data_calls.clear()  # (the window is made from the frames' finite values, not their no-data masks)
        worker = DetectionWorker(source, normalization, list(range(N_FRAMES)), DetectorChoice("tophat"),
                                 make_classical_detector("tophat"), None)
        worker.frameDone.connect(lambda index, result: results.__setitem__(index, result))
        worker.run()
    assert sorted(results) == list(range(N_FRAMES))
    assert no_data_calls == [SHAPE] * N_FRAMES
    assert not any(result.mask[NO_DATA_BLOCK].any() for result in results.values())


def test_irsam_eval_finds_each_frames_no_data_once(float_stack, tmp_path, no_data_calls):
    out = tmp_path / "result.json"
    assert cli.main(["eval", "--method", "tophat", "--images", str(float_stack / "stack.tif"),
                     "--masks", str(float_stack / "masks"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["n_images"] == N_FRAMES
    assert no_data_calls == [SHAPE] * N_FRAMES


def test_eval_gives_a_frames_no_data_whatever_was_read_since(float_stack):
    """The no-data mask comes from the read of the same frame when it was the last read, else from the frame again
    (a mask read through the window, to tell a copy of the image, comes between)."""
    frames = SetFrames(float_stack / "stack.tif", NormalizationRequest())
    try:
        first, second = (float_stack / "stack.tif" / f"stack_{k:06d}" for k in (1, 2))
        frames.read(first)
        frames.read(second)
        expected_first, expected_second = (no_data_pixels(frames.source.frame(i)) for i in (0, 1))
        assert not np.array_equal(expected_first, expected_second)
        assert np.array_equal(frames.no_data(first), expected_first)
        assert np.array_equal(frames.no_data(second), expected_second)
    finally:
        frames.close()


# --- a network that runs at 512x512 (the official config's input handling) --------------------------------

THRESHOLD = 0.01  # the random network's logits lie within +-0.1: a few per cent of pixels above it


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    config = tiny().replace(encoder_input="upsample2x")
    return build_irsam(config), config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_frames_of_other_sizes(tmp_path_factory.mktemp("at512"))


def test_the_512_path_resizes_each_frame_once_and_refines_on_the_networks_input(network, monkeypatch):
    model, config = network
    predictor = Predictor(model, config, device="cpu", refine="contrast", metadata={"decision_threshold": THRESHOLD})
    frame = np.random.default_rng(1).integers(0, 255, (70, 90), dtype=np.uint8)
    inputs = []
    hook = model.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    resized_frames = []
    interpolate = F.interpolate

    def counted(x, *args, **kwargs):
        if tuple(x.shape[-2:]) == frame.shape:
            resized_frames.append(tuple(x.shape))
        return interpolate(x, *args, **kwargs)

    monkeypatch.setattr(F, "interpolate", counted)
    try:
        result = predictor.detect([frame], network_logits=True)[0]
    finally:
        hook.remove()
    assert resized_frames == [(1, 3, *frame.shape)]  # the network's input only; the frame it saw is taken from it
    assert np.array_equal(result.network_frame, inputs[0][0, 0].numpy())


class CountedRefinement:
    """A refinement that records the size of each logits map it refines."""

    def __init__(self, refinement):
        self.refinement, self.sizes = refinement, []

    def __call__(self, frame, logits):
        self.sizes.append(logits.shape)
        return self.refinement(frame, logits)


def test_scoring_at_512_refines_only_the_512_logits(network, dataset):
    model, config = network
    predictor = Predictor(model, config, device="cpu", refine="contrast", metadata={"decision_threshold": THRESHOLD})
    refinement = predictor.refinement = CountedRefinement(predictor.refinement)
    _, metrics = evaluate_dataset(predictor, dataset, resize_to=512, curves=True)
    assert refinement.sizes == [(512, 512)] * len(dataset)
    expected = predictor.detect([cv2.imread(str(s.image_path), cv2.IMREAD_GRAYSCALE) for s in dataset],
                                network_logits=True)
    for scored, result in zip(metrics.scores, expected):
        assert np.array_equal(scored, result.network_logits)

    # a variant's post-processing too; a convention at the frame's size beside it gets refined frame logits
    trim = CountedRefinement(LocalContrastRefinement(grow_steps=0))
    refinement.sizes.clear()
    evaluate_variants(predictor, dataset, {"trim": trim}, {"at_512": dict(resize_to=512)})
    assert trim.sizes == refinement.sizes == [(512, 512)] * len(dataset)
    refinement.sizes.clear()
    evaluate_variants(predictor, dataset, {"off": None}, {"native": {}, "at_512": dict(resize_to=512)})
    assert sorted(refinement.sizes) == sorted([(512, 512)] * len(dataset) + [(60, 80), (75, 97)])


def test_json_values_is_with_the_json_writers():
    from model.atomic import json_values

    value = {"pd": math.nan, "auc": [1.0, math.inf, -math.inf], "n": 3, "name": "x"}
    assert json_values(value) == {"pd": None, "auc": [1.0, None, None], "n": 3, "name": "x"}
