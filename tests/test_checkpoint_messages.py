"""Bad checkpoints are one line that names the file and what is wrong in it: a stored config that builds no network
(the field at fault), a bare state_dict missing a tensor (compared with the config nearest to it, not with the
default one), a directory or an empty string given as --weights or --init."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app import cli
from model.build import build_irsam
from model.checkpoint import (CheckpointError, check_weights_path, load_checkpoint, read_torch_file,
                              save_checkpoint)
from model.config import tiny

CLIP = Path(__file__).resolve().parents[2] / "shared/data/sequences/IR_DRONE_156"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    save_checkpoint(path, build_irsam(tiny()), tiny(), {})
    return path


def with_config(tiny_file: Path, path: Path, **changes) -> Path:
    """A copy of the tiny checkpoint whose stored config has `changes`."""
    checkpoint = torch.load(tiny_file, weights_only=True)
    checkpoint["config"] = dict(checkpoint["config"], **changes)
    torch.save(checkpoint, path)
    return path


def eval_error(capsys, *argv: str) -> str:
    assert cli.main(["eval", *argv, "--clip", str(CLIP), "--limit", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_a_stored_config_that_builds_no_network_names_the_file_and_the_field(tiny_file, tmp_path, capsys):
    bad = with_config(tiny_file, tmp_path / "badcfg.pt", embed_dim=-5)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(bad)
    message = str(raised.value)
    assert message.startswith(f"{bad}: its stored config cannot build a network (")
    assert message.endswith("field embed_dim: tiny with embed_dim=-5 (the tiny preset has 32)")
    # irsam eval: the same line, no traceback (it was a RuntimeError from torch)
    err = eval_error(capsys, "--weights", str(bad))
    assert err == f"error: {message}\n"


def test_a_stored_config_of_a_huge_network_is_refused_by_its_shapes_before_building_it(tiny_file, tmp_path):
    bad = with_config(tiny_file, tmp_path / "huge.pt", embed_dim=10**7)  # its neck alone would take 400 TB
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(bad)
    message = str(raised.value)
    assert message.startswith(f"{bad}: checkpoint does not fit the model its stored config describes "
                              "(tiny with embed_dim=10000000 (the tiny preset has 32)): ")
    assert len(message) < 600 and "... and 124 more" in message


def test_a_bare_state_dict_missing_one_tensor_is_compared_with_the_nearest_config(tiny_file, tmp_path, capsys):
    state = torch.load(tiny_file, weights_only=True)["model"]
    lacking = list(state)[3]
    bare = tmp_path / "bare_missing_one.pt"
    torch.save({name: tensor for name, tensor in state.items() if name != lacking}, bare)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(bare)  # no --config: it was compared with the official network, 2,159 characters
    message = str(raised.value)
    assert message == (f"{bare}: checkpoint does not fit the model: fits no network config exactly; nearest is the "
                       "tiny one (if it holds a tiny network, load it with --config tiny), compared with it: "
                       f"306 tensors fit; 1 missing: {lacking}")
    assert eval_error(capsys, "--weights", str(bare)) == f"error: {message}\n"
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(bare, "tiny")  # asked for: compared with it, no advice
    assert str(raised.value) == f"{bare}: checkpoint does not fit the model: 306 tensors fit; 1 missing: {lacking}"


def test_an_unrelated_state_dict_lists_a_few_keys_of_each_kind(tmp_path):
    path = tmp_path / "wrongkeys.pt"
    torch.save({"foo": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: checkpoint does not fit the model: 0 tensors fit; ")
    assert ", ... and 462 more; 1 unexpected: foo" in message
    assert len(message) - len(str(path)) < 250  # a few keys, not the 463 (the folder's name varies)


def test_a_directory_or_an_empty_string_is_no_weights_file(tiny_file, tmp_path, capsys):
    folder = tmp_path / "weights_dir.pt"
    folder.mkdir()
    assert eval_error(capsys, "--weights", str(folder)) == \
        f"error: --weights {folder} is a directory, not a checkpoint file\n"
    assert eval_error(capsys, "--weights", "") == "error: --weights is empty: give a checkpoint file\n"
    with pytest.raises(CheckpointError, match="^--weights is empty: give a checkpoint file$"):
        check_weights_path("")
    with pytest.raises(CheckpointError, match=f"^weights file not found: {tmp_path / 'nope.pt'}$"):
        check_weights_path(str(tmp_path / "nope.pt"))
    assert check_weights_path(str(tiny_file)) == tiny_file
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file"):
        check_weights_path(str(folder / ".."))
    with pytest.raises(CheckpointError, match=f"^{folder} is a directory, not a checkpoint file$"):
        read_torch_file(folder)  # what train --init reads: it said "[Errno 21] Is a directory"


def test_train_init_naming_a_directory_or_nothing_is_one_error_line(tmp_path, capsys):
    folder = tmp_path / "weights_dir.pt"
    folder.mkdir()
    common = ["train", "--data", str(tmp_path), "--split-train", "t.txt", "--split-val", "v.txt", "--config", "tiny",
              "--device", "cpu", "--epochs", "1"]
    assert cli.main([*common, "--out", str(tmp_path / "a"), "--init", str(folder)]) == 2
    assert capsys.readouterr().err == f"error: {folder} is a directory, not a checkpoint file\n"
    assert cli.main([*common, "--out", str(tmp_path / "b"), "--init", ""]) == 2
    assert capsys.readouterr().err == "error: --init is empty: give a weights file, or leave out --init\n"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_detect_refuses_a_directory_or_an_empty_weights_and_makes_no_project(tmp_path, capsys):
    """`irsam detect --weights ''` (an unset $WEIGHTS) ran the shipped weights and exited 0; a directory was
    "weights file not found"."""
    from tests.test_frames import write_folder

    write_folder(tmp_path / "seq", n=2)
    folder = tmp_path / "weights_dir.pt"
    folder.mkdir()
    for weights, message in (("", "--weights is empty: give a checkpoint file"),
                             (str(folder), f"--weights {folder} is a directory, not a checkpoint file")):
        out = tmp_path / "project"
        assert cli.main(["detect", str(tmp_path / "seq"), "--out", str(out), "--weights", weights]) == 2
        assert capsys.readouterr().err.strip().endswith(message)
        assert not out.exists()
