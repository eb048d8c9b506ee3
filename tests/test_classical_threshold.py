"""The classical detectors' threshold factor k (detect where the score exceeds mean + k std): a lower k finds dimmer
targets; the defaults keep the tuned logits bit for bit; `irsam detect --threshold-k`, the proposals' origin and the
detection panel's "Threshold (std above mean)" box."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.core.project import ReviewProject
from app.core.provenance import ProposalOrigin
from model.classical import (CLASSICAL_DETECTORS, DEFAULT_THRESHOLD_K, make_classical_detector)
from tests.test_classical_target_size import _choose, old_logits  # the detectors before their options

BRIGHT_CORNERS = [(30, 40), (50, 200), (150, 60), (170, 180), (100, 30), (20, 120)]  # 3x3 targets 120 brighter
DIM_ROWS, DIM_COLS = slice(120, 123), slice(150, 153)  # a 3x3 target 30 brighter


def frame_with_dim_target(seed: int = 0) -> np.ndarray:
    """Noise around 60 (std 3), six bright targets that raise the score's std, and one dim target under the default
    threshold of Top-Hat and MPCM."""
    image = np.random.default_rng(seed).normal(60, 3, (200, 240))
    for row, col in BRIGHT_CORNERS:
        image[row : row + 3, col : col + 3] += 120
    image[DIM_ROWS, DIM_COLS] += 30
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(CLASSICAL_DETECTORS))
def test_the_default_k_gives_the_same_logits_bit_for_bit(name):
    image = frame_with_dim_target()[40:160, 60:210]
    expected = old_logits(name, image).tobytes()
    for detector in (make_classical_detector(name), make_classical_detector(name, threshold_k=None),
                     make_classical_detector(name, threshold_k=DEFAULT_THRESHOLD_K[name])):
        assert detector.k == DEFAULT_THRESHOLD_K[name]
        assert detector.detect([image])[0].logits.tobytes() == expected


@pytest.mark.parametrize("name, lower_k", [("tophat", 5.0), ("mpcm", 6.0)])
def test_a_dim_target_is_found_at_a_lower_k_only(name, lower_k):
    for seed in range(3):
        image = frame_with_dim_target(seed)
        default = make_classical_detector(name).detect([image])[0].mask
        lower = make_classical_detector(name, threshold_k=lower_k).detect([image])[0].mask
        for row, col in BRIGHT_CORNERS:
            assert default[row : row + 3, col : col + 3].any() and lower[row : row + 3, col : col + 3].any()
        assert not default[DIM_ROWS, DIM_COLS].any()
        assert lower[DIM_ROWS, DIM_COLS].any()


@pytest.mark.parametrize("k", [0.0, -1.0, float("nan"), float("inf")])
def test_k_must_be_a_number_above_0(k):
    with pytest.raises(ValueError, match="threshold factor k must be a number above 0"):
        make_classical_detector("tophat", threshold_k=k)


def test_an_origin_saved_before_the_threshold_existed_is_the_default_one():
    record = {"name": "tophat", "weights": None, "sha256": None, "config": None, "size_gate": None,
              "target_size": 7, "threshold_k": 12.0}
    now = ProposalOrigin.of(record, "8-bit")
    before = json.loads(now.to_text())
    del before["threshold_k"]  # as proposals saved by the earlier version hold it
    assert now.threshold_k is None and now.same_run_settings(ProposalOrigin.from_text(json.dumps(before)))
    changed = ProposalOrigin.of(record | {"threshold_k": 8.5}, "8-bit")
    assert changed.threshold_k == "8.5" and changed.label == "tophat (threshold mean + 8.5 std)"
    assert not changed.same_run_settings(now)


# --- irsam detect ---------------------------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path) -> Path:
    """Three 8-bit frames, each with the bright targets and the dim one."""
    folder = tmp_path / "clip" / "images"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i + 1:06d}.png"), frame_with_dim_target(seed=i))
    return folder.parent


def dim_target_found(project: Path) -> list[bool]:
    """Per frame, whether detections.csv holds a target over the dim one."""
    with open(project / "detections.csv") as f:
        rows = list(csv.DictReader(f))
    return [any(int(r["x0"]) <= DIM_COLS.stop - 1 and int(r["x1"]) >= DIM_COLS.start
                and int(r["y0"]) <= DIM_ROWS.stop - 1 and int(r["y1"]) >= DIM_ROWS.start
                for r in rows if r["stem"] == stem) for stem in ("000001", "000002", "000003")]


def test_detect_threshold_k_finds_the_dim_target_and_records_k(clip, tmp_path, capsys):
    default, lower = tmp_path / "default", tmp_path / "lower"
    assert main(["detect", str(clip), "--out", str(default), "--method", "tophat", "--quiet"]) == 0
    assert main(["detect", str(clip), "--out", str(lower), "--method", "tophat", "--threshold-k", "5",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "detector tophat (targets up to 7 px across) on cpu" in out
    assert "detector tophat (targets up to 7 px across, threshold mean + 5 std) on cpu" in out
    assert dim_target_found(default) == [False] * 3 and dim_target_found(lower) == [True] * 3
    assert json.loads((lower / "project.json").read_text())["detector"]["threshold_k"] == 5.0
    assert json.loads((default / "project.json").read_text())["detector"]["threshold_k"] == 12.0
    assert ReviewProject.open(default).proposal_origin("000001").threshold_k is None  # the default: as before
    origin = ReviewProject.open(lower).proposal_origin("000001")
    assert origin.threshold_k == "5" and origin.label == "tophat (threshold mean + 5 std)"


def test_detect_skip_done_tells_k_apart_and_takes_the_default_k_for_the_default(clip, tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["detect", str(clip), "--out", str(out), "--method", "mpcm", "--quiet"]) == 0
    # 15 is MPCM's default: the same settings as the run above
    assert main(["detect", str(clip), "--out", str(out), "--method", "mpcm", "--threshold-k", "15", "--quiet",
                 "--skip-done"]) == 0
    assert "3 frame(s) already proposed with these settings: skipped" in capsys.readouterr().out
    assert main(["detect", str(clip), "--out", str(out), "--method", "mpcm", "--threshold-k", "6", "--quiet",
                 "--skip-done"]) == 0
    assert "skipped (--skip-done)" not in capsys.readouterr().out  # made with another k: detected again
    assert ReviewProject.open(out).proposal_origin("000003").label == "mpcm (threshold mean + 6 std)"
    assert dim_target_found(out) == [True] * 3


def test_detect_threshold_k_with_irsam_is_warned_about(clip, tmp_path, capsys):
    code = main(["detect", str(clip), "--out", str(tmp_path / "p"), "--weights", str(tmp_path / "missing.pt"),
                 "--threshold-k", "6", "--quiet"])
    assert code == 2  # the weights are missing; the warning came first
    err = capsys.readouterr().err
    assert "warning: --threshold-k only applies to the classical methods; ignored for --method irsam" in err
    main(["detect", str(clip), "--out", str(tmp_path / "p"), "--weights", str(tmp_path / "missing.pt"),
          "--target-size", "16", "--threshold-k", "6", "--quiet"])
    assert ("warning: --target-size, --threshold-k only apply to the classical methods; ignored for --method irsam"
            in capsys.readouterr().err)


@pytest.mark.parametrize("k", ["0", "-2", "nan", "inf"])
def test_detect_refuses_a_k_not_above_0(clip, tmp_path, capsys, k):
    with pytest.raises(SystemExit):
        main(["detect", str(clip), "--out", str(tmp_path / "p"), "--method", "tophat", f"--threshold-k={k}"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [f"irsam detect: error: argument --threshold-k: must be a number above 0, got {k}"]
    assert not (tmp_path / "p").exists()


# --- the detection panel ----------------------------------------------------------------------------------


def test_the_panel_shows_the_threshold_for_classical_methods_and_runs_with_it(window, clip, qtbot):
    from model.size_gate import ungated

    assert window.open_path(clip)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    panel = window.detection_panel
    _choose(panel, "tophat")
    assert panel.threshold_k.isVisible() and panel.threshold_k.value() == 12.0
    assert panel.choice().threshold_k is None and panel.choice().label == "Top-Hat"
    assert "Lower finds dimmer targets, and more\nclutter" in panel.threshold_k.toolTip()
    assert "detects above mean + 12 std" in panel.info.text()
    _choose(panel, "mpcm")
    assert panel.threshold_k.value() == 15.0 and panel.choice().threshold_k is None  # MPCM's own default
    changes = []
    panel.choiceChanged.connect(changes.append)
    panel.threshold_k.setValue(6)
    assert changes and changes[-1].threshold_k == 6.0 and panel.choice().label == "MPCM (threshold mean + 6 std)"
    assert "detects above mean + 6 std" in panel.info.text()
    _choose(panel, "tophat")
    assert panel.threshold_k.value() == 6.0  # the analyst's value stays
    _choose(panel, "irsam", picked=False)
    assert not panel.threshold_k.isVisible()  # IRSAM has no such threshold
    assert panel.choice().threshold_k is None  # nor a choice that differs by it
    _choose(panel, "tophat")
    assert panel.threshold_k.isVisible() and panel.choice().threshold_k == 6.0
    panel.threshold_k.setValue(15)  # the analyst's own, MPCM's default: still theirs when MPCM and back
    _choose(panel, "mpcm")
    _choose(panel, "tophat")
    assert panel.threshold_k.value() == 15.0 and panel.choice().threshold_k == 15.0
    panel.threshold_k.setValue(5)

    window.run_detection("frame")
    assert not panel.threshold_k.isEnabled()  # not changed under a running detector
    qtbot.waitUntil(lambda: not window.detection_runner.busy and panel.run_all.isEnabled(), timeout=20000)
    assert panel.threshold_k.isEnabled()
    assert ungated(window.detector).k == 5.0
    mask = cv2.imread(str(window.session.project_dir / "masks" / "000001.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert mask[DIM_ROWS, DIM_COLS].any()
    assert window.session.project.proposal_origin("000001").label == "tophat (threshold mean + 5 std)"


# --- with the patch to app/commands/eval.py (/tmp/threshold_k_eval.patch) -------------------------------------


def test_eval_threshold_k_scores_the_detector_at_that_k(clip, tmp_path, capsys):
    (clip / "boxes.csv").write_text("frame,class,x,y,w,h\n" + "".join(
        f"{i},DRONE,{DIM_COLS.start + 1},{DIM_ROWS.start + 1},3,3\n" for i in (1, 2, 3)))
    results = {}
    for name, extra in (("default", []), ("lower", ["--threshold-k", "5"])):
        json_out = tmp_path / f"{name}.json"
        assert main(["eval", "--method", "tophat", "--clip", str(clip), "--json", str(json_out), *extra]) == 0
        results[name] = json.loads(json_out.read_text())
    assert results["default"]["pd"] == 0.0 and results["lower"]["pd"] == 1.0
    assert results["default"]["detector_options"]["threshold_k"] == 12.0
    assert results["lower"]["detector_options"]["threshold_k"] == 5.0
    assert main(["eval", "--weights", str(tmp_path / "missing.pt"), "--clip", str(clip), "--threshold-k", "5"]) == 2
    assert "warning: --threshold-k only applies to the classical methods; ignored for --weights" in \
        capsys.readouterr().err
