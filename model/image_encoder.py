"""TinyViT image encoder (MobileSAM's `image_encoder`, TinyViT-5M by default) with optional WPMD blocks.

Parameter names follow MobileSAM so its weights (and the official IRSAM weights) load as they are.
Unlike the released code, the token grid is derived from the input, so the encoder runs at 1024 (the
grid MobileSAM was trained on) or natively at any multiple of `ImageEncoder.stride`.

Encoder levels (outputs of each stage's blocks, before its downsampling), for input (H, W):
    level 0: (B, 64, H/4, W/4)     level 1: (B, 128, H/8, W/8)
    level 2: (B, 160, H/16, W/16)  level 3: (B, 320, H/16, W/16)
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.config import IRSAMConfig
from model.wpmd import WPMD


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # On channels-last maps (the encoder's and decoder's layout) the permuted view is contiguous.
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Conv2dBN(nn.Sequential):
    """Bias-free convolution followed by BatchNorm (submodules `c` and `bn`, as in TinyViT)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.bn(self.c(x))
        # In eval the BatchNorm is an affine map: fold it into the conv, saving a pass over the activations.
        conv, bn = self.c, self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class PatchEmbed(nn.Module):
    """Stem: two stride-2 Conv-BN. (B, C, H, W) -> (B, dim, H/4, W/4); C = 3, or 5 with the input priors."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(in_channels, dim // 2, 3, 2), nn.GELU(), Conv2dBN(dim // 2, dim, 3, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, dim: int, expand_ratio: float):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.conv2 = Conv2dBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = Conv2dBN(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Channel change and (stride 2) downsampling between stages. (B, C, H, W) -> (B, H', W', C')."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return self.conv3(x).permute(0, 2, 3, 1)


class WindowAttention(nn.Module):
    """Multi-head attention inside one window with a learned relative-position bias.

    (num_windows, N = window^2, C) -> (num_windows, N, C). The bias table holds one value per head and
    per (|drow|, |dcol|) offset, so it does not depend on the image size.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        rows, cols = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()
        offsets = (rows[:, None] - rows[None]).abs() * window_size + (cols[:, None] - cols[None]).abs()
        self.register_buffer("attention_bias_idxs", offsets, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        # qkv is laid out per head as [q | k | v], not as (3, heads, head_dim).
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim).transpose(1, 2)
        q, k, v = qkv.split(self.head_dim, dim=-1)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        # Explicit attention: for 49- and 196-token windows it is faster on CPU than
        # scaled_dot_product_attention with a float mask.
        attn = torch.matmul(q * self.head_dim**-0.5, k.transpose(-2, -1)) + bias
        out = torch.matmul(attn.softmax(dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class MLP(nn.Module):
    """Pre-norm feed-forward block. (..., C) -> (..., C)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention, depthwise local conv, MLP. (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int):
        super().__init__()
        self.window_size = window_size
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, groups=dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        pad_b, pad_r = (-h) % ws, (-w) % ws
        # Zero padding without an attention mask: padded tokens take part, as in the released model.
        windows = F.pad(x, (0, 0, 0, pad_r, 0, pad_b)) if pad_b or pad_r else x
        ph, pw = h + pad_b, w + pad_r
        windows = windows.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        windows = self.attn(windows)
        attended = windows.view(b, ph // ws, pw // ws, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        x = x + attended[:, :h, :w]
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class WPMDFeatures(NamedTuple):
    diffused: Tensor  # (B, C, h, w)
    edge: Tensor  # (B, C, h, w)


class EncoderOutput(NamedTuple):
    embedding: Tensor  # (B, embed_dim, H/16, W/16)
    levels: list[Tensor]  # four (B, C_i, h_i, w_i) level outputs, after WPMD where present
    wpmd: dict[int, WPMDFeatures]  # per WPMD level


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks, then PatchMerging."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: Tensor) -> Tensor:
        """Blocks only: (B, C, H, W) -> (B, C, H, W)."""
        for block in self.blocks:
            x = block(x)
        return x


class AttentionStage(nn.Module):
    """Stages 1-3: TinyViT blocks, then PatchMerging (none after the last stage)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 local_conv_size: int, out_dim: int | None, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size) for _ in range(depth)
        )
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: Tensor) -> Tensor:
        """Blocks only: (B, H, W, C) -> (B, C, H, W)."""
        for block in self.blocks:
            x = block(x)
        return x.permute(0, 3, 1, 2)


class ImageEncoder(nn.Module):
    """TinyViT + neck. (B, C, H, W), C = 3 (5 with the input priors), H and W multiples of `stride`
    -> `EncoderOutput`."""

    stride = 16

    def __init__(self, config: IRSAMConfig):
        super().__init__()
        dims, depths = config.embed_dims, config.depths
        self.patch_embed = PatchEmbed(config.input_channels, dims[0])
        stages: list[nn.Module] = [
            ConvStage(dims[0], depths[0], config.mbconv_expand_ratio, dims[1], stride=2)
        ]
        for i in range(1, len(dims)):
            last = i == len(dims) - 1
            stages.append(AttentionStage(
                dims[i], depths[i], config.num_heads[i], config.window_sizes[i], config.mlp_ratio,
                config.local_conv_size,
                out_dim=None if last else dims[i + 1],
                # Into the last stage the resolution stays at 1/16.
                stride=1 if i == len(dims) - 2 else 2,
            ))
        self.layers = nn.ModuleList(stages)
        if config.released_unused_params:
            self.norm_head = nn.LayerNorm(dims[-1])
            self.head = nn.Linear(dims[-1], 1000)
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], config.embed_dim, 1, bias=False),
            LayerNorm2d(config.embed_dim),
            nn.Conv2d(config.embed_dim, config.embed_dim, 3, padding=1, bias=False),
            LayerNorm2d(config.embed_dim),
        )
        if config.wpmd_levels:
            self.wpmd = nn.ModuleDict({
                str(i): WPMD(dims[i], config.wpmd_steps) for i in config.wpmd_levels
            })
        else:
            self.wpmd = None

    def forward(self, x: Tensor) -> EncoderOutput:
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(f"encoder input {tuple(x.shape[-2:])} is not a multiple of {self.stride}")
        levels: list[Tensor] = []
        wpmd: dict[int, WPMDFeatures] = {}
        # Channels-last throughout: depthwise convs are several times faster on CPU in this layout, and
        # the (B, H, W, C) tokens of the attention stages become free views of the conv outputs.
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for i, stage in enumerate(self.layers):
            features = stage(x)
            if self.wpmd is not None and str(i) in self.wpmd:
                result = self.wpmd[str(i)](features)
                features = result.out
                wpmd[i] = WPMDFeatures(result.diffused, result.edge)
            levels.append(features)
            if stage.downsample is not None:
                x = stage.downsample(features)
        embedding = self.neck(features)
        return EncoderOutput(embedding, levels, wpmd)
