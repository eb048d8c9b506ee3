"""CLI audit, session 28: a run's last.pt given to eval / detect is warned of in one line and recorded in eval's
JSON; no curve plots for a data set with no target, and plots named after the weights file; one entry per image
component in --errors --resize-512; "1 frame" in eval's and the export dialog's messages."""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app import cli
from app.core.export import FRAME_CHANGED, ExportReport
from app.widgets.export_dialog import describe_report
from model.build import build_irsam
from model.checkpoint import RESUME_STATE_KEYS, ResumeStateWarning, save_checkpoint
from model.config import tiny
from model.evaluate import NativeErrorMetrics
from tests.datasets import write_sirst_dataset

SHARED = Path("/work/shared")
NUAA = SHARED / "data/nuaa-sirst"
CLIP = SHARED / "data/sequences/IR_DRONE_156"


def write_run(folder: Path, seed: int = 0) -> Path:
    """A run folder as irsam train leaves it after 3 epochs: last.pt (a resume state) and best.pt with the decision
    threshold chosen on validation. Returns last.pt."""
    folder.mkdir(parents=True)
    config = tiny()
    torch.manual_seed(seed)
    network = build_irsam(config)
    state = {key: {} for key in RESUME_STATE_KEYS}
    state.update(model=network.state_dict(), epoch=2, config=json.dumps(config.to_dict()))
    torch.save(state, folder / "last.pt")
    save_checkpoint(folder / "best.pt", network, config, {"decision_threshold": 0.25})
    return folder / "last.pt"


def resume_state_line(last: Path) -> str:
    best = last.with_name("best.pt")
    return (f"warning: {last} is the resume state of an irsam train run (last.pt), not a checkpoint to detect with: "
            "it holds the weights of the run's last epoch (epoch 3) and no decision threshold chosen on validation, "
            f"so threshold 0 is used; the run's best.pt beside it ({best}) holds the best validated weights with "
            "their threshold: load that one to detect")


# --- 1. last.pt as --weights: one warning line, and the JSON says what was scored ------------------------------------

def test_eval_of_last_pt_warns_in_one_line_and_records_the_threshold_and_the_resume_state(tmp_path, capsys):
    data = write_sirst_dataset(tmp_path / "data", n_frames=2)
    last = write_run(tmp_path / "run")
    out = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning left to Python's display fails the test
        assert cli.main(["eval", "--weights", str(last), "--images", str(data / "images"), "--masks",
                         str(data / "masks"), "--device", "cpu", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert resume_state_line(last) in err.splitlines()
    assert "ResumeStateWarning" not in err and "predictor.py" not in err
    weights = json.loads(out.read_text())["weights"]
    assert weights["decision_threshold"] == 0.0
    assert weights["resume_state"] == {"epochs_done": 3, "best": str(last.with_name("best.pt"))}

    assert cli.main(["eval", "--weights", str(last.with_name("best.pt")), "--images", str(data / "images"),
                     "--masks", str(data / "masks"), "--device", "cpu", "--json", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    weights = json.loads(out.read_text())["weights"]
    assert (weights["decision_threshold"], weights["resume_state"]) == (0.25, None)


def test_detect_with_last_pt_warns_in_one_line_and_says_1_frame(tmp_path, capsys):
    last = write_run(tmp_path / "run")
    source = tmp_path / "frames"
    source.mkdir()
    shutil.copy(NUAA / "images" / "Misc_1.png", source / "Misc_1.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cli.main(["detect", str(source), "--out", str(tmp_path / "project"), "--weights", str(last),
                         "--device", "cpu", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert resume_state_line(last) in captured.err.splitlines()
    assert "ResumeStateWarning" not in captured.err
    assert f"folder {source}: 1 frame " in captured.out


def test_other_warnings_pass_through_as_they_were_raised():
    from model.evaluate import resume_state_warning_to

    reported = []
    with pytest.warns(DeprecationWarning, match="^something else$") as caught:
        with resume_state_warning_to(reported.append):
            warnings.warn(ResumeStateWarning("a resume state"))
            warnings.warn("something else", DeprecationWarning)
    assert reported == ["a resume state"]
    assert [w.category for w in caught] == [DeprecationWarning] and caught[0].filename == __file__


# --- 2. plots: none without a target; named after the weights file ---------------------------------------------------

def test_no_plots_for_a_data_set_without_target(tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in ("Misc_1", "Misc_2"):
        shutil.copy(NUAA / "images" / f"{stem}.png", images)
        cv2.imwrite(str(masks / f"{stem}.png"), np.zeros(cv2.imread(str(images / f"{stem}.png")).shape[:2], np.uint8))
    plots, out = tmp_path / "plots", tmp_path / "r.json"
    assert cli.main(["eval", "--method", "tophat", "--images", str(images), "--masks", str(masks),
                     "--plots", str(plots), "--json", str(out)]) == 0
    assert (f"note: no plots written into {plots}: the masks hold no target to detect, so ROC and Pd-Fa are "
            "undefined") in capsys.readouterr().err.splitlines()
    assert not plots.exists()
    result = json.loads(out.read_text())
    assert result["n_targets"] == 0 and result["plots"] == []


def test_plots_of_two_runs_best_pt_in_one_folder_are_both_kept(tmp_path, capsys):
    data = write_sirst_dataset(tmp_path / "data", n_frames=2)
    plots, out = tmp_path / "plots", tmp_path / "r.json"
    listed = []
    for run, seed in (("a", 0), ("b", 1)):
        best = write_run(tmp_path / run, seed).with_name("best.pt")
        assert cli.main(["eval", "--weights", str(best), "--images", str(data / "images"), "--masks",
                         str(data / "masks"), "--device", "cpu", "--plots", str(plots), "--json", str(out)]) == 0
        listed += json.loads(out.read_text())["plots"]
    names = ["roc_irsam_a_best.png", "pd_fa_irsam_a_best.png", "roc_irsam_b_best.png", "pd_fa_irsam_b_best.png"]
    assert listed == [str(plots / name) for name in names]
    assert sorted(p.name for p in plots.iterdir()) == sorted(names)


# --- 3. --errors --resize-512: an image component split in two at 512x512 is listed once ----------------------------

def test_a_false_alarm_split_at_512_is_listed_once_in_image_pixels():
    logits = np.full((1024, 1024), -10.0, np.float32)  # downscaled by 2: the 1 px bridge falls between samples
    logits[200:204, 200:204] = logits[204, 204] = logits[205:209, 205:209] = 10.0
    metrics = NativeErrorMetrics(resize_to=512, keep_errors=True)
    metrics.update(logits, np.zeros((1024, 1024), np.uint8), "split")
    (frame,) = metrics.errors()["frames"]
    assert frame["false_alarms"] == [{"row": 204.0, "col": 204.0, "area": 33,
                                      "at_512": {"row": 101.0, "col": 101.0, "area": 5}}]


def test_a_missed_target_split_at_512_is_listed_once():
    truth = np.zeros((1024, 1024), np.uint8)  # nearest neighbour keeps the even rows and columns: not row 301
    truth[300:303, 300:303] = truth[301, 303:306] = truth[300:303, 306:309] = 255
    metrics = NativeErrorMetrics(resize_to=512, keep_errors=True)
    metrics.update(np.full((1024, 1024), -10.0, np.float32), truth, "missed")
    (frame,) = metrics.errors()["frames"]
    assert [(t["row"], t["col"], t["area"]) for t in frame["missed"]] == [(301.0, 304.0, 21)]
    assert frame["false_alarms"] == []


# --- 4. "1 frame" ----------------------------------------------------------------------------------------------------

def test_eval_says_1_frame_past_the_clip_s_last_image(tmp_path, capsys):
    clip = tmp_path / "clip"
    (clip / "images").mkdir(parents=True)
    for frame in sorted((CLIP / "images").iterdir())[:2]:
        shutil.copy(frame, clip / "images")
    header, first, second = (CLIP / "boxes.csv").read_text().splitlines()[:3]
    (clip / "boxes.csv").write_text(f"{header}\n{first}\n{second}\n3,DRONE,80,116,11,8\n")
    assert cli.main(["eval", "--method", "tophat", "--clip", str(clip)]) == 0
    assert (f"warning: {clip / 'boxes.csv'} has boxes for 1 frame past the clip's last image (2): frame 3; their "
            "targets are not scored") in capsys.readouterr().err.splitlines()


def test_the_export_summary_speaks_of_one_frame_in_the_singular():
    report = ExportReport(Path("/data/set"), "sirst", "test", exported=["s_000001"], moved=[("s_000001", "train")],
                          replaced=[("s_000001", "/old/project", None)], changed=["000003"],
                          kept=[("s_000003", FRAME_CHANGED), ("s_000004", "not in the source")],
                          shared=[("000008", "a_000008")], temporary_removed=[".x.png.abcd1234.tmp"],
                          skipped=[("000003", FRAME_CHANGED)])
    assert describe_report(report).splitlines() == [
        "1 frame exported to /data/set (sirst, test split).",
        "1 frame of this sequence was on the train side before: it moved to test.",
        "1 frame exported before from another project or source under this sequence name was replaced (this clip "
        "holds every frame of that one): /old/project.",
        "1 frame not exported: it changed on disk since its mask or status was made (000003). Review it again "
        "(Review > Check frames on disk marks it) and export again.",
        "1 frame not exported: the data set already holds its pixels as a frame of another sequence, a clip that "
        "overlaps this one (000008 (as a_000008)). To export it with this sequence instead, reject it in the other "
        "sequence's project, export it again (adding to the data set), then export this one again.",
        "1 temporary file left by an export cut short was removed.",
        "It keeps its earlier export, made from the pixels of then.",
        "1 frame that cannot be read now keeps its earlier export (s_000004: not in the source); restore it and "
        "export again to update it.",
        "1 frame skipped:",
        f"  1 x {FRAME_CHANGED}",
    ]
