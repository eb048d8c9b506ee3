"""What a failed or interrupted `irsam train` says: the file it could not write, what was lost, what last.pt still
holds and that the same command goes on; and `irsam make-demo` refusing settings it cannot make, in one line."""
from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest

import model.atomic
import model.checkpoint
import model.train as train_module
from app.cli import main
from tests.datasets import write_sirst_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst"))  # 8 training frames, 4 for validation


def cli_train(dataset: Path, out: Path, epochs: int) -> int:
    return main(["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"), "--split-val",
                 str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--device", "cpu", "--precision",
                 "fp32", "--epochs", str(epochs), "--batch-size", "4", "--crop", "48"])


def digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def disk_full_at(monkeypatch, name: str) -> None:
    """Make model.atomic's writes of files called `name` fail as on a full disk (last.pt is written through
    model.atomic.atomic_write_bytes, best.pt through the name model.checkpoint imported)."""
    def failing(real):
        def write(path, data):
            if Path(path).name == name:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, data)
        return write

    monkeypatch.setattr(model.atomic, "atomic_write_bytes", failing(model.atomic.atomic_write_bytes))
    monkeypatch.setattr(model.checkpoint, "atomic_write_bytes", failing(model.checkpoint.atomic_write_bytes))


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_failed_last_pt_says_what_was_lost_and_kept_and_the_same_command_resumes(dataset, tmp_path, capsys,
                                                                                    monkeypatch):
    out = tmp_path / "run"
    assert cli_train(dataset, out, 1) == 0
    before = {name: digest(out / name) for name in ("last.pt", "best.pt", "metrics.jsonl")}
    capsys.readouterr()
    with monkeypatch.context() as patch:
        disk_full_at(patch, "last.pt")
        assert cli_train(dataset, out, 2) == 2
    assert error_line(capsys) == (
        f"error: cannot write {out / 'last.pt'} (No space left on device): epoch 2's training is lost; "
        f"{out / 'last.pt'} still holds epoch 1; once the cause is fixed, the same command resumes at epoch 2")
    assert digest(out / "last.pt") == before["last.pt"]  # the previous good file is kept
    assert cli_train(dataset, out, 2) == 0  # and the same command resumes from it
    assert "resuming from" in capsys.readouterr().out
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_failed_best_pt_in_the_first_epoch_says_nothing_is_saved_and_the_run_starts_again(dataset, tmp_path,
                                                                                             capsys, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        disk_full_at(patch, "best.pt")
        assert cli_train(dataset, out, 1) == 2
    assert error_line(capsys) == (
        f"error: cannot write {out / 'best.pt'} (No space left on device): epoch 1's training is lost, and nothing "
        f"of the run is saved ({out / 'last.pt'} was never written); once the cause is fixed, the same command "
        "starts the run again")
    assert not out.exists()  # nothing left, no temporary file either: the folder made for the run is removed


def test_a_failed_metrics_line_is_written_back_from_last_pt_by_the_same_command(dataset, tmp_path, capsys,
                                                                                monkeypatch):
    out = tmp_path / "run"

    def full(path, record, log):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_append_record", full)
        assert cli_train(dataset, out, 1) == 2
    assert error_line(capsys) == (
        f"error: cannot write {out / 'metrics.jsonl'} (No space left on device): epoch 1 is saved in "
        f"{out / 'last.pt'}, but its line is not in metrics.jsonl; once the cause is fixed, the same command writes "
        "the line back from last.pt and finishes the run (it chooses best.pt's decision threshold)")
    assert cli_train(dataset, out, 1) == 0
    captured = capsys.readouterr()
    assert "restored epoch 1's line from last.pt" in captured.out and "decision threshold" in captured.out
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def interrupt_in_epoch(monkeypatch, epoch: int) -> None:
    """Ctrl-C during the training steps of `epoch` (counted from 1)."""
    real = train_module._train_epoch

    def train_epoch(*args):
        if args[9] + 1 == epoch:  # its `epoch` argument, counted from 0
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(train_module, "_train_epoch", train_epoch)


def test_ctrl_c_says_what_last_pt_holds_and_that_the_same_command_resumes(dataset, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, 1)
        assert cli_train(dataset, out, 2) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"interrupted: nothing of this run is saved yet ({out / 'last.pt'} is written at the end of each epoch); the "
        "same command starts it again")
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, 2)
        assert cli_train(dataset, out, 2) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"interrupted: {out / 'last.pt'} holds epoch 1 of 2 (the epoch under way is lost); the same command resumes "
        "at epoch 2")
    assert cli_train(dataset, out, 2) == 0
    assert f"resuming from {out / 'last.pt'} at epoch 2/2" in capsys.readouterr().out


def test_make_demo_refuses_a_negative_seed_and_a_huge_frame_as_argparse_does(tmp_path, capsys):
    for options, said in ((["--seed", "-1"], "argument --seed: must not be negative, got -1"),
                          (["--width", "100000", "--height", "100000", "--frames", "1"],
                           "argument --width: must lie in 32..8192 pixels, got 100000"),
                          (["--height", "16"], "argument --height: must lie in 32..8192 pixels, got 16"),
                          (["--frames", "0"], "argument --frames: must be at least 1, got 0")):
        with pytest.raises(SystemExit) as raised:
            main(["make-demo", str(tmp_path / "d"), *options])
        assert raised.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == f"irsam make-demo: error: {said}"
    assert not (tmp_path / "d").exists()
    assert main(["make-demo", str(tmp_path / "d"), "--seed", "0", "--frames", "1", "--width", "32",
                 "--height", "32"]) == 0


def test_make_demo_inside_a_file_says_the_parent_is_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["make-demo", str(afile / "sub" / "demo"), "--frames", "1", "--width", "32", "--height", "32"]) == 2
    assert capsys.readouterr().err == (f"error: {afile / 'sub' / 'demo'}: {afile} is a file, not a folder: no folder "
                                       "can be made inside it; choose a new or empty folder\n")
    assert afile.read_text() == "mine"


def test_ctrl_c_while_the_command_loads_says_interrupted_without_a_traceback(capsys, monkeypatch):
    """The first second of a command imports its module (and torch): Ctrl-C there ended in a traceback."""
    import importlib

    import app.cli

    def import_module(name, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", import_module)
    assert app.cli.main(["detect", "somewhere", "--out", "elsewhere"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
