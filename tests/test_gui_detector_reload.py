"""A checkpoint file rewritten under the same path (a fine-tune that wrote a better best.pt, a run trained again into
the same folder) is loaded again, and the proposals record the weights that made them (audit 12, finding 1)."""
from __future__ import annotations

import torch

from app.core.provenance import sha256_of
from model.build import build_irsam
from model.checkpoint import save_checkpoint
from model.config import tiny
from model.size_gate import SizeGatedDetector
from tests.gui_review_helpers import open_project


def _write_tiny(path, seed: int) -> float:
    config = tiny()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = build_irsam(config)
    save_checkpoint(path, network, config, {"note": f"seed {seed}"})
    return _parameter_sum(network)


def _parameter_sum(network) -> float:
    return float(sum(p.detach().double().sum() for p in network.parameters()))


def _loaded_sum(window) -> float:
    detector = window.detector
    network = detector.inner if isinstance(detector, SizeGatedDetector) else detector
    return _parameter_sum(network.model)


def _detect_frame(window, qtbot) -> None:
    window.run_detection("frame")
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=30000)


def test_a_checkpoint_rewritten_under_the_same_path_is_loaded_again(window, fresh_sequence, tmp_path, qtbot):
    weights = tmp_path / "run" / "best.pt"
    weights.parent.mkdir()
    first_sum = _write_tiny(weights, seed=0)
    first_sha = sha256_of(weights)
    open_project(window, qtbot, fresh_sequence)
    window.detection_panel.add_checkpoint(weights)
    qtbot.waitUntil(lambda: window.detector is not None, timeout=30000)
    _detect_frame(window, qtbot)
    stem = window.session.stem(0)
    assert window.session.project.proposal_origin(stem).sha256 == first_sha
    assert abs(_loaded_sum(window) - first_sum) < 1e-3

    # "Use new weights" after a second fine-tune run into the same folder picks the same path again
    second_sum = _write_tiny(weights, seed=1)
    second_sha = sha256_of(weights)
    assert second_sha != first_sha and abs(second_sum - first_sum) > 1e-3
    window.detection_panel.add_checkpoint(weights)
    qtbot.waitUntil(lambda: window.detector is not None and abs(_loaded_sum(window) - second_sum) < 1e-3,
                    timeout=30000)
    assert "seed 1" in window.detection_panel.info.text()  # the panel describes the checkpoint loaded now
    _detect_frame(window, qtbot)
    assert window.session.project.proposal_origin(stem).sha256 == second_sha

    # rewritten again with nothing picked: the next run loads it before detecting
    third_sum = _write_tiny(weights, seed=2)
    _detect_frame(window, qtbot)
    assert abs(_loaded_sum(window) - third_sum) < 1e-3
    assert window.session.project.proposal_origin(stem).sha256 == sha256_of(weights)


def test_the_recorded_hash_is_the_one_of_the_weights_loaded_not_of_the_file_now(tiny_checkpoint, tmp_path):
    from app.core.normalization import Normalization
    from app.widgets.workers import DetectorChoice

    weights = tmp_path / "best.pt"
    weights.write_bytes(tiny_checkpoint.read_bytes())
    choice = DetectorChoice("irsam", str(weights), device="cpu")
    detector, _ = choice.build()
    loaded_sha = sha256_of(weights)
    _write_tiny(weights, seed=5)  # rewritten after loading, before the run records its origin
    assert choice.weights_changed(detector)
    assert choice.origin(Normalization.identity8(), detector).sha256 == loaded_sha


def test_a_checkpoint_removed_after_loading_keeps_detecting_with_the_weights_loaded(window, fresh_sequence,
                                                                                    tiny_checkpoint, tmp_path, qtbot):
    weights = tmp_path / "best.pt"
    weights.write_bytes(tiny_checkpoint.read_bytes())
    open_project(window, qtbot, fresh_sequence)
    window.detection_panel.add_checkpoint(weights)
    qtbot.waitUntil(lambda: window.detector is not None, timeout=30000)
    loaded = window.detector
    weights.unlink()  # a fine-tune folder cleared, a drive gone: the network in memory is still whole
    _detect_frame(window, qtbot)
    assert window.detector is loaded and "failed" not in window.detection_panel.info.text()
    assert window.session.project.proposal_origin(window.session.stem(0)).method == "irsam"
