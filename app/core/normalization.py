"""Normalisation: the stored mapping from raw frame values to the model's 8-bit input.

out = clip(floor((v - low) * 255 / (high - low) + 0.5), 0, 255), i.e. linear, rounded half up,
`low` -> 0 and `high` -> 255. The window is fixed for a whole sequence: percentiles are computed
once from a sample of frames and stored as the resulting low/high, never per frame (a per-frame
stretch makes the same target flicker and lets one hot pixel change the model input).

A `NormalizationRequest` is what a user asks for (`irsam detect/eval/info --window` or `--percentiles`);
without one an 8-bit sequence goes to the model unchanged and a raw one gets percentiles 0.5..99.99.

A raw (non-8-bit) sequence's stuck pixels are found from the same sample (`app.core.bad_pixels`),
stored with the window (fixed or from percentiles) and repaired before it is applied, so hot pixels
are not detected as targets; unless the analyst turned the repair off, which the normalisation records.
The window itself is computed from the raw sample as before: leaving the bad pixels out of the
percentiles narrows it, and that cost the shipped IRSAM weights a third of the demo's targets.

A float frame's no-data pixels (NaN, and +-inf: no temperature a camera measures) are filled from the data
around them before the window is applied, so that a no-data area carries no edge to the detectors (as the
bottom of the window it looked like a cold object: Top-Hat saw targets along its edge, PSTNN lost every target).
A frame of no data at all is the bottom of the window.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import cv2
import numpy as np

from app.core.bad_pixels import BadPixelRepair, find_bad_pixels
from app.core.frames import FrameReadError
from model.data import EIGHT_BIT_AS_STORED
from model.detectors import FrameResult, logits_without_no_data

MODES = ("window", "percentile")
SAMPLE_FRAMES = 32  # frames, spread evenly over a sequence, that its window and bad pixels come from
DEFAULT_PERCENTILES = (0.5, 99.99)  # a raw sequence's window when none is asked for


@dataclass(frozen=True)
class Normalization:
    mode: str  # "window": low/high given; "percentile": low/high computed from p_low/p_high
    low: float
    high: float
    p_low: float | None = None
    p_high: float | None = None
    sample: int | None = None  # frames the percentiles were computed from
    bad_pixels: tuple[tuple[int, int], ...] = ()  # (x, y) repaired before the window is applied
    # False: a raw sequence's bad pixels were not searched, as asked (NormalizationRequest.repair_bad_pixels), which
    # `bad_pixels` alone cannot tell from a search that found none
    bad_pixel_repair: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"normalisation mode must be one of {MODES}, got {self.mode!r}")
        if not np.isfinite(self.low) or not np.isfinite(self.high) or self.high <= self.low:
            raise ValueError(f"normalisation window needs low < high, got {self.low}..{self.high}")

    @classmethod
    def identity8(cls) -> Normalization:
        """0..255 window: an 8-bit frame goes to the model unchanged."""
        return cls.from_dict(EIGHT_BIT_AS_STORED)

    @classmethod
    def fixed(cls, low: float, high: float) -> Normalization:
        return cls("window", float(low), float(high))

    @classmethod
    def from_percentiles(cls, source_or_frames, p_low: float = DEFAULT_PERCENTILES[0],
                         p_high: float = DEFAULT_PERCENTILES[1], sample: int = SAMPLE_FRAMES) -> Normalization:
        """Window from percentiles of up to `sample` frames spread evenly over a FrameSource (or a list/array of frames).

        A percentile p is the smallest value v with at least p% of the sampled pixels <= v.
        """
        _check_percentiles(p_low, p_high)
        frames = _sample_frames(source_or_frames, sample)
        if not frames:
            raise ValueError("no readable frame to compute percentiles from")
        low, high = _percentiles(frames, p_low, p_high)
        if high <= low:  # flat sample: keep a valid window around the single value
            high = low + 1.0
        return cls("percentile", low, high, float(p_low), float(p_high), len(frames))

    @classmethod
    def for_raw_frames(cls, frames: list[np.ndarray]) -> Normalization:
        """A raw sequence's normalisation from a sample of its frames: percentiles and bad pixels."""
        return replace(cls.from_percentiles(frames), bad_pixels=find_bad_pixels(frames))

    @cached_property
    def _repair(self) -> BadPixelRepair:
        return BadPixelRepair(self.bad_pixels)

    @cached_property
    def _lut16(self) -> np.ndarray:
        return self._map(np.arange(65536, dtype=np.float64))

    def _map(self, values: np.ndarray) -> np.ndarray:
        scaled = np.floor((values - self.low) * (255.0 / (self.high - self.low)) + 0.5)
        return np.clip(scaled, 0, 255).astype(np.uint8)

    def repair(self, frame: np.ndarray) -> np.ndarray:
        """The raw frame with this sequence's bad pixels repaired (the frame itself when it has none): what
        tools that measure raw values, such as Grow target, should see."""
        frame = np.asarray(frame)
        return self._repair(frame) if self.bad_pixels else frame

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The 8-bit image (uint8, same shape) of a raw frame."""
        repaired = self.repair(frame)
        return self._image(repaired, no_data_pixels(repaired))

    def apply_with_no_data(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The 8-bit image of a raw frame (`apply`) and where the frame holds no data (`no_data_pixels` of the frame
        as given, before its bad pixels are repaired), found once for both."""
        frame = np.asarray(frame)
        no_data = no_data_pixels(frame)
        repaired = self.repair(frame)
        # a repaired bad pixel takes its neighbours' median: where it was no data it may now be data, or the reverse
        no_data_repaired = no_data if repaired is frame else no_data_pixels(repaired)
        return self._image(repaired, no_data_repaired), no_data

    def _image(self, frame: np.ndarray, no_data: np.ndarray | None) -> np.ndarray:
        """The 8-bit image of a repaired frame whose no-data pixels are `no_data` (`no_data_pixels`)."""
        # take() is 2-3x faster than fancy indexing here
        if frame.dtype == np.uint16:
            return self._lut16.take(frame)
        if frame.dtype == np.uint8:
            return self._lut16[:256].take(frame)
        values = frame.astype(np.float64)
        if no_data is not None:
            if no_data.all():
                return np.zeros(values.shape, np.uint8)
            values = _fill_no_data(values, no_data)
        return self._map(values)

    def to_dict(self) -> dict:
        d = {"mode": self.mode, "low": float(self.low), "high": float(self.high)}
        if self.mode == "percentile":
            d.update(p_low=self.p_low, p_high=self.p_high, sample=self.sample)
        if self.bad_pixels:
            d["bad_pixels"] = [list(p) for p in self.bad_pixels]
        if not self.bad_pixel_repair:  # (only then: the records of repaired sequences stay as they were)
            d["bad_pixel_repair"] = False
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(str(d["mode"]), float(d["low"]), float(d["high"]),
                   None if d.get("p_low") is None else float(d["p_low"]),
                   None if d.get("p_high") is None else float(d["p_high"]),
                   None if d.get("sample") is None else int(d["sample"]),
                   tuple((int(x), int(y)) for x, y in d.get("bad_pixels", ())),
                   bool(d.get("bad_pixel_repair", True)))

    def __str__(self) -> str:
        window = f"{self.low:g}..{self.high:g}"
        if not self.bad_pixel_repair:
            repaired = ", bad pixels not repaired"
        else:
            repaired = f", {len(self.bad_pixels)} bad pixels repaired" if self.bad_pixels else ""
        if self.mode == "percentile":
            return f"percentile {self.p_low:g}..{self.p_high:g}% of {self.sample} frames -> window {window}{repaired}"
        return f"window {window}{repaired}"


@dataclass(frozen=True)
class NormalizationRequest:
    """The normalisation a user asks for: a fixed `window` (low, high) in raw units, `percentiles`
    (p_low, p_high) of the sequence's sampled frames, or neither (the default); and whether a raw sequence's
    bad pixels are repaired (`repair_bad_pixels`: in a static scene a one-pixel detail of the scene can pass
    for a stuck pixel, and the analyst may want every pixel as recorded). Raises ValueError for an impossible
    one."""

    window: tuple[float, float] | None = None
    percentiles: tuple[float, float] | None = None
    repair_bad_pixels: bool = True

    def __post_init__(self):
        if self.window is not None and self.percentiles is not None:
            raise ValueError("give a fixed window or percentiles, not both")
        if self.window is not None:
            low, high = self.window
            if not (np.isfinite(low) and np.isfinite(high) and low < high):
                raise ValueError(f"a fixed window needs LO < HI, got {low:g} {high:g}")
        if self.percentiles is not None:
            _check_percentiles(*self.percentiles)

    @property
    def is_default(self) -> bool:
        return self.window is None and self.percentiles is None and self.repair_bad_pixels

    def for_source(self, source) -> Normalization:
        """The normalisation of a FrameSource (or anything with `dtype`, `len` and frame indexing).

        Unasked, an 8-bit source gets the identity window and a raw one percentiles 0.5..99.99. A raw
        source's bad pixels are found in the sampled frames and repaired whatever the window, unless
        `repair_bad_pixels` is off (which the normalisation records); not in a folder of several frame sizes, which
        is no one sensor's sequence (a pixel stuck in the sampled frames of one size says nothing of the others).
        """
        raw = np.dtype(source.dtype) != np.uint8
        if self.window is None and self.percentiles is None and not raw:  # (8-bit: no bad pixels are searched)
            return Normalization.identity8()
        frames = _sample_frames(source, SAMPLE_FRAMES) if raw or self.window is None else []
        if self.window is not None:
            normalization = Normalization.fixed(*self.window)
        else:
            normalization = Normalization.from_percentiles(frames, *(self.percentiles or DEFAULT_PERCENTILES))
        if not raw:
            return normalization
        if not self.repair_bad_pixels:
            return replace(normalization, bad_pixel_repair=False)
        if getattr(source, "mixed_sizes", False):
            return normalization
        return replace(normalization, bad_pixels=find_bad_pixels(frames))

    def is_met_by(self, normalization: Normalization) -> bool:
        """Whether `normalization` (a stored one) is the one asked for; anything meets the default. A window or
        percentiles asked for with the repair on are not met by a raw sequence's normalisation stored with it off
        (an 8-bit one records no repair either way: asked off, it is met)."""
        if not self.repair_bad_pixels and normalization.bad_pixels:
            return False
        if self.repair_bad_pixels and not normalization.bad_pixel_repair and not self.is_default:
            return False
        if self.window is not None:
            return normalization.mode == "window" and (normalization.low, normalization.high) == tuple(self.window)
        if self.percentiles is not None:
            return (normalization.mode == "percentile"
                    and (normalization.p_low, normalization.p_high) == tuple(self.percentiles))
        return True

    def __str__(self) -> str:
        if self.window is not None:
            text = f"window {self.window[0]:g}..{self.window[1]:g}"
        elif self.percentiles is not None:
            text = f"percentiles {self.percentiles[0]:g}..{self.percentiles[1]:g}"
        else:
            text = "default normalisation"
        return text if self.repair_bad_pixels else f"{text}, bad pixels not repaired"


def default_for(source) -> Normalization:
    """identity8 for an 8-bit source; for a raw one, its bad pixels and per-sequence percentiles."""
    return NormalizationRequest().for_source(source)


def _check_percentiles(p_low: float, p_high: float) -> None:
    if not 0 <= p_low < p_high <= 100:
        raise ValueError(f"percentiles need 0 <= LO < HI <= 100, got {p_low:g} {p_high:g}")


def _sample_frames(source_or_frames, sample: int) -> list[np.ndarray]:
    if isinstance(source_or_frames, np.ndarray) and source_or_frames.ndim == 2:
        return [source_or_frames]
    n = len(source_or_frames)
    if n == 0:
        return []
    if not hasattr(source_or_frames, "frame"):
        picks = np.unique(np.linspace(0, n - 1, min(sample, n)).round().astype(int))
        return [np.asarray(source_or_frames[i]) for i in picks]
    frames = []
    # walk evenly spaced indices; a bad frame is replaced by the next readable one
    for i in np.unique(np.linspace(0, n - 1, min(sample, n)).round().astype(int)):
        for j in range(i, n):
            try:
                frames.append(source_or_frames.frame(int(j)))
                break
            except FrameReadError:
                continue
    return frames


def _percentiles(frames: list[np.ndarray], p_low: float, p_high: float) -> tuple[float, float]:
    if all(f.dtype in (np.uint8, np.uint16) for f in frames):
        counts = sum(np.bincount(f.ravel(), minlength=65536) for f in frames)
        cdf = np.cumsum(counts)
        total = cdf[-1]
        # at least one pixel: p = 0 is the smallest value present
        low = int(np.searchsorted(cdf, max(total * p_low / 100.0, 1), side="left"))
        high = int(np.searchsorted(cdf, max(total * p_high / 100.0, 1), side="left"))
        return float(low), float(high)
    values = np.concatenate([f.ravel() for f in frames]).astype(np.float64)
    values = values[np.isfinite(values)]  # a float frame's no-data (NaN) pixels
    if values.size == 0:
        raise ValueError("every frame sampled is no data (NaN or inf only): no input window can be computed from it")
    low, high = np.percentile(values, [p_low, p_high], method="inverted_cdf")
    return float(low), float(high)


def _fill_no_data(values: np.ndarray, no_data: np.ndarray) -> np.ndarray:
    """`values` (float64, H x W) with each `no_data` pixel filled smoothly from the data around it (push-pull:
    the weighted mean of the data at ever coarser pyramid levels, brought back up), O(H * W); at least one pixel
    must be data.

    Unlike the nearest data pixel's value, which draws each edge pixel's noise across the area as a streak that
    Top-Hat and PSTNN detect, the fill is smooth and stays within the range of the data around it.
    """
    weight = cv2.pyrDown((~no_data).astype(np.float64))
    weighted_sum = cv2.pyrDown(np.where(no_data, 0.0, values))
    coarse_no_data = weight == 0
    coarse = np.divide(weighted_sum, weight, out=np.zeros_like(weighted_sum), where=~coarse_no_data)
    if coarse_no_data.any():
        coarse = _fill_no_data(coarse, coarse_no_data)
    height, width = values.shape
    return np.where(no_data, cv2.pyrUp(coarse, dstsize=(width, height)), values)


def no_data_pixels(frame: np.ndarray) -> np.ndarray | None:
    """Where a float frame holds no data (NaN, +-inf), as bool (H, W); None where it holds data everywhere (an
    integer frame always does)."""
    if frame.dtype.kind != "f":
        return None
    missing = ~np.isfinite(frame)
    return missing if missing.any() else None


def without_no_data(result: FrameResult, no_data: np.ndarray | None) -> FrameResult:
    """`result` with no target pixel where the frame held no data: the fill the detector saw there is no
    measurement (a local-contrast method still finds "targets" in its smooth surface)."""
    return result if no_data is None else replace(result, logits=logits_without_no_data(result.logits, no_data))

