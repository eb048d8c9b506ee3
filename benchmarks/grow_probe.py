""""Grow target here" (`grow_target`) on NUAA-SIRST: a click at every ground-truth target's brightest pixel,
grown on the 8-bit image with the app's defaults, scored against that target (an 8-connected component of
its mask). Old = the fixed threshold ring mean + 3 std (kept below for the comparison), new = the app's.

    python benchmarks/grow_probe.py [--data ../shared/data/nuaa-sirst]

Per target: empty (nothing grew), IoU of the grown region with the target, leaked (grown area > 3x the
target's). Mean IoU counts an empty grow as 0. All images are read (no split); it runs in seconds.
Then clicks where there is no target: how often anything grows, on synthetic white noise (flat, and on a
gradient) and at random NUAA-SIRST pixels at least 25 px from any target (which may be clutter).
"""
from __future__ import annotations

import argparse
import heapq
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.edits import grow_target  # noqa: E402
from app.core.targets import label_components  # noqa: E402
from model.data import check_sizes_match, find_dataset, read_image_gray, read_mask_noting_interpolation  # noqa: E402

SIRST = REPO.parent / "shared" / "data" / "nuaa-sirst"
LEAK_RATIO = 3
SIZE_BINS = [("<=4 px", 1, 4), ("5-20 px", 5, 20), ("21-100 px", 21, 100), (">100 px", 101, None)]


def old_grow_target(image: np.ndarray, x: int, y: int, window: int = 15, k: float = 3.0, max_area: int = 256,
                    snap_radius: int = 3) -> np.ndarray:
    """`grow_target` before the adaptive threshold: ring mean + k * ring std, k fixed (uint8 images only)."""
    h, w = image.shape
    out = np.zeros((h, w), dtype=bool)
    half = max(window // 2, 1)
    wy0, wy1, wx0, wx1 = max(y - half, 0), min(y + half + 1, h), max(x - half, 0), min(x + half + 1, w)
    ry0, ry1 = max(y - 2 * half, 0), min(y + 2 * half + 1, h)
    rx0, rx1 = max(x - 2 * half, 0), min(x + 2 * half + 1, w)
    values = image.astype(np.float64)
    ring = np.ones((ry1 - ry0, rx1 - rx0), dtype=bool)
    ring[wy0 - ry0 : wy1 - ry0, wx0 - rx0 : wx1 - rx0] = False
    background = values[ry0:ry1, rx0:rx1][ring]
    if background.size == 0:
        background = values[wy0:wy1, wx0:wx1].ravel()
    above = values > background.mean() + k * background.std()
    seed = (y, x)
    if not above[seed]:
        sy0, sy1 = max(y - snap_radius, wy0), min(y + snap_radius + 1, wy1)
        sx0, sx1 = max(x - snap_radius, wx0), min(x + snap_radius + 1, wx1)
        near = values[sy0:sy1, sx0:sx1]
        iy, ix = np.unravel_index(int(np.argmax(near)), near.shape)
        seed = (sy0 + int(iy), sx0 + int(ix))
        if not above[seed]:
            return out
    heap, queued, area = [(-values[seed], seed)], {seed}, 0
    while heap and area < max_area:
        _, (cy, cx) = heapq.heappop(heap)
        out[cy, cx] = True
        area += 1
        for ny in (cy - 1, cy, cy + 1):
            for nx in (cx - 1, cx, cx + 1):
                if wy0 <= ny < wy1 and wx0 <= nx < wx1 and (ny, nx) not in queued and above[ny, nx]:
                    queued.add((ny, nx))
                    heapq.heappush(heap, (-values[ny, nx], (ny, nx)))
    return out


def no_target_clicks(data: Path, seed: int = 0) -> dict[str, list[tuple[np.ndarray, int, int]]]:
    """(image, x, y) clicks with no target under them: 300 on white noise (sigma 8 on 100), 300 on the same
    noise over a gradient of 1.5 levels per row, and 3 per NUAA-SIRST image at least 25 px from any target."""
    rng = np.random.default_rng(seed)
    rows = np.arange(80)[:, None]
    flat = [100 + rng.normal(0, 8, (80, 80)) for _ in range(300)]
    sloped = [40 + 1.5 * rows + rng.normal(0, 8, (80, 80)) for _ in range(300)]
    clicks = {"white noise": [(np.clip(n, 0, 255).astype(np.uint8), 40, 40) for n in flat],
              "white noise on a gradient": [(np.clip(n, 0, 255).astype(np.uint8), 40, 40) for n in sloped],
              "NUAA-SIRST, >= 25 px from targets": []}
    for sample in find_dataset(data / "images", data / "masks"):
        image, mask = read_image_gray(sample.image_path), read_mask_noting_interpolation(sample.mask_path)[0]
        far = cv2.dilate(mask.astype(np.uint8), np.ones((51, 51), np.uint8)) == 0
        ys, xs = np.nonzero(far)
        for i in rng.choice(len(xs), min(3, len(xs)), replace=False):
            clicks["NUAA-SIRST, >= 25 px from targets"].append((image, int(xs[i]), int(ys[i])))
    return clicks


def score(grown: np.ndarray, target: np.ndarray) -> tuple[bool, float, bool]:
    """(empty, IoU, leaked) of one grow against its target."""
    grown_area, target_area = int(grown.sum()), int(target.sum())
    iou = np.count_nonzero(grown & target) / np.count_nonzero(grown | target)
    return grown_area == 0, iou, grown_area > LEAK_RATIO * target_area


def probe(data: Path) -> list[dict]:
    """One row per ground-truth target: its area, and (empty, IoU, leaked) for the old and the new rule."""
    rows = []
    for sample in find_dataset(data / "images", data / "masks"):
        image, mask = read_image_gray(sample.image_path), read_mask_noting_interpolation(sample.mask_path)[0]
        check_sizes_match(sample, image, mask)
        count, labels = label_components(mask)
        for target_id in range(1, count + 1):
            target = labels == target_id
            ys, xs = np.nonzero(target)
            brightest = int(np.argmax(image[ys, xs]))
            x, y = int(xs[brightest]), int(ys[brightest])
            rows.append({"stem": sample.stem, "area": len(xs),
                         "old": score(old_grow_target(image, x, y), target),
                         "new": score(grow_target(image, x, y), target)})
    return rows


def summary(rows: list[dict], rule: str) -> str:
    """n | empty | mean IoU | leaked, for `rule`'s results of `rows`."""
    if not rows:
        return "- | - | -"
    empty, iou, leaked = (np.array([r[rule][i] for r in rows]) for i in range(3))
    return f"{int(empty.sum())} | {iou.mean():.3f} | {int(leaked.sum())}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SIRST, help="NUAA-SIRST root (images/, masks/)")
    args = parser.parse_args()
    rows = probe(args.data)
    print(f"NUAA-SIRST, {len({r['stem'] for r in rows})} images, {len(rows)} targets: a click at each target's "
          f"brightest pixel, grow_target defaults; leaked = grown area > {LEAK_RATIO}x the target's\n")
    print("| targets | n | old empty | old mean IoU | old leaked | new empty | new mean IoU | new leaked |")
    print("|---|---|---|---|---|---|---|---|")
    groups = [("all", rows)] + [(name, [r for r in rows if r["area"] >= low and (high is None or r["area"] <= high)])
                                for name, low, high in SIZE_BINS]
    for name, group in groups:
        print(f"| {name} | {len(group)} | {summary(group, 'old')} | {summary(group, 'new')} |")
    print("\n| clicks with no target | n | old: grows something | new: grows something |")
    print("|---|---|---|---|")
    for name, clicks in no_target_clicks(args.data).items():
        old = np.mean([old_grow_target(image, x, y).any() for image, x, y in clicks])
        new = np.mean([grow_target(image, x, y).any() for image, x, y in clicks])
        print(f"| {name} | {len(clicks)} | {100 * old:.1f} % | {100 * new:.1f} % |")


if __name__ == "__main__":
    main()
