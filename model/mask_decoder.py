"""Edge-token mask decoder: the released deep-fusion variant and the Granularity-Aware Decoder (GAD).

Both variants run SAM's two-way transformer over [iou, 4 mask, edge] tokens and the image tokens,
upscale the image tokens 4x (X_coarse_up), and predict
    edge = sigmoid(MLP(T_edge) . X_fine),   mask = (MLP(T_mask0) . X_coarse_up) * (1 + edge)
They differ in X_fine = embedding_maskfeature(X_coarse_up) + fused features:
    official: embedding_encoder(embedding)          (deep features only)
    gad:      MultiGranularityFusion(shallow, embedding), fusion none / shallow / deep / both
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import IRSAMConfig
from model.gad import MultiGranularityFusion
from model.image_encoder import LayerNorm2d
from model.transformer import TwoWayTransformer


class MLP(nn.Module):
    """Linear layers with ReLU between them. (..., input_dim) -> (..., output_dim)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def upscaler_4x(in_channels: int, hidden: int, out_channels: int, final_gelu: bool) -> nn.Sequential:
    """ConvT(2, s2) -> LayerNorm2d -> GELU -> ConvT(2, s2) [-> GELU]: (B, Cin, h, w) -> (B, Cout, 4h, 4w)."""
    layers = [
        nn.ConvTranspose2d(in_channels, hidden, 2, stride=2), LayerNorm2d(hidden), nn.GELU(),
        nn.ConvTranspose2d(hidden, out_channels, 2, stride=2),
    ]
    if final_gelu:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


def mask_feature_refiner(channels: int, hidden: int) -> nn.Sequential:
    """Two size-preserving 3x3 transposed convs (kept as ConvTranspose2d so released weights load as-is)."""
    return nn.Sequential(
        nn.ConvTranspose2d(channels, hidden, 3, padding=1), LayerNorm2d(hidden), nn.GELU(),
        nn.ConvTranspose2d(hidden, channels, 3, padding=1),
    )


class DecoderOutput(NamedTuple):
    mask_logits: Tensor  # (B, 1, 4h, 4w), already refined by the edge
    edge_probs: Tensor  # (B, 1, 4h, 4w)
    tokens: Tensor  # (B, 6, C): transformer output tokens [iou, mask x4, edge]
    fusion: dict[str, Tensor]  # GAD only: "shallow", "deep", "multi" (B, C/8, 4h, 4w) where present


class MaskDecoder(nn.Module):
    """embedding (B, C, h, w) + prompts (+ shallow (B, Cs, 2h, 2w) for GAD) -> `DecoderOutput`."""

    def __init__(self, config: IRSAMConfig):
        super().__init__()
        dim = config.embed_dim
        self.variant = config.decoder
        self.num_mask_tokens = config.num_mask_tokens
        self.transformer = TwoWayTransformer(
            config.transformer_depth, dim, config.transformer_heads, config.transformer_mlp_dim,
            config.attention_downsample_rate,
        )
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(config.num_mask_tokens, dim)
        self.edge_token = nn.Embedding(1, dim)
        self.output_upscaling = upscaler_4x(dim, dim // 4, dim // 8, final_gelu=True)
        # Only mask token 0 is ever decoded; the released network has hypernetworks for all four.
        num_hypernetworks = config.num_mask_tokens if config.released_unused_params else 1
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(num_hypernetworks))
        self.edge_mlp = MLP(dim, dim, dim // 8, 3)
        self.embedding_maskfeature = mask_feature_refiner(dim // 8, dim // 4)
        if config.decoder == "official":
            self.embedding_encoder = upscaler_4x(dim, dim // 4, dim // 8, final_gelu=False)
        else:
            self.fusion = MultiGranularityFusion(config.embed_dims[1], dim, dim // 8, mode=config.fusion)
        if config.released_unused_params:
            self.iou_prediction_head = MLP(dim, 256, config.num_mask_tokens, 3)
            self.compress_vit_feat = upscaler_4x(config.embed_dims[2], dim, dim // 8, final_gelu=False)

    def forward(self, embedding: Tensor, dense_pe: Tensor, dense_embedding: Tensor,
                shallow: Tensor | None = None) -> DecoderOutput:
        """
        embedding: (B, C, h, w) image embedding; dense_pe, dense_embedding: (1, C, h, w);
        shallow: (B, Cs, 2h, 2w) encoder level 1 (1/8 grid), used by GAD's shallow fusion.
        """
        b, c, h, w = embedding.shape
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.edge_token.weight])
        tokens = tokens[None].expand(b, -1, -1)
        tokens, image_tokens = self.transformer(embedding + dense_embedding, dense_pe, tokens)
        # A channels-last view of the image tokens: no copy, and the transposed convs run faster.
        coarse_up = self.output_upscaling(image_tokens.view(b, h, w, c).permute(0, 3, 1, 2))

        fusion: dict[str, Tensor] = {}
        fine = self.embedding_maskfeature(coarse_up)
        if self.variant == "official":
            fine = fine + self.embedding_encoder(embedding)
        else:
            multi, shallow_feat, deep_feat = self.fusion.forward_with_branches(shallow, embedding, coarse_up.shape[-2:])
            if multi is not None:
                fine = fine + multi
                fusion["multi"] = multi
            if shallow_feat is not None:
                fusion["shallow"] = shallow_feat
            if deep_feat is not None:
                fusion["deep"] = deep_feat

        mask_weights = self.output_hypernetworks_mlps[0](tokens[:, 1])  # (B, C/8)
        edge_weights = self.edge_mlp(tokens[:, 1 + self.num_mask_tokens])  # (B, C/8)
        mask = torch.einsum("bc,bchw->bhw", mask_weights, coarse_up)[:, None]
        edge = torch.sigmoid(torch.einsum("bc,bchw->bhw", edge_weights, fine)[:, None])
        return DecoderOutput(mask * (1 + edge), edge, tokens, fusion)


class HighResRefinement(nn.Module):
    """Residual on the mask logits at full input resolution, so 1-3 px targets survive the 1/4 grid.

    logits (B, 1, H, W), image (B, C, H, W) normalised (C = 3, or 5 with the input priors), stem
    (B, Cs, H/4, W/4) -> logits (B, 1, H, W). The last conv starts at zero: a fresh refinement adds nothing.
    """

    def __init__(self, stem_channels: int, stem_proj: int = 8, hidden: int = 8, image_channels: int = 3):
        super().__init__()
        self.stem_proj = nn.Conv2d(stem_channels, stem_proj, 1)
        # Two 3x3 convs (5x5 receptive field at full resolution); wider context comes from the stem.
        self.body = nn.Sequential(
            nn.Conv2d(1 + image_channels + stem_proj, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, logits: Tensor, image: Tensor, stem: Tensor) -> Tensor:
        # Project before upsampling: the stem's 64 channels never exist at full resolution.
        stem = F.interpolate(self.stem_proj(stem), size=logits.shape[-2:], mode="bilinear", align_corners=False)
        # the input priors (image channels after the first 3) come last, so weights without them widen by
        # appending input channels (model.checkpoint.init_from_pretrained)
        return logits + self.body(torch.cat([logits, image[:, :3], stem, image[:, 3:]], dim=1))
