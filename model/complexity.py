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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: tuple[int, int] | int, per_module: bool = False):
    """MACs of one forward pass on a (1, 3, H, W) input, on the model's device (which may be "meta").

    With `per_module`, also returns {module name: MACs} for the top-level submodules.
    """
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
    total = counter.get_total_flops() // 2
    if not per_module:
        return total
    prefix = type(model).__name__ + "."
    modules = {
        name[len(prefix):]: sum(counts.values()) // 2
        for name, counts in counter.get_flop_counts().items()
        if name.startswith(prefix) and "." not in name[len(prefix):]
    }
    return total, modules


def complexity_report(config_name: str, input_size: int = 512) -> dict:
    """Parameters and GMACs of a preset at an `input_size` x `input_size` input (the frame size)."""
    config = preset(config_name)
    model = build_irsam(config)
    total, modules = count_macs(model, input_size, per_module=True)
    encoder_size = 2 * input_size if config.encoder_input == "upsample2x" else input_size
    return {
        "config": config_name,
        "parameters": count_parameters(model),
        "input_size": input_size,
        "encoder_input_size": encoder_size,
        "gmacs": total / 1e9,
        "gmacs_by_module": {name: macs / 1e9 for name, macs in modules.items()},
    }
