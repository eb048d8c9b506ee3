"""The detector interface shared by IRSAM and the classical methods.

A detector takes 8-bit gray frames (already through the project's `Normalization`) and returns one
`FrameResult` per frame at the frame's own resolution. `logits > 0` is the binary decision for every
detector, so metrics, target extraction and overlays never need to know which detector ran.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

# Test-time augmentation modes of IRSAM (model.predictor.TTA_PASSES says what each runs); here, without
# torch, so that the CLI's parsers can offer them.
TTA_MODES = ("none", "hflip", "flips", "scale", "scale+flips")
# IRSAM mask refinement (model.predictor.Predictor's `refine`, model.refine.make_refinement): "contrast"
# trims each predicted component to its bright core and grows a confident one into its bright rim;
# "trim" only trims. The CLI and the app default to "contrast".
REFINE_MODES = ("contrast", "trim", "off")


@dataclass
class FrameResult:
    logits: np.ndarray  # float32 (H, W); > 0 means target
    edge: np.ndarray | None = None  # float32 (H, W) in [0, 1], IRSAM's edge map
    # inspection maps, filled only when asked for (IRSAM): float32 (C, h, w) by name, WPMD's
    # "wpmd{level}.diffused" and "wpmd{level}.edge", GAD's "gad.shallow", "gad.deep" and "gad.multi"; each with
    # "<name>.rect": the frame area (x, y, width, height) in pixels that it covers (model.predictor.crop_to_frame)
    features: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return self.logits > 0

    @property
    def probability(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits, -60, 60)))


def logits_without_no_data(logits: np.ndarray, no_data: np.ndarray | None) -> np.ndarray:
    """`logits` with no target where the frame held no data (`no_data`, bool (H, W); None: none): the fill a
    detector saw there is no measurement, and a local-contrast method still finds "targets" in its smooth surface."""
    if no_data is None:
        return logits
    logits = logits.copy()
    logits[no_data] = min(float(logits.min()), -1e-6)  # below 0 (no target), and no more confident than the rest
    return logits


class Detector(Protocol):
    name: str  # e.g. "irsam", "tophat"
    device: str  # human-readable, e.g. "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"

    def detect(self, images: Sequence[np.ndarray], features: bool = False) -> list[FrameResult]:
        """images: 2-D uint8 arrays (any sizes). Returns one FrameResult per image."""
        ...
