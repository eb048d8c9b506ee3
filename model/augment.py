"""Training samples: flips (or all 8 square orientations), large-scale jitter and crops that favour
targets, on 8-bit gray frames.

Small targets are 1-7 px: masks are resized as area fractions and re-thresholded at 0.5 so a
target shrunk by the jitter keeps its pixel where it covers half of it, and crops are drawn around
targets often enough that a batch is not all sky. Targets of the training set can also be pasted into
other frames (copy-paste): more targets, on more backgrounds, per epoch.
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
    paste_targets: int = 0  # up to this many bank targets pasted into each frame before the jitter (0: none)


PASTE_MAX_AREA = 100  # px: the bank keeps small and medium targets, the ones the network misses
PASTE_TRIES = 10


@dataclass(frozen=True)
class TargetPatch:
    """One target cut from a training frame: its brightness above the local background and its mask.

    signal: float32 (h, w), the frame minus the background's median over the target and a 1 px rim
    (the rim only where brighter than the background, so no dark edge comes along); 0 elsewhere.
    mask: bool (h, w), the annotated pixels.
    """

    signal: np.ndarray
    mask: np.ndarray


def target_bank(images: list[np.ndarray], masks: list[np.ndarray], max_area: int = PASTE_MAX_AREA) -> list[TargetPatch]:
    """Every 8-connected target of at most max_area px in the frames, as a TargetPatch."""
    bank = []
    kernel = np.ones((3, 3), np.uint8)
    for image, mask in zip(images, masks):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        for k in range(1, count):
            x, y, w, h, area = stats[k]
            if area > max_area:
                continue
            # the box grown by 8 px holds the background; the target and 2 px around it are left out of it
            y0, y1 = max(0, y - 8), min(image.shape[0], y + h + 8)
            x0, x1 = max(0, x - 8), min(image.shape[1], x + w + 8)
            target = labels[y0:y1, x0:x1] == k
            near = cv2.dilate(mask[y0:y1, x0:x1].astype(np.uint8), kernel, iterations=2).astype(bool)
            window = image[y0:y1, x0:x1].astype(np.float32)
            if near.all():
                continue
            background = float(np.median(window[~near]))
            rim = cv2.dilate(target.astype(np.uint8), kernel).astype(bool) & ~target
            signal = np.where(target, window - background, 0.0)
            signal = np.where(rim, np.maximum(window - background, 0.0), signal).astype(np.float32)
            # cut to the target and its rim
            rows, cols = np.nonzero(target | rim)
            cut = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
            bank.append(TargetPatch(signal[cut], target[cut]))
    return bank


def oriented(image: np.ndarray, mask: np.ndarray, hflip: bool, vflip: bool, transpose: bool):
    """(image, mask) flipped left-right, then upside down, then transposed, each as asked (views)."""
    if hflip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if vflip:
        image, mask = image[::-1], mask[::-1]
    if transpose:
        image, mask = image.T, mask.T
    return image, mask


def paste_targets(
    image: np.ndarray, mask: np.ndarray, bank: list[TargetPatch], count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Add count bank targets to the frame at random places clear of its targets (at least 4 px apart),
    each randomly flipped and turned and scaled in contrast by 0.7-1.3; the mask gains their pixels.
    A target that finds no free place in PASTE_TRIES draws, or only ones where it would saturate, is left out."""
    if count <= 0 or not bank:
        return image, mask
    out, mask = image.astype(np.float32), mask.copy()
    taken = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    for _ in range(count):
        patch = bank[int(rng.integers(len(bank)))]
        signal, target = patch.signal, patch.mask
        turn = int(rng.integers(8))
        signal, target = oriented(signal, target, bool(turn & 1), bool(turn & 2), bool(turn & 4))
        h, w = signal.shape
        if h > out.shape[0] or w > out.shape[1]:
            continue
        for _ in range(PASTE_TRIES):
            y, x = int(rng.integers(out.shape[0] - h + 1)), int(rng.integers(out.shape[1] - w + 1))
            if taken[y : y + h, x : x + w].any():
                continue
            pasted = out[y : y + h, x : x + w] + float(rng.uniform(0.7, 1.3)) * signal
            # on a saturated cloud the target would be clipped away and the mask would label nothing there
            if pasted[target].max() <= 255:
                out[y : y + h, x : x + w] = pasted
                mask[y : y + h, x : x + w] |= target
                y0, x0 = max(0, y - 4), max(0, x - 4)
                taken[y0 : y + h + 4, x0 : x + w + 4] = True
                break
    return np.clip(np.rint(out), 0, 255).astype(image.dtype), mask


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
        if config.paste_targets < 0:
            raise ValueError(f"paste_targets must not be negative, got {config.paste_targets}")
        self.images, self.masks, self.config, self.seed = images, masks, config, seed
        self.bank = target_bank(images, masks) if config.paste_targets else []
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        c = self.config
        image, mask = self.images[index], self.masks[index]
        if c.paste_targets:
            image, mask = paste_targets(image, mask, self.bank, int(rng.integers(c.paste_targets + 1)), rng)
        image, mask = rescale(image, mask, float(rng.uniform(*c.scale_range)))
        image, mask = crop_around(image, mask, c.crop, rng, c.target_crop_prob)
        hflip, vflip, transpose = rng.random() < 0.5, False, False
        if c.orientations == "dihedral":
            # with the horizontal flip, a vertical flip and a transpose reach all 8 orientations of the
            # square crop; drawn after it, so "hflip" samples stay what they were
            vflip, transpose = rng.random() < 0.5, rng.random() < 0.5
        image, mask = oriented(image, mask, hflip, vflip, transpose)
        x = torch.from_numpy(np.ascontiguousarray(image)).float()[None].expand(3, -1, -1).contiguous()
        y = torch.from_numpy(np.ascontiguousarray(mask)).float()[None]
        return x, y
