"""Local-contrast refinement: the network finds a target, the frame's intensities draw its outline.

IRSAM's masks come from a decoder grid at 1/4 of the input resolution (plus a light full-resolution
head), so the outline of a target a few pixels wide is blurred: on NUAA-SIRST validation, 87 % of the
wrong pixels of the weights shipped in session 5 lie on the border of a correctly found target (a halo or a bite), not
in missed targets or false alarms. The datasets' annotators outline the bright blob itself: on the
NUAA-SIRST train split, thresholding each target's neighbourhood at `background + a * (peak -
background)` inside its mask grown by one pixel reproduces the ground truth with IoU 0.77 for a =
0.25-0.3, and no model is involved. The fraction 0.25 was then chosen on the validation split with
those weights and is still the best with the current ones (docs/model_card.md).

`LocalContrastRefinement` applies that rule to each predicted component: it trims the pixels at or
below the fraction and always keeps a component's brightest one, so a target the network found is not
lost (a trimmed component can split in two, which the metrics then see). Removed pixels keep their
confidence with the sign turned negative, so `logits > 0` stays the decision.

The network also misses part of the targets it finds: on the train split, three quarters of the
wrong pixels of the trimmed masks of the session 6 weights are target pixels left out. So a
confident component (peak logit >= `grow_min_logit`) then grows by `grow_steps` pixels into
neighbours brighter than `grow_fraction` of its contrast; a stricter fraction than the trim's, since
at 0.25 the growth also takes in the halo the annotators leave out. Only confident components grow:
most false alarms are not confident, and growing them adds false-alarm pixels (the confident ones
still grow: on test the growth raised Fa by 5e-6). Grown pixels take the smallest positive logit of
their component, so they never raise its confidence. The growth was chosen on the train split (its
predictions are no better than validation's: the network underfits) and confirmed on validation
(`benchmarks/refine_sweep.py`, docs/model_card.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

_CROSS = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class LocalContrastRefinement:
    """fraction: of the component's contrast (peak minus local background) a pixel must exceed to stay.
    margin: px around the component's box where the background is measured.
    ring: px around every predicted pixel left out of the background (the blurred halo).
    max_components: the largest this many components of a frame are refined, the rest kept as they
    are, which bounds the time on a frame of noise (about 0.15 ms a component on the project's CPU).
    grow_steps: px a confident component grows into bright neighbours (0: trim only).
    grow_fraction: of the contrast a neighbour must exceed to be grown into.
    grow_min_logit: the peak logit from which a component counts as confident (logits are already
    shifted by the checkpoint's decision threshold).
    """

    fraction: float = 0.25
    margin: int = 8
    ring: int = 2
    max_components: int = 256
    grow_steps: int = 1
    grow_fraction: float = 0.4
    grow_min_logit: float = 10.0

    def __post_init__(self):
        for name in ("fraction", "grow_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.margin < 1 or self.ring < 0 or self.max_components < 1 or self.grow_steps < 0:
            raise ValueError(f"margin and max_components must be >= 1, ring and grow_steps >= 0, got {self.margin}, "
                             f"{self.max_components}, {self.ring}, {self.grow_steps}")

    def to_dict(self) -> dict:
        """The parameters, as results record them (a mode name alone has meant different ones over time)."""
        return {"method": "local_contrast", **asdict(self)}

    def __call__(self, frame: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """frame (H, W) any real dtype, logits (H, W) float -> refined logits (H, W), a new array."""
        if frame.shape != logits.shape:
            raise ValueError(f"frame {frame.shape} and logits {logits.shape} differ in size")
        positive = logits > 0
        out = logits.astype(np.float32, copy=True)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(positive.astype(np.uint8), connectivity=8)
        height, width = positive.shape
        areas = stats[:, cv2.CC_STAT_AREA].copy()
        areas[0] = 0  # the background
        # a one-pixel component is its own peak: nothing to trim (and a frame of noise has thousands)
        candidates = areas > 1
        if self.grow_steps:
            peak_logits = np.full(count, -np.inf, np.float32)
            np.maximum.at(peak_logits, labels[positive], out[positive])
            candidates |= peak_logits >= self.grow_min_logit
            candidates[0] = False
        chosen = np.flatnonzero(candidates)
        if len(chosen) > self.max_components:
            chosen = chosen[np.argsort(-areas[chosen], kind="stable")[: self.max_components]]
        pad = self.margin + self.grow_steps
        for label in chosen:
            x, y, w, h = stats[label, :4]
            x0, y0 = max(0, x - pad), max(0, y - pad)
            x1, y1 = min(width, x + w + pad), min(height, y + h + pad)
            component = labels[y0:y1, x0:x1] == label
            window = frame[y0:y1, x0:x1].astype(np.float32)
            near = cv2.dilate(positive[y0:y1, x0:x1].astype(np.uint8), _CROSS, iterations=self.ring) > 0
            background_pixels = window[~near]
            if background_pixels.size < 8:
                continue  # the component fills its neighbourhood: no background to compare with
            background = float(np.median(background_pixels))
            peak = float(window[component].max())
            if peak - background < 1.0:
                continue  # not brighter than its surroundings (a cold or flat target): leave it alone
            block = out[y0:y1, x0:x1]
            dim = component & (window <= background + self.fraction * (peak - background))
            block[dim] = -block[dim]
            core = component & ~dim
            if self.grow_steps and block[core].max() >= self.grow_min_logit:
                self._grow(block, core, window > background + self.grow_fraction * (peak - background))
        return out

    def _grow(self, block: np.ndarray, core: np.ndarray, bright: np.ndarray) -> None:
        """Geodesic dilation of `core` inside `bright | core`, `grow_steps` times, into pixels no component holds."""
        grown, allowed = core, bright | core
        for _ in range(self.grow_steps):
            grown = (cv2.dilate(grown.astype(np.uint8), _CROSS) > 0) & allowed
        added = grown & ~core & (block <= 0)
        block[added] = block[core].min()


def refinement_record(mode: str) -> dict | None:
    """What a mode's refinement does, for the JSON and projects that name the mode."""
    refinement = make_refinement(mode)
    return None if refinement is None else refinement.to_dict()


def make_refinement(mode: str) -> LocalContrastRefinement | None:
    """The refinement of a REFINE_MODES name: "contrast" (trim and grow), "trim" (trim only) or "off"."""
    if mode == "off":
        return None
    if mode == "trim":
        return LocalContrastRefinement(grow_steps=0)
    if mode == "contrast":
        return LocalContrastRefinement()
    raise ValueError(f"unknown refinement mode {mode!r}")
