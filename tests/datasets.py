"""Small on-disk data sets made by the project's own generator, for training and detection tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from app.core.normalization import Normalization
from app.core.synthetic import SyntheticConfig, generate_sequence

def write_sirst_dataset(root: Path, n_frames: int = 12, size: tuple[int, int] = (64, 80), seed: int = 3) -> Path:
    """SIRST layout: images/<stem>.png (8-bit), masks/<stem>.png (0/255), train.txt and val.txt (2/3, 1/3)."""
    h, w = size
    seq = generate_sequence(SyntheticConfig(n_frames=n_frames, height=h, width=w, empty_fraction=0.0), seed=seed)
    norm = Normalization.from_percentiles(list(seq.frames))
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stems = [f"syn_{i:03d}" for i in range(n_frames)]
    for stem, frame, mask in zip(stems, seq.frames, seq.masks):
        cv2.imwrite(str(root / "images" / f"{stem}.png"), norm.apply(frame))
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask.astype(np.uint8) * 255)
    cut = (2 * n_frames) // 3
    (root / "train.txt").write_text("\n".join(stems[:cut]))
    (root / "val.txt").write_text("\n".join(stems[cut:]))
    return root


BANDED_HOT_PIXEL = (5, 20)  # (x, y), inside the flat left band
BANDED_BAND_VALUES = (500, 6000)  # the left and right bands' raw values


def banded_16bit_frames(n_frames: int = 10, shape: tuple[int, int] = (32, 40)) -> list[np.ndarray]:
    """uint16 frames for normalisation tests: columns 0-9 at 500, a ramp 1000..4000 over the middle
    columns, the last 10 columns at 6000, a 3x3 target (+800) moving 2 px a frame along rows 7-9, and
    a hot pixel (60000) at BANDED_HOT_PIXEL in every frame. A fixed window 1000..4000 saturates the
    bands to 0 and 255; the hot pixel, in the flat band, is repaired to 500."""
    h, w = shape
    row = np.concatenate([np.full(10, 500.0), np.linspace(1000.0, 4000.0, w - 20), np.full(10, 6000.0)])
    frames = []
    for t in range(n_frames):
        frame = np.tile(row, (h, 1))
        frame[7:10, 11 + 2 * t : 14 + 2 * t] += 800
        frame[BANDED_HOT_PIXEL[1], BANDED_HOT_PIXEL[0]] = 60000
        frames.append(np.round(frame).astype(np.uint16))
    return frames


def expected_window_input(frame: np.ndarray, low: float, high: float) -> np.ndarray:
    """A banded frame as the model should see it through the fixed window low..high, written out from
    the normalisation's formula rather than through app.core.normalization: hot pixel repaired, then
    floor((v - low) * 255 / (high - low) + 0.5) clipped to 0..255."""
    values = frame.astype(np.float64)
    values[BANDED_HOT_PIXEL[1], BANDED_HOT_PIXEL[0]] = BANDED_BAND_VALUES[0]
    return np.clip(np.floor((values - low) * 255.0 / (high - low) + 0.5), 0, 255).astype(np.uint8)
