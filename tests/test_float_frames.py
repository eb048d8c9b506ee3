"""32-bit float frames (a radiometric camera's temperatures), NaN where the camera gave no data: read, normalised,
detected, exported and shown as they are; no data carries no edge to the detectors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PySide6 import QtCore

from app.cli import main
from app.core.export import export_project
from app.core.frames import open_source
from app.core.normalization import Normalization, default_for
from app.core.project import ReviewProject
from app.core.synthetic import DEMO_CONFIG, generate_sequence
from app.measure import cursor_readout
from model.classical import make_classical_detector
from tests.test_normalization import FrameList

NO_DATA = (3, 4)  # (x, y) of a pixel the camera gave no value for, in every frame


@pytest.fixture(scope="module")
def temperatures(tmp_path_factory) -> tuple[Path, object]:
    """A 12-frame float32 stack in degrees C (20 + counts / 1000) of a synthetic 16-bit sequence, with its bad pixels."""
    # targets as bright as the demo's, which the classical detectors find
    sequence = generate_sequence(dataclasses.replace(DEMO_CONFIG, n_frames=12, height=64, width=80, n_targets=(1, 1),
                                                     empty_fraction=0.0), seed=5)
    stack = (20.0 + np.stack(sequence.frames).astype(np.float32) / 1000.0).astype(np.float32)
    stack[:, NO_DATA[1], NO_DATA[0]] = np.nan
    path = tmp_path_factory.mktemp("float") / "temperatures.tif"
    tifffile.imwrite(path, stack)
    return path, sequence


def test_a_float_stack_is_read_as_it_is_and_its_no_data_pixels_are_filled_from_around_them(temperatures):
    path, sequence = temperatures
    with open_source(path) as source:
        assert source.dtype == np.float32 and len(source) == 12 and source.frame_shape(0) == (64, 80)
        frame = source.frame(0)
        assert np.isnan(frame[NO_DATA[1], NO_DATA[0]]) and 20.0 <= np.nanmin(frame) < np.nanmax(frame) < 90.0
        normalization = default_for(source)
    assert np.isfinite([normalization.low, normalization.high]).all() and normalization.low < normalization.high
    assert set(normalization.bad_pixels) == set(sequence.hot_pixels) | set(sequence.dead_pixels)
    image = normalization.apply(frame)
    assert image.dtype == np.uint8 and _within_its_neighbours(image, *NO_DATA)
    # the detectors see what they see of the same camera's 16-bit counts: the temperatures are a linear map of them
    counts = [frame.copy() for frame in sequence.frames]
    counts_normalization = default_for(FrameList(counts))
    expected = counts_normalization.apply(counts[0])
    same = np.ones(image.shape, bool)
    same[NO_DATA[1], NO_DATA[0]] = False
    assert np.abs(image[same].astype(int) - expected[same]).max() <= 1
    assert cursor_readout(frame, 10, 20).startswith(f"x 10  y 20  value {float(frame[20, 10]):.5g}  |")
    # +-inf is no temperature either (odd-input audit 25: +inf went to the top of the window, a target in every frame)
    infinite = frame.copy()
    infinite[5, 6], infinite[7, 8] = np.inf, -np.inf
    image = normalization.apply(infinite)
    assert _within_its_neighbours(image, 6, 5) and _within_its_neighbours(image, 8, 7)


def _within_its_neighbours(image: np.ndarray, x: int, y: int) -> bool:
    around = np.delete(image[y - 1 : y + 2, x - 1 : x + 2].ravel(), 4)
    return around.min() <= image[y, x] <= around.max()


def test_float_frames_are_detected_and_exported_with_their_raw_values(temperatures, tmp_path, capsys):
    path, sequence = temperatures
    out = tmp_path / "project"
    assert main(["detect", str(path), "--out", str(out), "--method", "tophat", "--quiet"]) == 0
    assert "12 frames 80x64 float32" in capsys.readouterr().out
    assert main(["info", str(path)]) == 0
    low, high = capsys.readouterr().out.split("value range:")[1].split(" over")[0].strip().split("..")
    assert 20.0 <= float(low) < float(high) < 90.0 and float(high) != int(float(high))  # not rounded to degrees
    project = ReviewProject.open(out)
    assert all(project.has_prediction(stem) for stem in project.stems)
    for stem in project.stems[:2]:
        project.set_status(stem, "accepted")
    report = export_project(project, tmp_path / "labels", "sirst", raw=True)
    assert len(report.exported) == 2
    with open_source(path) as source:
        first = source.frame(0)
    raw = tifffile.imread(next((tmp_path / "labels" / "raw").glob("*.tif")))
    assert raw.dtype == np.float32 and np.array_equal(raw, first, equal_nan=True)

    stack = tifffile.imread(path)
    stack[1] = np.nan  # the camera gave nothing for a whole frame: no training image, and the report says why
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, stack)
    assert main(["detect", str(blank), "--out", str(tmp_path / "blank_project"), "--method", "tophat",
                 "--quiet"]) == 0
    project = ReviewProject.open(tmp_path / "blank_project")
    for stem in project.stems[:2]:
        project.set_status(stem, "negative")
    report = export_project(project, tmp_path / "labels2", "sirst")
    assert len(report.exported) == 1 and report.skipped[-1] == (project.stems[1], "no data (every pixel NaN)")


@pytest.mark.gui
def test_the_window_shows_a_float_stack_and_reads_out_its_temperatures(window, temperatures, tmp_path, qtbot):
    path, _ = temperatures
    stack = tmp_path / "temperatures.tif"
    stack.write_bytes(path.read_bytes())  # its project goes beside it
    assert window.open_path(stack)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    assert window.frame.dtype == np.float32
    window.frame_view.cursorMoved.emit(10, 20)
    assert window.cursor_label.text().startswith(f"x 10  y 20  value {float(window.frame[20, 10]):.5g}  |")
    low, high = window.frame_view.sequence_levels
    assert 20.0 < low < high < 90.0 and high != int(high)  # the input window in degrees, not whole counts
    dialog = window.choose_normalization()
    assert dialog.low.decimals() == 4 and dialog.high.value() == pytest.approx(high, abs=1e-4)
    dialog.reject()
    window.frame_view.cursorMoved.emit(*NO_DATA)
    assert "value nan" in window.cursor_label.text()

    infinite = tmp_path / "infinite.tif"  # an infinite pixel is shown as no data; the histogram stays drawn
    frames = tifffile.imread(path)
    frames[:, 5, 6] = np.inf
    tifffile.imwrite(infinite, frames)
    assert window.open_path(infinite)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    assert np.isinf(window.frame[5, 6]) and np.isnan(window.frame_view.image.image[5, 6])
    xs, ys = window.frame_view.histogram.item.plot.getData()
    assert xs is not None and len(xs) > 0 and np.isfinite(xs).all()

    blank = tmp_path / "blank_first.tif"  # a first frame of no data at all: the window opened on an exception
    frames = tifffile.imread(path)
    frames[0] = np.nan
    tifffile.imwrite(blank, frames)
    assert window.open_path(blank)
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    assert np.isnan(window.frame).all() and np.isfinite(window.frame_view.sequence_levels).all()
    window.timeline.go_to(1)
    assert np.isfinite(window.frame).any()


def test_no_data_pixels_are_left_out_of_the_numbers(temperatures, tmp_path, capsys):
    """One NaN pixel beside a target made its peak and SNR nan; a frame of no data at all made `info` print
    nan..nan."""
    path, _ = temperatures
    with open_source(path) as source:
        frame = source.frame(0).copy()
    x, y = 40, 30
    frame[y, x] = 80.0  # a hot spot, and no data beside it
    frame[y, x + 1] = np.nan
    readout = cursor_readout(frame, x, y)
    assert "local peak 80  SNR nan" not in readout and "local peak 80  SNR -" not in readout
    assert float(readout.split("SNR ")[1]) > 10
    # on a no-data pixel itself: its value, and no peak or SNR ("local peak inf  SNR inf", radiometric audit 26)
    frame[y + 5, x] = np.inf
    assert cursor_readout(frame, x, y + 5) == f"x {x}  y {y + 5}  value inf (no data)"
    assert cursor_readout(frame, x + 1, y) == f"x {x + 1}  y {y}  value nan (no data)"
    stack = tifffile.imread(path)
    stack[0] = np.nan  # the camera gave nothing for a whole frame
    blank_first = tmp_path / "blank_first.tif"
    tifffile.imwrite(blank_first, stack)
    assert main(["info", str(blank_first)]) == 0
    low, high = capsys.readouterr().out.split("value range:")[1].split(" over")[0].strip().split("..")
    assert 20.0 <= float(low) < float(high) < 90.0


# A radiometric audit's scene: temperatures rising 0.12 K a row towards a 30x50 px block of no data, and a target
# above it. As the bottom of the window the block was a cold object with a sharp edge: Top-Hat saw targets along its
# top edge, and PSTNN lost the target.
TARGET = (150, 40)  # (x, y)
NO_DATA_BLOCK = np.s_[104:134, 10:60]


def _frame_with_a_no_data_block(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:160, 0:200]
    frame = 260.0 + 30.0 * rows / 256 + rng.normal(0, 0.05, rows.shape)
    frame += 2.0 * np.exp(-((cols - TARGET[0]) ** 2 + (rows - TARGET[1]) ** 2) / 2.0)
    frame = frame.astype(np.float32)
    frame[NO_DATA_BLOCK] = np.nan
    return frame


def _detected_centres(method: str, image: np.ndarray) -> list[tuple[float, float]]:
    mask = make_classical_detector(method).detect([image])[0].mask
    count, _, _, centres = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [(float(x), float(y)) for x, y in centres[1:count]]


@pytest.mark.parametrize("method", ["tophat", "pstnn"])
def test_a_no_data_block_gives_no_false_alarm_and_loses_no_target(method):
    for seed in range(3):
        frame = _frame_with_a_no_data_block(seed)
        centres = _detected_centres(method, Normalization.from_percentiles(frame).apply(frame))
        assert len(centres) == 1 and np.hypot(centres[0][0] - TARGET[0], centres[0][1] - TARGET[1]) < 1.5, centres


def test_irsam_detect_reports_only_the_target_beside_a_no_data_block(tmp_path):
    stack = np.stack([_frame_with_a_no_data_block(seed) for seed in range(3)])
    stack[1, 50, 100] = np.inf  # no temperature a camera measures: no data too
    path = tmp_path / "no_data_block.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    assert main(["detect", str(path), "--out", str(tmp_path / "project"), "--method", "tophat", "--quiet"]) == 0
    project = ReviewProject.open(tmp_path / "project")
    assert [[(round(t.cx), round(t.cy)) for t in project.detections(stem)] for stem in project.stems] == [[TARGET]] * 3


@pytest.mark.parametrize("method", ["mpcm", "tophat"])
def test_no_target_is_proposed_on_no_data_pixels_by_irsam_detect_nor_the_window(tmp_path, qtbot, method):
    """MPCM still found "targets" in the smooth fill of a no-data block (in every frame of 20 drawn): the fill is
    what the detectors see, not a measurement, so proposals leave its pixels out."""
    from app.main_window import MainWindow

    rng = np.random.default_rng(0)
    stack = (280 + 0.05 * np.arange(160)[:, None] + rng.normal(0, 0.1, (3, 160, 200))).astype(np.float32)
    stack[:, 40:90, 60:140] = np.nan
    stack[1, 45, 100] = np.inf
    path = tmp_path / "no_data_block.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    assert main(["detect", str(path), "--out", str(tmp_path / "project"), "--method", method, "--quiet"]) == 0
    project = ReviewProject.open(tmp_path / "project")
    for k, stem in enumerate(project.stems):
        assert not (project.prediction_mask(stem) & ~np.isfinite(stack[k])).any()
    window = MainWindow(QtCore.QSettings(str(tmp_path / "settings.ini"), QtCore.QSettings.IniFormat))
    qtbot.addWidget(window)
    assert window.open_path(path)
    qtbot.waitUntil(window.detection_panel.isEnabled, timeout=10000)
    panel = window.detection_panel
    panel.detector_combo.setCurrentIndex(next(i for i in range(panel.detector_combo.count())
                                              if getattr(panel.detector_combo.itemData(i), "method", None) == method))
    window.run_detection("all")
    qtbot.waitUntil(lambda: window.session.project is not None and all(
        window.session.project.prediction_mask(window.session.stem(k)) is not None for k in range(3)), timeout=30000)
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=30000)
    for k in range(3):
        predicted = window.session.project.prediction_mask(window.session.stem(k))
        assert predicted is not None and not (predicted & ~np.isfinite(stack[k])).any()


def test_no_data_is_filled_from_the_data_around_it_and_the_rest_of_the_detector_input_is_as_before():
    frame = _frame_with_a_no_data_block()
    normalization = Normalization.fixed(262.0, 292.0)
    complete = frame.copy()
    complete[NO_DATA_BLOCK] = 270.0
    # the mapping of the module's docstring, bit for bit, for a frame without no data
    formula = np.clip(np.floor((complete.astype(np.float64) - 262.0) * (255.0 / 30.0) + 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(normalization.apply(complete), formula)

    frame[10, 20], frame[11, 20] = np.inf, -np.inf
    image = normalization.apply(frame)
    no_data = ~np.isfinite(frame)
    assert np.array_equal(image[~no_data], formula[~no_data])
    around = cv2.dilate(no_data.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~no_data
    block = image[NO_DATA_BLOCK]
    assert image[around].min() <= block.min() and block.max() <= image[around].max()
    for axis in (0, 1):  # no edge: no step beside or inside the no-data pixels is steeper than the data's own
        steps = np.abs(np.diff(image.astype(int), axis=axis))
        touching = np.delete(no_data, -1, axis=axis) | np.delete(no_data, 0, axis=axis)  # pairs with no data
        assert steps[touching].max() <= steps[~touching].max()
    assert _within_its_neighbours(image, 20, 10) and _within_its_neighbours(image, 20, 11)


@pytest.mark.parametrize("no_data", [np.nan, np.inf])
def test_a_frame_of_no_data_at_all_gives_the_bottom_of_the_window_and_no_detection(no_data):
    frame = np.full((64, 80), no_data, np.float32)
    image = Normalization.fixed(260.0, 290.0).apply(frame)
    assert image.dtype == np.uint8 and image.shape == frame.shape and not image.any()
    assert _detected_centres("tophat", image) == _detected_centres("pstnn", image) == []
