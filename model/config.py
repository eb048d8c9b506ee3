"""IRSAM configuration as data: one dataclass, presets `official()`, `paper()` and `tiny()`.

A config fully determines the network's structure; checkpoints store it (`to_dict`) so a model can be
rebuilt without guessing (`from_dict`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from numbers import Integral, Real

ENCODER_INPUTS = ("upsample2x", "native")
DECODERS = ("official", "gad")
FUSIONS = ("none", "shallow", "deep", "both")
NUM_LEVELS = 4
NUM_PRIORS = 2  # model/priors.py: white top-hat, local contrast


@dataclass(frozen=True)
class IRSAMConfig:
    name: str = "paper"

    # "upsample2x": nearest 2x of the 512 input to the 1024 grid MobileSAM was trained at (official);
    # "native": the encoder runs at the input resolution (token grid = input / 16).
    encoder_input: str = "native"

    # TinyViT encoder (defaults: TinyViT-5M as in MobileSAM).
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3

    # Image embedding / two-way transformer.
    embed_dim: int = 256
    transformer_depth: int = 2
    transformer_heads: int = 8
    transformer_mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_mask_tokens: int = 4

    # WPMD: encoder levels (0..3) that get a diffusion block; an int n means the first n levels.
    wpmd_levels: tuple[int, ...] = (0, 1, 2, 3)
    wpmd_steps: int = 3

    # "official": released edge-token decoder (deep fusion through `embedding_encoder`);
    # "gad": Granularity-Aware Decoder with the multi-granularity fusion selected by `fusion`.
    decoder: str = "gad"
    fusion: str = "both"

    # Full-resolution residual on the mask logits so 1-3 px targets survive the 1/4 decoder grid.
    hires_refine: bool = True

    # Two hand-made small-target channels (white top-hat, local contrast; model/priors.py) beside the
    # normalised image at the encoder stem and the refinement head. Weights without them load into a
    # model with them (their kernels for the new channels start at zero: the same network).
    input_priors: bool = False

    # Keep parameters the released network carries but never uses (classification head, point/mask
    # prompt embeddings, `compress_vit_feat`, IoU head, ...) so official state_dicts load strictly.
    released_unused_params: bool = False

    # Input normalisation on the 0..255 scale (not part of any state_dict).
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = field_value_problem(f.name, getattr(self, f.name))
            if problem:
                raise ValueError(f"{f.name} {problem}")
        for name in ("embed_dims", "depths", "num_heads", "window_sizes", "pixel_mean", "pixel_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        levels = self.wpmd_levels
        if isinstance(levels, int):
            if not 0 <= levels <= NUM_LEVELS:
                raise ValueError(f"wpmd_levels count must be 0..{NUM_LEVELS}, got {levels}")
            levels = tuple(range(levels))
        levels = tuple(sorted(set(int(i) for i in levels)))
        if any(not 0 <= i < NUM_LEVELS for i in levels):
            raise ValueError(f"wpmd_levels must be encoder levels 0..{NUM_LEVELS - 1}, got {levels}")
        object.__setattr__(self, "wpmd_levels", levels)

        if self.encoder_input not in ENCODER_INPUTS:
            raise ValueError(f"encoder_input must be one of {ENCODER_INPUTS}, got {self.encoder_input!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.decoder == "official" and self.fusion != "deep":
            raise ValueError("the official decoder only has deep fusion; use decoder='gad' for other fusions")
        for name in ("embed_dims", "depths", "num_heads", "window_sizes"):
            if len(getattr(self, name)) != NUM_LEVELS:
                raise ValueError(f"{name} needs {NUM_LEVELS} entries")

    @property
    def input_channels(self) -> int:
        """Channels the stem and the refinement head see: the 3 image channels, and the priors."""
        return 3 + (NUM_PRIORS if self.input_priors else 0)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "IRSAMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown IRSAMConfig fields: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "IRSAMConfig":
        return replace(self, **changes)


def _is_integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_list_of(value, is_item, length: int | None = None) -> bool:
    return (isinstance(value, (list, tuple)) and all(map(is_item, value))
            and (length is None or len(value) == length))


def _is_levels(value) -> bool:
    return _is_integer(value) or _is_list_of(value, _is_integer)  # a count n means the first n levels


# IRSAMConfig's field annotations -> (what a value must be, whether a value is one)
_TYPE_CHECKS = {
    "str": ("a string", lambda value: isinstance(value, str)),
    "int": ("an integer", _is_integer),
    "float": ("a finite number", _is_number),
    "bool": ("true or false", lambda value: isinstance(value, bool)),
    "tuple[int, ...]": ("a list of integers", lambda value: _is_list_of(value, _is_integer)),
    "tuple[float, float, float]": ("a list of 3 finite numbers", lambda value: _is_list_of(value, _is_number, 3)),
}
_FIELD_CHECKS = {f.name: _TYPE_CHECKS[f.type] for f in fields(IRSAMConfig)}
_FIELD_CHECKS["wpmd_levels"] = ("an integer or a list of integers", _is_levels)


def field_value_problem(name: str, value) -> str | None:
    """Why `value` cannot be IRSAMConfig's field `name` by its type: 'must be an integer, got "x"' (the value as
    JSON, as --set takes it); None when its type fits, or `name` is no field. Its range is for the config and the
    network to judge."""
    if name not in _FIELD_CHECKS:
        return None
    expected, fits = _FIELD_CHECKS[name]
    if fits(value):
        return None
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = repr(value)
    return f"must be {expected}, got {shown}"


def official() -> IRSAMConfig:
    """The released network (IPIC-Lab/IRSAM @ ec65744): loads official and MobileSAM state_dicts strictly."""
    return IRSAMConfig(
        name="official",
        encoder_input="upsample2x",
        wpmd_levels=(),
        decoder="official",
        fusion="deep",
        hires_refine=False,
        released_unused_params=True,
    )


def paper() -> IRSAMConfig:
    """The paper's full method: WPMD at all four levels, GAD shallow+deep, native-resolution encoder."""
    return IRSAMConfig(name="paper")


def tiny() -> IRSAMConfig:
    """A paper-shaped network small enough for fast unit tests on CPU."""
    return IRSAMConfig(
        name="tiny",
        embed_dims=(16, 32, 40, 48),
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 2, 2),
        window_sizes=(7, 7, 7, 7),
        embed_dim=32,
        transformer_depth=2,
        transformer_heads=2,
        transformer_mlp_dim=64,
        wpmd_steps=2,
    )


PRESETS = {"official": official, "paper": paper, "tiny": tiny}


def preset(name: str) -> IRSAMConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown config {name!r}; presets: {', '.join(PRESETS)}") from None
