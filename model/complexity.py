"""Parameter and multiply-accumulate counts per config.

MACs are counted by `torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions,
transposed convolutions and attention; element-wise work is not counted), as flops / 2.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from model.build import build_irsam
from model.config import preset

# Below 32 px the coarsest feature maps of the wavelet levels vanish; the count runs a real forward pass
# on the CPU, and its time grows with the area (about 10 s for the paper config at 512).
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 2048


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _count_flops(model: nn.Module, input_size: tuple[int, int] | int) -> FlopCounterMode:
    """Run one (1, 3, H, W) forward pass under a flop counter, on the model's device (which may be "meta")."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    x = torch.zeros(1, 3, h, w, device=next(model.parameters()).device)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    params = list(model.parameters())
    requires_grad = [p.requires_grad for p in params]
    # The counter's module tracker trips over views of parameters that require grad under no_grad
    # (e.g. the broadcast prompt embedding), so parameters are frozen for the count.
    for p in params:
        p.requires_grad_(False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        for p, flag in zip(params, requires_grad):
            p.requires_grad_(flag)
        model.train(was_training)
    return counter


def count_macs_by_module(model: nn.Module, input_size: tuple[int, int] | int) -> dict[str, int]:
    """MACs of one forward pass per top-level submodule (e.g. image_encoder, mask_decoder), plus "total"."""
    counter = _count_flops(model, input_size)
    prefix = type(model).__name__ + "."
    macs = {
        name[len(prefix):]: sum(counts.values()) // 2
        for name, counts in counter.get_flop_counts().items()
        if name.startswith(prefix) and "." not in name[len(prefix):]
    }
    macs["total"] = counter.get_total_flops() // 2
    return macs


def complexity_report(config_name: str, input_size: int = 512) -> dict:
    """Parameters and GMACs of a preset at an `input_size` x `input_size` input (the frame size).
    Raises ValueError for a size outside MIN_INPUT_SIZE..MAX_INPUT_SIZE."""
    if not MIN_INPUT_SIZE <= input_size <= MAX_INPUT_SIZE:
        raise ValueError(f"input size must be {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE} pixels, got {input_size}")
    config = preset(config_name)
    model = build_irsam(config)
    macs = count_macs_by_module(model, input_size)
    total = macs.pop("total")
    return {
        "config": config_name,
        "parameters": count_parameters(model),
        "input_size": input_size,
        "encoder_input_size": 2 * input_size if config.encoder_input == "upsample2x" else input_size,
        "gmacs": total / 1e9,
        "gmacs_by_module": {name: value / 1e9 for name, value in macs.items()},
    }
