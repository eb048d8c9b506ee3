"""The IRSAM network: preprocessing, image encoder, constant prompts, edge-token decoder, output resize."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import IRSAMConfig
from model.image_encoder import ImageEncoder
from model.mask_decoder import HighResRefinement, MaskDecoder
from model.priors import small_target_priors
from model.prompt_encoder import PromptEncoder


class IRSAMOutput(NamedTuple):
    mask_logits: Tensor  # (B, 1, H, W) at the input resolution; > 0 is target
    edge_probs: Tensor  # (B, 1, H, W) in [0, 1]
    # With return_features: "wpmd{level}.diffused" / "wpmd{level}.edge" (B, C_level, h, w) per WPMD
    # level, and "gad.shallow" / "gad.deep" / "gad.multi" (B, C/8, H'/4, W'/4) for the fused branches.
    features: dict[str, Tensor] | None


class IRSAM(nn.Module):
    """images (B, 3, H, W), float on the 0..255 scale -> `IRSAMOutput` at (H, W).

    The input is normalised, zero-padded (after normalisation) at the bottom/right to a multiple of the
    encoder stride, upsampled 2x for the official encoder input, and the outputs are resized bilinearly
    to the padded input and cropped back to (H, W). For a 512x512 input and the official config this
    is exactly the released forward pass.
    """

    def __init__(self, config: IRSAMConfig, image_encoder: ImageEncoder, prompt_encoder: PromptEncoder,
                 mask_decoder: MaskDecoder, refinement: HighResRefinement | None = None):
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.refinement = refinement
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def input_multiple(self) -> int:
        """Inputs whose sides are multiples of this need no internal padding."""
        stride = self.image_encoder.stride
        return stride // 2 if self.config.encoder_input == "upsample2x" else stride

    def forward(self, images: Tensor, return_features: bool = False) -> IRSAMOutput:
        h, w = images.shape[-2:]
        x = (images - self.pixel_mean) / self.pixel_std
        if self.config.input_priors:
            x = torch.cat([x, small_target_priors(images[:, :1])], dim=1)
        multiple = self.input_multiple
        pad_b, pad_r = (-h) % multiple, (-w) % multiple
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        padded_size = x.shape[-2:]
        encoder_input = F.interpolate(x, scale_factor=2, mode="nearest") if self.config.encoder_input == "upsample2x" else x

        encoded = self.image_encoder(encoder_input)
        grid = tuple(encoded.embedding.shape[-2:])
        decoded = self.mask_decoder(
            encoded.embedding,
            self.prompt_encoder.dense_pe(grid),
            self.prompt_encoder.dense_embedding(grid),
            shallow=encoded.levels[1],
        )
        mask = F.interpolate(decoded.mask_logits, size=padded_size, mode="bilinear", align_corners=False)
        edge = F.interpolate(decoded.edge_probs, size=padded_size, mode="bilinear", align_corners=False)
        if self.refinement is not None:
            mask = self.refinement(mask, x, encoded.levels[0])

        features = None
        if return_features:
            features = {}
            for level, maps in encoded.wpmd.items():
                features[f"wpmd{level}.diffused"] = maps.diffused
                features[f"wpmd{level}.edge"] = maps.edge
            features.update({f"gad.{name}": value for name, value in decoded.fusion.items()})
        return IRSAMOutput(mask[..., :h, :w], edge[..., :h, :w], features)
