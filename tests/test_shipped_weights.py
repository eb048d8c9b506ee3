"""The weights in resources/ are the ones the model card describes, and they still detect."""
from __future__ import annotations

from pathlib import Path


from app.paths import DEFAULT_WEIGHTS
from model.data import find_dataset
from model.evaluate import evaluate_dataset
from model.predictor import Predictor

SIRST = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuaa-sirst"


def test_shipped_weights_carry_their_recipe_and_decision_threshold():
    predictor = Predictor.from_file(DEFAULT_WEIGHTS, device="cpu")
    assert predictor.config.name == "paper" and predictor.config.wpmd_levels
    training = predictor.metadata["training"]
    assert training["split_train"].endswith("idx_427/train.txt") and training["split_val"].endswith("idx_427/val.txt")
    assert predictor.decision_threshold == predictor.metadata["decision_threshold"] != 0.0
    assert predictor.metadata["metrics"]["val_at_threshold"]["iou"] > 0.7


def test_shipped_weights_find_sirst_targets():
    # 16 validation images at native size: a broken file, a lost threshold or a wrong normalisation
    # drops these far below what the model card reports (validation IoU 0.71, Pd 0.95).
    samples = find_dataset(SIRST / "images", SIRST / "masks", SIRST / "splits" / "idx_427" / "val.txt")[:16]
    result, _ = evaluate_dataset(Predictor.from_file(DEFAULT_WEIGHTS, device="cpu"), samples)
    assert result["iou"] > 0.65 and result["pd"] > 0.9 and result["fa"] < 100e-6  # measured: 0.73, 1.0, 0
