"""Synthetic 16-bit thermal sequences with exact ground-truth masks, deterministic from a seed.

A frame is   gain * (level + sky gradient + drifting clouds + targets) + column/row offsets + temporal noise,
then hot and dead pixels are stamped in, and values are rounded and clipped to the bit depth.

Targets are Gaussian PSF blobs (round, or elongated and rotated for extended targets) sampled at
pixel centres. A target's ground-truth mask is every pixel where its own signal is at least
`mask_fraction` of its peak amplitude, so masks match what was drawn. A target's SCR is
amplitude / noise_std, noise_std being the combined per-pixel noise (temporal, column, row and gain
fixed-pattern noise); cloud clutter is not counted in it. Hot/dead pixels are never in masks.

Every frame is computed from the seed and its index alone, so `iter_frames` streams arbitrarily
long sequences in constant memory and gives the same frames as `generate_sequence`.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from app.core.project import project_dir_for
from model.atomic import atomic_write_json


@dataclass(frozen=True)
class SyntheticConfig:
    n_frames: int = 120
    height: int = 256
    width: int = 320
    n_targets: tuple[int, int] = (1, 3)  # tracks per sequence, inclusive range
    sigma: tuple[float, float] = (0.5, 2.1)  # PSF sigma in px: masks of 1 to about 7 px across
    extended_fraction: float = 0.2  # share of targets drawn as elongated, rotated blobs
    extended_sigma: tuple[float, float] = (2.0, 3.5)  # long-axis sigma of extended targets
    speed: tuple[float, float] = (0.05, 1.2)  # px per frame: slow ones move sub-pixel
    scr: tuple[float, float] = (3.0, 12.0)
    mask_fraction: float = 0.25  # mask = pixels where the target's signal >= this fraction of its peak
    empty_fraction: float = 0.1  # share of frames without any target, in runs of `empty_run` frames
    empty_run: int = 8
    bit_depth: int = 16
    level: tuple[float, float] = (8000.0, 12000.0)  # mean background counts, drawn per sequence
    gradient: float = 800.0  # counts from top to bottom of the sky
    cloud_amplitude: float = 250.0  # std of the cloud structure, counts
    cloud_drift: tuple[float, float] = (0.15, 0.05)  # px per frame (x, y)
    temporal_noise: float = 25.0  # std, counts
    column_noise: float = 15.0
    row_noise: float = 5.0
    gain_noise: float = 0.002  # per-pixel gain std (relative)
    n_hot_pixels: int = 6
    n_dead_pixels: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def max_value(self) -> int:
        return 2 ** self.bit_depth - 1


@dataclass(frozen=True)
class SyntheticTarget:
    id: int  # 1-based track id, stable over the sequence
    cx: float  # true centre, 0-based pixel columns (pixel centres at integers)
    cy: float
    area: int  # mask pixels of this target alone
    amplitude: float  # peak signal above the background, counts
    scr: float
    sigma_x: float
    sigma_y: float


@dataclass
class SyntheticFrame:
    index: int
    frame: np.ndarray  # uint16 (H, W)
    mask: np.ndarray  # bool (H, W)
    targets: list[SyntheticTarget]


@dataclass
class SyntheticSequence:
    config: SyntheticConfig
    seed: int
    frames: np.ndarray  # uint16 (T, H, W)
    masks: np.ndarray  # bool (T, H, W)
    targets: list[list[SyntheticTarget]] = field(default_factory=list)  # per frame
    hot_pixels: list[tuple[int, int]] = field(default_factory=list)  # (x, y)
    dead_pixels: list[tuple[int, int]] = field(default_factory=list)

    def __iter__(self) -> Iterator[SyntheticFrame]:
        for t in range(len(self.frames)):
            yield SyntheticFrame(t, self.frames[t], self.masks[t], self.targets[t])


@dataclass(frozen=True)
class _Track:
    id: int
    x0: float
    y0: float
    vx: float
    vy: float
    wobble: float  # amplitude (px) of a slow sideways sinusoid: curved, smooth paths
    wobble_period: float
    phase: float
    sigma_long: float
    sigma_short: float
    angle: float
    scr: float


class _Scene:
    """Everything fixed for a sequence: background, fixed-pattern noise, bad pixels, tracks."""

    def __init__(self, config: SyntheticConfig, seed: int):
        c = self.config = config
        self.seed = seed
        rng = np.random.default_rng([seed, 0])
        h, w = c.height, c.width
        self.level = rng.uniform(*c.level)
        rows = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
        self.base = (self.level + c.gradient * rows + np.zeros((1, w), np.float32)).astype(np.float32)
        self.clouds = (c.cloud_amplitude * _fractal_field(rng, h, w)).astype(np.float32)
        self.gain = (1.0 + c.gain_noise * rng.standard_normal((h, w))).astype(np.float32)
        self.offsets = (c.column_noise * rng.standard_normal((1, w)) +
                        c.row_noise * rng.standard_normal((h, 1))).astype(np.float32)
        self.noise_std = float(np.sqrt(c.temporal_noise ** 2 + c.column_noise ** 2 + c.row_noise ** 2 +
                                       (c.gain_noise * self.level) ** 2))
        n_bad = c.n_hot_pixels + c.n_dead_pixels
        flat = rng.choice(h * w, size=n_bad, replace=False)
        points = [(int(p % w), int(p // w)) for p in flat]
        self.hot_pixels = points[:c.n_hot_pixels]
        self.dead_pixels = points[c.n_hot_pixels:]
        self.hot_value = min(c.max_value, self.level + c.gradient + 6 * c.cloud_amplitude + 3000)
        self.margin = 3.0 * c.extended_sigma[1] + 2.0
        self.tracks = [self._track(rng, k + 1) for k in range(int(rng.integers(c.n_targets[0], c.n_targets[1] + 1)))]

    def _track(self, rng, track_id: int) -> _Track:
        c = self.config
        if rng.random() < c.extended_fraction:
            sigma_long = rng.uniform(*c.extended_sigma)
            sigma_short = rng.uniform(c.sigma[0], min(c.sigma[1], sigma_long))
        else:
            sigma_long = sigma_short = rng.uniform(*c.sigma)
        speed, heading = rng.uniform(*c.speed), rng.uniform(0, 2 * np.pi)
        return _Track(id=track_id,
                      x0=rng.uniform(self.margin, c.width - 1 - self.margin),
                      y0=rng.uniform(self.margin, c.height - 1 - self.margin),
                      vx=speed * np.cos(heading), vy=speed * np.sin(heading),
                      wobble=rng.uniform(0, 6), wobble_period=rng.uniform(60, 240), phase=rng.uniform(0, 2 * np.pi),
                      sigma_long=sigma_long, sigma_short=sigma_short, angle=rng.uniform(0, np.pi),
                      scr=rng.uniform(*c.scr))

    def position(self, track: _Track, t: int) -> tuple[float, float]:
        speed = float(np.hypot(track.vx, track.vy)) or 1.0
        wob = track.wobble * np.sin(2 * np.pi * t / track.wobble_period + track.phase)
        # the wobble is perpendicular to the heading
        x = track.x0 + track.vx * t - wob * track.vy / speed
        y = track.y0 + track.vy * t + wob * track.vx / speed
        return (_fold(x, self.margin, self.config.width - 1 - self.margin),
                _fold(y, self.margin, self.config.height - 1 - self.margin))

    def is_empty(self, t: int) -> bool:
        c = self.config
        if c.empty_fraction <= 0:
            return False
        run = t // max(1, c.empty_run)
        return bool(np.random.default_rng([self.seed, 1, run]).random() < c.empty_fraction)

    def render(self, t: int) -> SyntheticFrame:
        c = self.config
        h, w = c.height, c.width
        rng = np.random.default_rng([self.seed, 2, t])
        dx, dy = c.cloud_drift[0] * t, c.cloud_drift[1] * t
        shift = np.float32([[1, 0, -dx], [0, 1, -dy]])
        clouds = cv2.warpAffine(self.clouds, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        scene = self.base + clouds
        mask = np.zeros((h, w), bool)
        targets = []
        if not self.is_empty(t):
            for track in self.tracks:
                targets.append(self._draw(track, t, scene, mask))
        frame = scene * self.gain + self.offsets + c.temporal_noise * rng.standard_normal((h, w), np.float32)
        for x, y in self.hot_pixels:
            frame[y, x] = self.hot_value
        for x, y in self.dead_pixels:
            frame[y, x] = 0
        frame = np.clip(np.rint(frame), 0, c.max_value).astype(np.uint16)
        return SyntheticFrame(t, frame, mask, targets)

    def _draw(self, track: _Track, t: int, scene: np.ndarray, mask: np.ndarray) -> SyntheticTarget:
        cx, cy = self.position(track, t)
        amplitude = track.scr * self.noise_std
        r = int(np.ceil(3.5 * track.sigma_long)) + 1
        x_lo, x_hi = max(0, int(cx) - r), min(self.config.width, int(cx) + r + 2)
        y_lo, y_hi = max(0, int(cy) - r), min(self.config.height, int(cy) + r + 2)
        xs = np.arange(x_lo, x_hi, dtype=np.float64)[None, :] - cx
        ys = np.arange(y_lo, y_hi, dtype=np.float64)[:, None] - cy
        cos, sin = np.cos(track.angle), np.sin(track.angle)
        u, v = xs * cos + ys * sin, -xs * sin + ys * cos
        profile = np.exp(-0.5 * ((u / track.sigma_long) ** 2 + (v / track.sigma_short) ** 2))
        scene[y_lo:y_hi, x_lo:x_hi] += (amplitude * profile).astype(np.float32)
        own = profile >= self.config.mask_fraction
        mask[y_lo:y_hi, x_lo:x_hi] |= own
        return SyntheticTarget(track.id, float(cx), float(cy), int(own.sum()), float(amplitude), float(track.scr),
                               float(track.sigma_long), float(track.sigma_short))


def _fold(value: float, lo: float, hi: float) -> float:
    """Reflect value into [lo, hi] (a target bouncing off the field's edges)."""
    span = hi - lo
    m = (value - lo) % (2 * span)
    return float(lo + (m if m <= span else 2 * span - m))


def _fractal_field(rng, h: int, w: int, beta: float = 3.0) -> np.ndarray:
    """Periodic 1/f^beta noise (cloud-like), zero mean, unit std; periodic so drifting wraps seamlessly."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spectrum = np.fft.rfft2(rng.standard_normal((h, w))) / f ** (beta / 2)
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(h, w))
    return field / (field.std() or 1.0)


def iter_frames(config: SyntheticConfig, seed: int = 0) -> Iterator[SyntheticFrame]:
    """Frames one at a time (constant memory), identical to `generate_sequence`'s."""
    scene = _Scene(config, seed)
    for t in range(config.n_frames):
        yield scene.render(t)


def generate_sequence(config: SyntheticConfig, seed: int = 0) -> SyntheticSequence:
    scene = _Scene(config, seed)
    frames = np.empty((config.n_frames, config.height, config.width), np.uint16)
    masks = np.empty(frames.shape, bool)
    targets = []
    for t in range(config.n_frames):
        f = scene.render(t)
        frames[t], masks[t] = f.frame, f.mask
        targets.append(f.targets)
    return SyntheticSequence(config, seed, frames, masks, targets, scene.hot_pixels, scene.dead_pixels)


def write_sequence(seq: SyntheticSequence | Iterable[SyntheticFrame], out_dir: str | os.PathLike,
                   layout: str = "folder", name: str = "stack") -> Path:
    """Write frames + 0/255 masks + targets.csv; returns out_dir.

    layout "folder": images/000001.png (16-bit PNG) and masks/000001.png;
    layout "tiff": <name>.tif (T, H, W) uint16 and masks/<name>_000001.png (the TIFF source's stems).
    Accepts a SyntheticSequence or any iterable of SyntheticFrame (e.g. iter_frames) for long sequences.
    """
    if layout not in ("folder", "tiff"):
        raise ValueError(f"layout must be 'folder' or 'tiff', got {layout!r}")
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if layout == "folder":
        (out / "images").mkdir(exist_ok=True)
    writer = None
    if layout == "tiff":
        import tifffile

        writer = tifffile.TiffWriter(out / f"{name}.tif", bigtiff=False)
    try:
        with open(out / "targets.csv", "w", newline="") as f:
            rows = csv.writer(f)
            rows.writerow(["frame", "stem", "target_id", "cx", "cy", "area", "amplitude", "scr"])
            for item in seq:
                stem = f"{item.index + 1:06d}" if layout == "folder" else f"{name}_{item.index + 1:06d}"
                if writer is None:
                    _imwrite(out / "images" / f"{stem}.png", item.frame)
                else:
                    writer.write(item.frame, contiguous=True, photometric="minisblack")
                _imwrite(out / "masks" / f"{stem}.png", item.mask.astype(np.uint8) * 255)
                for tg in item.targets:
                    rows.writerow([item.index + 1, stem, tg.id, f"{tg.cx:.4f}", f"{tg.cy:.4f}", tg.area,
                                   f"{tg.amplitude:.2f}", f"{tg.scr:.3f}"])
    finally:
        if writer is not None:
            writer.close()
    return out


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


# The app's built-in demo: targets the shipped IRSAM weights find (on other seeds of these settings,
# about 9 in 10). With the generator's defaults (SCR 3-12, clouds of 250 counts, point-like PSFs from
# sigma 0.5) every detector here misses nearly all targets (benchmarks/demo_detectability.py).
DEMO_CONFIG = SyntheticConfig(n_frames=120, height=256, width=320, n_targets=(2, 3), sigma=(0.9, 2.1), scr=(12.0, 30.0),
                              cloud_amplitude=150.0)
DEMO_SEED = 7


# what of a demo folder the app or `irsam detect` may open, relative to it: the folder, its images/, its stack.tif
DEMO_SOURCES = (".", "images", "stack.tif")


def demo_projects(demo: Path) -> list[Path]:
    """The review projects over a demo folder's frames (`DEMO_SOURCES`) that exist: beside the folder for the
    folder itself, inside it for its images/ and its stack.tif (`project_dir_for`)."""
    projects = (project_dir_for(Path(demo) / source) for source in DEMO_SOURCES)
    return [project for project in projects if project.is_dir()]


def set_aside_projects(demo: Path) -> list[tuple[Path, Path]]:
    """Review projects over the old demo would lay their masks over the new frames: renamed, kept. One inside the
    demo folder (over its images/ or stack.tif) would go with the old frames: it is kept beside the folder, its
    name prefixed with the folder's. Returns (where each was, where it is kept)."""
    demo = Path(demo).resolve()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for project in demo_projects(demo):
        inside = project.parent == demo
        name = f"{demo.name}.{project.name}" if inside else project.name
        kept = (demo.parent if inside else project.parent) / f"{name}.old-{stamp}"
        try:
            os.replace(project, kept)
        except OSError:
            for earlier, where in moved:  # all or none
                os.replace(where, earlier)
            raise
        moved.append((project, kept))
    return moved


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "irsam-review"


def demo_sequence_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the built-in demo sequence (images/ + masks/), generated on first use."""
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "demo"
    marker = target / "demo.json"
    stamp = json.loads(json.dumps({"config": DEMO_CONFIG.to_dict(), "seed": DEMO_SEED}))  # tuples as JSON lists
    if _read_json(marker) == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target and rename: a crash mid-way never leaves a half demo that looks complete
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    try:
        write_sequence(iter_frames(DEMO_CONFIG, DEMO_SEED), tmp, layout="folder")
        atomic_write_json(tmp / "demo.json", stamp)
        if target.exists():  # an incomplete demo (no marker), or one made with other settings
            set_aside_projects(target)
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _read_json(marker) != stamp:  # unless another process finished first
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
