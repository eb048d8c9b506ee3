"""The classical detectors' largest target size: Top-Hat's element, MPCM's scales and the area filter follow it;
the default keeps the tuned windows bit for bit; `irsam detect --target-size` and the detection panel's spin box."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from model.classical import (CLASSICAL_DETECTORS, DEFAULT_TARGET_SIZE, ClassicalDetector, make_classical_detector,
                             mpcm_score, pstnn_score, tophat_score, window_for)
from model.metrics import components

TARGET_ROWS, TARGET_COLS = slice(95, 105), slice(113, 127)  # 10 rows x 14 columns, as the drones of IR_DRONE_146


def frame_with_target(seed: int = 0, shape=(200, 240)) -> np.ndarray:
    """Noise around 60 and one flat 14x10 target 100 brighter."""
    image = np.random.default_rng(seed).normal(60, 3, shape)
    image[TARGET_ROWS, TARGET_COLS] += 100
    return np.clip(image, 0, 255).astype(np.uint8)


def target_mask(shape=(200, 240)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[TARGET_ROWS, TARGET_COLS] = True
    return mask


def old_logits(name: str, image: np.ndarray) -> np.ndarray:
    """The classical detectors as they were before the target size: fixed windows, area floor 100 px."""
    score_fn, k = {"tophat": (tophat_score, 12.0), "mpcm": (mpcm_score, 15.0), "pstnn": (pstnn_score, 15.0)}[name]
    score = score_fn(image).astype(np.float32)
    logits = score - np.float32(score.mean() + k * score.std())
    _, labels, stats, _ = cv2.connectedComponentsWithStats((logits > 0).astype(np.uint8), connectivity=8)
    areas = stats[:, cv2.CC_STAT_AREA]
    rejected = (areas < 1) | (areas > max(0.005 * image.size, 100))
    rejected[0] = False
    if rejected.any():
        logits[rejected[labels]] = min(float(logits.min()), -1e-6)
    return logits


@pytest.mark.parametrize("name", sorted(CLASSICAL_DETECTORS))
def test_the_default_size_gives_the_same_logits_bit_for_bit(name):
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:120, 0:150]
    scene = np.clip(60 + 0.3 * cols + rng.normal(0, 3, (120, 150)), 0, 255).astype(np.uint8)
    scene[40:43, 70:73] += 60
    images = [scene, frame_with_target()[60:140, 80:180]]  # the second: the 100 px area floor decides
    for image in images:
        for detector in (make_classical_detector(name), make_classical_detector(name, DEFAULT_TARGET_SIZE)):
            assert detector.target_size == DEFAULT_TARGET_SIZE
            assert detector.detect([image])[0].logits.tobytes() == old_logits(name, image).tobytes()


def test_windows_hold_the_target_with_a_pixel_of_background_each_side():
    assert [window_for(size) for size in (1, 2, 7, 8, 14, 16)] == [3, 5, 9, 11, 17, 19]
    with pytest.raises(ValueError, match="at least 1 px"):
        make_classical_detector("tophat", 0)


def test_tophat_finds_a_14x10_target_whole_only_when_sized_for_it():
    image, target = frame_with_target(), target_mask()
    default = make_classical_detector("tophat").detect([image])[0].mask
    # the 9 px element fits inside the target: the opening keeps its middle, and only its corners are left
    assert (default & target).sum() < 0.3 * target.sum()
    assert len(components(default)) > 1
    sized = make_classical_detector("tophat", 16).detect([image])[0].mask
    assert len(components(sized)) == 1
    assert (sized & target).sum() == target.sum() and not (sized & ~target).any()


def test_mpcm_scales_reach_a_target_larger_than_its_default_cells():
    image = np.clip(np.random.default_rng(1).normal(60, 3, (200, 240)), 0, 255)
    image[88:112, 108:132] += 100  # 24 x 24
    image = image.astype(np.uint8)
    centre = (100, 120)
    default = make_classical_detector("mpcm").score_fn(image)[centre]
    sized = make_classical_detector("mpcm", 24).score_fn(image)[centre]
    # at the default scales (up to 9) every neighbour cell of the centre lies on the target too: little contrast
    assert default < 25 and sized > 85


def test_the_area_filter_admits_targets_of_the_size():
    image = np.zeros((100, 100), np.uint8)  # 0.5% of it is 50 px: the 100 px floor decides
    image[40:50, 40:54] = 200  # 140 px
    identity = lambda frame: frame.astype(np.float32)  # noqa: E731
    by_size = {size: ClassicalDetector("identity", identity, k=3.0, target_size=size) for size in (7, 16)}
    assert not by_size[7].detect([image])[0].mask.any()  # over the 100 px floor: taken for background
    assert by_size[16].detect([image])[0].mask.sum() == 140  # under 19 x 19


def test_pstnn_changes_only_its_area_filter():
    default, sized = make_classical_detector("pstnn"), make_classical_detector("pstnn", 16)
    assert default.score_fn is pstnn_score and sized.score_fn is pstnn_score
    assert sized.target_size == 16


# --- irsam detect ---------------------------------------------------------------------------------------


@pytest.fixture
def clip(tmp_path) -> Path:
    """Three 8-bit frames, each with the 14x10 target."""
    folder = tmp_path / "clip" / "images"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i + 1:06d}.png"), frame_with_target(seed=i))
    return folder.parent


def detections(project: Path) -> list[dict]:
    with open(project / "detections.csv") as f:
        return list(csv.DictReader(f))


def test_detect_target_size_finds_the_whole_target_and_records_the_size(clip, tmp_path, capsys):
    default, sized = tmp_path / "default", tmp_path / "sized"
    assert main(["detect", str(clip), "--out", str(default), "--method", "tophat", "--quiet"]) == 0
    assert main(["detect", str(clip), "--out", str(sized), "--method", "tophat", "--target-size", "16",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "detector tophat (targets up to 7 px across) on cpu" in out
    assert "detector tophat (targets up to 16 px across) on cpu" in out
    found = detections(sized)
    assert len(found) == 3  # one a frame
    for row in found:
        assert (int(row["x0"]), int(row["y0"]), int(row["x1"]), int(row["y1"]), int(row["area"])) == (
            113, 95, 126, 104, 140)
    assert all(int(row["area"]) < 140 for row in detections(default))  # only pieces of it
    assert json.loads((sized / "project.json").read_text())["detector"]["target_size"] == 16
    assert json.loads((default / "project.json").read_text())["detector"]["target_size"] == DEFAULT_TARGET_SIZE


def test_detect_target_size_with_irsam_is_warned_about(clip, tmp_path, capsys):
    code = main(["detect", str(clip), "--out", str(tmp_path / "p"), "--weights", str(tmp_path / "missing.pt"),
                 "--target-size", "16", "--quiet"])
    assert code == 2  # the weights are missing; the warning came first
    err = capsys.readouterr().err
    assert "warning: --target-size only applies to the classical methods; ignored for --method irsam" in err


def test_detect_refuses_a_target_size_under_1(clip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["detect", str(clip), "--out", str(tmp_path / "p"), "--method", "tophat", "--target-size", "0"])
    assert "--target-size: must be at least 1" in capsys.readouterr().err


# --- the detection panel ----------------------------------------------------------------------------------


def _choose(panel, method: str, picked: bool = True) -> None:
    """Select `method` in the list; `picked`: as the analyst picking it does (IRSAM's weights then load)."""
    index = next(i for i in range(panel.detector_combo.count())
                 if getattr(panel.detector_combo.itemData(i), "method", None) == method)
    panel.detector_combo.setCurrentIndex(index)
    if picked:
        panel.detector_combo.activated.emit(index)


def test_the_panel_sizes_a_classical_detector_and_runs_it(window, clip, qtbot):
    from model.size_gate import ungated

    assert window.open_path(clip)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    panel = window.detection_panel
    _choose(panel, "tophat")
    assert panel.target_size.isVisible() and panel.target_size.value() == DEFAULT_TARGET_SIZE
    assert "structuring element" in panel.target_size.toolTip()
    assert "suits targets up to 7 px across" in panel.info.text()
    changes = []
    panel.choiceChanged.connect(changes.append)
    panel.target_size.setValue(16)
    assert changes and changes[-1].target_size == 16 and panel.choice().target_size == 16
    assert "suits targets up to 16 px across" in panel.info.text()
    assert panel.choice().label == "Top-Hat (up to 16 px across)"
    _choose(panel, "irsam", picked=False)
    assert not panel.target_size.isVisible()  # IRSAM has no such window
    assert panel.choice().target_size == DEFAULT_TARGET_SIZE  # nor a choice that differs by it
    _choose(panel, "tophat")
    assert panel.target_size.isVisible() and panel.choice().target_size == 16

    window.run_detection("frame")
    assert not panel.target_size.isEnabled()  # not changed under a running detector
    qtbot.waitUntil(lambda: not window.detection_runner.busy and panel.run_all.isEnabled(), timeout=20000)
    assert panel.target_size.isEnabled()
    assert ungated(window.detector).target_size == 16
    mask = cv2.imread(str(window.session.project_dir / "masks" / "000001.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert (mask == target_mask()).all()
    assert window.session.project.proposal_origin("000001").label == "tophat (up to 16 px across)"


# --- with the patches to app/core/provenance.py and app/commands/eval.py -------------------------------------


def test_a_proposal_says_the_size_it_was_made_with(clip, tmp_path, capsys):
    from app.core.project import ReviewProject

    out = tmp_path / "p"
    assert main(["detect", str(clip), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    assert ReviewProject.open(out).proposal_origin("000001").target_size is None  # the default: as before
    assert main(["detect", str(clip), "--out", str(out), "--method", "tophat", "--target-size", "16", "--quiet",
                 "--skip-done"]) == 0
    assert "skipped (--skip-done)" not in capsys.readouterr().out  # made with another size: detected again
    origin = ReviewProject.open(out).proposal_origin("000001")
    assert origin.target_size == "16 px" and origin.label == "tophat (up to 16 px across)"
    assert main(["detect", str(clip), "--out", str(out), "--method", "tophat", "--target-size", "16", "--quiet",
                 "--skip-done"]) == 0
    assert "3 frame(s) already proposed with these settings: skipped" in capsys.readouterr().out


def test_eval_target_size_scores_the_sized_detector(clip, tmp_path, capsys):
    (clip / "boxes.csv").write_text("frame,class,x,y,w,h\n" + "".join(
        f"{i},DRONE,113,95,14,10\n" for i in (1, 2, 3)))
    results = {}
    for name, extra in (("default", []), ("sized", ["--target-size", "16"])):
        json_out = tmp_path / f"{name}.json"
        assert main(["eval", "--method", "tophat", "--clip", str(clip), "--json", str(json_out), *extra]) == 0
        results[name] = json.loads(json_out.read_text())
    assert results["default"]["pd"] == results["sized"]["pd"] == 1.0
    # the default finds the target's four corners, three of them false alarms; the sized element the target whole
    assert results["default"]["false_alarms_per_frame"] == 3.0 and results["sized"]["false_alarms_per_frame"] == 0.0
    assert results["sized"]["detector_options"]["target_size"] == 16
    assert results["default"]["detector_options"]["target_size"] == DEFAULT_TARGET_SIZE
    assert main(["eval", "--weights", str(tmp_path / "missing.pt"), "--clip", str(clip), "--target-size", "16"]) == 2
    assert "warning: --target-size only applies to the classical methods; ignored for --weights" in \
        capsys.readouterr().err
