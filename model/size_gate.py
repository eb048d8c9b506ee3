"""Target-size gate: detections outside the area range an analyst expects are dropped, for any detector.

Small-target work usually knows its targets' size (SPIE's definition of a small target: under 0.15 %
of the frame, 81 px at 256x256; the drones of the real clips here cover 70-210 px boxes). A detector
trained on NUAA-SIRST does not: on IR_DRONE_156 one of its two false alarms a frame is a 245 px cloud
top, which `--max-area 200` removes with every drone kept. On NUAA-SIRST itself the gate does nothing
for false alarms (they are small) and costs its large targets below 150 px (docs/model_card.md), so it
is off by default.

The gate runs after the detector, on its 8-connected components of `logits > 0`. A dropped
component keeps its confidence with the sign turned negative (as the local-contrast refinement does),
so `logits > 0` stays the decision and the heatmap still shows it as it was scored.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from model.detectors import Detector, FrameResult


@dataclass(frozen=True)
class TargetSizeGate:
    """Keep components of `min_area` to `max_area` pixels (inclusive; None: no upper limit)."""

    min_area: int = 1
    max_area: int | None = None

    def __post_init__(self):
        if self.min_area < 1:
            raise ValueError(f"min_area must be at least 1 px, got {self.min_area}")
        if self.max_area is not None and self.max_area < self.min_area:
            raise ValueError(f"max_area ({self.max_area} px) is below min_area ({self.min_area} px)")

    @property
    def active(self) -> bool:
        return self.min_area > 1 or self.max_area is not None

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.min_area}-{self.max_area} px" if self.max_area is not None else f">= {self.min_area} px"

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        """logits (H, W) -> gated logits (H, W), a new float32 array."""
        out = np.array(logits, dtype=np.float32, copy=True)
        if not self.active:
            return out
        count, labels, stats, _ = cv2.connectedComponentsWithStats((out > 0).astype(np.uint8), connectivity=8)
        areas = stats[:, cv2.CC_STAT_AREA]
        dropped = (areas < self.min_area) | (areas > (self.max_area if self.max_area is not None else np.inf))
        dropped[0] = False  # the background
        if dropped.any():
            out[dropped[labels]] *= -1
        return out


class SizeGatedDetector:
    """Any detector with a size gate on its results; everything else (name, device, metadata) is the inner one's."""

    def __init__(self, inner: Detector, gate: TargetSizeGate):
        self.inner, self.gate = inner, gate

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def detect(self, images: Sequence[np.ndarray], features: bool = False) -> list[FrameResult]:
        return [replace(r, logits=self.gate(r.logits)) for r in self.inner.detect(images, features=features)]


def gated(detector: Detector, gate: TargetSizeGate | None) -> Detector:
    """`detector` behind `gate`, or as it is when there is no gate or it keeps every size."""
    return detector if gate is None or not gate.active else SizeGatedDetector(detector, gate)


def ungated(detector: Detector) -> Detector:
    """The detector behind a size gate, or `detector` itself when it has none."""
    return detector.inner if isinstance(detector, SizeGatedDetector) else detector
