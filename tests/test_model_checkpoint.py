"""Checkpoint reading, strict loading with named reports, pretrained init, our own format."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from model.build import build_irsam
from model.checkpoint import (
    FORMAT,
    CheckpointError,
    init_from_pretrained,
    load_checkpoint,
    load_into,
    load_state_dict_file,
    save_checkpoint,
)
from model.config import official, paper, tiny

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "irsam-official"
IRSAM_ONLY_PREFIXES = (
    "mask_decoder.edge_token.", "mask_decoder.edge_mlp.", "mask_decoder.embedding_encoder.",
    "mask_decoder.embedding_maskfeature.", "mask_decoder.compress_vit_feat.", "prompt_encoder.pe_layer_2.",
)


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_irsam(tiny()).state_dict()


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return load_state_dict_file(FIXTURES / "random_state.pt")


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"model": sd},
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {f"module.{k}": v for k, v in sd.items()},
    lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
], ids=["plain", "model", "state_dict", "module-prefix", "model+module-prefix"])
def test_wrapper_formats_load(tmp_path, tiny_state, wrap):
    path = tmp_path / "weights.pt"
    torch.save(wrap(tiny_state), path)
    state_dict = load_state_dict_file(path)
    assert same_tensors(state_dict, tiny_state)
    model = build_irsam(tiny()).train()
    report = load_into(model, state_dict)
    assert report.ok and len(report.loaded) == len(tiny_state)
    assert not model.training


def test_key_problems_are_named(tiny_state):
    state_dict = dict(tiny_state)
    del state_dict["mask_decoder.edge_token.weight"]
    state_dict["mask_decoder.surprise.weight"] = torch.zeros(3)
    state_dict["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    model = build_irsam(tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        load_into(model, state_dict)
    message = str(error.value)
    assert "1 missing: mask_decoder.edge_token.weight" in message
    assert "1 unexpected: mask_decoder.surprise.weight" in message
    assert "mask_decoder.iou_token.weight: checkpoint (1, 7) vs model (1, 32)" in message
    assert same_tensors(model.state_dict(), before)  # nothing was loaded


# torch warns about the pickle protocol it reads from the garbage bytes before refusing them
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unreadable_files_raise_checkpoint_error(tmp_path):
    random_bytes = tmp_path / "random.pt"
    random_bytes.write_bytes(os.urandom(4096))
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    marker = tmp_path / "code-ran"

    class RunsCode:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    with_code = tmp_path / "code.pt"
    with_code.write_bytes(pickle.dumps({"model": RunsCode()}, protocol=2))
    torch_with_code = tmp_path / "torch_code.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "hook": RunsCode()}, torch_with_code)

    truncated = tmp_path / "truncated.pt"
    torch.save({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:600])

    messages = {}
    for path in (random_bytes, text, with_code, torch_with_code, truncated, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError, match=path.name) as error:
            load_state_dict_file(path)
        messages[path.name] = str(error.value)
        assert "\n" not in messages[path.name] and "weights_only" not in messages[path.name]
    assert not marker.exists()
    assert "not a PyTorch checkpoint" in messages["notes.pt"] and "b'thes'" in messages["notes.pt"]
    for name in ("code.pt", "torch_code.pt"):
        assert "mkdir" in messages[name] and "would need to run code" in messages[name]
    assert "truncated or corrupt" in messages["truncated.pt"]
    assert "no such file" in messages["missing.pt"]


def test_foreign_objects_raise_checkpoint_error(tmp_path):
    cases = {
        "list.pt": [torch.zeros(2)],
        "tensor.pt": torch.zeros(2),
        "not_tensors.pt": {"lr": 0.1, "epochs": 3},
        "empty.pt": {},
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match="state_dict"):
            load_state_dict_file(tmp_path / name)


def test_save_and_load_round_trip(tmp_path):
    config = tiny().replace(fusion="deep", wpmd_levels=2)
    torch.manual_seed(1)
    model = build_irsam(config)
    metadata = {
        "normalization": {"kind": "fixed", "low": 0, "high": 255},
        "training": {"data": "NUAA-SIRST", "split": "idx_427/trainval"},
        "metrics": {"iou": 0.71},
    }
    path = tmp_path / "ckpt" / "best.pt"
    save_checkpoint(path, model, config, metadata)
    assert os.listdir(path.parent) == ["best.pt"]  # atomic: no temporary files left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["config"] == config.to_dict()

    loaded, loaded_config, loaded_metadata = load_checkpoint(path)
    assert loaded_config == config and not loaded.training
    assert {k: loaded_metadata[k] for k in metadata} == metadata
    assert "code_version" in loaded_metadata
    assert same_tensors(loaded.state_dict(), model.state_dict())
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.inference_mode():
        assert torch.equal(loaded(x).mask_logits, model(x).mask_logits)


def test_half_precision_storage_round_trips_to_float32(tmp_path):
    model = build_irsam(tiny())
    path = tmp_path / "half.pt"
    save_checkpoint(path, model, tiny(), {}, dtype=torch.float16)
    assert torch.load(path, weights_only=True)["model"]["mask_decoder.iou_token.weight"].dtype == torch.float16
    loaded, _, _ = load_checkpoint(path)
    for name, tensor in loaded.state_dict().items():
        original = model.state_dict()[name]
        assert tensor.dtype == original.dtype
        torch.testing.assert_close(tensor, original, rtol=1e-3, atol=1e-3)


def test_metadata_must_be_plain_data(tmp_path):
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "x.pt", build_irsam(tiny()), tiny(), {"when": object()})


def test_file_without_config_loads_as_official():
    model, config, metadata = load_checkpoint(FIXTURES / "random_state.pt")
    assert config == official() and metadata == {} and not model.training


def test_init_from_mobile_sam_state_dict(official_state):
    mobile_sam = {k: v for k, v in official_state.items() if not k.startswith(IRSAM_ONLY_PREFIXES)}
    assert len(mobile_sam) == 439

    report = init_from_pretrained(build_irsam(official()), mobile_sam)
    assert len(report.initialised) == 439 and len(report.fresh) == 26
    assert not report.ignored and not report.mismatched
    assert all(name.startswith(IRSAM_ONLY_PREFIXES) for name in report.fresh)
    assert report.summary().startswith("439 tensors initialised, 26 fresh")

    model = build_irsam(paper())
    report = init_from_pretrained(model, mobile_sam)
    assert not report.mismatched
    assert len(report.initialised) + len(report.fresh) == len(model.state_dict())
    assert len(report.initialised) + len(report.ignored) == 439
    # The paper network drops only what the released one carries without using.
    assert {n.split(".")[1] for n in report.ignored} == {
        "norm_head", "head", "point_embeddings", "not_a_point_embed", "mask_downscaling",
        "output_hypernetworks_mlps", "iou_prediction_head",
    }
    fresh_modules = {".".join(n.split(".")[:2]) for n in report.fresh}
    assert fresh_modules == {
        "image_encoder.wpmd", "mask_decoder.edge_token", "mask_decoder.edge_mlp",
        "mask_decoder.embedding_maskfeature", "mask_decoder.fusion", "refinement.stem_proj", "refinement.body",
    }
    assert torch.equal(model.state_dict()["image_encoder.neck.0.weight"], mobile_sam["image_encoder.neck.0.weight"])
