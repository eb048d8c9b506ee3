"""Bad pixels of a raw sequence: found from the sequence itself, repaired before detection.

A hot or dead pixel is stuck far from its neighbours in (almost) every frame; a target moves, and even
a slow one leaves a pixel within a fraction of the sequence. So a pixel is bad when, in at least
`share` of the sampled frames, it differs from the median of its 3x3 neighbourhood by more than `k`
times that frame's robust noise (1.4826 x the median absolute deviation from the 3x3 median). Repair
replaces it with the median of its neighbours that are not bad themselves, as thermal camera
pipelines do. A static scene (a camera on a mast) has structure that passes that test in every frame too
(thin wires, corners): where more than 1 % of the pixels pass, only the lone ones are kept, those beyond
every one of their 8 neighbours by that margin. What this cannot tell apart: a point target that stays on
one pixel for the whole sequence, nor, in a static scene, a one-pixel spot of the scene (where two wires cross).
"""
from __future__ import annotations

import cv2
import numpy as np

from app.core.frames import no_data

MIN_FRAMES = 8  # fewer sampled frames cannot tell a stuck pixel from a target
MAX_SHARE_OF_PIXELS = 0.01  # more candidates than this (1 %) is scene structure, not sensor defects


def find_bad_pixels(frames: list[np.ndarray], k: float = 8.0, share: float = 0.9) -> tuple[tuple[int, int], ...]:
    """(x, y) of the pixels stuck far from their neighbours in at least `share` of `frames` (only the lone ones
    where more than 1 % qualify); () when the frames are too few or differ in shape, or when so many lone pixels
    qualify that they must be scene."""
    frames = [f for f in frames if not no_data(f)]
    if len(frames) < MIN_FRAMES or len({np.shape(f) for f in frames}) != 1:
        return ()
    far = np.zeros(np.shape(frames[0]), np.int32)  # frames where the pixel is far from its 3x3 median
    lone = np.zeros_like(far)  # and where it is beyond all of its 8 neighbours
    ring = np.ones((3, 3), np.uint8)
    ring[1, 1] = 0
    for frame in frames:
        values = np.asarray(frame, np.float32)
        deviation = values - cv2.medianBlur(values, 3)
        # at least one count (a float frame: a millionth of its values' scale): flat frames
        floor = 1.0 if np.issubdtype(np.asarray(frame).dtype, np.integer) else 1e-6 * max(
            float(np.nanmax(np.abs(values), initial=0.0)), 1.0)
        noise = max(1.4826 * float(np.nan_to_num(np.nanmedian(np.abs(deviation)))), floor)
        far += np.abs(deviation) > k * noise
        lone += ((values - cv2.dilate(values, ring) > k * noise)  # (outside the frame counts as no neighbour)
                 | (cv2.erode(values, ring) - values > k * noise))
    stuck = far >= share * len(frames)
    if stuck.sum() > MAX_SHARE_OF_PIXELS * stuck.size:
        stuck &= lone >= share * len(frames)
        if stuck.sum() > MAX_SHARE_OF_PIXELS * stuck.size:
            return ()
    ys, xs = np.nonzero(stuck)
    return tuple((int(x), int(y)) for x, y in zip(xs, ys))


class BadPixelRepair:
    """Replaces the given pixels by the median of their 8 neighbours that are not bad themselves."""

    def __init__(self, pixels: tuple[tuple[int, int], ...]):
        self.pixels = tuple(pixels)
        bad = set(self.pixels)
        offsets = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dx, dy) != (0, 0)]
        self._xs = np.array([x for x, _ in self.pixels], np.intp)
        self._ys = np.array([y for _, y in self.pixels], np.intp)
        self._nx = self._xs[:, None] + np.array([dx for dx, _ in offsets])[None, :]
        self._ny = self._ys[:, None] + np.array([dy for _, dy in offsets])[None, :]
        self._usable = np.array([[(int(x), int(y)) not in bad for x, y in zip(row_x, row_y)]
                                 for row_x, row_y in zip(self._nx, self._ny)], bool).reshape(self._nx.shape)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """A repaired copy of `frame` (H, W); pixels outside it are ignored."""
        if not self.pixels:
            return frame
        h, w = frame.shape
        inside = (self._xs < w) & (self._ys < h)
        usable = self._usable & (self._nx >= 0) & (self._nx < w) & (self._ny >= 0) & (self._ny < h)
        values = frame[np.clip(self._ny, 0, h - 1), np.clip(self._nx, 0, w - 1)].astype(np.float64)
        values[~usable] = np.nan
        repairable = inside & ~np.isnan(values).all(axis=1)  # (a float frame's no-data neighbours are no help)
        out = frame.copy()
        if repairable.any():
            medians = np.nanmedian(values[repairable], axis=1)
            if np.issubdtype(frame.dtype, np.integer):
                medians = np.rint(medians)
            out[self._ys[repairable], self._xs[repairable]] = medians.astype(frame.dtype)
        return out
