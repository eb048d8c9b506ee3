"""Predictor: the Qt-free inference object used by the CLI and the app.

It owns device choice (CUDA when present, else CPU, always reported), batching, autocast,
size handling (`official` resizes to 512 like the reference; `paper` runs at native resolution,
padded to the encoder stride, tiled above a size limit) and returns `FrameResult`s at frame size, and on
request (`detect(..., network_logits=True)`) a network that runs at 512 also gives its logits at 512.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from model.config import IRSAMConfig
from model.detectors import REFINE_MODES, FrameResult
from model.refine import make_refinement

PAD_MULTIPLE = 32  # the encoder's coarsest grid is 1/16; 32 keeps every stage's size even
RESIZED_INPUT_SIZE = 512  # the square every frame is resized to for a network that does not run natively (`official`)
TILE_OVERLAP = 64


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """(tile start, owned start, owned end) along one axis; owned ranges cover [0, length) exactly once."""
    if length <= tile:
        return [(0, 0, length)]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    bounds = [0] + [(starts[i] + tile + starts[i + 1]) // 2 for i in range(len(starts) - 1)] + [length]
    return [(s, bounds[i], bounds[i + 1]) for i, s in enumerate(starts)]


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    description: str  # e.g. "cpu (2 threads)" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    fallback_reason: str | None = None  # set when a GPU was asked for, or found by "auto", but could not be used


def check_device_name(requested: str) -> str:
    """`requested` in lower case when it is auto, cpu, cuda or cuda:N; otherwise ValueError."""
    name = requested.lower()
    index = name.removeprefix("cuda:")
    if name not in ("auto", "cpu", "cuda") and not (name.startswith("cuda:") and index.isdigit()):
        raise ValueError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N")
    return name


def choose_device(requested: str = "auto") -> DeviceChoice:
    """'auto' takes CUDA when it works, else the CPU; 'cuda' / 'cuda:N' fall back to the CPU with a reason.

    `fallback_reason` is also set for 'auto' when CUDA reports a GPU that then fails (a broken driver):
    the user expects the GPU there. It stays None for 'auto' where CUDA is simply absent (CPU build, no GPU).
    """
    requested = check_device_name(requested)
    cpu = torch.device("cpu"), f"cpu ({torch.get_num_threads()} threads)"
    if requested == "cpu":
        return DeviceChoice(*cpu)
    if not torch.cuda.is_available():
        reason = None if requested == "auto" else "CUDA is not available in this PyTorch build or on this machine"
        return DeviceChoice(*cpu, reason)
    try:
        dev = torch.device("cuda" if requested == "auto" else requested)
        torch.zeros(1, device=dev)  # fails early on a broken driver
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return DeviceChoice(dev, f"cuda:{index} ({torch.cuda.get_device_name(index)})")
    except Exception as exc:  # a broken driver or a bad index must not kill the run
        detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return DeviceChoice(*cpu, f"CUDA failed: {detail}")


@dataclass
class NetworkFrameResult(FrameResult):
    """A FrameResult that also holds the network's own output where the network runs at a fixed size (the frame
    resized to `RESIZED_INPUT_SIZE` squared), before the logits are resized back to the frame: what the official
    IRSAM evaluation scores (`Predictor.detect(..., network_logits=True)`)."""

    # float32 (S, S), shifted by the decision threshold, test-time augmented and refined as `logits` are
    network_logits: np.ndarray | None = None
    # float32 (S, S): the gray frame as the network saw it (resized bilinearly), which the refinement of
    # `network_logits` works on
    network_frame: np.ndarray | None = None


class _Pass(NamedTuple):
    """One forward pass: mask logits and edges at frame size (B, 1, H, W), feature maps (`crop_to_frame`), and
    for a network that runs on the resized frame the mask logits at that size (B, 1, S, S) and the gray frame as
    it saw it (B, S, S), else None."""

    mask: torch.Tensor
    edge: torch.Tensor
    features: dict[str, tuple[torch.Tensor, np.ndarray]]
    network_mask: torch.Tensor | None
    network_frame: torch.Tensor | None


class TTAPasses(NamedTuple):
    """The passes of a test-time augmentation mode: each scale, plain and with each flip."""

    scales: tuple[float, ...]  # input magnification; the logits are area-averaged back to the frame
    flips: tuple[tuple[int, ...], ...]  # tensor dims to flip (B, C, H, W), besides the unflipped pass


ALL_FLIPS = ((3,), (2,), (2, 3))
# Every mode of model.detectors.TTA_MODES. The 1.25x pass: targets of 1-3 px cover more of the
# decoder's 1/4 grid (NUAA-SIRST val: Pd and Fa better than flips alone, at 2.6x the time).
TTA_PASSES: dict[str, TTAPasses] = {
    "none": TTAPasses((1.0,), ()),
    "hflip": TTAPasses((1.0,), ((3,),)),
    "flips": TTAPasses((1.0,), ALL_FLIPS),
    "scale": TTAPasses((1.0, 1.25), ()),
    "scale+flips": TTAPasses((1.0, 1.25), ALL_FLIPS),
}


def resize_for_network(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, S, S): frames as a network that does not run natively sees them (bilinear)."""
    return F.interpolate(x, size=(RESIZED_INPUT_SIZE, RESIZED_INPUT_SIZE), mode="bilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """(..., H, W) padded at the bottom and right to multiples of `multiple`. Replicated borders look like
    more background; zeros would be a cold edge the network never saw."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def crop_to_frame(
    feature: torch.Tensor, frame: tuple[int, int], covered: tuple[int, int]
) -> tuple[torch.Tensor, np.ndarray]:
    """Keeps the cells of a feature map that cover the frame, and says where they lie.

    feature (B, C, fh, fw) was computed from an input showing `covered` = (H, W) frame pixels with the
    frame (h, w) at its top left (a padded frame, or the whole frame resized). A cell covers (H / fh) x
    (W / fw) frame pixels. Returns the map (B, C, ceil(h * fh / H), ceil(w * fw / W)) and the frame
    area it covers, (x, y, width, height) float32: its last row and column may reach past the frame.
    """
    (h, w), (H, W) = frame, covered
    fh, fw = feature.shape[-2:]
    rows, cols = math.ceil(h * fh / H), math.ceil(w * fw / W)
    return feature[..., :rows, :cols], np.array([0, 0, cols * W / fw, rows * H / fh], np.float32)


def frame_features(
    feats: dict[str, tuple[np.ndarray, np.ndarray]], i: int, offset: tuple[int, int] = (0, 0)
) -> dict[str, np.ndarray]:
    """name -> (maps (B, C, fh, fw), rect) -> `FrameResult.features` of batch item i: name -> (C, fh, fw) and
    name + ".rect" -> the frame area (x, y, width, height) the map covers, moved by `offset` (x, y)."""
    result = {}
    for name, (maps, rect) in feats.items():
        result[name] = maps[i]
        result[f"{name}.rect"] = rect + np.array([*offset, 0, 0], np.float32)
    return result


class Predictor:
    """Runs an IRSAM model over 8-bit gray frames of any size.

    precision: "fp32", "bf16" or "fp16" (fp16 only on CUDA). Autocast covers the network; logits
    are returned in float32.
    tta: test-time augmentation (TTA_PASSES): "none", "hflip" (2 passes), "flips" (4 passes: identity,
    horizontal, vertical, both), "scale" (the frame and the frame magnified 1.25x: 2.6x the time) or
    "scale+flips" (both, 10x). Logits and edges of every pass are brought back to the frame (flipped
    back, area-averaged) and averaged; feature maps come from the identity pass.
    Feature maps (`detect(..., features=True)`) keep the cells that cover the frame; beside each map
    "name", "name.rect" is the frame area (x, y, width, height) it covers (`crop_to_frame`). Frames that
    are tiled get the maps of their centre tile, placed there.
    refine: "off" (the network's logits as they are), "contrast" (model.refine.LocalContrastRefinement,
    after test-time augmentation: each predicted component is trimmed to the pixels above a fraction of
    its local contrast, and a confident one grows 1 px into bright neighbours) or "trim" (the trim
    alone). The CLI and the app default to "contrast".
    A network that does not run natively (`official`) sees every frame resized to 512x512; `detect(...,
    network_logits=True)` then also returns its logits at that size (`NetworkFrameResult`): every test-time
    augmentation pass's, flipped back and averaged there (a scale pass is resized to 512x512 for the network
    too, so its logits cover the same grid), and refined on the frame as the network saw it.
    """

    name = "irsam"

    def __init__(
        self,
        model: torch.nn.Module,
        config: IRSAMConfig,
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int = 4,
        tile_size: int = 1024,
        metadata: dict | None = None,
        tta: str = "none",
        refine: str = "off",
    ):
        if tta not in TTA_PASSES:
            raise ValueError(f"unknown tta {tta!r}; choose one of {', '.join(TTA_PASSES)}")
        if refine not in REFINE_MODES:
            raise ValueError(f"unknown refine {refine!r}; choose one of {', '.join(REFINE_MODES)}")
        self.tta = tta
        self.refine = refine
        self.refinement = make_refinement(refine)
        self.device_choice = choose_device(device)
        self.device = self.device_choice.description
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"unknown precision {precision!r}")
        if precision == "fp16" and self.device_choice.device.type != "cuda":
            precision = "bf16"
        self.precision = precision
        self.config = config
        self.batch_size = max(1, int(batch_size))
        self.tile_size = int(tile_size)
        self.metadata = dict(metadata or {})
        # Chosen on the validation split after training (model.train.calibrate_threshold); returned
        # logits are shifted by it so that `logits > 0` stays the decision everywhere.
        self.decision_threshold = float(self.metadata.get("decision_threshold", 0.0))
        self.model = model.to(self.device_choice.device).eval()

    @classmethod
    def from_file(cls, path: str | Path, config_name: str | None = None, **kwargs) -> "Predictor":
        """Our checkpoint format (config stored; refused when it is not `config_name`), or a plain state_dict
        of the `config_name` network (default: official, or the preset whose tensors it holds), as
        `model.checkpoint.load_checkpoint` reads them."""
        from model.checkpoint import load_checkpoint

        model, config, metadata = load_checkpoint(path, config_name)
        return cls(model, config, metadata=metadata, **kwargs)

    @property
    def native(self) -> bool:
        return self.config.encoder_input == "native"

    @property
    def network_input_size(self) -> int | None:
        """The side of the square every frame is resized to for the network, None where it runs at the frame's
        own size (native)."""
        return None if self.native else RESIZED_INPUT_SIZE

    def detect(self, images: Sequence[np.ndarray], features: bool = False, network_logits: bool = False,
               refine_frame_logits: bool = True) -> list[FrameResult]:
        """images: 2-D uint8 arrays. Frames of equal size are batched together. With `network_logits`, for a
        network that runs on resized frames only, `NetworkFrameResult`s that also hold its logits at that size.
        `refine_frame_logits` False leaves the refinement off the frame-size `logits` (the network's, resized back
        to the frame): for a caller that uses only `network_logits` (model.evaluate scoring at 512)."""
        if network_logits and self.native:
            raise ValueError(f"the {self.config.name} network runs at each frame's own size: its logits are the "
                             "frame-size ones")
        results: list[FrameResult | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            if image.ndim != 2 or image.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected a 2-D uint8 array, got {image.dtype} {image.shape}")
            by_size.setdefault(image.shape, []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = np.stack([images[i] for i in chunk])
                for i, result in zip(chunk, self._detect_same_size(batch, features, network_logits)):
                    if self.refinement is not None:
                        if refine_frame_logits:
                            result.logits = self.refinement(images[i], result.logits)
                        if network_logits:
                            result.network_logits = self.refinement(result.network_frame, result.network_logits)
                    results[i] = result
        return results  # type: ignore[return-value]

    def _detect_same_size(self, batch: np.ndarray, features: bool, network_logits: bool) -> list[FrameResult]:
        h, w = batch.shape[1:]
        if self.native and max(h, w) > self.tile_size:
            return [self._detect_tiled(frame, features) for frame in batch]
        logits, edges, feats, at_network = self._run(batch, features, network_logits)
        if network_logits:
            own_logits, frames_seen = at_network
            return [NetworkFrameResult(logits=logits[i], edge=edges[i], features=frame_features(feats, i),
                                       network_logits=own_logits[i], network_frame=frames_seen[i])
                    for i in range(len(batch))]
        return [
            FrameResult(
                logits=logits[i],
                edge=edges[i],
                features=frame_features(feats, i),
            )
            for i in range(len(batch))
        ]

    def _run(
        self, batch: np.ndarray, features: bool, network_logits: bool = False
    ) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray] | None]:
        """batch (B,H,W) uint8 -> logits (B,H,W) f32, edges (B,H,W) f32, features name -> (maps (B,C,fh,fw), rect),
        and with `network_logits` (a network on resized frames) its logits at its input size (B,S,S) f32 and the
        frames as it saw them there (B,S,S) f32, else None."""
        x = torch.from_numpy(batch).to(self.device_choice.device).float()[:, None].expand(-1, 3, -1, -1)
        mask, edge, out_features, network_mask, network_frame = self._forward(x, features)
        passes = TTA_PASSES[self.tta]
        h, w = x.shape[-2:]
        count = 1
        for scale in passes.scales:
            xs = x if scale == 1.0 else F.interpolate(
                x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False)
            # each pass goes through the same padding as a plain run, then is flipped back and resized;
            # the unflipped pass at scale 1 is the one above
            unflipped = () if scale == 1.0 else ((),)
            for dims in unflipped + passes.flips:
                m, e, _, m_network, _ = self._forward(xs.flip(dims) if dims else xs, False)
                if dims:
                    m, e = m.flip(dims), e.flip(dims)
                if scale != 1.0:
                    m, e = F.interpolate(m, size=(h, w), mode="area"), F.interpolate(e, size=(h, w), mode="area")
                mask, edge, count = mask + m, edge + e, count + 1
                if network_logits:  # every pass's network input is the same square: no resizing back
                    network_mask = network_mask + (m_network.flip(dims) if dims else m_network)
        mask, edge = mask / count, edge / count
        feats = {k: (v.float().cpu().numpy(), rect) for k, (v, rect) in out_features.items()}
        mask = mask[:, 0] - self.decision_threshold
        at_network = None
        if network_logits:
            at_network = ((network_mask[:, 0] / count - self.decision_threshold).cpu().numpy(),
                          network_frame.cpu().numpy())
        return mask.cpu().numpy(), edge[:, 0].cpu().numpy(), feats, at_network

    def _forward(self, x: torch.Tensor, features: bool) -> _Pass:
        """x (B,3,H,W) float -> mask logits (B,1,H,W), edges (B,1,H,W), feature maps name -> (map, rect)
        (`crop_to_frame`), and where the network resizes the frame, the mask logits at its input size and the gray
        frame it saw."""
        h, w = x.shape[-2:]
        if self.native:
            x = pad_to_multiple(x)
        else:
            x = resize_for_network(x)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        dev = self.device_choice.device
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = self.model(x, return_features=features)
        mask, edge = out.mask_logits.float(), out.edge_probs.float()
        network_mask = network_frame = None
        if self.native:
            mask, edge = mask[..., :h, :w], edge[..., :h, :w]
        else:
            network_mask, network_frame = mask, x[:, 0]
            mask = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)
            edge = F.interpolate(edge, size=(h, w), mode="bilinear", align_corners=False)
        if not features:
            return _Pass(mask, edge, {}, network_mask, network_frame)
        covered = tuple(x.shape[-2:]) if self.native else (h, w)
        feats = {name: crop_to_frame(value, (h, w), covered) for name, value in out.features.items()}
        return _Pass(mask, edge, feats, network_mask, network_frame)

    def _detect_tiled(self, frame: np.ndarray, features: bool) -> FrameResult:
        """Overlapping tiles; each output pixel comes from the tile where it is farthest from a tile border."""
        h, w = frame.shape
        logits = np.zeros((h, w), np.float32)
        edges = np.zeros((h, w), np.float32)
        for ty, oy0, oy1 in tile_spans(h, self.tile_size, TILE_OVERLAP):
            for tx, ox0, ox1 in tile_spans(w, self.tile_size, TILE_OVERLAP):
                crop = frame[ty : ty + self.tile_size, tx : tx + self.tile_size]
                m, e, _, _ = self._run(crop[None], False)
                logits[oy0:oy1, ox0:ox1] = m[0, oy0 - ty : oy1 - ty, ox0 - tx : ox1 - tx]
                edges[oy0:oy1, ox0:ox1] = e[0, oy0 - ty : oy1 - ty, ox0 - tx : ox1 - tx]
        result = FrameResult(logits=logits, edge=edges)
        if features:
            # Feature maps are for inspecting what is on screen: take them from the tile at the centre.
            cy, cx = max(0, (h - self.tile_size) // 2), max(0, (w - self.tile_size) // 2)
            _, _, feats, _ = self._run(frame[None, cy : cy + self.tile_size, cx : cx + self.tile_size], True)
            result.features = frame_features(feats, 0, offset=(cx, cy))
        return result

    def benchmark(self, size: tuple[int, int] = (512, 512), repeats: int = 5, batch: int = 1) -> float:
        """Median seconds per frame on random frames of `size` (after one warm-up)."""
        frames = list(np.random.default_rng(0).integers(0, 255, (batch, *size), dtype=np.uint8))
        self.detect(frames)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.detect(frames)
            if self.device_choice.device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) / batch)
        return float(np.median(times))
