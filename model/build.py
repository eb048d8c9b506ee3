"""Builders: one IRSAM network from one `IRSAMConfig`."""
from __future__ import annotations

from model.config import IRSAMConfig, preset
from model.image_encoder import ImageEncoder
from model.irsam import IRSAM
from model.mask_decoder import HighResRefinement, MaskDecoder
from model.prompt_encoder import PromptEncoder


def build_irsam(config: IRSAMConfig | str) -> IRSAM:
    """A freshly initialised IRSAM in eval mode; `config` is an `IRSAMConfig` or a preset name."""
    if isinstance(config, str):
        config = preset(config)
    model = IRSAM(
        config,
        image_encoder=ImageEncoder(config),
        prompt_encoder=PromptEncoder(config.embed_dim, config.released_unused_params),
        mask_decoder=MaskDecoder(config),
        refinement=HighResRefinement(config.embed_dims[0], image_channels=config.input_channels)
        if config.hires_refine else None,
    )
    return model.eval()
