"""Probe (session 10, not part of the product): can a small learned network redraw the outline of each
detected target better than the local-contrast refinement (model/refine.py)?

A CNN of ten 3x3/1x1 convolutions (32 channels, 75k parameters) sees a 32x32 window around each
refined component: the frame's local contrast ((pixel - window median) / (peak - median)), the
network's logits (tanh(logit / 10)) and the refined mask. It predicts the ground truth in that
window. It is trained on windows of the NUAA-SIRST **train** split, centred on predicted components and
on ground-truth targets (jittered by up to 4 px, all 8 orientations), and scored on **validation**,
which it never sees. At inference, each component's window is redrawn within `--radius` px of the
refined mask. The test split is never used.

    python benchmarks/outline_refiner_probe.py [--weights resources/weights/irsam_paper_sirst.pt]
        [--data ../shared/data/nuaa-sirst] [--epochs 20] [--radius 2]

Session 10 on the 2-core CPU (about 20 minutes, sharing the cores), validation IoU / nIoU / Pd / Fa
x1e-6: refined 75.20 / 75.57 / 94.85 / 10.41; redrawn within 2 px 75.93 / 76.76 / 94.85 / 15.62
(docs/model_card.md).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.paths import DEFAULT_WEIGHTS  # noqa: E402
from model.data import find_dataset, read_image_gray, read_mask  # noqa: E402
from model.metrics import SegmentationMetrics  # noqa: E402
from model.predictor import Predictor  # noqa: E402
from model.refine import LocalContrastRefinement  # noqa: E402

SIRST = REPO.parent / "shared" / "data" / "nuaa-sirst"
WINDOW = 32
HALF = WINDOW // 2


class Frame:
    """One image with its ground truth, network logits and refined logits, each padded by HALF so a
    window at (cy, cx) of the padded arrays is centred on pixel (cy, cx) of the frame."""

    def __init__(self, image: np.ndarray, truth: np.ndarray, logits: np.ndarray):
        refined = LocalContrastRefinement()(image, logits)
        self.shape = image.shape
        self.truth, self.refined = truth, refined
        self.image = np.pad(image.astype(np.float32), HALF, mode="reflect")
        self.logits = np.pad(logits, HALF, constant_values=-30.0)
        self.refined_mask = np.pad(refined > 0, HALF)
        self.truth_padded = np.pad(truth.astype(np.float32), HALF)

    def features(self, cy: int, cx: int) -> np.ndarray:
        image = self.image[cy:cy + WINDOW, cx:cx + WINDOW]
        background = np.median(image)
        contrast = max(float(image[HALF - 4:HALF + 4, HALF - 4:HALF + 4].max() - background), 4.0)
        return np.stack([np.clip((image - background) / contrast, -1, 2),
                         np.tanh(self.logits[cy:cy + WINDOW, cx:cx + WINDOW] / 10),
                         self.refined_mask[cy:cy + WINDOW, cx:cx + WINDOW].astype(np.float32)])

    def target(self, cy: int, cx: int) -> np.ndarray:
        return self.truth_padded[cy:cy + WINDOW, cx:cx + WINDOW]


def centres(mask: np.ndarray) -> list[tuple[int, int]]:
    n, _, _, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [(int(round(centroids[i][1])), int(round(centroids[i][0]))) for i in range(1, n)]


class OutlineNet(nn.Module):
    def __init__(self, channels: int = 32):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, padding=d, dilation=d), nn.BatchNorm2d(channels), nn.ReLU(),
                          nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
            for d in (1, 2, 4, 1))
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        for block in self.blocks:
            h = F.relu(h + block(h))
        return self.head(h)


def training_windows(frames: list[Frame], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    inputs, targets = [], []
    for frame in frames:
        for cy, cx in centres(frame.refined > 0) + centres(frame.truth):
            for _ in range(2):
                dy, dx = rng.integers(-4, 5, 2)
                y, x = int(np.clip(cy + dy, 0, frame.shape[0] - 1)), int(np.clip(cx + dx, 0, frame.shape[1] - 1))
                inputs.append(frame.features(y, x))
                targets.append(frame.target(y, x))
    return np.array(inputs, np.float32), np.array(targets, np.float32)[:, None]


def redraw(net: OutlineNet, frame: Frame, radius: int) -> np.ndarray:
    """The frame's logits with each refined component's window redrawn (within `radius` px of the mask)."""
    found = centres(frame.refined > 0)
    if not found:
        return frame.refined
    with torch.no_grad():
        predicted = net(torch.from_numpy(np.array([frame.features(cy, cx) for cy, cx in found])))[:, 0].numpy()
    near = np.pad(cv2.dilate((frame.refined > 0).astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)) > 0, HALF)
    drawn = np.full(near.shape, -1.0, np.float32)
    covered = np.zeros(near.shape, bool)
    for (cy, cx), logits in zip(found, predicted):
        window = (slice(cy, cy + WINDOW), slice(cx, cx + WINDOW))
        drawn[window] = np.maximum(drawn[window], np.where(near[window], logits, -1.0))
        covered[window] = True
    inner = (slice(HALF, -HALF), slice(HALF, -HALF))
    return np.where(covered[inner], drawn[inner], frame.refined)


def score(logits: list[np.ndarray], frames: list[Frame]) -> str:
    metrics = SegmentationMetrics()
    for lg, frame in zip(logits, frames):
        metrics.update(lg, frame.truth)
    r = metrics.result()
    return f"{100 * r['iou']:.2f} / {100 * r['niou']:.2f} / {100 * r['pd']:.2f} / {1e6 * r['fa']:.2f}"


def load(predictor: Predictor, data: Path, split: str) -> list[Frame]:
    samples = find_dataset(data / "images", data / "masks", data / "splits" / "idx_427" / f"{split}.txt")
    frames = []
    for s in samples:
        image = read_image_gray(s.image_path)
        frames.append(Frame(image, read_mask(s.mask_path) > 0, predictor.detect([image])[0].logits))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=SIRST)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--radius", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    predictor = Predictor.from_file(args.weights, device="cpu", refine="off")
    train, val = load(predictor, args.data, "train"), load(predictor, args.data, "val")
    print(f"validation, refined (the default): IoU / nIoU / Pd / Fa x1e-6 {score([f.refined for f in val], val)}")
    net = OutlineNet()
    optimizer = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    for epoch in range(args.epochs):
        if epoch % 5 == 0:  # fresh jitter
            inputs, targets = training_windows(train, rng)
        net.train()
        order = rng.permutation(len(inputs))
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            turns, flip = int(rng.integers(4)), bool(rng.integers(2))
            x = torch.from_numpy(np.rot90(inputs[batch], turns, (2, 3)).copy())
            y = torch.from_numpy(np.rot90(targets[batch], turns, (2, 3)).copy())
            if flip:
                x, y = x.flip(-1), y.flip(-1)
            out = net(x)
            p = torch.sigmoid(out)
            dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
            loss = F.binary_cross_entropy_with_logits(out, y) + dice
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            net.eval()
            print(f"epoch {epoch + 1}: validation, redrawn within {args.radius} px: "
                  f"{score([redraw(net, f, args.radius) for f in val], val)}", flush=True)


if __name__ == "__main__":
    main()
