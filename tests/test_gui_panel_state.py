"""What the window's panels show after a cancelled choice, a reopened dialog, another sequence opened or a
window resized: the real window under Xvfb, real files."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from PySide6 import QtCore, QtWidgets
from PySide6.QtTest import QTest

from app.core.finetune import FineTuneJob
from app.core.project import ReviewStatus
from app.paths import DEFAULT_WEIGHTS
from app.widgets.workers import DetectorChoice
from tests.gui_review_helpers import open_project, predict_ground_truth

pytestmark = pytest.mark.gui


def _pick_with_keys(combo: QtWidgets.QComboBox, index: int) -> None:
    """Choose item `index` of a closed combo box with the keyboard, as an analyst can (Qt sends `activated`)."""
    combo.setFocus()
    while combo.currentIndex() != index:
        before = combo.currentIndex()
        QTest.keyClick(combo, QtCore.Qt.Key_Down if index > before else QtCore.Qt.Key_Up)
        assert combo.currentIndex() != before, "the combo box did not move"


def _index_of(combo: QtWidgets.QComboBox, method: str | None, weights: str | None = None) -> int:
    for i in range(combo.count()):
        data = combo.itemData(i)
        if (data is None and method is None) or (data is not None and data.method == method
                                                   and (weights is None or data.weights == weights)):
            return i
    raise AssertionError(f"no {method} item")


@pytest.mark.parametrize("before", ["pstnn", "checkpoint"])
def test_cancelling_the_checkpoint_dialog_keeps_the_detector_chosen_before(window, fresh_sequence, tiny_checkpoint,
                                                                          qtbot, monkeypatch, before):
    open_project(window, qtbot, fresh_sequence)
    panel = window.detection_panel
    combo = panel.detector_combo
    asked = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getOpenFileName",
                        lambda *a, **k: asked.append(a) or ("", ""))  # the analyst presses Cancel
    if before == "pstnn":
        _pick_with_keys(combo, _index_of(combo, "pstnn"))
    else:
        panel.add_checkpoint(tiny_checkpoint)  # what the file dialog does when a file is chosen
        qtbot.waitUntil(lambda: window.detector is not None, timeout=30000)
        qtbot.wait(50)
    chosen = combo.currentIndex()
    text, choice, info, device = combo.currentText(), panel.choice(), panel.info.text(), window.device_label.text()
    choices = []
    panel.choiceChanged.connect(choices.append)
    assert _index_of(combo, None) == chosen + 1  # "IRSAM: other checkpoint...", the next item
    QTest.keyClick(combo, QtCore.Qt.Key_Down)  # picks it: the file dialog opens, and is cancelled
    assert len(asked) == 1
    qtbot.wait(50)
    # exactly what was chosen before: the box, the next run's detector, its description, the device shown
    assert combo.currentIndex() == chosen and combo.currentText() == text
    assert panel.choice() == choice
    assert panel.info.text() == info and window.device_label.text() == device
    assert choices == []  # nothing changed: the loaded detector is kept
    assert panel.device_combo.isEnabled() == (before == "checkpoint")  # IRSAM's options as before


def test_a_damaged_review_json_is_said_to_be_restored_from_its_backup(window, fresh_sequence, qtbot):
    from app.session import ReviewSession

    predict_ground_truth(fresh_sequence)
    session = ReviewSession.open(fresh_sequence)
    session.project.set_status(session.stem(0), ReviewStatus.ACCEPTED)
    session.project.set_status(session.stem(2), ReviewStatus.NEGATIVE)
    folder = session.project.folder
    session.close()
    (folder / "review.json").write_text("{broken")  # a crash, a full disk: the backup is intact
    open_project(window, qtbot, fresh_sequence)
    qtbot.waitUntil(lambda: bool(window.messages), timeout=5000)
    text = window.messages[-1]
    assert f"{folder.name}/review.json: unreadable review statuses (" in text
    assert "the statuses were restored from its backup, review.json.bak" in text
    # not what a damaged mask file means: the statuses are all there
    assert "empty mask" not in text and "unreviewed" not in text
    assert window.session.status(0) is ReviewStatus.ACCEPTED and window.session.status(2) is ReviewStatus.NEGATIVE
    assert "accepted 1" in window.review_tools.review_panel.counts.text()


@pytest.mark.parametrize("backup", ["kept", "missing"])
def test_a_damaged_project_json_is_restored_from_its_backup_or_said_in_a_dialog(window, fresh_sequence, qtbot,
                                                                                backup):
    """A truncated project.json opened the sequence with none of its work (0 detected, 0 accepted), said only in the
    status bar (cut off on a laptop screen), and new work went to another folder."""
    from app.session import ReviewSession

    predict_ground_truth(fresh_sequence)
    session = ReviewSession.open(fresh_sequence)
    session.project.set_status(session.stem(0), ReviewStatus.ACCEPTED)
    folder = session.project.folder
    session.close()
    meta = folder / "project.json"
    meta.write_bytes(meta.read_bytes()[:40])  # a crash, a full disk
    if backup == "missing":  # a project made before backups
        (folder / "project.json.bak").unlink()
    open_project(window, qtbot, fresh_sequence)
    qtbot.waitUntil(lambda: bool(window.messages), timeout=5000)
    text = window.messages[-1]
    if backup == "kept":
        assert f"{folder.name}/project.json: {meta} is unreadable: " in text
        assert "it was restored from its backup, project.json.bak" in text
        assert window.session.project.folder == folder and window.session.status(0) is ReviewStatus.ACCEPTED
        window.session.project.set_normalization(window.session.project.normalization)  # its next write repairs it
        assert json.loads(meta.read_text())["stems"] == list(window.session.project.stems)
    else:
        assert text.startswith(f"This sequence's project {folder} cannot be opened: {meta} is unreadable: ")
        assert text.endswith(f"Its files are left as they are; this sequence's work now goes to {folder}-new. To take "
                             f"the earlier work up again, restore {folder.name}/project.json from a copy, then open "
                             "the sequence again.")
        assert window.session.status(0) is ReviewStatus.UNREVIEWED


@pytest.mark.parametrize("backup", ["damaged", "missing"])
def test_review_json_damaged_without_a_usable_backup_says_every_frame_opens_unreviewed(window, fresh_sequence, qtbot,
                                                                                      backup):
    """A missing backup (a project from before backups, or one whose backup write failed) too."""
    from app.session import ReviewSession

    predict_ground_truth(fresh_sequence)
    session = ReviewSession.open(fresh_sequence)
    session.project.set_status(session.stem(0), ReviewStatus.ACCEPTED)
    folder = session.project.folder
    session.close()
    (folder / "review.json").write_text("{broken")
    if backup == "damaged":
        (folder / "review.json.bak").write_text("[]")
    else:
        (folder / "review.json.bak").unlink()
    open_project(window, qtbot, fresh_sequence)
    qtbot.waitUntil(lambda: bool(window.messages), timeout=5000)
    text = window.messages[-1]
    assert "restored" not in text
    assert text.endswith("review.json could not be read and no backup of it could stand in: every frame opens "
                         "unreviewed (set their statuses again, or restore review.json from a copy before changing "
                         "any).")
    assert window.session.status(0) is ReviewStatus.UNREVIEWED


# Stands in for `irsam train`: `epochs` epochs, each writing best.pt (a copy of the given checkpoint), last.pt
# (the same: only its presence is read here) and its record, in model/train.py's order; then it stays running
# until the gate file exists (as while it calibrates best.pt's threshold)
FAKE_TRAINING = """
import json, pathlib, shutil, sys, time
weights, best, metrics, epochs, gate = sys.argv[1:6]
for epoch in range(1, int(epochs) + 1):
    shutil.copy(weights, best)
    shutil.copy(weights, pathlib.Path(best).with_name("last.pt"))
    with open(metrics, "a") as f:
        f.write(json.dumps({"epoch": epoch, "loss": 0.5, "val_iou": 0.25, "seconds": 1.0}) + "\\n")
while not pathlib.Path(gate).exists():
    time.sleep(0.02)
"""


def _fake_training(monkeypatch, checkpoint, epochs_written: int, gate: Path) -> None:
    monkeypatch.setattr(FineTuneJob, "command", lambda job: [sys.executable, "-c", FAKE_TRAINING, str(checkpoint),
                                                             str(job.best_path), str(job.metrics_path),
                                                             str(epochs_written), str(gate)])


def _start(dialog, qtbot, epochs: int) -> None:
    dialog.weights.setText("")
    dialog.epochs.setValue(epochs)
    assert dialog.start(), dialog.status.text()
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled() or dialog.cancel_button.isEnabled(), timeout=30000)
    assert dialog.job is not None and dialog.job.running, (dialog.status.text(), dialog.failure.toPlainText())


def test_the_finetune_dialog_proposes_the_folder_it_used_for_the_project_again(review, sequence_16bit, tiny_checkpoint,
                                                                               qtbot, tmp_path, monkeypatch):
    from app.main_window import MainWindow
    from app.widgets.finetune_dialog import RUN_FOLDERS_KEY

    answers = []
    monkeypatch.setattr(QtWidgets.QMessageBox, "question", lambda *a, **k: answers.pop(0))
    tools, project = review.review_tools, review.session.project.folder
    first = tools.finetune_dialog_open()
    proposed = first.folder.text()
    assert Path(proposed).parent == project / "finetune"
    first.reject()
    qtbot.wait(1100)  # the next second's timestamp would name another folder
    again = tools.finetune_dialog_open()
    assert again is not first and again.folder.text() == proposed  # not a new timestamp each time

    # a run stopped after an epoch: the dialog opened again proposes its folder, and Start resumes it there
    for index in range(8):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    folder = tmp_path / "my finetune"
    again.folder.setText(str(folder))
    gate = tmp_path / "gate"
    _fake_training(monkeypatch, tiny_checkpoint, 1, gate)
    _start(again, qtbot, epochs=3)
    qtbot.waitUntil(lambda: again.progress.format().startswith("epoch 1/3"), timeout=10000)
    answers.append(QtWidgets.QMessageBox.Yes)
    again.close()  # "Stop training?": yes
    assert not answers and "Start resumes it" in again.status.text()
    reopened = tools.finetune_dialog_open()
    assert reopened.folder.text() == str(folder)
    reopened.reject()

    # remembered in the window's settings: after a restart too, for this project only
    review.settings.sync()
    restarted = MainWindow(QtCore.QSettings(review.settings.fileName(), QtCore.QSettings.IniFormat))
    restarted.disk_timer.stop()  # no look at the disk at random points (conftest's window)
    qtbot.addWidget(restarted)
    restarted.show()
    open_project(restarted, qtbot, review.session.source.path)
    dialog = restarted.review_tools.finetune_dialog_open()
    assert dialog.folder.text() == str(folder)
    dialog.reject()
    other = shutil.copytree(sequence_16bit, tmp_path / "other")
    predict_ground_truth(other, frames=[0])
    open_project(restarted, qtbot, other)
    dialog = restarted.review_tools.finetune_dialog_open()
    other_project = restarted.session.project.folder
    assert Path(dialog.folder.text()).parent == other_project / "finetune"
    dialog.reject()
    remembered = json.loads(restarted.settings.value(RUN_FOLDERS_KEY))
    assert remembered[str(project.resolve())] == str(folder)
    assert remembered[str(other_project.resolve())] == dialog.folder.text()
    restarted.close()


def test_without_a_remembered_folder_the_run_begun_last_in_the_project_is_proposed(review, qtbot):
    project = review.session.project.folder
    for name in ("20240101-101010", "20240301-090000"):
        (project / "finetune" / name / "data").mkdir(parents=True)
    (project / "finetune" / "empty").mkdir()  # holds no run: not one
    older = project / "finetune" / "20240101-101010"
    os.utime(older, (2e9, 2e9))  # begun last, whatever its name
    dialog = review.review_tools.finetune_dialog_open()
    assert dialog.folder.text() == str(older)
    dialog.reject()


@pytest.mark.parametrize("epochs_done, epochs", [(2, 2), (1, 3)])
def test_cancelling_offers_the_weights_only_after_the_last_epoch(review, qtbot, tmp_path, monkeypatch,
                                                                  tiny_checkpoint, epochs_done, epochs):
    for index in range(8):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    gate = tmp_path / "gate"
    _fake_training(monkeypatch, tiny_checkpoint, epochs_done, gate)
    dialog = review.review_tools.finetune_dialog_open()
    dialog.folder.setText(str(tmp_path / "finetune"))
    _start(dialog, qtbot, epochs)
    qtbot.waitUntil(lambda: dialog.progress.format().startswith(f"epoch {epochs_done}/{epochs}"), timeout=10000)
    assert dialog.job.running and not dialog.use_button.isEnabled()
    dialog.cancel_button.click()  # the last epoch done, the process still finishing (calibrating its threshold)
    assert not dialog.job.running and dialog.job.best_path.is_file()
    if epochs_done < epochs:  # a run to resume, not to use
        assert not dialog.use_button.isEnabled()
        assert dialog.status.text().startswith(f"Cancelled after epoch 1 of {epochs}. Start resumes it")
        dialog.close()
        return
    assert dialog.status.text() == (f"Cancelled after the last of its {epochs} epochs (best.pt holds the best one): "
                                    "Start begins a new run beside it. \"Use new weights and re-detect unreviewed "
                                    "frames\" takes its best.pt.")
    assert dialog.use_button.isEnabled()
    best = str(dialog.job.best_path)
    dialog.use_button.click()
    assert review.detection_panel.choice().weights == best and not dialog.isVisible()
    # named with its run's folder, as every run saves a best.pt (review audit 25)
    assert review.statusBar().message() == (f"Re-detecting 52 unreviewed frames with "
                                            f"{Path(best).parent.name}/best.pt.")
    review.cancel_detection()
    qtbot.waitUntil(lambda: not review.detection_runner.busy, timeout=60000)


def _queue_rows_in_sight(window) -> int:
    """Whole rows of the review queue that show in its dock (not only inside the table's own viewport)."""
    table, area = window.review_tools.review_panel.table, window.review_tools.review_dock.widget()
    top = table.viewport().mapTo(area.viewport(), QtCore.QPoint(0, 0)).y()
    shown = min(area.viewport().height() - top, table.viewport().height())
    return max(0, shown) // table.verticalHeader().defaultSectionSize()


def _resized(window, qtbot, width: int, height: int) -> None:
    window.resize(width, height)
    qtbot.waitUntil(lambda: window.height() == height, timeout=2000)
    qtbot.waitUntil(lambda: not window.right_column.reshare_timer.isActive(), timeout=2000)  # the docks shared again
    qtbot.wait(100)


def test_the_right_column_is_shared_again_when_the_window_is_resized(window, fresh_sequence, qtbot):
    window.resize(1400, 900)
    predict_ground_truth(fresh_sequence)
    open_project(window, qtbot, fresh_sequence)
    qtbot.wait(200)
    assert _queue_rows_in_sight(window) >= 4
    detection, overlays = window.detection_dock.widget(), window.overlays_dock.widget()

    _resized(window, qtbot, 1024, 700)  # Qt took the height from the queue alone: its header, no row
    assert _queue_rows_in_sight(window) >= 3
    # the detector and the run buttons stay in sight, and a few overlay rows
    run = window.detection_panel.run_all
    assert run.mapTo(detection.viewport(), QtCore.QPoint(0, run.height())).y() <= detection.viewport().height()
    assert overlays.viewport().height() >= 60

    _resized(window, qtbot, 1600, 1000)  # Qt gave it all to one dock, the overlays still scrolling
    assert _queue_rows_in_sight(window) >= 4
    # (a scroll area hides its bar in a queued call after the layout: a loaded machine needs a few passes)
    qtbot.waitUntil(lambda: not detection.verticalScrollBar().isVisible()
                    and not overlays.verticalScrollBar().isVisible(), timeout=2000)

    _resized(window, qtbot, 1024, 700)
    assert _queue_rows_in_sight(window) >= 3


def test_the_column_is_shared_alike_whichever_of_targets_and_review_is_the_tab_shown(window, fresh_sequence, qtbot):
    """The Targets and Review docks share one tabbed place: with Targets shown, the hidden Review dock's height is
    stale, and counting it gave the room to the Detection dock's empty end while the overlays scrolled."""
    window.resize(1300, 900)
    predict_ground_truth(fresh_sequence)
    open_project(window, qtbot, fresh_sequence)
    qtbot.wait(200)
    bar = next(b for b in window.findChildren(QtWidgets.QTabBar)
               if {"Targets", "Review"} <= {b.tabText(i) for i in range(b.count())})
    heights = {}
    for tab in ("Review", "Targets"):
        bar.setCurrentIndex([bar.tabText(i) for i in range(bar.count())].index(tab))
        _resized(window, qtbot, 1300, 700)
        _resized(window, qtbot, 1300, 950)
        heights[tab] = (window.detection_dock.height(), window.overlays_dock.height())
    assert heights["Targets"] == heights["Review"], heights


def _drag_separator_below(window, dock, dy: int) -> None:
    """Drag the separator under `dock` by `dy` pixels with the mouse (the window's own press, moves, release)."""
    from PySide6 import QtGui

    geometry = dock.geometry()
    start = QtCore.QPoint(geometry.center().x(), geometry.bottom() + 3)
    QTest.mouseMove(window, start)
    QTest.mousePress(window, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, start)
    for step in range(1, 6):
        point = QtCore.QPointF(start.x(), start.y() + dy * step / 5)
        QtWidgets.QApplication.sendEvent(window, QtGui.QMouseEvent(
            QtCore.QEvent.MouseMove, point, window.mapToGlobal(point), QtCore.Qt.NoButton, QtCore.Qt.LeftButton,
            QtCore.Qt.NoModifier))
        QTest.qWait(20)  # Qt moves the separator from a timer
    QTest.mouseRelease(window, QtCore.Qt.LeftButton, QtCore.Qt.NoModifier, start + QtCore.QPoint(0, dy))


def test_a_separator_the_analyst_dragged_is_kept_when_the_window_grows(window, fresh_sequence, qtbot):
    window.resize(1400, 900)
    predict_ground_truth(fresh_sequence)
    open_project(window, qtbot, fresh_sequence)
    qtbot.wait(200)
    review_dock = window.review_tools.review_dock
    shared = review_dock.height()
    _drag_separator_below(window, window.detection_dock, -80)  # the queue taller, the detection panel scrolls
    qtbot.wait(50)
    dragged = review_dock.height()
    assert dragged >= shared + 60, (shared, dragged)
    _resized(window, qtbot, 1400, 980)  # maximised, say: Qt gives the room to one dock, the queue keeps its rows
    assert review_dock.height() >= dragged
    _resized(window, qtbot, 1024, 700)  # too short for the dragged share: shared again, the queue keeps its rows
    assert _queue_rows_in_sight(window) >= 3
    assert window.overlays_dock.widget().viewport().height() >= 60


def _train_while_another_sequence_opens(review, sequence_16bit, qtbot, tmp_path, monkeypatch, checkpoint):
    """A one-epoch fake fine-tune of the review's sequence, held by its gate (returned with the dialog), while a
    copy of `sequence_16bit` is opened in the window."""
    import shutil

    for index in range(8):
        review.session.set_status(index, ReviewStatus.ACCEPTED)
    gate = tmp_path / "gate"
    _fake_training(monkeypatch, checkpoint, 1, gate)
    dialog = review.review_tools.finetune_dialog_open()
    dialog.folder.setText(str(tmp_path / "finetune"))
    _start(dialog, qtbot, 1)
    assert review.open_path(shutil.copytree(sequence_16bit, tmp_path / "other"))  # while it trains
    qtbot.waitUntil(lambda: review.detection_panel.isEnabled(), timeout=10000)
    return dialog, gate


def test_weights_trained_on_a_sequence_closed_since_are_selected_but_detect_nothing_here(
        review, sequence_16bit, qtbot, tmp_path, monkeypatch, tiny_checkpoint):
    """"Use new weights" re-detected whatever sequence was open when it was pressed: another clip opened while the
    run trained (audit 12, finding 7), maybe 10,000 frames the analyst never asked to detect."""
    dialog, gate = _train_while_another_sequence_opens(review, sequence_16bit, qtbot, tmp_path, monkeypatch,
                                                       tiny_checkpoint)
    gate.touch()
    qtbot.waitUntil(lambda: dialog.use_button.isEnabled(), timeout=30000)
    best = str(dialog.job.best_path)
    dialog.use_button.click()
    assert review.detection_panel.choice().weights == best  # selected all the same
    assert "nothing was re-detected" in review.statusBar().message()
    assert not review.detection_runner.busy or review.detector_loading()  # at most the weights load
    qtbot.waitUntil(lambda: not review.detection_runner.busy, timeout=30000)
    assert review.session.project is None or not list((review.session.project.folder / "masks").glob("*.png"))


def test_weights_trained_on_a_sequence_closed_and_opened_again_re_detect_it(
        review, sequence_16bit, qtbot, tmp_path, monkeypatch, tiny_checkpoint):
    trained_on = review.session.source.path
    dialog, gate = _train_while_another_sequence_opens(review, sequence_16bit, qtbot, tmp_path, monkeypatch,
                                                       tiny_checkpoint)
    assert review.open_path(trained_on)  # back to the sequence it trains on
    qtbot.waitUntil(lambda: review.detection_panel.isEnabled(), timeout=10000)
    gate.touch()
    qtbot.waitUntil(lambda: dialog.use_button.isEnabled(), timeout=30000)
    dialog.use_button.click()
    assert "Re-detecting 52 unreviewed frames" in review.statusBar().message()
    review.cancel_detection()
    qtbot.waitUntil(lambda: not review.detection_runner.busy, timeout=60000)


def test_enter_in_the_finetune_dialog_is_start_not_a_folder_chooser(review, qtbot, monkeypatch):
    """GUI audit 18: the dialog's first button, "Folder...", was its default: Enter in the folder field opened a
    folder chooser."""
    chooser = []
    monkeypatch.setattr(QtWidgets.QFileDialog, "getExistingDirectory", lambda *a, **k: chooser.append(a) or "")
    dialog = review.review_tools.finetune_dialog_open()
    assert dialog.start_button.isDefault()
    dialog.folder.setFocus()
    with qtbot.waitSignal(dialog.start_button.clicked, timeout=2000):
        QTest.keyClick(dialog.folder, QtCore.Qt.Key_Return)
    assert not chooser
    dialog.reject()


def test_two_checkpoints_of_one_name_are_told_apart_in_the_detector_list(window, tiny_checkpoint, tmp_path):
    """Loop audit 24: two fine-tune runs' weights were listed as "IRSAM (best.pt)" twice."""
    panel, combo = window.detection_panel, window.detection_panel.detector_combo
    paths = []
    for run in ("run", "run-2"):
        (tmp_path / run).mkdir()
        paths.append(tmp_path / run / "best.pt")
        paths[-1].write_bytes(tiny_checkpoint.read_bytes())
        panel.add_checkpoint(paths[-1])
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert "IRSAM (run/best.pt)" in texts and "IRSAM (run-2/best.pt)" in texts
    assert combo.itemData(combo.currentIndex(), QtCore.Qt.ToolTipRole) == str(paths[1].resolve())
    # the loaded detector's description and its failure messages name the run too (DetectorChoice.label)
    assert panel.choice().label == "IRSAM (run-2/best.pt)"
    assert DetectorChoice("irsam", str(DEFAULT_WEIGHTS)).label == f"IRSAM ({DEFAULT_WEIGHTS.name})"

