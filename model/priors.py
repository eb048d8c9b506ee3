"""Hand-made small-target channels for the network input (`IRSAMConfig.input_priors`).

A network trained from scratch on 256 images has to learn what a small bright blob over a local
background is; the classical detectors already say it. Two such responses are given to the encoder
stem and the refinement head beside the normalised image, computed from the 0..255 gray input:

- white top-hat: the gray minus its opening by a TOPHAT_SIZE square (erosion then dilation), what sticks
  up from the background by less than the square's width;
- local contrast: the gray minus the mean of its LOCAL_SIZE square neighbourhood (edges replicated).

Both are divided by PRIOR_SCALE, about the spread the image channels have after their normalisation.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

TOPHAT_SIZE = 9
LOCAL_SIZE = 15
PRIOR_SCALE = 58.0


def small_target_priors(gray: Tensor) -> Tensor:
    """gray (B, 1, H, W) on the 0..255 scale -> (B, 2, H, W): top-hat and local contrast / PRIOR_SCALE."""
    half = TOPHAT_SIZE // 2
    eroded = -F.max_pool2d(F.pad(-gray, (half,) * 4, mode="replicate"), TOPHAT_SIZE, stride=1)
    opened = F.max_pool2d(F.pad(eroded, (half,) * 4, mode="replicate"), TOPHAT_SIZE, stride=1)
    half = LOCAL_SIZE // 2
    local_mean = F.avg_pool2d(F.pad(gray, (half,) * 4, mode="replicate"), LOCAL_SIZE, stride=1)
    return torch.cat([gray - opened, gray - local_mean], dim=1) / PRIOR_SCALE
