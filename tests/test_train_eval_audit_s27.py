"""CLI audit of `irsam eval` and `irsam train`: eval refuses outputs that are its own inputs, a resumed run whose
best.pt is gone or damaged writes a new one and says so, an --out holding a symlink loop is refused in one line,
--frames is quoted as given and a range past the clip's end is warned of, and a missing --extra-data is said as
such."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from model.checkpoint import read_torch_file
from tests.datasets import write_sirst_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """6 frames of 32x48: 4 for training, 2 for validation."""
    return write_sirst_dataset(tmp_path_factory.mktemp("sirst") / "d", n_frames=6, size=(32, 48))


def write_clip(clip: Path, n_frames: int) -> None:
    """images/000001.png ... with a 3x3 target each, boxed in boxes.csv."""
    (clip / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(1, n_frames + 1):
        frame = rng.integers(20, 40, (32, 48)).astype(np.uint8)
        frame[10:13, 3 * k : 3 * k + 3] = 220
        cv2.imwrite(str(clip / "images" / f"{k:06d}.png"), frame)
    rows = ["frame,class,x,y,w,h"] + [f"{k},DRONE,{3 * k},10,3,3" for k in range(1, n_frames + 1)]
    (clip / "boxes.csv").write_text("\n".join(rows) + "\n")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# --- 1. eval refuses to write over what it reads --------------------------------------------------------------

@pytest.mark.parametrize("case", ["mask", "image", "new file among the images", "link to a mask", "split", "weights",
                                  "plots into the masks", "clip boxes", "clip frame"])
def test_eval_refuses_an_output_that_is_one_of_its_inputs_before_scoring(dataset, tmp_path, capsys, case):
    data = tmp_path / "d"
    data.mkdir()
    for name in ("images", "masks"):
        (data / name).symlink_to(dataset / name)  # a folder given through a link is its target
    (data / "val.txt").write_text((dataset / "val.txt").read_text())
    (data / "w.pt").write_bytes(b"weights")  # refused before the weights are read
    write_clip(tmp_path / "clip", 3)
    data_set = ["--images", str(data / "images"), "--masks", str(data / "masks")]
    link = tmp_path / "results.json"
    link.symlink_to(dataset / "masks" / "syn_004.png")
    argv, guarded, said = {
        "mask": (["--method", "mpcm", *data_set, "--json", str(data / "masks" / "syn_004.png")],
                 dataset / "masks" / "syn_004.png",
                 f"--json {data / 'masks' / 'syn_004.png'} (resolved: {dataset / 'masks' / 'syn_004.png'}) is inside "
                 f"the --masks folder {data / 'masks'}"),
        "image": (["--method", "mpcm", *data_set, "--json", str(dataset / "images" / "syn_004.png")],
                  dataset / "images" / "syn_004.png", f"--json {dataset / 'images' / 'syn_004.png'} is inside the "
                                                      f"--images folder {data / 'images'}"),
        "new file among the images": (["--method", "mpcm", *data_set, "--json", str(dataset / "images" / "r.json")],
                                      dataset / "images" / "r.json", "is inside the --images folder"),
        "link to a mask": (["--method", "mpcm", *data_set, "--json", str(link)], dataset / "masks" / "syn_004.png",
                           f"--json {link} (resolved: {dataset / 'masks' / 'syn_004.png'}) is inside the --masks "
                           f"folder {data / 'masks'}"),
        "split": (["--method", "mpcm", *data_set, "--split", str(data / "val.txt"), "--json", str(data / "val.txt")],
                  data / "val.txt", f"--json {data / 'val.txt'} is the --split file {data / 'val.txt'}: writing the "
                                    "results would overwrite it"),
        "weights": (["--weights", str(data / "w.pt"), *data_set, "--json", str(data / "w.pt")], data / "w.pt",
                    f"--json {data / 'w.pt'} is the --weights file {data / 'w.pt'}"),
        "plots into the masks": (["--method", "mpcm", *data_set, "--plots", str(dataset / "masks")],
                                 dataset / "masks" / "roc_mpcm.png",
                                 f"--plots {dataset / 'masks'} is the --masks folder {data / 'masks'}"),
        "clip boxes": (["--method", "mpcm", "--clip", str(tmp_path / "clip"), "--json",
                        str(tmp_path / "clip" / "boxes.csv")], tmp_path / "clip" / "boxes.csv",
                       f"is the --clip's boxes file {tmp_path / 'clip' / 'boxes.csv'}"),
        "clip frame": (["--method", "mpcm", "--clip", str(tmp_path / "clip"), "--json",
                        str(tmp_path / "clip" / "images" / "000002.png")], tmp_path / "clip" / "images" / "000002.png",
                       f"is inside the --clip's frames folder {tmp_path / 'clip' / 'images'}"),
    }[case]
    before = guarded.read_bytes() if guarded.exists() else None
    listing = sorted(p.name for p in guarded.parent.iterdir())
    assert main(["eval", *argv]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: ") and said in line, line
    assert (guarded.read_bytes() if guarded.exists() else None) == before
    assert sorted(p.name for p in guarded.parent.iterdir()) == listing  # nothing added either


def test_eval_still_writes_beside_its_inputs(dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["eval", "--method", "mpcm", "--images", str(dataset / "images"), "--masks", str(dataset / "masks"),
                 "--split", str(dataset / "val.txt"), "--json", str(out), "--plots", str(tmp_path / "plots")]) == 0
    assert json.loads(out.read_text())["n_images"] == 2
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["pd_fa_mpcm.png", "roc_mpcm.png"]


# --- 4. --frames quoted as given; a range past the end is warned of ----------------------------------------------

def test_frames_past_the_clip_are_quoted_as_given_and_a_cut_range_is_warned_of(tmp_path, capsys):
    clip = tmp_path / "clip"
    write_clip(clip, 5)
    assert main(["eval", "--method", "mpcm", "--clip", str(clip), "--frames", "7-9"]) == 2
    assert one_error_line(capsys) == "error: --frames 7-9: the clip has 5 frames"
    out = tmp_path / "r.json"
    assert main(["eval", "--method", "mpcm", "--clip", str(clip), "--frames", "4-9", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: --frames 4-9: the clip's last frame is 5; scoring frames 4 to 5" in err
    assert json.loads(out.read_text())["frames"] == [4, 5]
    assert main(["eval", "--method", "mpcm", "--clip", str(clip), "--frames", "4-5"]) == 0
    assert "warning" not in capsys.readouterr().err  # a range inside the clip: nothing to say


# --- 2. best.pt missing or damaged on resume ----------------------------------------------------------------

def train_cli(dataset: Path, out: Path, epochs: int) -> int:
    return main(["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"),
                 "--split-val", str(dataset / "val.txt"), "--out", str(out), "--config", "tiny", "--epochs",
                 str(epochs), "--batch-size", "2", "--crop", "64", "--workers", "0", "--device", "cpu",
                 "--precision", "fp32"])


def summary_of(out_text: str) -> dict:
    return json.loads(out_text[out_text.index("\n{\n") + 1 :])


@pytest.fixture(scope="module")
def one_epoch_run(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "run"
    assert train_cli(dataset, run, 1) == 0
    return run


def copy_run(run: Path, to: Path) -> Path:
    to.mkdir()
    for name in ("last.pt", "metrics.jsonl"):
        (to / name).write_bytes((run / name).read_bytes())
    return to


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_finished_run_whose_best_pt_is_gone_makes_it_again_of_last_pt_and_says_so(
        dataset, one_epoch_run, tmp_path, capsys, damage):
    run = copy_run(one_epoch_run, tmp_path / "run")
    if damage == "truncated":
        (run / "best.pt").write_bytes((one_epoch_run / "best.pt").read_bytes()[:300])
    capsys.readouterr()
    assert train_cli(dataset, run, 1) == 0
    captured = capsys.readouterr()
    said = "missing" if damage == "deleted" else "unreadable ("
    assert f"warning: {run / 'best.pt'} is {said}" in captured.out
    assert ("best.pt is made again of last.pt's weights of epoch 1, the last epoch, not necessarily the best"
            in captured.out)
    summary = summary_of(captured.out)
    assert summary["best"] == str(run / "best.pt") and summary["complete"]
    assert summary["best_note"].startswith(f"{run / 'best.pt'} was {said}")
    assert summary["best_note"].endswith(
        "best.pt holds last.pt's weights of epoch 1, the last, not necessarily the best")
    best = read_torch_file(run / "best.pt")
    assert "decision_threshold" in best["metadata"] and best["metadata"]["training"]["epoch"] == 1
    assert best["metadata"]["metrics"]["val"] == summary["best_val_metrics"]
    last = torch.load(run / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(best["model"][name], last[name]) for name in last)


def test_a_resumed_run_whose_best_pt_is_gone_writes_a_new_one_from_its_next_epochs(
        dataset, one_epoch_run, tmp_path, capsys):
    run = copy_run(one_epoch_run, tmp_path / "run")
    last = torch.load(run / "last.pt", weights_only=True)
    last["best_iou"] = 1.0  # no later epoch beats it: the run would otherwise never write best.pt again
    torch.save(last, run / "last.pt")
    capsys.readouterr()
    assert train_cli(dataset, run, 2) == 0
    captured = capsys.readouterr()
    assert (f"warning: {run / 'best.pt'} is missing: the weights of the run's best epoch so far (val IoU 1.0000) are "
            "lost; the next validated epoch writes a new best.pt, the best of the epochs from here on") in captured.out
    summary = summary_of(captured.out)
    assert summary["best"] == str(run / "best.pt")
    assert summary["best_note"] == (f"{run / 'best.pt'} was missing when the run resumed (the weights of its best "
                                    "epoch until then, val IoU 1.0000, were lost): best.pt holds the best of epoch 2")
    best = read_torch_file(run / "best.pt")
    assert best["metadata"]["training"]["epoch"] == 2 and "decision_threshold" in best["metadata"]
    assert summary["best_val_iou"] == best["metadata"]["metrics"]["val"]["iou"] < 1.0
    assert torch.load(run / "last.pt", weights_only=True)["best_iou"] == summary["best_val_iou"]


def test_a_resume_with_best_pt_in_place_says_nothing_of_it(dataset, one_epoch_run, tmp_path, capsys):
    run = copy_run(one_epoch_run, tmp_path / "run")
    (run / "best.pt").write_bytes((one_epoch_run / "best.pt").read_bytes())
    capsys.readouterr()
    assert train_cli(dataset, run, 1) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.out and "best_note" not in summary_of(captured.out)



def same_contents(a, b) -> bool:
    """Whether two torch.load results hold the same values, tensors compared exactly."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_contents(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_contents(x, y) for x, y in zip(a, b))
    return a == b


def test_a_rebuilt_best_pt_is_recorded_in_last_pt_so_running_again_reports_what_best_pt_holds(
        dataset, one_epoch_run, tmp_path, capsys):
    run = copy_run(one_epoch_run, tmp_path / "run")
    before = torch.load(run / "last.pt", weights_only=True)
    before["best_iou"] = 0.75  # the lost best epoch's: more than best.pt's rebuild of last.pt's weights reaches
    torch.save(before, run / "last.pt")
    assert train_cli(dataset, run, 1) == 0  # rebuilds best.pt of last.pt's weights
    held = read_torch_file(run / "best.pt")["metadata"]["metrics"]["val"]
    after = torch.load(run / "last.pt", weights_only=True)
    assert after["best_iou"] == held["iou"] < 0.75 and json.loads(after["best_metrics"]) == held
    assert same_contents({k: v for k, v in after.items() if not k.startswith("best_")},
                         {k: v for k, v in before.items() if not k.startswith("best_")})
    capsys.readouterr()
    assert train_cli(dataset, run, 1) == 0  # the same command again: nothing to do
    captured = capsys.readouterr()
    summary = summary_of(captured.out)
    assert "warning" not in captured.out and "best_note" not in summary
    assert summary["best_val_iou"] == held["iou"] and summary["best_val_metrics"] == held


def test_a_run_killed_after_its_new_best_pt_but_before_last_pt_resumes_against_best_pt_not_the_lost_best(
        dataset, one_epoch_run, tmp_path, capsys, monkeypatch):
    import model.train

    run = copy_run(one_epoch_run, tmp_path / "run")
    last = torch.load(run / "last.pt", weights_only=True)
    last["best_iou"] = 1.0  # the lost best epoch's: no later epoch reaches it
    torch.save(last, run / "last.pt")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model.train, "_save_resume_state", killed)  # epoch 2's best.pt is written, its last.pt not
    assert train_cli(dataset, run, 2) == 130
    assert read_torch_file(run / "best.pt")["metadata"]["training"]["epoch"] == 2
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["epoch"] == 0 and last["best_iou"] == -1.0 and json.loads(last["best_metrics"]) == {}
    monkeypatch.undo()
    capsys.readouterr()
    assert train_cli(dataset, run, 2) == 0  # epoch 2 again: its validation makes best.pt anew
    summary = summary_of(capsys.readouterr().out)
    best = read_torch_file(run / "best.pt")["metadata"]
    assert summary["best_val_iou"] == best["metrics"]["val"]["iou"] < 1.0
    assert summary["best_val_metrics"] == best["metrics"]["val"]
    assert torch.load(run / "last.pt", weights_only=True)["best_iou"] == summary["best_val_iou"]

# --- 3. a symlink loop in --out ------------------------------------------------------------------------------

def test_an_out_folder_holding_a_symlink_loop_is_refused_in_one_line(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").symlink_to("b")
    (out / "b").symlink_to("a")
    assert train_cli(dataset, out, 1) == 2
    assert one_error_line(capsys) == (f"error: --out {out} holds a, b and no last.pt to resume: train into a new or "
                                      "empty folder")


# --- 5. --extra-data that does not exist --------------------------------------------------------------------

def test_an_extra_data_entry_that_does_not_exist_is_said_as_such(dataset, tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    assert main(["train", "--data", str(dataset), "--split-train", str(dataset / "train.txt"),
                 "--split-val", str(dataset / "val.txt"), "--out", str(tmp_path / "out"), "--config", "tiny",
                 "--epochs", "1", "--device", "cpu", "--extra-data", str(nowhere)]) == 2
    assert one_error_line(capsys) == (f"error: --extra-data {nowhere}: no such folder or split file (extra data is a "
                                      "folder with images/ and masks/, or a split file inside one)")
    assert not (tmp_path / "out").exists()


def test_a_last_pt_older_than_best_pt_resumes_against_best_pt(dataset, one_epoch_run, tmp_path, capsys):
    """An epoch writes best.pt, then last.pt: killed between the two, last.pt records the best before it. The resume
    takes best.pt's IoU as the best to beat (a worse epoch would otherwise replace it) and reports it."""
    run = copy_run(one_epoch_run, tmp_path / "run")
    (run / "best.pt").write_bytes((one_epoch_run / "best.pt").read_bytes())
    held = read_torch_file(run / "best.pt")["metadata"]["metrics"]["val"]
    last = torch.load(run / "last.pt", weights_only=True)
    last["best_iou"], last["best_metrics"] = held["iou"] / 2, json.dumps({"iou": held["iou"] / 2})
    torch.save(last, run / "last.pt")
    capsys.readouterr()
    assert train_cli(dataset, run, 1) == 0
    captured = capsys.readouterr()
    assert f"holds val IoU {held['iou']:.4f}, last.pt recorded {held['iou'] / 2:.4f}" in captured.out
    summary = summary_of(captured.out)
    assert summary["best_val_iou"] == held["iou"] and summary["best_val_metrics"] == held
    assert read_torch_file(run / "best.pt")["metadata"]["metrics"]["val"] == held  # kept
