"""32-bit float frames (a radiometric camera's temperatures), NaN where the camera gave no data: read, normalised,
detected, exported and shown as they are."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tifffile

from app.cli import main
from app.core.export import export_project
from app.core.frames import open_source
from app.core.normalization import default_for
from app.core.project import ReviewProject
from app.core.synthetic import DEMO_CONFIG, generate_sequence
from app.measure import cursor_readout
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


def test_a_float_stack_is_read_as_it_is_and_its_no_data_pixels_go_to_the_bottom(temperatures):
    path, sequence = temperatures
    with open_source(path) as source:
        assert source.dtype == np.float32 and len(source) == 12 and source.frame_shape(0) == (64, 80)
        frame = source.frame(0)
        assert np.isnan(frame[NO_DATA[1], NO_DATA[0]]) and 20.0 <= np.nanmin(frame) < np.nanmax(frame) < 90.0
        normalization = default_for(source)
    assert np.isfinite([normalization.low, normalization.high]).all() and normalization.low < normalization.high
    assert set(normalization.bad_pixels) == set(sequence.hot_pixels) | set(sequence.dead_pixels)
    image = normalization.apply(frame)
    assert image.dtype == np.uint8 and image[NO_DATA[1], NO_DATA[0]] == 0
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
    assert image[5, 6] == image[7, 8] == 0


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
