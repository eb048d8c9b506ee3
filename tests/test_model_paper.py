"""The `paper` config and its switches: native token grid, WPMD, GAD fusion, refinement, feature API."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.build import build_irsam
from model.checkpoint import init_from_pretrained, load_into, load_state_dict_file
from model.complexity import complexity_report, count_parameters
from model.config import IRSAMConfig, official, paper, tiny

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "irsam-official"


def images(h: int, w: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 1, h, w), generator=g).float().expand(-1, 3, -1, -1)


def run(model, x, **kwargs):
    with torch.inference_mode():
        return model(x, **kwargs)


def embedding_grid(model, x) -> tuple[int, int]:
    captured = {}
    handle = model.image_encoder.register_forward_hook(lambda m, i, out: captured.__setitem__("e", out.embedding))
    run(model, x)
    handle.remove()
    return tuple(captured["e"].shape[-2:])


def test_presets():
    assert official().encoder_input == "upsample2x" and official().wpmd_levels == ()
    p = paper()
    assert (p.encoder_input, p.wpmd_levels, p.decoder, p.fusion, p.hires_refine) == (
        "native", (0, 1, 2, 3), "gad", "both", True)


def test_config_round_trip_and_validation():
    config = tiny().replace(wpmd_levels=2, fusion="shallow")
    assert config.wpmd_levels == (0, 1)
    assert IRSAMConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError):
        tiny().replace(fusion="sideways")
    with pytest.raises(ValueError):
        tiny().replace(wpmd_levels=(4,))
    with pytest.raises(ValueError):
        tiny().replace(decoder="official", fusion="both")
    with pytest.raises(ValueError):
        IRSAMConfig.from_dict({**tiny().to_dict(), "colour": "red"})


@pytest.mark.parametrize("size, grid", [((512, 512), (32, 32)), ((320, 256), (20, 16)), ((300, 250), (19, 16))])
def test_native_token_grid_follows_the_input(size, grid):
    model = build_irsam(tiny())
    x = images(*size)
    assert embedding_grid(model, x) == grid
    out = run(model, x)
    assert out.mask_logits.shape == out.edge_probs.shape == (1, 1, *size)
    assert model.prompt_encoder.dense_pe(grid).shape == (1, tiny().embed_dim, *grid)


def test_upsample2x_input_keeps_the_official_grid_and_output_size():
    model = build_irsam(tiny().replace(encoder_input="upsample2x"))
    x = images(128, 96)
    assert embedding_grid(model, x) == (16, 12)
    assert run(model, x).mask_logits.shape == (1, 1, 128, 96)


def test_wpmd_with_zero_projection_keeps_the_pretrained_encoder_exactly():
    """A paper encoder initialised from official weights computes what the official encoder computes."""
    state_dict = load_state_dict_file(FIXTURES / "random_state.pt")
    reference = build_irsam(official().replace(encoder_input="native"))
    load_into(reference, state_dict)
    model = build_irsam(paper())
    report = init_from_pretrained(model, state_dict)
    assert all(name.startswith("image_encoder.wpmd.") for name in report.fresh if name.startswith("image_encoder."))
    model.eval()
    x = (images(64, 96) - model.pixel_mean) / model.pixel_std
    with torch.inference_mode():
        ours, theirs = model.image_encoder(x), reference.image_encoder(x)
    assert torch.equal(ours.embedding, theirs.embedding)
    for a, b in zip(ours.levels, theirs.levels):
        assert torch.equal(a, b)
    assert sorted(ours.wpmd) == [0, 1, 2, 3] and not theirs.wpmd


@pytest.mark.parametrize("count", range(5))
def test_wpmd_count(count):
    config = tiny().replace(wpmd_levels=count)
    model = build_irsam(config)
    blocks = model.image_encoder.wpmd or {}
    assert sorted(int(k) for k in blocks) == list(range(count))
    out = run(model, images(64, 64), return_features=True)
    names = {k for k in out.features if k.startswith("wpmd")}
    assert names == {f"wpmd{i}.{kind}" for i in range(count) for kind in ("diffused", "edge")}


def test_fusion_modes_change_modules_parameters_and_features():
    params, features = {}, {}
    for mode in ("none", "shallow", "deep", "both"):
        model = build_irsam(tiny().replace(fusion=mode))
        params[mode] = sum(p.numel() for p in model.parameters())
        keys = model.state_dict().keys()
        assert any(".shallow_branch." in k for k in keys) == (mode in ("shallow", "both"))
        assert any(".deep_branch." in k for k in keys) == (mode in ("deep", "both"))
        out = run(model, images(64, 96), return_features=True)
        assert out.mask_logits.shape == (1, 1, 64, 96)
        features[mode] = {k for k in out.features if k.startswith("gad.")}
    assert params["none"] < params["shallow"] < params["both"]
    assert params["none"] < params["deep"] < params["both"]
    assert params["both"] - params["none"] == (params["shallow"] - params["none"]) + (params["deep"] - params["none"])
    assert features == {
        "none": set(),
        "shallow": {"gad.shallow", "gad.multi"},
        "deep": {"gad.deep", "gad.multi"},
        "both": {"gad.shallow", "gad.deep", "gad.multi"},
    }


def test_feature_api_shapes():
    config = tiny()
    model = build_irsam(config)
    out = run(model, images(128, 96, batch=2), return_features=True)
    assert out.mask_logits.shape == (2, 1, 128, 96)
    assert ((out.edge_probs >= 0) & (out.edge_probs <= 1)).all()
    strides = (4, 8, 16, 16)
    for level, (channels, stride) in enumerate(zip(config.embed_dims, strides)):
        for kind in ("diffused", "edge"):
            assert out.features[f"wpmd{level}.{kind}"].shape == (2, channels, 128 // stride, 96 // stride)
    for name in ("gad.shallow", "gad.deep", "gad.multi"):
        assert out.features[name].shape == (2, config.embed_dim // 8, 32, 24)
    assert run(model, images(128, 96)).features is None


def test_hires_refinement_is_small_and_starts_as_identity():
    with_refine = build_irsam(tiny())
    without = build_irsam(tiny().replace(hires_refine=False))
    report = init_from_pretrained(without, with_refine.state_dict())
    assert not report.fresh
    assert all(name.startswith("refinement.") for name in report.ignored)
    assert sum(p.numel() for p in build_irsam(paper()).refinement.parameters()) < 5000
    x = images(96, 64)
    assert torch.equal(run(with_refine, x).mask_logits, run(without, x).mask_logits)


def test_every_paper_parameter_is_trained():
    """No dead parameters in the paper network (DDP needs no find_unused_parameters)."""
    model = build_irsam(tiny()).train()
    out = model(images(64, 64, batch=2))
    (out.mask_logits.mean() + out.edge_probs.mean()).backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    assert torch.isfinite(out.mask_logits).all()


def test_batch_items_are_independent():
    model = build_irsam(tiny())
    x = torch.cat([images(64, 96, seed=1), images(64, 96, seed=2)])
    together = run(model, x).mask_logits
    alone = torch.cat([run(model, x[:1]).mask_logits, run(model, x[1:]).mask_logits])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_complexity_report():
    report = complexity_report("tiny", input_size=64)
    assert report["parameters"] == count_parameters(build_irsam(tiny()))
    assert report["encoder_input_size"] == 64
    assert set(report["gmacs_by_module"]) == {"image_encoder", "mask_decoder", "refinement"}
    # Only the positional encoding (a method, not a submodule call) is outside the three modules.
    assert sum(report["gmacs_by_module"].values()) == pytest.approx(report["gmacs"], rel=1e-3)


def test_input_priors_respond_to_a_small_bright_blob_only():
    from model.priors import PRIOR_SCALE, small_target_priors

    gray = torch.full((1, 1, 40, 50), 80.0)
    gray[0, 0, :, 30:] = 140.0  # a step edge: wider than the top-hat's square, not a target
    gray[0, 0, 10:13, 8:11] += 100.0  # a 3x3 target 100 above its background
    tophat, contrast = small_target_priors(gray)[0]
    assert tophat[10:13, 8:11] * PRIOR_SCALE == pytest.approx(torch.full((3, 3), 100.0))
    assert tophat[:, 20:].abs().max() < 1e-4 and tophat[20:, :].abs().max() < 1e-4  # the edge stays dark
    assert contrast[11, 9] * PRIOR_SCALE == pytest.approx(100.0 * (1 - 9 / 225))
    assert contrast[30, 40] < 0.6 * contrast[11, 9]


def test_a_network_given_input_priors_starts_as_the_one_without():
    torch.manual_seed(0)
    plain = build_irsam(tiny()).eval()
    with_priors = build_irsam(tiny().replace(input_priors=True)).eval()
    assert tiny().replace(input_priors=True).input_channels == 5
    report = init_from_pretrained(with_priors, plain.state_dict())
    assert report.widened == ["image_encoder.patch_embed.seq.0.c.weight", "refinement.body.0.weight"]
    assert report.fresh == [] and "zero kernels for the input priors" in report.summary()
    images = torch.rand(2, 1, 48, 80).expand(-1, 3, -1, -1) * 255
    with torch.no_grad():
        a, b = plain(images), with_priors(images)
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.edge_probs, b.edge_probs)
    # training can now use them: the new kernels get gradients
    with_priors.train()
    with_priors(images).mask_logits.sum().backward()
    assert with_priors.image_encoder.patch_embed.seq[0].c.weight.grad[:, 3:].abs().sum() > 0
    # the other way round the file does not fit: a network without priors has no place for their kernels
    from model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="shape mismatch"):
        init_from_pretrained(build_irsam(tiny()), with_priors.state_dict())
