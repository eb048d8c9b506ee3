"""The review window driven like an analyst would, under Xvfb (see scripts/dev.sh test)."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtGui, QtTest, QtWidgets

from app.measure import frame_box_pd, frame_iou_pd
from app.session import ReviewSession
from model.detectors import FrameResult
from app.editing import Tool
from tests.gui_review_helpers import click, predict_ground_truth

pytestmark = pytest.mark.gui


def _open(window, qtbot, path):
    assert window.open_path(path)
    # earlier results and ground truth are read in a worker thread after the first frame is shown
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)


def _choose(window, method):
    panel = window.detection_panel
    index = next(i for i in range(panel.detector_combo.count())
                 if panel.detector_combo.itemData(i) is not None and panel.detector_combo.itemData(i).method == method)
    panel.detector_combo.setCurrentIndex(index)
    panel.choiceChanged.emit(panel.choice())


def _run_ended(window, qtbot) -> None:
    """Until a detection run has ended and its last frame's result was taken in (queued after the worker's end)."""
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=30000)


def test_opens_16bit_sequence_on_raw_values(window, sequence_16bit, qtbot):
    _open(window, qtbot, sequence_16bit)
    shown = window.frame_view.image.image
    assert shown.dtype == np.uint16 and shown.shape == (96, 128)
    norm = window.session.normalization
    assert window.frame_view.levels() == pytest.approx((norm.low, norm.high))
    assert window.timeline.count == 60
    # cursor readout: raw value and local SNR of the brightest pixel
    y, x = np.unravel_index(np.argmax(shown), shown.shape)
    window.frame_view.cursorMoved.emit(int(x), int(y))
    assert f"value {int(shown[y, x])}" in window.cursor_label.text()
    assert "SNR" in window.cursor_label.text()
    # ground truth was found beside the images
    assert window.layers.truth_mask is not None


def test_scrubs_2000_frame_changes(window, sequence_16bit, qtbot):
    _open(window, qtbot, sequence_16bit)
    for toggle in window.overlay_panel.toggles.values():
        toggle.setChecked(True)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    for k in range(2000):
        if k % 3 == 0:
            window.timeline.step(1)
        elif k % 3 == 1:
            window.timeline.go_to(int(rng.integers(0, 60)))
        else:
            window.timeline.slider.setValue(int(rng.integers(0, 60)))
        QtCore.QCoreApplication.processEvents()
    elapsed = time.perf_counter() - start
    assert window.frame_view.image.image is not None
    assert window.index == window.timeline.current
    assert window.session.source.cache_stats()["size"] <= window.session.source.cache_size
    print(f"2000 frame changes in {elapsed:.1f} s")


def test_keyboard_navigation(window, sequence_16bit, qtbot):
    _open(window, qtbot, sequence_16bit)
    window.activateWindow()
    qtbot.waitActive(window)
    window.frame_view.graphics.setFocus()
    qtbot.wait(100)
    target = window.frame_view.graphics
    for key, expected in ((QtCore.Qt.Key_D, 1), (QtCore.Qt.Key_Right, 2), (QtCore.Qt.Key_A, 1),
                          (QtCore.Qt.Key_Left, 0), (QtCore.Qt.Key_PageDown, 10), (QtCore.Qt.Key_PageUp, 0),
                          (QtCore.Qt.Key_End, 59), (QtCore.Qt.Key_Home, 0)):
        qtbot.keyClick(target, key)
        assert window.index == expected, key
    # the frame number entry (1-based)
    window.timeline.frame_entry.setValue(42)
    assert window.index == 41


def test_play_advances_frames(window, sequence_16bit, qtbot):
    _open(window, qtbot, sequence_16bit)
    window.timeline.fps.setValue(100)
    window.timeline.toggle_play()
    qtbot.waitUntil(lambda: window.index >= 5, timeout=5000)
    window.timeline.toggle_play()
    assert not window.timeline.playing


def test_a_detection_run_into_a_project_another_run_is_writing_to_is_refused_and_writes_nothing(
        window, fresh_sequence, qtbot):
    """`irsam detect` into the project while the window detected (or two windows) left proposals of both
    detectors; the window's run now takes the project's detection lock and is refused while another holds it."""
    from app.core.locks import DetectionLock
    from tests.gui_review_helpers import predict_ground_truth

    predict_ground_truth(fresh_sequence, frames=[0])
    _open(window, qtbot, fresh_sequence)
    _choose(window, "tophat")
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=10000)
    with DetectionLock(window.session.project.folder, "irsam detect") as held:
        assert held.held
        window.run_detection("all")
        qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                        timeout=10000)
        text = window.detection_panel.info.text()
        assert text.startswith(f"Top-Hat not started:\nanother detection run (irsam detect, pid {os.getpid()}) is "
                               "writing to the project"), text
        assert window.detection_panel.rate.text() == "" and window.detection_panel.progress.maximum() == 1
        assert int((window.session.detection_counts >= 0).sum()) == 1  # frame 0's earlier proposal only
    window.run_detection("all")  # released: the run goes through, and leaves no lock behind
    qtbot.waitUntil(lambda: not window.detection_runner.busy and (window.session.detection_counts >= 0).all(),
                    timeout=20000)
    assert not (window.session.project.folder / "detect.lock").exists()


def test_detection_run_cancelled_midway_keeps_partial_results(window, fresh_sequence, qtbot):
    _open(window, qtbot, fresh_sequence)
    _choose(window, "mpcm")
    window.run_detection("all")
    assert window.detection_panel.cancel.isEnabled()
    qtbot.waitUntil(lambda: (window.session.detection_counts >= 0).sum() >= 3, timeout=10000)
    window.detection_panel.cancel.click()
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=10000)
    qtbot.waitUntil(lambda: window.detection_panel.run_all.isEnabled(), timeout=5000)
    done = int((window.session.detection_counts >= 0).sum())
    assert 3 <= done < 60, done
    assert "cancelled" in window.detection_panel.rate.text()
    # partial results are in the project and come back when the folder is reopened
    project_dir = window.session.project_dir
    assert len(list((project_dir / "masks").glob("*.png"))) == done
    reopened = ReviewSession.open(fresh_sequence)
    assert int((reopened.detection_counts >= 0).sum()) == done
    reopened.close()


def test_the_review_queue_follows_the_windows_own_run_as_it_goes(window, fresh_sequence, qtbot, monkeypatch):
    """The queue's counts, peaks and changes filled in only when the run ended (ten minutes on a real clip), while
    an `irsam detect` run beside the window showed within seconds."""
    import threading

    from model.classical import ClassicalDetector

    gate, calls = threading.Event(), []

    def held_detect(detector, images, features=False):  # frames 1-5 pass, the sixth waits for the gate
        calls.append(len(images))
        if len(calls) > 5:
            assert gate.wait(30)
        logits = np.full(images[0].shape, -5.0, np.float32)
        for k in range(len(calls) % 3):  # 0, 1 or 2 targets: sorted by detections, the rows reorder
            logits[10 + 20 * k : 13 + 20 * k, 10:13] = 4.0
        return [FrameResult(logits)]

    monkeypatch.setattr(ClassicalDetector, "detect", held_detect)
    _open(window, qtbot, fresh_sequence)
    _choose(window, "mpcm")
    model = window.review_tools.review_panel.model
    try:
        window.run_detection("all")
        qtbot.waitUntil(lambda: all(s.n_detections is not None for s in model.summaries[:5]), timeout=10000)
        assert window.detection_runner.busy  # the run is still going
        assert [s.n_detections for s in model.summaries[:5]] == list(window.session.detection_counts[:5])
        assert all(s.n_detections is None for s in model.summaries[5:])
        assert [s.change_from_previous is None for s in model.summaries[:7]] == [True] + [False] * 4 + [True] * 2
        # a click pressed across a tick still goes to its frame (a reset of the model lost it)
        panel = window.review_tools.review_panel
        table = panel.table
        table.scrollTo(model.index(10, 0))
        center = table.visualRect(model.index(10, 0)).center()
        QtTest.QTest.mousePress(table.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, center)
        window._queue_frames_done.add(3)
        window._queue_takes_frames_done()
        QtTest.QTest.mouseRelease(table.viewport(), QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, center)
        assert window.index == 10
        _settled(window, qtbot)  # (the panels, the queue's selection among them, follow the frame chosen)
        # sorted by detections, the rows reorder as the run's frames come in: the frame at the top stays there
        panel.sort_combo.setCurrentText("detections")
        panel.descending.setChecked(True)
        table.scrollTo(model.index(20, 0), QtWidgets.QAbstractItemView.PositionAtTop)
        top = model.rows[table.rowAt(0)].index
        gate.set()
        qtbot.waitUntil(lambda: all(s.n_detections is not None for s in model.summaries), timeout=60000)
        assert model.rows[table.rowAt(0)].index == top and _queue_selection(window) == [10]
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=30000)
    assert [s.n_detections for s in model.summaries] == list(window.session.detection_counts)


def test_run_range_then_results_show_as_overlays(window, fresh_sequence, qtbot):
    _open(window, qtbot, fresh_sequence)
    _choose(window, "mpcm")
    window.detection_panel.range_from.setValue(1)
    window.detection_panel.range_to.setValue(5)
    window.run_detection("range")
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=15000)
    assert list(window.session.detection_counts[:5] >= 0) == [True] * 5
    assert (window.session.detection_counts[5:] == -1).all()
    assert window.device_label.text().startswith("device: cpu")
    window.show_frame(0)
    assert window.layers.prediction is not None
    assert window.target_list.rowCount() == len(window.layers.targets)
    assert "IoU" in window.metrics_label.text()


def test_every_overlay_toggles(window, fresh_sequence, qtbot):
    _open(window, qtbot, fresh_sequence)
    _choose(window, "mpcm")
    window.run_detection("frame")
    qtbot.waitUntil(lambda: window.session.detection_counts[0] >= 0, timeout=10000)
    qtbot.waitUntil(lambda: window.detection_panel.run_all.isEnabled(), timeout=5000)
    mask = np.zeros((96, 128), bool)
    mask[10:13, 20:23] = True
    window.session.commit_mask(0, mask)
    window.show_frame(0)
    panel, view = window.overlay_panel, window.frame_view
    for key, toggle in panel.toggles.items():
        for state in (True, False, True):
            toggle.setChecked(state)
            assert view.overlays[key].visible is state
    assert view.layer_items["committed"].isVisible()
    assert view.layer_items["truth"].isVisible()
    for key, contour in panel.contour_toggles.items():
        contour.setChecked(not contour.isChecked())
        assert view.overlays[key].contour is contour.isChecked()
    panel.opacity_sliders["committed"].setValue(30)
    assert view.layer_items["committed"].opacity() == pytest.approx(0.3)
    panel.toggles["committed"].setChecked(False)
    assert not view.layer_items["committed"].isVisible()
    for palette in ("black-hot", "inferno", "white-hot"):
        window.palette_combo.setCurrentText(palette)
    window.levels_combo.setCurrentIndex(1)
    assert window.frame_view.auto_levels
    window.levels_combo.setCurrentIndex(0)
    # a re-run replaces the proposal, never the committed mask
    window.run_detection("frame")
    qtbot.waitUntil(lambda: window.detection_panel.run_all.isEnabled(), timeout=10000)
    assert (window.session.project.committed_mask(window.session.stem(0)) == mask).all()


def test_wpmd_and_3d_views_with_irsam(window, fresh_sequence, tiny_checkpoint, qtbot):
    _open(window, qtbot, fresh_sequence)
    window.detection_panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: window.detector is not None, timeout=30000)
    assert "note: random weights" in window.detection_panel.info.text()
    window.surface_dock.show()
    window.features_dock.show()
    qtbot.waitUntil(lambda: bool(window.feature_panel.features), timeout=30000)
    panel = window.feature_panel
    assert panel.level_combo.count() >= 1
    assert panel.images["diffused"].image is not None and panel.images["gad.deep"].image is not None
    for reduction in ("max", "channel", "mean"):
        panel.reduction_combo.setCurrentText(reduction)
    panel.channel.setValue(panel.channel.maximum())
    # 3D view: a target selected from the list drives it
    window.frame_view.cursorMoved.emit(40, 40)
    surface = window.surface_view
    assert "cursor (40, 40)" in surface.caption.text()
    if surface.gl_view is not None:
        qtbot.wait(50)
        assert surface.surface.visible()
    window.timeline.step(1)
    qtbot.waitUntil(lambda: not window.feature_runner.busy, timeout=30000)


def test_floating_views_open_over_the_main_window_not_at_the_screen_corner(window, sequence_16bit, qtbot):
    window.move(200, 100)
    _open(window, qtbot, sequence_16bit)
    frame = window.frameGeometry()
    for dock in (window.surface_dock, window.features_dock):
        dock.show()
        qtbot.waitUntil(dock.isVisible, timeout=5000)
        assert dock.isFloating() and dock.pos() != QtCore.QPoint(0, 0), dock.windowTitle()
        assert frame.contains(dock.frameGeometry().center()), dock.windowTitle()
    assert window.surface_dock.y() < window.features_dock.y()  # 3D at the top, the maps along the bottom


def test_classical_detector_says_it_has_no_feature_maps(window, sequence_16bit, qtbot):
    _open(window, qtbot, sequence_16bit)
    _choose(window, "tophat")
    window.features_dock.show()
    qtbot.waitUntil(lambda: "no WPMD or GAD" in window.feature_panel.message.text(), timeout=10000)


def test_switching_to_a_classical_detector_takes_the_networks_feature_maps_away_at_once(
        window, sequence_16bit, tiny_checkpoint, qtbot):
    """The IRSAM maps stayed on screen under a classical detector's name until the frame changed (audit 12)."""
    _open(window, qtbot, sequence_16bit)
    window.features_dock.show()
    window.detection_panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: bool(window.feature_panel.features), timeout=30000)
    shown = window.index
    _choose(window, "mpcm")
    qtbot.waitUntil(lambda: "MPCM has no WPMD or GAD" in window.feature_panel.message.text(), timeout=10000)
    assert not window.feature_panel.features and window.index == shown
    # a step of the target-area bounds changes no map: the network is not run again for them
    window.detection_panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: bool(window.feature_panel.features), timeout=30000)
    qtbot.waitUntil(lambda: not window.feature_runner.busy, timeout=30000)
    started = []
    window.feature_runner.start = lambda worker: started.append(worker)
    window.detection_panel.min_area.setValue(3)
    window.detection_panel.choiceChanged.emit(window.detection_panel.choice())
    assert started == []


def test_target_list_click_centres_and_selects_for_3d(window, tmp_path, qtbot):
    import dataclasses

    from app.core.synthetic import DEMO_CONFIG, iter_frames, write_sequence

    # targets as bright as the demo's: the default fixture's faint ones give MPCM nothing to find
    # once the sequence's hot pixels are repaired
    config = dataclasses.replace(DEMO_CONFIG, n_frames=20, height=96, width=128)
    _open(window, qtbot, write_sequence(iter_frames(config, seed=1), tmp_path / "bright"))
    _choose(window, "mpcm")
    window.surface_dock.show()
    window.run_detection("all")
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=30000)
    frame = int(np.argmax(window.session.detection_counts))
    window.show_frame(frame)
    qtbot.waitUntil(lambda: window.target_list.rowCount() > 0, timeout=2000)
    window.target_list.selectRow(0)
    target = window.selected
    assert target is not None
    rect = window.frame_view.view.viewRect()
    assert rect.contains(QtCore.QPointF(target.cx, target.cy)) and rect.width() < 80
    assert f"target {target.id}" in window.surface_view.caption.text()
    assert "outline: predicted mask" in window.surface_view.caption.text()  # no committed mask on this frame
    # a selection kept from a frame where it was (none within reach here): the caption claims no target
    window.selected = dataclasses.replace(target, cx=target.cx + 0.5, cy=target.cy)
    window._update_surface()
    assert window.surface_view.caption.text().startswith("where the selected target was")
    window._update_targets()  # nor does the list highlight this frame's target of the same id (a click did nothing)
    assert not window.target_list.selectionModel().selectedRows()
    window.target_list.selectRow(0)
    assert window.selected is window.layers.targets[0]
    # the list's selection cleared by the analyst (Ctrl+click): the 3D view follows the cursor again
    window.target_list.selectRow(0)
    window.target_list.clearSelection()
    assert window.selected is None
    window.frame_view.cursorMoved.emit(7, 9)
    assert window.surface_view.caption.text().startswith("cursor (7, 9)")


def test_bad_checkpoint_shows_an_error(window, sequence_16bit, tmp_path, qtbot):
    _open(window, qtbot, sequence_16bit)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    window.detection_panel.add_checkpoint(bad)
    qtbot.waitUntil(lambda: "failed" in window.detection_panel.info.text(), timeout=30000)
    assert window.detector is None
    window.run_detection("frame")  # still no crash: the run reports the same failure
    qtbot.waitUntil(lambda: window.detection_panel.run_all.isEnabled(), timeout=30000)
    assert "failed" in window.detection_panel.info.text()


def test_open_failures_and_recent_and_drop(window, sequence_16bit, tmp_path, qtbot):
    assert not window.open_path(tmp_path / "missing")
    assert window.messages and "no such file" in window.messages[0]
    _open(window, qtbot, sequence_16bit)
    assert window.recent_menu.actions()[0].text() == str(sequence_16bit.resolve())
    window.recent_menu.actions()[0].trigger()
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    assert window.session.source.path == sequence_16bit.resolve()
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(sequence_16bit / "images"))])
    drop = QtGui.QDropEvent(QtCore.QPointF(10, 10), QtCore.Qt.CopyAction, mime, QtCore.Qt.LeftButton,
                            QtCore.Qt.NoModifier)
    window.dropEvent(drop)
    assert window.session.source.path.name == "images"


def test_review_status_paints_the_strip(window, fresh_sequence, qtbot):
    from app.core.project import ReviewStatus

    predict_ground_truth(fresh_sequence, frames=[0])  # a proposal to accept
    _open(window, qtbot, fresh_sequence)
    review_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Review")
    next(a for a in review_menu.actions() if a.text().endswith("accepted")).trigger()
    assert window.session.status_codes[0] == 1
    assert window.session.project.status(window.session.stem(0)) is ReviewStatus.ACCEPTED
    pixels = window.timeline.strip._pixels
    assert tuple(pixels[1, 0]) != tuple(pixels[1, 1])


SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "sequences" / "IR_DRONE_156"


def test_real_clip_with_box_ground_truth(window, tmp_path, qtbot):
    # a private copy of 12 frames: the project is written beside the source, never into shared/
    clip = tmp_path / "IR_DRONE_156"
    (clip / "images").mkdir(parents=True)
    for k in range(1, 13):
        shutil.copy(SHARED_CLIP / "images" / f"{k:06d}.png", clip / "images")
    shutil.copy(SHARED_CLIP / "boxes.csv", clip)
    _open(window, qtbot, clip)
    assert window.frame_view.image.image.dtype == np.uint8
    assert window.layers.truth_boxes and window.frame_view.truth_boxes.isVisible()
    _choose(window, "mpcm")
    window.run_detection("frame")
    qtbot.waitUntil(lambda: window.session.detection_counts[0] >= 0, timeout=10000)
    qtbot.waitUntil(lambda: "Pd" in window.metrics_label.text(), timeout=5000)
    assert "/1" in window.metrics_label.text() and "false alarms" in window.metrics_label.text()
    # once the analyst commits a mask (here: only what lies in the truth box), it is scored beside the proposal
    x0, y0, x1, y1 = window.layers.truth_boxes[0]
    committed = np.zeros_like(window.layers.prediction)
    committed[y0 : y1 + 1, x0 : x1 + 1] = window.layers.prediction[y0 : y1 + 1, x0 : x1 + 1]
    window.session.commit_mask(0, committed)
    window.show_frame(0)
    found = int(committed.any())
    # the prediction is still scored by the proposal's targets, those listed now being the committed mask's
    hits, false_alarms = frame_box_pd(window.layers.proposals, window.session.ground_truth.boxes(0))
    assert len(window.layers.targets) < len(window.layers.proposals) and false_alarms > 0
    assert window.metrics_label.text().startswith(f"prediction: Pd {hits}/1  false alarms {false_alarms}")
    assert window.metrics_label.text().endswith(f"committed: Pd {found}/1  false alarms 0")


def test_tiff_stack_opens(window, tmp_path, qtbot):
    from app.core.synthetic import SyntheticConfig, generate_sequence, write_sequence

    config = SyntheticConfig(n_frames=8, height=64, width=80, n_targets=(1, 1))
    folder = write_sequence(generate_sequence(config, seed=5), tmp_path / "stack", layout="tiff", name="clip")
    _open(window, qtbot, folder / "clip.tif")
    assert window.timeline.count == 8 and window.frame_view.image.image.dtype == np.uint16
    assert window.layers.truth_mask is not None


def test_opening_a_stack_after_a_thumbnail_says_what_it_skipped_and_the_stored_type(window, tmp_path, qtbot):
    import tifffile

    path = tmp_path / "int16_with_thumbnail.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.zeros((6, 8), np.int16), subfiletype=1)
        for k in range(3):
            tif.write(np.full((24, 32), k - 100, np.int16))
    _open(window, qtbot, path)
    assert window.timeline.count == 3
    message = window.statusBar().message()
    assert message.startswith("3 frames, 32x24, float32 (stored as int16), normalisation ")
    assert "; skipped page 1: 8x6 thumbnail or preview, not a frame" in message


def test_no_data_pixels_show_in_their_own_colour_whatever_the_palette(window, tmp_path, qtbot):
    """Radiometric audit 26: NaN was transparent, so it showed the view's near-black background, which in black-hot
    is the hottest value."""
    import tifffile

    from app.widgets.frame_view import NO_DATA_COLOR

    temperatures = np.full((2, 60, 80), 280.0, np.float32)
    temperatures[:, 10:30, 10:40] = np.nan
    temperatures[:, 45:55, 50:70] = 300.0  # the hottest
    tifffile.imwrite(tmp_path / "kelvin.tif", temperatures)
    _open(window, qtbot, tmp_path / "kelvin.tif")
    view = window.frame_view
    view.show_whole_frame()

    def colour_at(x: float, y: float) -> tuple[int, int, int]:
        point = view.graphics.mapFromScene(view.view.mapViewToScene(QtCore.QPointF(x, y)))
        pixel = view.graphics.grab().toImage().pixelColor(point)
        return pixel.red(), pixel.green(), pixel.blue()

    for palette in ("black-hot", "white-hot", "inferno"):
        view.set_palette(palette)
        assert colour_at(25, 20) == NO_DATA_COLOR
        assert colour_at(60, 50) != NO_DATA_COLOR
    window.timeline.step(1)
    assert colour_at(25, 20) == NO_DATA_COLOR


def test_3d_view_falls_back_without_opengl(qtbot, monkeypatch):
    from app.widgets import surface_view

    monkeypatch.setattr(surface_view, "opengl_available", lambda: False)
    view = surface_view.SurfaceView()
    qtbot.addWidget(view)
    view.show()
    frame = np.zeros((64, 64), np.uint16)
    view.show_region(frame, surface_view.SurfaceRegion.around(10, 10, frame.shape), None, (0, 1),
                     np.zeros((256, 3), np.uint8), "cursor (10, 10)")
    assert view.gl_view is None and "unavailable" in view.fallback.text()


def test_cuda_request_falls_back_to_cpu_visibly(window, sequence_16bit, tiny_checkpoint, qtbot):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA works here: nothing to fall back from")
    _open(window, qtbot, sequence_16bit)
    window.detection_panel.device_combo.setCurrentText("cuda")
    window.detection_panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: window.detector is not None, timeout=30000)
    assert "CPU fallback" in window.device_label.text()
    assert "CUDA" in window.detection_panel.info.text()


def test_unreadable_frame_is_reported_and_skipped(window, fresh_sequence, qtbot):
    broken = fresh_sequence / "images" / "000005.png"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated: found at open, fails when decoded
    _open(window, qtbot, fresh_sequence)
    window.timeline.go_to(4)
    assert "unreadable" in window.frame_label.text()
    assert window.session.detection_counts[4] == -2
    window.timeline.step(1)
    assert window.index == 5 and window.frame_view.image.image is not None


def test_a_run_over_several_unreadable_frames_names_them_all(window, fresh_sequence, qtbot):
    """Each skipped frame's message replaced the one before: the status bar named only the last."""
    for name in ("000003.png", "000008.png"):
        broken = fresh_sequence / "images" / name
        broken.write_bytes(broken.read_bytes()[:200])
    _open(window, qtbot, fresh_sequence)
    _choose(window, "mpcm")
    said = []
    window.statusBar().messageChanged.connect(said.append)  # (a message may time out before the run ends)
    window.detection_panel.range_from.setValue(1)
    window.detection_panel.range_to.setValue(10)
    window.run_detection("range")
    _run_ended(window, qtbot)
    skipped = [m for m in said if " skipped: " in m]
    assert len(skipped) == 2 and skipped[0].startswith("frame 3 skipped: ") and "also" not in skipped[0]
    assert skipped[1].startswith("frame 8 skipped: ") and skipped[1].endswith(" (also skipped in this run: frame 3)")


def test_stepping_over_an_unreadable_frame_keeps_the_zoom_and_clears_the_feature_maps(window, fresh_sequence, qtbot,
                                                                                      tiny_checkpoint):
    (fresh_sequence / "images" / "000003.png").write_bytes(b"not an image")
    _open(window, qtbot, fresh_sequence)
    window.detection_panel.add_checkpoint(tiny_checkpoint)
    window.features_dock.show()
    window.surface_dock.show()
    window.timeline.go_to(1)
    qtbot.waitUntil(lambda: "Feature maps of frame 2" in window.feature_panel.message.text(), timeout=30000)
    window.frame_view.center_on(40, 30, 10)
    zoom = window.frame_view.view.viewRect()
    curve = window.frame_view.histogram.item.plot
    qtbot.waitUntil(lambda: curve.getData()[0] is not None and len(curve.getData()[0]) > 0, timeout=5000)
    window.timeline.step(1)  # frame 3: unreadable
    window.update_panels()
    assert window.frame_view.notice.isVisible()
    assert curve.getData()[0] is None or len(curve.getData()[0]) == 0  # not frame 2's curve (GUI audit 26)
    assert not window.feature_panel.features and window.feature_panel.images["input"].image is None
    assert "Frame 3 is unreadable" in window.feature_panel.message.text()
    assert window.surface_view.caption.text() == "frame 3 is unreadable: nothing to draw"
    assert window.surface_view.gl_view is None or not window.surface_view.surface.visible()
    window.timeline.step(1)
    assert window.frame_view.view.viewRect() == zoom  # not the whole frame again
    qtbot.waitUntil(lambda: not window.feature_runner.busy, timeout=30000)


def test_unreadable_files_found_at_open_stay_in_the_status_bar_after_the_project_is_read(window, fresh_sequence,
                                                                                          qtbot):
    (fresh_sequence / "images" / "000007.png").write_bytes(b"")
    _open(window, qtbot, fresh_sequence)
    qtbot.wait(50)  # the message used to be cleared just after the project was read
    assert "; 1 unreadable file (red on the timeline" in window.statusBar().message()
    empty = window.session.source.stems.index("000007")
    assert window.session.detection_counts[empty] == -2  # red on the timeline before anyone visits it
    window.timeline.go_to(empty)
    assert "unreadable" in window.frame_label.text()
    assert window.frame_view.notice.isVisible() and "Frame 7 is unreadable: empty file" in window.frame_view.notice.text()
    window.timeline.step(1)
    assert not window.frame_view.notice.isVisible()


def test_an_unreadable_frame_can_only_be_rejected_and_review_steps_over_it(window, fresh_sequence, qtbot):
    from app.core.project import ReviewStatus

    (fresh_sequence / "images" / "000003.png").write_bytes(b"not an image")
    predict_ground_truth(fresh_sequence, frames=[1])  # a proposal to accept on the frame before it
    _open(window, qtbot, fresh_sequence)
    bad = window.session.source.stems.index("000003")
    tools = window.review_tools
    window.timeline.go_to(bad - 1)
    tools.accept_and_next()
    assert window.index == bad + 1  # the unreadable frame is skipped, not landed on
    window.timeline.go_to(bad)
    assert not tools.set_status(ReviewStatus.NEGATIVE) and "can only be marked rejected" in \
        window.statusBar().message()
    assert tools.editing._run(lambda editor, i: editor.flood_fill(i, 3, 3)) is False
    assert "nothing to edit" in window.statusBar().message()
    window.statusBar().clearMessage()
    tools.palette.set_tool(Tool.BRUSH)
    click(window, 5, 5)  # GUI audit 18: a brush click there said nothing
    assert window.statusBar().message() == f"Frame {bad + 1} is unreadable: there is nothing to edit."
    tools.palette.set_tool(Tool.NAVIGATE)
    # the queue counts it apart from the unreviewed frames (review steps over it) and marks it
    panel = tools.review_panel
    counts = panel.counts.text()
    assert "unreadable 1" in counts and f"unreviewed {len(window.session) - 2} " in counts  # frame 2 accepted
    assert panel.model.data(panel.model.index(panel.model.row_of(bad), 2)) == "unreadable"
    panel.status_filter.setCurrentText("unreviewed")  # the filters agree with the counts
    assert bad not in [s.index for s in panel.model.rows] and len(panel.model.rows) == len(window.session) - 2
    panel.status_filter.setCurrentText("unreadable")
    assert [s.index for s in panel.model.rows] == [bad]
    assert tools.set_status(ReviewStatus.REJECTED) and window.session.status(bad) is ReviewStatus.REJECTED
    assert panel.model.rows == []
    panel.status_filter.setCurrentText("all statuses")
    assert "unreadable" not in panel.counts.text() and "rejected 1" in panel.counts.text()
    assert panel.model.data(panel.model.index(panel.model.row_of(bad), 2)) == "rejected"


def test_the_empty_window_says_how_to_start_and_run_asks_for_a_sequence(window):
    assert window.frame_view.notice.isVisible() and "File > Open folder" in window.frame_view.notice.text()
    window.run_detection("frame")
    assert window.statusBar().message().startswith("Open a sequence first")


def _queue_selection(window) -> list[int]:
    panel = window.review_tools.review_panel
    return [panel.model.rows[r.row()].index for r in panel.table.selectionModel().selectedRows()]


def _settled(window, qtbot) -> None:
    qtbot.waitUntil(lambda: not window.panels_timer.isActive(), timeout=5000)


def test_panels_follow_the_frame_once_the_event_loop_runs(window, fresh_sequence, qtbot):
    predict_ground_truth(fresh_sequence, frames=range(0, 60, 2))  # even frames: 2 targets, IoU 1; odd: nothing
    _open(window, qtbot, fresh_sequence)
    _settled(window, qtbot)
    assert window.target_list.rowCount() == 2 and window.metrics_label.text() == "IoU 1.00  Pd 1.00"
    window.timeline.go_to(7)
    # the image, its overlays and the frame label at once; the panels still describe the first frame until the loop runs
    assert np.array_equal(window.frame_view.image.image, window.session.frame(7))
    assert window.frame_view.layers is window.layers and window.layers.prediction is None
    assert window.frame_label.text().startswith("frame 8/60")
    assert window.target_list.rowCount() == 2
    qtbot.waitUntil(lambda: window.target_list.rowCount() == 0 and window.metrics_label.text() == "", timeout=2000)
    assert _queue_selection(window) == [7]
    window.timeline.go_to(8)
    qtbot.waitUntil(lambda: window.target_list.rowCount() == 2, timeout=2000)
    assert window.metrics_label.text() == "IoU 1.00  Pd 1.00" and _queue_selection(window) == [8]
    listed = [window.target_list.item(row, 0).data(QtCore.Qt.UserRole) for row in range(2)]
    assert sorted(listed) == [t.id for t in window.layers.targets]
    # showing the shown frame again (a status, an edit, a new result) updates the panels at once
    window.session.project.save_prediction(window.session.stem(8), FrameResult(np.full((96, 128), -5, np.float32)))
    window.session.record_result(8)
    window.show_frame(8)
    assert window.target_list.rowCount() == 0 and not window.panels_timer.isActive()


def test_a_burst_of_frame_changes_updates_the_panels_once_for_the_last_frame(window, fresh_sequence, qtbot,
                                                                             monkeypatch):
    from app import measure

    predict_ground_truth(fresh_sequence)
    _open(window, qtbot, fresh_sequence)
    _settled(window, qtbot)
    scored, listed = [], []
    score = measure.frame_iou_pd
    monkeypatch.setattr(measure, "frame_iou_pd", lambda p, t: scored.append(window.index) or score(p, t))
    set_targets = window.target_list.set_targets
    monkeypatch.setattr(window.target_list, "set_targets", lambda *a: listed.append(window.index) or set_targets(*a))
    window.panels_timer.setInterval(1000)  # longer than any change of the burst takes, even on a loaded machine
    for index in range(1, 21):
        window.timeline.step(1)
        QtCore.QCoreApplication.processEvents()  # the event loop runs between changes, as between repeated keys
        assert window.index == index and np.array_equal(window.frame_view.image.image, window.session.frame(index))
    assert scored == [] and listed == []
    qtbot.waitUntil(lambda: bool(listed), timeout=5000)
    assert scored == [20] and listed == [20]
    assert window.target_list.rowCount() == len(window.layers.targets) == 2 and _queue_selection(window) == [20]
    # a new committed mask shows at once and is scored; the prediction and truth did not change, so the
    # prediction is not scored again
    committed = np.zeros((96, 128), bool)
    committed[5:8, 5:8] = True
    window.session.commit_mask(20, committed)
    window.show_frame(20)
    assert np.array_equal(window.layers.committed, committed) and listed == [20, 20] and scored == [20, 20]
    assert window.metrics_label.text() == "prediction: IoU 1.00  Pd 1.00   committed: IoU 0.00  Pd 0.00"


def test_heatmap_for_frames_detected_before_reopening(window, fresh_sequence, tmp_path, qtbot):
    from app.main_window import MainWindow

    _open(window, qtbot, fresh_sequence)
    _choose(window, "mpcm")
    assert window.detection_panel.keep_probabilities.isChecked()
    window.detection_panel.range_from.setValue(1)
    window.detection_panel.range_to.setValue(3)
    window.run_detection("range")
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.detection_panel.run_all.isEnabled(),
                    timeout=15000)
    project_dir = window.session.project_dir
    stems = [window.session.stem(i) for i in range(3)]
    assert sorted(p.stem for p in (project_dir / "logits").glob("*.npy")) == stems
    assert not list((project_dir / "logits").glob(".*"))  # no temporary files left by the atomic writes
    window.detection_panel.keep_probabilities.setChecked(False)  # a run without them writes none
    window.timeline.go_to(3)
    window.run_detection("frame")
    qtbot.waitUntil(lambda: window.session.detection_counts[3] >= 0 and window.detection_panel.run_all.isEnabled(),
                    timeout=15000)
    assert sorted(p.stem for p in (project_dir / "logits").glob("*.npy")) == stems
    window.close()

    reopened = MainWindow(QtCore.QSettings(str(tmp_path / "second.ini"), QtCore.QSettings.IniFormat))
    reopened.disk_timer.stop()  # no look at the disk at random points (conftest's window)
    qtbot.addWidget(reopened)
    reopened.show()
    _open(reopened, qtbot, fresh_sequence)
    toggle = reopened.overlay_panel.toggles["probability"]
    toggle.setChecked(True)
    heatmap = reopened.frame_view.layer_items["probability"]
    assert reopened.layers.probability is not None and heatmap.isVisible() and "(n/a)" not in toggle.text()
    logits = np.load(project_dir / "logits" / f"{stems[0]}.npy")
    expected = np.rint(255 / (1 + np.exp(-logits.astype(np.float64))))
    assert np.abs(reopened.layers.probability.astype(int) - expected).max() <= 1
    reopened.timeline.go_to(5)  # not detected: no heatmap, and the toggle says so
    assert not heatmap.isVisible() and "(n/a)" in toggle.text()
    reopened.close()


def test_heatmap_of_a_project_made_by_irsam_detect_save_logits(window, fresh_sequence, tmp_path, qtbot):
    from app.cli import main

    out = tmp_path / "project"
    assert main(["detect", str(fresh_sequence), "--out", str(out), "--method", "mpcm", "--save-logits",
                 "--limit", "2", "--quiet"]) == 0
    _open(window, qtbot, out)
    window.overlay_panel.toggles["probability"].setChecked(True)
    assert window.layers.probability is not None and window.frame_view.layer_items["probability"].isVisible()


def test_a_choice_changed_while_the_checkpoint_loads_is_loaded_next(window, fresh_sequence, tiny_checkpoint, qtbot):
    """Test-time flips picked while the checkpoint was still loading: no reload started (the loader was busy), and
    the window kept the detector of the choice it loaded."""
    _open(window, qtbot, fresh_sequence)
    panel = window.detection_panel
    panel.add_checkpoint(tiny_checkpoint)
    assert window.detection_runner.busy  # loading
    panel.tta_combo.setCurrentIndex(panel.tta_combo.findData("flips"))
    qtbot.waitUntil(lambda: window.detector is not None and not window.detection_runner.busy
                    and window.detector_choice == panel.choice(), timeout=30000)
    assert window.detector.tta == "flips"


def test_test_time_flips_and_refinement_reach_the_irsam_predictor_only(window, fresh_sequence, tiny_checkpoint, qtbot):
    _open(window, qtbot, fresh_sequence)
    panel = window.detection_panel
    panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: window.detector is not None and not window.detection_runner.busy, timeout=30000)
    assert window.detector.tta == "none"
    panel.tta_combo.setCurrentIndex(panel.tta_combo.findData("flips"))
    assert panel.choice().tta == "flips" and "flips" in panel.choice().label
    qtbot.waitUntil(lambda: window.detector is not None, timeout=30000)  # reloaded for the new choice
    assert window.detector.tta == "flips" and window.detector.refine == "contrast"  # refined by default
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=30000)
    panel.refine_outline.setChecked(False)
    assert panel.choice().refine == "off" and "unrefined" in panel.choice().label
    qtbot.waitUntil(lambda: window.detector is not None and window.detector.refine == "off", timeout=30000)
    window.run_detection("frame")
    qtbot.waitUntil(lambda: window.session.detection_counts[0] >= 0, timeout=30000)
    _choose(window, "tophat")
    assert panel.choice().tta == "none"  # classical methods take no flips
    assert panel.choice().refine == "contrast" and panel.choice().label == "Top-Hat"
    assert not panel.tta_combo.isEnabled() and not panel.refine_outline.isEnabled()  # greyed out: no effect
    assert not panel.device_combo.isEnabled()
    panel.set_running(True)
    assert panel.progress.maximum() == 0  # busy, not "0 / 100", until the first frame reports
    panel.set_running(False)
    assert panel.progress.maximum() > 0
    assert not panel.tta_combo.isEnabled() and not panel.refine_outline.isEnabled()
    panel.detector_combo.setCurrentIndex(0)  # back to IRSAM
    assert panel.tta_combo.isEnabled() and panel.refine_outline.isEnabled() and panel.device_combo.isEnabled()


def test_queued_signals_of_a_dropped_worker_are_ignored(window, sequence_16bit, qtbot):
    """Opening another sequence or closing drops the running worker; its signals already queued then
    arrive with no sender and must change nothing (seen once as a crash at window close)."""
    import shiboken6

    from app.widgets.workers import DetectionWorker, DetectorChoice

    _open(window, qtbot, sequence_16bit)
    worker = DetectionWorker(None, None, [0], DetectorChoice("tophat"), None, None)
    queued = QtCore.Qt.QueuedConnection
    worker.finished.connect(window._worker_finished, queued)
    worker.detectorReady.connect(window._detector_ready, queued)
    worker.frameDone.connect(window._frame_done, queued)
    worker.progress.connect(window._progress, queued)
    worker.detectorReady.emit(object(), "stale notice")
    worker.frameDone.emit(0, None)
    worker.progress.emit(1, 1, 1.0)
    worker.finished.emit(False)
    shiboken6.delete(worker)
    qtbot.wait(100)  # pytest-qt fails the test on an exception raised in a slot
    assert window.detector is None and "stale notice" not in window.statusBar().message()


def test_demo_opens_and_the_default_detector_finds_its_targets(window, tmp_path, monkeypatch, qtbot):
    """The README's first command: the built-in demo, the shipped weights, the app's defaults."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    window.open_demo()
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=30000)
    assert window.timeline.count == 120 and window.frame_view.image.image.dtype == np.uint16
    assert window.detection_panel.choice().method == "irsam"  # the default detector
    window.run_detection("frame")
    qtbot.waitUntil(lambda: not window.detection_runner.busy and window.session.detection_counts[0] >= 0,
                    timeout=120000)
    window.show_frame(0)
    assert "trained on nuaa-sirst" in window.detection_panel.info.text()
    assert window.layers.truth_mask is not None and window.layers.prediction is not None
    _, pd = frame_iou_pd(window.layers.prediction, window.layers.truth_mask)
    assert pd == 1.0 and "Pd 1.00" in window.metrics_label.text()


def test_irsam_options_follow_the_detector_picked_while_no_sequence_is_open(qtbot):
    from app.widgets.detection_panel import DetectionPanel

    panel = DetectionPanel()
    qtbot.addWidget(panel)
    panel.setEnabled(False)  # as in the window before a sequence is opened
    mpcm = next(i for i in range(panel.detector_combo.count())
                if panel.detector_combo.itemData(i) is not None and panel.detector_combo.itemData(i).method == "mpcm")
    panel.detector_combo.setCurrentIndex(mpcm)
    panel.setEnabled(True)
    assert not panel.tta_combo.isEnabled() and not panel.refine_outline.isEnabled()
    panel.setEnabled(False)
    panel.detector_combo.setCurrentIndex(0)
    panel.setEnabled(True)
    assert panel.tta_combo.isEnabled() and panel.refine_outline.isEnabled()


def test_bad_pixels_marked_on_request_and_shown_raw(window, fresh_sequence, qtbot):
    _open(window, qtbot, fresh_sequence)
    pixels = window.session.normalization.bad_pixels
    assert len(pixels) == 9  # the fixture's 6 hot and 3 dead pixels
    marks = window.frame_view.bad_pixel_marks
    assert not marks.isVisible()  # off by default
    window.overlay_panel.toggles["bad_pixels"].setChecked(True)
    assert marks.isVisible()
    xs, ys = marks.getData()
    assert np.isfinite(xs).sum() == 5 * len(pixels)  # one closed box per pixel
    x, y = pixels[0]
    assert window.frame_view.image.image[y, x] == window.session.frame(0)[y, x]  # the view is not repaired
    assert f"{len(pixels)} bad pixels repaired" in str(window.session.normalization)


def _right_column(window):
    return [window.detection_dock, window.review_tools.review_dock, window.overlays_dock]


@pytest.mark.parametrize("size", [(1366, 700), (1500, 950), (1440, 1052)])
def test_window_fits_a_laptop_screen_and_no_panel_is_cut_off(window, fresh_sequence, qtbot, size):
    from PySide6 import QtWidgets

    # the docks once asked for 1105 px, so the window grew past a 768 px screen (1080 px less a taskbar too)
    # and Qt squeezed the review queue below its minimum, its last rows hidden under the next panel
    assert window.minimumSizeHint().height() <= 600 and window.minimumSizeHint().width() <= 1024
    window.resize(*size)
    _open(window, qtbot, fresh_sequence)
    window.right_column.size_docks()  # as on the first show, for this size
    qtbot.waitUntil(lambda: window.height() == size[1], timeout=2000)

    def panels_fit():
        for dock in _right_column(window):
            area = dock.widget()
            assert isinstance(area, QtWidgets.QScrollArea), dock.windowTitle()
            panel = area.widget()
            # a panel keeps at least its minimum size and scrolls inside its dock instead of being squeezed
            assert panel.height() >= panel.minimumSizeHint().height(), dock.windowTitle()
            assert panel.width() >= panel.minimumSizeHint().width(), dock.windowTitle()
            assert not area.horizontalScrollBar().isVisible()
            assert area.verticalScrollBar().isVisible() == (panel.height() > area.viewport().height())

    # (a scroll area shows or hides its bar in a queued call after the layout: a loaded machine needs a few passes)
    qtbot.waitUntil(panels_fit, timeout=2000)
    # the review queue keeps room for its buttons, filters and rows (up to half a short column, less the
    # Targets / Review tab bar)
    column = sum(dock.height() for dock in _right_column(window))
    queue = window.review_tools.review_dock.widget()
    assert queue.viewport().height() >= min(window.review_tools.review_panel.minimumSizeHint().height(),
                                            column // 2 - 60)
    if size[1] >= 900:
        # the current frame's row shows in the queue, not only inside the table's own viewport
        area, table = window.review_tools.review_dock.widget(), window.review_tools.review_panel.table
        for frame in (0, 20, len(window.session) - 1):
            window.timeline.go_to(frame)
            qtbot.waitUntil(lambda: [r.row() for r in table.selectionModel().selectedRows()]
                            == [window.review_tools.review_panel.model.row_of(frame)], timeout=2000)
            rect = table.visualRect(table.model().index(table.selectionModel().selectedRows()[0].row(), 0))
            top_left = table.viewport().mapTo(area.viewport(), rect.topLeft())
            assert area.viewport().rect().contains(QtCore.QRect(top_left, rect.size())), frame
    if size[1] > 1000:
        assert not window.overlays_dock.widget().verticalScrollBar().isVisible()
        # the shipped weights' description adds four lines to the detection panel: its dock grows to show them
        detection = window.detection_dock.widget()
        assert not detection.verticalScrollBar().isVisible()
        _choose(window, "irsam")
        window.run_detection("frame")  # starts once the weights are loaded
        qtbot.waitUntil(lambda: window.detector is not None and "validation" in window.detection_panel.info.text(),
                        timeout=30000)
        qtbot.waitUntil(lambda: window.detection_panel.run_all.isEnabled(), timeout=30000)  # the run ended
        qtbot.waitUntil(lambda: not detection.verticalScrollBar().isVisible(), timeout=2000)
        assert detection.widget().height() >= detection.widget().sizeHint().height()


def test_target_area_gate_reaches_runs_without_reloading_the_checkpoint(window, fresh_sequence, tiny_checkpoint,
                                                                          qtbot):
    from model.size_gate import SizeGatedDetector

    _open(window, qtbot, fresh_sequence)
    panel = window.detection_panel
    panel.add_checkpoint(tiny_checkpoint)
    qtbot.waitUntil(lambda: window.detector is not None, timeout=30000)
    loaded = window.detector
    window.run_detection("frame")
    _run_ended(window, qtbot)
    stem = window.session.stem(window.index)
    areas = [t.area for t in window.session.project.detections(stem)]
    assert max(areas) > 3  # the random tiny network marks large blobs
    # the proposal records what made it, and the status bar names it
    origin = window.session.project.proposal_origin(stem)
    assert origin.method == "irsam" and origin.weights == Path(tiny_checkpoint).name
    assert origin.normalization == str(window.session.normalization)
    assert window.frame_label.text().endswith(f"proposal: IRSAM ({Path(tiny_checkpoint).name})")

    panel.max_area.setValue(3)
    assert panel.choice().max_area == 3 and panel.choice().min_area == 1
    assert isinstance(window.detector, SizeGatedDetector) and window.detector.inner is loaded  # no reload
    assert "targets 1-3 px" in panel.info.text()
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=30000)
    window.run_detection("frame")
    _run_ended(window, qtbot)
    gated_areas = [t.area for t in window.session.project.detections(stem)]
    assert gated_areas and sorted(gated_areas) == sorted(a for a in areas if a <= 3)
    assert window.frame_label.text().endswith(f"proposal: IRSAM ({Path(tiny_checkpoint).name}, targets 1-3 px)")

    panel.max_area.setValue(0)  # "no limit"
    assert panel.max_area.text() == "no limit" and panel.choice().max_area is None
    assert window.detector is loaded
    # a classical method takes the gate too
    panel.min_area.setValue(2)
    _choose(window, "mpcm")
    assert panel.choice().min_area == 2 and "targets >= 2 px" in panel.choice().label


def test_detector_input_window_is_chosen_applied_and_kept_by_the_project(window, fresh_sequence, qtbot,
                                                                          monkeypatch):
    from PySide6 import QtWidgets

    from app.core.normalization import Normalization

    load_details = ReviewSession.load_details
    monkeypatch.setattr(ReviewSession, "load_details", lambda self: (time.sleep(0.5), load_details(self))[1])
    assert window.open_path(fresh_sequence)
    assert window.choose_normalization() is None  # the project that stores it is still being read
    assert "still loading" in window.statusBar().message()
    _open(window, qtbot, fresh_sequence)
    default = window.session.normalization
    assert default.mode == "percentile"
    dialog = window.choose_normalization()
    assert dialog.percentiles.isChecked() and dialog.p_high.value() == pytest.approx(default.p_high)
    dialog.fixed.setChecked(True)
    assert dialog.low.isEnabled() and not dialog.p_low.isEnabled()
    dialog.low.setValue(3000)
    dialog.high.setValue(2000)
    ok = dialog.findChild(QtWidgets.QDialogButtonBox).button(QtWidgets.QDialogButtonBox.Ok)
    ok.click()
    # refused in the fields' own words (not the command line's LO < HI), nothing changed
    assert dialog.isVisible() and dialog.error.text() == "The low value (3000) must be below the high value (2000)."
    assert window.session.normalization == default
    dialog.percentiles.setChecked(True)
    dialog.p_low.setValue(60)
    dialog.p_high.setValue(40)
    ok.click()
    assert dialog.isVisible() and dialog.error.text() == ("The low percentile (60 %) must be below the high "
                                                          "percentile (40 %).")
    assert window.session.normalization == default
    # a window beside every value of the frame shown: the detectors would see a flat image
    dialog.fixed.setChecked(True)
    frame = window.frame
    dialog.low.setValue(float(frame.max()) + 1)
    dialog.high.setValue(float(frame.max()) + 500)
    ok.click()
    assert dialog.isVisible() and dialog.error.text() == (
        f"No pixel of the frame shown lies in {frame.max() + 1:g}..{frame.max() + 500:g} (its values: "
        f"{frame.min():g} to {frame.max():g}): the detectors would see a flat image. Choose a window that reaches them.")
    assert window.session.normalization == default
    assert dialog.high.toolTip() == "A raw value of this sequence's sample type, 0 to 65535"
    low, high = int(default.low) + 100, int(default.high) - 100
    window.frame_view.histogram.setLevels(low, high)  # what the analyst dragged the display to
    dialog.use_displayed_levels()
    assert (dialog.low.value(), dialog.high.value()) == (low, high)
    ok.click()
    assert not dialog.isVisible()

    chosen = window.session.normalization
    assert (chosen.mode, chosen.low, chosen.high) == ("window", low, high)
    assert chosen.bad_pixels == default.bad_pixels  # still repaired
    assert window.frame_view.sequence_levels == (low, high)
    assert f"window {low}..{high}" in window.statusBar().message()
    _choose(window, "tophat")
    window.run_detection("frame")
    qtbot.waitUntil(lambda: window.session.detection_counts[0] >= 0 and window.detection_panel.run_all.isEnabled(),
                    timeout=10000)
    project_dir = window.session.project_dir
    window._set_session(ReviewSession.open(fresh_sequence))  # reopened: the project's window comes back
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    assert Normalization.from_dict(window.session.project.normalization) == chosen
    assert window.session.normalization == chosen
    dialog = window.choose_normalization()
    assert dialog.fixed.isChecked() and "The frame detected so far keeps its proposal until" in \
        " ".join(label.text() for label in dialog.findChildren(QtWidgets.QLabel))
    dialog.reject()
    assert project_dir == window.session.project_dir


@pytest.mark.filterwarnings("ignore:ground-truth mask has values strictly between")  # what the test makes
def test_an_interpolated_ground_truth_mask_is_reported(window, fresh_sequence, qtbot):
    import cv2

    mask_file = next((fresh_sequence / "masks").glob("*.png"))
    mask = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
    blurred = cv2.GaussianBlur(mask, (5, 5), 1.0)  # resized or smoothed: values between 0 and 255
    assert ((blurred > 0) & (blurred < 255)).any()
    cv2.imwrite(str(mask_file), blurred)
    _open(window, qtbot, fresh_sequence)
    index = window.session.source.stems.index(mask_file.stem)
    window.show_frame(index)
    window.update_panels()
    message = window.statusBar().message()
    assert f"Ground truth {mask_file.name}" in message and "strictly between 0 and 255" in message
    np.testing.assert_array_equal(window.layers.truth_mask, blurred == 255)


def test_a_run_asked_for_while_the_checkpoint_loads_starts_once_it_is_loaded(window, fresh_sequence, tiny_checkpoint,
                                                                             qtbot, monkeypatch):
    import threading

    import app.widgets.workers as workers

    # each checkpoint's load waits for its event: the runs below are asked for while it loads, however slow the
    # machine is
    held = {Path(tiny_checkpoint).name: threading.Event(), "missing.pt": threading.Event()}
    make_detector = workers.make_detector

    def loading_slowly(method, weights, *args, **kwargs):
        if weights is not None and Path(weights).name in held:
            held[Path(weights).name].wait(30)
        return make_detector(method, weights, *args, **kwargs)

    monkeypatch.setattr(workers, "make_detector", loading_slowly)
    _open(window, qtbot, fresh_sequence)
    window.detection_panel.add_checkpoint(tiny_checkpoint)  # starts loading it at once
    assert window.detection_runner.busy and window.detector is None
    window.run_detection("frame")
    assert window.start_detection([1]) == "A run is already waiting for the detector to load."
    held[Path(tiny_checkpoint).name].set()
    qtbot.waitUntil(lambda: window.session.detection_counts[0] >= 0, timeout=30000)
    qtbot.waitUntil(lambda: window.detection_panel.run_all.isEnabled(), timeout=30000)
    assert window.session.project.prediction(window.session.stem(0))[1].weights == Path(tiny_checkpoint).name
    assert (window.session.detection_counts[1:] < 0).all()  # only the frame asked for

    window.detection_panel.add_checkpoint(tiny_checkpoint.parent / "missing.pt")  # loads (and fails) in a worker
    assert window.detection_runner.busy
    window.run_detection("all")
    window.cancel_detection()
    assert window.detection_panel.run_all.isEnabled() and "cancelled" in window.detection_panel.rate.text()
    held["missing.pt"].set()
    qtbot.waitUntil(lambda: not window.detection_runner.busy, timeout=30000)
    qtbot.wait(100)
    assert (window.session.detection_counts[1:] < 0).all()  # the cancelled run never started


def test_a_stopped_runs_queued_frame_failure_is_not_applied(window, sequence_16bit, qtbot):
    _open(window, qtbot, sequence_16bit)
    window._frame_failed(0, "unreadable")  # as a queued signal arrives after its worker was dropped
    assert not window.session.is_unreadable(0)


def test_a_window_chosen_before_any_detection_is_kept_and_the_histogram_shows_its_handles(window, fresh_sequence,
                                                                                          qtbot):
    from PySide6 import QtWidgets

    _open(window, qtbot, fresh_sequence)
    assert window.session.project is None
    dialog = window.choose_normalization()
    dialog.fixed.setChecked(True)
    dialog.low.setValue(0)
    dialog.high.setValue(65535)  # wider than the frame's values
    dialog.findChild(QtWidgets.QDialogButtonBox).button(QtWidgets.QDialogButtonBox.Ok).click()
    low, high = window.frame_view.histogram.item.vb.viewRange()[1]
    assert low <= 0 and high >= 65535  # both level handles can be dragged
    project_dir = window.session.project_dir
    assert (project_dir / "project.json").is_file()  # stored although nothing was detected yet
    window.open_path(fresh_sequence)  # as after a restart
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    kept = window.session.normalization
    assert (kept.mode, kept.low, kept.high) == ("window", 0, 65535)


def test_opening_another_sequence_during_a_run_says_what_was_stopped(window, fresh_sequence, sequence_16bit, qtbot):
    _open(window, qtbot, fresh_sequence)
    _choose(window, "pstnn")
    window.run_detection("all")
    qtbot.waitUntil(lambda: window.detection_panel.progress.value() >= 1, timeout=30000)
    assert window.detection_runner.busy
    assert window.open_path(sequence_16bit)
    message = window.statusBar().message()
    assert f"detection on {fresh_sequence.name} stopped after" in message and "of 60 frames" in message
    panel = window.detection_panel
    assert panel.progress.text() == "no run yet" and panel.rate.text() == ""
    qtbot.waitUntil(lambda: window.detection_panel.isEnabled(), timeout=10000)
    assert panel.run_all.isEnabled()  # not left "running"


def test_a_status_message_gets_the_room_of_the_frame_scores_while_it_shows(window, sequence_16bit, qtbot):
    _open(window, qtbot, sequence_16bit)
    window.statusBar().clearMessage()
    window.metrics_label.setText("IoU 1.00  Pd 1.00")
    assert window.metrics_label.isVisible()
    window.statusBar().showMessage("Carried to 0 frames; stopped at frame 12: no target found in the search window")
    assert not window.metrics_label.isVisible()
    window.statusBar().clearMessage()
    assert window.metrics_label.isVisible() and window.metrics_label.text() == "IoU 1.00  Pd 1.00"
    # auto, resolved once the window shows (it read "device: auto" until IRSAM loaded)
    qtbot.waitUntil(lambda: window.device_label.text() != "device: auto", timeout=10000)
    assert re.fullmatch(r"device: (cpu \(\d+ threads?\)|cuda.*)", window.device_label.text())
    window.detection_panel.device_combo.setCurrentText("cpu")
    assert window.device_label.text() == "device: cpu" and window.device_label.toolTip() == ""


def test_a_message_longer_than_the_bar_keeps_its_start_and_end_and_shows_whole_as_the_tooltip(window, sequence_16bit,
                                                                                            qtbot):
    """Keyboard audit 25: at 1024 px a propagation's stop message ran under the device label, losing its end (which
    target stopped it, and where)."""
    _open(window, qtbot, sequence_16bit)
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: window.width() == 1024, timeout=2000)
    bar = window.statusBar()
    long = ("Carried to 3 frames; stopped at frame 12: the target grew from 4 px to 40 px, more than the area "
            "jump allowed, so the mask was not carried on; correct frame 12 and propagate again from there "
            "(target 4 of 4, last at (283, 145))")
    bar.showMessage(long)
    shown = bar.currentMessage()
    assert shown != long and shown.startswith("Carried to 3 frames") and shown.endswith("last at (283, 145))")
    assert "\u2026" in shown and bar.toolTip() == long and bar.message() == long
    room = bar.width() - window.device_label.width()
    assert QtGui.QFontMetrics(bar.font()).horizontalAdvance(shown) < room
    assert window.device_label.isVisible() and not window.metrics_label.isVisible()
    bar.showMessage("Frame 12 accepted")  # a short one is shown as it is, with no tooltip
    assert bar.currentMessage() == "Frame 12 accepted" and bar.toolTip() == ""
    bar.showMessage(long)
    bar.clearMessage()
    assert bar.toolTip() == "" and window.metrics_label.isVisible()
    # shortened again as the window narrows or widens (review audit 25: shortened once, it ran under the label
    # again after the window shrank), its timeout kept
    window.resize(1400, 700)
    bar.showMessage(long, 60000)
    qtbot.waitUntil(lambda: bar.width() > 1300, timeout=2000)
    wide = bar.currentMessage()
    window.resize(800, 700)
    qtbot.waitUntil(lambda: bar.currentMessage() != wide, timeout=2000)
    assert len(bar.currentMessage()) < len(wide) and bar.message() == long
    shown_width = QtGui.QFontMetrics(bar.font()).horizontalAdvance(bar.currentMessage())
    assert shown_width < bar.width() - window.device_label.width()
    before = bar.currentMessage()
    window.device_label.setText("device: cuda:0 (NVIDIA H200, 139 GiB)  (CPU fallback)")  # a kept label widens
    qtbot.waitUntil(lambda: len(bar.currentMessage()) < len(before), timeout=2000)
    assert QtGui.QFontMetrics(bar.font()).horizontalAdvance(bar.currentMessage()) < (
        bar.width() - window.device_label.sizeHint().width())
    bar.showMessage(long, 50)
    window.resize(900, 700)
    qtbot.waitUntil(lambda: bar.currentMessage() == "", timeout=2000)
    # an empty message is no message, as QStatusBar takes it: the frame's scores come back
    bar.showMessage("")
    assert bar.currentMessage() == "" and window.metrics_label.isVisible()


def test_reopening_a_sequence_starts_at_the_frame_it_was_left_on(window, fresh_sequence, sequence_16bit, qtbot):
    _open(window, qtbot, fresh_sequence)
    window.timeline.go_to(37)
    _open(window, qtbot, sequence_16bit)
    assert window.index == 0  # never opened before
    _open(window, qtbot, fresh_sequence)
    assert window.index == 37
    assert window.frame_label.text().startswith("frame 38/60")
    window.timeline.go_to(12)
    window.close()  # closing remembers too
    from app.main_window import MainWindow

    again = MainWindow(window.settings)
    again.disk_timer.stop()  # no look at the disk at random points (conftest's window)
    qtbot.addWidget(again)
    assert again.open_path(fresh_sequence)
    qtbot.waitUntil(lambda: again.detection_panel.isEnabled(), timeout=10000)
    assert again.index == 12
    again.close()


def test_an_inverted_target_area_range_is_made_whole_by_the_bound_just_set(qtbot):
    from PySide6.QtTest import QTest

    from app.widgets.detection_panel import DetectionPanel

    panel = DetectionPanel()
    qtbot.addWidget(panel)
    panel.show()

    def type_into(box, text):
        box.setFocus()
        box.selectAll()
        QTest.keyClicks(box, text)  # through 2, 20 (below the lower bound) on the way: nothing follows yet
        QTest.keyClick(box, QtCore.Qt.Key_Return)

    type_into(panel.max_area, "200")
    assert (panel.min_area.value(), panel.max_area.value()) == (1, 200)
    type_into(panel.min_area, "300")  # above the upper bound: the upper follows
    assert (panel.min_area.value(), panel.max_area.value()) == (300, 300)
    type_into(panel.max_area, "250")  # below the lower bound: the lower follows
    assert (panel.min_area.value(), panel.max_area.value()) == (250, 250)
    assert (panel.choice().min_area, panel.choice().max_area) == (250, 250)
    type_into(panel.max_area, "0")  # no limit: any lower bound goes with it
    assert panel.max_area.text() == "no limit" and panel.min_area.value() == 250
    type_into(panel.max_area, "250")
    panel.min_area.setFocus()
    QTest.keyClick(panel.min_area, QtCore.Qt.Key_Up)  # a step: the other bound follows at once, no Enter needed
    assert (panel.min_area.value(), panel.max_area.value()) == (251, 251)


def test_reopening_a_sequence_restores_its_zoom_while_its_frames_keep_their_size(
        window, fresh_sequence, sequence_16bit, qtbot):
    from app.main_window import MainWindow

    _open(window, qtbot, fresh_sequence)
    assert window.frame_view.zoomed_rect() is None  # opened whole
    window.frame_view.center_on(40, 30, half_size=12)
    qtbot.wait(50)
    zoomed = window.frame_view.zoomed_rect()
    assert zoomed is not None and zoomed[2] < 60 and zoomed[3] < 60
    _open(window, qtbot, sequence_16bit)  # another sequence: shown whole, the zoom kept for the first
    assert window.frame_view.zoomed_rect() is None
    window.close()

    again = MainWindow(window.settings)
    again.disk_timer.stop()  # no look at the disk at random points (conftest's window)
    qtbot.addWidget(again)
    again.resize(window.size())
    again.show()
    _open(again, qtbot, fresh_sequence)
    qtbot.wait(50)
    restored = again.frame_view.zoomed_rect()
    assert restored is not None
    centre = (restored[0] + restored[2] / 2, restored[1] + restored[3] / 2)
    assert centre == pytest.approx((40, 30), abs=1.5)
    assert min(restored[2], restored[3]) == pytest.approx(min(zoomed[2], zoomed[3]), rel=0.15)
    again.frame_view.view.autoRange(padding=0.02)  # left whole: reopened whole
    _open(again, qtbot, sequence_16bit)
    _open(again, qtbot, fresh_sequence)
    assert again.frame_view.zoomed_rect() is None
    again.close()

    # frames of another size under the same path: the old zoom does not apply to them
    window.settings.setValue("review/last_views", json.dumps({str(fresh_sequence.resolve()): [12, 16, 1, 1, 4, 4]}))
    third = MainWindow(window.settings)
    third.disk_timer.stop()
    qtbot.addWidget(third)
    third.show()
    _open(third, qtbot, fresh_sequence)
    assert third.frame_view.zoomed_rect() is None
    third.close()


def test_the_frame_shown_is_remembered_once_it_settles_not_only_at_close(window, fresh_sequence, qtbot):
    from app.window_memory import LAST_FRAMES_KEY

    _open(window, qtbot, fresh_sequence)
    window.timeline.go_to(23)
    qtbot.waitUntil(lambda: not window.panels_timer.isActive(), timeout=2000)
    # what a crash (no closeEvent) leaves in the settings, which Qt writes out as it goes
    frames = json.loads(window.settings.value(LAST_FRAMES_KEY))
    assert frames[str(fresh_sequence.resolve())] == [23, window.session.stem(23)]


@pytest.mark.disk_poll
def test_a_restart_restores_the_windows_size_and_its_docks(window, fresh_sequence, qtbot):
    from app.main_window import MainWindow

    _open(window, qtbot, fresh_sequence)
    window.resize(1300, 850)
    window.surface_dock.show()
    qtbot.waitUntil(window.surface_dock.isVisible, timeout=5000)
    window.surface_dock.resize(610, 430)
    window.overlays_dock.hide()
    qtbot.wait(100)
    assert window.disk_timer.isActive()
    window.close()
    assert not window.disk_timer.isActive()  # a closed window no longer looks at its closed project

    again = MainWindow(window.settings)
    again.disk_timer.stop()  # no look at the disk at random points (conftest's window)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    qtbot.wait(100)
    assert again.size() == QtCore.QSize(1300, 850)
    assert again.surface_dock.isVisible() and again.surface_dock.isFloating()
    assert again.surface_dock.size() == QtCore.QSize(610, 430)
    assert not again.overlays_dock.isVisible() and not again.features_dock.isVisible()
    again.features_dock.show()  # never opened before: put over the window, not at the screen's corner
    qtbot.waitUntil(again.features_dock.isVisible, timeout=5000)
    assert again.frameGeometry().contains(again.features_dock.frameGeometry().center())
    again.close()


def test_a_slow_run_gives_its_pace_in_seconds_a_frame(qtbot):
    """A 2560x2048 frame at 216 s read "0.0 frames/s"."""
    from app.widgets.detection_panel import DetectionPanel

    panel = DetectionPanel()
    qtbot.addWidget(panel)
    panel.set_progress(1, 3, 1 / 216)
    assert panel.rate.text() == "216.0 s a frame, ETA 7:12"
    panel.set_progress(10, 30, 9.2)
    assert panel.rate.text() == "9.2 frames/s, ETA 0:02"


def test_target_snr_and_the_cursor_readout_measure_the_frame_with_its_stuck_pixels_repaired(window, tmp_path, qtbot):
    """Review audit 25: a stuck pixel in a target's ring inflated the ring's noise (the Targets list's SNR fell
    from about 20 to under 1), and beside the cursor it was taken for the local peak."""
    import tifffile

    from app.session import ReviewSession
    from model.detectors import FrameResult

    rng = np.random.default_rng(0)
    frames = rng.normal(1000, 20, (8, 64, 64)).astype(np.uint16)
    for i, row in enumerate([29, 2, 9, 16, 23, 37, 44, 51]):  # the target moves; the stuck pixel does not
        frames[i, row : row + 3, 29:32] = 1400
    frames[:, 30, 36] = 60000
    tifffile.imwrite(tmp_path / "stack.tif", frames)
    session = ReviewSession.open(tmp_path / "stack.tif")
    session.ensure_project().save_prediction(session.stem(0), FrameResult(
        np.where(frames[0] == 1400, 5.0, -5.0).astype(np.float32)))
    session.project.flush_detections()
    session.close()
    _open(window, qtbot, tmp_path / "stack.tif")
    assert (36, 30) in window.session.normalization.bad_pixels
    qtbot.waitUntil(lambda: window.target_list.rowCount() == 1, timeout=5000)
    snr = float(window.target_list.item(0, 5).text())
    assert snr > 10, snr  # 400 counts over a noise of 20
    window._cursor_moved(34, 30)  # two pixels from the stuck one, in the target's ring
    text = window.cursor_label.text()
    assert "value " in text and "local peak 60000" not in text and "local peak 1400" in text
    window._cursor_moved(36, 30)  # on it: its raw value is what the readout gives
    assert "value 60000" in window.cursor_label.text()
