"""The target-size gate: which components it drops, how, and around which detectors."""
from __future__ import annotations

import numpy as np
import pytest

from model.detectors import FrameResult
from model.size_gate import SizeGatedDetector, TargetSizeGate, gated


def logits_with_blobs() -> np.ndarray:
    """Components of 1, 4 (diagonal: 8-connected), 9 and 25 px at distinct confidences on -3 background."""
    logits = np.full((40, 40), -3.0, np.float32)
    logits[2, 2] = 5.0
    for k in range(4):
        logits[10 + k, 10 + k] = 6.0  # a diagonal line: one component only with 8-connectivity
    logits[20:23, 5:8] = 7.0
    logits[30:35, 30:35] = 8.0
    return logits


def kept_areas(logits: np.ndarray) -> list[int]:
    import cv2

    _, _, stats, _ = cv2.connectedComponentsWithStats((logits > 0).astype(np.uint8), connectivity=8)
    return sorted(int(a) for a in stats[1:, cv2.CC_STAT_AREA])


@pytest.mark.parametrize("low, high, kept", [(1, None, [1, 4, 9, 25]), (4, None, [4, 9, 25]), (1, 9, [1, 4, 9]),
                                             (4, 9, [4, 9]), (5, 8, []), (2, 4, [4])])
def test_keeps_components_in_the_inclusive_range_with_8_connectivity(low, high, kept):
    logits = logits_with_blobs()
    out = TargetSizeGate(low, high)(logits)
    assert kept_areas(out) == kept
    # dropped pixels keep their confidence, sign turned; kept ones and the background are untouched
    np.testing.assert_array_equal(np.abs(out), np.abs(logits))
    assert np.array_equal(out > 0, (logits > 0) & (out == logits))
    assert out.dtype == np.float32 and out is not logits


def test_the_open_gate_is_a_copy_and_bad_ranges_are_refused():
    logits = logits_with_blobs()
    gate = TargetSizeGate()
    assert not gate.active and TargetSizeGate(1, 10**6).active
    out = gate(logits)
    assert np.array_equal(out, logits) and out is not logits
    with pytest.raises(ValueError, match="below min_area"):
        TargetSizeGate(10, 5)
    with pytest.raises(ValueError, match="at least 1"):
        TargetSizeGate(0)
    assert TargetSizeGate(3, 200).to_dict() == {"min_area": 3, "max_area": 200} and str(TargetSizeGate(3, 200)) == "3-200 px"


class BlobDetector:
    """A detector whose every frame scores as logits_with_blobs(), with an edge map and feature maps."""

    name, device, metadata = "blobs", "cpu", {"decision_threshold": 0.5}

    def __init__(self):
        self.calls = []

    def detect(self, images, features=False):
        self.calls.append((len(images), features))
        return [FrameResult(logits_with_blobs(), np.ones((40, 40), np.float32), {"f": np.zeros(3)} if features else {})
                for _ in images]


def test_gated_detector_filters_results_and_passes_everything_else_through():
    inner = BlobDetector()
    assert gated(inner, None) is inner and gated(inner, TargetSizeGate()) is inner
    detector = gated(inner, TargetSizeGate(2, 9))
    assert isinstance(detector, SizeGatedDetector)
    assert (detector.name, detector.device, detector.metadata) == ("blobs", "cpu", {"decision_threshold": 0.5})
    results = detector.detect([np.zeros((40, 40), np.uint8)] * 2, features=True)
    assert inner.calls == [(2, True)] and len(results) == 2
    assert kept_areas(results[0].logits) == [4, 9]
    assert results[0].edge is not None and "f" in results[0].features  # only the logits change
