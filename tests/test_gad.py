import pytest
import torch

from model.config import FUSIONS
from model.gad import MultiGranularityFusion, fit_to_grid
from model.image_encoder import LayerNorm2d

CS, CD, OUT = 16, 24, 8


def features(encoder_size: tuple[int, int], batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Shallow (1/8) and deep (1/16) features of an encoder input, sizes rounded up."""
    h, w = encoder_size
    shallow = torch.randn(batch, CS, -(-h // 8), -(-w // 8))
    deep = torch.randn(batch, CD, -(-h // 16), -(-w // 16))
    return shallow, deep


@pytest.mark.parametrize("mode", ["shallow", "deep", "both"])
@pytest.mark.parametrize("encoder_size", [(320, 256), (128, 128), (200, 104)])
def test_output_shapes(mode, encoder_size):
    torch.manual_seed(0)
    fusion = MultiGranularityFusion(CS, CD, OUT, mode=mode)
    shallow, deep = features(encoder_size)
    out_size = (-(-encoder_size[0] // 4), -(-encoder_size[1] // 4))
    multi, shallow_feat, deep_feat = fusion.forward_with_branches(shallow, deep, out_size)
    assert multi.shape == (2, OUT, *out_size)
    assert (shallow_feat is not None) == (mode in ("shallow", "both"))
    assert (deep_feat is not None) == (mode in ("deep", "both"))
    for branch in (shallow_feat, deep_feat):
        if branch is not None:
            assert branch.shape == (2, OUT, *out_size)
    torch.testing.assert_close(fusion(shallow, deep, out_size), multi)


def test_non_square_grid_of_the_spec():
    fusion = MultiGranularityFusion(CS, CD, OUT)
    shallow, deep = torch.randn(1, CS, 40, 32), torch.randn(1, CD, 20, 16)
    assert fusion(shallow, deep, (80, 64)).shape == (1, OUT, 80, 64)


def test_both_is_the_sum_of_the_branches():
    fusion = MultiGranularityFusion(CS, CD, OUT)
    shallow, deep = features((64, 96))
    multi, shallow_feat, deep_feat = fusion.forward_with_branches(shallow, deep, (16, 24))
    torch.testing.assert_close(multi, shallow_feat + deep_feat)


def test_mode_none_returns_none_and_has_no_parameters():
    fusion = MultiGranularityFusion(CS, CD, OUT, mode="none")
    assert fusion(None, None, (8, 8)) is None
    assert fusion.forward_with_branches(*features((32, 32)), (8, 8)) == (None, None, None)
    assert sum(p.numel() for p in fusion.parameters()) == 0


def test_parameters_exist_only_for_the_selected_branches():
    counts = {
        mode: sum(p.numel() for p in MultiGranularityFusion(CS, CD, OUT, mode).parameters())
        for mode in FUSIONS
    }
    assert counts["none"] == 0
    assert 0 < counts["shallow"] != counts["deep"] > 0
    assert counts["both"] == counts["shallow"] + counts["deep"]

    keys = set(MultiGranularityFusion(CS, CD, OUT, "both").state_dict())
    shallow_keys = set(MultiGranularityFusion(CS, CD, OUT, "shallow").state_dict())
    deep_keys = set(MultiGranularityFusion(CS, CD, OUT, "deep").state_dict())
    assert keys == shallow_keys | deep_keys and not shallow_keys & deep_keys
    assert all(key.startswith("shallow_branch.") for key in shallow_keys)
    assert all(key.startswith("deep_branch.") for key in deep_keys)


def test_default_parameter_count():
    # shallow: 3x3 conv 128->64, LN(64), ConvT 2x2 64->32
    # deep: ConvT 2x2 256->64, LN(64), ConvT 2x2 64->32
    shallow = (128 * 64 * 9 + 64) + 2 * 64 + (64 * 32 * 4 + 32)
    deep = (256 * 64 * 4 + 64) + 2 * 64 + (64 * 32 * 4 + 32)
    fusion = MultiGranularityFusion()
    assert sum(p.numel() for p in fusion.parameters()) == shallow + deep


def test_missing_input_is_refused():
    shallow, deep = features((64, 64))
    with pytest.raises(ValueError):
        MultiGranularityFusion(CS, CD, OUT, "both")(shallow, None, (16, 16))
    with pytest.raises(ValueError):
        MultiGranularityFusion(CS, CD, OUT, "shallow")(None, deep, (16, 16))
    deep_only = MultiGranularityFusion(CS, CD, OUT, "deep")
    assert deep_only(None, deep, (16, 16)).shape == (2, OUT, 16, 16)


def test_invalid_mode_is_refused():
    with pytest.raises(ValueError):
        MultiGranularityFusion(mode="shallow+deep")


def test_gradients_flow_to_inputs_and_every_parameter():
    torch.manual_seed(0)
    fusion = MultiGranularityFusion(CS, CD, OUT)
    shallow, deep = features((96, 64))
    shallow.requires_grad_(True)
    deep.requires_grad_(True)
    fusion(shallow, deep, (24, 16)).square().mean().backward()
    for name, parameter in fusion.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert shallow.grad.abs().sum() > 0 and deep.grad.abs().sum() > 0


def test_fit_to_grid_crops_rounding_excess_and_resizes_otherwise():
    x = torch.arange(2 * 3 * 26 * 14, dtype=torch.float32).view(2, 3, 26, 14)
    assert torch.equal(fit_to_grid(x, (25, 13)), x[..., :25, :13])
    assert fit_to_grid(x, (30, 10)).shape == (2, 3, 30, 10)
    assert fit_to_grid(x, (26, 14)) is x


def test_layernorm2d_normalises_channels():
    x = torch.randn(2, 5, 3, 4) * 3 + 1
    y = LayerNorm2d(5)(x)
    torch.testing.assert_close(y.mean(1), torch.zeros(2, 3, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(1, unbiased=False), torch.ones(2, 3, 4), atol=1e-4, rtol=0)
