"""Prompt-free prompt encoder: IRSAM never receives points, boxes or masks.

What remains of SAM's prompt encoder is a learned dense embedding (`no_mask_embed`) added to every
image token, and the random-Fourier positional encoding of the token grid.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from model.image_encoder import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random-Fourier positional encoding of normalised (x, y) coordinates."""

    def __init__(self, num_pos_feats: int):
        super().__init__()
        # Persistent: it is part of the released state_dicts and must be loaded, not re-drawn.
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def forward(self, size: tuple[int, int]) -> Tensor:
        """(h, w) -> (2 * num_pos_feats, h, w) for pixel centres ((j + 0.5) / w, (i + 0.5) / h)."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        y = (torch.arange(h, device=matrix.device, dtype=matrix.dtype) + 0.5) / h
        x = (torch.arange(w, device=matrix.device, dtype=matrix.dtype) + 0.5) / w
        coords = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)
        coords = 2 * math.pi * ((2 * coords - 1) @ matrix)
        return torch.cat([coords.sin(), coords.cos()], dim=-1).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Constant prompt embeddings for an image embedding of any grid size.

    With `released_unused_params` it also holds SAM's point/mask prompt modules and IRSAM's `pe_layer_2`,
    which the released network carries but never calls, so released state_dicts load strictly.
    """

    def __init__(self, embed_dim: int, released_unused_params: bool = False):
        super().__init__()
        self.embed_dim = embed_dim
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        if released_unused_params:
            self.pe_layer_2 = PositionEmbeddingRandom(embed_dim // 8)
            self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
            self.not_a_point_embed = nn.Embedding(1, embed_dim)
            self.mask_downscaling = nn.Sequential(
                nn.Conv2d(1, 4, 2, stride=2), LayerNorm2d(4), nn.GELU(),
                nn.Conv2d(4, 16, 2, stride=2), LayerNorm2d(16), nn.GELU(),
                nn.Conv2d(16, embed_dim, 1),
            )

    def dense_pe(self, grid: tuple[int, int]) -> Tensor:
        """Positional encoding of the image tokens: (1, embed_dim, h, w)."""
        return self.pe_layer(grid)[None]

    def dense_embedding(self, grid: tuple[int, int]) -> Tensor:
        """The 'no mask' prompt broadcast over the grid: (1, embed_dim, h, w)."""
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *grid)
