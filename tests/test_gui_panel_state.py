"""What the window's panels show after a cancelled choice, a reopened dialog, another sequence opened or a
window resized: the real window under Xvfb, real files."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PySide6 import QtCore, QtWidgets
from PySide6.QtTest import QTest

from app.core.finetune import FineTuneJob
from app.core.project import ReviewStatus
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


def test_both_review_files_damaged_say_every_frame_opens_unreviewed(window, fresh_sequence, qtbot):
    from app.session import ReviewSession

    predict_ground_truth(fresh_sequence)
    session = ReviewSession.open(fresh_sequence)
    session.project.set_status(session.stem(0), ReviewStatus.ACCEPTED)
    folder = session.project.folder
    session.close()
    (folder / "review.json").write_text("{broken")
    (folder / "review.json.bak").write_text("[]")
    open_project(window, qtbot, fresh_sequence)
    qtbot.waitUntil(lambda: bool(window.messages), timeout=5000)
    text = window.messages[-1]
    assert "restored" not in text
    assert text.endswith("Neither review.json nor its backup could be read: every frame opens unreviewed.")
    assert window.session.status(0) is ReviewStatus.UNREVIEWED
