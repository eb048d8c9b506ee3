"""The `official` config against the released network: state_dict layout, numerical parity, cost."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.build import build_irsam
from model.checkpoint import load_into, load_state_dict_file
from model.complexity import count_macs, count_macs_by_module
from model.config import official

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "irsam-official"
TOLERANCE = 1e-4


def fixture_keys() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (FIXTURES / "state_dict_keys.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape = line.split("\t")[:2]
        shapes[name] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return shapes


def test_state_dict_names_and_shapes_equal_the_release():
    model = build_irsam(official())
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert ours == fixture_keys()
    assert len(ours) == 465
    assert sum(p.numel() for p in model.parameters()) == 10_578_604


@pytest.mark.slow
def test_reproduces_released_outputs_and_intermediates():
    model = build_irsam(official())
    load_into(model, load_state_dict_file(FIXTURES / "random_state.pt"))
    io = torch.load(FIXTURES / "random_io_512.pt", weights_only=True)
    captured = {}
    model.image_encoder.register_forward_hook(lambda m, i, out: captured.__setitem__("embedding", out.embedding))
    model.mask_decoder.register_forward_hook(lambda m, i, out: captured.__setitem__("decoder", out))

    with torch.inference_mode():
        out = model(io["input"].float())
        dense_pe = model.prompt_encoder.dense_pe((64, 64))

    def err(a, b):
        assert a.shape == b.shape
        return (a - b).abs().max().item()

    assert err(captured["embedding"], io["image_encoder.out0"]) <= TOLERANCE
    assert err(dense_pe, io["dense_pe"]) <= TOLERANCE
    assert err(captured["decoder"].tokens, io["transformer.out0"]) <= TOLERANCE
    assert err(captured["decoder"].edge_probs, io["predict_masks.edge"]) <= TOLERANCE
    assert err(out.mask_logits, io["masks"]) <= TOLERANCE
    assert err(out.edge_probs, io["edges"]) <= TOLERANCE
    assert out.features is None


def test_macs_match_the_published_cost():
    # Shapes are all the counter needs: on the meta device nothing is computed.
    with torch.device("meta"):
        model = build_irsam(official())
        native = build_irsam(official().replace(encoder_input="native"))
    by_module = count_macs_by_module(model, 512)
    assert by_module["total"] / 1e9 == pytest.approx(43.4, rel=0.02)
    assert by_module["image_encoder"] / 1e9 == pytest.approx(38.8, rel=0.02)
    assert count_macs(model, 512) == by_module["total"]
    native_by_module = count_macs_by_module(native, 512)
    assert native_by_module["image_encoder"] / 1e9 == pytest.approx(10.3, rel=0.02)
    assert native_by_module["total"] < by_module["total"] / 3
