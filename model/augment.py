"""Training samples: flips (or all 8 square orientations), large-scale jitter and crops that favour
targets, on 8-bit gray frames.

Small targets are 1-7 px: masks are resized as area fractions and re-thresholded at 0.5 so a
target shrunk by the jitter keeps its pixel where it covers half of it, and crops are drawn around
targets often enough that a batch is not all sky.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset


ORIENTATIONS = ("hflip", "dihedral")


@dataclass(frozen=True)
class AugmentConfig:
    crop: int = 512
    scale_range: tuple[float, float] = (0.8, 1.5)  # large-scale jitter, as the paper
    orientations: str = "hflip"  # ORIENTATIONS: "hflip" (the paper's) or "dihedral" (flips and 90-degree turns)
    target_crop_prob: float = 0.7  # else a uniformly random crop (often a negative: teaches no false alarms)


def rescale(image: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    coverage = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return image, coverage >= 0.5


def crop_around(
    image: np.ndarray, mask: np.ndarray, crop: int, rng: np.random.Generator, target_crop_prob: float
) -> tuple[np.ndarray, np.ndarray]:
    """A crop x crop window (reflect-padded when the frame is smaller), around a target with the given probability."""
    h, w = image.shape
    if h < crop or w < crop:
        ph, pw = max(0, crop - h), max(0, crop - w)
        image = np.pad(image, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
        mask = np.pad(mask, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
        h, w = image.shape
    ys, xs = np.nonzero(mask)
    if len(ys) and rng.random() < target_crop_prob:
        k = rng.integers(len(ys))
        # the target lands anywhere in the crop except the outer 8 px
        margin = min(8, crop // 4)
        y0 = int(np.clip(ys[k] - rng.integers(margin, crop - margin), 0, h - crop))
        x0 = int(np.clip(xs[k] - rng.integers(margin, crop - margin), 0, w - crop))
    else:
        y0, x0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return image[y0 : y0 + crop, x0 : x0 + crop], mask[y0 : y0 + crop, x0 : x0 + crop]


class SegmentationDataset(Dataset):
    """Gray uint8 images + bool masks held in memory -> (image (3,crop,crop) float 0..255, mask (1,crop,crop) float)."""

    def __init__(self, images: list[np.ndarray], masks: list[np.ndarray], config: AugmentConfig, seed: int = 0):
        if len(images) != len(masks):
            raise ValueError("images and masks differ in count")
        if config.orientations not in ORIENTATIONS:
            raise ValueError(f"orientations must be one of {', '.join(ORIENTATIONS)}, got {config.orientations!r}")
        self.images, self.masks, self.config, self.seed = images, masks, config, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        c = self.config
        image, mask = self.images[index], self.masks[index]
        image, mask = rescale(image, mask, float(rng.uniform(*c.scale_range)))
        image, mask = crop_around(image, mask, c.crop, rng, c.target_crop_prob)
        if rng.random() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if c.orientations == "dihedral":
            # with the horizontal flip above, a vertical flip and a transpose reach all 8 orientations
            # of the square crop; drawn after it, so "hflip" samples stay what they were
            if rng.random() < 0.5:
                image, mask = image[::-1], mask[::-1]
            if rng.random() < 0.5:
                image, mask = image.T, mask.T
        x = torch.from_numpy(np.ascontiguousarray(image)).float()[None].expand(3, -1, -1).contiguous()
        y = torch.from_numpy(np.ascontiguousarray(mask)).float()[None]
        return x, y
