"""Small on-disk data sets made by the project's own generator, for training and detection tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from app.core.normalization import Normalization
from app.core.synthetic import SyntheticConfig, generate_sequence

SHARED = Path(__file__).resolve().parents[2] / "shared"


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
