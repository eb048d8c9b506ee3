"""Checkpoint reading, strict loading with named reports, pretrained init, our own format."""
from __future__ import annotations

import os
import pickle
import re
import subprocess
from pathlib import Path

import pytest
import torch

from model.build import build_irsam
from model.checkpoint import (
    FORMAT,
    IRSAM_ONLY_PREFIXES,
    CheckpointError,
    _git_commit,
    init_from_pretrained,
    load_checkpoint,
    load_into,
    load_state_dict_file,
    save_checkpoint,
)
from model.config import official, paper, tiny

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "irsam-official"


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


# torch warns about the pickle protocol it reads from garbage bytes; the loader silences that and reports one line
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


def test_non_finite_weights_are_refused_by_name(tmp_path):
    model = build_irsam(tiny())
    with torch.no_grad():
        model.mask_decoder.iou_token.weight[0, 3] = float("nan")
        model.image_encoder.neck[0].weight[0, 0, 0, 0] = float("-inf")
    count = len(model.state_dict())
    ours, half, plain = tmp_path / "ours.pt", tmp_path / "half.pt", tmp_path / "plain.pt"
    save_checkpoint(ours, model, tiny(), {})
    save_checkpoint(half, model, tiny(), {}, dtype=torch.float16)
    torch.save(model.state_dict(), plain)
    expected = (f"NaN or infinite weights (a diverged training run?) in 2 of {count} tensors: "
                "image_encoder.neck.0.weight, mask_decoder.iou_token.weight")
    for path in (ours, half):
        with pytest.raises(CheckpointError) as raised:
            load_checkpoint(path)
        assert str(raised.value) == f"{path}: {expected}"
    with pytest.raises(CheckpointError, match=re.escape(f"{plain}: {expected}")):
        load_state_dict_file(plain)  # what --init reads


def test_plain_weights_of_another_config_name_it(tmp_path, tiny_state):
    path = tmp_path / "tiny_plain.pt"
    torch.save(tiny_state, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path, "official")
    assert str(raised.value) == (f"{path}: these are weights of the tiny config, not of official: "
                                 "load them with --config tiny, or without --config")
    for asked in ("tiny", None):  # nothing asked: the one preset with these tensor names and shapes
        model, config, _ = load_checkpoint(path, asked)
        assert config == tiny() and same_tensors(model.state_dict(), tiny_state)

    damaged = dict(tiny_state)
    del damaged["mask_decoder.edge_token.weight"]
    torch.save(damaged, path)
    with pytest.raises(CheckpointError, match=r"1 missing: mask_decoder\.edge_token\.weight$") as raised:
        load_checkpoint(path, "tiny")
    assert "--config" not in str(raised.value)  # fits no config: the keys are the news


def test_a_checkpoint_naming_another_config_than_the_one_asked_for_is_refused(tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, build_irsam(tiny()), tiny(), {})
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path, "paper")
    assert str(raised.value) == (f"{path}: this checkpoint holds a tiny network, not the paper one asked for with "
                                 "--config: leave out --config (the file names its network)")
    assert load_checkpoint(path, "tiny")[1] == tiny() == load_checkpoint(path)[1]


def test_another_version_of_our_format_is_refused_as_such(tmp_path):
    path = tmp_path / "future.pt"
    save_checkpoint(path, build_irsam(tiny()), tiny(), {})
    stored = torch.load(path, weights_only=True)
    stored["format"] = "irsam-review/99"
    torch.save(stored, path)
    message = f"{path}: unsupported checkpoint format irsam-review/99 (this version reads {FORMAT})"
    for load in (load_checkpoint, load_state_dict_file):
        with pytest.raises(CheckpointError) as raised:
            load(path)
        assert str(raised.value) == message


@pytest.mark.parametrize("field, value, message", [
    ("config", "tiny", "invalid stored config (a str, not a mapping)"),
    ("metadata", [1, 2], "its metadata is a list, not a mapping"),
    ("decision_threshold", "abc", "its metadata's decision_threshold 'abc' is not a finite number"),
    ("decision_threshold", float("nan"), "its metadata's decision_threshold nan is not a finite number"),
])
def test_a_hand_damaged_config_or_metadata_is_named_with_the_file(tmp_path, field, value, message):
    path = tmp_path / "edited.pt"
    save_checkpoint(path, build_irsam(tiny()), tiny(), {"decision_threshold": 0.5})
    stored = torch.load(path, weights_only=True)
    if field == "decision_threshold":
        stored["metadata"][field] = value  # a NaN threshold made every frame empty, without a word
    else:
        stored[field] = value
    torch.save(stored, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == f"{path}: {message}"


def test_file_without_config_loads_as_official():
    model, config, metadata = load_checkpoint(FIXTURES / "random_state.pt")
    assert config == official() and metadata == {} and not model.training


def test_an_official_file_that_lost_one_of_irsams_own_tensors_is_named_damaged_not_mobile_sam(official_state, tmp_path):
    """Only a file without any of IRSAM's own tensors is MobileSAM's layout; one that lost some of them is an official
    IRSAM file damaged, and the tensors it lacks are named (it was offered to --init, which trains them afresh)."""
    lost = "mask_decoder.edge_mlp.layers.0.weight"
    path = tmp_path / "official_missing_one.pth"
    torch.save({k: v for k, v in official_state.items() if k != lost}, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path, "official")
    assert str(raised.value) == f"{path}: checkpoint does not fit the model: 464 tensors fit; 1 missing: {lost}"


def test_init_from_mobile_sam_state_dict(official_state, tmp_path):
    mobile_sam = {k: v for k, v in official_state.items() if not k.startswith(IRSAM_ONLY_PREFIXES)}
    assert len(mobile_sam) == 439

    report = init_from_pretrained(build_irsam(official()), mobile_sam)
    assert len(report.initialised) == 439 and len(report.fresh) == 26
    assert not report.ignored
    assert all(name.startswith(IRSAM_ONLY_PREFIXES) for name in report.fresh)
    summary = report.summary()
    assert summary.startswith("439 tensors initialised; 26 fresh: prompt_encoder.pe_layer_2.")
    assert report.fresh[0] in summary and "... and 14 more" in summary and "unused" not in summary

    # nor does it detect: it has no edge branch (the README offered it to --weights, and the message said "439
    # tensors loaded" of a file that was refused)
    path = tmp_path / "mobile_sam.pt"
    torch.save(mobile_sam, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    assert str(raised.value) == (f"{path}: SAM / MobileSAM weights, without IRSAM's edge branch and feature fusion: "
                                 f"they cannot detect by themselves, but start a network to train (irsam train "
                                 f"--init {path})")

    model = build_irsam(paper())
    report = init_from_pretrained(model, mobile_sam)
    assert len(report.initialised) + len(report.fresh) == len(model.state_dict())
    assert f"checkpoint tensors unused: {report.ignored[0]}, " in report.summary()
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


def paper_checkpoint_state() -> dict[str, torch.Tensor]:
    from app.paths import DEFAULT_WEIGHTS

    return load_state_dict_file(DEFAULT_WEIGHTS)


def test_official_and_paper_initialise_from_each_others_weights_and_tiny_is_refused(official_state):
    """Across the official, MobileSAM and paper layouts names differ but shapes never do (so refusing
    shape mismatches costs no legitimate init); a `tiny` network from full-size weights is another
    architecture and is refused."""
    mobile_sam = {k: v for k, v in official_state.items() if not k.startswith(IRSAM_ONLY_PREFIXES)}
    sources = {"official": official_state, "mobile_sam": mobile_sam, "paper checkpoint": paper_checkpoint_state()}
    for source_name, state_dict in sources.items():
        for make in (official, paper):
            model = build_irsam(make())
            report = init_from_pretrained(model, state_dict)
            assert len(report.initialised) >= 396, (source_name, make.__name__)
            assert all(torch.equal(model.state_dict()[name], state_dict[name]) for name in report.initialised)
        with pytest.raises(CheckpointError, match=r"shape mismatch: image_encoder\.patch_embed\.seq\.0\.c\.weight: "
                                                  r"checkpoint \(32, 3, 3, 3\) vs model \(8, 3, 3, 3\)"):
            init_from_pretrained(build_irsam(tiny()), state_dict)


def test_init_refuses_a_shape_mismatch_by_name_and_leaves_the_model_untouched(tiny_state):
    altered = dict(tiny_state)
    altered["mask_decoder.iou_token.weight"] = torch.ones(2, 32)
    model = build_irsam(tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as raised:
        init_from_pretrained(model, altered)
    assert str(raised.value) == ("weights do not fit the model: 1 shape mismatch: "
                                 "mask_decoder.iou_token.weight: checkpoint (2, 32) vs model (1, 32)")
    assert same_tensors(model.state_dict(), before)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.complex64])
def test_weights_of_another_kind_of_number_are_refused_by_name(tiny_state, tmp_path, dtype):
    """A bool weight loaded as all ones, an int64 one truncated: eval then printed garbage scores and exit 0."""
    altered = dict(tiny_state)
    name = "mask_decoder.iou_token.weight"
    altered[name] = altered[name].to(dtype)
    expected = f"1 type mismatch: {name}: checkpoint {dtype} vs model torch.float32"
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        init_from_pretrained(build_irsam(tiny()), altered)
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        load_into(build_irsam(tiny()), altered)


def test_init_refuses_a_file_with_nothing_for_the_model():
    unrelated = {"backbone.conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}
    with pytest.raises(CheckpointError, match=r"no tensor of the file belongs to this model: "
                                              r"file keys backbone\.conv1\.weight, fc\.bias; model keys image_encoder\."):
        init_from_pretrained(build_irsam(tiny()), unrelated)


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=folder,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_names_the_checkout_and_its_tracked_changes(tmp_path, monkeypatch):
    assert _git_commit(tmp_path) is None  # not a checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    git(tmp_path, "add", "code.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    commit = git(tmp_path, "rev-parse", "--short", "HEAD")
    assert _git_commit(tmp_path) == commit
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert _git_commit(tmp_path) == commit
    (tmp_path / "code.py").write_text("a = 2\n")
    assert _git_commit(tmp_path) == commit + "-dirty"
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    assert _git_commit(tmp_path) is None  # no git installed


def test_saved_code_version_names_the_commit_of_this_checkout(tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    save_checkpoint(path, build_irsam(tiny()), tiny(), {})
    commit = git(Path(__file__).resolve().parents[1], "rev-parse", "--short", "HEAD")
    assert re.fullmatch(rf"irsam-review .+, git {commit}(-dirty)?", load_checkpoint(path)[2]["code_version"])

    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    save_checkpoint(path, build_irsam(tiny()), tiny(), {})
    assert "git" not in load_checkpoint(path)[2]["code_version"]
