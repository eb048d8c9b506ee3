"""`irsam train` on bad input: one `error:` line, exit 2, nothing written; resuming only a run that fits."""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from model.train import check_new_out_folder, check_same_run, run_record, train
from model.train_config import TrainConfig
from tests.datasets import write_sirst_dataset


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory) -> Path:
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst"))


@pytest.fixture
def dataset(clean_dataset, tmp_path) -> Path:
    """A copy each test may break."""
    return Path(shutil.copytree(clean_dataset, tmp_path / "data"))


def cli_train(dataset: Path, out: Path, *options: str) -> int:
    return main(["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"),
                 "--split-val", str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--device", "cpu",
                 "--epochs", "1", "--batch-size", "4", "--crop", "64", *options])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_unusable_images_and_masks_are_all_named_before_anything_is_written(dataset, tmp_path, capsys):
    train_stems = (dataset / "train.txt").read_text().split()
    val_stems = (dataset / "val.txt").read_text().split()
    truncated = dataset / "images" / f"{train_stems[0]}.png"
    truncated.write_bytes(truncated.read_bytes()[:200])
    resized = dataset / "masks" / f"{train_stems[1]}.png"
    cv2.imwrite(str(resized), np.zeros((20, 30), np.uint8))
    empty = dataset / "masks" / f"{val_stems[0]}.png"
    empty.write_bytes(b"")
    broken_link = dataset / "images" / f"{train_stems[2]}.png"  # a git-annex or DataLad file not fetched
    broken_link.unlink()
    broken_link.symlink_to(tmp_path / "annex" / "object.png")
    out = tmp_path / "out"
    assert cli_train(dataset, out) == 2
    err = one_error_line(capsys)
    assert "4 unusable training or validation file(s)" in err
    assert f"{truncated}: corrupt image" in err
    assert f"{resized}: mask size 30x20 differs from its image's 80x64" in err
    assert f"{empty}: empty file (0 bytes)" in err
    assert f"{broken_link}: file not found" in err
    assert not out.exists()


def test_an_empty_split_file_is_named(dataset, tmp_path, capsys):
    (dataset / "val.txt").write_text("\n")
    out = tmp_path / "out"
    assert cli_train(dataset, out) == 2
    assert one_error_line(capsys) == f"error: split file {dataset / 'val.txt'} lists no images\n"
    assert not out.exists()


def test_missing_data_leaves_no_out_folder(dataset, tmp_path, capsys):
    shutil.rmtree(dataset / "masks")
    out = tmp_path / "out"
    assert cli_train(dataset, out) == 2
    assert "masks" in one_error_line(capsys)
    assert not out.exists()


def test_options_out_of_range_are_all_refused(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_train(dataset, out, "--epochs", "0", "--batch-size", "0", "--lr=-1e-4", "--paste-targets=-1",
                     "--crop", "100000") == 2
    err = one_error_line(capsys)
    assert "--epochs must be at least 1, got 0" in err and "--batch-size must be at least 1, got 0" in err
    assert "--lr must be a finite positive number, got -0.0001" in err
    assert "--paste-targets must not be negative, got -1" in err
    assert "--crop must lie in 32..2048, got 100000" in err  # unbounded, it ran the machine out of memory
    assert not out.exists()
    assert cli_train(dataset, out, "--lr", "inf") == 2  # refused rightly, but "must be positive, got inf" read oddly
    assert "--lr must be a finite positive number, got inf" in one_error_line(capsys)
    for low_high in (["1.5", "0.8"], ["0", "1"], ["0.5", "5"], ["nan", "1"]):
        assert cli_train(dataset, out, "--scale-range", *low_high) == 2
        assert "--scale-range takes LOW HIGH with 0 < LOW <= HIGH <= 4.0, got " in one_error_line(capsys)
    assert not out.exists()


def test_an_unknown_config_blames_config_and_lists_the_presets(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as refused:  # the command line's choices
        cli_train(dataset, out, "--config", "bogus")
    assert refused.value.code == 2
    assert "argument --config: invalid choice: 'bogus' (choose from 'official', 'paper', 'tiny')" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^--config bogus: no such network; --config takes official, paper, tiny$"):
        train(TrainConfig(str(dataset), str(dataset / "train.txt"), str(dataset / "val.txt"), str(out),
                          config="bogus"))  # a TrainConfig made in code
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # the impossible value
def test_set_with_an_unknown_field_or_a_value_no_network_has_is_one_line(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_train(dataset, out, "--set", "input_prior=true") == 2
    err = one_error_line(capsys)
    assert err.startswith("error: --set input_prior: unknown model config field; --set takes ")
    assert ", input_priors, " in err and "name" not in err.split("takes")[1]
    assert cli_train(dataset, out, "--set", "wpmd_levels=[7]") == 2
    assert one_error_line(capsys) == "error: --set wpmd_levels=[7]: wpmd_levels must be encoder levels 0..3, got (7,)\n"
    assert cli_train(dataset, out, "--set", "embed_dim=-5") == 2
    assert one_error_line(capsys).startswith("error: --set embed_dim=-5: no tiny network works with these values (")
    assert cli_train(dataset, out, "--set", "local_conv_size=0") == 2  # builds, fails on its first frame
    assert one_error_line(capsys).startswith("error: --set local_conv_size=0: no tiny network works with these values")
    assert cli_train(dataset, out, "--set", "input_priors") == 2
    assert one_error_line(capsys).startswith("error: bad --set input_priors (")
    assert not out.exists()


def test_an_out_folder_that_cannot_be_made_is_one_line(dataset, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert cli_train(dataset, blocker / "out") == 2
    assert one_error_line(capsys) == f"error: cannot create --out {blocker / 'out'}: Not a directory\n"


@pytest.fixture(scope="module")
def tiny_run(clean_dataset, tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished 2-epoch tiny run and its log lines."""
    out = tmp_path_factory.mktemp("run") / "out"
    lines: list[str] = []
    train(TrainConfig(data=str(clean_dataset), split_train=str(clean_dataset / "train.txt"),
                      split_val=str(clean_dataset / "val.txt"), out=str(out), config="tiny", device="cpu", epochs=2,
                      batch_size=4, crop=64, lr=1e-3), log=lines.append)
    return out, lines


def test_resuming_with_another_config_names_the_run_s_config(clean_dataset, tiny_run, tmp_path, capsys):
    out = Path(shutil.copytree(tiny_run[0], tmp_path / "out"))
    assert cli_train(clean_dataset, out, "--config", "paper", "--epochs", "3") == 2
    assert one_error_line(capsys).startswith(f"error: {out} holds a run of config tiny, not paper")
    assert cli_train(clean_dataset, out, "--epochs", "3", "--set", "wpmd_levels=[0]") == 2
    assert "with other --set values (wpmd_levels)" in one_error_line(capsys)


def test_an_out_folder_with_something_else_and_no_last_pt_is_refused_untouched(clean_dataset, tiny_run, tmp_path,
                                                                                 capsys):
    out = Path(shutil.copytree(tiny_run[0], tmp_path / "out"))
    (out / "last.pt").unlink()  # the big file deleted, best.pt kept
    kept = {path.name: path.read_bytes() for path in out.iterdir()}
    assert cli_train(clean_dataset, out, "--lr", "1e-3", "--epochs", "2") == 2
    assert one_error_line(capsys) == (f"error: --out {out} holds best.pt, metrics.jsonl and no last.pt to resume: "
                                      "train into a new or empty folder\n")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == kept
    data = Path(shutil.copytree(clean_dataset, tmp_path / "data"))
    assert cli_train(data, data) == 2  # the data set itself; its split files are the command's own
    assert one_error_line(capsys) == (f"error: --out {data} holds images/, masks/ and no last.pt to resume: train into "
                                      "a new or empty folder\n")
    assert sorted(path.name for path in data.iterdir()) == ["images", "masks", "train.txt", "val.txt"]


def test_a_new_run_may_start_in_a_folder_with_its_split_files_and_logs(tmp_path):
    out = tmp_path / "run"  # app.core.finetune writes these before it starts `irsam train`
    out.mkdir()
    for name in ("split_train.txt", "split_val.txt", "train.log", "finetune.json"):
        (out / name).write_text("")
    inputs = {(out / "split_train.txt").resolve(), (out / "split_val.txt").resolve()}
    check_new_out_folder(out, inputs)
    check_new_out_folder(tmp_path / "new", set())
    (out / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="holds notes.txt and no last.pt"):
        check_new_out_folder(out, inputs)


def test_resuming_with_options_that_change_the_run_names_each_and_writes_nothing(clean_dataset, tiny_run, tmp_path,
                                                                                  capsys):
    out = Path(shutil.copytree(tiny_run[0], tmp_path / "out"))
    kept = {path.name: path.read_bytes() for path in out.iterdir()}
    fewer = tmp_path / "val.txt"
    fewer.write_text("\n".join((clean_dataset / "val.txt").read_text().split()[1:]))
    assert cli_train(clean_dataset, out, "--epochs", "3", "--lr", "5e-4", "--batch-size", "2", "--split-val",
                     str(fewer)) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {out} holds a run with other options: ")
    assert f"--split-val {fewer.resolve()} (the run's: {(clean_dataset / 'val.txt').resolve()})" in err
    assert "--batch-size 2 (the run's: 4)" in err and "--lr 0.0005 (the run's: 0.001)" in err
    assert "the images --split-val lists (0 added, 1 gone)" in err
    assert err.endswith("Resuming would mix two runs: train into another --out, or resume with the run's options\n")
    assert cli_train(clean_dataset, out, "--lr", "1e-3", "--epochs", "1") == 2
    assert "--epochs 1 (the run's: 2; a run may be extended, not shortened)" in one_error_line(capsys)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == kept


def test_a_resume_may_extend_the_run_and_change_how_it_runs(clean_dataset, tiny_run, tmp_path, capsys):
    out = Path(shutil.copytree(tiny_run[0], tmp_path / "out"))
    assert cli_train(clean_dataset, out, "--lr", "1e-3", "--epochs", "3", "--precision", "fp32", "--workers", "1",
                     "--val-every", "2", "--max-minutes", "30") == 0
    printed = capsys.readouterr().out
    # the cosine schedule of 3 epochs (2 steps each) from the step reached: 1e-3 * (1 + cos(pi * 4 / 6)) / 2
    assert "extended from 2 to 3 epochs: the cosine schedule now spans 3 epochs, lr 2.50e-04 at epoch 3" in printed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[2]["lr"] == pytest.approx(2.5e-4)
    assert json.loads(torch.load(out / "last.pt", weights_only=True)["run"])["epochs"] == 3


def test_a_last_pt_from_before_runs_were_recorded_resumes_with_any_options(clean_dataset, tiny_run, tmp_path):
    out = Path(shutil.copytree(tiny_run[0], tmp_path / "out"))
    state = torch.load(out / "last.pt", weights_only=True)
    del state["run"]
    torch.save(state, out / "last.pt")
    assert cli_train(clean_dataset, out, "--epochs", "3") == 0  # --lr 1e-4 against the run's 1e-3: unknown
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_resume_compares_the_images_split_files_list_and_the_processes(tmp_path):
    cfg = TrainConfig(data="d", split_train="t.txt", split_val="v.txt", out="o")
    run = run_record(cfg, 1, ["a", "b", "c"], ["v1", "v2"])
    how_it_runs = replace(cfg, epochs=600, device="cuda", precision="bf16", workers=4, max_minutes=5.0, val_every=3)
    check_same_run(tmp_path, run, run_record(how_it_runs, 1, ["c", "b", "a"], ["v2", "v1"]))  # in another order
    with pytest.raises(ValueError) as refused:  # a split file rewritten in place, another torchrun
        check_same_run(tmp_path, run, run_record(cfg, 2, ["a", "b", "c"], ["v1", "v3"]))
    assert "other options: 2 processes (the run's: 1); the images --split-val lists (1 added, 1 gone)." \
        in str(refused.value)


def test_a_run_recorded_before_scale_range_existed_compares_as_the_jitter_it_trained_with(tmp_path):
    """Diff review 26: a key a run did not record was not compared, so its default jitter (0.8 1.5) resumed under
    another --scale-range unseen, and its first epoch's best.pt was not recognised as the same command's own."""
    from model.train import _metadata, first_epoch_best

    cfg = TrainConfig(data=str(tmp_path / "d"), split_train="t.txt", split_val="v.txt", out=str(tmp_path / "o"))
    then = run_record(cfg, 1, ["a"], ["v"])
    del then["scale_range"]
    check_same_run(tmp_path, then, run_record(cfg, 1, ["a"], ["v"]))
    with pytest.raises(ValueError) as refused:
        check_same_run(tmp_path, then, run_record(replace(cfg, scale_range=[1.0, 2.2]), 1, ["a"], ["v"]))
    assert "other options: --scale-range 1.0 2.2 (the run's: 0.8 1.5)." in str(refused.value)
    metadata = _metadata(cfg, 1, {}, [], {}, None)
    del metadata["training"]["recipe"]["scale_range"]
    torch.save({"metadata": metadata}, tmp_path / "best.pt")
    assert first_epoch_best(tmp_path / "best.pt", cfg)
    assert not first_epoch_best(tmp_path / "best.pt", replace(cfg, scale_range=[1.0, 2.2]))


@pytest.mark.parametrize("cut", [0, 3000])
def test_an_unreadable_last_pt_is_named_and_kept(clean_dataset, tiny_run, tmp_path, capsys, cut):
    out = Path(shutil.copytree(tiny_run[0], tmp_path / "out"))
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:cut])
    assert cli_train(clean_dataset, out, "--epochs", "3") == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: cannot resume: {last}: ") and "remove it to start afresh" in err
    assert last.stat().st_size == cut


def test_epoch_lines_show_the_lr_used_and_the_threshold_line_matches_best_epoch(tiny_run):
    out, lines = tiny_run
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["lr"] == 1e-3  # the first step's, not the lr after the epoch's steps
    assert 0 < records[-1]["lr"] < records[0]["lr"]  # a cosine schedule reaches 0 only after the last step
    best = max(records, key=lambda r: r["val_iou"])
    calibration = next(line for line in lines if line.startswith("decision threshold"))
    assert f"best.pt (epoch {best['epoch']})" in calibration
    # the sweep's threshold-0 side is the best epoch's validation: same weights, same precision
    at_zero = re.search(r"IoU (\S+) ->.*Fa (\S+) ->", calibration).groups()
    assert at_zero == (f"{best['val_iou']:.4f}", f"{best['val_fa'] * 1e6:.2f}")


def test_data_given_as_the_folder_above_a_basicirstd_export_names_the_folder_meant(dataset, tmp_path, capsys):
    root = tmp_path / "export"
    shutil.copytree(dataset, root / "clip")  # BasicIRSTD: ROOT/NAME/images, masks
    assert main(["train", "--data", str(root), "--split-train", str(dataset / "train.txt"), "--split-val",
                 str(dataset / "val.txt"), "--out", str(tmp_path / "out"), "--config", "tiny"]) == 2
    assert one_error_line(capsys) == (f"error: --data {root} holds no images/ or masks/ folder: the data set is in "
                                      f"{root / 'clip'} (a BasicIRSTD export keeps it in a folder of its name)\n")
