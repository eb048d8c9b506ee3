"""Multi-granularity fusion of the Granularity-Aware Decoder (GAD), paper Sec. 3.3, Eq. 5-9.

    X_multi = Conv(ReLU(Norm(Conv(X_shallow)))) + TConv(ReLU(Norm(TConv(X_deep))))

X_shallow is encoder level 1 (1/8 of the encoder input), X_deep the encoder embedding
(1/16); both branches end on the decoder's output grid (1/4). Layers:

- shallow: Conv3x3(Cs -> 2*out) -> LayerNorm2d -> ReLU -> ConvT2x2/s2(2*out -> out). The outer
  "Conv" of Eq. 6 is a stride-2 transposed convolution: it is what brings 1/8 to 1/4, and it costs
  as much as a 1x1 convolution on the 1/4 grid.
- deep: ConvT2x2/s2(Cd -> 2*out) -> LayerNorm2d -> ReLU -> ConvT2x2/s2(2*out -> out), the layout of
  the official `embedding_encoder` with ReLU in place of GELU as Eq. 7 says.

Norm is LayerNorm2d (LayerNorm over channels at every pixel, eps 1e-6), the norm SAM's decoder uses.

Mode "none" / "shallow" / "deep" / "both" selects the branches (Table 5); only the modules of the
selected branches exist, so state_dicts and parameter counts differ per mode.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from model.config import FUSIONS
from model.image_encoder import LayerNorm2d

def fit_to_grid(x: Tensor, out_size: tuple[int, int]) -> Tensor:
    """Bring (B, C, h, w) to (B, C, *out_size).

    The encoder's stride-2 layers round sizes up and anchor their grids at the top-left pixel, so an
    upsampled level that is larger than the output grid only has extra rows/columns at the bottom/
    right that cover padding: those are cropped, which keeps pixels aligned. Any other mismatch is
    resized bilinearly.
    """
    h, w = x.shape[-2:]
    out_h, out_w = out_size
    if (h, w) == (out_h, out_w):
        return x
    if h >= out_h and w >= out_w:
        return x[..., :out_h, :out_w]
    return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)


class MultiGranularityFusion(nn.Module):
    def __init__(
        self,
        shallow_channels: int = 128,
        deep_channels: int = 256,
        out_channels: int = 32,
        mode: str = "both",
    ) -> None:
        """
        Arguments:
          shallow_channels (int): channels Cs of encoder level 1 (1/8 grid).
          deep_channels (int): channels Cd of the encoder embedding (1/16 grid).
          out_channels (int): channels of the decoder's upscaled features (1/4 grid).
          mode (str): which branches are fused: "none", "shallow", "deep" or "both".
        """
        super().__init__()
        if mode not in FUSIONS:
            raise ValueError(f"mode must be one of {FUSIONS}, got {mode!r}")
        self.mode = mode
        hidden = 2 * out_channels
        self.shallow_branch: nn.Sequential | None = None
        self.deep_branch: nn.Sequential | None = None
        if mode in ("shallow", "both"):
            self.shallow_branch = nn.Sequential(
                nn.Conv2d(shallow_channels, hidden, kernel_size=3, padding=1),
                LayerNorm2d(hidden),
                nn.ReLU(),
                nn.ConvTranspose2d(hidden, out_channels, kernel_size=2, stride=2),
            )
        if mode in ("deep", "both"):
            self.deep_branch = nn.Sequential(
                nn.ConvTranspose2d(deep_channels, hidden, kernel_size=2, stride=2),
                LayerNorm2d(hidden),
                nn.ReLU(),
                nn.ConvTranspose2d(hidden, out_channels, kernel_size=2, stride=2),
            )

    def forward_with_branches(
        self,
        shallow: Tensor | None,
        deep: Tensor | None,
        out_size: tuple[int, int],
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """
        Arguments:
          shallow (Tensor or None): (B, Cs, H/8, W/8); required for modes "shallow" and "both".
          deep (Tensor or None): (B, Cd, H/16, W/16); required for modes "deep" and "both".
          out_size (tuple(int, int)): (h, w) of the decoder's output grid (about H/4, W/4).

        Returns:
          (Tensor or None): X_multi, (B, out_channels, h, w); None for mode "none".
          (Tensor or None): the shallow branch's output, (B, out_channels, h, w), or None.
          (Tensor or None): the deep branch's output, (B, out_channels, h, w), or None.
        """
        shallow_feat = deep_feat = None
        if self.shallow_branch is not None:
            if shallow is None:
                raise ValueError(f"mode {self.mode!r} needs the shallow features")
            shallow_feat = fit_to_grid(self.shallow_branch(shallow), out_size)
        if self.deep_branch is not None:
            if deep is None:
                raise ValueError(f"mode {self.mode!r} needs the deep features")
            deep_feat = fit_to_grid(self.deep_branch(deep), out_size)
        if shallow_feat is not None and deep_feat is not None:
            multi = shallow_feat + deep_feat
        else:
            multi = shallow_feat if shallow_feat is not None else deep_feat
        return multi, shallow_feat, deep_feat

    def forward(
        self,
        shallow: Tensor | None,
        deep: Tensor | None,
        out_size: tuple[int, int],
    ) -> Tensor | None:
        """X_multi, (B, out_channels, *out_size), or None for mode "none".

        See `forward_with_branches` for the arguments.
        """
        return self.forward_with_branches(shallow, deep, out_size)[0]
